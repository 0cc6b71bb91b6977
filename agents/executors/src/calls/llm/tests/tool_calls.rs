//! Tool calling against the fake's scripted models (`cadre_fake_llm::script`), over real
//! sockets: what the model asks for comes back in the result, what the task sends is forwarded
//! as OpenAI takes it.

use super::*;

/// A script: turn 0 calls two tools, turn 1 answers.
fn script(turns: &Value) -> String {
    format!("FAKE_SCRIPT: {turns}")
}

fn weather_script() -> String {
    script(&json!([
        { "tool_calls": [
            { "name": "system__debug__echo", "arguments": { "city": "Zürich", "note": "東京 \"quoted\" \\ done", "days": 3 } },
            { "name": "get_time", "arguments": {} },
        ] },
        { "content": "Sunny." },
    ]))
}

/// The tools as the workflow's agent loop offers them (orchestrator/workflow/src/agent.rs).
fn tools() -> Value {
    json!([
        { "type": "function", "function": {
            "name": "system__debug__echo",
            "description": "Runs the cadre task type system.debug.echo and returns its result.",
            "parameters": { "type": "object", "properties": { "city": { "type": "string" } } },
        } },
        { "type": "function", "function": { "name": "get_time", "description": "The time", "parameters": { "type": "object" } } },
    ])
}

/// The arguments the fake sends for the first call of [`weather_script`], exactly.
const WEATHER_ARGS: &str = r#"{"city":"Zürich","days":3,"note":"東京 \"quoted\" \\ done"}"#;

/// The assistant message of a turn that asked for tools, built as the agent loop builds it
/// (`assistant_message`: the result's content, and each call's id, name and arguments).
fn assistant(result: &Value) -> Value {
    let calls: Vec<Value> = result["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            json!({
                "id": c["id"],
                "type": "function",
                "function": { "name": c["function"]["name"], "arguments": c["function"]["arguments"] },
            })
        })
        .collect();
    json!({ "role": "assistant", "content": result["content"], "tool_calls": calls })
}

