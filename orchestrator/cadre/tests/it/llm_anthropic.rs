//! The `llm` executor's Anthropic providers (`kind = "anthropic"`) through the real binary,
//! with the fake server's Messages API (`cadre_fake_llm`, `/v1/messages`) as the upstream:
//! plain, streamed and tool-calling replies, a 429 with Retry-After, fallback chains mixing
//! Anthropic and OpenAI-compatible providers both ways, usage recorded and priced.

use std::time::Duration;

use cadre_fake_llm::Fake;
use cadre_proto::v1;
use serde_json::{Value, json};

use crate::common::{Tasks, TestNode, ev_state, events, eventually, run, spec};

const KEY: &str = "sk-ant-blackbox";

/// Providers `an` (Anthropic, its key from the environment) and `oa` (OpenAI-compatible) on
/// one fake; cadre models -> fake models, with chains both ways; prices for each.
fn toml(fake: &Fake) -> String {
    format!(
        "[executors.llm]\ndefault_model = \"claude\"\ncache_entries = 0\n\
         [executors.llm.providers.an]\nkind = \"anthropic\"\nbase_url = \"{an}\"\n\
         api_key_env = \"CADRE_TEST_ANTHROPIC_KEY\"\ndefault_max_tokens = 512\n\
         [executors.llm.providers.oa]\nbase_url = \"{oa}\"\n\
         [executors.llm.models.claude]\nprovider = \"an\"\nmodel = \"echo\"\n\
         [executors.llm.models.claude-tools]\nprovider = \"an\"\nmodel = \"script\"\n\
         [executors.llm.models.claude-limited]\nprovider = \"an\"\nmodel = \"rate-once\"\n\
         [executors.llm.models.claude-529]\nprovider = \"an\"\nmodel = \"overloaded\"\nfallback = [\"gpt\"]\n\
         [executors.llm.models.gpt]\nprovider = \"oa\"\nmodel = \"echo\"\n\
         [executors.llm.models.gpt-boom]\nprovider = \"oa\"\nmodel = \"boom\"\nfallback = [\"claude\"]\n\
         [budgets.models.claude]\ninput_per_1k = 3.0\noutput_per_1k = 15.0\n\
         [budgets.models.gpt]\ninput_per_1k = 1.0\noutput_per_1k = 2.0\n",
        an = fake.anthropic_url,
        oa = fake.base_url,
    )
}

async fn start(fake: &Fake) -> TestNode {
    TestNode::start_with_env(&toml(fake), &[("CADRE_TEST_ANTHROPIC_KEY", Some(KEY.into()))]).await
}

/// Runs a chat task; its result and its task once its usage is recorded.
async fn chat(c: &mut Tasks, params: Value) -> (Value, v1::Task) {
    let t = run(c, spec("intelligence.llm.chat", &params.to_string())).await;
    assert_eq!(t.state(), v1::TaskState::Succeeded, "{t:?}");
    let result: Value = serde_json::from_str(&t.result_json).unwrap();
    let id = t.id.clone();
    let task = eventually("the usage recorded", Duration::from_secs(10), || {
        let mut c = c.clone();
        let id = id.clone();
        async move {
            let t = c.get(v1::GetRequest { id }).await.unwrap().into_inner();
            (!t.usage.is_empty()).then_some(t)
        }
    })
    .await;
    (result, task)
}

/// The one model a task's usage is on: (model, tokens in, tokens out, cost).
fn usage_of(t: &v1::Task) -> (String, u64, u64, f64) {
    assert_eq!(t.usage.len(), 1, "{:?}", t.usage);
    let u = &t.usage[0];
    (u.model.clone(), u.tokens_in, u.tokens_out, u.cost_usd)
}

