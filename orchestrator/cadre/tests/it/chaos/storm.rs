//! A retry storm: every task fails its first attempts (`system.debug.fail` with
//! `succeed_on_attempt`) before it succeeds, while submits keep coming.

use std::sync::Arc;

use super::invariants::{Store, check};
use super::{PER_ROUND, all_succeeded, patience, report, rounds};
use crate::common::load::Load;
use crate::common::*;

/// Attempts that fail before each task succeeds.
const FAILURES: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_storm_ends_with_every_task_succeeded_once() {
    let node = TestNode::start("").await;
    let storm = Arc::new(|n: usize| {
        let params = format!(
            "{{\"message\": \"storm {n}\", \"succeed_on_attempt\": {}}}",
            FAILURES + 1
        );
        fast_retry(spec("system.debug.fail", &params), FAILURES as u32 + 2)
    });
    let load = Load::start(&node.tasks().await, 4, "storm", storm);
    load.wait_accepted(2 * PER_ROUND * rounds(), patience()).await;
    let outcome = load.stop().await;
    let store = Store::Sqlite(node.db_path());
    let checked = check(&store, &node.dir.join("data"), &outcome, patience()).await;
    all_succeeded(&checked);
    // Each task ran exactly FAILURES + 1 times: RETRYING after each failed attempt, then done.
    let mut c = node.tasks().await;
    for a in outcome.accepted.iter().step_by(7) {
        let evs = events(&mut c, &a.id, 0).await;
        let retrying = evs
            .iter()
            .filter(|e| ev_state(e) == cadre_proto::v1::TaskState::Retrying)
            .count();
        assert_eq!(retrying, FAILURES, "task {}: {evs:?}", a.id);
        assert_eq!(evs.last().unwrap().attempt as usize, FAILURES + 1, "{evs:?}");
    }
    let faults = format!("{} failed attempts", FAILURES * outcome.accepted.len());
    report("retry storm", &faults, &outcome, &checked);
}
