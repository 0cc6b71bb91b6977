//! The fake's Anthropic Messages API over real HTTP: Anthropic's refusals in its error shape,
//! the named stream events, rate limits and overload.

use cadre_fake_llm::Fake;
use serde_json::{Value, json};

/// POSTs `body` to `/v1/messages` with `headers`; the status, headers and JSON or text body.
async fn post(
    fake: &Fake,
    headers: &[(&str, &str)],
    body: &Value,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/v1/messages", fake.anthropic_url))
        .json(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap())
}

const AUTH: &[(&str, &str)] = &[("x-api-key", "sk-ant-test"), ("anthropic-version", "2023-06-01")];

fn hello(model: &str) -> Value {
    json!({ "model": model, "max_tokens": 64, "messages": [{ "role": "user", "content": "Hello" }] })
}

/// The body's `error`, checking Anthropic's shape around it.
fn error_of(text: &str) -> (String, String) {
    let v: Value = serde_json::from_str(text).unwrap();
    assert_eq!(v["type"], "error", "{v}");
    (
        v["error"]["type"].as_str().unwrap().to_string(),
        v["error"]["message"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn requests_anthropic_refuses_get_its_error_shape() {
    let fake = Fake::start().await;
    let (status, _, text) = post(&fake, &[("anthropic-version", "2023-06-01")], &hello("echo")).await;
    assert_eq!(status, 401);
    assert_eq!(
        error_of(&text),
        (
            "authentication_error".into(),
            "x-api-key header is required".into()
        )
    );
    let (status, h, text) = post(&fake, &[("x-api-key", "k")], &hello("echo")).await;
    assert_eq!(status, 400);
    assert_eq!(error_of(&text).1, "anthropic-version: header is required");
    assert_eq!(h["request-id"], "req_fake1");
    let use_then = |content: Value| {
        json!({ "model": "echo", "max_tokens": 5, "messages": [
            { "role": "user", "content": "go" },
            { "role": "assistant", "content": [{ "type": "tool_use", "id": "t1", "name": "f", "input": {} }] },
            { "role": "user", "content": content },
        ] })
    };
    for (body, want) in [
        (
            json!({ "model": "echo", "messages": [{ "role": "user", "content": "x" }] }),
            "max_tokens: Field required",
        ),
        (
            json!({ "model": "echo", "max_tokens": 5, "messages": [] }),
            "messages: at least one message is required",
        ),
        (
            json!({ "model": "echo", "max_tokens": 5, "messages": [{ "role": "system", "content": "x" }] }),
            "Unexpected role \"system\"",
        ),
        (
            json!({ "model": "echo", "max_tokens": 5, "messages": [{ "role": "tool", "content": "x" }] }),
            "messages.0.role: Input should be 'user' or 'assistant'",
        ),
        (
            json!({ "model": "echo", "max_tokens": 5, "messages": [{ "role": "user", "content": "" }] }),
            "messages.0: all messages must have non-empty content",
        ),
        (
            use_then(json!("thanks")),
            "`tool_use` ids were found without `tool_result` blocks immediately after: t1",
        ),
        (
            use_then(json!([{ "type": "tool_result", "tool_use_id": "t9" }])),
            "unexpected `tool_use_id` found in `tool_result` blocks: t9",
        ),
        (
            json!({ "model": "echo", "max_tokens": 5, "stream_options": {}, "messages": [{ "role": "user", "content": "x" }] }),
            "stream_options: Extra inputs are not permitted",
        ),
        (
            json!({ "model": "echo", "max_tokens": 5, "temperature": 1.5, "messages": [{ "role": "user", "content": "x" }] }),
            "temperature: Input should be less than or equal to 1",
        ),
        (
            json!({ "model": "echo", "max_tokens": 5, "messages": [{ "role": "user", "content": "x" }],
                    "tools": [{ "type": "function", "function": { "name": "f" } }] }),
            "OpenAI's tool shape is not accepted",
        ),
        (
            json!({ "model": "echo", "max_tokens": 5, "messages": [{ "role": "user", "content": "x" }],
                    "tools": [{ "name": "f", "input_schema": { "type": "object" } }], "tool_choice": { "type": "tool", "name": "g" } }),
            "tool_choice.name: must name one of `tools`",
        ),
    ] {
        let (status, _, text) = post(&fake, AUTH, &body).await;
        assert_eq!(status, 400, "{body}: {text}");
        let (kind, message) = error_of(&text);
        assert_eq!(kind, "invalid_request_error");
        assert!(message.contains(want), "{want:?} not in {message:?}");
    }
    // A tool_use answered by its tool_result passes.
    let ok = use_then(json!([{ "type": "tool_result", "tool_use_id": "t1", "content": "r" }]));
    assert_eq!(post(&fake, AUTH, &ok).await.0, 200);
    let (status, _, text) = post(&fake, AUTH, &hello("claude-nope")).await;
    assert_eq!((status, error_of(&text).0), (404, "not_found_error".into()));
}

#[tokio::test]
async fn a_stream_sends_named_events_in_anthropics_order() {
    let fake = Fake::start().await;
    let script = json!([{ "content": "Hi there.", "tool_calls": [{ "name": "f", "arguments": { "a": "0123456789" } }] }]);
    let body = json!({
        "model": "script", "max_tokens": 64, "stream": true,
        "system": format!("FAKE_SCRIPT: {script}"),
        "messages": [{ "role": "user", "content": "go" }],
    });
    let (status, h, text) = post(&fake, AUTH, &body).await;
    assert_eq!(status, 200);
    assert_eq!(h["content-type"], "text/event-stream");
    let mut names = Vec::new();
    let mut json_parts = String::new();
    let mut first_partial = None;
    for frame in text.split("\n\n").filter(|f| !f.is_empty()) {
        let (event, data) = frame.split_once('\n').unwrap();
        let name = event.strip_prefix("event: ").unwrap();
        let v: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(v["type"], name, "the event name is the data's type");
        if v["delta"]["type"] == "input_json_delta" {
            let part = v["delta"]["partial_json"].as_str().unwrap();
            first_partial.get_or_insert(part.to_string());
            json_parts.push_str(part);
        }
        if name == "message_delta" {
            assert_eq!(v["delta"]["stop_reason"], "tool_use");
            assert!(v["usage"]["output_tokens"].as_u64().unwrap() > 1);
        }
        names.push(name.to_string());
    }
    assert_eq!(first_partial.as_deref(), Some(""));
    assert_eq!(
        serde_json::from_str::<Value>(&json_parts).unwrap(),
        json!({ "a": "0123456789" })
    );
    names.dedup();
    assert_eq!(
        names,
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
}

#[tokio::test]
async fn rate_limits_and_overload_answer_as_anthropic_does() {
    let fake = Fake::start().await;
    let (status, h, text) = post(&fake, AUTH, &hello("rate")).await;
    assert_eq!((status, error_of(&text).0.as_str()), (429, "rate_limit_error"));
    assert_eq!(h["retry-after"], "30");
    assert_eq!(h["anthropic-ratelimit-requests-remaining"], "0");
    assert!(
        h["anthropic-ratelimit-requests-reset"]
            .to_str()
            .unwrap()
            .ends_with('Z')
    );
    let (status, _, text) = post(&fake, AUTH, &hello("overloaded")).await;
    assert_eq!((status, error_of(&text).0.as_str()), (529, "overloaded_error"));
    let (status, h, _) = post(&fake, AUTH, &hello("rate-once")).await;
    assert_eq!((status, h["retry-after"].to_str().unwrap()), (429, "1"));
    let (status, _, text) = post(&fake, AUTH, &hello("rate-once")).await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        v["content"],
        json!([{ "type": "text", "text": "after the wait" }])
    );
    assert_eq!(v["stop_reason"], "end_turn");
    let mut stream = hello("overloaded-stream");
    stream["stream"] = json!(true);
    let (status, _, text) = post(&fake, AUTH, &stream).await;
    assert_eq!(status, 200);
    assert!(
        text.contains(
            "event: error\ndata: {\"error\":{\"message\":\"Overloaded\",\"type\":\"overloaded_error\"}"
        ),
        "{text}"
    );
    let seen = fake.seen();
    assert!(
        seen.iter()
            .all(|s| s.path == "/v1/messages" && s.api_key.as_deref() == Some("sk-ant-test"))
    );
}
