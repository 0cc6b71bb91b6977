//! The audit chain: an append-only, hash-linked, signed record of every security-relevant act
//! (refused credentials and permissions, submits, cancels, scaling, reloads, token and API key
//! issue and revocation).
//!
//! Each record's `hash` is SHA-256 over the previous record's hash and the record's canonical
//! JSON; each hash is signed with the node's Ed25519 key (`<data_dir>/node-ed25519.pem`). The
//! writer seals records in commit order (so they ride the same group commit as the tasks) and,
//! after each batch, writes the signed head (last seq and hash) to `<data_dir>/audit-head.json`.
//! [`verify`] then detects an edited, deleted, inserted or reordered record (broken links or
//! signatures) and a cut-off tail (the head names a record that is gone).
//!
//! Limit: whoever holds the node key can forge a consistent chain; keep the key apart from
//! the people you audit, and copy the head elsewhere if you need more.

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::auth::{self, Principal};
use crate::error::Error;

/// File holding the node's Ed25519 signing key (PKCS#8 PEM, 0600).
pub const NODE_KEY_FILE: &str = "node-ed25519.pem";
/// File holding the node's public key (PEM).
pub const NODE_PUBLIC_KEY_FILE: &str = "node-ed25519.pub.pem";
/// File holding the signed head of the chain.
pub const HEAD_FILE: &str = "audit-head.json";
/// `prev_hash` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened, before it is sealed into the chain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct AuditDraft {
    /// Unix milliseconds.
    pub at_ms: i64,
    /// Who (token subject or key name; `unknown` when no credential was accepted).
    pub actor: String,
    /// The actor's tenant (empty when unknown).
    pub tenant: String,
    /// The actor's role (empty when unknown).
    pub role: String,
    /// What was attempted: `task.submit`, `task.cancel`, `admin.scale`, `admin.reload`,
    /// `token.issue`, `key.create`, `key.revoke`, or the refused call's action name.
    pub action: String,
    /// What it was done to: a task id, key id, pool, ...
    pub target: String,
    /// `ok`, `unauthenticated` or `denied`.
    pub outcome: String,
    /// Free text (never a secret).
    pub detail: String,
}

impl AuditDraft {
    /// A draft for an act by `p` (or by an unknown caller).
    pub fn new(p: Option<&Principal>, action: &str, target: &str, outcome: &str, detail: &str) -> Self {
        AuditDraft {
            at_ms: crate::store::sqlite::now_ms(),
            actor: p.map(|p| p.subject.clone()).unwrap_or_else(|| "unknown".into()),
            tenant: p.map(|p| p.tenant.clone()).unwrap_or_default(),
            role: p.map(|p| p.role.to_string()).unwrap_or_default(),
            action: action.into(),
            target: target.into(),
            outcome: outcome.into(),
            detail: detail.into(),
        }
    }
}

/// A sealed record: the draft, its place in the chain, its hash and signature.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position, 1-based, without gaps.
    pub seq: u64,
    /// The act.
    #[serde(flatten)]
    pub draft: AuditDraft,
    /// Hash of the record before (GENESIS for the first).
    pub prev_hash: String,
    /// SHA-256 over `prev_hash` and the canonical JSON of `seq` and the draft, hex.
    pub hash: String,
    /// Ed25519 signature of `hash`, hex.
    pub signature: String,
}

/// The signed end of the chain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SignedHead {
    /// Last sealed seq.
    pub seq: u64,
    /// Its hash.
    pub hash: String,
    /// Ed25519 signature of `head:<seq>:<hash>`, hex.
    pub signature: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    s.len()
        .is_multiple_of(2)
        .then(|| {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
                .collect()
        })
        .flatten()
}

/// SHA-256 of `data`, hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// Whether `signature` (hex) is the node's signature of `result_json` for `task_id`.
pub fn verify_result(
    key: &VerifyingKey,
    task_id: cadre_proto::TaskId,
    result_json: &str,
    signature: &str,
) -> bool {
    let msg = cadre_proto::result_signing_message(task_id, result_json, sha256_hex);
    unhex(signature)
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .is_some_and(|b| key.verify(msg.as_bytes(), &Signature::from_bytes(&b)).is_ok())
}

