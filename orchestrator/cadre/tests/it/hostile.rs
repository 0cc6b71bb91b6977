//! A hostile-input run: 10,000 malformed, oversized, deeply nested, unauthenticated and random
//! requests against a running node, plus raw garbage on its sockets. Nothing crashes, every
//! request gets a clear refusal, and the tasks accepted before are intact.

use std::time::Duration;

use cadre_proto::v1::{self, TaskState};
use tokio::io::AsyncWriteExt;
use tonic::Code;

use crate::common::*;

/// xorshift64*: deterministic randomness without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn text_upto(&mut self, max: u64) -> String {
        let len = self.below(max) as usize;
        self.text(len)
    }

    fn text(&mut self, len: usize) -> String {
        (0..len).map(|_| (b' ' + self.below(95) as u8) as char).collect()
    }
}

/// One hostile request, chosen by `i`; returns the status code it got.
async fn hostile(node: &TestNodeRef, good: &str, rng: &mut Rng, i: u64) -> Code {
    let mut c = node.tasks_as(Some(good)).await;
    let submit = |s: v1::TaskSpec| v1::SubmitRequest { spec: Some(s) };
    let res = match i % 12 {
        0 => c.submit(submit(spec(&rng.text_upto(200), "{}"))).await.map(drop),
        1 => c
            .submit(submit(spec(
                "system.debug.echo",
                &(String::from("x") + &rng.text_upto(300)),
            )))
            .await
            .map(drop),
        2 => {
            let depth = 33 + rng.below(5000) as usize;
            c.submit(submit(spec(
                "system.debug.echo",
                &format!("{}{}", "[".repeat(depth), "]".repeat(depth)),
            )))
            .await
            .map(drop)
        }
        3 => {
            let huge = format!("\"{}\"", "x".repeat((1 << 20) + rng.below(1 << 20) as usize));
            c.submit(submit(spec("system.debug.echo", &huge))).await.map(drop)
        }
        4 => {
            let s = v1::TaskSpec {
                priority: rng.next() as i32 | 16,
                ..spec("system.debug.echo", "{}")
            };
            c.submit(submit(s)).await.map(drop)
        }
        5 => {
            let s = v1::TaskSpec {
                timeout_ms: -(rng.below(i64::MAX as u64) as i64) - 1,
                ..spec("system.debug.echo", "{}")
            };
            c.submit(submit(s)).await.map(drop)
        }
        6 => {
            let retry = v1::RetryPolicy {
                max_attempts: 101 + rng.below(1000) as u32,
                multiplier: f64::NAN,
                ..Default::default()
            };
            c.submit(submit(v1::TaskSpec {
                retry: Some(retry),
                ..spec("system.debug.echo", "{}")
            }))
            .await
            .map(drop)
        }
        7 => c
            .get(v1::GetRequest {
                id: rng.text_upto(80),
            })
            .await
            .map(drop),
        8 => c
            .cancel(v1::CancelRequest {
                id: rng.text(36),
                reason: rng.text(10),
            })
            .await
            .map(drop),
        9 => {
            let states = (0..rng.below(5)).map(|_| 8 + rng.below(1000) as i32).collect();
            c.list(v1::ListRequest {
                states,
                page_token: rng.text(20),
                ..Default::default()
            })
            .await
            .map(drop)
        }
        10 => {
            let token = rng.text_upto(400);
            let mut bad = node.tasks_as(Some(&token)).await;
            bad.submit(submit(spec("system.debug.echo", "{}")))
                .await
                .map(drop)
        }
        _ => {
            let mut admin = node.admin_as(Some(good)).await;
            let req = v1::ScaleRequest {
                supervisor: rng.text(8),
                worker_kind: rng.text(8),
                replicas: rng.next() as u32,
            };
            admin.scale(req).await.map(drop)
        }
    };
    res.err().map(|e| e.code()).unwrap_or(Code::Ok)
}

