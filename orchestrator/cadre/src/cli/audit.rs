//! The audit commands: `audit verify` and `audit export` read a node's audit chain straight from
//! its database (no node needed); `verify-result` asks the node for a verified task and checks
//! its result signature against the node's public key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use cadre_store::chain as audit;
use cadre_store::sqlite::SqliteStore;

use cadre_client::Client;

use super::args::AuditCommand;
use super::render::state_name;

/// How to check an evidence package by hand; written into every package.
const EVIDENCE_HOWTO: &str = "Each record's hash is SHA-256 over its prev_hash (hex text) followed by the \
compact JSON array [seq, {at_ms, actor, tenant, role, action, target, outcome, detail}] (fields in that \
order). Each signature is Ed25519 (hex) over the hash's hex text, by the key whose 32 bytes the record's \
signer field holds in hex (empty: the node key); that key must be one of trusted_public_keys_pem. A \
head's signature covers the text head:<seq>:<hash>. When the chain's start was pruned, the checkpoint \
names the last record removed: its signature (by a trusted key, named by signer) covers the text \
checkpoint:<seq>:<hash>:<at_ms>, and the first record left has seq + 1 and prev_hash = its hash. `cadre audit verify --data-dir DIR` checks the whole \
chain (add --store-url, --trusted-key and --head for a chain shared by several tier-0 replicas).";

/// Where `cadre audit` finds the chain, the keys it trusts and the heads it checks.
pub(super) struct AuditSource {
    /// The node's data dir: its database (unless `store_url`), public key and head.
    pub(super) data_dir: PathBuf,
    /// The store holding the chain, when not `<data_dir>/cadre.db`.
    pub(super) store_url: Option<String>,
    /// Other replicas' public keys (PEM files).
    pub(super) trusted_keys: Vec<PathBuf>,
    /// Other replicas' signed heads.
    pub(super) heads: Vec<PathBuf>,
}

impl AuditSource {
    /// The store, read-only for SQLite (a node may be running on it); `tasks export` reads
    /// through it too.
    pub(super) async fn store(&self) -> Result<Arc<dyn cadre_store::Store>> {
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

/// `cadre audit verify|export`: loads the chain's store, the trusted keys and the signed heads,
/// then checks the whole chain or writes one task's evidence package.
pub(super) async fn audit(command: AuditCommand, source: &AuditSource) -> Result<i32> {
    let store = source.store().await?;
    let pems = source.key_pems()?;
    let keys = audit::TrustedKeys::new(
        pems.iter()
            .map(|p| cadre_core::audit::public_key(p))
            .collect::<Result<Vec<_>, _>>()?,
    );
    let heads = source.heads()?;
    match command {
        AuditCommand::Verify => verify(store.as_ref(), &heads, &keys).await,
        AuditCommand::Export { task, out } => export(store.as_ref(), &task, out, &pems, &heads).await,
    }
}

/// `cadre audit verify`: every link and signature of the chain and the signed heads; an error
/// (exit 1) on tampering.
async fn verify(
    store: &dyn cadre_store::Store,
    heads: &[audit::SignedHead],
    keys: &audit::TrustedKeys,
) -> Result<i32> {
    // The records first, then the checkpoint (see `audit::after_checkpoint`).
    let records = store.audit_records(None).await?;
    let checkpoint = checkpoint(store).await?;
    let records = audit::after_checkpoint(checkpoint.as_ref(), records);
    match audit::verify_from(checkpoint.as_ref(), &records, heads, keys) {
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
            let start = match &checkpoint {
                None => "from record 1".to_string(),
                Some(c) => format!(
                    "from a checkpoint at record {} ({} records pruned, sealed up to {})",
                    c.seq,
                    c.seq,
                    super::render::utc_time(c.at_ms)
                ),
            };
            println!(
                "audit chain OK {start}: {n} records by {} signing key(s), every link and signature valid; \
                 signed head(s) at {at}",
                signers.len()
            );
            Ok(0)
        }
        Err(t) => bail!("audit chain TAMPERED: {t}"),
    }
}

/// The checkpoint standing for the chain's pruned start, if any.
async fn checkpoint(store: &dyn cadre_store::Store) -> Result<Option<audit::Checkpoint>> {
    store.audit_checkpoint().await.context(
        "cannot read the audit chain's checkpoint (a database of an older cadre: start a node on it once)",
    )
}

/// What to tell about task `id`'s records when the chain's start was pruned behind
/// `checkpoint`: None if the task is younger than every record pruned.
fn pruned_note(
    id: cadre_proto::TaskId,
    checkpoint: Option<&audit::Checkpoint>,
    left: usize,
) -> Option<String> {
    let c = checkpoint?;
    let (secs, nanos) = id.0.get_timestamp()?.to_unix();
    let created_ms = (secs as i64).saturating_mul(1000) + i64::from(nanos / 1_000_000);
    (created_ms <= c.at_ms).then(|| {
        format!(
            "task {id} is older than the audit chain's pruned start: its records sealed up to {} \
             (among records 1 to {}) were pruned behind a signed checkpoint; {left} of its records are left",
            super::render::utc_time(c.at_ms),
            c.seq
        )
    })
}

/// `cadre audit export`: one task's audit records with the trusted keys, the signed heads and
/// [`EVIDENCE_HOWTO`], as pretty JSON to `out` or stdout.
async fn export(
    store: &dyn cadre_store::Store,
    task: &str,
    out: Option<PathBuf>,
    pems: &[String],
    heads: &[audit::SignedHead],
) -> Result<i32> {
    let id: cadre_proto::TaskId = task.parse()?;
    let records = store.audit_records(Some(&id.to_string())).await?;
    let checkpoint = checkpoint(store).await?;
    let records = audit::after_checkpoint(checkpoint.as_ref(), records);
    let pruned = pruned_note(id, checkpoint.as_ref(), records.len());
    if let Some(note) = &pruned {
        eprintln!("{note}");
    }
    let package = serde_json::json!({
        "task_id": id.to_string(),
        "generated_at_ms": cadre_proto::clock::now_ms(),
        "node_public_key_pem": pems[0],
        "trusted_public_keys_pem": pems,
        "signed_heads": heads,
        "signed_head": heads.first(),
        "records": records,
        "checkpoint": checkpoint,
        "pruned": pruned,
        "how_to_verify": EVIDENCE_HOWTO,
    });
    let text = serde_json::to_string_pretty(&package)?;
    match out {
        Some(path) => {
            std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
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

/// `cadre verify-result`: checks a verified task's result signature against the node's public
/// key (`<data-dir>/node-ed25519.pub.pem`, or each `--public-key`) and names the key that
/// signed it; an error if none did.
pub(super) async fn verify_result(
    client: Client,
    id: String,
    public_key: Vec<PathBuf>,
    data_dir: &Path,
) -> Result<i32> {
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
    let task = client.get(&id).await?;
    if task.result_signature.is_empty() {
        bail!(
            "task {} has no signed result (state {}, not a verified task?)",
            task.id,
            state_name(task.state)
        );
    }
    let task_id: cadre_proto::TaskId = task.id.parse()?;
    let Some((path, _)) = keys
        .iter()
        .find(|(_, key)| audit::verify_result(key, task_id, &task.result_json, &task.result_signature))
    else {
        bail!("task {}: the result does NOT match the node's signature", task.id);
    };
    println!(
        "task {}: result signature valid (signed by {})",
        task.id,
        path.display()
    );
    Ok(0)
}
