//! Providers of `kind = "anthropic"` against the fake's Messages API (`/v1/messages`, checked
//! as Anthropic checks requests), over real sockets: alone, and in fallback chains with
//! OpenAI-compatible providers both ways.

use super::*;

/// An environment variable every test process has, so `api_key_env` resolves to a key the
/// fake accepts (it only requires one to be present, as Anthropic requires `x-api-key`).
const KEY_ENV: &str = "PATH";

/// Provider `an` (Anthropic) and `oa` (OpenAI-compatible) on one fake, and models named
/// `<cadre name>` -> (provider, fake model, fallbacks).
fn mixed(fake: &Fake, models: &[(&str, &str, &str, &[&str])]) -> LlmConfig {
    let mut an = provider(&fake.anthropic_url);
    an.kind = ProviderKind::Anthropic;
    an.api_key_env = KEY_ENV.into();
    let providers = BTreeMap::from([
        ("an".to_string(), an),
        ("oa".to_string(), provider(&fake.base_url)),
    ]);
    let models = models
        .iter()
        .map(|(name, p, upstream, fallback)| {
            let mut m = model(p, fallback);
            m.model = upstream.to_string();
            (name.to_string(), m)
        })
        .collect();
    LlmConfig {
        providers,
        models,
        cache_entries: 0,
        ..LlmConfig::default()
    }
}