#[tokio::test]
async fn ten_thousand_hostile_requests_crash_nothing_and_lose_nothing() {
    let node = TestNode::start("").await;
    let good = node.credential();
    let mut c = node.tasks().await;
    let mut before = Vec::new();
    for i in 0..20 {
        before.push(run(&mut c, spec("system.debug.echo", &format!("{{\"keep\":{i}}}"))).await);
    }

    // Raw garbage on both sockets first.
    for addr in [&node.grpc, &node.http] {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20 {
            let mut s = tokio::net::TcpStream::connect(addr.trim_start_matches("http://"))
                .await
                .unwrap();
            let junk: Vec<u8> = (0..rng.below(4096) + 1).map(|_| rng.next() as u8).collect();
            let _ = s.write_all(&junk).await;
        }
    }

    let workers = 32u64;
    let per_worker = 10_000 / workers + 1;
    let mut handles = Vec::new();
    for w in 0..workers {
        let node_grpc = node.grpc.clone();
        let good = good.clone();
        let dir = node.dir.clone();
        handles.push(tokio::spawn(async move {
            let node = TestNode::attach(&dir, &node_grpc);
            let mut rng = Rng(0x1234_5678_9abc_def1 ^ (w + 1).wrapping_mul(0x9e37_79b9));
            let mut codes = Vec::new();
            for i in 0..per_worker {
                codes.push(hostile(&node, &good, &mut rng, w * per_worker + i).await);
            }
            codes
        }));
    }
    let mut total = 0;
    for h in handles {
        for code in h.await.unwrap() {
            total += 1;
            assert!(
                matches!(
                    code,
                    Code::InvalidArgument
                        | Code::ResourceExhausted
                        | Code::OutOfRange
                        | Code::NotFound
                        | Code::Unauthenticated
                ),
                "a hostile request got {code:?}"
            );
        }
    }
    assert!(total >= 10_000);

    // Still serving; nothing accepted before was lost or changed.
    let after = run(&mut c, spec("system.debug.echo", r#"{"after":true}"#)).await;
    assert_eq!(state(&after), TaskState::Succeeded);
    for t in before {
        let now = get(&mut c, &t.id).await;
        assert_eq!((now.state, now.result_json), (t.state, t.result_json));
    }
    assert_eq!(node.http_get("/health").await.0, 200);
    tokio::time::sleep(Duration::from_millis(1)).await;
}

#[tokio::test]
async fn excess_calls_are_shed_and_long_calls_time_out() {
    let node = TestNode::start("[server]\nmax_calls_per_connection = 2\nrequest_timeout_ms = 1500\n").await;
    let c = node.tasks().await; // one connection
    let mut calls = Vec::new();
    for _ in 0..12 {
        let mut c = c.clone();
        calls.push(tokio::spawn(async move {
            let req = v1::SubmitAndWaitRequest {
                spec: Some(spec("system.debug.sleep", r#"{"ms": 300}"#)),
                wait_ms: 0,
            };
            c.submit_and_wait(req)
                .await
                .err()
                .map(|e| (e.code(), e.message().to_string()))
        }));
    }
    let mut shed = 0;
    for h in calls {
        match h.await.unwrap() {
            None => {}
            Some((Code::ResourceExhausted, _)) => shed += 1,
            Some(other) => panic!("unexpected refusal {other:?}"),
        }
    }
    assert!(
        shed > 0,
        "calls above the per-connection limit are shed, not queued"
    );

    let mut c = node.tasks().await;
    let req = v1::SubmitAndWaitRequest {
        spec: Some(spec("system.debug.sleep", r#"{"ms": 5000}"#)),
        wait_ms: 0,
    };
    let err = c.submit_and_wait(req).await.unwrap_err();
    assert!(
        matches!(err.code(), Code::Cancelled | Code::DeadlineExceeded),
        "{err:?}"
    );
    // The node is fine afterwards.
    assert_eq!(
        state(&run(&mut c, spec("system.debug.echo", "{}")).await),
        TaskState::Succeeded
    );
}

/// `host:port` of a listener URL.
fn sock_addr(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_start_matches("https://")
        .to_string()
}

/// A slow-loris client: connects, sends `start`, then one more byte of `trickle` (if any) every
/// 100 ms;
/// returns how long the server kept the connection (None: still open after `patience`).
async fn slow_loris(
    addr: String,
    start: &'static [u8],
    trickle: Option<u8>,
    patience: Duration,
) -> Option<Duration> {
    use tokio::io::AsyncReadExt;
    let began = std::time::Instant::now();
    let mut s = tokio::net::TcpStream::connect(&addr).await.ok()?;
    if s.write_all(start).await.is_err() {
        return Some(began.elapsed());
    }
    let mut buf = [0u8; 1024];
    while began.elapsed() < patience {
        tokio::select! {
            r = s.read(&mut buf) => match r {
                Ok(0) | Err(_) => return Some(began.elapsed()),
                Ok(_) => {}
            },
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                if let Some(b) = trickle && s.write_all(&[b]).await.is_err() {
                    return Some(began.elapsed());
                }
            }
        }
    }
    None
}

/// Slow-loris clients on both listeners: the HTTP ones are cut off at the header deadline,
/// and while they trickle, normal calls on both listeners are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_clients_on_both_listeners_do_not_starve_normal_calls() {
    let node = TestNode::start("[server]\nhttp_header_timeout_ms = 500\n").await;
    let patience = Duration::from_secs(8);
    let (http, grpc) = (sock_addr(&node.http), sock_addr(&node.grpc));
    let loris: Vec<_> = (0..100)
        .map(|i| {
            let (addr, start): (String, &'static [u8]) = if i % 2 == 0 {
                (http.clone(), b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            } else {
                // All of the HTTP/2 preface but its last byte, then nothing.
                (grpc.clone(), b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r")
            };
            let trickle = (i % 2 == 0).then_some(b'a');
            tokio::spawn(slow_loris(addr, start, trickle, patience))
        })
        .collect();
    // While they trickle, both listeners serve.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut c = node.tasks().await;
    assert_eq!(
        state(&run(&mut c, spec("system.debug.echo", "{}")).await),
        TaskState::Succeeded
    );
    assert_eq!(node.http_get("/health").await.0, 200);
    let mut grpc_held = 0;
    for (i, h) in loris.into_iter().enumerate() {
        let kept = h.await.unwrap();
        if i % 2 == 0 {
            let kept = kept.expect("the HTTP listener cuts a slow-loris client off");
            assert!(
                kept < Duration::from_secs(5),
                "cut off at the header deadline, not {kept:?}"
            );
        } else {
            grpc_held += usize::from(kept.is_none());
        }
    }
    // The gRPC listener has no handshake deadline of its own (reported, not asserted).
    eprintln!(
        "slow loris: 50 HTTP clients cut off; {grpc_held} of 50 gRPC clients still open after {patience:?}"
    );
    assert!(
        node.metric("cadre_http_header_timeouts_total")
            .await
            .unwrap_or(0.0)
            >= 50.0
    );
    assert_eq!(
        state(&run(&mut c, spec("system.debug.echo", "{}")).await),
        TaskState::Succeeded
    );
}

/// How many more file descriptors this process may open, less a reserve for the tests running
/// beside this one.
fn spare_fds() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft: usize = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1024);
    let open = std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0);
    soft.saturating_sub(open + 2048)
}

/// Opens up to `n` connections to `addr` (256 connecting at a time) and holds them; returns
/// the open ones and how many could not connect.
async fn flood(addr: &str, n: usize) -> (Vec<tokio::net::TcpStream>, usize) {
    use futures::StreamExt;
    let results: Vec<_> = futures::stream::iter(0..n)
        .map(|_| {
            tokio::time::timeout(
                Duration::from_secs(5),
                tokio::net::TcpStream::connect(addr.to_string()),
            )
        })
        .buffer_unordered(256)
        .collect()
        .await;
    let mut open = Vec::new();
    let mut failed = 0;
    for r in results {
        match r {
            Ok(Ok(s)) => open.push(s),
            _ => failed += 1,
        }
    }
    (open, failed)
}

/// 10,000 connections (loopback, bounded by this process's spare descriptors) on each listener
/// in turn: the node stays up, the HTTP listener sheds what is over its cap, and a normal call
/// is served afterwards on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_connections_leave_the_node_up_and_serving() {
    let node = TestNode::start("[server]\nhttp_max_connections = 1000\n").await;
    let target = 10_000.min(spare_fds());
    let (http, grpc) = (sock_addr(&node.http), sock_addr(&node.grpc));
    for (name, addr) in [("HTTP", &http), ("gRPC", &grpc)] {
        let (open, failed) = flood(addr, target).await;
        eprintln!(
            "{name}: {} of {target} connections open, {failed} refused or timed out",
            open.len()
        );
        assert!(open.len() + failed == target);
        drop(open);
        let mut c = node.tasks().await;
        assert_eq!(
            state(&run(&mut c, spec("system.debug.echo", "{}")).await),
            TaskState::Succeeded,
            "served after {target} {name} connections"
        );
    }
    let health = eventually("HTTP served again", Duration::from_secs(10), || async {
        let (code, _) = node.http_get("/health").await;
        (code == 200).then_some(code)
    })
    .await;
    assert_eq!(health, 200);
    let shed = node
        .metric("cadre_http_connections_refused_total")
        .await
        .unwrap_or(0.0);
    assert!(
        shed > 0.0 || target <= 1000,
        "connections over http_max_connections were shed"
    );
}
