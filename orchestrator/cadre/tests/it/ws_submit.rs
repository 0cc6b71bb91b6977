//! Task submission over the WebSocket `/v1/events` (docs/HTTP_API.md, "Submitting over the
//! socket") against the real binary: many submissions in flight on one socket, each answered
//! under its own request id; the tenant and role of the socket's credential, with audit
//! records; per-request errors that keep the socket open; a dropped socket that loses nothing;
//! the in-flight bound and a subscription on the same socket; the Python `websockets` package
//! doing the same from the outside (tests/python/ws_submit.py).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sqlx::sqlite::SqlitePoolOptions;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::clients::python_script;
use crate::common::*;

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Longest wait for any one message.
const PATIENCE: Duration = Duration::from_secs(30);

/// Opens `/v1/events` with `Authorization: Bearer <credential>`, or with no credential.
async fn connect(node: &TestNode, credential: Option<&str>) -> Ws {
    let url = format!("ws://{}/v1/events", node.http.trim_start_matches("http://"));
    let mut req = url.into_client_request().unwrap();
    if let Some(c) = credential {
        req.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {c}")).unwrap(),
        );
    }
    let tcp = tokio::net::TcpStream::connect(node.http.trim_start_matches("http://"))
        .await
        .unwrap();
    tokio_tungstenite::client_async(req, tcp).await.unwrap().0
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// A `submit` message.
fn submit_msg(request_id: &str, task: Value) -> Value {
    json!({ "type": "submit", "request_id": request_id, "task": task })
}

fn echo(n: usize) -> Value {
    json!({ "task_type": "system.debug.echo", "params": { "n": n } })
}

fn sleep(ms: u64) -> Value {
    json!({ "task_type": "system.debug.sleep", "params": { "ms": ms } })
}

/// The next JSON message (skipping pings), or None when the server closed.
async fn next(ws: &mut Ws) -> Option<Value> {
    loop {
        let msg = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("a message in time");
        match msg {
            Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(&t).unwrap()),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(other)) => panic!("unexpected message {other:?}"),
        }
    }
}

/// The next JSON message (skipping pings), or the close code when the server closed.
async fn next_or_close(ws: &mut Ws) -> Result<Value, Option<u16>> {
    loop {
        let msg = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("a message in time");
        match msg {
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(&t).unwrap()),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Close(f))) => return Err(f.map(|f| u16::from(f.code))),
            None | Some(Err(_)) => return Err(None),
            Some(Ok(other)) => panic!("unexpected message {other:?}"),
        }
    }
}

/// The close code the server sends (skipping anything before it).
async fn close_code(ws: &mut Ws) -> Option<u16> {
    loop {
        match tokio::time::timeout(PATIENCE, ws.next()).await.ok()? {
            Some(Ok(Message::Close(f))) => return f.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            _ => return None,
        }
    }
}

/// Asserts that the next message is an `error` for `request_id` with `code`; returns it.
async fn expect_error(ws: &mut Ws, request_id: Value, code: &str) -> Value {
    let v = next(ws).await.expect("an error message");
    assert_eq!(
        (&v["type"], &v["request_id"], &v["code"]),
        (&json!("error"), &request_id, &json!(code)),
        "{v}"
    );
    assert!(!v["message"].as_str().unwrap_or_default().is_empty(), "{v}");
    v
}

/// What one request was answered: `accepted`, its events, `result`.
#[derive(Default, Debug)]
struct Answer {
    accepted: Option<Value>,
    events: Vec<Value>,
    result: Option<Value>,
}

