//! The `cadre` command line: `serve` runs a node; every other command is a gRPC client of one.
//!
//! Client commands find the node from `--endpoint` / `CADRE_ENDPOINT`, else from
//! `<data-dir>/endpoints.json` written by `cadre serve`, else `http://127.0.0.1:50051`.
//! Errors print one line (`error: <status>: <message>`) and exit non-zero.
//!
//! Tracing: client commands send the `TRACEPARENT` environment variable (a W3C trace context)
//! as gRPC `traceparent` metadata when it is set, so the node's spans for the call join the
//! caller's trace (see docs/TRACING.md).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use cadre_proto::TaskState;
use cadre_proto::v1::{
    self, admin_service_client::AdminServiceClient, task_service_client::TaskServiceClient,
};
use clap::Parser;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::server::{self, Endpoints};
use cadre_core::auth::{Bearer, Principal, Role};
use cadre_core::config::{Config, ConfigSource, Overrides};
use cadre_core::telemetry;
use cadre_store::chain as audit;
use cadre_store::sqlite::SqliteStore;

mod args;
mod watch;

pub use args::{
    AuditCommand, Cli, ClientTls, Command, ConfigCommand, KeyCommand, ServeArgs, StatusArgs, SubmitArgs,
    TasksArgs, TokenCommand, WatchArgs,
};

use watch::{Board, Ended, Face, Lines, Quiet, Sink, TaskBar};

/// tonic's client TLS settings from the flags.
pub fn client_tls(t: &ClientTls) -> Result<ClientTlsConfig> {
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    let mut tls = ClientTlsConfig::new();
    if let Some(ca) = &t.ca_cert {
        tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
    }
    if let (Some(cert), Some(key)) = (&t.client_cert, &t.client_key) {
        tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    if let Some(d) = &t.tls_domain {
        tls = tls.domain_name(d.clone());
    }
    Ok(tls)
}

/// Parses `90s`, `30m`, `24h`, `7d` or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| anyhow!("{s:?} is not a duration like 90s, 30m, 24h or 7d"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => bail!("{s:?} is not a duration like 90s, 30m, 24h or 7d"),
    };
    Ok(Duration::from_secs(secs))
}

/// Runs the parsed command; returns the process exit code.
pub async fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Serve(args) => serve(args, cli.data_dir).await.map(|_| 0),
        Command::Audit {
            command,
            store_url,
            trusted_keys,
            heads,
        } => {
            let source = AuditSource {
                data_dir: cli.data_dir.unwrap_or_else(|| PathBuf::from("cadre-data")),
                store_url,
                trusted_keys,
                heads,
            };
            audit_command(command, &source).await
        }
        Command::Config {
            command: ConfigCommand::Check { file },
        } => {
            let cfg = Config::load(file.as_deref())?;
            println!("# effective configuration (defaults < file < CADRE_* env): valid");
            print!("{}", cfg.to_toml());
            Ok(0)
        }
        Command::Mcp { http } => {
            let data_dir = cli
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("cadre-data"));
            let http = http
                .or_else(|| Endpoints::read(&data_dir).map(|e| e.http))
                .unwrap_or_else(|| "http://127.0.0.1:8080".into());
            let credential = cli.token.or_else(|| Bearer::from_data_dir(&data_dir));
            crate::mcp_stdio::run(&http, credential).await.map(|_| 0)
        }
        command => {
            let endpoint = resolve_endpoint(cli.endpoint, cli.data_dir.as_deref());
            let credential = cli.token.or_else(|| {
                Bearer::from_data_dir(cli.data_dir.as_deref().unwrap_or(Path::new("cadre-data")))
            });
            // A caller's trace continues through this command (W3C trace context, as set by
            // e.g. `otel-cli` or a CI system).
            let traceparent = std::env::var("TRACEPARENT").ok();
            let bearer = Bearer::new(credential.as_deref())?.with_traceparent(traceparent.as_deref());

            let mut ep = Channel::from_shared(endpoint.clone())
                .map_err(|e| anyhow!("invalid endpoint {endpoint:?}: {e}"))?
                .connect_timeout(Duration::from_secs(5));
            if endpoint.starts_with("https://") {
                ep = ep
                    .tls_config(client_tls(&cli.tls)?)
                    .map_err(|e| anyhow!("TLS setup failed: {e}"))?;
            }
            let channel = ep
                .connect()
                .await
                .map_err(|e| anyhow!("cannot reach cadre at {endpoint}: {e} (is `cadre serve` running?)"))?;
            let data_dir = cli.data_dir.unwrap_or_else(|| PathBuf::from("cadre-data"));
            client(command, channel, bearer, &data_dir).await
        }
    }
}

