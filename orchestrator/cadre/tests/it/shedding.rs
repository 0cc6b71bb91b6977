//! The node-wide bound on calls in flight (`server.max_inflight_calls`): with the bound taken
//! by one long call, other calls on either listener are shed at once (gRPC RESOURCE_EXHAUSTED,
//! HTTP 503, both with `Retry-After: 1`), probes still answer, the shed calls are counted, and
//! the node takes calls again once the long one has ended.

use std::time::Duration;

use cadre_proto::v1;

use crate::common::*;

#[tokio::test]
async fn calls_over_the_node_wide_bound_are_shed_with_retry_after() {
    let node = TestNode::start("[server]\nmax_inflight_calls = 1\n").await;
    let mut waiter = node.tasks().await;
    let long = tokio::spawn(async move {
        waiter
            .submit_and_wait(v1::SubmitAndWaitRequest {
                spec: Some(spec("system.debug.sleep", r#"{"ms": 4000}"#)),
                wait_ms: 0,
            })
            .await
    });
    eventually(
        "the long call to hold the only permit",
        Duration::from_secs(10),
        || async { (node.metric("cadre_calls_in_flight").await == Some(1.0)).then_some(()) },
    )
    .await;

    let mut c = node.tasks().await;
    let err = c
        .submit(v1::SubmitRequest {
            spec: Some(spec("system.debug.echo", "{}")),
        })
        .await
        .expect_err("a call over the bound is shed");
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("server.max_inflight_calls"), "{err:?}");
    assert_eq!(
        err.metadata().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1"),
        "{err:?}"
    );

    let bearer = format!("Bearer {}", node.credential());
    let (code, headers, body) = http_exchange(
        &node,
        "GET",
        "/v1/tasks",
        &[("Authorization", bearer.as_str())],
        None,
    )
    .await;
    assert_eq!(code, 503, "{body}");
    assert!(
        headers.contains(&("retry-after".into(), "1".into())),
        "{headers:?}"
    );
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["code"], "unavailable", "{body}");

    let (code, _) = node.http_get("/health").await;
    assert_eq!(code, 200, "probes are never shed");
    assert!(node.metric("cadre_calls_shed_total{listener=\"grpc\"}").await >= Some(1.0));
    assert!(node.metric("cadre_calls_shed_total{listener=\"http\"}").await >= Some(1.0));

    let finished = long
        .await
        .unwrap()
        .expect("the long call itself was not shed")
        .into_inner();
    assert_eq!(state(&finished), v1::TaskState::Succeeded);
    let again = submit(&mut c, spec("system.debug.echo", "{}")).await;
    assert!(
        !again.id.is_empty(),
        "the node takes calls again once the bound is free"
    );
}
