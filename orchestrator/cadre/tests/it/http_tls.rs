//! The HTTP listener: HTTPS with the `[tls]` certificate (and client certificates with
//! `client_ca_file`), WebSockets over TLS, broken handshakes, the header and idle deadlines,
//! and the connection cap.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::common::*;
use crate::tls::pki;

/// A TLS client trusting the test CA, presenting the test client certificate if `with_cert`.
fn client_tls(pki_dir: &Path, with_cert: bool) -> TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(pki_dir.join("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut cfg = if with_cert {
        let chain = CertificateDer::pem_file_iter(pki_dir.join("client.pem"))
            .unwrap()
            .map(|c| c.unwrap())
            .collect();
        let key = PrivateKeyDer::from_pem_file(pki_dir.join("client.key")).unwrap();
        builder.with_client_auth_cert(chain, key).unwrap()
    } else {
        builder.with_no_client_auth()
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(cfg))
}

/// `host:port` of an `https://` or `http://` base URL.
fn host_port(url: &str) -> String {
    url.split_once("://").map(|(_, a)| a).unwrap_or(url).to_string()
}

/// A TLS connection to the node's HTTP listener.
async fn tls_connect(
    node: &TestNode,
    tls: &TlsConnector,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(host_port(&node.http)).await?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    tls.connect(name, tcp).await
}

/// One HTTP/1.0 exchange on `s` (a bearer credential if given, a JSON body if given):
/// (status, body), or the error that ended it. A response cut short by a close without TLS
/// close_notify still counts when it is whole.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    method: &str,
    path: &str,
    credential: Option<&str>,
    body: Option<&Value>,
) -> std::io::Result<(u16, String)> {
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: cadre\r\n");
    if let Some(c) = credential {
        req.push_str(&format!("Authorization: Bearer {c}\r\n"));
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    if !body.is_empty() {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    s.write_all(req.as_bytes()).await?;
    s.flush().await?;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf))
        .await
        .map_err(|_| std::io::Error::other("no response in 20 s"))?;
    if let Err(e) = read
        && buf.is_empty()
    {
        return Err(e);
    }
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {text:?}")))?;
    Ok((code, body.to_string()))
}

