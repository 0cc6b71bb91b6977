//! Phase 1, cadre: a two-process cluster (an orchestrator on a fresh PostgreSQL database and a
//! supervisor node for `system`, on a NATS prefix of their own) driven with `SubmitAndWait`,
//! while the CPU and PostgreSQL samplers watch the measured window.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use cadre::server::Endpoints;
use cadre_benches::grpc::{TaskClient, connect, submit_and_wait_succeeded};
use cadre_benches::stats::RunStats;
use cadre_client::Bearer;
use cadre_proto::v1::admin_service_client::AdminServiceClient;
use cadre_proto::v1::task_service_client::TaskServiceClient;
use cadre_proto::v1::{StatusRequest, SubmitAndWaitRequest, TaskSpec};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::args::Args;
use cadre_benches::serve::tail_log;

use crate::cluster::{Resources, cadre_bin, start_node};
use crate::cpu::{CpuReport, Tracked, common_groups, sample_cpu};
use crate::driver::{Window, drive_for};
use crate::pg_stats::{sample_pg, vacuum_tasks};

/// Largest decoded reply.
const MAX_REPLY_BYTES: usize = 16 << 20;

/// What phase 1 measured.
pub(crate) struct CadreOutcome {
    /// The requests' counts and latencies.
    pub(crate) stats: RunStats,
    /// CPU use of the nodes, this process, NATS and PostgreSQL.
    pub(crate) cpu: CpuReport,
    /// PostgreSQL activity (see [`sample_pg`]); `None` when sampling failed.
    pub(crate) pg: Option<serde_json::Value>,
}

/// The two running nodes of phase 1.
struct Cluster {
    /// The orchestrator's directory (config, data, log).
    orch_dir: PathBuf,
    /// The orchestrator's addresses and pid.
    orch: Endpoints,
    /// The supervisor node's addresses and pid.
    sup: Endpoints,
}

/// Phase 1: a two-process cluster on PostgreSQL and JetStream, driven with SubmitAndWait.
pub(crate) async fn run_cadre(
    args: &Args,
    res: &mut Resources,
    params_json: &str,
) -> anyhow::Result<CadreOutcome> {
    let bin = cadre_bin(args)?;
    let key = write_key(res)?;
    let (db, store_url) = res.create_database(args).await?;
    let prefix = res.new_prefix();
    let cluster = start_cluster(args, res, &bin, &key, &prefix, &db, &store_url).await?;

    let credential = Bearer::from_data_dir(&cluster.orch_dir.join("data"));
    let bearer = Bearer::new(credential.as_deref())?;
    let channels = connect(&cluster.orch.grpc, args.connections).await?;
    let admin = wait_ready(&channels[0], &bearer, &cluster.orch_dir).await?;
    let submitter = Submitter::new(channels, &bearer, params_json);
    let call = move || submitter.call();
    let (stats, cpu, pg) = measure(args, &cluster, db, store_url, call).await;
    // Close our connection first: the node waits up to its shutdown grace for open ones.
    drop(admin);
    res.stop_nodes().await;
    Ok(CadreOutcome { stats, cpu, pg })
}

/// Writes the HS256 key both nodes share to the temporary directory; returns its path.
fn write_key(res: &Resources) -> anyhow::Result<PathBuf> {
    let key = res.root()?.join("hs256.key");
    std::fs::write(
        &key,
        format!("{:032x}{:032x}", fastrand::u128(..), fastrand::u128(..)),
    )?;
    Ok(key)
}

/// Writes the two nodes' configs and starts them: the orchestrator with its store in `db`,
/// then the supervisor node for `system`, both on `prefix` with the shared `key`.
async fn start_cluster(
    args: &Args,
    res: &mut Resources,
    bin: &Path,
    key: &Path,
    prefix: &str,
    db: &str,
    store_url: &str,
) -> anyhow::Result<Cluster> {
    let pool = args.pool.unwrap_or(args.concurrency as usize);
    let common = format!(
        "[auth]\nhs256_secret_file = {:?}\n[bus]\nnats_url = {:?}\nprefix = {prefix:?}\nmax_inflight = {}\n\
         [supervisors.system.pools]\nmonitor = {pool}\n",
        key.display().to_string(),
        args.nats_url,
        args.max_inflight,
    );
    let orch_toml = format!(
        "{common}[store]\nurl = {store_url:?}\nbatch_max = {}\n",
        args.batch_max
    );
    eprintln!("cadre: starting orchestrator and supervisor (prefix {prefix}, database {db})");
    let (orch_dir, orch) =
        start_node(res, bin, "orchestrator", &orch_toml, &["--role", "orchestrator"]).await?;
    let (_, sup) = start_node(
        res,
        bin,
        "supervisor",
        &common,
        &["--role", "supervisor", "--supervisor", "system"],
    )
    .await?;
    Ok(Cluster { orch_dir, orch, sup })
}