/// Reads until every request in `want` has its `result`, checking the order per request
/// (accepted, events of that task in cursor order, result) and that nothing is mixed up.
async fn answers(ws: &mut Ws, want: &[String]) -> HashMap<String, Answer> {
    let mut got: HashMap<String, Answer> = HashMap::new();
    while want.iter().any(|r| got.get(r).is_none_or(|a| a.result.is_none())) {
        let v = next(ws).await.expect("the socket stays open");
        let rid = v["request_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no request_id: {v}"));
        let a = got.entry(rid.to_string()).or_default();
        match v["type"].as_str().unwrap() {
            "accepted" => {
                assert!(a.accepted.is_none(), "{rid}: accepted twice");
                a.accepted = Some(v);
            }
            "event" => {
                let acc = a
                    .accepted
                    .as_ref()
                    .unwrap_or_else(|| panic!("{rid}: event first"));
                assert!(a.result.is_none(), "{rid}: an event after result: {v}");
                assert_eq!(v["task_id"], acc["task"]["id"], "{rid}: another task's event");
                if let Some(prev) = a.events.last() {
                    assert!(v["cursor"].as_u64() > prev["cursor"].as_u64(), "{rid}: order");
                }
                a.events.push(v);
            }
            "result" => {
                assert!(a.accepted.is_some(), "{rid}: result before accepted");
                a.result = Some(v);
            }
            _ => panic!("{rid}: unexpected {v}"),
        }
    }
    got
}

/// The stored events of a task as the socket renders them (without `request_id`).
async fn stored_events(node: &TestNode, id: &str) -> Vec<(u64, String)> {
    let mut t = node.tasks().await;
    events(&mut t, id, 0)
        .await
        .iter()
        .map(|e| (e.cursor, ev_state(e).as_str_name().to_string()))
        .collect()
}

fn cursors_and_states(evs: &[Value]) -> Vec<(u64, String)> {
    evs.iter()
        .map(|e| {
            let state = format!("TASK_STATE_{}", e["state"].as_str().unwrap());
            (e["cursor"].as_u64().unwrap(), state)
        })
        .collect()
}

#[tokio::test]
async fn fifty_submissions_in_flight_on_one_socket_are_each_answered_under_their_request_id() {
    let node = TestNode::start("[supervisors.system.pools]\nmonitor = 16\n").await;
    let op = issue(&node, "acme", "operator").await;
    let mut ws = connect(&node, Some(&op)).await;
    // All sent before reading anything: fifty in flight at once (the default bound is 64).
    // Sleeps with progress reports interleave their events on the socket.
    let ids: Vec<String> = (0..50).map(|i| format!("req-{i}")).collect();
    for (i, rid) in ids.iter().enumerate() {
        let task = if i % 2 == 0 {
            echo(i)
        } else {
            json!({ "task_type": "system.debug.sleep", "params": { "ms": 200 + 10 * i as u64 } })
        };
        send(&mut ws, submit_msg(rid, task)).await;
    }
    let got = answers(&mut ws, &ids).await;
    assert_eq!(got.len(), 50);
    let mut task_ids = std::collections::HashSet::new();
    for (i, rid) in ids.iter().enumerate() {
        let a = &got[rid];
        let acc = a.accepted.as_ref().unwrap();
        assert_eq!(acc["created"], true, "{acc}");
        assert_eq!(acc["task"]["tenant"], "acme", "{acc}");
        let id = acc["task"]["id"].as_str().unwrap();
        assert!(task_ids.insert(id.to_string()), "two requests got one task");
        let want_type = if i % 2 == 0 {
            "system.debug.echo"
        } else {
            "system.debug.sleep"
        };
        assert_eq!(acc["task"]["task_type"], want_type, "{rid}: {acc}");
        if i % 2 == 0 {
            assert_eq!(acc["task"]["params"], json!({ "n": i }), "{rid}: {acc}");
        }
        // Events: every stored one of that task, from its first, nothing else.
        assert_eq!(
            cursors_and_states(&a.events),
            stored_events(&node, id).await,
            "{rid}"
        );
        assert_eq!(a.events[0]["state"], "QUEUED", "{rid}");
        let result = &a.result.as_ref().unwrap()["task"];
        assert_eq!(result["id"], id, "{rid}");
        assert_eq!(result["state"], "SUCCEEDED", "{rid}: {result}");
        assert_eq!(
            a.events.last().unwrap()["state"],
            "SUCCEEDED",
            "{rid}: the terminal event comes before the result"
        );
        let mut t = node.tasks().await;
        assert_eq!(get(&mut t, id).await.seq, result["seq"].as_u64().unwrap());
    }
    // The socket is still open for more.
    send(&mut ws, submit_msg("one-more", echo(99))).await;
    let more = answers(&mut ws, &["one-more".to_string()]).await;
    assert_eq!(
        more["one-more"].result.as_ref().unwrap()["task"]["result"],
        json!({ "n": 99 })
    );
    node.stop().await;
}

