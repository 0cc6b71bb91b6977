//! Tracing across hops: a node started with `OTEL_EXPORTER_OTLP_ENDPOINT` exports its spans to
//! a real OTLP/gRPC receiver, and one task is one trace that continues the caller's
//! `traceparent`.

use std::process::Command;
use std::time::Duration;

use cadre_proto::v1::{
    self, TaskState, supervisor_peer_client::SupervisorPeerClient, task_service_client::TaskServiceClient,
};

use crate::common::otlp::{OtlpReceiver, ReceivedSpan};
use crate::common::*;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn traceparent(trace_id: &str, span_id: &str) -> String {
    format!("00-{trace_id}-{span_id}-01")
}

fn one<'a>(spans: &'a [ReceivedSpan], name: &str, task_id: &str) -> &'a ReceivedSpan {
    let found: Vec<_> = spans
        .iter()
        .filter(|s| s.name == name && s.attr("task_id") == Some(task_id))
        .collect();
    assert_eq!(found.len(), 1, "one {name} span for {task_id} in {spans:#?}");
    found[0]
}

fn has(spans: &[ReceivedSpan], name: &str, task_id: &str) -> bool {
    spans
        .iter()
        .any(|s| s.name == name && s.attr("task_id") == Some(task_id))
}

#[tokio::test]
async fn one_task_is_one_trace_that_continues_the_callers() {
    let receiver = OtlpReceiver::start().await;
    let node = TestNode::start_with_env("", &receiver.env()).await;
    let bearer = TestNode::bearer(Some(&node.credential()))
        .with_traceparent(Some(&traceparent(TRACE_ID, CALLER_SPAN)));
    let mut c = TaskServiceClient::with_interceptor(node.channel().await, bearer);

    let task = submit(&mut c, spec("system.debug.echo", r#"{"hello":"trace"}"#)).await;
    let evs = events(&mut c, &task.id, 0).await;
    assert_eq!(evs.last().map(ev_state), Some(TaskState::Succeeded));

    let id = task.id.as_str();
    let spans = receiver
        .wait_for("submit, attempt and record spans", Duration::from_secs(20), |s| {
            has(s, "task.submit", id) && has(s, "task.attempt", id) && has(s, "task.record", id)
        })
        .await;
    let submit = one(&spans, "task.submit", id);
    let attempt = one(&spans, "task.attempt", id);
    let record = one(&spans, "task.record", id);
    for s in [submit, attempt, record] {
        assert_eq!(
            s.trace_id, TRACE_ID,
            "{} is in the caller's trace: {s:#?}",
            s.name
        );
        assert_eq!(s.resource.get("service.name").map(String::as_str), Some("cadre"));
        // Every span of the task names it.
        assert_eq!(
            (s.attr("task_id"), s.attr("tenant"), s.attr("task_type")),
            (Some(id), Some("default"), Some("system.debug.echo")),
            "{s:#?}"
        );
    }

    // The gRPC server span is the caller's child; the submit handler runs inside it.
    let request = spans
        .iter()
        .find(|s| s.span_id == submit.parent_span_id)
        .expect("the submit span's parent was exported");
    assert_eq!(request.name, "cadre.v1.TaskService/Submit");
    assert_eq!(request.parent_span_id, CALLER_SPAN);
    assert_eq!(request.attr("rpc.method"), Some("Submit"));
    assert_eq!(request.kind, 2, "server span");

    assert_eq!(submit.attr("task_type"), Some("system.debug.echo"));
    assert_eq!(submit.attr("tenant"), Some("default"));
    assert_eq!(
        attempt.parent_span_id, submit.span_id,
        "attempt is the submit span's child"
    );
    assert_eq!(attempt.attr("attempt"), Some("1"));
    assert_eq!(attempt.attr("task_type"), Some("system.debug.echo"));
    assert_eq!(attempt.attr("supervisor"), Some("system"));
    assert_eq!(attempt.attr("worker_kind"), Some("monitor"));
    assert_eq!(
        record.parent_span_id, attempt.span_id,
        "the terminal write is the attempt's child"
    );
    assert_eq!(record.attr("state"), Some("SUCCEEDED"));

    // A refused submission is an error span in the caller's trace.
    let refused = c
        .submit(v1::SubmitRequest {
            spec: Some(spec("no.such.type", "{}")),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    let spans = receiver
        .wait_for("the refused submission", Duration::from_secs(20), |s| {
            s.iter()
                .any(|s| s.name == "task.submit" && s.attr("task_type") == Some("no.such.type"))
        })
        .await;
    let failed = spans
        .iter()
        .find(|s| s.name == "task.submit" && s.attr("task_type") == Some("no.such.type"))
        .unwrap();
    assert_eq!(failed.trace_id, TRACE_ID);
    assert_eq!(failed.status.0, 2, "error status: {failed:#?}");
    assert!(failed.status.1.contains("InvalidArgument"), "{failed:#?}");
    drop(c);
    assert!(node.stop().await.success());
}

#[tokio::test]
async fn retries_are_sibling_attempts_and_submit_and_wait_and_delegate_are_traced() {
    let receiver = OtlpReceiver::start().await;
    let node = TestNode::start_with_env("", &receiver.env()).await;
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let bearer = TestNode::bearer(Some(&node.credential()))
        .with_traceparent(Some(&traceparent(trace_id, "b7ad6b7169203331")));
    let mut c = TaskServiceClient::with_interceptor(node.channel().await, bearer);
    let t = run(
        &mut c,
        fast_retry(spec("system.debug.fail", r#"{"message":"flaky"}"#), 2),
    )
    .await;
    assert_eq!(state(&t), TaskState::Failed);

    let id = t.id.clone();
    let spans = receiver
        .wait_for("two attempts and the record", Duration::from_secs(20), |s| {
            s.iter()
                .filter(|s| s.name == "task.attempt" && s.attr("task_id") == Some(&id))
                .count()
                == 2
                && has(s, "task.record", &id)
        })
        .await;
    let submit = one(&spans, "task.submit", &t.id);
    assert_eq!(submit.attr("rpc"), Some("SubmitAndWait"));
    let mut attempts: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "task.attempt" && s.attr("task_id") == Some(&t.id))
        .collect();
    attempts.sort_by_key(|s| s.attr("attempt").map(str::to_string));
    assert_eq!(
        attempts
            .iter()
            .map(|s| s.attr("attempt").unwrap())
            .collect::<Vec<_>>(),
        ["1", "2"]
    );
    for a in &attempts {
        assert_eq!(
            (a.trace_id.as_str(), a.parent_span_id.as_str()),
            (trace_id, submit.span_id.as_str())
        );
    }
    let record = one(&spans, "task.record", &t.id);
    assert_eq!(record.attr("state"), Some("FAILED"));
    for s in attempts.iter().copied().chain([submit, record]) {
        assert_eq!(
            (s.attr("tenant"), s.attr("task_type")),
            (Some("default"), Some("system.debug.fail")),
            "{s:#?}"
        );
    }
    assert_eq!(record.parent_span_id, attempts[1].span_id);

    // A delegated sub-task is traced like a submission (under a parent still running: a
    // finished task takes no new sub-tasks).
    let parent = crate::common::submit(
        &mut node.tasks().await,
        spec("system.debug.sleep", r#"{"ms": 30000}"#),
    )
    .await;
    let bearer = TestNode::bearer(Some(&node.credential()))
        .with_traceparent(Some(&traceparent(trace_id, "c7ad6b7169203331")));
    let mut peer = SupervisorPeerClient::with_interceptor(node.channel().await, bearer);
    let sub = peer
        .delegate(v1::DelegateRequest {
            spec: Some(spec("system.debug.echo", "{}")),
            parent_id: parent.id.clone(),
            wait_ms: 30_000,
            tenant: String::new(),
            parent_depth: 0,
        })
        .await
        .expect("delegate")
        .into_inner();
    let spans = receiver
        .wait_for("the delegated task", Duration::from_secs(20), |s| {
            has(s, "task.submit", &sub.id) && has(s, "task.attempt", &sub.id)
        })
        .await;
    let delegated = one(&spans, "task.submit", &sub.id);
    assert_eq!(
        (delegated.attr("rpc"), delegated.trace_id.as_str()),
        (Some("Delegate"), trace_id)
    );
    assert_eq!(
        one(&spans, "task.attempt", &sub.id).parent_span_id,
        delegated.span_id
    );
}

#[tokio::test]
async fn the_cli_continues_the_trace_in_traceparent() {
    let receiver = OtlpReceiver::start().await;
    let node = TestNode::start_with_env("", &receiver.env()).await;
    let trace_id = "11112222333344445555666677778888";
    let out = Command::new(env!("CARGO_BIN_EXE_cadre"))
        .args(["--endpoint", &node.grpc, "--data-dir"])
        .arg(node.dir.join("data"))
        .args(["submit", "system.debug.echo", "{}", "--wait", "--json"])
        .env("TRACEPARENT", traceparent(trace_id, "aaaabbbbccccdddd"))
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let task: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = task["id"].as_str().expect("task id").to_string();
    let spans = receiver
        .wait_for("the CLI's task in its trace", Duration::from_secs(20), |s| {
            has(s, "task.submit", &id) && has(s, "task.attempt", &id)
        })
        .await;
    assert_eq!(one(&spans, "task.submit", &id).trace_id, trace_id);
    assert_eq!(one(&spans, "task.attempt", &id).trace_id, trace_id);
}

#[tokio::test]
async fn without_an_endpoint_or_when_disabled_nothing_is_exported_and_tasks_run() {
    let receiver = OtlpReceiver::start().await;
    let no_endpoint = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", None),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", None),
    ];
    let mut disabled = receiver.env();
    disabled.push(("OTEL_SDK_DISABLED", Some("true".into())));
    for env in [no_endpoint, disabled] {
        let node = TestNode::start_with_env("", &env).await;
        let bearer = TestNode::bearer(Some(&node.credential()))
            .with_traceparent(Some(&traceparent(TRACE_ID, CALLER_SPAN)));
        let mut c = TaskServiceClient::with_interceptor(node.channel().await, bearer);
        let t = run(&mut c, spec("system.debug.echo", "{}")).await;
        assert_eq!(state(&t), TaskState::Succeeded);
        drop(c);
        assert!(node.stop().await.success());
        assert_eq!(receiver.exports(), 0, "nothing was sent with {env:?}");
    }
}

#[tokio::test]
async fn an_unreachable_collector_neither_stalls_nor_crashes_the_node() {
    // A port nothing listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = [
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            Some(format!("http://127.0.0.1:{port}")),
        ),
        ("OTEL_BSP_SCHEDULE_DELAY", Some("50".into())),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let node = TestNode::start_in_env(tmp.path(), "", &env).await;
    let mut c = node.tasks().await;
    for _ in 0..3 {
        let t = run(&mut c, spec("system.debug.echo", "{}")).await;
        assert_eq!(state(&t), TaskState::Succeeded);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(c);
    let started = std::time::Instant::now();
    assert!(node.stop().await.success());
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "shutdown took {:?}",
        started.elapsed()
    );
    let log = read_log(tmp.path());
    assert_eq!(
        log.matches("span export failed").count(),
        1,
        "logged once:\n{log}"
    );
}

#[test]
fn the_bearer_sends_only_a_well_formed_traceparent() {
    use tonic::service::Interceptor;
    let tp = traceparent(TRACE_ID, CALLER_SPAN);
    let mut good = TestNode::bearer(None).with_traceparent(Some(&tp));
    let req = good.call(tonic::Request::new(())).unwrap();
    assert_eq!(req.metadata().get("traceparent").unwrap().to_str().unwrap(), tp);
    let mut bad = TestNode::bearer(None).with_traceparent(Some("not-a-traceparent"));
    let req = bad.call(tonic::Request::new(())).unwrap();
    assert!(req.metadata().get("traceparent").is_none());
}

/// A local server answering chat completions in the OpenAI wire format (streamed), keeping the
/// Authorization headers it saw.
async fn openai_wire_server() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use axum::http::{HeaderMap, header};
    use axum::response::IntoResponse;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |headers: HeaderMap, body: axum::Json<serde_json::Value>| {
            let log = log.clone();
            async move {
                let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
                log.lock().unwrap().push(auth.unwrap_or_default().to_string());
                assert_eq!(body["stream"], true);
                let chunk = |delta: serde_json::Value, finish: Option<&str>| {
                    let v = serde_json::json!({
                        "id": "chatcmpl-otel", "object": "chat.completion.chunk", "created": 1,
                        "model": "tiny-1-0324", "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
                    });
                    format!("data: {v}\n\n")
                };
                let usage = serde_json::json!({
                    "id": "chatcmpl-otel", "object": "chat.completion.chunk", "created": 1, "model": "tiny-1-0324",
                    "choices": [], "usage": { "prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8 },
                });
                let body = [
                    chunk(serde_json::json!({ "role": "assistant", "content": "" }), None),
                    chunk(serde_json::json!({ "content": "Hello " }), None),
                    chunk(serde_json::json!({ "content": "there." }), None),
                    chunk(serde_json::json!({}), Some("stop")),
                    format!("data: {usage}\n\n"),
                    "data: [DONE]\n\n".to_string(),
                ]
                .concat();
                ([(header::CONTENT_TYPE, "text/event-stream")], body).into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/v1"), seen)
}

/// An `llm` task's provider call is a client span in the task's trace, a child of its attempt,
/// carrying the OpenTelemetry GenAI attributes and the task's identifiers; the tokens it used
/// are recorded on the task; the API key comes from the environment and reaches the provider.
#[tokio::test]
async fn llm_calls_are_genai_client_spans_in_the_tasks_trace() {
    let receiver = OtlpReceiver::start().await;
    let (base_url, seen) = openai_wire_server().await;
    let toml = format!(
        "[executors.llm]\ndefault_model = \"tiny\"\n\
         [executors.llm.providers.local]\nbase_url = \"{base_url}\"\napi_key_env = \"CADRE_TEST_LLM_KEY\"\n\
         [executors.llm.models.tiny]\nprovider = \"local\"\nmodel = \"tiny-1\"\n\
         [budgets.models.tiny]\ninput_per_1k = 1.0\noutput_per_1k = 2.0\n"
    );
    let mut env = receiver.env();
    env.push(("CADRE_TEST_LLM_KEY", Some("sk-test-otel".into())));
    let node = TestNode::start_with_env(&toml, &env).await;
    let bearer = TestNode::bearer(Some(&node.credential()))
        .with_traceparent(Some(&traceparent(TRACE_ID, CALLER_SPAN)));
    let mut c = TaskServiceClient::with_interceptor(node.channel().await, bearer);

    let task = submit(
        &mut c,
        spec(
            "intelligence.llm.chat",
            r#"{"prompt":"Say hello","max_tokens":16}"#,
        ),
    )
    .await;
    let evs = events(&mut c, &task.id, 0).await;
    assert_eq!(evs.last().map(ev_state), Some(TaskState::Succeeded), "{evs:#?}");
    let got = c
        .get(v1::GetRequest { id: task.id.clone() })
        .await
        .unwrap()
        .into_inner();
    let result: serde_json::Value = serde_json::from_str(&got.result_json).unwrap();
    assert_eq!(result["content"], "Hello there.");
    assert_eq!(got.usage.len(), 1, "{got:#?}");
    assert_eq!(
        (
            got.usage[0].model.as_str(),
            got.usage[0].tokens_in,
            got.usage[0].tokens_out
        ),
        ("tiny", 5, 3)
    );
    assert!((got.usage[0].cost_usd - 0.011).abs() < 1e-9, "{got:#?}");
    assert_eq!(*seen.lock().unwrap(), vec!["Bearer sk-test-otel".to_string()]);
    // The call's record (stored with the usage) names the task's trace.
    let (_, body) = node.http_get(&format!("/v1/llm-calls?task_id={}", task.id)).await;
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["calls"][0]["trace_id"], TRACE_ID, "{page}");

    let id = task.id.as_str();
    let spans = receiver
        .wait_for("the chat span", Duration::from_secs(20), |s| {
            has(s, "chat tiny-1", id) && has(s, "task.attempt", id)
        })
        .await;
    let chat = one(&spans, "chat tiny-1", id);
    let attempt = one(&spans, "task.attempt", id);
    assert_eq!(chat.trace_id, TRACE_ID);
    assert_eq!(
        chat.parent_span_id, attempt.span_id,
        "the call is the attempt's child"
    );
    assert_eq!(chat.kind, 3, "client span: {chat:#?}");
    for (key, want) in [
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.provider.name", "local"),
        ("gen_ai.request.model", "tiny-1"),
        ("gen_ai.request.max_tokens", "16"),
        ("gen_ai.output.type", "text"),
        ("gen_ai.response.model", "tiny-1-0324"),
        ("gen_ai.response.id", "chatcmpl-otel"),
        ("gen_ai.response.finish_reasons", "[\"stop\"]"),
        ("gen_ai.usage.input_tokens", "5"),
        ("gen_ai.usage.output_tokens", "3"),
        ("server.address", "127.0.0.1"),
        ("task_id", id),
        ("task_type", "intelligence.llm.chat"),
        ("tenant", "default"),
    ] {
        assert_eq!(chat.attr(key), Some(want), "{key} in {chat:#?}");
    }
    // The key is not on any span.
    assert!(
        spans
            .iter()
            .all(|s| s.attributes.values().all(|v| !v.contains("sk-test-otel"))),
        "the API key leaked into a span"
    );
    drop(c);
    assert!(node.stop().await.success());
}