fn resolve_endpoint(flag: Option<String>, data_dir: Option<&Path>) -> String {
    flag.or_else(|| Endpoints::read(data_dir.unwrap_or(Path::new("cadre-data"))).map(|e| e.grpc))
        .unwrap_or_else(|| "http://127.0.0.1:50051".into())
}

async fn serve(args: ServeArgs, data_dir: Option<PathBuf>) -> Result<()> {
    let source = ConfigSource {
        path: args.config,
        overrides: Overrides {
            grpc_addr: args.grpc_addr,
            http_addr: args.http_addr,
            data_dir,
            log_json: args.log_json,
            role: args.role,
            supervisors: args.supervisors,
        },
    };
    let cfg = source.load()?;
    telemetry::init_node_logging(&cfg.log, &cfg.node);
    let running = server::start(cfg, source).await?;
    eprintln!(
        "cadre serving gRPC on {} and HTTP on {}",
        running.grpc_addr, running.http_addr
    );
    wait_for_signals(&running).await;
    running.shutdown().await;
    telemetry::shutdown_tracing().await;
    Ok(())
}

#[cfg(unix)]
async fn wait_for_signals(running: &server::Running) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut hup), Ok(mut term)) = (signal(SignalKind::hangup()), signal(SignalKind::terminate())) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {
                // Whoever may signal the process acts as the node's operator: audited as such.
                let actor = Principal { subject: "SIGHUP".into(), tenant: String::new(), role: Role::Commander };
                let Some(node) = &running.node else {
                    tracing::warn!("SIGHUP: a supervisor node reloads nothing; restart it to change its config");
                    continue;
                };
                match node.reload().await {
                    Ok(changes) => {
                        tracing::info!(?changes, "SIGHUP: config reloaded");
                        node.audit(Some(&actor), "admin.reload", "config", "ok", &changes.join("; ")).await;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "SIGHUP: config not reloaded");
                        node.audit(Some(&actor), "admin.reload", "config", "failed", &e.to_string()).await;
                    }
                }
            }
            _ = term.recv() => return,
            _ = tokio::signal::ctrl_c() => return,
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signals(_running: &server::Running) {
    let _ = tokio::signal::ctrl_c().await;
}

/// Prints task types as a table (type, where it runs, required and optional params) or, with
/// `json`, as `{"types": [...]}` with the full schemas.
fn print_types(types: &[v1::TaskType], json: bool) -> Result<()> {
    let parse = |what: &str, s: &str| {
        serde_json::from_str::<serde_json::Value>(s).with_context(|| format!("the node sent a bad {what}"))
    };
    if json {
        let types = types
            .iter()
            .map(|t| {
                Ok(serde_json::json!({
                    "task_type": t.task_type,
                    "supervisor": t.supervisor,
                    "worker_kind": t.worker_kind,
                    "executor": t.executor,
                    "params_schema": parse("params schema", &t.params_schema_json)?,
                    "result_schema": parse("result schema", &t.result_schema_json)?,
                }))
            })
            .collect::<Result<Vec<_>>>()?;
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "types": types }))?
        );
        return Ok(());
    }
    println!(
        "{:<38}  {:<24}  {:<24}  OPTIONAL",
        "TYPE", "SUPERVISOR/WORKER", "REQUIRED"
    );
    for t in types {
        let schema = parse("params schema", &t.params_schema_json)?;
        let required: Vec<&str> = schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .collect();
        let mut optional: Vec<&str> = schema["properties"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k.as_str())
            .filter(|k| !required.contains(k))
            .collect();
        if schema["additionalProperties"] != false {
            optional.push("...");
        }
        let list = |names: &[&str]| {
            if names.is_empty() {
                "-".to_string()
            } else {
                names.join(",")
            }
        };
        println!(
            "{:<38}  {:<24}  {:<24}  {}",
            t.task_type,
            format!("{}/{}", t.supervisor, t.worker_kind),
            list(&required),
            list(&optional)
        );
    }
    Ok(())
}