/// The hash of record `seq` with `draft` after `prev_hash`.
pub fn record_hash(seq: u64, draft: &AuditDraft, prev_hash: &str) -> String {
    let canonical = serde_json::to_string(&(seq, draft)).unwrap_or_default();
    hex(&Sha256::new()
        .chain_update(prev_hash.as_bytes())
        .chain_update(canonical.as_bytes())
        .finalize())
}

fn head_message(seq: u64, hash: &str) -> String {
    format!("head:{seq}:{hash}")
}

/// Loads the node's signing key, creating it (0600) on first start.
pub fn node_key(data_dir: &Path) -> Result<SigningKey, Error> {
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
    let bad = |e: &dyn std::fmt::Display| Error::FailedPrecondition(format!("node key: {e}"));
    let path = data_dir.join(NODE_KEY_FILE);
    let pem = auth::read_or_create(&path, || {
        let key = SigningKey::from_bytes(&auth::random_bytes::<32>()?);
        let public = key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| bad(&e))?;
        auth::write_private(&data_dir.join(NODE_PUBLIC_KEY_FILE), public.as_bytes()).map_err(|e| bad(&e))?;
        Ok(key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| bad(&e))?
            .as_bytes()
            .to_vec())
    })?;
    SigningKey::from_pkcs8_pem(&String::from_utf8_lossy(&pem)).map_err(|e| bad(&e))
}

/// Reads a public key PEM.
pub fn public_key(pem: &str) -> Result<VerifyingKey, Error> {
    use ed25519_dalek::pkcs8::DecodePublicKey;
    VerifyingKey::from_public_key_pem(pem).map_err(|e| Error::FailedPrecondition(format!("public key: {e}")))
}

/// Seals drafts into the chain, in order. Owned by the writer.
pub struct Sealer {
    key: SigningKey,
    seq: u64,
    hash: String,
    head_path: PathBuf,
}

impl Sealer {
    /// Continues the chain after (`seq`, `hash`), the last stored record.
    pub fn new(key: SigningKey, data_dir: &Path, seq: u64, hash: String) -> Self {
        Sealer {
            key,
            seq,
            hash,
            head_path: data_dir.join(HEAD_FILE),
        }
    }

    /// The next record of the chain.
    pub fn seal(&mut self, draft: AuditDraft) -> AuditRecord {
        let seq = self.seq + 1;
        let hash = record_hash(seq, &draft, &self.hash);
        let signature = hex(&self.key.sign(hash.as_bytes()).to_bytes());
        let record = AuditRecord {
            seq,
            draft,
            prev_hash: std::mem::replace(&mut self.hash, hash.clone()),
            hash,
            signature,
        };
        self.seq = seq;
        record
    }

    /// Signs a verified task's result (see [`cadre_proto::result_signing_message`]).
    pub fn sign_result(&self, task_id: cadre_proto::TaskId, result_json: &str) -> String {
        let msg = cadre_proto::result_signing_message(task_id, result_json, sha256_hex);
        hex(&self.key.sign(msg.as_bytes()).to_bytes())
    }

    /// Writes the signed head (after the records up to it are committed).
    pub fn write_head(&self) -> std::io::Result<()> {
        let head = SignedHead {
            seq: self.seq,
            hash: self.hash.clone(),
            signature: hex(&self
                .key
                .sign(head_message(self.seq, &self.hash).as_bytes())
                .to_bytes()),
        };
        let tmp = self.head_path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&head).unwrap_or_default())?;
        std::fs::rename(tmp, &self.head_path)
    }
}

/// What [`verify`] found wrong, first problem only.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Tampering {
    /// A seq is missing or out of order (deletion, insertion or reordering).
    #[error(
        "record {found} found where record {expected} should be: records were deleted, inserted or reordered"
    )]
    Sequence {
        /// The seq that should come next.
        expected: u64,
        /// The seq found.
        found: u64,
    },
    /// A record's `prev_hash` does not match the record before it.
    #[error("record {0} does not link to the record before it")]
    Link(u64),
    /// A record's content does not match its hash (edited).
    #[error("record {0} was edited: its content does not match its hash")]
    Edited(u64),
    /// A record's signature is not the node's.
    #[error("record {0} has a signature the node key did not make")]
    Signature(u64),
    /// The head file's signature is not the node's.
    #[error("the signed head is not signed by the node key")]
    HeadSignature,
    /// The head names records that are no longer there.
    #[error("the chain ends at record {last} but the signed head says {head}: records were cut off the tail")]
    Truncated {
        /// Last record present.
        last: u64,
        /// Seq in the signed head.
        head: u64,
    },
    /// The record the head names has another hash.
    #[error("record {0} does not match the signed head")]
    HeadMismatch(u64),
}

