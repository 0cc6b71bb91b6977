//! LLM call records through the real binary, with the fake provider (`cadre_fake_llm`) as the
//! upstream: an llm task (and a request to the OpenAI-compatible endpoint) leaves one record
//! per model call with its provider, models, fallbacks, timings, tokens, cost and finish
//! reason; records are listed over JSON, gRPC and the CLI within the caller's tenant; prompts
//! are kept only when configured, redacted and bounded.

use std::time::Duration;

use cadre_fake_llm::Fake;
use cadre_proto::v1;
use serde_json::{Value, json};

use crate::common::{TestNode, eventually, http_exchange, issue, run, spec};

/// Models on the fake: `echo` on provider `a`; `flaky` (always 500) falling back to `backup`
/// (`echo` on provider `b`). `extra` is appended (an `[llm_calls]` section).
fn config(fake: &Fake, extra: &str) -> String {
    format!(
        "[executors.llm]\ncache_entries = 0\nmax_retry_after_ms = 0\n\
         [executors.llm.providers.a]\nbase_url = \"{0}\"\n\
         [executors.llm.providers.b]\nbase_url = \"{0}\"\n\
         [executors.llm.models.echo]\nprovider = \"a\"\nmodel = \"echo\"\n\
         [executors.llm.models.flaky]\nprovider = \"a\"\nmodel = \"boom\"\nfallback = [\"backup\"]\n\
         [executors.llm.models.backup]\nprovider = \"b\"\nmodel = \"echo\"\n\
         [budgets.models.backup]\ninput_per_1k = 1.0\noutput_per_1k = 2.0\n{extra}",
        fake.base_url
    )
}

/// Runs a chat as `token`'s tenant; the task's id.
async fn chat(node: &TestNode, token: &str, params: Value) -> String {
    let mut c = node.tasks_as(Some(token)).await;
    let t = run(&mut c, spec("intelligence.llm.chat", &params.to_string())).await;
    assert_eq!(t.state(), v1::TaskState::Succeeded, "{t:?}");
    t.id
}

