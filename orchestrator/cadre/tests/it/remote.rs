//! Remote workers: test workers (a tonic client here, the grpcio example worker in
//! examples/python-worker) connect to a real node's WorkerService and run tasks routed to
//! executor `remote`.

use std::process::Stdio;
use std::time::Duration;

use cadre_proto::v1::{self, TaskState, server_message, worker_message, worker_result};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Streaming};

use crate::clients::python;
use crate::common::repo_root;
use crate::common::*;

const KIND: &str = "intelligence.remote.text";

/// A node routing `KIND` to executor `remote`, with fast heartbeats (test workers send one every
/// 100 ms, a fifth of the interval, so a loaded machine does not drop them) and small bounds.
fn config(wait_for_worker_ms: u64) -> String {
    format!(
        r#"
[executors.remote]
wait_for_worker_ms = {wait_for_worker_ms}
heartbeat_interval_ms = 500
max_result_bytes = 1024
[routes."{KIND}"]
supervisor = "intelligence"
worker = "research"
executor = "remote"
"#
    )
}

/// A worker written against the generated tonic client: it registers, then the test drives
/// each message. It heartbeats every 100 ms unless told not to.
struct TestWorker {
    tx: mpsc::Sender<v1::WorkerMessage>,
    rx: Streaming<v1::ServerMessage>,
    heartbeat: Option<tokio::task::JoinHandle<()>>,
}

impl TestWorker {
    async fn try_connect(node: &TestNode, cred: Option<&str>, id: &str) -> Result<TestWorker, tonic::Status> {
        let (tx, out) = mpsc::channel(64);
        tx.send(register(id)).await.unwrap();
        let mut rx = node
            .workers_as(cred)
            .await
            .attach(ReceiverStream::new(out))
            .await?
            .into_inner();
        match next(&mut rx).await {
            server_message::Body::Registered(r) => assert_eq!(r.heartbeat_interval_ms, 500),
            other => panic!("expected registered, got {other:?}"),
        }
        let beat = tx.clone();
        let heartbeat = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let hb = v1::WorkerMessage {
                    body: Some(worker_message::Body::Heartbeat(v1::WorkerHeartbeat {})),
                };
                if beat.send(hb).await.is_err() {
                    return;
                }
            }
        });
        Ok(TestWorker {
            tx,
            rx,
            heartbeat: Some(heartbeat),
        })
    }

    async fn connect(node: &TestNode, cred: &str, id: &str) -> TestWorker {
        Self::try_connect(node, Some(cred), id).await.expect("connect")
    }

    /// Stops heartbeats (the stream stays open).
    fn fall_silent(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
    }

    async fn next(&mut self) -> server_message::Body {
        next(&mut self.rx).await
    }

    async fn next_task(&mut self) -> v1::ServerTask {
        match self.next().await {
            server_message::Body::Task(t) => t,
            other => panic!("expected a task, got {other:?}"),
        }
    }

    async fn send(&self, body: worker_message::Body) {
        self.tx
            .send(v1::WorkerMessage { body: Some(body) })
            .await
            .unwrap();
    }

    async fn progress(&self, t: &v1::ServerTask, fraction: f64, message: &str) {
        self.send(worker_message::Body::Progress(v1::WorkerProgress {
            task_id: t.task_id.clone(),
            attempt: t.attempt,
            fraction,
            message: message.into(),
        }))
        .await
    }

    async fn result(&self, t: &v1::ServerTask, result_json: String) {
        self.send(worker_message::Body::Result(v1::WorkerResult {
            task_id: t.task_id.clone(),
            attempt: t.attempt,
            outcome: Some(worker_result::Outcome::ResultJson(result_json)),
        }))
        .await
    }
}

impl Drop for TestWorker {
    fn drop(&mut self) {
        self.fall_silent();
    }
}

fn register(id: &str) -> v1::WorkerMessage {
    v1::WorkerMessage {
        body: Some(worker_message::Body::Register(v1::WorkerRegister {
            worker_id: id.into(),
            kinds: vec![KIND.into()],
            max_concurrency: 2,
        })),
    }
}