/// The task client with credentials attached.
type TasksClient = TaskServiceClient<InterceptedService<Channel, Bearer>>;

/// The admin client with credentials attached.
type AdminClient = AdminServiceClient<InterceptedService<Channel, Bearer>>;

fn status_err(s: tonic::Status) -> anyhow::Error {
    anyhow!("{:?}: {}", s.code(), s.message())
}

/// Exit code after Ctrl-C stopped a command that waits for one task (128 + SIGINT, as a shell
/// reports it).
const INTERRUPTED: i32 = 130;

/// Exit code of `watch <id>` and `submit --wait` when the task finished without succeeding.
const NOT_SUCCEEDED: i32 = 2;

/// `cadre watch`: one task until its terminal event (exit 0 only if it SUCCEEDED), or every task
/// the filter selects until Ctrl-C.
async fn watch_command(tasks: &mut TasksClient, w: WatchArgs) -> Result<i32> {
    let face = Face::detect(w.plain);
    let one = w.id.clone().filter(|id| !id.is_empty());
    let mut sink: Box<dyn Sink> = match (&one, face) {
        (_, Face::Plain) => Box::new(Lines),
        (Some(id), Face::Live) => Box::new(TaskBar::new(id)?),
        (None, Face::Live) => {
            let mut filter = if w.type_prefix.is_empty() {
                "all tasks".to_string()
            } else {
                format!("tasks of type {}*", w.type_prefix)
            };
            if !w.parent.is_empty() {
                filter.push_str(&format!(" under {}", w.parent));
            }
            Box::new(Board::new(filter, usize::from(w.max_active))?)
        }
    };
    let req = v1::WatchRequest {
        task_id: w.id.unwrap_or_default(),
        task_type_prefix: w.type_prefix,
        after_cursor: w.after,
        states: vec![],
        parent_id: w.parent,
    };
    let ended = watch::follow(tasks, req, sink.as_mut()).await?;
    Ok(match (one, ended) {
        (None, _) => 0,
        (Some(_), Ended::Interrupted) => INTERRUPTED,
        (Some(_), Ended::Closed(Some(TaskState::Succeeded))) => 0,
        (Some(_), Ended::Closed(Some(s))) if s.is_terminal() => NOT_SUCCEEDED,
        (Some(id), Ended::Closed(_)) => bail!("the event stream of task {id} ended before the task finished"),
    })
}

