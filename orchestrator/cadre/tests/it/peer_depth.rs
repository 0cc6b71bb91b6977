//! `limits.max_delegation_depth` across nodes: SupervisorPeer.Delegate carries the parent's
//! depth (`parent_depth`), so a chain of sub-tasks that supervisor nodes delegate to each other
//! (never through tier 0's store) ends at the limit with the same clear refusal as on one node.

use std::time::Duration;

use cadre_proto::v1::{self, TaskState};
use serde_json::{Value, json};
use tonic::Code;

use crate::common::cluster::{Cluster, SHARED_NATS};
use crate::common::*;

/// A `system.debug.delegate` spec nesting `levels` delegations around an echo.
fn delegate_chain(levels: usize) -> Value {
    let mut params = json!({"task_type": "system.debug.echo", "params": {"leaf": true}});
    for _ in 1..levels {
        params = json!({"task_type": "system.debug.delegate", "params": params});
    }
    params
}

/// `n` levels of delegation under a root that is not retried.
fn chain_spec(levels: usize) -> v1::TaskSpec {
    fast_retry(
        spec("system.debug.delegate", &delegate_chain(levels).to_string()),
        1,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_node_to_node_delegations_ends_at_the_depth_limit() {
    let limit = "[limits]\nmax_delegation_depth = 2\n";
    let mut cluster = Cluster::start(SHARED_NATS, &[], limit).await;
    cluster.supervisor_extra = limit.to_string();
    // One system node: every sub-task its executor delegates goes over SupervisorPeer to a
    // node running `system`, itself.
    cluster.add_supervisor("system").await;
    cluster.wait_replicas(1).await;
    let mut c = cluster.orchestrator.tasks().await;

    // Two levels (an echo at depth 2) are within the limit.
    let ok = run(&mut c, chain_spec(2)).await;
    assert_eq!(state(&ok), TaskState::Succeeded, "{ok:?}");
    let result: Value = serde_json::from_str(&ok.result_json).unwrap();
    assert_eq!(result["result"]["result"]["leaf"], true, "{result}");

    // Three are not: the supervisor node refuses the sub-task of the depth-2 task, which
    // fails with the reason, and so does every task above it.
    let root = run(&mut c, chain_spec(3)).await;
    assert_eq!(state(&root), TaskState::Failed, "{root:?}");
    assert!(
        root.error.contains("limits.max_delegation_depth (2)"),
        "{}",
        root.error
    );
    let one = eventually("depth 1 stored", Duration::from_secs(20), || {
        let mut c = c.clone();
        let id = root.children.first().cloned();
        async move { Some(get(&mut c, &id?).await).filter(|t| !t.children.is_empty()) }
    })
    .await;
    let two = get(&mut c, &one.children[0]).await;
    assert_eq!(state(&two), TaskState::Failed, "{two:?}");
    assert!(two.children.is_empty(), "its sub-task never ran: {two:?}");
    assert!(
        two.error.contains("already 2 delegations deep")
            && two.error.contains("limits.max_delegation_depth (2)"),
        "the deepest task says why: {}",
        two.error
    );

    // Asked directly, the supervisor node refuses a parent at the limit with
    // FAILED_PRECONDITION, whoever the parent is.
    let node = &cluster.supervisors[0].1;
    // A token tier 0 issued, signed with the cluster's shared key.
    let token = issue(&cluster.orchestrator, "default", "operator").await;
    let mut peer = node.peer_as(Some(&token)).await;
    let err = peer
        .delegate(v1::DelegateRequest {
            parent_id: ok.id.clone(),
            spec: Some(spec("system.debug.echo", "{}")),
            parent_depth: 2,
            ..Default::default()
        })
        .await
        .expect_err("a parent at the limit takes no sub-task");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("limits.max_delegation_depth (2)") && err.message().contains(&ok.id),
        "{}",
        err.message()
    );
    // Tier 0's SupervisorPeer holds a caller's depth to the same limit.
    let mut tier0 = cluster
        .orchestrator
        .peer_as(Some(&cluster.orchestrator.credential()))
        .await;
    let err = tier0
        .delegate(v1::DelegateRequest {
            parent_id: ok.id.clone(),
            spec: Some(spec("system.debug.echo", "{}")),
            parent_depth: 5,
            ..Default::default()
        })
        .await
        .expect_err("tier 0 refuses a parent past the limit");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("limits.max_delegation_depth (2)"),
        "{}",
        err.message()
    );
    cluster.cleanup().await;
}
