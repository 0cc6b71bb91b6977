//! `distbench`'s command line: [`Args`], its flags, defaults and help texts as clap parses them.

use std::path::PathBuf;

use clap::Parser;

/// Command line of `distbench`.
#[derive(Parser, Debug)]
#[command(
    name = "distbench",
    about = "Distributed cadre (JetStream + PostgreSQL) end to end, against a raw JetStream publish/pull/ack loop"
)]
pub(crate) struct Args {
    /// The `cadre` binary (default: `cadre` next to this binary, i.e. target/release/cadre).
    #[arg(long, value_name = "PATH")]
    pub(crate) cadre_bin: Option<PathBuf>,
    /// NATS server with JetStream.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub(crate) nats_url: String,
    /// PostgreSQL admin URL: a role that may create databases and an existing database to
    /// connect to. The bench creates `cadre_bench_<random>` next to it and drops it at the end.
    #[arg(
        long,
        env = "CADRE_BENCH_PG_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    pub(crate) pg_url: String,
    /// Concurrent request loops (both phases).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub(crate) concurrency: u64,
    /// gRPC channels (HTTP/2 connections) to the orchestrator, used round-robin.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub(crate) connections: u64,
    /// Unmeasured seconds at the start of each phase.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub(crate) warmup_secs: u64,
    /// Measured seconds of each phase.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) duration_secs: u64,
    /// Approximate size of each task's params JSON `{"p":"xx..."}`.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(8..=65_536))]
    pub(crate) payload_bytes: u64,
    /// Workers in the supervisor node's `system/monitor` pool (default: the concurrency).
    #[arg(long)]
    pub(crate) pool: Option<usize>,
    /// `bus.max_inflight` of the supervisor node (task messages it holds at once).
    #[arg(long, default_value_t = 512)]
    pub(crate) max_inflight: usize,
    /// `store.batch_max` of the orchestrator (writes per PostgreSQL transaction).
    #[arg(long, default_value_t = 512)]
    pub(crate) batch_max: usize,
    /// Time limit of one request.
    #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub(crate) request_timeout_ms: u64,
    /// Skip phase 1 (cadre).
    #[arg(long)]
    pub(crate) skip_cadre: bool,
    /// Skip phase 2 (raw JetStream).
    #[arg(long)]
    pub(crate) skip_raw: bool,
    /// Diagnostic: run `VACUUM (ANALYZE) tasks` on the store every this many seconds during
    /// phase 1, as if autovacuum kept up with the table (0 = never, leave it to autovacuum).
    #[arg(long, default_value_t = 0)]
    pub(crate) vacuum_every_secs: u64,
    /// Keep the temporary directory (configs and the nodes' logs) and print its path.
    #[arg(long)]
    pub(crate) keep_dir: bool,
}