fn errors(r: &Value) -> Vec<String> {
    r["failed_attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| format!("{} ({}): {}", a["model"], a["provider"], a["error"]))
        .collect()
}

#[tokio::test]
async fn a_plain_reply_translates_the_chat_and_reads_usage_with_cache_tokens() {
    let fake = Fake::start().await;
    let llm = Llm::new(mixed(&fake, &[("claude", "an", "echo", &[])]));
    let params = json!({
        "model": "claude", "prompt": "hello there", "system": "Be brief.",
        "stream": false, "temperature": 1.5,
    });
    let (out, seen) = run(&llm, params).await;
    let r = out.unwrap();
    fits(&llm, &r);
    assert_eq!(r["content"], "You said: hello there");
    assert_eq!((&r["model"], &r["provider"]), (&json!("claude"), &json!("an")));
    assert_eq!(r["upstream_model"], "echo-2026");
    assert_eq!(r["finish_reason"], "stop", "end_turn is OpenAI's stop");
    // 5 in + 2 cache write + 4 cache read.
    assert_eq!(
        r["usage"],
        json!({ "tokens_in": 11, "tokens_out": 7, "estimated": false })
    );
    let usage = seen.usage.lock().unwrap().clone();
    let tokens: Vec<_> = usage
        .iter()
        .map(|u| (u.model.as_str(), u.tokens_in, u.tokens_out))
        .collect();
    assert_eq!(tokens, [("claude", 11, 7)]);
    let u = &usage[0];
    assert_eq!(
        (u.provider.as_str(), u.model_requested.as_str()),
        ("an", "claude")
    );
    assert_eq!((u.finish_reason.as_str(), u.cache_hit), ("stop", false));
    assert!(u.started_at_ms > 0 && u.fallbacks.is_empty());
    assert_eq!(
        (&u.prompt, &u.reply),
        (&None, &None),
        "sent only when the node keeps them"
    );
    let s = &fake.seen()[0];
    assert_eq!(s.path, "/v1/messages");
    assert_eq!(s.api_key.as_deref(), std::env::var(KEY_ENV).ok().as_deref());
    assert_eq!(s.authorization, None, "the key goes in x-api-key only");
    assert_eq!(
        s.body,
        json!({
            "model": "echo", "max_tokens": 4096, "stream": false, "temperature": 1.0,
            "system": [{ "type": "text", "text": "Be brief." }],
            "messages": [{ "role": "user", "content": [{ "type": "text", "text": "hello there" }] }],
        })
    );
}

#[tokio::test]
async fn a_streamed_reply_becomes_progress_and_takes_usage_from_message_delta() {
    let fake = Fake::start().await;
    let llm = Llm::new(mixed(&fake, &[("claude", "an", "echo", &[])]));
    let (out, seen) = run(
        &llm,
        json!({ "model": "claude", "prompt": "one two three", "max_tokens": 64 }),
    )
    .await;
    let r = out.unwrap();
    fits(&llm, &r);
    assert_eq!(r["content"], "You said: one two three");
    assert_eq!(r["finish_reason"], "stop");
    assert_eq!(
        r["usage"],
        json!({ "tokens_in": 11, "tokens_out": 7, "estimated": false })
    );
    let progress = seen.progress.lock().unwrap().clone();
    let text: String = progress.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(text, "You said: one two three");
    let sent = &fake.seen()[0].body;
    assert_eq!((&sent["stream"], &sent["max_tokens"]), (&json!(true), &json!(64)));
    assert!(sent.get("stream_options").is_none(), "an OpenAI-only member");
}

fn script_prompt() -> String {
    let turns = json!([
        { "tool_calls": [
            { "name": "lookup", "arguments": { "q": "Zürich \"old town\"", "n": 3 } },
            { "name": "now" },
        ] },
        { "content": "Sunny." },
    ]);
    format!("Weather?\nFAKE_SCRIPT: {turns}")
}

fn tools() -> Value {
    json!([
        { "type": "function", "function": { "name": "lookup", "description": "Looks up",
          "parameters": { "type": "object", "properties": { "q": { "type": "string" } } } } },
        { "type": "function", "function": { "name": "now" } },
    ])
}

/// A two-turn tool conversation, streamed or not: the tool_use blocks come back as OpenAI
/// tool calls (a streamed input assembled from its `input_json_delta` fragments, an empty one
/// as `{}`), and the calls and their results go back as tool_use and tool_result blocks.
async fn tool_conversation(stream: bool) {
    let fake = Fake::start().await;
    let llm = Llm::new(mixed(&fake, &[("claude", "an", "script", &[])]));
    let prompt = script_prompt();
    let first = json!({ "model": "claude", "prompt": prompt, "tools": tools(), "tool_choice": "required", "stream": stream });
    let (out, seen) = run(&llm, first).await;
    let r = out.unwrap();
    fits(&llm, &r);
    assert_eq!(r["finish_reason"], "tool_calls");
    assert_eq!(r["content"], "");
    let calls: Vec<(&str, &str, &str)> = r["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap(),
                c["function"]["name"].as_str().unwrap(),
                c["function"]["arguments"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        calls,
        [
            ("toolu_0_0", "lookup", r#"{"n":3,"q":"Zürich \"old town\""}"#),
            ("toolu_0_1", "now", "{}")
        ]
    );
    if stream {
        let progress = seen.progress.lock().unwrap().clone();
        assert!(progress.iter().any(|(_, m)| m.contains("lookup")), "{progress:?}");
    }
    let sent = &fake.seen()[0].body;
    assert_eq!(sent["tool_choice"], json!({ "type": "any" }));
    assert_eq!(
        sent["tools"],
        json!([
            { "name": "lookup", "description": "Looks up",
              "input_schema": { "type": "object", "properties": { "q": { "type": "string" } } } },
            { "name": "now", "input_schema": { "type": "object", "properties": {} } },
        ])
    );
    let second = json!({
        "model": "claude", "tools": tools(), "stream": stream,
        "messages": [
            { "role": "user", "content": prompt },
            { "role": "assistant", "content": r["content"], "tool_calls": r["tool_calls"] },
            { "role": "tool", "tool_call_id": "toolu_0_0", "content": "{\"sky\": \"clear\"}" },
            { "role": "tool", "tool_call_id": "toolu_0_1", "content": "noon" },
            { "role": "user", "content": "And tomorrow?" },
        ],
    });
    let (out, _) = run(&llm, second).await;
    let r = out.unwrap();
    assert_eq!(
        (&r["content"], &r["finish_reason"]),
        (&json!("Sunny."), &json!("stop"))
    );
    let sent = &fake.seen()[1].body;
    assert_eq!(
        sent["messages"][1],
        json!({ "role": "assistant", "content": [
            { "type": "tool_use", "id": "toolu_0_0", "name": "lookup", "input": { "q": "Zürich \"old town\"", "n": 3 } },
            { "type": "tool_use", "id": "toolu_0_1", "name": "now", "input": {} },
        ] })
    );
    assert_eq!(
        sent["messages"][2],
        json!({ "role": "user", "content": [
            { "type": "tool_result", "tool_use_id": "toolu_0_0", "content": "{\"sky\": \"clear\"}" },
            { "type": "tool_result", "tool_use_id": "toolu_0_1", "content": "noon" },
            { "type": "text", "text": "And tomorrow?" },
        ] }),
        "the tool results and the next user message are one user turn"
    );
}

#[tokio::test]
async fn tool_calls_go_both_ways_in_json() {
    tool_conversation(false).await;
}

#[tokio::test]
async fn tool_calls_go_both_ways_streamed() {
    tool_conversation(true).await;
}

#[tokio::test]
async fn a_429_with_retry_after_is_waited_out_then_answered() {
    let fake = Fake::start().await;
    let llm = Llm::new(mixed(&fake, &[("claude", "an", "rate-once", &[])]));
    let started = std::time::Instant::now();
    let (out, seen) = run(
        &llm,
        json!({ "model": "claude", "prompt": "hi", "stream": false }),
    )
    .await;
    let r = out.unwrap();
    assert_eq!(r["content"], "after the wait");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    let errs = errors(&r);
    assert!(
        errs[0].contains("HTTP 429") && errs[0].contains("rate_limit_error"),
        "{errs:?}"
    );
    let progress = seen.progress.lock().unwrap().clone();
    assert!(
        progress
            .iter()
            .any(|(_, m)| m.starts_with("rate-limited; waiting")),
        "{progress:?}"
    );
}

#[tokio::test]
async fn a_429_without_retry_after_waits_for_the_exhausted_limit_to_reset() {
    let fake = Fake::start().await;
    let mut config = mixed(&fake, &[("claude", "an", "rate-reset", &[])]);
    config.max_retry_after_ms = 0;
    let llm = Llm::new(config);
    let (out, _) = run(&llm, json!({ "model": "claude", "prompt": "hi" })).await;
    match out {
        // The reset is 5 s ahead (in whole seconds): more than the 1 s a bare 429 would give.
        Err(ExecError::RateLimited { retry_after, .. }) => {
            assert!(retry_after >= Duration::from_secs(3), "{retry_after:?}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_reply_that_uses_up_a_limit_sets_the_provider_aside_until_its_reset() {
    let fake = Fake::start().await;
    let mut config = mixed(&fake, &[("claude", "an", "last-request", &[])]);
    config.max_retry_after_ms = 0;
    let llm = Llm::new(config);
    let (out, _) = run(&llm, json!({ "model": "claude", "prompt": "hi" })).await;
    assert_eq!(out.unwrap()["content"], "the last one for now");
    let (out, _) = run(&llm, json!({ "model": "claude", "prompt": "hi" })).await;
    match out {
        Err(ExecError::RateLimited { retry_after, .. }) => {
            assert!(retry_after >= Duration::from_secs(3), "{retry_after:?}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.count("last-request"), 1, "the second request was not sent");
}

#[tokio::test]
async fn an_anthropic_provider_fails_over_to_an_openai_one_and_back() {
    let fake = Fake::start().await;
    let llm = Llm::new(mixed(
        &fake,
        &[
            ("claude-529", "an", "overloaded", &["claude-mid-stream"]),
            ("claude-mid-stream", "an", "overloaded-stream", &["gpt"]),
            ("gpt", "oa", "echo", &[]),
            ("gpt-boom", "oa", "boom", &["claude"]),
            ("claude", "an", "echo", &[]),
        ],
    ));
    let (out, _) = run(&llm, json!({ "model": "claude-529", "prompt": "hi" })).await;
    let r = out.unwrap();
    assert_eq!((&r["model"], &r["provider"]), (&json!("gpt"), &json!("oa")));
    let errs = errors(&r);
    assert!(
        errs[0].contains("HTTP 529") && errs[0].contains("overloaded_error"),
        "{errs:?}"
    );
    assert!(
        errs[1].contains("the stream reported an error: overloaded_error"),
        "an error event on a 200 stream is transient: {errs:?}"
    );
    let (out, usage) = run(
        &llm,
        json!({ "model": "gpt-boom", "prompt": "hi", "stream": false }),
    )
    .await;
    let r = out.unwrap();
    assert_eq!((&r["model"], &r["provider"]), (&json!("claude"), &json!("an")));
    assert_eq!(r["content"], "You said: hi");
    assert!(errors(&r)[0].contains("HTTP 500"), "{:?}", errors(&r));
    assert_eq!(usage.usage.lock().unwrap()[0].model, "claude");
}

#[tokio::test]
async fn what_anthropic_cannot_take_moves_on_without_setting_the_provider_aside() {
    let fake = Fake::start().await;
    let llm = Llm::new(mixed(
        &fake,
        &[
            ("claude-spent", "an", "spent", &["gpt"]),
            ("claude", "an", "echo", &["gpt"]),
            ("gpt", "oa", "echo", &[]),
        ],
    ));
    // A spend limit is not a rate limit: the chain moves on, and the next task tries again.
    for _ in 0..2 {
        let (out, _) = run(&llm, json!({ "model": "claude-spent", "prompt": "hi" })).await;
        let r = out.unwrap();
        assert_eq!(r["model"], "gpt");
        assert!(errors(&r)[0].contains("spend limit reached"), "{:?}", errors(&r));
    }
    assert_eq!(fake.count("spent"), 2);
    // Arguments that are not a JSON object cannot be a tool_use input: the OpenAI model takes
    // the chat as it is.
    let params = json!({ "model": "claude", "messages": [
        { "role": "user", "content": "go" },
        { "role": "assistant", "tool_calls": [{ "id": "c1", "type": "function", "function": { "name": "f", "arguments": "[1]" } }] },
        { "role": "tool", "tool_call_id": "c1", "content": "done" },
    ] });
    let (out, _) = run(&llm, params).await;
    let r = out.unwrap();
    assert_eq!(r["model"], "gpt");
    assert!(errors(&r)[0].contains("not a JSON object"), "{:?}", errors(&r));
    let to_anthropic = fake.seen().iter().filter(|s| s.path == "/v1/messages").count();
    assert_eq!(to_anthropic, 2, "the last Anthropic request was never sent");
}

#[tokio::test]
async fn a_provider_without_a_key_is_refused_by_the_server_and_skipped() {
    let fake = Fake::start().await;
    let mut config = mixed(
        &fake,
        &[("claude", "an", "echo", &["gpt"]), ("gpt", "oa", "echo", &[])],
    );
    config.providers.get_mut("an").unwrap().api_key_env = String::new();
    let llm = Llm::new(config);
    let (out, _) = run(&llm, json!({ "model": "claude", "prompt": "hi" })).await;
    let r = out.unwrap();
    assert_eq!(r["model"], "gpt");
    let errs = errors(&r);
    assert!(
        errs[0].contains("HTTP 401") && errs[0].contains("x-api-key header is required"),
        "{errs:?}"
    );
}

#[tokio::test]
async fn a_response_schema_is_sent_as_output_config_and_checked() {
    let fake = Fake::start().await;
    let llm = Llm::new(mixed(&fake, &[("claude", "an", "script", &[])]));
    let schema = json!({ "type": "object", "required": ["answer"] });
    let prompt = format!("FAKE_SCRIPT: {}", json!([{ "content": "{\"answer\": 42}" }]));
    let (out, _) = run(
        &llm,
        json!({ "model": "claude", "prompt": prompt, "response_schema": schema }),
    )
    .await;
    let r = out.unwrap();
    assert_eq!(r["json"], json!({ "answer": 42 }));
    let sent = &fake.seen()[0].body;
    assert_eq!(
        sent["output_config"],
        json!({ "format": { "type": "json_schema", "schema": schema } })
    );
}

#[test]
fn the_kind_defaults_to_openai_and_anthropic_settings_are_checked() {
    let p: ProviderConfig = serde_json::from_value(json!({ "base_url": "http://x/v1" })).unwrap();
    assert_eq!((p.kind, p.default_max_tokens), (ProviderKind::Openai, 4096));
    let p: ProviderConfig = serde_json::from_value(
        json!({ "kind": "anthropic", "base_url": "https://api.anthropic.com/v1/", "default_max_tokens": 0 }),
    )
    .unwrap();
    assert_eq!(p.kind, ProviderKind::Anthropic);
    let bad = serde_json::from_value::<ProviderConfig>(json!({ "kind": "gemini", "base_url": "http://x" }));
    assert!(bad.unwrap_err().to_string().contains("unknown variant `gemini`"));
    let mut c = LlmConfig::default();
    c.providers.insert("an".into(), p);
    let errs = c.validate();
    for want in [
        "llm.providers.an.base_url: \"https://api.anthropic.com/v1/\" ends in /v1; an anthropic provider's \
         base URL has no version (requests go to <base_url>/v1/messages)",
        "llm.providers.an.default_max_tokens: must be 1 to 1000000, got 0",
    ] {
        assert!(errs.iter().any(|e| e == want), "{want} not in {errs:?}");
    }
}