#[tokio::test]
async fn anthropic_replies_plain_streamed_and_with_tools_are_recorded_and_priced() {
    let fake = Fake::start().await;
    let node = start(&fake).await;
    let mut c = node.tasks().await;

    let (r, t) = chat(
        &mut c,
        json!({ "prompt": "hello", "system": "Be brief.", "stream": false }),
    )
    .await;
    assert_eq!(
        (&r["content"], &r["finish_reason"]),
        (&json!("You said: hello"), &json!("stop"))
    );
    assert_eq!(
        (&r["provider"], &r["upstream_model"]),
        (&json!("an"), &json!("echo-2026"))
    );
    // 5 in + 2 cache write + 4 cache read = 11 in, 7 out: 11 * 3/1000 + 7 * 15/1000 USD.
    let (model, tin, tout, cost) = usage_of(&t);
    assert_eq!((model.as_str(), tin, tout), ("claude", 11, 7));
    assert!((cost - 0.138).abs() < 1e-9, "{cost}");
    let s = &fake.seen()[0];
    assert_eq!((s.path, s.api_key.as_deref()), ("/v1/messages", Some(KEY)));
    assert_eq!(s.body["system"], json!([{ "type": "text", "text": "Be brief." }]));
    assert_eq!(s.body["max_tokens"], 512, "the provider's default_max_tokens");

    // Streamed: the text arrives as progress events.
    let (r, t) = chat(&mut c, json!({ "prompt": "one two three" })).await;
    assert_eq!(r["content"], "You said: one two three");
    assert_eq!(fake.seen()[1].body["stream"], true);
    let evs = events(&mut c, &t.id, 0).await;
    let text: String = evs
        .iter()
        .filter(|e| e.is_progress)
        .map(|e| e.message.as_str())
        .collect();
    assert_eq!(text, "You said: one two three", "{evs:#?}");

    // A tool call, its input streamed in fragments, comes back in OpenAI's shape.
    let script = json!([{ "tool_calls": [{ "name": "lookup", "arguments": { "q": "Zürich" } }] }]);
    let tools = json!([{ "type": "function", "function": { "name": "lookup",
        "parameters": { "type": "object", "properties": { "q": { "type": "string" } } } } }]);
    let (r, t) = chat(
        &mut c,
        json!({ "model": "claude-tools", "prompt": format!("FAKE_SCRIPT: {script}"), "tools": tools }),
    )
    .await;
    assert_eq!(r["finish_reason"], "tool_calls");
    assert_eq!(
        r["tool_calls"],
        json!([{ "id": "toolu_0_0", "type": "function", "function": { "name": "lookup", "arguments": "{\"q\":\"Zürich\"}" } }])
    );
    assert_eq!(usage_of(&t).0, "claude-tools");
}

#[tokio::test]
async fn an_anthropic_429_with_retry_after_is_waited_out() {
    let fake = Fake::start().await;
    let node = start(&fake).await;
    let mut c = node.tasks().await;
    let (r, t) = chat(
        &mut c,
        json!({ "model": "claude-limited", "prompt": "hi", "stream": false }),
    )
    .await;
    assert_eq!(r["content"], "after the wait");
    let failed = r["failed_attempts"][0]["error"].as_str().unwrap();
    assert!(
        failed.contains("HTTP 429") && failed.contains("rate_limit_error"),
        "{failed}"
    );
    assert_eq!(fake.count("rate-once"), 2);
    let evs = events(&mut c, &t.id, 0).await;
    assert!(
        evs.iter()
            .any(|e| e.is_progress && e.message.starts_with("rate-limited; waiting")),
        "{evs:#?}"
    );
    assert_eq!(evs.last().map(ev_state), Some(v1::TaskState::Succeeded));
}

#[tokio::test]
async fn fallback_chains_mix_anthropic_and_openai_providers_both_ways() {
    let fake = Fake::start().await;
    let node = start(&fake).await;
    let mut c = node.tasks().await;
    // Anthropic overloaded (529) -> OpenAI-compatible; priced as the model that answered.
    let (r, t) = chat(
        &mut c,
        json!({ "model": "claude-529", "prompt": "hi", "stream": false }),
    )
    .await;
    assert_eq!((&r["model"], &r["provider"]), (&json!("gpt"), &json!("oa")));
    let failed = r["failed_attempts"][0]["error"].as_str().unwrap();
    assert!(
        failed.contains("HTTP 529") && failed.contains("overloaded_error"),
        "{failed}"
    );
    let (model, tin, tout, cost) = usage_of(&t);
    assert_eq!((model.as_str(), tin, tout), ("gpt", 11, 7));
    assert!((cost - 0.025).abs() < 1e-9, "{cost}");
    // OpenAI-compatible failing (500) -> Anthropic.
    let (r, t) = chat(&mut c, json!({ "model": "gpt-boom", "prompt": "hi" })).await;
    assert_eq!((&r["model"], &r["provider"]), (&json!("claude"), &json!("an")));
    assert_eq!(r["content"], "You said: hi");
    assert!(
        r["failed_attempts"][0]["error"]
            .as_str()
            .unwrap()
            .contains("HTTP 500")
    );
    assert_eq!(usage_of(&t).0, "claude");
    let paths: Vec<&str> = fake.seen().iter().map(|s| s.path).collect();
    assert_eq!(
        paths,
        [
            "/v1/messages",
            "/v1/chat/completions",
            "/v1/chat/completions",
            "/v1/messages"
        ]
    );
}
