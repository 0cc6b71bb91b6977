//! The HTTP faces (docs/HTTP_API.md) over real sockets: the JSON API with its auth and errors,
//! the WebSocket `/v1/events` (filters, resume, lag, heartbeats) and SSE `/v1/events/sse`.

use std::collections::HashSet;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::common::*;

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// One HTTP exchange with an optional bearer credential: (status, headers, body).
async fn http(
    node: &TestNode,
    method: &str,
    path: &str,
    credential: Option<&str>,
    body: Option<&str>,
) -> (u16, Vec<(String, String)>, String) {
    let auth = credential.map(|c| format!("Bearer {c}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    // A POST always carries a body, so axum sees a JSON content type.
    let body = body.or((method == "POST").then_some(""));
    http_exchange(node, method, path, &headers, body).await
}

async fn json_call(
    node: &TestNode,
    method: &str,
    path: &str,
    cred: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let body = body.map(|b| b.to_string());
    let (code, _, text) = http(node, method, path, cred, body.as_deref()).await;
    let v =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text:?}"));
    (code, v)
}

fn error_code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn json_api_submits_gets_lists_cancels_and_scales_with_roles() {
    let node = TestNode::start("").await;
    let cmd = node.credential();
    let c = Some(cmd.as_str());

    let (code, who) = json_call(&node, "GET", "/v1/whoami", c, None).await;
    assert_eq!((code, who["role"].as_str()), (200, Some("commander")), "{who}");

    // Submit and wait, then submit, get, events, list.
    let (code, done) = json_call(
        &node,
        "POST",
        "/v1/tasks?wait=true",
        c,
        Some(json!({"task_type": "system.debug.echo", "params": {"text": "hi"}})),
    )
    .await;
    assert_eq!(code, 200, "{done}");
    assert_eq!(done["task"]["state"], "SUCCEEDED", "{done}");
    assert_eq!(done["task"]["result"]["text"], "hi", "{done}");

    let body = json!({"task_type": "system.debug.sleep", "params": {"ms": 30000}, "idempotency_key": "k1"});
    let (code, sub) = json_call(&node, "POST", "/v1/tasks", c, Some(body.clone())).await;
    assert_eq!((code, sub["created"].as_bool()), (201, Some(true)), "{sub}");
    let id = sub["task"]["id"].as_str().unwrap().to_string();
    let (code, again) = json_call(&node, "POST", "/v1/tasks", c, Some(body)).await;
    assert_eq!((code, again["created"].as_bool()), (200, Some(false)), "{again}");
    assert_eq!(again["task"]["id"], id.as_str());

    let (code, got) = json_call(&node, "GET", &format!("/v1/tasks/{id}"), c, None).await;
    assert_eq!(code, 200);
    assert_eq!(got["task"]["task_type"], "system.debug.sleep");
    assert_eq!(got["task"]["params"]["ms"], 30000);

    let (code, list) = json_call(
        &node,
        "GET",
        "/v1/tasks?state=QUEUED,RUNNING&type_prefix=system.debug.sl",
        c,
        None,
    )
    .await;
    assert_eq!(code, 200, "{list}");
    let ids: Vec<&str> = list["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["id"].as_str())
        .collect();
    assert_eq!(ids, vec![id.as_str()], "{list}");

    // Cancel, then cancelling again is a conflict.
    let (code, cancelled) = json_call(
        &node,
        "POST",
        &format!("/v1/tasks/{id}/cancel"),
        c,
        Some(json!({"reason": "test"})),
    )
    .await;
    assert_eq!(
        (code, cancelled["task"]["state"].as_str()),
        (200, Some("CANCELLED")),
        "{cancelled}"
    );
    let (code, again) = json_call(&node, "POST", &format!("/v1/tasks/{id}/cancel"), c, None).await;
    assert_eq!(
        (code, error_code(&again)),
        (409, "failed_precondition"),
        "{again}"
    );

    let (code, evs) = json_call(&node, "GET", &format!("/v1/tasks/{id}/events"), c, None).await;
    assert_eq!(code, 200);
    let states: Vec<&str> = evs["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["state"].as_str())
        .collect();
    assert_eq!(states.first(), Some(&"QUEUED"));
    assert_eq!(states.last(), Some(&"CANCELLED"), "{evs}");

    // Status and scale.
    let (code, st) = json_call(&node, "GET", "/v1/status", c, None).await;
    assert_eq!(code, 200);
    let system = st["supervisors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "system")
        .unwrap();
    assert!(
        system["pools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["worker_kind"] == "monitor"),
        "{st}"
    );
    let (code, scaled) = json_call(
        &node,
        "POST",
        "/v1/supervisors/system/pools/monitor/scale",
        c,
        Some(json!({"replicas": 3})),
    )
    .await;
    assert_eq!(
        (code, scaled["pool"]["target_size"].as_u64()),
        (200, Some(3)),
        "{scaled}"
    );

    let (code, usage) = json_call(&node, "GET", "/v1/usage", c, None).await;
    assert_eq!(code, 200, "{usage}");
    assert!(usage["usage"].is_array());

    // Roles and tenants: an observer of another tenant cannot submit, scale or see the task.
    let observer = issue(&node, "other", "observer").await;
    let o = Some(observer.as_str());
    let (code, denied) = json_call(
        &node,
        "POST",
        "/v1/tasks",
        o,
        Some(json!({"task_type": "system.debug.echo"})),
    )
    .await;
    assert_eq!(
        (code, error_code(&denied)),
        (403, "permission_denied"),
        "{denied}"
    );
    let (code, denied) = json_call(
        &node,
        "POST",
        "/v1/supervisors/system/pools/monitor/scale",
        o,
        Some(json!({"replicas": 1})),
    )
    .await;
    assert_eq!(
        (code, error_code(&denied)),
        (403, "permission_denied"),
        "{denied}"
    );
    let (code, hidden) = json_call(&node, "GET", &format!("/v1/tasks/{id}"), o, None).await;
    assert_eq!((code, error_code(&hidden)), (404, "not_found"), "{hidden}");
    let (code, list) = json_call(&node, "GET", "/v1/tasks", o, None).await;
    assert_eq!(code, 200);
    assert_eq!(
        list["tasks"].as_array().unwrap().len(),
        0,
        "other tenant sees nothing: {list}"
    );
    node.stop().await;
}

#[tokio::test]
async fn json_api_bad_input_gets_clear_errors_and_nothing_is_stored() {
    let node = TestNode::start("[limits]\nmax_params_bytes = 2048\n").await;
    let cmd = node.credential();
    let c = Some(cmd.as_str());

    let (code, headers, body) = http(&node, "GET", "/v1/tasks", None, None).await;
    assert_eq!(code, 401, "{body}");
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "www-authenticate" && v == "Bearer")
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error_code(&v), "unauthenticated");
    let (code, v) = json_call(&node, "GET", "/v1/status", Some("not-a-token"), None).await;
    assert_eq!((code, error_code(&v)), (401, "unauthenticated"));

    let cases: Vec<(&str, &str, u16, &str)> = vec![
        ("POST", "{not json", 400, "invalid_argument"),
        ("POST", r#"{"params": {}}"#, 400, "invalid_argument"),
        (
            "POST",
            r#"{"task_type": "system.debug.echo", "bogus": 1}"#,
            400,
            "invalid_argument",
        ),
        (
            "POST",
            r#"{"task_type": "nope.no.such"}"#,
            400,
            "invalid_argument",
        ),
        (
            "POST",
            r#"{"task_type": "system.debug.echo", "priority": 42}"#,
            400,
            "invalid_argument",
        ),
        (
            "POST",
            r#"{"task_type": "system.debug.echo", "security_level": "max"}"#,
            400,
            "invalid_argument",
        ),
    ];
    for (method, body, want, want_code) in cases {
        let (code, _, text) = http(&node, method, "/v1/tasks", c, Some(body)).await;
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{body}: not JSON: {text}"));
        assert_eq!((code, error_code(&v)), (want, want_code), "{body} -> {text}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    }
    let big = json!({"task_type": "system.debug.echo", "params": {"x": "y".repeat(40_000)}}).to_string();
    let (code, _, text) = http(&node, "POST", "/v1/tasks", c, Some(&big)).await;
    assert_eq!(code, 413, "{text}");
    let (code, v) = json_call(&node, "GET", "/v1/tasks?state=SLEEPING", c, None).await;
    assert_eq!((code, error_code(&v)), (400, "invalid_argument"), "{v}");
    let (code, v) = json_call(&node, "GET", "/v1/tasks?page_size=abc", c, None).await;
    assert_eq!((code, error_code(&v)), (400, "invalid_argument"), "{v}");
    let (code, v) = json_call(&node, "GET", "/v1/tasks/not-an-id", c, None).await;
    assert_eq!((code, error_code(&v)), (400, "invalid_argument"), "{v}");
    let (code, v) = json_call(
        &node,
        "GET",
        "/v1/tasks/01930000-0000-7000-8000-000000000000",
        c,
        None,
    )
    .await;
    assert_eq!((code, error_code(&v)), (404, "not_found"), "{v}");
    let (code, v) = json_call(
        &node,
        "POST",
        "/v1/supervisors/nope/pools/x/scale",
        c,
        Some(json!({"replicas": 1})),
    )
    .await;
    assert_eq!((code, error_code(&v)), (404, "not_found"), "{v}");
    let (code, v) = json_call(&node, "GET", "/v1/usage?day=yesterday", c, None).await;
    assert_eq!((code, error_code(&v)), (400, "invalid_argument"), "{v}");

    let (_, list) = json_call(&node, "GET", "/v1/tasks", c, None).await;
    assert_eq!(
        list["tasks"].as_array().unwrap().len(),
        0,
        "no bad request stored a task: {list}"
    );
    node.stop().await;
}

#[tokio::test]
async fn every_json_route_needs_a_credential() {
    let node = TestNode::start("").await;
    let id = "01930000-0000-7000-8000-000000000000";
    let routes = [
        ("GET", "/v1/whoami".to_string()),
        ("POST", "/v1/tasks".to_string()),
        ("GET", "/v1/tasks".to_string()),
        ("GET", format!("/v1/tasks/{id}")),
        ("GET", format!("/v1/tasks/{id}/events")),
        ("POST", format!("/v1/tasks/{id}/cancel")),
        ("GET", "/v1/status".to_string()),
        ("POST", "/v1/supervisors/system/pools/monitor/scale".to_string()),
        ("GET", "/v1/usage".to_string()),
        ("GET", "/v1/events/sse".to_string()),
    ];
    for (method, path) in routes {
        let (code, headers, body) = http(&node, method, &path, None, Some("{}")).await;
        assert_eq!(code, 401, "{method} {path} without a credential: {body}");
        assert!(
            headers.iter().any(|(k, _)| k == "www-authenticate"),
            "{method} {path}"
        );
    }
    node.stop().await;
}

// ---------------------------------------------------------------------------------------------
// WebSocket helpers

fn ws_url(node: &TestNode) -> String {
    format!("ws://{}/v1/events", node.http.trim_start_matches("http://"))
}

/// Connects with `Authorization` (Some) or no credential, optionally offering subprotocols.
async fn ws_connect(node: &TestNode, credential: Option<&str>, protocols: Option<&str>) -> Result<Ws, u16> {
    let mut req = ws_url(node).into_client_request().unwrap();
    if let Some(c) = credential {
        req.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {c}")).unwrap(),
        );
    }
    if let Some(p) = protocols {
        req.headers_mut()
            .insert("sec-websocket-protocol", HeaderValue::from_str(p).unwrap());
    }
    let addr = node.http.trim_start_matches("http://");
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    match tokio_tungstenite::client_async(req, tcp).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("websocket connect: {e}"),
    }
}

async fn send_json(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// The next JSON message (skipping pings), or None when the server closed.
async fn next_json(ws: &mut Ws) -> Option<Value> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("a message within 30s");
        match msg {
            Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(&t).unwrap()),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(other)) => panic!("unexpected message {other:?}"),
        }
    }
}

/// The close code the server sends after its last message.
async fn close_code(ws: &mut Ws) -> Option<u16> {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .ok()?
        {
            Some(Ok(Message::Close(f))) => return f.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            _ => return None,
        }
    }
}

