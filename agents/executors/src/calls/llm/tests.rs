//! The gateway against a local server speaking the OpenAI wire format (`cadre_fake_llm`), over
//! real sockets.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cadre_agents::{ExecContext, Report, Usage};
use cadre_proto::TaskId;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::*;
use cadre_fake_llm::Fake;

mod anthropic;
mod tool_calls;

#[derive(Default)]
struct Seen {
    progress: Mutex<Vec<(f64, String)>>,
    usage: Mutex<Vec<Usage>>,
}

impl Report for Seen {
    fn progress(&self, fraction: f64, message: String) {
        self.progress.lock().unwrap().push((fraction, message));
    }
    fn usage(&self, usage: Usage) {
        self.usage.lock().unwrap().push(usage);
    }
}

fn ctx_with(report: Arc<Seen>, cancel: CancellationToken) -> ExecContext {
    ExecContext::new(TaskId::new(), "intelligence.llm.chat".into(), 1, cancel, report)
}

fn provider(base_url: &str) -> ProviderConfig {
    ProviderConfig {
        kind: ProviderKind::Openai,
        base_url: base_url.into(),
        api_key_env: String::new(),
        default_max_tokens: 4_096,
        connect_timeout_ms: 1_000,
        timeout_ms: 2_000,
    }
}

fn model(provider: &str, fallback: &[&str]) -> ModelConfig {
    ModelConfig {
        provider: provider.into(),
        model: String::new(),
        fallback: fallback.iter().map(|s| s.to_string()).collect(),
    }
}

/// Two providers on the same fake (so a rate-limited one does not block the other) and a
/// model per fake behaviour, named after it; `chains` adds fallbacks.
fn config(fake: &Fake, chains: &[(&str, &[&str])]) -> LlmConfig {
    let mut providers = BTreeMap::from([
        ("p1".to_string(), provider(&fake.base_url)),
        ("p2".to_string(), provider(&fake.base_url)),
    ]);
    providers.get_mut("p2").unwrap().timeout_ms = 300;
    let mut models = BTreeMap::new();
    for (name, p) in [
        ("echo", "p2"),
        ("words", "p2"),
        ("stall", "p2"),
        ("rate", "p1"),
        ("rate-once", "p1"),
        ("rate-date", "p1"),
        ("boom", "p1"),
        ("unauthorized", "p1"),
        ("bad", "p1"),
        ("slow", "p2"),
        ("no-usage", "p1"),
        ("json-second", "p1"),
        ("json-never", "p1"),
        ("huge", "p1"),
        ("script", "p1"),
        ("script-slow", "p1"),
    ] {
        let fallback = chains
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| *f)
            .unwrap_or(&[]);
        let mut m = model(p, fallback);
        m.model = name.into();
        models.insert(name.to_string(), m);
    }
    LlmConfig {
        default_model: "echo".into(),
        providers,
        models,
        ..LlmConfig::default()
    }
}

async fn run(llm: &Llm, params: Value) -> (Result<Value, ExecError>, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let out = llm
        .execute(ctx_with(seen.clone(), CancellationToken::new()), params)
        .await;
    (out, seen)
}

fn fits(llm: &Llm, result: &Value) {
    validate(&llm.result_schema().unwrap(), result).unwrap_or_else(|e| panic!("{result}: {e}"));
}

#[tokio::test]
async fn a_plain_reply_records_usage_and_fits_the_result_schema() {
    let fake = Fake::start().await;
    let llm = Llm::new(config(&fake, &[]));
    let params = json!({ "prompt": "hello there", "system": "Be brief.", "stream": false, "max_tokens": 50, "temperature": 0.2 });
    validate(&llm.params_schema().unwrap(), &params).unwrap();
    let (out, seen) = run(&llm, params).await;
    let r = out.unwrap();
    fits(&llm, &r);
    assert_eq!(r["content"], "You said: hello there");
    assert_eq!(r["model"], "echo");
    assert_eq!(r["provider"], "p2");
    assert_eq!(r["upstream_model"], "echo-2026");
    assert_eq!(r["finish_reason"], "stop");
    assert_eq!(
        r["usage"],
        json!({ "tokens_in": 11, "tokens_out": 7, "estimated": false })
    );
    assert_eq!(r["cached"], false);
    let usage = seen.usage.lock().unwrap().clone();
    let tokens: Vec<_> = usage
        .iter()
        .map(|u| (u.model.as_str(), u.tokens_in, u.tokens_out))
        .collect();
    assert_eq!(tokens, [("echo", 11, 7)]);
    let u = &usage[0];
    assert_eq!((u.provider.as_str(), u.model_requested.as_str()), ("p2", "echo"));
    assert_eq!((u.finish_reason.as_str(), u.cache_hit), ("stop", false));
    assert!(u.started_at_ms > 0 && u.fallbacks.is_empty());
    assert_eq!(
        (&u.prompt, &u.reply),
        (&None, &None),
        "sent only when the node keeps them"
    );
    // The request is a faithful chat-completions request.
    let sent = &fake.seen()[0].body;
    assert_eq!(sent["model"], "echo");
    assert_eq!(
        sent["messages"],
        json!([{ "role": "system", "content": "Be brief." }, { "role": "user", "content": "hello there" }])
    );
    assert_eq!(
        (sent["max_tokens"].clone(), sent["temperature"].clone()),
        (json!(50), json!(0.2))
    );
    assert_eq!(sent["stream"], false);
    assert!(sent.get("response_format").is_none());
}

