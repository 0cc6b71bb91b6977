//! The gRPC listener's own guards, through the real binary: its connection cap
//! (`server.grpc_max_connections`) and its handshake deadline
//! (`server.grpc_handshake_timeout_ms`, TLS handshake and HTTP/2 preface), and garbage on both
//! TLS listeners: every bad connection is closed, counted, and harms no one else.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cadre_client::Bearer;
use cadre_proto::v1::{self, TaskState, admin_service_client::AdminServiceClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

use crate::common::*;
use crate::tls::pki;

/// What every HTTP/2 connection starts with, then an empty SETTINGS frame.
const PREFACE_AND_SETTINGS: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
/// The start of a TLS ClientHello record that never arrives in full.
const TRUNCATED_HELLO: &[u8] = &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03];
/// An HTTP/1 request.
const HTTP1: &[u8] = b"GET /health HTTP/1.1\r\nHost: cadre\r\n\r\n";

/// `host:port` of a listener URL.
fn host_port(url: &str) -> String {
    url.split_once("://").map(|(_, a)| a).unwrap_or(url).to_string()
}

/// 4 KiB of noise (xorshift, no dependency).
fn noise() -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Connects to `addr` and sends `bytes` (a write error is fine: the server may close first).
async fn send_raw(addr: &str, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(bytes).await;
    s
}

/// Reads from `s` until the server closes it (patience: 30 s); the bytes it sent meanwhile.
async fn until_closed<S: tokio::io::AsyncRead + Unpin>(what: &str, s: &mut S) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server closes the {what} connection");
    got
}