async fn client(command: Command, channel: Channel, bearer: Bearer, data_dir: &Path) -> Result<i32> {
    let mut tasks = TaskServiceClient::with_interceptor(channel.clone(), bearer.clone());
    let mut admin = AdminServiceClient::with_interceptor(channel, bearer);
    match command {
        Command::Submit(a) => {
            let params = read_params(&a.params)?;
            let retry = (a.max_attempts > 0 || a.backoff_ms > 0).then_some(v1::RetryPolicy {
                max_attempts: a.max_attempts,
                initial_backoff_ms: a.backoff_ms,
                max_backoff_ms: 0,
                multiplier: 0.0,
            });
            let security_level = match a.security_level.as_str() {
                "standard" => v1::SecurityLevel::Standard,
                "verified" => v1::SecurityLevel::Verified,
                "fortress" => v1::SecurityLevel::Fortress,
                other => bail!("--security-level {other:?} is not standard, verified or fortress"),
            } as i32;
            let spec = v1::TaskSpec {
                security_level,
                task_type: a.task_type,
                params_json: params,
                priority: a.priority,
                timeout_ms: a.timeout_ms,
                retry,
                idempotency_key: a.idempotency_key,
                parent_id: String::new(),
            };
            let resp = tasks
                .submit(v1::SubmitRequest { spec: Some(spec) })
                .await
                .map_err(status_err)?
                .into_inner();
            let task = resp.task.context("node returned no task")?;
            if !a.wait {
                if a.json {
                    println!("{}", task_json(&task));
                } else {
                    let note = if resp.created {
                        ""
                    } else {
                        " (existing task for this idempotency key)"
                    };
                    println!("{}{note}", task.id);
                }
                return Ok(0);
            }
            if !a.json {
                eprintln!("submitted {}", task.id);
            }
            let mut sink: Box<dyn Sink> = match (a.json, Face::detect(false)) {
                (true, _) => Box::new(Quiet),
                (false, Face::Live) => Box::new(TaskBar::new(&task.id)?),
                (false, Face::Plain) => Box::new(Lines),
            };
            let req = v1::WatchRequest {
                task_id: task.id.clone(),
                ..Default::default()
            };
            if watch::follow(&mut tasks, req, sink.as_mut()).await? == Ended::Interrupted {
                return Ok(INTERRUPTED);
            }
            let task = tasks
                .get(v1::GetRequest { id: task.id })
                .await
                .map_err(status_err)?
                .into_inner();
            if a.json {
                println!("{}", task_json(&task));
            } else {
                print_task(&task);
            }
            Ok(if task.state == v1::TaskState::Succeeded as i32 {
                0
            } else {
                NOT_SUCCEEDED
            })
        }
        Command::Get { id, json } => {
            let task = tasks
                .get(v1::GetRequest { id })
                .await
                .map_err(status_err)?
                .into_inner();
            if json {
                println!("{}", task_json(&task));
            } else {
                print_task(&task);
            }
            Ok(0)
        }
        Command::Cancel { id, reason } => {
            let task = tasks
                .cancel(v1::CancelRequest { id, reason })
                .await
                .map_err(status_err)?
                .into_inner();
            println!("{} {}", task.id, state_name(task.state));
            Ok(0)
        }
        Command::Watch(w) => watch_command(&mut tasks, w).await,
        Command::Tasks(t) => {
            let states = t
                .state
                .iter()
                .map(|s| s.parse::<TaskState>().map(|s| s.to_wire() as i32))
                .collect::<Result<Vec<_>, _>>()?;
            let req = v1::ListRequest {
                states,
                task_type_prefix: t.type_prefix,
                parent_id: String::new(),
                page_size: t.limit,
                page_token: t.page_token,
            };
            let resp = tasks.list(req).await.map_err(status_err)?.into_inner();
            println!(
                "{:<36}  {:<10}  {:>7}  {:<32}  ERROR",
                "ID", "STATE", "ATTEMPT", "TYPE"
            );
            for task in &resp.tasks {
                let ty = task.spec.as_ref().map(|s| s.task_type.as_str()).unwrap_or("");
                println!(
                    "{:<36}  {:<10}  {:>7}  {:<32}  {}",
                    task.id,
                    state_name(task.state),
                    task.attempt,
                    ty,
                    task.error
                );
            }
            if !resp.next_page_token.is_empty() {
                println!("more: --page-token {}", resp.next_page_token);
            }
            Ok(0)
        }
        Command::Types { prefix, json } => {
            let req = v1::ListTaskTypesRequest {
                task_type_prefix: prefix.unwrap_or_default(),
            };
            let resp = tasks.list_task_types(req).await.map_err(status_err)?.into_inner();
            print_types(&resp.types, json)?;
            Ok(0)
        }
        Command::Status(a) if a.watch => {
            let interval = Duration::from_millis(a.interval_ms);
            watch::status_loop(&mut admin, interval, Face::detect(a.plain), render_status).await
        }
        Command::Status(_) => {
            let s = admin
                .status(v1::StatusRequest {})
                .await
                .map_err(status_err)?
                .into_inner();
            print!("{}", render_status(&s));
            Ok(0)
        }
        Command::Scale {
            supervisor,
            kind,
            replicas,
        } => {
            let req = v1::ScaleRequest {
                supervisor: supervisor.clone(),
                worker_kind: kind,
                replicas,
            };
            let pool = admin
                .scale(req)
                .await
                .map_err(status_err)?
                .into_inner()
                .pool
                .context("no pool returned")?;
            println!(
                "{supervisor}/{}: target {} live {} busy {}",
                pool.worker_kind, pool.target_size, pool.live_workers, pool.busy_workers
            );
            Ok(0)
        }
        Command::Reload => {
            let r = admin
                .reload_config(v1::ReloadConfigRequest {})
                .await
                .map_err(status_err)?
                .into_inner();
            if r.changes.is_empty() {
                println!("no changes");
            }
            for c in r.changes {
                println!("{c}");
            }
            Ok(0)
        }
        Command::Usage { tenant, day } => {
            let r = admin
                .usage(v1::UsageRequest { tenant, day })
                .await
                .map_err(status_err)?
                .into_inner();
            println!("usage on {} (UTC)", r.day);
            println!(
                "{:<16}  {:<24}  {:>12}  {:>12}  {:>12}",
                "TENANT", "MODEL", "TOKENS IN", "TOKENS OUT", "COST USD"
            );
            for u in r.usage {
                println!(
                    "{:<16}  {:<24}  {:>12}  {:>12}  {:>12.6}",
                    u.tenant, u.model, u.tokens_in, u.tokens_out, u.cost_usd
                );
            }
            Ok(0)
        }
        Command::VerifyResult { id, public_key } => {
            let paths = if public_key.is_empty() {
                vec![data_dir.join(audit::NODE_PUBLIC_KEY_FILE)]
            } else {
                public_key
            };
            let mut keys = Vec::new();
            for path in &paths {
                let pem = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the node public key {}", path.display()))?;
                keys.push((path, cadre_core::audit::public_key(&pem)?));
            }
            let task = tasks
                .get(v1::GetRequest { id })
                .await
                .map_err(status_err)?
                .into_inner();
            if task.result_signature.is_empty() {
                bail!(
                    "task {} has no signed result (state {}, not a verified task?)",
                    task.id,
                    state_name(task.state)
                );
            }
            let task_id: cadre_proto::TaskId = task.id.parse()?;
            let Some((path, _)) = keys.iter().find(|(_, key)| {
                audit::verify_result(key, task_id, &task.result_json, &task.result_signature)
            }) else {
                bail!("task {}: the result does NOT match the node's signature", task.id);
            };
            println!(
                "task {}: result signature valid (signed by {})",
                task.id,
                path.display()
            );
            Ok(0)
        }
        Command::Token {
            command:
                TokenCommand::Issue {
                    tenant,
                    role,
                    ttl,
                    subject,
                },
        } => {
            let ttl_secs = parse_duration(&ttl)?.as_secs();
            let req = v1::IssueTokenRequest {
                subject,
                tenant,
                role,
                ttl_secs,
            };
            let resp = admin.issue_token(req).await.map_err(status_err)?.into_inner();
            println!("{}", resp.token);
            Ok(0)
        }
        Command::Key { command } => {
            match command {
                KeyCommand::Create { name, tenant, role } => {
                    let req = v1::CreateApiKeyRequest { name, tenant, role };
                    let resp = admin.create_api_key(req).await.map_err(status_err)?.into_inner();
                    let key = resp.key.context("no key returned")?;
                    eprintln!(
                        "created API key {} ({}, tenant {}, role {}); it is shown only now:",
                        key.id, key.name, key.tenant, key.role
                    );
                    println!("{}", resp.secret);
                }
                KeyCommand::List => {
                    let keys = admin
                        .list_api_keys(v1::ListApiKeysRequest {})
                        .await
                        .map_err(status_err)?
                        .into_inner()
                        .keys;
                    println!(
                        "{:<14}  {:<24}  {:<16}  {:<10}  STATUS",
                        "ID", "NAME", "TENANT", "ROLE"
                    );
                    for k in keys {
                        let status = if k.revoked_at_ms == 0 { "active" } else { "revoked" };
                        println!(
                            "{:<14}  {:<24}  {:<16}  {:<10}  {status}",
                            k.id, k.name, k.tenant, k.role
                        );
                    }
                }
                KeyCommand::Revoke { id } => {
                    let k = admin
                        .revoke_api_key(v1::RevokeApiKeyRequest { id })
                        .await
                        .map_err(status_err)?
                        .into_inner();
                    println!("revoked {} ({})", k.id, k.name);
                }
            }
            Ok(0)
        }
        Command::Serve(_) | Command::Config { .. } | Command::Audit { .. } | Command::Mcp { .. } => {
            unreachable!("handled before connecting")
        }
    }
}