fn tool_calls_of(r: &Value) -> Vec<(String, String, String)> {
    r["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["type"], "function", "{c}");
            (
                c["id"].as_str().unwrap().to_string(),
                c["function"]["name"].as_str().unwrap().to_string(),
                c["function"]["arguments"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn want_calls() -> Vec<(String, String, String)> {
    vec![
        (
            "call_0_0".into(),
            "system__debug__echo".into(),
            WEATHER_ARGS.into(),
        ),
        ("call_0_1".into(), "get_time".into(), "{}".into()),
    ]
}

#[tokio::test]
async fn a_non_streamed_reply_asking_for_tools_comes_back_as_tool_calls() {
    let fake = Fake::start().await;
    let llm = Llm::new(config(&fake, &[]));
    let params = json!({ "model": "script", "prompt": weather_script(), "stream": false, "tools": tools() });
    validate(&llm.params_schema().unwrap(), &params).unwrap();
    let (out, seen) = run(&llm, params).await;
    let r = out.unwrap();
    fits(&llm, &r);
    assert_eq!(tool_calls_of(&r), want_calls());
    assert_eq!(r["finish_reason"], "tool_calls");
    assert_eq!(r["content"], "");
    assert_eq!(r["json"], Value::Null);
    assert_eq!(r["usage"]["estimated"], false);
    assert_eq!(seen.usage.lock().unwrap().len(), 1);
    // The tools are sent as given, and no tool_choice when none was given.
    let sent = &fake.seen()[0].body;
    assert_eq!(sent["tools"], tools());
    assert!(sent.get("tool_choice").is_none());
    // A text reply has no tool calls, and says so.
    let (out, _) = run(&llm, json!({ "prompt": "hi", "stream": false, "tools": tools() })).await;
    let r = out.unwrap();
    fits(&llm, &r);
    assert_eq!(
        (r["tool_calls"].clone(), r["finish_reason"].clone()),
        (json!([]), json!("stop"))
    );
}

#[tokio::test]
async fn streamed_tool_calls_are_assembled_from_their_fragments_and_reported_as_progress() {
    let fake = Fake::start().await;
    let llm = Llm::new(config(&fake, &[]));
    let params = json!({ "model": "script", "prompt": weather_script(), "tools": tools() });
    let (out, seen) = run(&llm, params).await;
    let r = out.unwrap();
    fits(&llm, &r);
    // Arguments arrived in 7-character fragments (multi-byte characters among them) and are
    // put together exactly.
    assert_eq!(tool_calls_of(&r), want_calls());
    assert_eq!(r["finish_reason"], "tool_calls");
    assert_eq!(r["content"], "");
    // Usage came in the stream's last chunk.
    assert_eq!(r["usage"]["estimated"], false);
    assert!(r["usage"]["tokens_out"].as_u64().unwrap() > 0);
    assert_eq!(fake.seen()[0].body["stream"], true);
    // The two calls completed within one progress interval: one event names both.
    let progress = seen.progress.lock().unwrap().clone();
    let calls: Vec<&str> = progress
        .iter()
        .map(|(_, m)| m.as_str())
        .filter(|m| m.starts_with("tool call"))
        .collect();
    assert_eq!(
        calls,
        ["tool calls system__debug__echo, get_time"],
        "{progress:?}"
    );

    // Chunks 60 ms apart: each call is reported once, in order, by itself.
    let one_by_one = script(&json!([{ "tool_calls": [
        { "name": "a", "arguments": { "q": "first" } },
        { "name": "b", "arguments": { "q": "second" } },
        { "name": "c", "arguments": { "q": "third" } },
    ] }]));
    let (out, seen) = run(&llm, json!({ "model": "script-slow", "prompt": one_by_one })).await;
    assert_eq!(out.unwrap()["tool_calls"].as_array().unwrap().len(), 3);
    let progress = seen.progress.lock().unwrap().clone();
    let events: Vec<&str> = progress
        .iter()
        .map(|(_, m)| m.as_str())
        .filter(|m| m.starts_with("tool call"))
        .collect();
    let named: Vec<&str> = events
        .iter()
        .flat_map(|m| {
            m.trim_start_matches("tool calls ")
                .trim_start_matches("tool call ")
                .split(", ")
        })
        .collect();
    assert_eq!(named, ["a", "b", "c"], "{progress:?}");
    // About 180 ms apart, 200 ms the least between two events: more than one event, each call
    // in one of them (a loaded machine may still put two together).
    assert!(events.len() >= 2, "{progress:?}");
}

/// The conversation the workflow agent loop holds (orchestrator/workflow/src/agent.rs): its
/// exact params, turn after turn, each request carrying the messages as given.
#[tokio::test]
async fn a_conversation_with_tool_results_is_forwarded_unchanged() {
    let fake = Fake::start().await;
    let llm = Llm::new(config(&fake, &[]));
    let mut messages = vec![
        json!({ "role": "system", "content": format!("You are terse.\n{}", weather_script()) }),
        json!({ "role": "user", "content": "Weather in Zürich?" }),
    ];
    let params = |messages: &[Value]| json!({ "model": "script", "messages": messages, "stream": true, "tools": tools() });
    let schema = llm.params_schema().unwrap();

    validate(&schema, &params(&messages)).unwrap();
    let first = run(&llm, params(&messages)).await.0.unwrap();
    assert_eq!(tool_calls_of(&first), want_calls());
    messages.push(assistant(&first));
    for (id, _, _) in tool_calls_of(&first) {
        messages.push(json!({ "role": "tool", "tool_call_id": id, "content": format!("{{\"for\": \"{id}\", \"sky\": \"sunny\"}}") }));
    }

    validate(&schema, &params(&messages)).unwrap();
    let second = run(&llm, params(&messages)).await.0.unwrap();
    fits(&llm, &second);
    assert_eq!(second["content"], "Sunny.");
    assert_eq!(second["tool_calls"], json!([]));
    assert_eq!(second["finish_reason"], "stop");

    // The provider got the messages exactly as the task gave them: the assistant message with
    // "" content and its calls, the tool messages with their ids.
    let seen = fake.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].body["messages"], json!(messages));
    assert_eq!(seen[1].body["tools"], tools());

    // A null content, or none, is forwarded as given too; past the script's end the fake
    // counts the tool results it got.
    let mut null_content = messages.clone();
    null_content[2]["content"] = Value::Null;
    null_content.push(json!({ "role": "assistant", "content": "Sunny." }));
    null_content.push(json!({ "role": "user", "content": "And tomorrow?" }));
    let mut no_content = null_content.clone();
    no_content[2].as_object_mut().unwrap().remove("content");
    for m in [null_content, no_content] {
        validate(&schema, &params(&m)).unwrap();
        let r = run(&llm, params(&m)).await.0.unwrap();
        assert_eq!(r["content"], "done after 2 tool results");
        assert_eq!(fake.seen().last().unwrap().body["messages"], json!(m));
    }
}

#[tokio::test]
async fn tool_choice_is_forwarded_and_tools_are_part_of_the_cache_key() {
    let fake = Fake::start().await;
    let llm = Llm::new(config(&fake, &[]));
    let named = json!({ "type": "function", "function": { "name": "get_time" } });
    for choice in [json!("required"), json!("none"), named.clone()] {
        let params = json!({ "prompt": "hi", "tools": tools(), "tool_choice": choice, "cache": false });
        validate(&llm.params_schema().unwrap(), &params).unwrap();
        run(&llm, params).await.0.unwrap();
        assert_eq!(fake.seen().last().unwrap().body["tool_choice"], choice);
    }

    let count = || fake.count("echo");
    let before = count();
    let ask = |extra: Value| {
        let mut p = json!({ "prompt": "same", "stream": false });
        p.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let llm = &llm;
        async move { run(llm, p).await.0.unwrap() }
    };
    assert_eq!(ask(json!({})).await["cached"], false);
    assert_eq!(ask(json!({})).await["cached"], true);
    // Offering tools, other tools, or another choice is another request.
    assert_eq!(ask(json!({ "tools": tools() })).await["cached"], false);
    assert_eq!(ask(json!({ "tools": tools() })).await["cached"], true);
    let fewer = json!([tools()[1].clone()]);
    assert_eq!(ask(json!({ "tools": fewer })).await["cached"], false);
    assert_eq!(
        ask(json!({ "tools": tools(), "tool_choice": "required" })).await["cached"],
        false
    );
    assert_eq!(
        ask(json!({ "tools": tools(), "tool_choice": named })).await["cached"],
        false
    );
    assert_eq!(
        ask(json!({ "tools": tools(), "tool_choice": "required" })).await["cached"],
        true
    );
    assert_eq!(count() - before, 5);
}

#[tokio::test]
async fn response_schema_applies_to_the_final_text_answer_only() {
    let fake = Fake::start().await;
    let llm = Llm::new(config(&fake, &[]));
    let schema = json!({ "type": "object", "properties": { "answer": { "type": "integer" } }, "required": ["answer"] });
    let turns = script(&json!([
        { "tool_calls": [{ "name": "get_time", "arguments": {} }] },
        { "content": "{\"answer\": 42}" },
    ]));
    let mut messages = vec![json!({ "role": "user", "content": turns })];
    let params = |m: &[Value]| json!({ "model": "script", "messages": m, "tools": tools(), "response_schema": schema });
    let (out, seen) = run(&llm, params(&messages)).await;
    let r = out.unwrap();
    // A reply asking for tools is not JSON and need not be: it is neither checked nor retried.
    assert_eq!(r["tool_calls"].as_array().unwrap().len(), 1);
    assert_eq!(r["json"], Value::Null);
    assert_eq!(fake.count("script"), 1);
    assert!(
        !seen
            .progress
            .lock()
            .unwrap()
            .iter()
            .any(|(_, m)| m.contains("response_schema")),
        "no schema retry"
    );
    messages.push(assistant(&r));
    messages.push(json!({ "role": "tool", "tool_call_id": "call_0_0", "content": "noon" }));
    let r = run(&llm, params(&messages)).await.0.unwrap();
    assert_eq!(r["json"], json!({ "answer": 42 }));
    assert_eq!(fake.count("script"), 2);
}

#[tokio::test]
async fn bad_tools_and_messages_are_refused_before_any_request() {
    let fake = Fake::start().await;
    let llm = Llm::new(config(&fake, &[]));
    let schema = llm.params_schema().unwrap();
    let f = |name: &str| json!({ "type": "function", "function": { "name": name } });
    let user = json!({ "role": "user", "content": "hi" });
    let call =
        |id: &str| json!({ "id": id, "type": "function", "function": { "name": "f", "arguments": "{}" } });
    let asked = json!({ "role": "assistant", "content": null, "tool_calls": [call("c1")] });
    let answer = |id: &str| json!({ "role": "tool", "tool_call_id": id, "content": "ok" });
    let many: Vec<Value> = (0..=MAX_TOOLS).map(|i| f(&format!("t{i}"))).collect();
    let with_tools = |tools: Value| json!({ "prompt": "x", "tools": tools });
    // (params, what the error says, whether intake's schema refuses them too)
    for (params, want, schema_refuses) in [
        (
            with_tools(json!([f("a.b")])),
            "`tools[0].function.name` \"a.b\" must match ^[A-Za-z0-9_-]{1,64}$",
            true,
        ),
        (with_tools(json!([f(&"n".repeat(65))])), "must match", true),
        (
            with_tools(json!(many)),
            "`tools` holds 129 tools; at most 128",
            true,
        ),
        (
            with_tools(json!([{ "type": "fn", "function": { "name": "a" } }])),
            "`tools[0].type` must be \"function\"",
            true,
        ),
        (
            with_tools(json!([{ "type": "function" }])),
            "`tools[0].function` is required",
            true,
        ),
        (
            with_tools(json!([{ "type": "function", "function": { "name": "a", "parameters": "{}" } }])),
            "`tools[0].function.parameters` must be a JSON Schema object",
            true,
        ),
        (
            with_tools(json!([{ "type": "function", "function": { "name": "a", "params": {} } }])),
            "`tools[0].function` has an unknown field `params`",
            true,
        ),
        (
            with_tools(json!([f("a"), f("a")])),
            "`tools[1].function.name` \"a\" is offered twice",
            false,
        ),
        (
            json!({ "prompt": "x", "tool_choice": "auto" }),
            "`tool_choice` needs `tools`",
            true,
        ),
        (
            json!({ "prompt": "x", "tools": [f("a")], "tool_choice": "sometimes" }),
            "`tool_choice` must be \"auto\", \"none\", \"required\" or",
            true,
        ),
        (
            json!({ "prompt": "x", "tools": [f("a")], "tool_choice": { "type": "function", "function": { "name": "b" } } }),
            "names the function \"b\", which is not among `tools` (a)",
            false,
        ),
        (
            json!({ "messages": [user, { "role": "tool", "content": "ok" }] }),
            "`messages[1]`: a tool message needs `tool_call_id`",
            true,
        ),
        (
            json!({ "messages": [user, answer("c1")] }),
            "`messages[1]`: a tool message must follow an assistant message with `tool_calls`",
            false,
        ),
        (
            json!({ "messages": [user, asked, answer("c2")] }),
            "`messages[2]`: `tool_call_id` \"c2\" answers none of the tool calls of `messages[1]`",
            false,
        ),
        (
            json!({ "messages": [user, asked, answer("c1"), user, answer("c1")] }),
            "`messages[4]`: a tool message must follow",
            false,
        ),
        (
            json!({ "messages": [user, { "role": "assistant", "content": null }] }),
            "`messages[1]`: an assistant message needs `content` or `tool_calls`",
            true,
        ),
        (
            json!({ "messages": [{ "role": "user", "content": null }] }),
            "`messages[0]`: a user message needs a string `content`",
            true,
        ),
        (
            json!({ "messages": [{ "role": "user", "content": "x", "tool_calls": [call("c1")] }] }),
            "`messages[0]`: only an assistant message has `tool_calls`",
            true,
        ),
        (
            json!({ "messages": [user, { "role": "assistant", "content": "x", "tool_call_id": "c1" }] }),
            "`messages[1]`: only a tool message has `tool_call_id`",
            true,
        ),
        (
            json!({ "messages": [user, { "role": "assistant", "tool_calls": [] }] }),
            "`messages[1]`: `tool_calls` must hold 1 to 64 calls",
            true,
        ),
        (
            json!({ "messages": [user, { "role": "assistant", "tool_calls": [call("c1"), call("c1")] }] }),
            "`tool_calls[1].id` must be set and differ",
            false,
        ),
        (
            json!({ "messages": [user, { "role": "assistant", "tool_calls": [{ "id": "c1", "type": "fn", "function": { "name": "f", "arguments": "{}" } }] }] }),
            "`messages[1]`: unknown variant `fn`, expected `function`",
            true,
        ),
        (
            json!({ "messages": [user, { "role": "assistant", "tool_calls": [{ "id": "c1", "type": "function", "function": { "name": "f", "arguments": { "a": 1 } } }] }] }),
            "`messages[1]`: invalid type: map, expected a string",
            true,
        ),
    ] {
        match run(&llm, params.clone()).await.0 {
            Err(ExecError::InvalidParams(m)) => {
                assert!(m.contains(want), "{params}:\n  got  {m}\n  want {want}")
            }
            other => panic!("{params}: {other:?}"),
        }
        assert_eq!(
            validate(&schema, &params).is_err(),
            schema_refuses,
            "{params}: intake's schema"
        );
    }
    assert!(fake.seen().is_empty());
}

#[tokio::test]
async fn a_reply_beyond_the_tool_call_bounds_fails_for_good() {
    let fake = Fake::start().await;
    let llm = Llm::new(config(&fake, &[("script", &["echo"])]));
    let calls: Vec<Value> = (0..=MAX_TOOL_CALLS)
        .map(|k| json!({ "name": format!("f{k}") }))
        .collect();
    let too_many = script(&json!([{ "tool_calls": calls }]));
    for stream in [false, true] {
        let (out, _) = run(
            &llm,
            json!({ "model": "script", "prompt": too_many, "stream": stream }),
        )
        .await;
        match out {
            Err(ExecError::Fatal(m)) => assert!(
                m.contains("model script (p1) gave a reply that cannot be used")
                    && m.contains("the reply asks for more than 64 tool calls"),
                "stream {stream}: {m}"
            ),
            other => panic!("stream {stream}: {other:?}"),
        }
    }
    // Exactly the limit is fine.
    let calls: Vec<Value> = (0..MAX_TOOL_CALLS)
        .map(|k| json!({ "name": format!("f{k}") }))
        .collect();
    let at_limit = script(&json!([{ "tool_calls": calls }]));
    let r = run(
        &llm,
        json!({ "model": "script", "prompt": at_limit, "stream": true }),
    )
    .await
    .0
    .unwrap();
    assert_eq!(r["tool_calls"].as_array().unwrap().len(), MAX_TOOL_CALLS);
    // Arguments past the reply-size limit, streamed: not retried, not sent to the fallback.
    let mut small = config(&fake, &[("script", &["echo"])]);
    small.max_response_bytes = 8 << 10;
    let llm = Llm::new(small);
    let big =
        script(&json!([{ "tool_calls": [{ "name": "f", "arguments": { "text": "x".repeat(9 << 10) } }] }]));
    let (out, _) = run(&llm, json!({ "model": "script", "prompt": big, "cache": false })).await;
    match out {
        Err(ExecError::Fatal(m)) => assert!(
            m.contains("the reply's tool calls exceed the reply-size limit of 8192 bytes"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.count("echo"), 0);
}
