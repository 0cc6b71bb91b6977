//! Logs: JSON lines carry a task's identifiers (and its trace id when spans are exported), and
//! no credential or key material ever reaches the log, even at `trace` for every target.

use std::path::Path;
use std::time::Duration;

use cadre_proto::v1::{self, TaskState, task_service_client::TaskServiceClient};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::otlp::OtlpReceiver;
use crate::common::*;

/// Every line of the node's log that is a JSON object.
fn json_lines(dir: &Path) -> Vec<Value> {
    read_log(dir)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(Value::is_object)
        .collect()
}

/// The JSON lines with `message` about task `id`.
fn lines_about<'a>(lines: &'a [Value], message: &str, id: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|l| l["message"] == message && l["task_id"] == id)
        .collect()
}

/// Waits until the node logged `message` for task `id`; returns every JSON line so far.
async fn wait_line(dir: &Path, message: &str, id: &str) -> Vec<Value> {
    eventually(&format!("{message:?} for {id}"), Duration::from_secs(20), || {
        let lines = json_lines(dir);
        let found = !lines_about(&lines, message, id).is_empty();
        async move { found.then_some(lines) }
    })
    .await
}

#[tokio::test]
async fn a_failed_tasks_json_lines_carry_its_identifiers_and_trace_id() {
    let receiver = OtlpReceiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let mut env = receiver.env();
    env.push(("RUST_LOG", Some("info".into())));
    let node = TestNode::start_full(tmp.path(), "", &["--log-json"], &env).await;
    let trace_id = "5ca1ab1e0000111122223333deadbeef";
    let bearer = TestNode::bearer(Some(&node.credential()))
        .with_traceparent(Some(&format!("00-{trace_id}-1111222233334444-01")));
    let mut c = TaskServiceClient::with_interceptor(node.channel().await, bearer);

    let t = run(
        &mut c,
        fast_retry(spec("system.debug.fail", r#"{"message":"flaky"}"#), 2),
    )
    .await;
    assert_eq!(state(&t), TaskState::Failed);
    let lines = wait_line(tmp.path(), "task failed", &t.id).await;
    let failed = lines_about(&lines, "task failed", &t.id);
    assert_eq!(failed.len(), 1, "one line per terminal state: {failed:#?}");
    let failed = failed[0];
    assert_eq!(failed["level"], "WARN", "{failed}");
    assert_eq!(failed["tenant"], "default", "{failed}");
    assert_eq!(failed["task_type"], "system.debug.fail", "{failed}");
    assert_eq!(failed["trace_id"], trace_id, "{failed}");
    assert_eq!(failed["attempt"], 2, "{failed}");
    assert!(failed["detail"].as_str().unwrap().contains("flaky"), "{failed}");
    assert!(failed.get("fields").is_none(), "fields are flattened: {failed}");

    let retry = lines_about(&lines, "task retry scheduled", &t.id);
    assert_eq!(retry.len(), 1, "{retry:#?}");
    assert_eq!(
        (
            &retry[0]["level"],
            &retry[0]["tenant"],
            &retry[0]["task_type"],
            &retry[0]["trace_id"],
            &retry[0]["attempt"]
        ),
        (
            &Value::from("INFO"),
            &Value::from("default"),
            &Value::from("system.debug.fail"),
            &Value::from(trace_id),
            &Value::from(1)
        ),
        "{}",
        retry[0]
    );

    // A timeout is a warning too; a success logs nothing at info.
    let mut slow = spec("system.debug.sleep", r#"{"ms":5000}"#);
    slow.timeout_ms = 50;
    let timed_out = run(&mut c, slow).await;
    assert_eq!(state(&timed_out), TaskState::TimedOut);
    let lines = wait_line(tmp.path(), "task timed out", &timed_out.id).await;
    let line = lines_about(&lines, "task timed out", &timed_out.id)[0];
    assert_eq!(
        (&line["level"], &line["task_type"], &line["trace_id"]),
        (
            &Value::from("WARN"),
            &Value::from("system.debug.sleep"),
            &Value::from(trace_id)
        ),
        "{line}"
    );
    // A worker crash names the task it was running.
    let crashed = run(
        &mut c,
        fast_retry(spec("system.debug.panic", r#"{"until_attempt": 2}"#), 2),
    )
    .await;
    assert_eq!(state(&crashed), TaskState::Succeeded);
    let crash = "worker crashed running a task; its attempt fails (retryable)";
    let lines = wait_line(tmp.path(), crash, &crashed.id).await;
    let line = lines_about(&lines, crash, &crashed.id)[0];
    assert_eq!(
        (
            &line["level"],
            &line["tenant"],
            &line["task_type"],
            &line["trace_id"],
            &line["attempt"]
        ),
        (
            &Value::from("WARN"),
            &Value::from("default"),
            &Value::from("system.debug.panic"),
            &Value::from(trace_id),
            &Value::from(1)
        ),
        "{line}"
    );

    let ok = run(&mut c, spec("system.debug.echo", "{}")).await;
    assert_eq!(state(&ok), TaskState::Succeeded);
    drop(c);
    assert!(node.stop().await.success());
    let quiet: Vec<_> = json_lines(tmp.path())
        .into_iter()
        .filter(|l| l["task_id"] == ok.id.as_str())
        .collect();
    assert!(quiet.is_empty(), "no info line per success: {quiet:#?}");
}

#[tokio::test]
async fn without_span_export_lines_have_no_trace_id_and_successes_log_at_debug() {
    let tmp = tempfile::tempdir().unwrap();
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", None),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", None),
        (
            "RUST_LOG",
            Some("info,cadre_core::writer=debug,cadre_core::intake=debug".into()),
        ),
    ];
    let node = TestNode::start_full(tmp.path(), "", &["--log-json"], &env).await;
    let mut c = node.tasks().await;
    let t = run(
        &mut c,
        spec("system.debug.fail", r#"{"message":"boom","retryable":false}"#),
    )
    .await;
    assert_eq!(state(&t), TaskState::Failed);
    let ok = run(&mut c, spec("system.debug.echo", "{}")).await;
    let lines = wait_line(tmp.path(), "task succeeded", &ok.id).await;
    let failed = lines_about(&lines, "task failed", &t.id);
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(
        (&failed[0]["tenant"], &failed[0]["task_type"]),
        (&Value::from("default"), &Value::from("system.debug.fail"))
    );
    assert!(failed[0].get("trace_id").is_none(), "no trace: {}", failed[0]);
    let done = lines_about(&lines, "task succeeded", &ok.id)[0];
    assert_eq!(
        (&done["level"], &done["task_type"]),
        (&Value::from("DEBUG"), &Value::from("system.debug.echo"))
    );

    // A refused submission is logged (at debug) with its tenant and task type.
    let refused = c
        .submit(v1::SubmitRequest {
            spec: Some(spec("no.such.type", "{}")),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    let line = eventually("the refusal line", Duration::from_secs(20), || {
        let line = json_lines(tmp.path())
            .into_iter()
            .find(|l| l["message"] == "submission refused" && l["task_type"] == "no.such.type");
        async move { line }
    })
    .await;
    assert_eq!(
        (&line["level"], &line["tenant"]),
        (&Value::from("DEBUG"), &Value::from("default"))
    );
    assert!(
        line["error"].as_str().unwrap().contains("unknown task type"),
        "{line}"
    );
    drop(c);
    assert!(node.stop().await.success());
}

/// A request on the HTTP listener with `authorization: Bearer <credential>`; returns the
/// status code.
async fn http_as(node: &TestNode, path: &str, credential: &str) -> u16 {
    let addr = node.http.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {credential}\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    buf.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 (padded).
fn b64(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64, ignoring padding and whitespace.
fn unb64(text: &str) -> Vec<u8> {
    let (mut out, mut acc, mut bits) = (Vec::new(), 0u32, 0);
    for c in text.bytes() {
        let Some(v) = B64.iter().position(|b| *b == c) else {
            continue;
        };
        acc = acc << 6 | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What must never be logged of a private key PEM file: its base64 body (whole and line by
/// line) and its 32-byte Ed25519 seed (the DER's last 32 bytes) in hex and base64.
fn pem_secrets(path: &Path) -> Vec<(String, String)> {
    let pem = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(pem.contains("PRIVATE KEY"), "{}", path.display());
    let body: Vec<&str> = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = unb64(&body.concat());
    assert!(der.len() > 32, "{}", path.display());
    let seed = &der[der.len() - 32..];
    let name = path.display().to_string();
    let mut out = vec![
        (format!("{name} body"), body.concat()),
        (format!("{name} seed (hex)"), hex(seed)),
        (
            format!("{name} seed (base64)"),
            b64(seed).trim_end_matches('=').to_string(),
        ),
        (
            format!("{name} seed (base64url)"),
            b64(seed)
                .trim_end_matches('=')
                .replace('+', "-")
                .replace('/', "_"),
        ),
    ];
    out.extend(
        body.iter()
            .filter(|l| l.len() >= 16)
            .map(|l| (format!("{name} line"), l.to_string())),
    );
    out
}

/// A JWT and its signature segment.
fn jwt_secrets(what: &str, jwt: &str) -> Vec<(String, String)> {
    let sig = jwt.rsplit('.').next().unwrap();
    assert_eq!(jwt.split('.').count(), 3, "{what} is a JWT");
    vec![
        (what.to_string(), jwt.to_string()),
        (format!("{what} signature"), sig.to_string()),
    ]
}

/// An API key `cadre_<id>_<secret>` and its secret.
fn key_secrets(what: &str, key: &str) -> Vec<(String, String)> {
    let (_, secret) = key.rsplit_once('_').expect("cadre_<id>_<secret>");
    vec![
        (what.to_string(), key.to_string()),
        (format!("{what} secret"), secret.to_string()),
    ]
}

#[tokio::test]
async fn no_secret_reaches_the_log_even_at_trace_level() {
    for algorithm in ["HS256", "EdDSA"] {
        let tmp = tempfile::tempdir().unwrap();
        let env = [
            ("CADRE_LOG__LEVEL", Some("trace".into())),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", None),
        ];
        let toml = format!("[auth]\nalgorithm = {algorithm:?}\n");
        let node = TestNode::start_full(tmp.path(), &toml, &["--log-json"], &env).await;
        let commander = node.credential();
        let mut secrets = key_secrets("commander credential", &commander);

        // An API key, created and used.
        let created = node
            .admin()
            .await
            .create_api_key(v1::CreateApiKeyRequest {
                name: "ci".into(),
                tenant: "acme".into(),
                role: "operator".into(),
                ..Default::default()
            })
            .await
            .expect("create key")
            .into_inner();
        let key = created.secret;
        secrets.extend(key_secrets("created API key", &key));
        let mut as_key = node.tasks_as(Some(&key)).await;
        let t = run(&mut as_key, spec("system.debug.echo", r#"{"x":1}"#)).await;
        assert_eq!(state(&t), TaskState::Succeeded);

        // A JWT, issued and used on both faces.
        let jwt = issue(&node, "acme", "operator").await;
        secrets.extend(jwt_secrets("issued token", &jwt));
        let mut as_jwt = node.tasks_as(Some(&jwt)).await;
        let t = run(&mut as_jwt, spec("system.debug.echo", "{}")).await;
        assert_eq!(state(&t), TaskState::Succeeded);

        // Wrong credentials: a wrong secret for a real key id, a forged signature, garbage.
        let (key_id, _) = key.rsplit_once('_').unwrap();
        let wrong_key = format!("{key_id}_{}", "0badc0de".repeat(6));
        let (unsigned, _) = jwt.rsplit_once('.').unwrap();
        let forged = format!("{unsigned}.Zm9yZ2VkLXNpZ25hdHVyZS1mb3JnZWQtc2lnbmF0dXJl");
        let garbage = "not-a-token-but-secret-looking-7f3e9a1c5b";
        for wrong in [&wrong_key, &forged, garbage] {
            let err = node
                .tasks_as(Some(wrong))
                .await
                .list(v1::ListRequest::default())
                .await
                .unwrap_err();
            assert_eq!(err.code(), tonic::Code::Unauthenticated, "{wrong}");
            assert_eq!(http_as(&node, "/v1/whoami", wrong).await, 401, "{wrong}");
        }
        secrets.extend(key_secrets("wrong API key", &wrong_key));
        secrets.extend(jwt_secrets("forged token", &forged));
        secrets.push(("garbage token".into(), garbage.into()));

        // The HTTP faces with good credentials.
        for good in [&commander, &key, &jwt] {
            assert_eq!(http_as(&node, "/v1/whoami", good).await, 200);
        }
        assert_eq!(http_as(&node, "/metrics", &commander).await, 200);

        // The key material on disk.
        let data = node.dir.join("data");
        match algorithm {
            "HS256" => {
                let hs = std::fs::read_to_string(data.join("auth").join("hs256.key")).unwrap();
                secrets.push(("HS256 secret".into(), hs.trim().to_string()));
            }
            _ => secrets.extend(pem_secrets(&data.join("auth").join("ed25519-private.pem"))),
        }
        secrets.extend(pem_secrets(&data.join("node-ed25519.pem")));

        drop((as_key, as_jwt));
        assert!(node.stop().await.success());
        let log = read_log(tmp.path());
        // The test means something only if trace-level lines of cadre and of the HTTP/2 and
        // gRPC stacks were written, and the refusals were logged.
        let lines = json_lines(tmp.path());
        assert!(
            lines.iter().any(|l| l["level"] == "TRACE"),
            "trace lines are logged ({algorithm})"
        );
        assert!(lines.len() > 100, "{} lines ({algorithm})", lines.len());
        assert!(log.contains("call refused"), "refusals are logged ({algorithm})");
        for (what, secret) in &secrets {
            assert!(
                secret.len() >= 16,
                "{what} is long enough to be searched for: {secret:?}"
            );
            if let Some(at) = log.find(secret.as_str()) {
                let line_start = log[..at].rfind('\n').map_or(0, |i| i + 1);
                let line_end = log[at..].find('\n').map_or(log.len(), |i| at + i);
                panic!(
                    "{what} is in the log ({algorithm}):\n{}",
                    &log[line_start..line_end]
                );
            }
        }
    }
}