/// Waits up to 60 s until the orchestrator reached NATS and sees the supervisor node as
/// running. Returns the admin client it asked with.
async fn wait_ready(
    channel: &Channel,
    bearer: &Bearer,
    orch_dir: &Path,
) -> anyhow::Result<AdminServiceClient<InterceptedService<Channel, Bearer>>> {
    let mut admin = AdminServiceClient::with_interceptor(channel.clone(), bearer.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let running = match admin.status(StatusRequest {}).await {
            Ok(st) => st
                .into_inner()
                .supervisors
                .iter()
                .filter(|s| s.state == "running")
                .count(),
            Err(_) => 0,
        };
        if running >= 1 {
            return Ok(admin);
        }
        if Instant::now() > deadline {
            bail!(
                "the supervisor node never showed up in the status tree; orchestrator log:\n{}",
                tail_log(orch_dir)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The requests of phase 1: `SubmitAndWait` of a `system.debug.echo` task with the bench's
/// params, on the channels in turn.
#[derive(Clone)]
struct Submitter {
    /// One task client per channel.
    clients: Arc<Vec<TaskClient>>,
    /// The task every request submits.
    spec: TaskSpec,
    /// The next request's channel, round-robin.
    turn: Arc<AtomicUsize>,
}

impl Submitter {
    /// Task clients on `channels` with `bearer`'s credential, submitting echo tasks with
    /// `params_json`.
    fn new(channels: Vec<Channel>, bearer: &Bearer, params_json: &str) -> Submitter {
        let clients = channels
            .into_iter()
            .map(|ch| {
                TaskServiceClient::with_interceptor(ch, bearer.clone())
                    .max_decoding_message_size(MAX_REPLY_BYTES)
            })
            .collect();
        let spec = TaskSpec {
            task_type: "system.debug.echo".into(),
            params_json: params_json.to_string(),
            ..Default::default()
        };
        Submitter {
            clients: Arc::new(clients),
            spec,
            turn: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// One request on the next channel: it fails unless the task ends SUCCEEDED.
    fn call(&self) -> impl Future<Output = Result<(), String>> + Send + use<> {
        let client = self.clients[self.turn.fetch_add(1, Ordering::Relaxed) % self.clients.len()].clone();
        let req = SubmitAndWaitRequest {
            spec: Some(self.spec.clone()),
            wait_ms: 0,
        };
        submit_and_wait_succeeded(client, req)
    }
}

/// Warms up and measures `call` from `--concurrency` loops while sampling the CPU of the
/// nodes and the rest, and PostgreSQL's activity in `db` (and, with `--vacuum-every-secs`,
/// vacuuming the store's `tasks`).
async fn measure<F, Fut>(
    args: &Args,
    cluster: &Cluster,
    db: String,
    store_url: String,
    call: F,
) -> (RunStats, CpuReport, Option<serde_json::Value>)
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let mut groups = common_groups();
    groups.insert(1, Tracked::of("orchestrator", vec![cluster.orch.pid]));
    groups.insert(2, Tracked::of("supervisor", vec![cluster.sup.pid]));
    let window = Window::new(args);
    eprintln!(
        "cadre: {} s warm-up, {} s measured, {} loops",
        args.warmup_secs, args.duration_secs, args.concurrency
    );
    let cpu = tokio::spawn(sample_cpu(groups, window));
    let vacuum = (args.vacuum_every_secs > 0).then(|| {
        tokio::spawn(vacuum_tasks(
            store_url.clone(),
            Duration::from_secs(args.vacuum_every_secs),
            window,
        ))
    });
    let pg = tokio::spawn(sample_pg(args.pg_url.clone(), db, store_url, window));
    let stats = drive_for(args.concurrency as usize, window, call).await;
    if let Some(v) = vacuum {
        v.abort();
    }
    let cpu = cpu.await.unwrap_or_default();
    let pg = pg.await.ok().flatten();
    (stats, cpu, pg)
}