/// Checks a whole chain (records in seq order, starting at 1) against the node's public key
/// and its signed head. Returns the number of records verified.
pub fn verify(
    records: &[AuditRecord],
    head: Option<&SignedHead>,
    key: &VerifyingKey,
) -> Result<u64, Tampering> {
    let signed = |msg: &[u8], sig: &str| {
        unhex(sig)
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .is_some_and(|b| key.verify(msg, &Signature::from_bytes(&b)).is_ok())
    };
    let mut prev = GENESIS.to_string();
    for (i, r) in records.iter().enumerate() {
        let expected = i as u64 + 1;
        if r.seq != expected {
            return Err(Tampering::Sequence {
                expected,
                found: r.seq,
            });
        }
        if r.prev_hash != prev {
            return Err(Tampering::Link(r.seq));
        }
        if record_hash(r.seq, &r.draft, &r.prev_hash) != r.hash {
            return Err(Tampering::Edited(r.seq));
        }
        if !signed(r.hash.as_bytes(), &r.signature) {
            return Err(Tampering::Signature(r.seq));
        }
        prev = r.hash.clone();
    }
    let last = records.len() as u64;
    if let Some(h) = head {
        if !signed(head_message(h.seq, &h.hash).as_bytes(), &h.signature) {
            return Err(Tampering::HeadSignature);
        }
        // Records after the head are fine (the node may have died before writing it): each is
        // signed. A head beyond the last record means the tail was cut off.
        if h.seq > last {
            return Err(Tampering::Truncated { last, head: h.seq });
        }
        if h.seq > 0 && records[h.seq as usize - 1].hash != h.hash {
            return Err(Tampering::HeadMismatch(h.seq));
        }
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: usize) -> (Vec<AuditRecord>, SignedHead, VerifyingKey, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let key = node_key(dir.path()).unwrap();
        let public = key.verifying_key();
        let mut sealer = Sealer::new(key, dir.path(), 0, GENESIS.into());
        let records = (0..n)
            .map(|i| sealer.seal(AuditDraft::new(None, "submit", &format!("task-{i}"), "ok", "")))
            .collect();
        sealer.write_head().unwrap();
        let head: SignedHead =
            serde_json::from_slice(&std::fs::read(dir.path().join(HEAD_FILE)).unwrap()).unwrap();
        (records, head, public, dir)
    }

    #[test]
    fn an_untouched_chain_verifies_and_every_kind_of_tampering_is_caught() {
        let (records, head, key, _dir) = chain(5);
        assert_eq!(verify(&records, Some(&head), &key), Ok(5));

        let mut edited = records.clone();
        edited[2].draft.outcome = "denied".into();
        assert_eq!(verify(&edited, Some(&head), &key), Err(Tampering::Edited(3)));

        let mut deleted = records.clone();
        deleted.remove(1);
        assert!(matches!(
            verify(&deleted, Some(&head), &key),
            Err(Tampering::Sequence {
                expected: 2,
                found: 3
            })
        ));

        let mut reordered = records.clone();
        reordered.swap(1, 2);
        assert!(matches!(
            verify(&reordered, Some(&head), &key),
            Err(Tampering::Sequence { .. })
        ));

        // An inserted record renumbered to fit still breaks the links.
        let mut inserted = records.clone();
        let mut fake = records[1].clone();
        fake.draft.target = "forged".into();
        inserted.insert(2, fake);
        for (i, r) in inserted.iter_mut().enumerate() {
            r.seq = i as u64 + 1;
        }
        assert!(verify(&inserted, Some(&head), &key).is_err());

        let truncated = &records[..3];
        assert_eq!(
            verify(truncated, Some(&head), &key),
            Err(Tampering::Truncated { last: 3, head: 5 })
        );

        let mut resigned = records.clone();
        resigned[4].signature = "00".repeat(64);
        assert_eq!(verify(&resigned, Some(&head), &key), Err(Tampering::Signature(5)));

        let (_, _, other_key, _d) = chain(1);
        assert_eq!(
            verify(&records, Some(&head), &other_key),
            Err(Tampering::Signature(1))
        );
    }
}