/// An HTTPS exchange on a fresh connection.
async fn https(
    node: &TestNode,
    tls: &TlsConnector,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> std::io::Result<(u16, String)> {
    let mut s = tls_connect(node, tls).await?;
    exchange(&mut s, method, path, Some(&node.credential()), body).await
}

/// One sample of `series` from /metrics over HTTPS.
async fn https_metric(node: &TestNode, tls: &TlsConnector, series: &str) -> Option<f64> {
    let (_, body) = https(node, tls, "GET", "/metrics", None).await.ok()?;
    body.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|v| v.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

/// A node with the test PKI's server certificate (and, with `mtls`, client certificates
/// required), and the PKI's directory.
async fn tls_node(mtls: bool, extra: &str) -> (TestNode, tempfile::TempDir) {
    let pki_dir = tempfile::tempdir().unwrap();
    pki(pki_dir.path());
    let p = |f: &str| pki_dir.path().join(f).display().to_string();
    let mut cfg = format!(
        "[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
        p("server.pem"),
        p("server.key")
    );
    if mtls {
        cfg.push_str(&format!("client_ca_file = {:?}\n", p("ca.pem")));
    }
    cfg.push_str(extra);
    (TestNode::start(&cfg).await, pki_dir)
}

#[tokio::test]
async fn the_http_api_speaks_tls_and_plain_http_is_refused() {
    let (node, pki_dir) = tls_node(false, "").await;
    assert!(node.http.starts_with("https://"), "endpoints.json: {}", node.http);
    let tls = client_tls(pki_dir.path(), false);

    let submit = json!({"task_type": "system.debug.echo", "params": {"text": "over tls"}});
    let (code, body) = https(&node, &tls, "POST", "/v1/tasks?wait=true", Some(&submit))
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    let done: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(done["task"]["result"]["text"], "over tls", "{done}");
    let (code, _) = https(&node, &tls, "GET", "/health", None).await.unwrap();
    assert_eq!(code, 200);
    let (code, page) = https(&node, &tls, "GET", "/", None).await.unwrap();
    assert!(
        code == 200 && page.contains("<html"),
        "the dashboard over HTTPS: {code}"
    );

    // Plain HTTP to the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(host_port(&node.http)).await.unwrap();
    let answer = exchange(&mut plain, "GET", "/health", None, None).await;
    assert!(answer.is_err(), "plain HTTP is not served: {answer:?}");

    // A client that does not trust the node's CA cannot connect.
    let other_pki = tempfile::tempdir().unwrap();
    pki(other_pki.path());
    let untrusted = tls_connect(&node, &client_tls(other_pki.path(), false)).await;
    assert!(
        untrusted.is_err(),
        "a certificate from another CA is not accepted"
    );
    node.stop().await;
}

#[tokio::test]
async fn with_a_client_ca_the_http_api_requires_client_certificates() {
    let (node, pki_dir) = tls_node(true, "").await;
    let with_cert = client_tls(pki_dir.path(), true);
    let (code, body) = https(&node, &with_cert, "GET", "/v1/tasks", None).await.unwrap();
    assert_eq!(code, 200, "with a client certificate: {body}");

    // TLS 1.3 reports the refused certificate on the first read, so the exchange fails there.
    let without = client_tls(pki_dir.path(), false);
    let refused = https(&node, &without, "GET", "/health", None).await;
    assert!(refused.is_err(), "no client certificate, no answer: {refused:?}");
    let (code, _) = https(&node, &with_cert, "GET", "/health", None).await.unwrap();
    assert_eq!(code, 200, "the listener carries on");
    node.stop().await;
}

#[tokio::test]
async fn a_websocket_over_tls_subscribes_and_gets_events() {
    let (node, pki_dir) = tls_node(false, "").await;
    let tls = client_tls(pki_dir.path(), false);
    let stream = tls_connect(&node, &tls).await.unwrap();
    let url = format!("wss://{}/v1/events", host_port(&node.http));
    let mut req = url.into_client_request().unwrap();
    let auth = HeaderValue::from_str(&format!("Bearer {}", node.credential())).unwrap();
    req.headers_mut().insert("authorization", auth);
    let (mut ws, _) = tokio_tungstenite::client_async(req, stream).await.unwrap();
    let subscribe = json!({"type": "subscribe", "states": ["SUCCEEDED"], "cursor": 0});
    ws.send(Message::Text(subscribe.to_string().into()))
        .await
        .unwrap();
    assert_eq!(next_message(&mut ws).await["type"], "subscribed");

    let submit = json!({"task_type": "system.debug.echo", "params": {"text": "wss"}});
    let (code, body) = https(&node, &tls, "POST", "/v1/tasks", Some(&submit))
        .await
        .unwrap();
    assert_eq!(code, 201, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["task"]["id"].clone();
    let event = next_message(&mut ws).await;
    assert_eq!(event["type"], "event", "{event}");
    assert_eq!(
        (&event["task_id"], &event["state"]),
        (&id, &json!("SUCCEEDED")),
        "{event}"
    );
    assert_eq!(event["result"]["text"], "wss", "{event}");
    node.stop().await;
}

/// The next JSON text message on `ws` (pings skipped), within 30 s.
async fn next_message<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("a message within 30 s")
            .expect("the socket is open")
            .unwrap();
        match msg {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected message {other:?}"),
        }
    }
}

#[tokio::test]
async fn broken_tls_handshakes_do_not_harm_the_listener() {
    let (node, pki_dir) = tls_node(false, "[server]\nhttp_header_timeout_ms = 1000\n").await;
    let tls = client_tls(pki_dir.path(), false);
    let addr = host_port(&node.http);
    // Garbage, a truncated ClientHello, and a client that connects and says nothing.
    let mut garbage = TcpStream::connect(&addr).await.unwrap();
    garbage.write_all(&[0xde; 4096]).await.unwrap();
    let mut truncated = TcpStream::connect(&addr).await.unwrap();
    truncated
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    let mut silent = TcpStream::connect(&addr).await.unwrap();

    // Others are served meanwhile.
    for _ in 0..3 {
        let (code, _) = https(&node, &tls, "GET", "/health", None).await.unwrap();
        assert_eq!(code, 200);
    }
    // All three are closed (the stalled two at the handshake deadline).
    for (what, s) in [
        ("garbage", &mut garbage),
        ("truncated", &mut truncated),
        ("silent", &mut silent),
    ] {
        let mut buf = [0u8; 1024];
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue, // an alert
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "the {what} connection is closed");
    }
    let failures = https_metric(&node, &tls, "cadre_http_tls_handshake_failures_total").await;
    assert!(
        failures.unwrap_or(0.0) >= 3.0,
        "handshake failures counted: {failures:?}"
    );
    node.stop().await;
}

