//! NATS restarted: a private `nats-server -js` under a tier-0 process and a supervisor node is
//! killed mid-load and started again on its store, round after round.

use super::invariants::{Store, check};
use super::{PER_ROUND, all_succeeded, mixed, patience, report, rounds};
use crate::common::cluster::Cluster;
use crate::common::load::Load;
use crate::common::private::{PrivateNats, free_port};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_killed_and_restarted_mid_load() {
    let nats_dir = tempfile::tempdir().unwrap();
    let mut nats = PrivateNats::start(nats_dir.path(), free_port());
    let cluster = Cluster::start(&nats.url(), &[("system", 1)], "").await;
    cluster.wait_replicas(1).await;
    let load = Load::start(&cluster.orchestrator.tasks().await, 4, "nats", mixed());
    let mut accepted = 0;
    for _ in 0..rounds() {
        accepted += PER_ROUND;
        load.wait_accepted(accepted, patience()).await;
        nats.down();
        // Intake keeps taking tasks into the store while NATS is away.
        accepted += PER_ROUND / 2;
        load.wait_accepted(accepted, patience()).await;
        nats.up();
    }
    load.wait_accepted(accepted + PER_ROUND, patience()).await;
    let outcome = load.stop().await;
    let store = Store::Sqlite(cluster.orchestrator.db_path());
    let checked = check(
        &store,
        &cluster.orchestrator.dir.join("data"),
        &outcome,
        patience(),
    )
    .await;
    all_succeeded(&checked);
    report(
        "nats restart",
        &format!("{} NATS kill -9 and restart", rounds()),
        &outcome,
        &checked,
    );
    drop(cluster);
}