/// How to check an evidence package by hand; written into every package.
const EVIDENCE_HOWTO: &str = "Each record's hash is SHA-256 over its prev_hash (hex text) followed by the \
compact JSON array [seq, {at_ms, actor, tenant, role, action, target, outcome, detail}] (fields in that \
order). Each signature is Ed25519 (hex) over the hash's hex text, by the key whose 32 bytes the record's \
signer field holds in hex (empty: the node key); that key must be one of trusted_public_keys_pem. A \
head's signature covers the text head:<seq>:<hash>. `cadre audit verify --data-dir DIR` checks the whole \
chain (add --store-url, --trusted-key and --head for a chain shared by several tier-0 replicas).";

/// Where `cadre audit` finds the chain, the keys it trusts and the heads it checks.
struct AuditSource {
    /// The node's data dir: its database (unless `store_url`), public key and head.
    data_dir: PathBuf,
    /// The store holding the chain, when not `<data_dir>/cadre.db`.
    store_url: Option<String>,
    /// Other replicas' public keys (PEM files).
    trusted_keys: Vec<PathBuf>,
    /// Other replicas' signed heads.
    heads: Vec<PathBuf>,
}

impl AuditSource {
    /// The store, read-only for SQLite (a node may be running on it).
    async fn store(&self) -> Result<Arc<dyn cadre_store::Store>> {
        Ok(match self.store_url.as_deref() {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Arc::new(cadre_store::postgres::PgStore::connect(url, 2).await?)
            }
            Some(url) => {
                let path = url.trim_start_matches("sqlite:").trim_start_matches("//");
                Arc::new(SqliteStore::open_read_only(Path::new(path)).await?)
            }
            None => Arc::new(SqliteStore::open_read_only(&self.data_dir.join("cadre.db")).await?),
        })
    }

    /// The trusted public keys as PEM: the data dir's (if there is one) and every
    /// `--trusted-key`; at least one.
    fn key_pems(&self) -> Result<Vec<String>> {
        let own = self.data_dir.join(audit::NODE_PUBLIC_KEY_FILE);
        let mut pems = Vec::new();
        if own.is_file() || self.trusted_keys.is_empty() {
            pems.push(std::fs::read_to_string(&own).with_context(|| {
                format!("cannot read the node public key in {}", self.data_dir.display())
            })?);
        }
        for path in &self.trusted_keys {
            pems.push(
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the public key {}", path.display()))?,
            );
        }
        Ok(pems)
    }

    /// The signed heads: the data dir's (if any) and every `--head`.
    fn heads(&self) -> Result<Vec<audit::SignedHead>> {
        let own = self.data_dir.join(audit::HEAD_FILE);
        let mut heads = Vec::new();
        for path in std::iter::once(&own).chain(&self.heads) {
            match std::fs::read(path) {
                Ok(bytes) => heads.push(
                    serde_json::from_slice(&bytes)
                        .with_context(|| format!("the signed head {} is not valid JSON", path.display()))?,
                ),
                Err(_) if *path == own => {}
                Err(e) => bail!("cannot read the signed head {}: {e}", path.display()),
            }
        }
        Ok(heads)
    }
}