async fn next(rx: &mut Streaming<v1::ServerMessage>) -> server_message::Body {
    tokio::time::timeout(Duration::from_secs(30), rx.message())
        .await
        .expect("a server message in time")
        .expect("stream ok")
        .expect("stream open")
        .body
        .expect("a body")
}

async fn wait_state(c: &mut Tasks, id: &str, want: TaskState) -> v1::Task {
    eventually(&format!("task {id} {want:?}"), Duration::from_secs(30), || {
        let mut c = c.clone();
        async move {
            let t = get(&mut c, id).await;
            (state(&t) == want).then_some(t)
        }
    })
    .await
}

#[tokio::test]
async fn a_remote_worker_runs_a_task_and_reports_progress() {
    let node = TestNode::start(&config(10_000)).await;
    let sup = issue(&node, "acme", "supervisor").await;
    let op = issue(&node, "acme", "operator").await;
    let mut w = TestWorker::connect(&node, &sup, "rust-1").await;
    assert_eq!(node.metric("cadre_remote_workers").await, Some(1.0));

    let mut c = node.tasks_as(Some(&op)).await;
    let task = submit(&mut c, spec(KIND, r#"{"text": "abc", "op": "reverse"}"#)).await;
    let t = w.next_task().await;
    assert_eq!(
        (t.task_id.as_str(), t.task_type.as_str(), t.attempt),
        (task.id.as_str(), KIND, 1)
    );
    let params: Value = serde_json::from_str(&t.params_json).unwrap();
    assert_eq!(params, json!({"text": "abc", "op": "reverse"}));
    w.progress(&t, 0.5, "half way").await;
    w.result(&t, r#"{"text": "cba"}"#.into()).await;

    let done = wait_state(&mut c, &task.id, TaskState::Succeeded).await;
    assert_eq!(
        serde_json::from_str::<Value>(&done.result_json).unwrap(),
        json!({"text": "cba"})
    );
    let evs = events(&mut c, &task.id, 0).await;
    assert!(
        evs.iter()
            .any(|e| e.is_progress && e.message == "half way" && e.progress == 0.5),
        "{evs:?}"
    );
    drop(w);
    eventually("the worker gauge drops to 0", Duration::from_secs(10), || async {
        (node.metric("cadre_remote_workers").await == Some(0.0)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_task_whose_worker_disconnects_is_retried_on_another_worker() {
    let node = TestNode::start(&config(10_000)).await;
    let sup = issue(&node, "acme", "supervisor").await;
    let mut c = node.tasks().await;
    let mut w1 = TestWorker::connect(&node, &sup, "first").await;
    let task = submit(&mut c, fast_retry(spec(KIND, r#"{"text": "x"}"#), 3)).await;
    let t1 = w1.next_task().await;
    assert_eq!(t1.attempt, 1);
    let mut w2 = TestWorker::connect(&node, &sup, "second").await;
    drop(w1);

    let t2 = w2.next_task().await;
    assert_eq!((t2.task_id.as_str(), t2.attempt), (task.id.as_str(), 2));
    w2.result(&t2, r#""from second""#.into()).await;
    let done = wait_state(&mut c, &task.id, TaskState::Succeeded).await;
    assert_eq!(done.result_json, r#""from second""#);
    let evs = events(&mut c, &task.id, 0).await;
    assert!(
        evs.iter().any(|e| e.state == TaskState::Retrying as i32
            && e.message.contains("remote worker disconnected (first")),
        "{evs:?}"
    );
}

#[tokio::test]
async fn a_worker_that_stops_heartbeating_is_dropped_and_its_task_retried() {
    let node = TestNode::start(&config(10_000)).await;
    let sup = issue(&node, "acme", "supervisor").await;
    let mut c = node.tasks().await;
    let mut w1 = TestWorker::connect(&node, &sup, "silent").await;
    let task = submit(&mut c, fast_retry(spec(KIND, "{}"), 3)).await;
    w1.next_task().await;
    let mut w2 = TestWorker::connect(&node, &sup, "alive").await;
    w1.fall_silent();

    // Three intervals of silence: the node ends the silent worker's stream...
    let end = tokio::time::timeout(Duration::from_secs(30), w1.rx.message())
        .await
        .expect("the stream ends in time");
    let status = end.expect_err("ended with a status");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().contains("no heartbeat"), "{status:?}");
    // ...and the task runs again on the worker that is alive.
    let t2 = w2.next_task().await;
    assert_eq!((t2.task_id.as_str(), t2.attempt), (task.id.as_str(), 2));
    w2.result(&t2, "{}".into()).await;
    wait_state(&mut c, &task.id, TaskState::Succeeded).await;
    let evs = events(&mut c, &task.id, 0).await;
    assert!(
        evs.iter().any(|e| e
            .message
            .contains("remote worker disconnected (silent: no heartbeat")),
        "{evs:?}"
    );
}

#[tokio::test]
async fn cancelling_a_task_sends_cancel_to_its_worker() {
    let node = TestNode::start(&config(10_000)).await;
    let sup = issue(&node, "acme", "supervisor").await;
    let mut c = node.tasks().await;
    let mut w = TestWorker::connect(&node, &sup, "w").await;
    let task = submit(&mut c, spec(KIND, "{}")).await;
    let t = w.next_task().await;
    c.cancel(v1::CancelRequest {
        id: task.id.clone(),
        reason: "changed my mind".into(),
    })
    .await
    .unwrap();
    match w.next().await {
        server_message::Body::Cancel(x) => assert_eq!((x.task_id, x.attempt), (t.task_id.clone(), t.attempt)),
        other => panic!("expected a cancel, got {other:?}"),
    }
    wait_state(&mut c, &task.id, TaskState::Cancelled).await;
    // A result after the cancel changes nothing, and the worker keeps its connection.
    w.result(&t, "1".into()).await;
    let again = submit(&mut c, spec(KIND, r#"{"n": 2}"#)).await;
    let t2 = w.next_task().await;
    assert_eq!(t2.task_id, again.id);
    w.result(&t2, "2".into()).await;
    wait_state(&mut c, &again.id, TaskState::Succeeded).await;
    assert_eq!(state(&get(&mut c, &task.id).await), TaskState::Cancelled);
}

#[tokio::test]
async fn workers_need_a_supervisor_credential_and_a_register_message() {
    let node = TestNode::start(&config(10_000)).await;
    let refused = |r: Result<TestWorker, tonic::Status>| r.err().expect("refused").code();
    assert_eq!(
        refused(TestWorker::try_connect(&node, None, "w").await),
        Code::Unauthenticated
    );
    assert_eq!(
        refused(TestWorker::try_connect(&node, Some("not-a-token"), "w").await),
        Code::Unauthenticated
    );
    for role in ["observer", "operator"] {
        let cred = issue(&node, "acme", role).await;
        assert_eq!(
            refused(TestWorker::try_connect(&node, Some(&cred), "w").await),
            Code::PermissionDenied,
            "{role}"
        );
    }
    let sup = issue(&node, "acme", "supervisor").await;
    let mut client = node.workers_as(Some(&sup)).await;
    let heartbeat_first = v1::WorkerMessage {
        body: Some(worker_message::Body::Heartbeat(v1::WorkerHeartbeat {})),
    };
    let e = client
        .attach(tokio_stream::iter(vec![heartbeat_first]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("first message must be register"), "{e:?}");
    let bad_kind = v1::WorkerMessage {
        body: Some(worker_message::Body::Register(v1::WorkerRegister {
            worker_id: "w".into(),
            kinds: vec!["NOT A TYPE".into()],
            max_concurrency: 1,
        })),
    };
    let e = client
        .attach(tokio_stream::iter(vec![bad_kind]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("register.kinds"), "{e:?}");
    assert_eq!(node.metric("cadre_remote_workers").await, Some(0.0));
}

#[tokio::test]
async fn without_a_worker_the_task_fails_naming_its_type() {
    let node = TestNode::start(&config(100)).await;
    let mut c = node.tasks().await;
    let done = run(&mut c, fast_retry(spec(KIND, "{}"), 2)).await;
    assert_eq!(state(&done), TaskState::Failed, "{done:?}");
    assert_eq!(done.attempt, 2, "retried first: {done:?}");
    assert!(
        done.error.contains(&format!("no remote worker for {KIND}")),
        "{}",
        done.error
    );
}

#[tokio::test]
async fn an_oversized_or_malformed_result_fails_the_task() {
    let node = TestNode::start(&config(10_000)).await;
    let sup = issue(&node, "acme", "supervisor").await;
    let mut c = node.tasks().await;
    let mut w = TestWorker::connect(&node, &sup, "big").await;
    for (result, want) in [
        (
            format!("\"{}\"", "x".repeat(2000)),
            "remote worker big sent a result of 2002 bytes, above executors.remote.max_result_bytes (1024)",
        ),
        (
            "{oops".to_string(),
            "remote worker big sent a result that is not JSON",
        ),
    ] {
        let task = submit(&mut c, fast_retry(spec(KIND, "{}"), 3)).await;
        let t = w.next_task().await;
        w.result(&t, result).await;
        let done = wait_state(&mut c, &task.id, TaskState::Failed).await;
        assert!(done.error.contains(want), "{}", done.error);
        assert_eq!(done.attempt, 1, "not retried: {done:?}");
    }
}

#[tokio::test]
async fn the_python_example_worker_runs_tasks_end_to_end() {
    let node = TestNode::start(&config(30_000)).await;
    let sup = issue(&node, "acme", "supervisor").await;
    let mut c = node.tasks().await;
    let script = repo_root()
        .join("examples")
        .join("python-worker")
        .join("worker.py");
    let worker = tokio::process::Command::new(python())
        .arg(&script)
        .args([
            "--grpc",
            &node.grpc,
            "--kinds",
            KIND,
            "--worker-id",
            "py-1",
            "--max-tasks",
            "2",
        ])
        .env("CADRE_TOKEN", &sup)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the Python worker");

    let ok = run(
        &mut c,
        spec(KIND, r#"{"text": "Hello, cadre", "op": "upper", "delay_ms": 20}"#),
    )
    .await;
    assert_eq!(state(&ok), TaskState::Succeeded, "{ok:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&ok.result_json).unwrap(),
        json!({"text": "HELLO, CADRE", "op": "upper", "worker": "py-1"})
    );
    let progress: Vec<_> = events(&mut c, &ok.id, 0)
        .await
        .into_iter()
        .filter(|e| e.is_progress)
        .map(|e| e.message)
        .collect();
    assert!(progress.contains(&"step 4 of 4".to_string()), "{progress:?}");

    // Bad params: the worker's own error, not retried.
    let bad = run(
        &mut c,
        fast_retry(spec(KIND, r#"{"text": "x", "op": "rot13"}"#), 3),
    )
    .await;
    assert_eq!(state(&bad), TaskState::Failed, "{bad:?}");
    assert_eq!(bad.attempt, 1);
    assert!(
        bad.error
            .contains("remote worker py-1: params.op: 'rot13' is not one of"),
        "{}",
        bad.error
    );

    // Two tasks run: the worker exits 0.
    let out = tokio::time::timeout(Duration::from_secs(60), worker.wait_with_output())
        .await
        .expect("the worker exits after its tasks")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("registered session") && stdout.contains(&format!("done {}", ok.id)),
        "{stdout}"
    );
    // Its tasks ended, then its stream: nothing is left running.
    worker_gone(&node).await;
}

async fn worker_gone(node: &TestNode) {
    eventually(
        "the Python worker disconnected",
        Duration::from_secs(10),
        || async { (node.metric("cadre_remote_workers").await == Some(0.0)).then_some(()) },
    )
    .await;
}
