//! Everything the run creates outside its own memory, and its removal: the temporary directory,
//! the PostgreSQL database, the NATS prefixes (streams and KV bucket), and the `cadre serve`
//! processes, which [`start_node`] starts and [`Resources::stop_nodes`] stops. [`Resources::cleanup`]
//! removes all of it on every exit path.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use async_nats::jetstream;
use cadre::server::Endpoints;
use futures::StreamExt;
use sqlx::{Connection, Executor, PgConnection};
use tokio::process::Child;

use crate::args::Args;

/// Everything the run creates outside its own memory, removed by [`Resources::cleanup`].
#[derive(Default)]
pub(crate) struct Resources {
    /// PostgreSQL URL of a role that may drop the database.
    admin_url: String,
    /// The NATS server whose streams the run creates.
    nats_url: String,
    /// The temporary directory: the nodes' configs, data and logs, and the shared key.
    dir: Option<tempfile::TempDir>,
    /// Keep `dir` instead of removing it (`--keep-dir`).
    keep_dir: bool,
    /// The database created for the orchestrator's store, until dropped.
    database: Option<String>,
    /// Every NATS prefix used, until its streams are deleted.
    prefixes: Vec<String>,
    /// The `cadre serve` processes running, with their names.
    children: Vec<(String, Child)>,
}

impl Resources {
    /// Nothing created yet; cleanup will reach PostgreSQL and NATS at `args`' URLs and keep
    /// the directory if `--keep-dir` asks for it.
    pub(crate) fn new(args: &Args) -> Resources {
        Resources {
            admin_url: args.pg_url.clone(),
            nats_url: args.nats_url.clone(),
            keep_dir: args.keep_dir,
            ..Default::default()
        }
    }

    /// Creates the temporary directory `distbench-<random>`.
    pub(crate) fn create_dir(&mut self) -> anyhow::Result<()> {
        self.dir = Some(tempfile::Builder::new().prefix("distbench-").tempdir()?);
        Ok(())
    }

    /// Stops the nodes started so far (see [`stop_children`]).
    pub(crate) async fn stop_nodes(&mut self) {
        stop_children(&mut self.children).await;
    }

    /// The temporary directory's path.
    pub(crate) fn root(&self) -> anyhow::Result<PathBuf> {
        Ok(self.dir.as_ref().context("no temp dir")?.path().to_path_buf())
    }

    /// A fresh NATS prefix `bench<random>`, noted for cleanup.
    pub(crate) fn new_prefix(&mut self) -> String {
        let prefix = format!("bench{}", &random_hex()[..8]);
        self.prefixes.push(prefix.clone());
        prefix
    }

    /// Creates the database `cadre_bench_<random>` through `args.pg_url`, notes it for
    /// cleanup, and returns its name and the URL of the store in it.
    pub(crate) async fn create_database(&mut self, args: &Args) -> anyhow::Result<(String, String)> {
        let db = format!("cadre_bench_{}", random_hex());
        let mut admin = PgConnection::connect(&args.pg_url)
            .await
            .with_context(|| format!("PostgreSQL is not reachable at {}", args.pg_url))?;
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
            .await
            .with_context(|| format!("cannot create database {db}"))?;
        let _ = admin.close().await;
        self.database = Some(db.clone());
        let store_url = with_database(&args.pg_url, &db)?;
        Ok((db, store_url))
    }

    /// Stops the nodes (SIGTERM, then SIGKILL after 10 s), drops the database and deletes the
    /// streams and buckets of every prefix used.
    pub(crate) async fn cleanup(&mut self) {
        stop_children(&mut self.children).await;
        if let Some(db) = self.database.take() {
            drop_database(&self.admin_url, &db).await;
        }
        if !self.prefixes.is_empty() {
            match async_nats::connect(&self.nats_url).await {
                Ok(client) => {
                    delete_streams(jetstream::new(client), &self.prefixes).await;
                    self.prefixes.clear();
                }
                Err(e) => eprintln!(
                    "warning: cannot reach NATS to delete streams of {:?}: {e}",
                    self.prefixes
                ),
            }
        }
        // Dropping the directory removes it, unless it is to be kept.
        if let Some(dir) = self.dir.take()
            && self.keep_dir
        {
            eprintln!("kept {}", dir.keep().display());
        }
    }
}