/// A TaskService client on a connection of its own, or None when the node does not serve it.
async fn try_echo(url: &str, credential: &str) -> Option<v1::Task> {
    let ch = Channel::from_shared(url.to_string())
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .ok()?;
    let mut c =
        v1::task_service_client::TaskServiceClient::with_interceptor(ch, TestNode::bearer(Some(credential)));
    c.submit_and_wait(v1::SubmitAndWaitRequest {
        spec: Some(spec("system.debug.echo", "{}")),
        ..Default::default()
    })
    .await
    .ok()
    .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_connections_over_the_cap_are_closed_at_once_and_the_node_recovers() {
    // A long handshake deadline: whatever is closed below is closed by the cap.
    let node =
        TestNode::start("[server]\ngrpc_max_connections = 4\ngrpc_handshake_timeout_ms = 600000\n").await;
    let addr = host_port(&node.grpc);
    let mut clients = Vec::new();
    for _ in 0..4 {
        let mut c = node.tasks().await;
        assert_eq!(
            state(&run(&mut c, spec("system.debug.echo", "{}")).await),
            TaskState::Succeeded
        );
        clients.push(c);
    }
    // Over the cap: closed without a byte (a served HTTP/2 connection answers the preface
    // with the server's SETTINGS).
    for i in 0..5 {
        let mut extra = send_raw(&addr, PREFACE_AND_SETTINGS).await;
        let got = until_closed("over-the-cap", &mut extra).await;
        assert!(got.is_empty(), "connection {} over the cap got {got:?}", i + 1);
    }
    // The open clients keep working.
    for c in &mut clients {
        assert_eq!(
            state(&run(c, spec("system.debug.echo", "{}")).await),
            TaskState::Succeeded
        );
    }
    let refused = node.metric("cadre_grpc_connections_refused_total").await;
    assert!(refused.unwrap_or(0.0) >= 5.0, "refusals counted: {refused:?}");
    // Two go; new clients are served again.
    clients.truncate(2);
    let cred = node.credential();
    let task = eventually(
        "a new client served once others left",
        Duration::from_secs(20),
        || try_echo(&node.grpc, &cred),
    )
    .await;
    assert_eq!(state(&task), TaskState::Succeeded);
    drop(clients);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_stalled_preambles_on_plain_grpc_are_dropped() {
    let node = TestNode::start("[server]\ngrpc_handshake_timeout_ms = 1000\n").await;
    let addr = host_port(&node.grpc);
    let mut bad = vec![
        ("silent", TcpStream::connect(&addr).await.unwrap()),
        (
            "half a preface",
            send_raw(&addr, &PREFACE_AND_SETTINGS[..20]).await,
        ),
        ("noise", send_raw(&addr, &noise()).await),
        ("HTTP/1", send_raw(&addr, HTTP1).await),
    ];
    // Served meanwhile.
    let mut c = node.tasks().await;
    assert_eq!(
        state(&run(&mut c, spec("system.debug.echo", "{}")).await),
        TaskState::Succeeded
    );
    for (what, s) in &mut bad {
        let got = until_closed(what, s).await;
        assert!(got.is_empty(), "the {what} connection got no answer: {got:?}");
    }
    let failures = node.metric("cadre_grpc_handshake_failures_total").await;
    assert!(failures.unwrap_or(0.0) >= 4.0, "counted: {failures:?}");
    // The client connected before still works, and so does a new one.
    assert_eq!(
        state(&run(&mut c, spec("system.debug.echo", "{}")).await),
        TaskState::Succeeded
    );
    let mut fresh = node.tasks().await;
    assert_eq!(
        state(&run(&mut fresh, spec("system.debug.echo", "{}")).await),
        TaskState::Succeeded
    );
    node.stop().await;
}

/// A rustls client trusting the test CA, offering `alpn`.
fn connector(pki_dir: &Path, alpn: &[u8]) -> TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(pki_dir.join("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    TlsConnector::from(Arc::new(cfg))
}

/// GET `path` over HTTPS/1.0 on a fresh connection: (status, body).
async fn https_get(addr: &str, tls: &TlsConnector, path: &str) -> (u16, String) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut s = tls
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: cadre\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw).await; // a close without close_notify still ends it
    let text = String::from_utf8_lossy(&raw).to_string();
    let code = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// The value of `series` in the scrape of the plain probe listener at `probe`, read with
/// `credential`.
async fn probe_metric(probe: &str, credential: &str, series: &str) -> Option<f64> {
    let req = format!("GET /metrics HTTP/1.0\r\nHost: cadre\r\nAuthorization: Bearer {credential}\r\n\r\n");
    let mut s = send_raw(probe, req.as_bytes()).await;
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw).await;
    raw.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|v| v.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_both_tls_listeners_is_dropped_without_harm() {
    let pki_dir = tempfile::tempdir().unwrap();
    pki(pki_dir.path());
    let p = |f: &str| pki_dir.path().join(f).display().to_string();
    let node = TestNode::start(&format!(
        "[tls]\ncert_file = {:?}\nkey_file = {:?}\n[server]\ngrpc_handshake_timeout_ms = 1000\n\
         http_header_timeout_ms = 1000\nprobe_addr = \"127.0.0.1:0\"\n",
        p("server.pem"),
        p("server.key"),
    ))
    .await;
    let endpoints: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(node.dir.join("data/endpoints.json")).unwrap())
            .unwrap();
    let probe = host_port(endpoints["probe"].as_str().unwrap());
    let (grpc, https) = (host_port(&node.grpc), host_port(&node.http));

    // On the gRPC port: a client that never starts its handshake, half a ClientHello, noise,
    // plain HTTP/1 and plain HTTP/2; then one that finishes TLS and sends no preface.
    let mut bad = vec![
        ("gRPC silent", TcpStream::connect(&grpc).await.unwrap()),
        ("gRPC truncated hello", send_raw(&grpc, TRUNCATED_HELLO).await),
        ("gRPC noise", send_raw(&grpc, &noise()).await),
        ("gRPC plain HTTP/1", send_raw(&grpc, HTTP1).await),
        ("gRPC plain HTTP/2", send_raw(&grpc, PREFACE_AND_SETTINGS).await),
        ("HTTPS noise", send_raw(&https, &noise()).await),
        ("HTTPS plain HTTP/1", send_raw(&https, HTTP1).await),
        ("HTTPS truncated hello", send_raw(&https, TRUNCATED_HELLO).await),
    ];
    let h2 = connector(pki_dir.path(), b"h2");
    let tcp = TcpStream::connect(&grpc).await.unwrap();
    let mut mute = h2
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .expect("the TLS handshake itself succeeds");

    // Both listeners serve meanwhile.
    let ca = Certificate::from_pem(std::fs::read(p("ca.pem")).unwrap());
    let ch = Channel::from_shared(node.grpc.clone())
        .unwrap()
        .tls_config(ClientTlsConfig::new().ca_certificate(ca))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut admin = AdminServiceClient::with_interceptor(ch, Bearer::new(Some(&node.credential())).unwrap());
    assert!(admin.status(v1::StatusRequest {}).await.is_ok());
    let http1 = connector(pki_dir.path(), b"http/1.1");
    assert_eq!(https_get(&https, &http1, "/health").await.0, 200);

    for (what, s) in &mut bad {
        until_closed(what, s).await;
    }
    let got = until_closed("TLS without a preface", &mut mute).await;
    assert!(got.is_empty(), "no HTTP/2 answer without a preface: {got:?}");
    let grpc_failures = probe_metric(&probe, &node.credential(), "cadre_grpc_handshake_failures_total").await;
    assert!(
        grpc_failures.unwrap_or(0.0) >= 6.0,
        "gRPC counted: {grpc_failures:?}"
    );
    let http_failures = probe_metric(
        &probe,
        &node.credential(),
        "cadre_http_tls_handshake_failures_total",
    )
    .await;
    assert!(
        http_failures.unwrap_or(0.0) >= 3.0,
        "HTTPS counted: {http_failures:?}"
    );

    // Still serving, on the old connection and on new ones.
    assert!(admin.status(v1::StatusRequest {}).await.is_ok());
    assert_eq!(https_get(&https, &http1, "/health").await.0, 200);
    node.stop().await;
}