async fn audit_command(command: AuditCommand, source: &AuditSource) -> Result<i32> {
    let store = source.store().await?;
    let pems = source.key_pems()?;
    let keys = audit::TrustedKeys::new(
        pems.iter()
            .map(|p| cadre_core::audit::public_key(p))
            .collect::<Result<Vec<_>, _>>()?,
    );
    let heads = source.heads()?;
    match command {
        AuditCommand::Verify => {
            let records = store.audit_records(None).await?;
            match audit::verify(&records, &heads, &keys) {
                Ok(n) => {
                    let at = if heads.is_empty() {
                        "none".to_string()
                    } else {
                        heads
                            .iter()
                            .map(|h| h.seq.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    let signers: std::collections::BTreeSet<&str> =
                        records.iter().map(|r| r.signer.as_str()).collect();
                    println!(
                        "audit chain OK: {n} records by {} signing key(s), every link and signature valid; \
                         signed head(s) at {at}",
                        signers.len()
                    );
                    Ok(0)
                }
                Err(t) => bail!("audit chain TAMPERED: {t}"),
            }
        }
        AuditCommand::Export { task, out } => {
            let id: cadre_proto::TaskId = task.parse()?;
            let records = store.audit_records(Some(&id.to_string())).await?;
            let package = serde_json::json!({
                "task_id": id.to_string(),
                "generated_at_ms": cadre_proto::clock::now_ms(),
                "node_public_key_pem": pems[0],
                "trusted_public_keys_pem": pems,
                "signed_heads": heads,
                "signed_head": heads.first(),
                "records": records,
                "how_to_verify": EVIDENCE_HOWTO,
            });
            let text = serde_json::to_string_pretty(&package)?;
            match out {
                Some(path) => {
                    std::fs::write(&path, text)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    eprintln!(
                        "wrote {} audit records for task {id} to {}",
                        records.len(),
                        path.display()
                    );
                }
                None => println!("{text}"),
            }
            Ok(0)
        }
    }
}

fn read_params(arg: &str) -> Result<String> {
    let text = match arg.strip_prefix('@') {
        Some("-") => std::io::read_to_string(std::io::stdin()).context("cannot read params from stdin")?,
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("cannot read params file {path}"))?
        }
        None => arg.to_string(),
    };
    serde_json::from_str::<serde_json::Value>(&text)
        .map_err(|e| anyhow!("params are not valid JSON: {e}"))?;
    Ok(text)
}