/// Drops database `db` (forcing its sessions out), with a warning when that fails.
async fn drop_database(admin_url: &str, db: &str) {
    match PgConnection::connect(admin_url).await {
        Ok(mut conn) => {
            let sql = format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)");
            if let Err(e) = conn.execute(sqlx::AssertSqlSafe(sql)).await {
                eprintln!("warning: cannot drop database {db}: {e}");
            }
            let _ = conn.close().await;
        }
        Err(e) => eprintln!("warning: cannot reach PostgreSQL to drop {db}: {e}"),
    }
}

/// Deletes the streams and the peers bucket of every prefix, then warns about any stream of
/// theirs still listed.
async fn delete_streams(js: jetstream::Context, prefixes: &[String]) {
    for p in prefixes {
        for s in ["WORK", "EVENTS", "DEAD", "RAW"] {
            let _ = js.delete_stream(format!("{p}_{s}")).await;
        }
        let _ = js.delete_key_value(format!("{p}-peers")).await;
    }
    // Check that nothing of ours is left.
    let mut names = js.stream_names();
    while let Some(Ok(name)) = names.next().await {
        if prefixes
            .iter()
            .any(|p| name.starts_with(&format!("{p}_")) || name == format!("KV_{p}-peers"))
        {
            eprintln!("warning: stream {name} is still there");
        }
    }
}

/// Sends SIGTERM to every child, then waits up to 10 s for each and kills those still running.
async fn stop_children(children: &mut Vec<(String, Child)>) {
    for (_, child) in children.iter() {
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
    }
    for (name, mut child) in children.drain(..) {
        match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                eprintln!("warning: {name} did not stop within 10 s of SIGTERM; killing it");
                let _ = child.kill().await;
            }
        }
    }
}

/// 16 random hex digits, for names no other run uses.
fn random_hex() -> String {
    format!("{:016x}", fastrand::u64(..))
}

/// The `cadre` binary next to this one, or `--cadre-bin`.
pub(crate) fn cadre_bin(args: &Args) -> anyhow::Result<PathBuf> {
    let path = match &args.cadre_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("this binary has no directory")?
            .join("cadre"),
    };
    if !path.is_file() {
        bail!(
            "no cadre binary at {}; build it with `cargo build --release -p cadre --bin cadre` \
             or pass --cadre-bin",
            path.display()
        );
    }
    Ok(path)
}

/// `url` with its database replaced by `db`.
fn with_database(url: &str, db: &str) -> anyhow::Result<String> {
    let (scheme, rest) = url.split_once("://").context("a postgres:// URL")?;
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, format!("?{q}")),
        None => (rest, String::new()),
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    Ok(format!("{scheme}://{authority}/{db}{query}"))
}

/// Writes a node's config, starts `cadre serve` with `role_args`, and waits for its
/// `endpoints.json`. Returns the node's directory and endpoints.
pub(crate) async fn start_node(
    res: &mut Resources,
    bin: &Path,
    name: &str,
    toml: &str,
    role_args: &[&str],
) -> anyhow::Result<(PathBuf, Endpoints)> {
    let dir = res.root()?.join(name);
    let data = dir.join("data");
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("cadre.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nid = {name:?}\ndata_dir = {:?}\n[log]\nlevel = \"warn\"\n{toml}",
            data.display().to_string()
        ),
    )?;
    let child = cadre_benches::serve::spawn(bin, &config, role_args, &dir)?;
    res.children.push((name.to_string(), child));
    let child = &mut res.children.last_mut().context("child")?.1;
    let endpoints = cadre_benches::serve::wait_for_endpoints(child, name, &dir, &data).await?;
    Ok((dir, endpoints))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_database_swaps_only_the_database() {
        let url = "postgres://postgres@127.0.0.1:5432/test";
        assert_eq!(
            with_database(url, "cadre_bench_1").unwrap(),
            "postgres://postgres@127.0.0.1:5432/cadre_bench_1"
        );
        let url = "postgres://u:p@h/test?sslmode=disable";
        assert_eq!(
            with_database(url, "x").unwrap(),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x").unwrap(), "postgres://h/x");
        assert!(with_database("no scheme", "x").is_err());
    }
}