#[tokio::test]
async fn a_streamed_reply_becomes_progress_events_and_reads_usage_from_the_last_chunk() {
    let fake = Fake::start().await;
    let llm = Llm::new(config(&fake, &[]));
    let (out, seen) = run(&llm, json!({ "model": "words", "prompt": "go", "max_tokens": 8 })).await;
    let r = out.unwrap();
    fits(&llm, &r);
    assert_eq!(r["content"], "The quick brown fox jumps over the dog.");
    assert_eq!(
        r["usage"],
        json!({ "tokens_in": 11, "tokens_out": 8, "estimated": false })
    );
    let progress = seen.progress.lock().unwrap().clone();
    // Tokens arrive 90 ms apart and progress is sent at most every 200 ms: several events,
    // fewer than tokens, together carrying the whole text in order, fractions rising.
    assert!(progress.len() >= 2 && progress.len() < 8, "{progress:?}");
    let text: String = progress.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(text, "The quick brown fox jumps over the dog.");
    assert!(progress.windows(2).all(|w| w[0].0 <= w[1].0), "{progress:?}");
    let sent = &fake.seen()[0].body;
    assert_eq!(
        (sent["stream"].clone(), sent["stream_options"].clone()),
        (json!(true), json!({ "include_usage": true }))
    );
}