/// Audit rows (action, target, outcome, actor) from a stopped node's store.
async fn audit_rows(data: &Path) -> Vec<(String, String, String, String)> {
    let url = format!("sqlite:{}?mode=ro", data.join("cadre.db").display());
    let db = SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    let rows = sqlx::query_as("SELECT action, target, outcome, actor FROM audit ORDER BY seq")
        .fetch_all(&db)
        .await
        .unwrap();
    db.close().await;
    rows
}

#[tokio::test]
async fn the_socket_credential_sets_tenant_and_role_and_socket_submits_are_audited() {
    let tmp = tempfile::tempdir().unwrap();
    let node = TestNode::start_in(tmp.path(), "").await;
    let a = issue(&node, "tenant-a", "operator").await;
    let b = issue(&node, "tenant-b", "operator").await;
    let watcher = issue(&node, "tenant-a", "observer").await;

    // Tenant A submits with the token in its first message (no header).
    let mut wa = connect(&node, None).await;
    let mut first = submit_msg("a1", sleep(300));
    first["token"] = json!(a);
    send(&mut wa, first).await;
    let got = answers(&mut wa, &["a1".to_string()]).await;
    let task_a = got["a1"].accepted.as_ref().unwrap()["task"].clone();
    assert_eq!(task_a["tenant"], "tenant-a");
    let id_a = task_a["id"].as_str().unwrap().to_string();
    // A later message's token must be the socket's own: B's token on A's socket is refused,
    // and nothing is created for either tenant.
    let mut other = submit_msg("a2", echo(2));
    other["token"] = json!(b);
    send(&mut wa, other).await;
    expect_error(&mut wa, json!("a2"), "invalid_argument").await;

    // Tenant B: its socket cannot reach A's task; a one-task subscribe is refused as today.
    let mut wb = connect(&node, Some(&b)).await;
    send(
        &mut wb,
        json!({"type": "subscribe", "task_id": id_a, "cursor": 0}),
    )
    .await;
    expect_error(&mut wb, Value::Null, "not_found").await;
    assert_eq!(close_code(&mut wb).await, Some(1007));
    // B's submissions are B's, and B's socket carries only B's task's events.
    let mut wb = connect(&node, Some(&b)).await;
    send(&mut wb, submit_msg("a1", echo(1))).await;
    let got_b = answers(&mut wb, &["a1".to_string()]).await;
    let b1 = &got_b["a1"];
    let id_b = b1.accepted.as_ref().unwrap()["task"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(id_b, id_a);
    assert!(
        b1.events
            .iter()
            .all(|e| e["task_id"] == id_b.as_str() && e["tenant"] == "tenant-b")
    );
    let mut tb = node.tasks_as(Some(&b)).await;
    let refused = tb
        .get(cadre_proto::v1::GetRequest { id: id_a.clone() })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::NotFound);

    // An observer may open the socket (and watch) but not submit: a per-request refusal, and
    // the socket stays open for the next request.
    let mut wo = connect(&node, Some(&watcher)).await;
    for rid in ["o1", "o2"] {
        send(&mut wo, submit_msg(rid, echo(0))).await;
        expect_error(&mut wo, json!(rid), "permission_denied").await;
    }
    let mut to = node.tasks_as(Some(&watcher)).await;
    let listed = to
        .list(cadre_proto::v1::ListRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tasks;
    assert_eq!(listed.len(), 1, "only A's task exists in tenant-a: {listed:?}");
    drop((wa, wb, wo));
    assert!(node.stop().await.success());

    // The audit chain has the socket's acts as for any other face.
    let rows = audit_rows(&tmp.path().join("data")).await;
    let has = |target: &str, outcome: &str, actor: &str| {
        rows.iter()
            .any(|(a, t, o, who)| a == "task.submit" && t == target && o == outcome && who == actor)
    };
    assert!(has(&id_a, "ok", "operator-tenant-a"), "{rows:?}");
    assert!(has(&id_b, "ok", "operator-tenant-b"), "{rows:?}");
    let denied = rows
        .iter()
        .filter(|(a, _, o, who)| a == "task.submit" && o == "denied" && who == "observer-tenant-a")
        .count();
    assert_eq!(denied, 2, "{rows:?}");
}

#[tokio::test]
async fn bad_requests_get_errors_and_the_socket_keeps_working() {
    let capped = "[quotas.tenants.capped]\nsubmits_per_second = 1000\nburst = 1000\nmax_unfinished = 1\n";
    let node = TestNode::start(capped).await;
    let op = issue(&node, "acme", "operator").await;
    let mut ws = connect(&node, Some(&op)).await;
    // A long task under a request id, then the same id again while it is in flight.
    send(&mut ws, submit_msg("dup", sleep(1500))).await;
    let acc = next(&mut ws).await.unwrap();
    assert_eq!(
        (&acc["type"], &acc["request_id"]),
        (&json!("accepted"), &json!("dup"))
    );
    send(&mut ws, submit_msg("dup", echo(1))).await;
    let cases: Vec<(Value, Value, &str)> = vec![
        // Params that do not fit the executor's schema.
        (
            submit_msg(
                "schema",
                json!({"task_type": "system.debug.sleep", "params": {"ms": "long"}}),
            ),
            json!("schema"),
            "invalid_argument",
        ),
        (
            submit_msg("unknown", json!({"task_type": "no.such.type"})),
            json!("unknown"),
            "invalid_argument",
        ),
        (
            submit_msg(
                "field",
                json!({"task_type": "system.debug.echo", "colour": "red"}),
            ),
            json!("field"),
            "invalid_argument",
        ),
        (
            json!({"type": "submit", "task": echo(0)}),
            Value::Null,
            "invalid_argument",
        ),
        (submit_msg("", echo(0)), json!(""), "invalid_argument"),
        (
            submit_msg(&"x".repeat(129), echo(0)),
            json!("x".repeat(129)),
            "invalid_argument",
        ),
        (
            json!({"type": "submit", "request_id": 7, "task": echo(0)}),
            Value::Null,
            "invalid_argument",
        ),
        (
            json!({"type": "submit", "request_id": "no-task"}),
            json!("no-task"),
            "invalid_argument",
        ),
        (
            json!({"type": "launch", "request_id": "what"}),
            json!("what"),
            "invalid_argument",
        ),
        // One subscription per socket, as its first message.
        (
            json!({"type": "subscribe", "cursor": 0}),
            Value::Null,
            "failed_precondition",
        ),
    ];
    // The duplicate is refused (the in-flight one is untouched; its events may come first).
    let dup = loop {
        let v = next(&mut ws).await.unwrap();
        if v["type"] == "error" {
            break v;
        }
        assert_eq!(
            (&v["type"], &v["request_id"]),
            (&json!("event"), &json!("dup")),
            "{v}"
        );
    };
    assert_eq!(
        (&dup["request_id"], &dup["code"]),
        (&json!("dup"), &json!("already_exists"))
    );
    assert!(dup["message"].as_str().unwrap().contains("in flight"), "{dup}");
    for (msg, rid, code) in cases {
        send(&mut ws, msg.clone()).await;
        let err = next(&mut ws).await.unwrap();
        // The `dup` task's events may come in between.
        let err = if err["request_id"] == "dup" {
            skip_dup(&mut ws, err).await
        } else {
            err
        };
        assert_eq!(
            (&err["type"], &err["request_id"], &err["code"]),
            (&json!("error"), &rid, &json!(code)),
            "{msg}: {err}"
        );
    }
    // Not JSON at all, and a binary message.
    ws.send(Message::Text("{\"type\": \"submit\",".into()))
        .await
        .unwrap();
    let err = skip_dup_next(&mut ws).await;
    assert_eq!(
        (&err["code"], &err["request_id"]),
        (&json!("invalid_argument"), &Value::Null),
        "{err}"
    );
    ws.send(Message::Binary(vec![1, 2, 3].into())).await.unwrap();
    let err = skip_dup_next(&mut ws).await;
    assert_eq!(err["code"], "invalid_argument", "{err}");

    // The quota of the credential's tenant applies per request.
    let capped_op = issue(&node, "capped", "operator").await;
    let mut wc = connect(&node, Some(&capped_op)).await;
    send(&mut wc, submit_msg("c1", sleep(1000))).await;
    assert_eq!(next(&mut wc).await.unwrap()["type"], "accepted");
    send(&mut wc, submit_msg("c2", echo(0))).await;
    loop {
        let v = next(&mut wc).await.unwrap();
        if v["request_id"] == "c2" {
            assert_eq!(
                (&v["type"], &v["code"]),
                (&json!("error"), &json!("resource_exhausted")),
                "{v}"
            );
            break;
        }
        assert_eq!(v["request_id"], "c1", "{v}");
    }

    // After all that the first socket still works, and the first `dup` got its result.
    send(&mut ws, submit_msg("good", echo(5))).await;
    let mut results = HashMap::new();
    while results.len() < 2 {
        let v = next(&mut ws).await.expect("socket open");
        assert_ne!(v["type"], "error", "{v}");
        if v["type"] == "result" {
            results.insert(v["request_id"].as_str().unwrap().to_string(), v);
        }
    }
    assert_eq!(results["dup"]["task"]["task_type"], "system.debug.sleep");
    assert_eq!(results["good"]["task"]["result"], json!({ "n": 5 }));
    node.stop().await;
}

/// Skips messages of the `dup` request (its events) starting with `v`; returns the first other.
async fn skip_dup(ws: &mut Ws, mut v: Value) -> Value {
    while v["request_id"] == "dup" {
        assert_ne!(v["type"], "error", "{v}");
        v = next(ws).await.unwrap();
    }
    v
}

async fn skip_dup_next(ws: &mut Ws) -> Value {
    let v = next(ws).await.unwrap();
    skip_dup(ws, v).await
}

#[tokio::test]
async fn a_dropped_socket_loses_nothing_and_idempotency_keys_answer_created_false() {
    let node = TestNode::start("").await;
    let op = issue(&node, "acme", "operator").await;
    let keys: Vec<String> = (0..5).map(|i| format!("drop-{i}")).collect();
    let task = |key: &str| json!({"task_type": "system.debug.sleep", "params": {"ms": 1000}, "idempotency_key": key});
    let mut ws = connect(&node, Some(&op)).await;
    for (i, key) in keys.iter().enumerate() {
        send(&mut ws, submit_msg(&format!("r{i}"), task(key))).await;
    }
    // Read until all five are accepted, then hang up (no close handshake) mid-flight.
    let mut ids = HashMap::new();
    while ids.len() < keys.len() {
        let v = next(&mut ws).await.unwrap();
        if v["type"] == "accepted" {
            assert_eq!(v["created"], true);
            ids.insert(v["request_id"].as_str().unwrap().to_string(), v["task"].clone());
        }
        assert_ne!(
            v["type"], "result",
            "the socket is dropped before any result: {v}"
        );
    }
    drop(ws);
    // Every task carries on to the end.
    let mut t = node.tasks_as(Some(&op)).await;
    for task in ids.values() {
        let id = task["id"].as_str().unwrap().to_string();
        let done = eventually("a task of the dropped socket finishes", PATIENCE, || {
            let mut t = t.clone();
            let id = id.clone();
            async move {
                let got = get(&mut t, &id).await;
                (state(&got) == cadre_proto::v1::TaskState::Succeeded).then_some(got)
            }
        })
        .await;
        let key = done.spec.as_ref().map(|s| s.idempotency_key.as_str());
        assert_eq!(key, task["idempotency_key"].as_str());
    }
    // A one-task subscription resumed after a finished task's last event ends at once.
    let first = ids["r0"]["id"].as_str().unwrap();
    let last = stored_events(&node, first).await.last().unwrap().0;
    let mut sub = connect(&node, Some(&op)).await;
    send(
        &mut sub,
        json!({"type": "subscribe", "task_id": first, "cursor": last}),
    )
    .await;
    assert_eq!(
        next(&mut sub).await.unwrap(),
        json!({"type": "subscribed", "cursor": last})
    );
    assert_eq!(
        next(&mut sub).await.unwrap(),
        json!({"type": "end", "cursor": last})
    );
    assert_eq!(close_code(&mut sub).await, Some(1000));
    // The same keys on a new socket: the same tasks, created false, their events from the
    // first and their results.
    let mut ws = connect(&node, Some(&op)).await;
    let again: Vec<String> = (0..keys.len()).map(|i| format!("again-{i}")).collect();
    for (rid, key) in again.iter().zip(&keys) {
        send(&mut ws, submit_msg(rid, task(key))).await;
    }
    let got = answers(&mut ws, &again).await;
    for (i, rid) in again.iter().enumerate() {
        let a = &got[rid];
        let acc = a.accepted.as_ref().unwrap();
        assert_eq!(acc["created"], false, "{acc}");
        assert_eq!(acc["task"]["id"], ids[&format!("r{i}")]["id"], "{acc}");
        let id = acc["task"]["id"].as_str().unwrap();
        assert_eq!(cursors_and_states(&a.events), stored_events(&node, id).await);
        assert_eq!(a.result.as_ref().unwrap()["task"]["state"], "SUCCEEDED");
    }
    let listed = t
        .list(cadre_proto::v1::ListRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tasks;
    assert_eq!(listed.len(), keys.len(), "no task twice: {listed:?}");
    node.stop().await;
}

#[tokio::test]
async fn submissions_in_flight_are_bounded_and_mix_with_a_one_task_subscription() {
    let node = TestNode::start("[server]\nws_max_inflight = 3\n").await;
    let op = issue(&node, "acme", "operator").await;

    // Plain socket: the fourth in flight is refused; once a result is in, there is room again.
    let mut ws = connect(&node, Some(&op)).await;
    for i in 0..3 {
        send(&mut ws, submit_msg(&format!("s{i}"), sleep(400 + 300 * i))).await;
    }
    send(&mut ws, submit_msg("s3", echo(3))).await;
    let mut refused = false;
    let first_done = loop {
        let v = next(&mut ws).await.unwrap();
        if v["request_id"] == "s3" {
            assert_eq!(
                (&v["type"], &v["code"]),
                (&json!("error"), &json!("resource_exhausted")),
                "{v}"
            );
            assert!(v["message"].as_str().unwrap().contains("ws_max_inflight"), "{v}");
            refused = true;
        }
        if v["type"] == "result" {
            break v["request_id"].as_str().unwrap().to_string();
        }
    };
    assert!(refused, "the fourth was refused before any result");
    send(&mut ws, submit_msg("s4", echo(4))).await;
    let mut rest: Vec<String> = (0..3)
        .map(|i| format!("s{i}"))
        .filter(|r| *r != first_done)
        .collect();
    rest.push("s4".into());
    while !rest.is_empty() {
        let v = next(&mut ws).await.expect("the socket stays open");
        assert_ne!(v["type"], "error", "{v}");
        if v["type"] == "result" {
            let rid = v["request_id"].as_str().unwrap();
            assert!(rest.iter().any(|r| r == rid), "one result per request: {v}");
            rest.retain(|r| r != rid);
            if rid == "s4" {
                assert_eq!(v["task"]["result"], json!({ "n": 4 }), "{v}");
            }
        }
    }
    drop(ws);

    // Mixed: a one-task subscription first, then submissions on the same socket. The `end` of
    // the subscription does not close the socket while submissions are in flight; it takes no
    // new ones; it closes with 1000 after the last result.
    let mut t = node.tasks_as(Some(&op)).await;
    let watched = submit(&mut t, spec("system.debug.sleep", r#"{"ms": 500}"#)).await;
    let mut ws = connect(&node, Some(&op)).await;
    send(
        &mut ws,
        json!({"type": "subscribe", "task_id": watched.id, "cursor": 0}),
    )
    .await;
    assert_eq!(next(&mut ws).await.unwrap()["type"], "subscribed");
    for i in 0..2 {
        send(&mut ws, submit_msg(&format!("m{i}"), sleep(2500))).await;
    }
    let mut plain = Vec::new();
    let mut tagged: HashMap<String, Vec<Value>> = HashMap::new();
    let mut ended = false;
    let mut results = 0;
    let code = loop {
        let v = match next_or_close(&mut ws).await {
            Ok(v) => v,
            Err(code) => break code,
        };
        match (v["type"].as_str().unwrap(), v["request_id"].as_str()) {
            ("event", None) => {
                assert_eq!(v["task_id"], watched.id.as_str(), "{v}");
                plain.push(v);
            }
            ("end", None) => {
                ended = true;
                assert_eq!(results, 0, "the subscription's task ends first");
                send(&mut ws, submit_msg("late", echo(0))).await;
            }
            ("error", Some("late")) => assert_eq!(v["code"], "failed_precondition", "{v}"),
            ("result", Some(_)) => results += 1,
            (_, Some(rid)) => tagged.entry(rid.to_string()).or_default().push(v),
            _ => panic!("unexpected {v}"),
        }
    };
    assert_eq!(code, Some(1000), "a normal close after the last result");
    assert!(ended, "the subscription ended");
    assert_eq!(results, 2, "both submissions were answered before the close");
    assert_eq!(plain.last().unwrap()["state"], "SUCCEEDED");
    assert_eq!(tagged.len(), 2, "{tagged:?}");
    node.stop().await;
}

#[tokio::test]
async fn python_websockets_submits_over_the_socket() {
    let node = TestNode::start("").await;
    let token = issue(&node, "acme", "operator").await;
    let stdout = python_script("ws_submit.py", &["--http", &node.http], &token).await;
    assert!(stdout.contains("OK"), "ws_submit.py says OK:\n{stdout}");
    node.stop().await;
}

/// The task example of docs/HTTP_API.md ("A task is rendered as") is what the node sends for
/// that task: the same fields, and the same values except the id and the times.
#[tokio::test]
async fn the_task_example_in_the_http_api_doc_is_what_the_node_renders() {
    let doc = std::fs::read_to_string(repo_root().join("docs/HTTP_API.md")).unwrap();
    let after = &doc[doc.find("A task is rendered as").expect("the task example")..];
    let start = after.find("```json\n").unwrap() + "```json\n".len();
    let end = start + after[start..].find("```").unwrap();
    let example: Value = serde_json::from_str(&after[start..end]).expect("the example is JSON");

    let node = TestNode::start("").await;
    let mut ws = connect(&node, Some(&node.credential())).await;
    let task = json!({"task_type": example["task_type"], "params": example["params"]});
    send(&mut ws, submit_msg("doc", task)).await;
    let got = answers(&mut ws, &["doc".to_string()]).await;
    let real = got["doc"].result.as_ref().unwrap()["task"].clone();
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&example), keys(&real), "{real}");
    for (k, v) in example.as_object().unwrap() {
        if !["id", "created_at_ms", "updated_at_ms"].contains(&k.as_str()) {
            assert_eq!(v, &real[k], "{k}: the doc says {v}, the node sends {}", real[k]);
        }
    }
    node.stop().await;
}

/// A `/v1/events` socket with a tiny receive buffer, so that a client that does not read
/// fills the node's queue for it quickly.
async fn connect_slow(node: &TestNode, credential: &str) -> Ws {
    let addr: std::net::SocketAddr = node.http.trim_start_matches("http://").parse().unwrap();
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let tcp = sock.connect(addr).await.unwrap();
    let url = format!("ws://{addr}/v1/events");
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {credential}")).unwrap(),
    );
    tokio_tungstenite::client_async(req, tcp).await.unwrap().0
}

#[tokio::test]
async fn a_client_that_does_not_read_is_told_lagged_once_and_resumes_every_task() {
    let node = TestNode::start(
        "[server]\nws_buffer = 16\nlag_grace_ms = 200\nws_ping_ms = 600000\n\
         [supervisors.system.pools]\nmonitor = 64\n",
    )
    .await;
    let op = issue(&node, "acme", "operator").await;
    let n = 60;
    // 16 KB of params, echoed in the result: over 3 MB towards a socket that reads nothing.
    let pad = "x".repeat(16_000);
    let task = |i: usize| json!({"task_type": "system.debug.echo", "params": {"i": i, "pad": pad}, "idempotency_key": format!("lag-{i}")});
    let mut ws = connect_slow(&node, &op).await;
    for i in 0..n {
        send(&mut ws, submit_msg(&format!("l{i}"), task(i))).await;
    }
    // Read nothing until every task has finished.
    let t = node.tasks_as(Some(&op)).await;
    eventually("all sixty tasks finish", PATIENCE, || {
        let mut t = t.clone();
        async move {
            let req = cadre_proto::v1::ListRequest {
                page_size: 100,
                ..Default::default()
            };
            let tasks = t.list(req).await.unwrap().into_inner().tasks;
            (tasks.len() == n
                && tasks
                    .iter()
                    .all(|t| state(t) == cadre_proto::v1::TaskState::Succeeded))
            .then_some(())
        }
    })
    .await;
    let lagged = "cadre_event_subscribers_lagged_total{transport=\"ws\"}";
    eventually("the socket lags", PATIENCE, || async {
        node.metric(lagged).await.filter(|n| *n >= 1.0)
    })
    .await;
    // Every producer (sixty submissions) found the queue full; the socket is counted once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        node.metric(lagged).await,
        Some(1.0),
        "one socket lagged, counted once"
    );
    // Now read: what fitted, then one `lagged`, then close 1013.
    let mut accepted: HashMap<String, String> = HashMap::new();
    let mut seen: HashMap<String, Vec<Value>> = HashMap::new();
    let mut results = 0;
    let lagged = loop {
        let v = next(&mut ws).await.expect("lagged before the close");
        let rid = v["request_id"].as_str().map(str::to_string);
        match v["type"].as_str().unwrap() {
            "lagged" => break v,
            "accepted" => {
                accepted.insert(rid.unwrap(), v["task"]["id"].as_str().unwrap().to_string());
            }
            "event" => seen.entry(rid.unwrap()).or_default().push(v),
            "result" => results += 1,
            _ => panic!("unexpected {v}"),
        }
    };
    assert_eq!(close_code(&mut ws).await, Some(1013));
    assert!(lagged["request_id"].is_string(), "{lagged}");
    assert!(
        results < n,
        "the socket was cut off, not buffered: {results} results"
    );

    // Each task resumes: from its last cursor received when its `accepted` came, else by
    // submitting its key again (the same task, created false). Together: every stored event.
    for i in 0..n {
        let rid = format!("l{i}");
        let mut evs = seen.remove(&rid).unwrap_or_default();
        let id = match accepted.get(&rid) {
            Some(id) => {
                let cursor = evs.last().map_or(0, |e| e["cursor"].as_u64().unwrap());
                let mut sub = connect(&node, Some(&op)).await;
                send(
                    &mut sub,
                    json!({"type": "subscribe", "task_id": id, "cursor": cursor}),
                )
                .await;
                assert_eq!(next(&mut sub).await.unwrap()["type"], "subscribed");
                loop {
                    let v = next(&mut sub).await.expect("end");
                    if v["type"] == "end" {
                        break;
                    }
                    evs.push(v);
                }
                id.clone()
            }
            None => {
                let mut again = connect(&node, Some(&op)).await;
                send(&mut again, submit_msg(&rid, task(i))).await;
                let got = answers(&mut again, std::slice::from_ref(&rid)).await;
                let acc = got[&rid].accepted.clone().unwrap();
                assert_eq!(acc["created"], false, "{acc}");
                evs = got[&rid].events.clone();
                acc["task"]["id"].as_str().unwrap().to_string()
            }
        };
        assert_eq!(cursors_and_states(&evs), stored_events(&node, &id).await, "{rid}");
    }
    node.stop().await;
}
