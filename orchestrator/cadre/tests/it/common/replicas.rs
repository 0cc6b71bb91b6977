//! [`SharedStore`]: several `--role orchestrator` processes on one PostgreSQL database and one
//! NATS prefix, with supervisor nodes, as every tier-0 replica test sets them up.

use std::path::PathBuf;
use std::time::Duration;

use cadre_proto::v1;

use super::cluster::{SHARED_NATS, bus_toml, cleanup_nats, new_prefix, write_shared_secret};
use super::{TestDb, TestNode, eventually};

/// A test database, a shared HS256 key and a prefix on the shared NATS, and the config every
/// process of the test starts with.
pub struct SharedStore {
    /// The database the replicas share (dropped with the test).
    pub db: TestDb,
    /// Holds the key and each process's data dir.
    pub tmp: tempfile::TempDir,
    /// The test's subject/stream prefix.
    pub prefix: String,
    /// Every process's config.
    pub toml: String,
}

impl SharedStore {
    /// A new database, key and prefix; `auth` lines go into the `[auth]` table, `extra` (whole
    /// tables) after the store settings.
    pub async fn new(auth: &str, extra: &str) -> SharedStore {
        let db = TestDb::create().await;
        let tmp = tempfile::tempdir().unwrap();
        write_shared_secret(tmp.path());
        let prefix = new_prefix();
        let bus =
            bus_toml(tmp.path(), &prefix, SHARED_NATS).replacen("[auth]\n", &format!("[auth]\n{auth}"), 1);
        let toml = format!("{bus}[store]\nurl = {:?}\n{extra}", db.url());
        SharedStore {
            db,
            tmp,
            prefix,
            toml,
        }
    }

    fn dir(&self, name: &str) -> PathBuf {
        let d = self.tmp.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Starts a tier-0 replica with its data dir `name`.
    pub async fn orchestrator(&self, name: &str) -> TestNode {
        TestNode::start_with(&self.dir(name), &self.toml, &["--role", "orchestrator"]).await
    }

    /// Starts a supervisor node running `supervisor`, with its data dir named after it.
    pub async fn supervisor(&self, supervisor: &str) -> TestNode {
        let args = ["--role", "supervisor", "--supervisor", supervisor];
        TestNode::start_with(&self.dir(supervisor), &self.toml, &args).await
    }

    /// Deletes the prefix's streams and peer bucket.
    pub async fn cleanup(&self) {
        cleanup_nats(SHARED_NATS, &self.prefix).await;
    }
}

/// Waits until every one of `nodes` shows a running supervisor in its status tree (a
/// supervisor node has registered and answers).
pub async fn wait_supervisor_running(nodes: &[&TestNode]) {
    for node in nodes {
        eventually(
            "the supervisor node in the status tree",
            Duration::from_secs(30),
            || async {
                let st = node
                    .admin()
                    .await
                    .status(v1::StatusRequest {})
                    .await
                    .ok()?
                    .into_inner();
                st.supervisors.iter().any(|s| s.state == "running").then_some(())
            },
        )
        .await;
    }
}