/// Reads `event` messages until `n` were seen (or the stream ends); returns them.
async fn read_events(ws: &mut Ws, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    while out.len() < n {
        match next_json(ws).await {
            Some(v) if v["type"] == "event" => out.push(v),
            Some(v) => panic!("unexpected {v}"),
            None => break,
        }
    }
    out
}

fn cursors(events: &[Value]) -> Vec<u64> {
    events.iter().map(|e| e["cursor"].as_u64().unwrap()).collect()
}

async fn submit_echo(node: &TestNode, n: usize) -> Vec<String> {
    let mut t = node.tasks().await;
    let mut ids = Vec::new();
    for i in 0..n {
        let task = submit(&mut t, spec("system.debug.echo", &format!(r#"{{"i": {i}}}"#))).await;
        ids.push(task.id);
    }
    ids
}

#[tokio::test]
async fn websocket_authenticates_three_ways_filters_and_ends_one_task_streams() {
    let node = TestNode::start("").await;
    let cmd = node.credential();

    // No credential anywhere: the subscribe message must carry it.
    let mut ws = ws_connect(&node, None, None).await.unwrap();
    send_json(&mut ws, json!({"type": "subscribe", "cursor": 0})).await;
    let err = next_json(&mut ws).await.unwrap();
    assert_eq!(
        (err["type"].as_str(), err["code"].as_str()),
        (Some("error"), Some("unauthenticated")),
        "{err}"
    );
    assert_eq!(close_code(&mut ws).await, Some(1008));
    // A bad header credential is refused before the upgrade.
    assert_eq!(ws_connect(&node, Some("garbage"), None).await.err(), Some(401));
    // A malformed subscribe is an invalid_argument with close 1007.
    let mut ws = ws_connect(&node, Some(&cmd), None).await.unwrap();
    send_json(&mut ws, json!({"type": "subscribe", "states": ["NAPPING"]})).await;
    let err = next_json(&mut ws).await.unwrap();
    assert_eq!(err["code"], "invalid_argument", "{err}");
    assert_eq!(close_code(&mut ws).await, Some(1007));

    let ids = submit_echo(&node, 3).await;
    let mut t = node.tasks().await;
    for id in &ids {
        wait_terminal(&mut t, id).await;
    }

    // Header credential, one task from the beginning: QUEUED..SUCCEEDED, then end + 1000.
    let mut ws = ws_connect(&node, Some(&cmd), None).await.unwrap();
    send_json(
        &mut ws,
        json!({"type": "subscribe", "task_id": ids[1], "cursor": 0}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await.unwrap()["type"], "subscribed");
    let mut states = Vec::new();
    let end = loop {
        let v = next_json(&mut ws).await.expect("end message");
        if v["type"] == "end" {
            break v;
        }
        assert_eq!(v["task_id"], ids[1].as_str(), "{v}");
        states.push(v["state"].as_str().unwrap().to_string());
    };
    assert_eq!(states.first().map(String::as_str), Some("QUEUED"));
    assert_eq!(states.last().map(String::as_str), Some("SUCCEEDED"));
    assert!(end["cursor"].as_u64().unwrap() > 0);
    assert_eq!(close_code(&mut ws).await, Some(1000));

    // Subprotocol credential (the browser way); the server picks cadre.v1.
    let token = issue(&node, "default", "observer").await;
    let mut ws = ws_connect(&node, None, Some(&format!("cadre.v1, bearer.{token}")))
        .await
        .unwrap();
    send_json(
        &mut ws,
        json!({"type": "subscribe", "states": ["SUCCEEDED"], "cursor": 0}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await.unwrap()["type"], "subscribed");
    let evs = read_events(&mut ws, 3).await;
    assert!(evs.iter().all(|e| e["state"] == "SUCCEEDED"), "{evs:?}");
    let seen: HashSet<&str> = evs.iter().filter_map(|e| e["task_id"].as_str()).collect();
    assert_eq!(seen, ids.iter().map(String::as_str).collect());

    // Token in the first message; type prefix filter excludes everything here.
    let mut ws = ws_connect(&node, None, None).await.unwrap();
    send_json(
        &mut ws,
        json!({"type": "subscribe", "token": cmd, "type_prefix": "intelligence.", "cursor": 0}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await.unwrap()["type"], "subscribed");
    submit_echo(&node, 1).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(500), next_json(&mut ws))
            .await
            .is_err(),
        "an echo task does not match the intelligence. prefix"
    );
    node.stop().await;
}

async fn wait_terminal(t: &mut Tasks, id: &str) {
    eventually("task to finish", Duration::from_secs(30), || {
        let mut t = t.clone();
        let id = id.to_string();
        async move {
            let task = get(&mut t, &id).await;
            (state(&task) != cadre_proto::v1::TaskState::Queued
                && state(&task) != cadre_proto::v1::TaskState::Running)
                .then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn websocket_parent_filter_follows_only_the_children() {
    let node = TestNode::start("").await;
    let cmd = node.credential();
    let mut t = node.tasks().await;
    // Noise first, then a parent that delegates one echo.
    submit_echo(&node, 2).await;
    let parent = run(
        &mut t,
        spec(
            "system.debug.delegate",
            r#"{"task_type": "system.debug.echo", "params": {"child": true}}"#,
        ),
    )
    .await;
    assert_eq!(
        state(&parent),
        cadre_proto::v1::TaskState::Succeeded,
        "{parent:?}"
    );
    assert_eq!(parent.children.len(), 1);
    let mut ws = ws_connect(&node, Some(&cmd), None).await.unwrap();
    send_json(
        &mut ws,
        json!({"type": "subscribe", "parent_id": parent.id, "cursor": 0}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await.unwrap()["type"], "subscribed");
    let evs = read_events(&mut ws, 3).await;
    assert!(
        evs.iter()
            .all(|e| e["task_id"] == parent.children[0].as_str() && e["parent_id"] == parent.id.as_str()),
        "{evs:?}"
    );
    assert_eq!(evs.last().unwrap()["state"], "SUCCEEDED");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), next_json(&mut ws))
            .await
            .is_err(),
        "nothing but the child's events"
    );
    // gRPC Watch honours the same filter.
    let req = cadre_proto::v1::WatchRequest {
        parent_id: parent.id.clone(),
        ..Default::default()
    };
    let mut stream = t.watch(req).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.task_id, parent.children[0]);
    assert_eq!(first.parent_id, parent.id);
    node.stop().await;
}

#[tokio::test]
async fn websocket_resume_after_disconnect_misses_and_repeats_nothing() {
    let node = TestNode::start("").await;
    let cmd = node.credential();
    let mut ws = ws_connect(&node, Some(&cmd), None).await.unwrap();
    send_json(&mut ws, json!({"type": "subscribe", "cursor": 0})).await;
    assert_eq!(next_json(&mut ws).await.unwrap()["type"], "subscribed");
    // Events keep flowing while we disconnect and reconnect.
    let producer = {
        let grpc = node.tasks().await;
        tokio::spawn(async move {
            let mut t = grpc;
            for i in 0..300 {
                submit(&mut t, spec("system.debug.echo", &format!(r#"{{"i": {i}}}"#))).await;
            }
        })
    };
    let first = read_events(&mut ws, 200).await;
    drop(ws);
    let last = *cursors(&first).last().unwrap();
    producer.await.unwrap();
    let mut ws = ws_connect(&node, Some(&cmd), None).await.unwrap();
    send_json(&mut ws, json!({"type": "subscribe", "cursor": last})).await;
    assert_eq!(next_json(&mut ws).await.unwrap()["cursor"], last);
    let total = 900; // 300 tasks x QUEUED, RUNNING, SUCCEEDED
    let mut all = first;
    all.extend(read_events(&mut ws, total - all.len()).await);
    let got = cursors(&all);
    let want: Vec<u64> = (1..=total as u64).collect();
    assert_eq!(got, want, "every event once, in order, across the reconnect");
    node.stop().await;
}

#[tokio::test]
async fn slow_subscriber_is_told_it_lagged_and_resumes_while_fast_ones_get_everything() {
    // A small queue so the never-reading subscriber lags early; pings far apart so it is not
    // closed as dead first; a wide pool so sleeps with progress reports flow fast.
    let node = TestNode::start(
        "[server]\nws_buffer = 256\nlag_grace_ms = 2000\nws_ping_ms = 600000\n\
         [limits]\nmax_pending_tasks = 200000\n[supervisors.system.pools]\nmonitor = 64\n",
    )
    .await;
    let cmd = node.credential();
    let rss_before = rss_kib(node.pid());

    // The slow one: a tiny receive buffer, subscribes, then reads nothing.
    let mut slow = {
        let addr: std::net::SocketAddr = node.http.trim_start_matches("http://").parse().unwrap();
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        let tcp = sock.connect(addr).await.unwrap();
        let mut req = ws_url(&node).into_client_request().unwrap();
        req.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {cmd}")).unwrap(),
        );
        tokio_tungstenite::client_async(req, tcp).await.unwrap().0
    };
    send_json(&mut slow, json!({"type": "subscribe"})).await;
    assert_eq!(next_json(&mut slow).await.unwrap()["type"], "subscribed");

    // Two fast ones read everything as it comes, until the marker task's last event.
    let mut fast = Vec::new();
    for _ in 0..2 {
        let mut ws = ws_connect(&node, Some(&cmd), None).await.unwrap();
        send_json(&mut ws, json!({"type": "subscribe"})).await;
        assert_eq!(next_json(&mut ws).await.unwrap()["type"], "subscribed");
        fast.push(tokio::spawn(async move {
            let mut last = 0;
            loop {
                let v = next_json(&mut ws).await.expect("fast subscriber stays connected");
                assert_eq!(v["type"], "event", "a fast subscriber is never lagged: {v}");
                let c = v["cursor"].as_u64().unwrap();
                assert_eq!(c, last + 1, "in order, no gaps");
                last = c;
                if v["task_type"] == "system.debug.echo" && v["state"] == "SUCCEEDED" {
                    return last;
                }
            }
        }));
    }

    // Over 100,000 events: 9,000 sleeps of 10 ms, each QUEUED, RUNNING, up to 9 progress
    // reports and SUCCEEDED, from concurrent submitters.
    let mut producers = Vec::new();
    for _ in 0..16 {
        let mut t = node.tasks().await;
        producers.push(tokio::spawn(async move {
            for _ in 0..9_000 / 16 {
                submit(&mut t, spec("system.debug.sleep", r#"{"ms": 10}"#)).await;
            }
        }));
    }
    for p in producers {
        p.await.unwrap();
    }
    node.wait_idle(Duration::from_secs(300)).await;
    let rss_peak = rss_kib(node.pid());
    // The marker: once everything else has finished, its events are the last ones.
    let mut t = node.tasks().await;
    let marker = run(&mut t, spec("system.debug.echo", r#"{"marker": true}"#)).await;
    let total = events(&mut t, &marker.id, 0).await.last().unwrap().cursor;
    assert!(total >= 100_000, "only {total} events flowed");
    for f in fast {
        assert_eq!(f.await.unwrap(), total, "fast subscribers got every event");
    }
    assert_eq!(
        node.metric("cadre_event_subscribers_lagged_total{transport=\"ws\"}")
            .await,
        Some(1.0),
        "exactly the slow subscriber lagged"
    );

    // Now the slow one reads: what fitted in its queue and the socket buffers, then `lagged`.
    let mut got = Vec::new();
    let lag = loop {
        let v = next_json(&mut slow).await.expect("lagged message before close");
        if v["type"] == "lagged" {
            break v;
        }
        got.push(v);
    };
    assert_eq!(close_code(&mut slow).await, Some(1013));
    let lag_cursor = lag["cursor"].as_u64().unwrap();
    assert!(
        (got.len() as u64) < total / 2,
        "the slow subscriber was cut off, not buffered: {} events queued for it",
        got.len()
    );
    assert_eq!(
        Some(lag_cursor),
        cursors(&got).last().copied(),
        "lagged names the last cursor sent"
    );
    // It resumes from the cursor and gets the rest, with no gap.
    let mut ws = ws_connect(&node, Some(&cmd), None).await.unwrap();
    send_json(&mut ws, json!({"type": "subscribe", "cursor": lag_cursor})).await;
    assert_eq!(next_json(&mut ws).await.unwrap()["type"], "subscribed");
    let rest = read_events(&mut ws, (total - lag_cursor) as usize).await;
    got.extend(rest);
    assert_eq!(cursors(&got), (1..=total).collect::<Vec<_>>());

    // Memory stayed bounded: 100k events did not pile up for the slow subscriber.
    assert!(
        rss_peak < rss_before + 200 * 1024,
        "node RSS grew from {rss_before} KiB to {rss_peak} KiB"
    );
    node.stop().await;
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[tokio::test]
async fn websocket_pings_idle_subscribers_and_closes_silent_ones() {
    // Pings every second: a live client that reads answers them even on a loaded machine; a
    // silent one is closed after two intervals.
    let node = TestNode::start("[server]\nws_ping_ms = 1000\n").await;
    let cmd = node.credential();

    // A live client answers pings (tungstenite replies while reading) and stays connected; it
    // reads all along, in its own task, while the dead one below is being dropped.
    let mut live = ws_connect(&node, Some(&cmd), None).await.unwrap();
    send_json(&mut live, json!({"type": "subscribe"})).await;
    assert_eq!(next_json(&mut live).await.unwrap()["type"], "subscribed");
    let live = tokio::spawn(async move {
        let mut pings = 0;
        loop {
            match live.next().await {
                Some(Ok(Message::Ping(_))) => pings += 1,
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    assert_eq!(v["type"], "event", "{v}");
                    return pings;
                }
                other => panic!("the live subscriber got {other:?} after {pings} pings"),
            }
        }
    });

    // A dead client: the handshake and subscribe, then silence (no pongs). Raw TCP so nothing
    // answers pings behind our back.
    let addr = node.http.trim_start_matches("http://");
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (rd, mut wr) = tcp.into_split();
    let req = format!(
        "GET /v1/events HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Authorization: Bearer {cmd}\r\n\r\n"
    );
    wr.write_all(req.as_bytes()).await.unwrap();
    let mut rd = BufReader::new(rd);
    let mut line = String::new();
    rd.read_line(&mut line).await.unwrap();
    assert!(line.contains("101"), "{line}");
    // One masked text frame with the subscribe message.
    let payload = br#"{"type":"subscribe"}"#;
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    wr.write_all(&frame).await.unwrap();
    // Read (without answering) until the server drops us: within a few ping intervals.
    let closed = tokio::time::timeout(Duration::from_secs(15), async {
        let mut buf = [0u8; 4096];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "a silent subscriber is closed after two ping intervals"
    );
    // The live one is still connected, was pinged meanwhile, and gets events.
    submit_echo(&node, 1).await;
    let pings = tokio::time::timeout(Duration::from_secs(30), live)
        .await
        .expect("the live subscriber gets the event")
        .unwrap();
    assert!(
        pings >= 2,
        "pinged every second while the dead one was dropped: {pings}"
    );
    node.stop().await;
}

// ---------------------------------------------------------------------------------------------
// SSE

/// Reads an SSE response until `until` returns true for a parsed event or the stream ends;
/// returns (status, events as (id, event name, data)).
async fn sse(
    node: &TestNode,
    path: &str,
    headers: &[(&str, &str)],
    mut until: impl FnMut(&(Option<String>, Option<String>, Value)) -> bool,
) -> (u16, Vec<(Option<String>, Option<String>, Value)>) {
    let addr = node.http.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut rd = BufReader::new(s);
    let mut line = String::new();
    rd.read_line(&mut line).await.unwrap();
    let code: u16 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    loop {
        line.clear();
        rd.read_line(&mut line).await.unwrap();
        if line == "\r\n" {
            break;
        }
    }
    let mut out = Vec::new();
    if code != 200 {
        return (code, out);
    }
    let (mut id, mut name, mut data) = (None, None, String::new());
    let read = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            line.clear();
            if rd.read_line(&mut line).await.unwrap_or(0) == 0 {
                break;
            }
            // Chunked framing: size lines are hex digits only; skip them.
            let l = line.trim_end_matches(['\r', '\n']);
            if let Some(v) = l.strip_prefix("id: ") {
                id = Some(v.to_string());
            } else if let Some(v) = l.strip_prefix("event: ") {
                name = Some(v.to_string());
            } else if let Some(v) = l.strip_prefix("data: ") {
                data.push_str(v);
            } else if l.is_empty() && !data.is_empty() {
                let ev = (id.take(), name.take(), serde_json::from_str(&data).unwrap());
                data.clear();
                let stop = until(&ev);
                out.push(ev);
                if stop {
                    break;
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "SSE stream stalled; got {out:?}");
    (code, out)
}

#[tokio::test]
async fn sse_streams_with_ids_resumes_from_last_event_id_and_ends_one_task_streams() {
    let node = TestNode::start("").await;
    let cmd = node.credential();
    let auth = format!("Bearer {cmd}");
    let ids = submit_echo(&node, 4).await;
    let mut t = node.tasks().await;
    for id in &ids {
        wait_terminal(&mut t, id).await;
    }

    let (code, _) = sse(&node, "/v1/events/sse?cursor=0", &[], |_| true).await;
    assert_eq!(code, 401);

    // Everything from the beginning, with ids equal to cursors.
    let (code, evs) = sse(
        &node,
        "/v1/events/sse?cursor=0",
        &[("Authorization", &auth)],
        |e| e.2["cursor"] == 12,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(evs.len(), 12, "{evs:?}");
    for (i, (id, name, data)) in evs.iter().enumerate() {
        assert_eq!(name, &None, "task events are plain messages");
        assert_eq!(id.as_deref(), Some((i + 1).to_string().as_str()));
        assert_eq!(data["cursor"], i as u64 + 1);
    }
    // Last-Event-ID wins over ?cursor; the query token works for EventSource.
    let (_, resumed) = sse(
        &node,
        &format!("/v1/events/sse?cursor=0&state=SUCCEEDED&access_token={cmd}"),
        &[("Last-Event-ID", "6")],
        |e| e.2["cursor"] == 12,
    )
    .await;
    let got: Vec<u64> = resumed.iter().map(|e| e.2["cursor"].as_u64().unwrap()).collect();
    assert_eq!(got, vec![9, 12], "SUCCEEDED events after cursor 6");
    // One task: its events, then `end`, then the stream closes.
    let (_, one) = sse(
        &node,
        &format!("/v1/events/sse?task_id={}&cursor=0", ids[0]),
        &[("Authorization", &auth)],
        |_| false,
    )
    .await;
    let names: Vec<Option<&str>> = one.iter().map(|e| e.1.as_deref()).collect();
    assert_eq!(names, vec![None, None, None, Some("end")], "{one:?}");
    node.stop().await;
}

#[tokio::test]
async fn subscribers_beyond_the_limit_get_503_and_a_freed_slot_is_reused() {
    let node = TestNode::start("[server]\nmax_subscribers = 1\n").await;
    let cmd = node.credential();
    let mut first = ws_connect(&node, Some(&cmd), None).await.unwrap();
    send_json(&mut first, json!({"type": "subscribe"})).await;
    assert_eq!(next_json(&mut first).await.unwrap()["type"], "subscribed");
    assert_eq!(ws_connect(&node, Some(&cmd), None).await.err(), Some(503));
    let (code, _, body) = http(&node, "GET", "/v1/events/sse", Some(&cmd), None).await;
    assert_eq!(code, 503, "{body}");
    drop(first);
    let mut again = eventually("the slot to be freed", Duration::from_secs(10), || async {
        ws_connect(&node, Some(&cmd), None).await.ok()
    })
    .await;
    send_json(&mut again, json!({"type": "subscribe"})).await;
    assert_eq!(next_json(&mut again).await.unwrap()["type"], "subscribed");
    node.stop().await;
}