#[tokio::test]
async fn a_failing_model_falls_back_along_its_chain() {
    let fake = Fake::start().await;
    let llm = Llm::new(config(&fake, &[("boom", &["unauthorized", "slow", "echo"])]));
    let (out, seen) = run(&llm, json!({ "model": "boom", "prompt": "hi" })).await;
    let r = out.unwrap();
    fits(&llm, &r);
    assert_eq!(r["model"], "echo");
    let failed: Vec<(String, String)> = r["failed_attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["model"].as_str().unwrap().into(),
                a["error"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(failed.len(), 3, "{failed:?}");
    assert_eq!(failed[0].0, "boom");
    assert!(failed[0].1.contains("HTTP 500") && failed[0].1.contains("The server had an error"));
    assert!(failed[1].1.contains("HTTP 401"), "{failed:?}");
    assert_eq!(failed[2].0, "slow");
    assert!(failed[2].1.contains("no reply within 300 ms"), "{failed:?}");
    // Only the model that answered is charged.
    assert_eq!(seen.usage.lock().unwrap().len(), 1);
    assert_eq!(seen.usage.lock().unwrap()[0].model, "echo");
}

#[tokio::test]
async fn retry_after_puts_a_provider_aside_for_every_task() {
    let fake = Fake::start().await;
    let llm = Llm::new(config(&fake, &[("rate", &["echo"])]));
    for _ in 0..3 {
        let (out, _) = run(&llm, json!({ "model": "rate", "prompt": "hi", "cache": false })).await;
        let r = out.unwrap();
        assert_eq!(r["model"], "echo");
        assert!(
            r["failed_attempts"][0]["error"].as_str().unwrap().contains("429")
                || r["failed_attempts"][0]["error"]
                    .as_str()
                    .unwrap()
                    .contains("rate-limited for")
        );
    }
    // Retry-After: 30 — the provider was asked once; later tasks skipped it.
    assert_eq!(fake.count("rate"), 1);
    // A chain that is all rate-limited for longer than max_retry_after_ms ends the attempt at
    // once as rate-limited, saying for how long (the supervisor holds the type that long).
    let mut short = config(&fake, &[]);
    short.max_retry_after_ms = 1_000;
    let lone = Llm::new(short);
    let (first, _) = run(&lone, json!({ "model": "rate", "prompt": "hi" })).await;
    match first {
        Err(ExecError::RateLimited { message, retry_after }) => {
            assert!(
                message.contains("every model is rate-limited") && message.contains("HTTP 429"),
                "{message}"
            );
            assert!(
                retry_after <= Duration::from_secs(30) && retry_after > Duration::from_secs(25),
                "{retry_after:?}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_retry_after_date_is_read_as_a_wait() {
    let fake = Fake::start().await;
    let mut short = config(&fake, &[]);
    short.max_retry_after_ms = 1_000;
    let llm = Llm::new(short);
    let (out, _) = run(&llm, json!({ "model": "rate-date", "prompt": "hi" })).await;
    match out {
        // 20 s ahead at one-second resolution, not the 1 s an unread date used to count as.
        Err(ExecError::RateLimited { retry_after, .. }) => assert!(
            retry_after > Duration::from_secs(15) && retry_after <= Duration::from_secs(20),
            "{retry_after:?}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.count("rate-date"), 1);
}

#[tokio::test]
async fn a_short_retry_after_is_waited_out() {
    let fake = Fake::start().await;
    let llm = Llm::new(config(&fake, &[]));
    let (out, seen) = run(&llm, json!({ "model": "rate-once", "prompt": "hi" })).await;
    let r = out.unwrap();
    assert_eq!(r["content"], "after the wait");
    assert_eq!(fake.count("rate-once"), 2);
    let waited = seen
        .progress
        .lock()
        .unwrap()
        .iter()
        .any(|(_, m)| m.starts_with("rate-limited; waiting"));
    assert!(waited);
}

#[tokio::test]
async fn errors_are_classified() {
    let fake = Fake::start().await;
    let llm = Llm::new(config(&fake, &[]));
    let err = |p: Value| {
        let llm = &llm;
        async move { run(llm, p).await.0.unwrap_err() }
    };
    // 500 and timeouts: another attempt may work.
    assert!(
        matches!(err(json!({ "model": "boom", "prompt": "x" })).await, ExecError::Retryable(m) if m.contains("HTTP 500"))
    );
    assert!(
        matches!(err(json!({ "model": "slow", "prompt": "x" })).await, ExecError::Retryable(m) if m.contains("no reply within"))
    );
    // A provider that is set up wrong, or a request the provider refuses: another attempt
    // would repeat it.
    assert!(
        matches!(err(json!({ "model": "unauthorized", "prompt": "x" })).await, ExecError::Fatal(m) if m.contains("HTTP 401") && m.contains("Incorrect API key"))
    );
    assert!(
        matches!(err(json!({ "model": "bad", "prompt": "x" })).await, ExecError::Fatal(m) if m.contains("refused") && m.contains("HTTP 400"))
    );
    // A reply larger than max_response_bytes is not read to the end.
    let mut small = config(&fake, &[]);
    small.max_response_bytes = 1 << 20;
    let (out, _) = run(
        &Llm::new(small),
        json!({ "model": "huge", "prompt": "x", "stream": false }),
    )
    .await;
    assert!(matches!(out, Err(ExecError::Retryable(m)) if m.contains("exceeds 1048576 bytes")));
    // A provider nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut down = config(&fake, &[]);
    down.providers.get_mut("p2").unwrap().base_url = format!("http://127.0.0.1:{port}/v1");
    let (out, _) = run(&Llm::new(down), json!({ "prompt": "x" })).await;
    assert!(matches!(out, Err(ExecError::Retryable(m)) if m.contains("reply failed")),);
}

#[tokio::test]
async fn bad_params_are_refused_before_any_request() {
    let fake = Fake::start().await;
    let llm = Llm::new(config(&fake, &[]));
    for (params, want) in [
        (json!({}), "give `messages` or `prompt`"),
        (
            json!({ "prompt": "a", "messages": [{ "role": "user", "content": "b" }] }),
            "not both",
        ),
        (json!({ "messages": [] }), "1 to 256 messages"),
        (
            json!({ "prompt": "a", "model": "gpt-9" }),
            "unknown model \"gpt-9\"",
        ),
        (json!({ "prompt": "a", "temperature": 3.0 }), "between 0 and 2"),
        (
            json!({ "prompt": "a", "response_schema": { "type": "strin" } }),
            "`response_schema`: not a valid JSON Schema",
        ),
        (json!({ "prompt": "a", "messages_": [] }), "unknown field"),
        (
            json!({ "messages": [{ "role": "robot", "content": "b" }] }),
            "unknown variant",
        ),
    ] {
        match run(&llm, params.clone()).await.0 {
            Err(ExecError::InvalidParams(m)) => assert!(m.contains(want), "{params}: {m}"),
            other => panic!("{params}: {other:?}"),
        }
    }
    assert!(fake.seen().is_empty());
    let unconfigured = Llm::new(LlmConfig::default());
    let (out, _) = run(&unconfigured, json!({ "prompt": "a", "model": "m" })).await;
    assert!(matches!(out, Err(ExecError::Fatal(m)) if m.contains("no models configured")));
    let (out, _) = run(&unconfigured, json!({ "prompt": "a" })).await;
    assert!(matches!(out, Err(ExecError::InvalidParams(m)) if m.contains("default_model is not set")));
}

#[tokio::test]
async fn a_missing_usage_is_estimated_and_the_api_key_comes_from_the_environment() {
    let fake = Fake::start().await;
    let mut cfg = config(&fake, &[]);
    // An environment variable every test process has stands in for an API key (tests cannot
    // set variables: this crate forbids unsafe code).
    cfg.providers.get_mut("p1").unwrap().api_key_env = "PATH".into();
    let llm = Llm::new(cfg.clone());
    let (out, seen) = run(&llm, json!({ "model": "no-usage", "prompt": "12345678" })).await;
    let r = out.unwrap();
    fits(&llm, &r);
    assert_eq!(
        r["usage"],
        json!({ "tokens_in": 2, "tokens_out": 4, "estimated": true })
    );
    assert_eq!(seen.usage.lock().unwrap()[0].tokens_out, 4);
    let key = std::env::var("PATH").unwrap();
    assert_eq!(fake.seen()[0].authorization, Some(format!("Bearer {key}")));
    // A key variable that is not set: the provider is skipped with a clear reason and the
    // key never appears in an error.
    cfg.providers.get_mut("p1").unwrap().api_key_env = "CADRE_TEST_SURELY_UNSET_KEY".into();
    let (out, _) = run(&Llm::new(cfg), json!({ "model": "boom", "prompt": "x" })).await;
    match out {
        Err(ExecError::Fatal(m)) => {
            assert!(
                m.contains("CADRE_TEST_SURELY_UNSET_KEY (the API key) is not set"),
                "{m}"
            );
            assert!(!m.contains(&key));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.count("boom"), 0);
}

#[tokio::test]
async fn structured_output_is_validated_and_retried_once() {
    let fake = Fake::start().await;
    let llm = Llm::new(config(&fake, &[]));
    let schema = json!({
        "type": "object",
        "properties": { "answer": { "type": "integer" } },
        "required": ["answer"],
        "additionalProperties": false,
    });
    let (out, seen) = run(
        &llm,
        json!({ "model": "json-second", "prompt": "6*7?", "response_schema": schema }),
    )
    .await;
    let r = out.unwrap();
    fits(&llm, &r);
    assert_eq!(r["json"], json!({ "answer": 42 }));
    assert_eq!(fake.count("json-second"), 2);
    // Both calls are charged and counted.
    assert_eq!(seen.usage.lock().unwrap().len(), 2);
    assert_eq!(r["usage"]["tokens_in"], 22);
    let seen_requests = fake.seen();
    assert_eq!(
        seen_requests[0].body["response_format"]["json_schema"]["schema"],
        schema
    );
    let retry = seen_requests[1].body["messages"].as_array().unwrap();
    assert_eq!(retry.len(), 3);
    assert_eq!(retry[1]["role"], "assistant");
    assert!(
        retry[2]["content"]
            .as_str()
            .unwrap()
            .contains("does not fit the required JSON Schema")
    );
    let (out, _) = run(
        &llm,
        json!({ "model": "json-never", "prompt": "6*7?", "response_schema": schema }),
    )
    .await;
    match out {
        Err(ExecError::Fatal(m)) => assert!(m.contains("after one retry") && m.contains("/answer"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.count("json-never"), 2);
}

#[tokio::test]
async fn identical_requests_are_answered_from_the_cache() {
    let fake = Fake::start().await;
    let llm = Llm::new(config(&fake, &[]));
    let params = json!({ "prompt": "same", "stream": false });
    let (first, _) = run(&llm, params.clone()).await;
    let (second, seen) = run(&llm, params.clone()).await;
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(second["cached"], true);
    fits(&llm, &second);
    assert_eq!(second["content"], first["content"]);
    assert_eq!(fake.count("echo"), 1);
    // A cached reply costs nothing: its report (for the call record) says it was a cache hit,
    // of the model that answered first, with no tokens.
    let hits = seen.usage.lock().unwrap().clone();
    assert_eq!(hits.len(), 1, "{hits:?}");
    let h = &hits[0];
    assert!(h.cache_hit && h.tokens_in == 0 && h.tokens_out == 0, "{h:?}");
    assert_eq!((h.model.as_str(), h.model_requested.as_str()), ("echo", "echo"));
    // Streaming does not change the answer, so it shares the entry; other content does not.
    let (third, _) = run(&llm, json!({ "prompt": "same" })).await;
    assert_eq!(third.unwrap()["cached"], true);
    run(&llm, json!({ "prompt": "other" })).await.0.unwrap();
    run(&llm, json!({ "prompt": "same", "cache": false }))
        .await
        .0
        .unwrap();
    assert_eq!(fake.count("echo"), 3);
    // Another tenant does not get this tenant's cached reply.
    let other = llm
        .execute(
            ctx_with(Arc::new(Seen::default()), CancellationToken::new()).with_tenant("other".into()),
            params.clone(),
        )
        .await
        .unwrap();
    assert_eq!(other["cached"], false);
    assert_eq!(fake.count("echo"), 4);
    let mut off = config(&fake, &[]);
    off.cache_entries = 0;
    let off = Llm::new(off);
    run(&off, params.clone()).await.0.unwrap();
    assert_eq!(run(&off, params).await.0.unwrap()["cached"], false);
}

#[tokio::test]
async fn cancelling_stops_a_stalled_stream_and_a_slow_reply() {
    let fake = Fake::start().await;
    let mut cfg = config(&fake, &[]);
    for p in cfg.providers.values_mut() {
        p.timeout_ms = 60_000;
    }
    let llm = Arc::new(Llm::new(cfg));
    for model in ["stall", "slow"] {
        let seen = Arc::new(Seen::default());
        let cancel = CancellationToken::new();
        let run = tokio::spawn({
            let (llm, ctx) = (llm.clone(), ctx_with(seen.clone(), cancel.clone()));
            async move { llm.execute(ctx, json!({ "model": model, "prompt": "x" })).await }
        });
        while fake.count(model) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        cancel.cancel();
        let out = tokio::time::timeout(Duration::from_secs(5), run)
            .await
            .expect("cancel is prompt");
        assert_eq!(out.unwrap(), Err(ExecError::Cancelled), "{model}");
    }
}

#[test]
fn config_problems_are_all_reported() {
    let mut c = LlmConfig::default();
    assert!(c.validate().is_empty());
    c.default_model = "nope".into();
    c.providers.insert(
        "p".into(),
        ProviderConfig {
            kind: ProviderKind::Openai,
            default_max_tokens: 4_096,
            base_url: "ftp://x".into(),
            api_key_env: "A-B".into(),
            connect_timeout_ms: 0,
            timeout_ms: 1,
        },
    );
    c.models.insert(
        "m".into(),
        ModelConfig {
            provider: "q".into(),
            model: String::new(),
            fallback: vec!["zz".into()],
        },
    );
    c.max_response_bytes = 10;
    let errs = c.validate();
    for want in [
        "llm.default_model: \"nope\" is not in llm.models",
        "llm.providers.p.base_url: \"ftp://x\" is not an http(s) URL",
        "llm.providers.p.api_key_env: \"A-B\" is not an environment variable name",
        "llm.providers.p: timeouts must be above 0",
        "llm.models.m.provider: \"q\" is not in llm.providers",
        "llm.models.m.model: must not be empty",
        "llm.models.m.fallback: \"zz\" is not in llm.models",
        "llm.max_response_bytes: must be between 1 KiB and 64 MiB",
    ] {
        assert!(errs.iter().any(|e| e == want), "{want} not in {errs:?}");
    }
}

#[test]
fn chains_visit_each_model_once_in_order() {
    let mut c = LlmConfig::default();
    for (name, fb) in [
        ("a", vec!["b", "c"]),
        ("b", vec!["d", "a"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ] {
        c.models.insert(
            name.into(),
            ModelConfig {
                provider: "p".into(),
                model: name.into(),
                fallback: fb.into_iter().map(String::from).collect(),
            },
        );
    }
    assert_eq!(c.chain("a"), ["a", "b", "d", "c"]);
    assert_eq!(c.chain("d"), ["d"]);
    assert!(c.chain("zz").is_empty());
}