fn state_name(s: i32) -> &'static str {
    TaskState::from_wire(s)
        .map(TaskState::as_str)
        .unwrap_or("UNKNOWN")
}

fn task_json(t: &v1::Task) -> String {
    let spec = t.spec.clone().unwrap_or_default();
    serde_json::json!({
        "id": t.id,
        "tenant": t.tenant,
        "task_type": spec.task_type,
        "state": state_name(t.state),
        "attempt": t.attempt,
        "supervisor": t.supervisor,
        "worker_kind": t.worker_kind,
        "priority": spec.priority,
        "params": serde_json::from_str::<serde_json::Value>(&spec.params_json).unwrap_or_default(),
        "result": serde_json::from_str::<serde_json::Value>(&t.result_json).ok(),
        "error": (!t.error.is_empty()).then_some(&t.error),
        "created_at_ms": t.created_at_ms,
        "updated_at_ms": t.updated_at_ms,
        "children": t.children,
        "security_level": spec.security_level,
        "result_signature": (!t.result_signature.is_empty()).then_some(&t.result_signature),
        "usage": t.usage.iter().map(|u| serde_json::json!({
            "model": u.model, "tokens_in": u.tokens_in, "tokens_out": u.tokens_out, "cost_usd": u.cost_usd,
        })).collect::<Vec<_>>(),
    })
    .to_string()
}

