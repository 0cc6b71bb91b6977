//! Pieces every multi-process (distributed-mode) test shares: the shared NATS, a config that
//! puts a process on a test's own subject/stream prefix with a shared HS256 key, cleaning the
//! prefix's streams up afterwards, waiting for many tasks to finish, and [`Cluster`]: a
//! tier-0 process with supervisor nodes.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use cadre_proto::v1;

use super::{Tasks, TestNode, ev_state, events, eventually, get, state};

/// The NATS every developer and CI machine runs (scripts/services.sh starts it).
pub const SHARED_NATS: &str = "nats://127.0.0.1:4222";

/// A fresh subject/stream prefix, so tests sharing one NATS never see each other's messages.
pub fn new_prefix() -> String {
    format!("t{:08x}", fastrand::u32(..))
}

/// Writes a random HS256 secret to `<dir>/hs256.key`, for every process of one cluster: a
/// token issued by one node is accepted by all.
pub fn write_shared_secret(dir: &Path) {
    std::fs::write(
        dir.join("hs256.key"),
        format!("{:032x}{:032x}", fastrand::u128(..), fastrand::u128(..)),
    )
    .unwrap();
}

/// The `[auth]` and `[bus]` config of a cluster process: the secret [`write_shared_secret`]
/// wrote in `dir`, NATS at `nats_url` under `prefix`, short timings so tests run fast.
pub fn bus_toml(dir: &Path, prefix: &str, nats_url: &str) -> String {
    format!(
        "[auth]\nhs256_secret_file = {:?}\n[bus]\nnats_url = {nats_url:?}\nprefix = {prefix:?}\n\
         ack_wait_ms = 3000\nmax_inflight = 32\npeer_ttl_ms = 3000\nreconnect_max_ms = 500\n",
        dir.join("hs256.key").display().to_string()
    )
}

/// Deletes a prefix's streams and peer bucket from the NATS at `url`.
pub async fn cleanup_nats(url: &str, prefix: &str) {
    if let Ok(client) = async_nats::connect(url).await {
        let js = async_nats::jetstream::new(client);
        for s in ["WORK", "EVENTS", "DEAD"] {
            let _ = js.delete_stream(format!("{prefix}_{s}")).await;
        }
        let _ = js.delete_key_value(format!("{prefix}-peers")).await;
    }
}

/// Polls until every task in `ids` is terminal (patience scaled by CADRE_TEST_PATIENCE);
/// returns them by id.
pub async fn wait_all_terminal(
    c: &mut Tasks,
    ids: &[String],
    patience: Duration,
) -> HashMap<String, v1::Task> {
    let scale: f64 = std::env::var("CADRE_TEST_PATIENCE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let deadline = std::time::Instant::now() + patience.mul_f64(scale);
    let mut done: HashMap<String, v1::Task> = HashMap::new();
    loop {
        for id in ids
            .iter()
            .filter(|i| !done.contains_key(*i))
            .cloned()
            .collect::<Vec<_>>()
        {
            let t = get(c, &id).await;
            if !matches!(
                state(&t),
                v1::TaskState::Queued | v1::TaskState::Running | v1::TaskState::Retrying
            ) {
                done.insert(id, t);
            }
        }
        if done.len() == ids.len() {
            return done;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out: {} of {} tasks terminal",
            done.len(),
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Routes so every supervisor has diagnostic work.
pub const ROUTES: &str = r#"
[routes."multimodal.debug.echo"]
supervisor = "multimodal"
worker = "vision"
executor = "echo"
[routes."multimodal.debug.sleep"]
supervisor = "multimodal"
worker = "vision"
executor = "sleep"
[routes."intelligence.debug.echo"]
supervisor = "intelligence"
worker = "writer"
executor = "echo"
[routes."intelligence.debug.sleep"]
supervisor = "intelligence"
worker = "writer"
executor = "sleep"
"#;

/// One cluster: a tier-0 process and supervisor nodes, sharing an HS256 key and a prefix.
pub struct Cluster {
    pub tmp: tempfile::TempDir,
    pub prefix: String,
    pub nats_url: String,
    pub orchestrator: TestNode,
    pub supervisors: Vec<(String, TestNode)>,
    pub env: Vec<(&'static str, Option<String>)>,
    /// Config appended for supervisor nodes added from now on (executor settings).
    pub supervisor_extra: String,
}

impl Cluster {
    pub fn toml(tmp: &Path, prefix: &str, nats_url: &str, extra: &str) -> String {
        format!("{}{ROUTES}\n{extra}\n", bus_toml(tmp, prefix, nats_url))
    }

    pub async fn start(nats_url: &str, replicas: &[(&str, usize)], extra: &str) -> Cluster {
        Self::start_env(nats_url, replicas, extra, Vec::new()).await
    }

    /// Like [`Cluster::start`], every process with `env` (e.g. an OTLP endpoint).
    pub async fn start_env(
        nats_url: &str,
        replicas: &[(&str, usize)],
        extra: &str,
        env: Vec<(&'static str, Option<String>)>,
    ) -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        write_shared_secret(tmp.path());
        let prefix = new_prefix();
        let toml = Self::toml(tmp.path(), &prefix, nats_url, extra);
        let dir = tmp.path().join("orchestrator");
        std::fs::create_dir_all(&dir).unwrap();
        let mut node_env = env.clone();
        node_env.push(("CADRE_NODE__ID", Some("orchestrator".into())));
        let orchestrator = TestNode::start_full(&dir, &toml, &["--role", "orchestrator"], &node_env).await;
        let mut cluster = Cluster {
            tmp,
            prefix,
            nats_url: nats_url.to_string(),
            orchestrator,
            supervisors: Vec::new(),
            env,
            supervisor_extra: String::new(),
        };
        for (kind, n) in replicas {
            for _ in 0..*n {
                cluster.add_supervisor(kind).await;
            }
        }
        cluster
    }

    pub async fn add_supervisor(&mut self, kind: &str) {
        let name = format!("{kind}-{}", self.supervisors.len());
        let dir = self.tmp.path().join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let toml = Self::toml(
            self.tmp.path(),
            &self.prefix,
            &self.nats_url,
            &self.supervisor_extra,
        );
        let mut env = self.env.clone();
        env.push(("CADRE_NODE__ID", Some(name)));
        let node =
            TestNode::start_full(&dir, &toml, &["--role", "supervisor", "--supervisor", kind], &env).await;
        self.supervisors.push((kind.to_string(), node));
    }

    /// Waits until `cadre status` shows `n` supervisor replicas.
    pub async fn wait_replicas(&self, n: usize) -> v1::StatusResponse {
        eventually(
            "every replica in the status tree",
            Duration::from_secs(30),
            || async {
                // UNAVAILABLE until the orchestrator has reached NATS.
                let st = self
                    .orchestrator
                    .admin()
                    .await
                    .status(v1::StatusRequest {})
                    .await
                    .ok()?
                    .into_inner();
                (st.supervisors.iter().filter(|s| s.state == "running").count() == n).then_some(st)
            },
        )
        .await
    }

    /// Deletes the cluster's streams and bucket from the shared NATS.
    pub async fn cleanup(self) {
        let url = self.nats_url.clone();
        let prefix = self.prefix.clone();
        drop(self);
        cleanup_nats(&url, &prefix).await;
    }
}

/// Counts the RUNNING events of a task (an execution each).
pub async fn executions(c: &mut Tasks, id: &str) -> usize {
    events(c, id, 0)
        .await
        .iter()
        .filter(|e| ev_state(e) == v1::TaskState::Running && !e.is_progress)
        .count()
}
