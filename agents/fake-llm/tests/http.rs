//! The fake over real HTTP: OpenAI's refusals, the scripted models in both modes, the seen
//! requests, and the binary.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use cadre_fake_llm::Fake;
use serde_json::{Value, json};

async fn post(fake: &Fake, body: &Value) -> (u16, String) {
    let resp = reqwest::Client::new()
        .post(format!("{}/chat/completions", fake.base_url))
        .json(body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// The `data:` payloads of an SSE body, `[DONE]` left out.
fn events(sse: &str) -> Vec<Value> {
    sse.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

fn call(id: &str, name: &str) -> Value {
    json!({ "id": id, "type": "function", "function": { "name": name, "arguments": "{}" } })
}

#[tokio::test]
async fn requests_openai_refuses_get_a_400_naming_the_param() {
    let fake = Fake::start().await;
    let user = json!({ "role": "user", "content": "hi" });
    let asked =
        json!({ "role": "assistant", "content": null, "tool_calls": [call("c1", "f"), call("c2", "g")] });
    let answer = |id: &str| json!({ "role": "tool", "tool_call_id": id, "content": "ok" });
    let tool = |name: &str| json!({ "type": "function", "function": { "name": name, "parameters": { "type": "object" } } });
    for (body, param, says) in [
        (
            json!({ "model": "echo", "messages": [user, answer("c1")] }),
            "messages.[1].role",
            "must be a response to a preceeding message with 'tool_calls'",
        ),
        (
            json!({ "model": "echo", "messages": [user, asked, answer("c1"), answer("c3")] }),
            "messages.[3].tool_call_id",
            "'tool_call_id' of 'c3' not found",
        ),
        (
            json!({ "model": "echo", "messages": [user, asked, answer("c2"), user] }),
            "messages.[1].role",
            "did not have response messages: c1",
        ),
        (
            json!({ "model": "echo", "messages": [user, asked, answer("c1"), answer("c2"), { "role": "tool", "content": "x" }] }),
            "messages.[4].tool_call_id",
            "Missing required parameter",
        ),
        (
            json!({ "model": "echo", "messages": [user], "tools": [{ "type": "function" }] }),
            "tools[0].function",
            "Missing required parameter",
        ),
        (
            json!({ "model": "echo", "messages": [user], "tools": [tool("a.b")] }),
            "tools[0].function.name",
            "does not match pattern",
        ),
        (
            json!({ "model": "echo", "messages": [user], "tools": [tool("f"), { "type": "function", "function": { "name": "g", "parameters": "{}" } }] }),
            "tools[1].function.parameters",
            "expected an object, but got a string",
        ),
        (
            json!({ "model": "echo", "messages": [user], "tools": [] }),
            "tools",
            "empty array",
        ),
        (
            json!({ "model": "echo", "messages": [user], "tool_choice": "auto" }),
            "tool_choice",
            "only allowed when 'tools' are specified",
        ),
        (
            json!({ "model": "echo", "messages": [user], "tools": [tool("f")], "tool_choice": { "type": "function", "function": { "name": "g" } } }),
            "tool_choice.function.name",
            "'g' is not among 'tools'",
        ),
        (
            json!({ "model": "echo", "messages": [user], "stream_options": { "include_usage": true } }),
            "stream_options",
            "only allowed when 'stream' is enabled",
        ),
    ] {
        let (status, text) = post(&fake, &body).await;
        assert_eq!(status, 400, "{body}: {text}");
        let err: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(err["error"]["type"], "invalid_request_error", "{text}");
        assert_eq!(err["error"]["param"], param, "{text}");
        assert!(err["error"]["message"].as_str().unwrap().contains(says), "{text}");
    }
    // A whole conversation, every call answered, is taken.
    let ok = json!({ "model": "echo", "messages": [user, asked, answer("c2"), answer("c1"), user],
                     "tools": [tool("f"), tool("g")], "tool_choice": "required" });
    assert_eq!(post(&fake, &ok).await.0, 200);
}

const SCRIPT: &str = r#"FAKE_SCRIPT: [{"tool_calls":[{"name":"weather","arguments":{"city":"Paris","days":3}},{"name":"time","arguments":{}}]},{"content":"Sunny."}]"#;

#[tokio::test]
async fn a_script_is_followed_turn_by_turn_in_json() {
    let fake = Fake::start().await;
    let system = json!({ "role": "system", "content": format!("Be brief.\n{SCRIPT}") });
    let user = json!({ "role": "user", "content": "Weather?" });
    let (status, text) = post(&fake, &json!({ "model": "script", "messages": [system, user] })).await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    assert_eq!(
        choice["message"]["tool_calls"],
        json!([
            { "id": "call_0_0", "type": "function", "function": { "name": "weather", "arguments": "{\"city\":\"Paris\",\"days\":3}" } },
            { "id": "call_0_1", "type": "function", "function": { "name": "time", "arguments": "{}" } },
        ])
    );
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    // Turn 1: the assistant message and its answers are in the request.
    let asked =
        json!({ "role": "assistant", "content": null, "tool_calls": choice["message"]["tool_calls"] });
    let mut messages = vec![system, user, asked];
    for id in ["call_0_0", "call_0_1"] {
        messages.push(json!({ "role": "tool", "tool_call_id": id, "content": "ok" }));
    }
    let (_, text) = post(&fake, &json!({ "model": "script", "messages": messages })).await;
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "Sunny.");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["choices"][0]["message"].get("tool_calls").is_none());
    // Past the end of the script.
    messages.push(json!({ "role": "assistant", "content": "Sunny." }));
    messages.push(json!({ "role": "user", "content": "Thanks" }));
    let (_, text) = post(&fake, &json!({ "model": "script", "messages": messages })).await;
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "done after 2 tool results");
    // A script that is not JSON is refused, saying so.
    let bad = json!({ "model": "script", "messages": [{ "role": "user", "content": "FAKE_SCRIPT: [nope" }] });
    let (status, text) = post(&fake, &bad).await;
    assert_eq!(status, 400);
    assert!(text.contains("FAKE_SCRIPT is not JSON"), "{text}");
}

