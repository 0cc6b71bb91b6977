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
