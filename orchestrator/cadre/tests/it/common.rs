//! The test harness: a `cadre serve` child process and clients for it, a throwaway
//! PostgreSQL database ([`pg::TestDb`]), a test OTLP collector ([`otlp`]) and the shared pieces
//! of multi-process tests ([`cluster`]).

pub mod cluster;
pub mod load;
pub mod otlp;
pub mod private;
pub mod replicas;
pub use cadre_store::testing::pg;

pub use pg::TestDb;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cadre_client::Bearer;
use cadre_proto::v1::{
    self, admin_service_client::AdminServiceClient, supervisor_peer_client::SupervisorPeerClient,
    task_service_client::TaskServiceClient, worker_service_client::WorkerServiceClient,
};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Polls `f` until it returns Some, or panics after `patience` (scaled by CADRE_TEST_PATIENCE).
/// The repository root (this crate is `orchestrator/cadre/`).
pub fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

pub async fn eventually<T, F, Fut>(what: &str, patience: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let scale: f64 = std::env::var("CADRE_TEST_PATIENCE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let deadline = Instant::now() + patience.mul_f64(scale);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[derive(Deserialize)]
struct Endpoints {
    grpc: String,
    http: String,
    pid: u32,
}

/// `cadre serve --config <config>` on free ports: how every test starts a node.
pub fn serve_command(config: &Path) -> Command {
    serve_command_at(config, "127.0.0.1:0")
}

/// `cadre serve --config <config>` with gRPC on `grpc_addr` (HTTP on a free port): for a
/// node restarted where its clients left it.
pub fn serve_command_at(config: &Path, grpc_addr: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cadre"));
    cmd.args([
        "serve",
        "--grpc-addr",
        grpc_addr,
        "--http-addr",
        "127.0.0.1:0",
        "--config",
    ])
    .arg(config);
    cmd
}

/// Clients with the node's commander credential attached.
pub type Tasks = TaskServiceClient<InterceptedService<Channel, Bearer>>;
pub type Admin = AdminServiceClient<InterceptedService<Channel, Bearer>>;
pub type Peer = SupervisorPeerClient<InterceptedService<Channel, Bearer>>;
pub type Workers = WorkerServiceClient<InterceptedService<Channel, Bearer>>;

/// A running `cadre serve` child process.
pub struct TestNode {
    pub dir: PathBuf,
    pub grpc: String,
    pub http: String,
    child: Child,
    /// The `serve` arguments and environment it was started with (for a restart).
    args: Vec<String>,
    env: Vec<(String, Option<String>)>,
    _tmp: Option<tempfile::TempDir>,
}

impl TestNode {
    /// Starts a node in a fresh temp dir; `extra_toml` is appended to the config file.
    pub async fn start(extra_toml: &str) -> TestNode {
        let tmp = tempfile::tempdir().unwrap();
        let mut node = Self::start_in(tmp.path(), extra_toml).await;
        node._tmp = Some(tmp);
        node
    }

    /// Starts a node in a fresh temp dir with extra environment (`None` removes a variable).
    #[allow(dead_code)]
    pub async fn start_with_env(extra_toml: &str, env: &[(&str, Option<String>)]) -> TestNode {
        let tmp = tempfile::tempdir().unwrap();
        let mut node = Self::start_in_env(tmp.path(), extra_toml, env).await;
        node._tmp = Some(tmp);
        node
    }

    /// Starts a node in `dir` (reusing its data dir if one is there).
    pub async fn start_in(dir: &Path, extra_toml: &str) -> TestNode {
        Self::start_full(dir, extra_toml, &[], &[]).await
    }

    /// Like [`TestNode::start_in`] with extra `serve` arguments (e.g. `--role supervisor`).
    pub async fn start_with(dir: &Path, extra_toml: &str, args: &[&str]) -> TestNode {
        Self::start_full(dir, extra_toml, args, &[]).await
    }

    /// [`TestNode::start_in`] with extra environment (`None` removes a variable).
    pub async fn start_in_env(dir: &Path, extra_toml: &str, env: &[(&str, Option<String>)]) -> TestNode {
        Self::start_full(dir, extra_toml, &[], env).await
    }

    /// Starts a node in `dir` with extra `serve` arguments and environment.
    pub async fn start_full(
        dir: &Path,
        extra_toml: &str,
        args: &[&str],
        env: &[(&str, Option<String>)],
    ) -> TestNode {
        Self::start_cmd(dir, extra_toml, "127.0.0.1:0", args, env).await
    }

    /// Starts a node in `dir` whose gRPC listener is on `grpc_addr` (e.g. the address of the
    /// node this one replaces).
    pub async fn start_at(dir: &Path, extra_toml: &str, grpc_addr: &str) -> TestNode {
        Self::start_cmd(dir, extra_toml, grpc_addr, &[], &[]).await
    }

    async fn start_cmd(
        dir: &Path,
        extra_toml: &str,
        grpc_addr: &str,
        args: &[&str],
        env: &[(&str, Option<String>)],
    ) -> TestNode {
        let data = dir.join("data");
        let config = dir.join("cadre.toml");
        std::fs::write(
            &config,
            format!(
                "[node]\ndata_dir = {:?}\n[log]\nlevel = \"warn\"\n{extra_toml}\n",
                data.display().to_string()
            ),
        )
        .unwrap();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let env: Vec<(String, Option<String>)> =
            env.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        Self::spawn(dir, grpc_addr, args, env).await
    }

    /// Runs `cadre serve` on the config already in `dir` and waits for its endpoints.
    async fn spawn(
        dir: &Path,
        grpc_addr: &str,
        args: Vec<String>,
        env: Vec<(String, Option<String>)>,
    ) -> TestNode {
        let data = dir.join("data");
        let config = dir.join("cadre.toml");
        let _ = std::fs::remove_file(data.join("endpoints.json"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("serve.log"))
            .unwrap();
        let mut cmd = serve_command_at(&config, grpc_addr);
        cmd.args(&args)
            .current_dir(dir)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in &env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let mut child = cmd.spawn().expect("spawn cadre serve");
        let pid = child.id();
        let ep = eventually("endpoints.json", Duration::from_secs(30), || {
            let exited = child.try_wait().unwrap();
            assert!(
                exited.is_none(),
                "cadre serve exited early: {exited:?}; log:\n{}",
                read_log(dir)
            );
            let ep = std::fs::read_to_string(data.join("endpoints.json"))
                .ok()
                .and_then(|s| serde_json::from_str::<Endpoints>(&s).ok())
                .filter(|e| e.pid == pid);
            async move { ep }
        })
        .await;
        TestNode {
            dir: dir.to_path_buf(),
            grpc: ep.grpc,
            http: ep.http,
            child,
            args,
            env,
            _tmp: None,
        }
    }

    /// SIGKILL, then the same command again on the same data dir and gRPC address (clients
    /// reconnect by themselves; the HTTP port is new).
    pub async fn kill9_and_restart(&mut self) {
        self.kill9();
        let grpc = self.grpc.trim_start_matches("http://").to_string();
        let mut next = Self::spawn(&self.dir, &grpc, self.args.clone(), self.env.clone()).await;
        next._tmp = self._tmp.take();
        *self = next;
    }

    /// A handle on a node another handle started (no process of its own): for tasks that
    /// need their own clients.
    pub fn attach(dir: &Path, grpc: &str) -> TestNodeRef {
        TestNodeRef {
            dir: dir.to_path_buf(),
            grpc: grpc.to_string(),
        }
    }

    /// The config file the node was started with.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("cadre.toml")
    }

    /// The SQLite database file.
    pub fn db_path(&self) -> PathBuf {
        self.dir.join("data").join("cadre.db")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.grpc.clone())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// The commander credential the node wrote to its data dir.
    pub fn credential(&self) -> String {
        Bearer::from_data_dir(&self.dir.join("data")).expect("credentials file")
    }

    /// A bearer for `credential` (None: no header) that also sends the test's current span
    /// context.
    pub fn bearer(credential: Option<&str>) -> Bearer {
        Bearer::new(credential)
            .unwrap()
            .with_propagator(cadre_trace::inject_metadata)
    }

    pub async fn tasks(&self) -> Tasks {
        self.tasks_as(Some(&self.credential())).await
    }

    pub async fn tasks_as(&self, credential: Option<&str>) -> Tasks {
        TaskServiceClient::with_interceptor(self.channel().await, Self::bearer(credential))
    }

    pub async fn admin(&self) -> Admin {
        self.admin_as(Some(&self.credential())).await
    }

    pub async fn admin_as(&self, credential: Option<&str>) -> Admin {
        AdminServiceClient::with_interceptor(self.channel().await, Self::bearer(credential))
    }

    pub async fn peer_as(&self, credential: Option<&str>) -> Peer {
        SupervisorPeerClient::with_interceptor(self.channel().await, Self::bearer(credential))
    }

    /// A WorkerService client (remote workers) with `credential`.
    pub async fn workers_as(&self, credential: Option<&str>) -> Workers {
        WorkerServiceClient::with_interceptor(self.channel().await, Self::bearer(credential))
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Sends a signal by name (TERM, HUP) with the `kill` command.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// SIGTERM and wait for a clean exit.
    pub async fn stop(mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        eventually("cadre serve to exit", Duration::from_secs(30), || {
            let st = self.child.try_wait().unwrap();
            async move { st }
        })
        .await
    }

    /// GET `path` on the HTTP side with the node's credential; returns (status code, body).
    pub async fn http_get(&self, path: &str) -> (u16, String) {
        let auth = format!("Bearer {}", self.credential());
        let (code, _, body) = http_exchange(self, "GET", path, &[("Authorization", &auth)], None).await;
        (code, body)
    }

    /// The value of one Prometheus sample line, e.g. `cadre_tasks_submitted_total`.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let (_, body) = self.http_get("/metrics").await;
        body.lines().find_map(|l| {
            l.strip_prefix(series)
                .and_then(|v| v.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
    }
}

/// One HTTP/1.0 exchange on a fresh connection (the body ends when the server closes, so
/// there is no chunked encoding to undo): (status, headers with lower-case names, body).
/// A body is sent as JSON.
pub async fn http_exchange(
    node: &TestNode,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, Vec<(String, String)>, String) {
    let addr = node.http.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body.unwrap_or(""));
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let code = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (code, headers, body.to_string())
}

/// Runs `cadre --data-dir <data> audit <args>` (reads the store directly; no node needed).
pub fn cadre_audit(data: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_cadre"))
        .arg("--data-dir")
        .arg(data)
        .arg("audit")
        .args(args)
        .output()
        .unwrap()
}

/// The node's stderr so far.
pub fn read_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default()
}

impl Drop for TestNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A spec with params given as JSON text.
pub fn spec(task_type: &str, params: &str) -> v1::TaskSpec {
    v1::TaskSpec {
        task_type: task_type.into(),
        params_json: params.into(),
        ..Default::default()
    }
}

/// A spec that retries quickly.
pub fn fast_retry(mut s: v1::TaskSpec, attempts: u32) -> v1::TaskSpec {
    s.retry = Some(v1::RetryPolicy {
        max_attempts: attempts,
        initial_backoff_ms: 5,
        max_backoff_ms: 20,
        multiplier: 2.0,
        retry_timeouts: false,
    });
    s
}

pub async fn submit(c: &mut Tasks, s: v1::TaskSpec) -> v1::Task {
    c.submit(v1::SubmitRequest { spec: Some(s) })
        .await
        .expect("submit")
        .into_inner()
        .task
        .unwrap()
}

pub async fn run(c: &mut Tasks, s: v1::TaskSpec) -> v1::Task {
    c.submit_and_wait(v1::SubmitAndWaitRequest {
        spec: Some(s),
        wait_ms: 60_000,
    })
    .await
    .expect("submit_and_wait")
    .into_inner()
}

pub async fn get(c: &mut Tasks, id: &str) -> v1::Task {
    c.get(v1::GetRequest { id: id.into() })
        .await
        .expect("get")
        .into_inner()
}

/// Every event of one task, to its terminal event.
pub async fn events(c: &mut Tasks, id: &str, after: u64) -> Vec<v1::TaskEvent> {
    let req = v1::WatchRequest {
        task_id: id.into(),
        after_cursor: after,
        ..Default::default()
    };
    let mut s = c.watch(req).await.expect("watch").into_inner();
    let mut out = Vec::new();
    while let Some(e) = tokio::time::timeout(Duration::from_secs(60), s.message())
        .await
        .expect("event in time")
        .expect("stream")
    {
        out.push(e);
    }
    out
}

pub fn state(t: &v1::Task) -> v1::TaskState {
    v1::TaskState::try_from(t.state).unwrap()
}

pub fn ev_state(e: &v1::TaskEvent) -> v1::TaskState {
    v1::TaskState::try_from(e.state).unwrap()
}

impl TestNode {
    /// The supervisor tree.
    pub async fn status(&self) -> v1::StatusResponse {
        self.admin()
            .await
            .status(v1::StatusRequest {})
            .await
            .unwrap()
            .into_inner()
    }

    /// Waits until the node holds no unfinished task.
    pub async fn wait_idle(&self, patience: Duration) {
        eventually("no unfinished tasks", patience, || async {
            (self.status().await.pending_tasks == 0).then_some(())
        })
        .await
    }
}

/// The pool status of `supervisor/kind`.
pub async fn pool(node: &TestNode, supervisor: &str, kind: &str) -> v1::PoolStatus {
    node.status()
        .await
        .supervisors
        .into_iter()
        .find(|s| s.name == supervisor)
        .and_then(|s| s.pools.into_iter().find(|p| p.worker_kind == kind))
        .expect("pool exists")
}

/// A borrowed view of a running node: clients only.
pub struct TestNodeRef {
    dir: PathBuf,
    grpc: String,
}

impl TestNodeRef {
    async fn channel(&self) -> Channel {
        Channel::from_shared(self.grpc.clone())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    pub async fn tasks_as(&self, credential: Option<&str>) -> Tasks {
        TaskServiceClient::with_interceptor(self.channel().await, TestNode::bearer(credential))
    }

    pub async fn admin_as(&self, credential: Option<&str>) -> Admin {
        AdminServiceClient::with_interceptor(self.channel().await, TestNode::bearer(credential))
    }

    #[allow(dead_code)]
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// A JWT for `tenant` with `role`, issued by the node's commander.
pub async fn issue(node: &TestNode, tenant: &str, role: &str) -> String {
    let req = v1::IssueTokenRequest {
        subject: format!("{role}-{tenant}"),
        tenant: tenant.into(),
        role: role.into(),
        ttl_secs: 600,
    };
    node.admin()
        .await
        .issue_token(req)
        .await
        .unwrap()
        .into_inner()
        .token
}