#[tokio::test]
async fn a_script_streams_tool_calls_as_openai_does() {
    let fake = Fake::start().await;
    let body = json!({
        "model": "script", "stream": true, "stream_options": { "include_usage": true },
        "messages": [{ "role": "user", "content": SCRIPT }],
    });
    let (status, text) = post(&fake, &body).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"));
    let chunks = events(&text);
    let deltas: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0))
        .map(|c| &c["delta"])
        .collect();
    assert_eq!(deltas[0]["role"], "assistant");
    // Each call: id, type and name once, in its first delta; the arguments in fragments.
    let mut ids = Vec::new();
    let mut names = Vec::new();
    let mut args = vec![String::new(), String::new()];
    let mut fragments = [0, 0];
    for d in &deltas {
        for tc in d["tool_calls"].as_array().into_iter().flatten() {
            let k = tc["index"].as_u64().unwrap() as usize;
            if let Some(id) = tc.get("id") {
                ids.push((k, id.as_str().unwrap().to_string()));
                names.push(tc["function"]["name"].as_str().unwrap().to_string());
                assert_eq!(tc["type"], "function");
                assert_eq!(tc["function"]["arguments"], "");
            } else {
                assert!(tc["function"].get("name").is_none());
                args[k].push_str(tc["function"]["arguments"].as_str().unwrap());
                fragments[k] += 1;
            }
        }
    }
    assert_eq!(ids, [(0, "call_0_0".to_string()), (1, "call_0_1".to_string())]);
    assert_eq!(names, ["weather", "time"]);
    assert_eq!(args, ["{\"city\":\"Paris\",\"days\":3}", "{}"]);
    assert!(fragments[0] >= 3, "{fragments:?}");
    let finish: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0))
        .map(|c| &c["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, [&json!("tool_calls")]);
    // The last chunk has no choices and the usage; the others say usage null.
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert!(last["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    assert!(
        chunks[..chunks.len() - 1]
            .iter()
            .all(|c| c["usage"].is_null() && c.get("usage").is_some())
    );
    // Without include_usage: no usage chunk.
    let mut plain = body.clone();
    plain.as_object_mut().unwrap().remove("stream_options");
    let (_, text) = post(&fake, &plain).await;
    assert!(events(&text).iter().all(|c| c.get("usage").is_none()));
    // The seen requests, also over HTTP.
    let seen: Value = reqwest::get(format!("http://{}/fake/seen", fake.addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen.as_array().unwrap().len(), 2);
    assert_eq!(seen[0]["body"], body);
    assert_eq!(fake.seen()[1].body, plain);
}

#[tokio::test]
async fn the_binary_prints_where_it_listens_and_serves() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cadre-fake-llm"))
        .args(["--port", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{line:?}"))
        .to_string();
    assert!(
        base.starts_with("http://127.0.0.1:") && base.ends_with("/v1"),
        "{base}"
    );
    let resp = reqwest::Client::new()
        .post(format!("{base}/chat/completions"))
        .json(&json!({ "model": "echo", "messages": [{ "role": "user", "content": "hi" }] }))
        .send()
        .await;
    child.kill().unwrap();
    child.wait().unwrap();
    let v: Value = resp.unwrap().json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "You said: hi");
    let out = Command::new(env!("CARGO_BIN_EXE_cadre-fake-llm"))
        .arg("--port=x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"x\" is not a port"));
}
