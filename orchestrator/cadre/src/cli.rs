//! The `cadre` command line: `serve` runs a node; every other command is a gRPC client of one,
//! except `audit` and `config`, which read files and databases directly.
//!
//! Client commands find the node from `--endpoint` / `CADRE_ENDPOINT`, else from
//! `<data-dir>/endpoints.json` written by `cadre serve`, else `http://127.0.0.1:50051`.
//! Errors print one line (`error: <status>: <message>`) and exit non-zero.
//!
//! Tracing: client commands send the `TRACEPARENT` environment variable (a W3C trace context)
//! as gRPC `traceparent` metadata when it is set, so the node's spans for the call join the
//! caller's trace (see docs/TRACING.md).
//!
//! One module per command group; this file only parses and dispatches:
//! - `args`: the flags, subcommands and their arguments ([`Cli`], [`Command`]).
//! - `serve`: `serve`. `config`: `config check`. `mcp`: `mcp`.
//! - `tasks`: `submit`, `get`, `cancel`, `tasks`, `types`, `watch`.
//! - `bulk`: `tasks cancel-all`, `tasks replay`. `export`: `tasks export` (reads the store).
//! - `admin`: `status`, `scale`, `reload`, `usage`.
//! - `pauses`: `pause`, `resume`, `pauses`.
//! - `calls`: `calls list` (model call records).
//! - `workflows`: `workflow register|list|show|run`, `signal`.
//! - `schedules`: `schedule create|list|show|pause|resume|trigger|delete` (arguments in
//!   `schedule_args`).
//! - `credentials`: `token issue`, `key create|list|revoke`.
//! - `audit`: `audit verify|export`, `verify-result`.
//! - shared by the client commands: `connect` (endpoint, credential, TLS, channel), `render`
//!   (how tasks, events, the status tree and errors are printed), `watch` (the live display).

use anyhow::Result;
use clap::Parser;

mod admin;
mod args;
mod audit;
mod bulk;
mod calls;
mod config;
mod connect;
mod credentials;
mod export;
mod mcp;
mod pauses;
mod render;
mod schedule_args;
mod schedules;
mod serve;
mod tasks;
mod watch;
mod workflows;

pub use args::{
    AuditCommand, Cli, ClientTls, Command, ConfigCommand, KeyCommand, ServeArgs, SignalArgs, StatusArgs,
    SubmitArgs, TasksArgs, TokenCommand, WatchArgs, WorkflowCommand,
};
pub use connect::client_tls;
pub use credentials::parse_duration;

use audit::AuditSource;
use connect::Target;

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
            eprintln!("error: {}", render::one_line(&e));
            1
        }
    }
}

/// Runs the parsed command; returns the process exit code. Client commands connect to the node
/// only when they run (`node.tasks()`, `node.admin()`).
pub async fn run(cli: Cli) -> Result<i32> {
    let Cli {
        endpoint,
        data_dir,
        tls,
        token,
        command,
    } = cli;
    let node = Target {
        endpoint,
        data_dir,
        token,
        tls,
    };
    match command {
        Command::Serve(args) => serve::serve(args, node.data_dir).await,
        Command::Config { command } => config::config(command),
        Command::Mcp { http } => mcp::mcp(http, node).await,
        Command::Audit {
            command,
            store_url,
            trusted_keys,
            heads,
        } => {
            let source = AuditSource {
                data_dir: node.data_dir_or_default(),
                store_url,
                trusted_keys,
                heads,
            };
            audit::audit(command, &source).await
        }
        Command::VerifyResult { id, public_key } => {
            let data_dir = node.data_dir_or_default();
            audit::verify_result(node.client().await?, id, public_key, &data_dir).await
        }
        Command::Submit(a) => tasks::submit(node.client().await?, a).await,
        Command::Get { id, json } => tasks::get(node.client().await?, id, json).await,
        Command::Cancel { id, reason } => tasks::cancel(node.client().await?, id, reason).await,
        Command::Watch(w) => tasks::watch(node.client().await?, w).await,
        Command::Tasks(TasksArgs {
            bulk: Some(args::BulkCommand::Export(a)),
            ..
        }) => export::export(a, node.data_dir).await,
        Command::Tasks(TasksArgs { bulk: Some(b), .. }) => bulk::run(node.client().await?, b).await,
        Command::Tasks(t) => tasks::list(node.client().await?, t).await,
        Command::Types { prefix, json } => tasks::types(node.client().await?, prefix, json).await,
        Command::Status(a) => admin::status(node.client().await?, a).await,
        Command::Scale {
            supervisor,
            kind,
            replicas,
        } => admin::scale(node.client().await?, supervisor, kind, replicas).await,
        Command::Reload => admin::reload(node.client().await?).await,
        Command::Pause { target, reason } => pauses::pause(node.client().await?, target, reason).await,
        Command::Resume { target } => pauses::resume(node.client().await?, target).await,
        Command::Pauses { json } => pauses::list(node.client().await?, json).await,
        Command::Usage { tenant, day } => admin::usage(node.client().await?, tenant, day).await,
        Command::Workflow { command } => workflows::workflow(node, command).await,
        Command::Signal(a) => workflows::signal(node, a).await,
        Command::Calls { command } => calls::calls(node.client().await?, command).await,
        Command::Schedule { command } => schedules::schedule(node, command).await,
        Command::Token { command } => credentials::token(node.client().await?, command).await,
        Command::Key { command } => credentials::key(node.client().await?, command).await,
    }
}