#[tokio::test]
async fn a_slow_loris_is_cut_off_at_the_header_deadline_and_idle_connections_later() {
    let node =
        TestNode::start("[server]\nhttp_header_timeout_ms = 1500\nhttp_idle_timeout_ms = 4000\n").await;
    let addr = host_port(&node.http);
    // Sends its request head a byte every 300 ms: it would need 12 s.
    let loris = tokio::spawn({
        let addr = addr.clone();
        async move {
            let start = Instant::now();
            let mut s = TcpStream::connect(&addr).await.unwrap();
            for b in b"GET /health HTTP/1.1\r\nHost: cadre\r\nX: y\r\n\r\n" {
                if s.write_all(&[*b]).await.is_err() {
                    return (start.elapsed(), false);
                }
                let mut buf = [0u8; 256];
                // A closed connection shows as a read of 0 (or an error) within the pause.
                match tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await {
                    Ok(Ok(0) | Err(_)) => return (start.elapsed(), false),
                    Ok(Ok(_)) => return (start.elapsed(), true),
                    Err(_) => {}
                }
            }
            (start.elapsed(), true)
        }
    });
    // A normal client is served while the loris trickles.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(node.http_get("/health").await.0, 200);
    let (elapsed, answered) = loris.await.unwrap();
    assert!(!answered, "the slow client got no answer");
    assert!(
        elapsed >= Duration::from_millis(1400) && elapsed < Duration::from_secs(5),
        "cut off at the 1.5 s header deadline, after {elapsed:?}"
    );

    // A kept-alive connection outlives the header deadline between requests, and is closed
    // once idle for http_idle_timeout_ms.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let get = b"GET /health HTTP/1.1\r\nHost: cadre\r\n\r\n";
    s.write_all(get).await.unwrap();
    assert!(read_response(&mut s).await.starts_with("HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    s.write_all(get).await.unwrap();
    assert!(
        read_response(&mut s).await.starts_with("HTTP/1.1 200"),
        "idle for longer than the header deadline, still open"
    );
    let idle_start = Instant::now();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
    assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "closed when idle: {n:?}");
    let idle = idle_start.elapsed();
    assert!(
        idle >= Duration::from_millis(3500) && idle < Duration::from_secs(8),
        "closed after the 4 s idle deadline, after {idle:?}"
    );
    assert!(
        node.metric("cadre_http_header_timeouts_total")
            .await
            .unwrap_or(0.0)
            >= 1.0
    );
    node.stop().await;
}

#[tokio::test]
async fn a_request_body_that_does_not_arrive_in_time_ends_the_request() {
    let node = TestNode::start("[server]\nhttp_body_timeout_ms = 1000\n").await;
    let mut s = TcpStream::connect(host_port(&node.http)).await.unwrap();
    let head = format!(
        "POST /v1/tasks HTTP/1.1\r\nHost: cadre\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"task_type\"",
        node.credential()
    );
    let start = Instant::now();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection is closed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "at the 1 s body deadline, after {took:?}"
    );
    // A whole body in time is served.
    let body = json!({"task_type": "system.debug.echo", "params": {}});
    let mut s = TcpStream::connect(host_port(&node.http)).await.unwrap();
    let (code, text) = exchange(&mut s, "POST", "/v1/tasks", Some(&node.credential()), Some(&body))
        .await
        .unwrap();
    assert_eq!(code, 201, "{text}");
    node.stop().await;
}