/// GET `path` with `token`: (status, JSON body).
async fn get(node: &TestNode, token: &str, path: &str) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    let (code, _, body) = http_exchange(node, "GET", path, &[("Authorization", &auth)], None).await;
    (code, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// The calls `GET /v1/llm-calls?<query>` lists for `token`, once there are `n` of them (usage
/// is written after the result).
async fn calls(node: &TestNode, token: &str, query: &str, n: usize) -> Vec<Value> {
    eventually("the call records", Duration::from_secs(10), || async move {
        let (code, body) = get(node, token, &format!("/v1/llm-calls?{query}")).await;
        assert_eq!(code, 200, "{body}");
        let calls = body["calls"].as_array().cloned().unwrap_or_default();
        (calls.len() >= n).then_some(calls)
    })
    .await
}

#[tokio::test]
async fn model_calls_are_recorded_and_listed_within_the_tenant() {
    let fake = Fake::start().await;
    let node = TestNode::start(&config(&fake, "")).await;
    let acme = issue(&node, "acme", "operator").await;
    let beta = issue(&node, "beta", "operator").await;

    let streamed = chat(&node, &acme, json!({ "model": "echo", "prompt": "hello there" })).await;
    let fell_back = chat(
        &node,
        &acme,
        json!({ "model": "flaky", "prompt": "hi", "stream": false }),
    )
    .await;
    let other = chat(&node, &beta, json!({ "model": "echo", "prompt": "beta's" })).await;

    // Newest first; acme sees its own two.
    let mine = calls(&node, &acme, "", 2).await;
    assert_eq!(mine.len(), 2, "{mine:#?}");
    let (f, s) = (&mine[0], &mine[1]);
    assert_eq!(f["task_id"], fell_back.as_str());
    assert_eq!((&f["tenant"], &f["attempt"]), (&json!("acme"), &json!(1)));
    assert_eq!(
        (&f["model_requested"], &f["model_used"], &f["provider"]),
        (&json!("flaky"), &json!("backup"), &json!("b"))
    );
    let fallbacks = f["fallbacks"].as_array().unwrap();
    assert_eq!(fallbacks.len(), 1, "{f}");
    assert_eq!(
        (&fallbacks[0]["provider"], &fallbacks[0]["model"]),
        (&json!("a"), &json!("flaky"))
    );
    assert!(fallbacks[0]["error"].as_str().unwrap().contains("500"), "{f}");
    assert_eq!(f["first_token_ms"], Value::Null, "not streamed: {f}");
    assert_eq!(
        (&f["finish_reason"], &f["cache_hit"]),
        (&json!("stop"), &json!(false))
    );
    let (tin, tout) = (
        f["tokens_in"].as_u64().unwrap(),
        f["tokens_out"].as_u64().unwrap(),
    );
    assert!(tin > 0 && tout > 0, "{f}");
    let cost = f["cost_usd"].as_f64().unwrap();
    assert!(
        (cost - (tin as f64 * 1.0 + tout as f64 * 2.0) / 1000.0).abs() < 1e-9,
        "priced: {f}"
    );
    assert_eq!(
        (&f["prompt"], &f["reply"]),
        (&Value::Null, &Value::Null),
        "not kept by default"
    );
    assert!(f["id"].is_string() && f["started_at_ms"].as_i64().unwrap() > 0);

    assert_eq!(s["task_id"], streamed.as_str());
    assert_eq!(
        (&s["model_requested"], &s["model_used"], &s["provider"]),
        (&json!("echo"), &json!("echo"), &json!("a"))
    );
    assert_eq!(s["fallbacks"], json!([]));
    let first = s["first_token_ms"]
        .as_u64()
        .expect("streamed: the first token's latency");
    assert!(first <= s["total_ms"].as_u64().unwrap(), "{s}");

    // Filters, paging and the tenant scope.
    let only = |v: &[Value]| {
        v.iter()
            .map(|c| c["task_id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        only(&calls(&node, &acme, "model=echo", 1).await),
        [streamed.as_str()]
    );
    assert_eq!(
        only(&calls(&node, &acme, "provider=b", 1).await),
        [fell_back.as_str()]
    );
    assert_eq!(
        calls(&node, &acme, &format!("task_id={other}"), 0).await.len(),
        0,
        "beta's task"
    );
    assert_eq!(
        only(&calls(&node, &acme, "tenant=beta", 2).await),
        [fell_back.as_str(), streamed.as_str()]
    );
    let (_, page) = get(&node, &acme, "/v1/llm-calls?limit=1").await;
    assert_eq!(only(page["calls"].as_array().unwrap()), [fell_back.as_str()]);
    let cursor = page["next_cursor"].as_str().expect("a next page").to_string();
    let (_, page) = get(&node, &acme, &format!("/v1/llm-calls?limit=1&cursor={cursor}")).await;
    assert_eq!(only(page["calls"].as_array().unwrap()), [streamed.as_str()]);
    let (_, page) = get(&node, &acme, &format!("/v1/llm-calls?limit=5&cursor={cursor}")).await;
    assert_eq!(page["next_cursor"], Value::Null);
    for bad in [
        "limit=0",
        "limit=1001",
        "task_id=nope",
        "cursor=x",
        "since_ms=abc",
        "since_ms=5&until_ms=5",
        "colour=red",
    ] {
        let (code, body) = get(&node, &acme, &format!("/v1/llm-calls?{bad}")).await;
        assert_eq!(
            (code, &body["error"]["code"]),
            (400, &json!("invalid_argument")),
            "{bad}: {body}"
        );
    }
    // The commander sees every tenant, or the one it names.
    let all = calls(&node, &node.credential(), "", 3).await;
    assert_eq!(all.len(), 3);
    assert_eq!(
        only(&calls(&node, &node.credential(), "tenant=beta", 1).await),
        [other.as_str()]
    );

    // The same over gRPC.
    let mut admin = node.admin_as(Some(&acme)).await;
    let req = v1::ListLlmCallsRequest {
        tenant: "beta".into(),
        ..Default::default()
    };
    let r = admin.list_llm_calls(req).await.unwrap().into_inner();
    assert_eq!(r.calls.len(), 2);
    assert!(r.calls.iter().all(|c| c.tenant == "acme"), "{r:?}");
    assert_eq!(r.calls[0].fallbacks[0].model, "flaky");
    let bad = v1::ListLlmCallsRequest {
        task_id: "nope".into(),
        ..Default::default()
    };
    let e = admin.list_llm_calls(bad).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    let mut admin = node.admin_as(Some(&beta)).await;
    let r = admin
        .list_llm_calls(v1::ListLlmCallsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.calls.iter().map(|c| c.task_id.as_str()).collect::<Vec<_>>(),
        [other.as_str()]
    );

    // And through the CLI.
    let cadre = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_cadre"))
            .args(["--endpoint", &node.grpc, "--token", &acme, "calls", "list"])
            .args(args)
            .output()
            .unwrap()
    };
    let out = cadre(&["--json"]);
    assert!(out.status.success(), "{out:?}");
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        only(listed["calls"].as_array().unwrap()),
        [fell_back.as_str(), streamed.as_str()]
    );
    assert_eq!(listed["calls"][0]["model_used"], "backup");
    let out = cadre(&["--task", &fell_back]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains(&fell_back) && text.contains("backup"),
        "{text}"
    );
    assert!(
        text.contains("asked flaky") && text.contains("1 fallback(s)"),
        "{text}"
    );
    assert!(!text.contains(&streamed), "{text}");
    let out = cadre(&["--model", "nothing-like-it"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no model calls");
    let out = cadre(&["--task", "nope"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("task_id"),
        "{out:?}"
    );
}

#[tokio::test]
async fn the_gateways_calls_are_recorded_too() {
    let fake = Fake::start().await;
    let node = TestNode::start(&config(&fake, "")).await;
    let acme = issue(&node, "acme", "operator").await;
    let auth = format!("Bearer {acme}");
    let body = json!({ "model": "flaky", "messages": [{ "role": "user", "content": "hi" }] }).to_string();
    let (code, headers, answer) = http_exchange(
        &node,
        "POST",
        "/v1/chat/completions",
        &[("Authorization", &auth)],
        Some(&body),
    )
    .await;
    assert_eq!(code, 200, "{answer}");
    let task = headers
        .iter()
        .find(|(k, _)| k == "x-cadre-task-id")
        .map(|(_, v)| v.clone())
        .expect("the task id header");
    let mine = calls(&node, &acme, &format!("task_id={task}"), 1).await;
    assert_eq!(
        (&mine[0]["model_used"], &mine[0]["tenant"]),
        (&json!("backup"), &json!("acme"))
    );
    assert_eq!(mine[0]["fallbacks"][0]["model"], "flaky");
}

#[tokio::test]
async fn kept_prompts_are_redacted_and_bounded() {
    let fake = Fake::start().await;
    let extra =
        "[llm_calls]\ncapture_prompts = true\ncapture_max_bytes = 64\nredact = [\"sk-[A-Za-z0-9]+\"]\n";
    let node = TestNode::start(&config(&fake, extra)).await;
    let acme = issue(&node, "acme", "operator").await;
    let prompt = format!("my key is sk-SECRET123 ok {}", "x".repeat(500));
    chat(
        &node,
        &acme,
        json!({ "model": "echo", "prompt": prompt, "stream": false }),
    )
    .await;
    let mine = calls(&node, &acme, "", 1).await;
    let (p, r) = (
        mine[0]["prompt"].as_str().unwrap(),
        mine[0]["reply"].as_str().unwrap(),
    );
    assert!(p.starts_with("user: my key is [REDACTED] ok xxx"), "{p}");
    assert!(r.starts_with("You said: my key is [REDACTED] ok xxx"), "{r}");
    assert_eq!((p.len(), r.len()), (64, 64), "cut to capture_max_bytes");
    assert!(!p.contains("SECRET") && !r.contains("SECRET"));
}

#[tokio::test]
async fn a_bad_redaction_pattern_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cadre.toml");
    std::fs::write(
        &file,
        "[llm_calls]\nredact = [\"sk-[a-z\"]\ncapture_max_bytes = 0\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cadre"))
        .arg("config")
        .arg("check")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("llm_calls.redact[0]: not a regular expression"),
        "{err}"
    );
    assert!(err.contains("llm_calls.capture_max_bytes"), "{err}");
}
