//! kill -9 under load: of the embedded node (restarted on the same data dir and address, round
//! after round), and in distributed mode of tier 0 and of a supervisor replica.

use super::invariants::{Store, check};
use super::{PER_ROUND, all_succeeded, mixed, patience, report, rounds};
use crate::common::TestDb;
use crate::common::cluster::{Cluster, SHARED_NATS};
use crate::common::load::Load;
use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_kill_9_of_the_embedded_node_under_load() {
    let kills = 2 * rounds();
    let mut node = TestNode::start("").await;
    let load = Load::start(&node.tasks().await, 4, "embedded", mixed());
    for round in 1..=kills {
        load.wait_accepted(round * PER_ROUND, patience()).await;
        node.kill9_and_restart().await;
    }
    // Submits flow again after the last restart.
    load.wait_accepted((kills + 1) * PER_ROUND, patience()).await;
    let outcome = load.stop().await;
    let store = Store::Sqlite(node.db_path());
    let checked = check(&store, &node.dir.join("data"), &outcome, patience()).await;
    all_succeeded(&checked);
    report(
        "embedded kill -9",
        &format!("{kills} kill -9"),
        &outcome,
        &checked,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_tier_0_and_of_a_supervisor_replica_in_distributed_mode() {
    let db = TestDb::create().await;
    let store_toml = format!("[store]\nurl = {:?}\n", db.url());
    let mut cluster = Cluster::start(SHARED_NATS, &[("system", 2)], &store_toml).await;
    cluster.wait_replicas(2).await;
    let load = Load::start(&cluster.orchestrator.tasks().await, 4, "distributed", mixed());
    let mut accepted = 0;
    for round in 0..rounds() {
        accepted += PER_ROUND;
        load.wait_accepted(accepted, patience()).await;
        // A supervisor replica dies without a word; a replacement joins.
        let victim = cluster.supervisors.len() - 2;
        cluster.supervisors[victim].1.kill9();
        cluster.add_supervisor("system").await;
        accepted += PER_ROUND;
        load.wait_accepted(accepted, patience()).await;
        // Tier 0 dies and comes back on the same data dir and address.
        cluster.orchestrator.kill9_and_restart().await;
        eprintln!("chaos distributed: round {} faults injected", round + 1);
    }
    load.wait_accepted(accepted + PER_ROUND, patience()).await;
    let outcome = load.stop().await;
    let store = Store::Postgres(db.url().to_string());
    let data = cluster.orchestrator.dir.join("data");
    let checked = check(&store, &data, &outcome, patience()).await;
    all_succeeded(&checked);
    let faults = format!("{} supervisor kill -9 and {} tier-0 kill -9", rounds(), rounds());
    report("distributed kill -9", &faults, &outcome, &checked);
    cluster.cleanup().await;
}
