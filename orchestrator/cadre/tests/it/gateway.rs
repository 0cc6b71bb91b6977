//! The OpenAI-compatible model gateway (`POST /v1/chat/completions`, `GET /v1/models`) from
//! the outside, with the local fake provider (`cadre-fake-llm`) as the upstream: the official
//! `openai` Python package drives it (tests/python/openai_check.py), and each request is then
//! read back as the task it was, of the caller's tenant. Here too: the error shapes of bad
//! requests, and how the failure of every upstream maps to 502, 504 and 429.

use cadre_fake_llm::Fake;
use cadre_proto::v1;
use serde_json::{Value, json};

use crate::clients::python_script;
use crate::common::{TestNode, http_exchange, issue};

/// The gateway's models on the fake, and the limits of tenants `poor` and `hasty`.
fn config(fake: &Fake) -> String {
    let models = [
        ("echo", "a", "echo", ""),
        ("words", "a", "words", ""),
        ("json", "a", "json-second", ""),
        ("never", "a", "json-never", ""),
        ("tools", "a", "script", ""),
        ("flaky", "a", "boom", "backup"),
        ("backup", "b", "echo", ""),
        ("down", "a", "boom", ""),
        ("limited", "a", "rate", ""),
        ("slow", "slowpoke", "slow", ""),
    ];
    let mut toml = format!(
        "[executors.llm]\ncache_entries = 0\nmax_retry_after_ms = 0\n\
         [executors.llm.providers.a]\nbase_url = \"{0}\"\n\
         [executors.llm.providers.b]\nbase_url = \"{0}\"\n\
         [executors.llm.providers.slowpoke]\nbase_url = \"{0}\"\ntimeout_ms = 300\n\
         [budgets.models.echo]\ninput_per_1k = 0.01\noutput_per_1k = 0.01\n\
         [budgets.tenants.poor]\ndaily_tokens = 1\n\
         [quotas.tenants.hasty]\nsubmits_per_second = 1\nburst = 1\n",
        fake.base_url
    );
    for (name, provider, model, fallback) in models {
        toml.push_str(&format!(
            "[executors.llm.models.{name}]\nprovider = \"{provider}\"\nmodel = \"{model}\"\n"
        ));
        if !fallback.is_empty() {
            toml.push_str(&format!("fallback = [\"{fallback}\"]\n"));
        }
    }
    toml
}

