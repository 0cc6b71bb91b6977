//! The command line's grammar: [`Cli`] with its global flags, every [`Command`] and the argument
//! structs of each, as clap parses them (flags, env vars, defaults and help texts). Nothing here
//! runs a command; `cli.rs` hands each parsed command to its group's module.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// cadre: a hierarchical, actor-based task orchestrator for AI-agent work.
#[derive(Parser, Debug)]
#[command(name = "cadre", version, about)]
pub struct Cli {
    /// gRPC endpoint of the node (client commands).
    #[arg(long, global = true, env = "CADRE_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Data directory: where `serve` keeps its store, and where clients look for endpoints.json
    /// and the commander credential.
    #[arg(long, global = true, env = "CADRE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// TLS for https endpoints.
    #[command(flatten)]
    pub tls: ClientTls,
    /// Credential for client commands: a JWT or an API key (default: <data-dir>/credentials).
    #[arg(long, global = true, env = "CADRE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a node (embedded default: SQLite store, in-process bus).
    Serve(ServeArgs),
    /// Submit a task.
    Submit(SubmitArgs),
    /// Show one task.
    Get {
        /// Task id.
        id: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a queued or running task.
    Cancel {
        /// Task id.
        id: String,
        /// Recorded on the CANCELLED event.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Follow a task's events (or all events matching a type prefix) live: a progress bar on a
    /// terminal, one line per event otherwise.
    Watch(WatchArgs),
    /// List tasks, newest first.
    Tasks(TasksArgs),
    /// List the task types the node accepts: where each runs and its params (with `--json`,
    /// the full params and result JSON Schemas).
    Types {
        /// Only types starting with this prefix, e.g. `intelligence.text`.
        prefix: Option<String>,
        /// Print JSON (`{"types": [...]}`, as `GET /v1/types`) with the schemas.
        #[arg(long)]
        json: bool,
    },
    /// Show the supervisor tree: pools, busy workers, queues, restarts.
    Status(StatusArgs),
    /// Resize a worker pool live.
    Scale {
        /// Supervisor name, e.g. intelligence.
        supervisor: String,
        /// Worker kind, e.g. writer.
        kind: String,
        /// New pool size.
        replicas: u32,
    },
    /// Ask the node to re-read its config file.
    Reload,
    /// Pause a supervisor, a pool, a task-type prefix or a tenant (supervisor role): its queued
    /// tasks wait (new ones are still accepted), running ones finish. Survives restarts.
    Pause {
        /// What to pause.
        #[command(subcommand)]
        target: PauseTarget,
        /// Why (kept with the pause and in the audit record).
        #[arg(long, global = true, default_value = "")]
        reason: String,
    },
    /// End a pause: the held tasks run in the usual order.
    Resume {
        /// What to resume.
        #[command(subcommand)]
        target: PauseTarget,
    },
    /// List what is paused.
    Pauses {
        /// Print JSON (`{"pauses": [...]}`, as `GET /v1/pauses`).
        #[arg(long)]
        json: bool,
    },
    /// Tokens and cost per tenant and model for a day (your tenant unless you are a commander).
    Usage {
        /// Only this tenant (commanders).
        #[arg(long, default_value = "")]
        tenant: String,
        /// UTC date YYYY-MM-DD (default today).
        #[arg(long, default_value = "")]
        day: String,
    },
    /// Serve MCP over stdio for an agent that launches cadre as a local MCP server, relayed to
    /// the running node's /mcp endpoint with this CLI's credential.
    Mcp {
        /// The node's HTTP address (default: `http` in <data-dir>/endpoints.json, else
        /// http://127.0.0.1:8080).
        #[arg(long, env = "CADRE_HTTP")]
        http: Option<String>,
    },
    /// Check a verified task's result signature against the node's public key.
    VerifyResult {
        /// Task id.
        id: String,
        /// The node's public key (default: <data-dir>/node-ed25519.pub.pem); repeat it for
        /// every tier-0 replica, since whichever replica committed the result signed it.
        #[arg(long)]
        public_key: Vec<PathBuf>,
    },
    /// Register, list, show and run workflows.
    Workflow {
        /// What to do.
        #[command(subcommand)]
        command: WorkflowCommand,
    },
    /// Send a signal to a waiting workflow instance (an approval: `--approve` or `--reject`).
    Signal(SignalArgs),
    /// Model call records of llm tasks (your tenant's unless you are a commander).
    Calls {
        /// What to do.
        #[command(subcommand)]
        command: CallsCommand,
    },
    /// Create, list, show, pause, resume, trigger and delete schedules (cron or interval).
    Schedule {
        /// What to do.
        #[command(subcommand)]
        command: super::schedule_args::ScheduleCommand,
    },
    /// Issue JWTs (commander only).
    Token {
        /// What to do.
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Manage API keys (commander only).
    Key {
        /// What to do.
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Check or export the audit chain of a node's data dir (reads the database directly).
    Audit {
        /// Where the chain is, when not in `<data-dir>/cadre.db`: the PostgreSQL database that
        /// tier-0 replicas share (`postgres://...`), or another `sqlite:PATH`.
        #[arg(long, global = true)]
        store_url: Option<String>,
        /// Also trust this node public key (PEM), besides `<data-dir>/node-ed25519.pub.pem`;
        /// repeat it for every replica that shares the chain.
        #[arg(long = "trusted-key", global = true)]
        trusted_keys: Vec<PathBuf>,
        /// Also check this signed head (another replica's `audit-head.json`); repeatable.
        #[arg(long = "head", global = true)]
        heads: Vec<PathBuf>,
        /// What to do.
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Configuration tools.
    Config {
        /// What to do with the config.
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

/// `cadre calls` subcommands.
#[derive(Debug, Subcommand)]
pub enum CallsCommand {
    /// List model call records, newest first.
    List {
        /// Only this task's calls.
        #[arg(long)]
        task: Option<String>,
        /// Only calls that asked for or were answered by this model.
        #[arg(long)]
        model: Option<String>,
        /// Only this tenant (commanders; others always see their own).
        #[arg(long)]
        tenant: Option<String>,
        /// At most this many (1-1000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        /// Print JSON (`{"calls": [...], "next_cursor"}`, as `GET /v1/llm-calls`).
        #[arg(long)]
        json: bool,
    },
}

/// `cadre config ...`
#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Validate a config file (with defaults and CADRE_* env applied) and print the effective config.
    Check {
        /// The file; default: ./cadre.toml if present, else the built-in defaults.
        file: Option<PathBuf>,
    },
}

/// How a client connects to an `https://` endpoint.
#[derive(Args, Debug, Clone, Default)]
pub struct ClientTls {
    /// CA certificate (PEM) that signed the node's certificate.
    #[arg(long, global = true, env = "CADRE_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Client certificate (PEM), for nodes that require mutual TLS.
    #[arg(long, global = true, env = "CADRE_CLIENT_CERT", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// Client private key (PEM).
    #[arg(long, global = true, env = "CADRE_CLIENT_KEY", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// Name to check in the node's certificate (default: the endpoint's host).
    #[arg(long, global = true, env = "CADRE_TLS_DOMAIN")]
    pub tls_domain: Option<String>,
}
/// `cadre audit ...`
#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Verify every link and signature of the chain and its signed head; exit 1 on tampering.
    Verify,
    /// Write an evidence package for one task: its audit records, the node's public key and
    /// the signed head, with instructions to verify them.
    Export {
        /// The task id.
        #[arg(long)]
        task: String,
        /// Output file (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// `cadre token ...`
#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Issue a JWT and print it.
    Issue {
        /// Tenant the token works on.
        #[arg(long)]
        tenant: String,
        /// observer, operator, supervisor or commander.
        #[arg(long)]
        role: String,
        /// Lifetime: 90s, 30m, 24h, 7d (default 24h).
        #[arg(long, default_value = "24h")]
        ttl: String,
        /// Who it is for (default: issued-by-<you>).
        #[arg(long, default_value = "")]
        subject: String,
    },
    /// Revoke a JWT by its id, or every token of a subject issued until now.
    Revoke {
        /// The token's id (`jti`; `cadre token issue` prints it on stderr).
        #[arg(long, conflicts_with = "subject", required_unless_present = "subject")]
        id: Option<String>,
        /// A subject: all its tokens issued until now stop working.
        #[arg(long)]
        subject: Option<String>,
    },
    /// Make a new signing key: new tokens carry its id; the previous key keeps verifying for
    /// `auth.key_overlap_secs`.
    Rotate,
}

/// `cadre key ...`
#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Create an API key; the key is printed once and never stored.
    Create {
        /// What the key is for.
        #[arg(long)]
        name: String,
        /// Tenant the key works on.
        #[arg(long)]
        tenant: String,
        /// observer, operator, supervisor or commander.
        #[arg(long)]
        role: String,
        /// Lifetime: 90s, 30m, 24h, 30d; 0 = until revoked (the default; refused when the node
        /// sets auth.max_api_key_ttl_secs).
        #[arg(long, default_value = "0")]
        ttl: String,
    },
    /// List API keys (without secrets), with when each expires and whether it still works.
    List,
    /// Revoke an API key by id; it stops working at once.
    Revoke {
        /// The key id (`cadre key list`).
        id: String,
    },
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Config file (TOML).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// gRPC listen address (port 0 picks a free port).
    #[arg(long)]
    pub grpc_addr: Option<String>,
    /// HTTP listen address (port 0 picks a free port).
    #[arg(long)]
    pub http_addr: Option<String>,
    /// Log JSON lines.
    #[arg(long)]
    pub log_json: bool,
    /// What this process runs: all (one process), orchestrator (tier 0 only) or supervisor
    /// (tiers 1 and 2 for --supervisor kinds); the last two need bus.nats_url.
    #[arg(long, value_parser = parse_role)]
    pub role: Option<cadre_core::config::NodeRole>,
    /// A supervisor this process runs (repeat for several); default: every configured one.
    #[arg(long = "supervisor")]
    pub supervisors: Vec<String>,
}

/// `serve --role`: the three roles by name.
fn parse_role(s: &str) -> Result<cadre_core::config::NodeRole, String> {
    use cadre_core::config::NodeRole;
    match s {
        "all" => Ok(NodeRole::All),
        "orchestrator" => Ok(NodeRole::Orchestrator),
        "supervisor" => Ok(NodeRole::Supervisor),
        _ => Err(format!("{s:?} is not all, orchestrator or supervisor")),
    }
}

/// `cadre submit` options.
#[derive(Args, Debug)]
pub struct SubmitArgs {
    /// Task type, e.g. intelligence.text.summarize.
    pub task_type: String,
    /// Params as JSON, or @FILE to read them from a file, or @- for stdin.
    #[arg(default_value = "{}")]
    pub params: String,
    /// Priority 0-9 (9 runs first).
    #[arg(long, short, default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i32,
    /// Per-attempt timeout in milliseconds (0 = node default).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub timeout_ms: i64,
    /// Total attempts (0 = node default).
    #[arg(long, default_value_t = 0)]
    pub max_attempts: u32,
    /// Delay before the first retry in milliseconds (0 = node default).
    #[arg(long, default_value_t = 0)]
    pub backoff_ms: u64,
    /// Also retry an attempt that runs past --timeout-ms (by default TIMED_OUT is final).
    #[arg(long)]
    pub retry_timeouts: bool,
    /// Submitting again with the same key returns the first task.
    #[arg(long, default_value = "")]
    pub idempotency_key: String,
    /// standard, verified (the node signs the result) or fortress (the exec sandbox, signed).
    #[arg(long, default_value = "standard")]
    pub security_level: String,
    /// Share the running limit of this key (per tenant; see the node's config).
    #[arg(long, default_value = "")]
    pub concurrency_key: String,
    /// Debounce on this key (with --debounce-ms): a later submit with it within the window
    /// replaces this task while it waits.
    #[arg(long, default_value = "")]
    pub debounce_key: String,
    /// The debounce window in milliseconds (with --debounce-key; at most one day).
    #[arg(long, default_value_t = 0)]
    pub debounce_ms: u64,
    /// Wait for the task to finish; exit 0 only if it SUCCEEDED.
    #[arg(long)]
    pub wait: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `cadre watch` options.
#[derive(Args, Debug)]
pub struct WatchArgs {
    /// Task id; without it, watch every task (narrowed by --type).
    pub id: Option<String>,
    /// Only task types starting with this.
    #[arg(long = "type", default_value = "")]
    pub type_prefix: String,
    /// Resume after this cursor.
    #[arg(long, default_value_t = 0)]
    pub after: u64,
    /// Only sub-tasks of this task.
    #[arg(long, default_value = "")]
    pub parent: String,
    /// One line per event even on a terminal (the output when stdout is not a terminal).
    #[arg(long)]
    pub plain: bool,
    /// Watching many tasks on a terminal: at most this many unfinished tasks get a bar; the
    /// rest are counted as "+k more".
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_active: u16,
}

/// `cadre status` options.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Keep showing the tree, refreshed every --interval-ms, until Ctrl-C: redrawn in place on
    /// a terminal, a fresh snapshot under a `--- status at` line otherwise.
    #[arg(long)]
    pub watch: bool,
    /// Refresh interval for --watch, in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(100..))]
    pub interval_ms: u64,
    /// --watch: a fresh snapshot per interval even on a terminal.
    #[arg(long)]
    pub plain: bool,
}

/// `cadre tasks` options. The list's flags do not combine with `cancel-all` or `replay` (a
/// `--state` before the subcommand would be the list's, silently widening the bulk filter).
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct TasksArgs {
    /// Only these states (repeatable): queued, running, retrying, succeeded, failed, cancelled, timed_out.
    #[arg(long)]
    pub state: Vec<String>,
    /// Only task types starting with this.
    #[arg(long = "type", default_value = "")]
    pub type_prefix: String,
    /// Page size.
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    /// Continue from a previous page.
    #[arg(long, default_value = "")]
    pub page_token: String,
    /// Instead of listing: cancel or replay every task a filter matches.
    #[command(subcommand)]
    pub bulk: Option<BulkCommand>,
}

/// What `cadre pause` and `cadre resume` act on.
#[derive(Subcommand, Debug, Clone)]
pub enum PauseTarget {
    /// Every pool of a supervisor, e.g. `intelligence`.
    Supervisor {
        /// Supervisor name.
        name: String,
    },
    /// One pool, e.g. `intelligence writer`.
    Pool {
        /// Supervisor name.
        supervisor: String,
        /// Worker kind.
        kind: String,
    },
    /// Every task whose type starts with a prefix, e.g. `intelligence.text.`.
    Type {
        /// The prefix.
        prefix: String,
    },
    /// Every task of a tenant (default: your own; only commanders may name another).
    Tenant {
        /// The tenant.
        tenant: Option<String>,
    },
}

/// `cadre tasks cancel-all|replay`: bulk operations (operator role; at least one filter);
/// `cadre tasks export`: what retention would delete.
#[derive(Subcommand, Debug)]
pub enum BulkCommand {
    /// Cancel every unfinished task the filter matches (a dry run first is wise).
    CancelAll {
        /// Which tasks.
        #[command(flatten)]
        filter: BulkFilter,
        /// Recorded as each task's error.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Submit a copy (same spec, `replay_of` set) of every finished task the filter matches.
    Replay {
        /// Which tasks.
        #[command(flatten)]
        filter: BulkFilter,
    },
    /// Print what the retention policy would delete, as JSON lines (reads the store directly).
    Export(ExportArgs),
}

/// `cadre tasks export` options.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The node's config file, for `[retention]` and where the store is (default: ./cadre.toml
    /// if present, with CADRE_* env applied).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The store, when not the config's `store.url` or `<data-dir>/cadre.db`: `postgres://...`
    /// or `sqlite:PATH`.
    #[arg(long)]
    pub store_url: Option<String>,
    /// Also the tasks that will expire within this long (e.g. 90s, 30m, 24h, 7d).
    #[arg(long)]
    pub within: Option<String>,
    /// Only these terminal states (repeatable): succeeded, failed, cancelled, timed_out.
    #[arg(long)]
    pub state: Vec<String>,
    /// Write to this file instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The filter and bounds of a bulk command.
#[derive(Args, Debug)]
pub struct BulkFilter {
    /// Only these states (repeatable); default: every state the command applies to.
    #[arg(long)]
    pub state: Vec<String>,
    /// Only task types starting with this.
    #[arg(long, default_value = "")]
    pub type_prefix: String,
    /// Only this tenant's tasks (commanders; others always act on their own).
    #[arg(long, default_value = "")]
    pub tenant: String,
    /// Only tasks created within this long before now (e.g. 2h).
    #[arg(long)]
    pub newer_than: Option<String>,
    /// Only tasks created more than this long before now (e.g. 7d).
    #[arg(long)]
    pub older_than: Option<String>,
    /// Only tasks created at or after this time, Unix milliseconds.
    #[arg(long, default_value_t = 0)]
    pub created_after_ms: i64,
    /// Only tasks created before this time, Unix milliseconds.
    #[arg(long, default_value_t = 0)]
    pub created_before_ms: i64,
    /// Only tasks whose error contains this text (case-insensitive).
    #[arg(long, default_value = "")]
    pub error_contains: String,
    /// Only count and list what would be acted on.
    #[arg(long)]
    pub dry_run: bool,
    /// Act on at most this many tasks (1-10000; default 1000).
    #[arg(long, default_value_t = 0)]
    pub limit: u32,
    /// Print the answer as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `cadre workflow ...`.
#[derive(Subcommand, Debug)]
pub enum WorkflowCommand {
    /// Register a definition (JSON): from FILE, or `-` for stdin. The same definition again is
    /// accepted unchanged; a changed one needs a new version.
    Register {
        /// The definition file, or `-`.
        file: String,
    },
    /// The newest version of every workflow, or every version of NAME.
    List {
        /// Only this workflow (every version).
        name: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// One workflow's definition (the newest version unless `--version`).
    Show {
        /// The workflow's name.
        name: String,
        /// This version.
        #[arg(long, default_value_t = 0)]
        version: u32,
        /// Print the stored record as JSON instead of the definition alone.
        #[arg(long)]
        json: bool,
    },
    /// Start an instance (a task of type workflow.NAME.run) with INPUT.
    Run {
        /// The workflow's name.
        name: String,
        /// The input as JSON, or @FILE, or @- for stdin.
        #[arg(default_value = "{}")]
        input: String,
        /// Submitting again with the same key returns the first instance.
        #[arg(long, default_value = "")]
        idempotency_key: String,
        /// Wait for the instance to finish; exit 0 only if it SUCCEEDED.
        #[arg(long)]
        wait: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// `cadre signal`.
#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("decision").args(["approve", "reject"])))]
pub struct SignalArgs {
    /// The instance's task id.
    pub task_id: String,
    /// The signal name (a wait's signal, an approval step's id, or an agent tool call's
    /// approval id; `cadre get` shows what an instance waits for).
    pub name: String,
    /// The payload as JSON, or @FILE, or @- for stdin (default null; not with --approve or
    /// --reject).
    pub payload: Option<String>,
    /// An approval: approve.
    #[arg(long, conflicts_with_all = ["reject", "payload"])]
    pub approve: bool,
    /// An approval: reject.
    #[arg(long, conflicts_with = "payload")]
    pub reject: bool,
    /// The approval's comment.
    #[arg(long, requires = "decision")]
    pub comment: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}