fn print_task(t: &v1::Task) {
    let spec = t.spec.clone().unwrap_or_default();
    println!("id:         {}", t.id);
    println!("type:       {}", spec.task_type);
    println!("state:      {}", state_name(t.state));
    println!("attempt:    {}", t.attempt);
    println!("runs on:    {}/{}", t.supervisor, t.worker_kind);
    println!("priority:   {}", spec.priority);
    if !t.result_json.is_empty() {
        let pretty = serde_json::from_str::<serde_json::Value>(&t.result_json)
            .and_then(|v| serde_json::to_string_pretty(&v))
            .unwrap_or_else(|_| t.result_json.clone());
        println!("result:     {pretty}");
    }
    if !t.error.is_empty() {
        println!("error:      {}", t.error);
    }
    if !t.children.is_empty() {
        println!("children:   {}", t.children.join(", "));
    }
    if spec.security_level != v1::SecurityLevel::Standard as i32 {
        let level = v1::SecurityLevel::try_from(spec.security_level)
            .map(|l| l.as_str_name())
            .unwrap_or("?");
        println!("security:   {level}");
    }
    if !t.result_signature.is_empty() {
        println!("signature:  {}", t.result_signature);
    }
    for u in &t.usage {
        println!(
            "usage:      {} in {} out {} tokens, {:.6} USD",
            u.model, u.tokens_in, u.tokens_out, u.cost_usd
        );
    }
}

/// The supervisor tree as text, one line per supervisor and per pool.
fn render_status(s: &v1::StatusResponse) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "orchestrator {} (cadre {}), {} unfinished tasks",
        s.node_id, s.version, s.pending_tasks
    );
    for (i, sup) in s.supervisors.iter().enumerate() {
        let last = i + 1 == s.supervisors.len();
        let (branch, indent) = if last {
            ("└──", "    ")
        } else {
            ("├──", "│   ")
        };
        // Distributed mode: one line per replica, with the node it runs on.
        let place = if sup.node_id.is_empty() || (sup.node_id == s.node_id && sup.address.is_empty()) {
            String::new()
        } else {
            format!(" on {} {}", sup.node_id, sup.address)
        };
        let _ = writeln!(
            out,
            "{branch} supervisor {}{place} [{}] restarts {} (worker restarts in window {}/{})",
            sup.name, sup.state, sup.restarts, sup.recent_restarts, sup.max_restarts
        );
        for (j, p) in sup.pools.iter().enumerate() {
            let b = if j + 1 == sup.pools.len() {
                "└──"
            } else {
                "├──"
            };
            let _ = writeln!(
                out,
                "{indent}{b} {:<10} size {:>3} (live {:>3})  busy {:>3}  queued {:>5}  restarts {}",
                p.worker_kind, p.target_size, p.live_workers, p.busy_workers, p.queue_depth, p.restarts
            );
        }
    }
    out
}

/// Parses arguments, runs, and turns errors into one line on stderr and exit code 1.
pub fn main_entry() -> i32 {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            1
        }
    }
}

fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = e.chain().map(|c| c.to_string()).collect();
    parts.dedup();
    let line = parts
        .join(": ")
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ");
    if line.is_empty() {
        "unknown error".into()
    } else {
        line
    }
}