/// The tasks openai_check.py reports: (what, task id, prompt tokens, completion tokens).
fn reported(stdout: &str) -> Vec<(String, String, u64, u64)> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("task "))
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (
                f[0].into(),
                f[1].into(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_openai_sdk_runs_chats_as_tasks_of_its_tenant() {
    let fake = Fake::start().await;
    let node = TestNode::start(&config(&fake)).await;
    let acme = issue(&node, "acme", "operator").await;
    let observer = issue(&node, "acme", "observer").await;
    let poor = issue(&node, "poor", "operator").await;
    let hasty = issue(&node, "hasty", "operator").await;
    let args = [
        "--http",
        &node.http,
        "--observer",
        &observer,
        "--poor",
        &poor,
        "--hasty",
        &hasty,
    ];
    let stdout = python_script("openai_check.py", &args, &acme).await;
    assert!(
        stdout.ends_with("OK\n"),
        "openai_check.py ends with OK:\n{stdout}"
    );

    // Each request is an llm task of acme's, with the usage the answer reported, priced.
    let tasks = reported(&stdout);
    let whats: Vec<&str> = tasks.iter().map(|t| t.0.as_str()).collect();
    assert_eq!(whats, ["plain", "stream", "structured", "fallback"], "{stdout}");
    let mut c = node.tasks_as(Some(&acme)).await;
    for (what, id, tokens_in, tokens_out) in &tasks {
        let t = c
            .get(v1::GetRequest { id: id.clone() })
            .await
            .unwrap_or_else(|e| panic!("{what}: task {id}: {e}"))
            .into_inner();
        assert_eq!(
            (t.tenant.as_str(), t.state),
            ("acme", v1::TaskState::Succeeded as i32),
            "{what}: {t:?}"
        );
        assert_eq!(t.spec.as_ref().unwrap().task_type, "intelligence.llm.chat");
        let used: (u64, u64) = t
            .usage
            .iter()
            .fold((0, 0), |a, u| (a.0 + u.tokens_in, a.1 + u.tokens_out));
        assert_eq!(used, (*tokens_in, *tokens_out), "{what}: {:?}", t.usage);
    }
    let plain = &tasks[0].1;
    let t = c
        .get(v1::GetRequest { id: plain.clone() })
        .await
        .unwrap()
        .into_inner();
    assert!(t.usage[0].cost_usd > 0.0, "priced: {:?}", t.usage);
    let params: Value = serde_json::from_str(&t.spec.unwrap().params_json).unwrap();
    assert_eq!(
        params["messages"],
        json!([{"role": "user", "content": "hello gateway"}])
    );
    // Another tenant does not see it.
    let mut other = node.tasks_as(Some(&poor)).await;
    let err = other.get(v1::GetRequest { id: plain.clone() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    // The fallback went to the second provider after the first failed.
    assert!(fake.count("boom") >= 1 && fake.count("echo") >= 2);
}

/// A chat request over a raw socket: (status, headers, body as JSON).
async fn chat(node: &TestNode, bearer: Option<&str>, body: &str) -> (u16, Vec<(String, String)>, Value) {
    let auth = bearer.map(|b| format!("Bearer {b}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    let (status, h, body) = http_exchange(node, "POST", "/v1/chat/completions", &headers, Some(body)).await;
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {body}"));
    (status, h, v)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Asserts OpenAI's error shape: `{"error": {"message", "type", "param", "code"}}`.
fn assert_error(
    what: &str,
    got: &(u16, Vec<(String, String)>, Value),
    status: u16,
    code: &str,
    param: Option<&str>,
) {
    let (s, _, body) = got;
    assert_eq!(*s, status, "{what}: {body}");
    let e = body["error"]
        .as_object()
        .unwrap_or_else(|| panic!("{what}: {body}"));
    let mut keys: Vec<&str> = e.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["code", "message", "param", "type"], "{what}: {body}");
    assert_eq!(e["code"], code, "{what}: {body}");
    assert_eq!(e["param"].as_str(), param, "{what}: {body}");
    assert!(!e["message"].as_str().unwrap().is_empty(), "{what}: {body}");
}

#[tokio::test]
async fn bad_requests_get_openai_errors_before_any_task() {
    let fake = Fake::start().await;
    let node = TestNode::start(&config(&fake)).await;
    let key = node
        .admin()
        .await
        .create_api_key(v1::CreateApiKeyRequest {
            name: "app".into(),
            tenant: "acme".into(),
            role: "operator".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .secret;
    let k = Some(key.as_str());
    let user = json!([{"role": "user", "content": "hi"}]);

    let got = chat(&node, k, "{not json").await;
    assert_error("bad JSON", &got, 400, "invalid_argument", Some("body"));
    let got = chat(&node, k, &json!({"messages": user}).to_string()).await;
    assert_error("no model", &got, 400, "invalid_argument", Some("model"));
    let many: Vec<Value> = (0..257)
        .map(|_| json!({"role": "user", "content": "x"}))
        .collect();
    let got = chat(&node, k, &json!({"model": "echo", "messages": many}).to_string()).await;
    assert_error("257 messages", &got, 400, "invalid_argument", Some("messages"));
    let got = chat(
        &node,
        k,
        &json!({"model": "echo", "messages": [{"role": "robot", "content": "x"}]}).to_string(),
    )
    .await;
    assert_error(
        "a bad role",
        &got,
        400,
        "invalid_argument",
        Some("messages[0].role"),
    );
    let img = json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}]);
    let got = chat(&node, k, &json!({"model": "echo", "messages": img}).to_string()).await;
    assert_error(
        "an image",
        &got,
        400,
        "unsupported_parameter",
        Some("messages[0].content[0]"),
    );
    let got = chat(
        &node,
        k,
        &json!({"model": "echo", "messages": user, "logprobs": true}).to_string(),
    )
    .await;
    assert_error("logprobs", &got, 400, "unsupported_parameter", Some("logprobs"));
    let got = chat(&node, k, &json!({"model": "gpt-9", "messages": user}).to_string()).await;
    assert_error("an unknown model", &got, 404, "model_not_found", Some("model"));
    let got = chat(
        &node,
        None,
        &json!({"model": "echo", "messages": user}).to_string(),
    )
    .await;
    assert_error("no credential", &got, 401, "unauthenticated", None);
    assert_eq!(header(&got.1, "www-authenticate"), Some("Bearer"));
    let observer = issue(&node, "acme", "observer").await;
    let got = chat(
        &node,
        Some(&observer),
        &json!({"model": "echo", "messages": user}).to_string(),
    )
    .await;
    assert_error("an observer", &got, 403, "permission_denied", None);
    // None of them made a task; the API key's request does.
    let none = node
        .tasks()
        .await
        .list(v1::ListRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(none.tasks.is_empty(), "{:?}", none.tasks);
    let (status, headers, body) =
        chat(&node, k, &json!({"model": "echo", "messages": user}).to_string()).await;
    assert_eq!(status, 200, "{body}");
    let task = header(&headers, "x-cadre-task-id").unwrap();
    assert_eq!(body["id"], format!("chatcmpl-{task}"));
    assert_eq!(body["choices"][0]["message"]["content"], "You said: hi");

    // Wrong method: 405; the models list needs a credential too.
    let (status, _, _) = http_exchange(&node, "GET", "/v1/chat/completions", &[], None).await;
    assert_eq!(status, 405);
    let (status, _, body) = http_exchange(&node, "GET", "/v1/models", &[], None).await;
    assert_eq!(status, 401, "{body}");
    let auth = format!("Bearer {key}");
    let (status, _, body) =
        http_exchange(&node, "GET", "/v1/models/nope", &[("Authorization", &auth)], None).await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test]
async fn when_every_upstream_fails_the_status_says_how() {
    let fake = Fake::start().await;
    let node = TestNode::start(&config(&fake)).await;
    let acme = issue(&node, "acme", "operator").await;
    let ask =
        |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}).to_string();

    // 5xx from the only provider: 502, naming the task, which failed.
    let got = chat(&node, Some(&acme), &ask("down")).await;
    assert_error("a 500 upstream", &got, 502, "upstream_error", None);
    let task = header(&got.1, "x-cadre-task-id")
        .expect("the task's id")
        .to_string();
    let mut c = node.tasks_as(Some(&acme)).await;
    let t = c.get(v1::GetRequest { id: task }).await.unwrap().into_inner();
    assert_eq!(t.state, v1::TaskState::Failed as i32, "{t:?}");

    // No answer within the provider's timeout: 504.
    let got = chat(&node, Some(&acme), &ask("slow")).await;
    assert_error("a slow upstream", &got, 504, "upstream_timeout", None);

    // Streamed, a failure before any text is the same HTTP error.
    let streamed = json!({"model": "down", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let got = chat(&node, Some(&acme), &streamed.to_string()).await;
    assert_error("a 500 upstream, streamed", &got, 502, "upstream_error", None);

    // Rate-limited (429, Retry-After: 30; last, as it holds the task type): 429 with the upstream's wait; the task is cancelled
    // rather than left to wait in the queue.
    let got = chat(&node, Some(&acme), &ask("limited")).await;
    assert_error(
        "a rate-limited upstream",
        &got,
        429,
        "upstream_rate_limited",
        None,
    );
    let after: u64 = header(&got.1, "retry-after").unwrap().parse().unwrap();
    assert!((1..=30).contains(&after), "{:?}", got.1);
    let task = header(&got.1, "x-cadre-task-id").unwrap().to_string();
    let t = c.get(v1::GetRequest { id: task }).await.unwrap().into_inner();
    assert_eq!(t.state, v1::TaskState::Cancelled as i32, "{t:?}");
}

#[tokio::test]
async fn a_streamed_answer_is_sse_chunks_ending_with_done() {
    let fake = Fake::start().await;
    let node = TestNode::start(&config(&fake)).await;
    let auth = format!("Bearer {}", issue(&node, "acme", "operator").await);
    let body = json!({
        "model": "echo", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "one two three"}],
    });
    let (status, headers, text) = http_exchange(
        &node,
        "POST",
        "/v1/chat/completions",
        &[("Authorization", &auth)],
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(header(&headers, "content-type"), Some("text/event-stream"));
    let task = header(&headers, "x-cadre-task-id").unwrap();
    let frames: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    assert_eq!(frames.last(), Some(&"[DONE]"), "{text}");
    let chunks: Vec<Value> = frames[..frames.len() - 1]
        .iter()
        .map(|f| serde_json::from_str(f).unwrap())
        .collect();
    for c in &chunks {
        assert_eq!(c["id"], format!("chatcmpl-{task}"), "{c}");
        assert_eq!(c["object"], "chat.completion.chunk", "{c}");
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text_sent: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text_sent, "You said: one two three");
    let (finish, usage) = (&chunks[chunks.len() - 2], &chunks[chunks.len() - 1]);
    assert_eq!(finish["choices"][0]["finish_reason"], "stop", "{finish}");
    assert_eq!(finish["usage"], Value::Null, "{finish}");
    assert_eq!(usage["choices"], json!([]), "{usage}");
    let u = &usage["usage"];
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap()
    );
    // The task is the caller's, and recorded the same usage.
    let mut c = node.tasks_as(Some(auth.trim_start_matches("Bearer "))).await;
    let t = c
        .get(v1::GetRequest { id: task.into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t.tenant, "acme");
    assert_eq!(t.usage[0].tokens_in, u["prompt_tokens"].as_u64().unwrap());
}