/// One HTTP/1.1 response with a `Content-Length` body, read off a kept-alive connection.
async fn read_response(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_string())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= len {
                return text;
            }
        }
        let n = tokio::time::timeout_at(deadline.into(), s.read(&mut chunk))
            .await
            .expect("a response within 10 s")
            .unwrap();
        assert!(n > 0, "connection closed mid-response: {text:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn connections_above_the_cap_are_refused_until_others_close() {
    let cap = 20;
    let node = TestNode::start(&format!(
        "[server]\nhttp_max_connections = {cap}\nhttp_header_timeout_ms = 60000\n"
    ))
    .await;
    let addr = host_port(&node.http);
    let mut open = Vec::new();
    for _ in 0..cap {
        open.push(TcpStream::connect(&addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..5 {
        let mut extra = TcpStream::connect(&addr).await.unwrap();
        let answer = exchange(&mut extra, "GET", "/health", None, None).await;
        assert!(
            answer.is_err(),
            "connection {} over the cap is refused: {answer:?}",
            i + 1
        );
    }
    // The ones under the cap are served.
    let (code, _) = exchange(&mut open[0], "GET", "/health", None, None)
        .await
        .unwrap();
    assert_eq!(code, 200, "a connection under the cap is served");
    open.truncate(cap / 2);
    let served = eventually(
        "a new connection once others closed",
        Duration::from_secs(10),
        || async {
            let mut s = TcpStream::connect(host_port(&node.http)).await.ok()?;
            exchange(&mut s, "GET", "/health", None, None)
                .await
                .ok()
                .map(|(c, _)| c)
        },
    )
    .await;
    assert_eq!(served, 200);
    let refused = node.metric("cadre_http_connections_refused_total").await;
    assert!(refused.unwrap_or(0.0) >= 5.0, "refusals counted: {refused:?}");
    drop(open);
    node.stop().await;
}

/// CPU seconds (user + system) the process `pid` has used so far, from /proc.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces, inside parentheses).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// A response that stays open past every deadline (an SSE stream) is neither cut nor looked at
/// in a loop: over three seconds with both deadlines at 300 ms, the node stays nearly idle (a
/// connection task re-arming an expired deadline would burn a whole core).
#[tokio::test]
async fn a_long_response_outlives_the_deadlines_without_spinning() {
    let node = TestNode::start("[server]\nhttp_header_timeout_ms = 300\nhttp_idle_timeout_ms = 300\n").await;
    let addr = node.http.trim_start_matches("http://").to_string();
    let mut sse = TcpStream::connect(&addr).await.unwrap();
    let req = format!(
        "GET /v1/events/sse HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\r\n",
        node.credential()
    );
    sse.write_all(req.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    sse.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200", "the stream opened");
    let before = cpu_secs(node.pid());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let used = cpu_secs(node.pid()) - before;
    assert!(
        used < 1.0,
        "the node used {used:.2} s of CPU in 3 s with one quiet stream open"
    );
    // The stream is still open and delivers an event.
    let mut c = node.tasks().await;
    run(&mut c, spec("system.debug.echo", "{}")).await;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), sse.read(&mut buf))
        .await
        .expect("an event on the long stream")
        .unwrap();
    assert!(n > 0, "the stream was not cut");
}

#[tokio::test]
async fn the_probe_listener_answers_plain_http_probes_beside_mutual_tls() {
    let (node, _pki) = tls_node(true, "[server]\nprobe_addr = \"127.0.0.1:0\"\n").await;
    let endpoints: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(node.dir.join("data/endpoints.json")).unwrap())
            .unwrap();
    let probe = endpoints["probe"]
        .as_str()
        .expect("endpoints.json names the probe listener");
    let addr = probe
        .strip_prefix("http://")
        .expect("the probe listener is plain HTTP");
    let bearer = format!("Bearer {}", node.credential());
    let get = |path: &'static str, auth: Option<String>| async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let auth = auth
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n{auth}\r\n").as_bytes())
            .await
            .unwrap();
        read_response(&mut s).await
    };
    let ok = |resp: &str| resp.starts_with("HTTP/1.0 200") || resp.starts_with("HTTP/1.1 200");
    for path in ["/health", "/ready"] {
        let resp = get(path, None).await;
        assert!(ok(&resp), "{path}: {resp}");
    }
    // /metrics keeps the main listener's rule: a credential.
    assert!(get("/metrics", None).await.contains(" 401 "));
    let metrics = get("/metrics", Some(bearer.clone())).await;
    assert!(
        ok(&metrics) && metrics.contains("cadre_tasks_submitted_total"),
        "{metrics}"
    );
    let api = get("/v1/tasks", Some(bearer)).await;
    assert!(api.contains(" 404 "), "only probes are served there: {api}");
    // The main listener still wants TLS and a client certificate.
    let mut plain = TcpStream::connect(host_port(&node.http)).await.unwrap();
    plain
        .write_all(b"GET /health HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), plain.read_to_end(&mut buf)).await;
    let resp = String::from_utf8_lossy(&buf);
    assert!(!resp.contains(" 200 "), "{resp}");
}
