//! The audit chain: an append-only, hash-linked, signed record of every security-relevant act
//! (refused credentials and permissions, submits, cancels, scaling, reloads, token and API key
//! issue and revocation).
//!
//! Each record's `hash` is SHA-256 over the previous record's hash and the record's canonical
//! JSON; each hash is signed with the Ed25519 key of the node that sealed it
//! (`<data_dir>/node-ed25519.pem`), and the record names that key ([`AuditRecord::signer`]).
//! The store seals drafts inside the batch's transaction, in commit order (so they ride the
//! same group commit as the tasks, and several tier-0 replicas on one PostgreSQL database
//! extend one chain); after each batch with records the writer writes its signed head (last
//! seq and hash it sealed) to `<data_dir>/audit-head.json`. [`verify`] then detects an edited,
//! deleted, inserted or reordered record (broken links or signatures), a record signed by a key
//! that is not trusted, and a cut-off tail (a head names a record that is gone).
//!
//! Limit: whoever holds a trusted node key can forge a consistent chain; keep the keys apart
//! from the people you audit, and copy the heads elsewhere if you need more.

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use cadre_proto::Role;

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
    /// `token.issue`, `key.create`, `key.revoke`, `worker.connect`, or the refused call's
    /// action name.
    pub action: String,
    /// What it was done to: a task id, key id, pool, ...
    pub target: String,
    /// `ok`, `unauthenticated` or `denied`.
    pub outcome: String,
    /// Free text (never a secret).
    pub detail: String,
}

impl AuditDraft {
    /// A draft for an act by an unknown caller (no credential was accepted); [`AuditDraft::by`]
    /// names the caller.
    pub fn new(action: &str, target: &str, outcome: &str, detail: &str) -> Self {
        AuditDraft {
            at_ms: cadre_proto::clock::now_ms(),
            actor: "unknown".into(),
            tenant: String::new(),
            role: String::new(),
            action: action.into(),
            target: target.into(),
            outcome: outcome.into(),
            detail: detail.into(),
        }
    }

    /// The same draft, done by `subject` of `tenant` with `role`.
    pub fn by(mut self, subject: &str, tenant: &str, role: Role) -> Self {
        self.actor = subject.into();
        self.tenant = tenant.into();
        self.role = role.to_string();
        self
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
    /// [`key_id`] of the key that made `signature` (each replica signs with its own node key);
    /// empty on records written before signers were recorded, which any trusted key may have
    /// signed. Not covered by the hash: the signature already binds the record to this key.
    #[serde(default)]
    pub signer: String,
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
    /// [`key_id`] of the key that signed the head (empty in heads written before signers were
    /// recorded).
    #[serde(default)]
    pub signer: String,
}

/// What stands for the pruned start of the chain: the last record removed (its seq, hash and
/// sealing time), signed by the node that pruned it. The first remaining record must follow it
/// ([`verify_from`]), as record 1 follows [`GENESIS`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Seq of the last record pruned: records 1 to `seq` are gone.
    pub seq: u64,
    /// That record's hash.
    pub hash: String,
    /// That record's sealing time (its draft's `at_ms`), Unix milliseconds.
    pub at_ms: i64,
    /// Ed25519 signature of `checkpoint:<seq>:<hash>:<at_ms>`, hex.
    pub signature: String,
    /// [`key_id`] of the key that signed it.
    pub signer: String,
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

/// What a [`Checkpoint`] signs (its own domain, so no head or record signature passes as one).
fn checkpoint_message(seq: u64, hash: &str, at_ms: i64) -> String {
    format!("checkpoint:{seq}:{hash}:{at_ms}")
}

/// Reads a public key PEM.
pub fn public_key(pem: &str) -> Result<VerifyingKey, String> {
    use ed25519_dalek::pkcs8::DecodePublicKey;
    VerifyingKey::from_public_key_pem(pem).map_err(|e| format!("public key: {e}"))
}

/// The end of the chain: the last record's seq and hash (0 and [`GENESIS`] when empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainTail {
    /// Seq of the last record.
    pub seq: u64,
    /// Hash of the last record.
    pub hash: String,
}

impl Default for ChainTail {
    fn default() -> Self {
        ChainTail {
            seq: 0,
            hash: GENESIS.to_string(),
        }
    }
}

/// The hex id of a public key as audit records name their signer: the 32 key bytes, hex.
pub fn key_id(key: &VerifyingKey) -> String {
    hex(key.as_bytes())
}

/// One node's sealing key and where it keeps its signed head.
///
/// It holds no chain state: the store seals drafts inside the batch's transaction, after the
/// chain's end is known in commit order (read under PostgreSQL's event-log lock, or from the
/// single SQLite writer's memory), by calling [`Sealer::seal`]. So several tier-0 replicas
/// sharing one database extend one chain, each record naming the key that signed it.
pub struct Sealer {
    /// The node key (`<data_dir>/node-ed25519.pem`).
    key: SigningKey,
    /// [`key_id`] of its public half, written on every record this node seals.
    id: String,
    /// `<data_dir>/audit-head.json`.
    head_path: PathBuf,
}

impl Sealer {
    /// A sealer signing with `key` that keeps its signed head in `data_dir`.
    pub fn new(key: SigningKey, data_dir: &Path) -> Self {
        Sealer {
            id: key_id(&key.verifying_key()),
            key,
            head_path: data_dir.join(HEAD_FILE),
        }
    }

    /// The [`key_id`] this sealer writes on its records.
    pub fn key_id(&self) -> &str {
        &self.id
    }

    /// The record after `tail`, which then moves to it.
    pub fn seal(&self, tail: &mut ChainTail, draft: AuditDraft) -> AuditRecord {
        let seq = tail.seq + 1;
        let hash = record_hash(seq, &draft, &tail.hash);
        let signature = hex(&self.key.sign(hash.as_bytes()).to_bytes());
        tail.seq = seq;
        AuditRecord {
            seq,
            draft,
            prev_hash: std::mem::replace(&mut tail.hash, hash.clone()),
            hash,
            signature,
            signer: self.id.clone(),
        }
    }

    /// Signs a verified task's result (see [`cadre_proto::result_signing_message`]).
    pub fn sign_result(&self, task_id: cadre_proto::TaskId, result_json: &str) -> String {
        let msg = cadre_proto::result_signing_message(task_id, result_json, sha256_hex);
        hex(&self.key.sign(msg.as_bytes()).to_bytes())
    }

    /// The signed head naming `tail`.
    pub fn head(&self, tail: &ChainTail) -> SignedHead {
        SignedHead {
            seq: tail.seq,
            hash: tail.hash.clone(),
            signature: hex(&self
                .key
                .sign(head_message(tail.seq, &tail.hash).as_bytes())
                .to_bytes()),
            signer: self.id.clone(),
        }
    }

    /// The checkpoint standing for records 1 to `last.seq`, once they are pruned: `last` is the
    /// last record removed.
    pub fn checkpoint(&self, last: &AuditRecord) -> Checkpoint {
        let msg = checkpoint_message(last.seq, &last.hash, last.draft.at_ms);
        Checkpoint {
            seq: last.seq,
            hash: last.hash.clone(),
            at_ms: last.draft.at_ms,
            signature: hex(&self.key.sign(msg.as_bytes()).to_bytes()),
            signer: self.id.clone(),
        }
    }

    /// Writes the signed head naming `tail` (after the records up to it are committed). With
    /// several replicas each keeps its own head: the last record it sealed itself, a prefix of
    /// the shared chain.
    pub fn write_head(&self, tail: &ChainTail) -> std::io::Result<()> {
        let tmp = self.head_path.with_extension("json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(&self.head(tail)).unwrap_or_default(),
        )?;
        std::fs::rename(tmp, &self.head_path)
    }
}

/// The keys a chain may be signed with: every tier-0 replica's node public key.
pub struct TrustedKeys {
    /// By [`key_id`].
    keys: Vec<(String, VerifyingKey)>,
}

impl TrustedKeys {
    /// Trusts exactly `keys`.
    pub fn new(keys: impl IntoIterator<Item = VerifyingKey>) -> Self {
        TrustedKeys {
            keys: keys.into_iter().map(|k| (key_id(&k), k)).collect(),
        }
    }

    /// Whether `signature` (hex) over `msg` was made by the key named `signer`, or by any
    /// trusted key when `signer` is empty. None: `signer` is not trusted.
    fn check(&self, signer: &str, msg: &[u8], signature: &str) -> Option<bool> {
        let Some(sig) = unhex(signature)
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .map(|b| Signature::from_bytes(&b))
        else {
            return Some(false);
        };
        if signer.is_empty() {
            return Some(self.keys.iter().any(|(_, k)| k.verify(msg, &sig).is_ok()));
        }
        let (_, key) = self.keys.iter().find(|(id, _)| id == signer)?;
        Some(key.verify(msg, &sig).is_ok())
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
    /// A record's signature was not made by the key it names (or by any trusted key).
    #[error("record {0} has a signature no trusted node key made")]
    Signature(u64),
    /// A record names a signer that is not among the trusted keys.
    #[error("record {seq} is signed by key {signer}, which is not trusted (pass its public key)")]
    UntrustedSigner {
        /// The record.
        seq: u64,
        /// The key id it names.
        signer: String,
    },
    /// A head file's signature is not a trusted node's.
    #[error("the signed head at {0} is not signed by a trusted node key")]
    HeadSignature(u64),
    /// A head names records that are no longer there.
    #[error("the chain ends at record {last} but a signed head says {head}: records were cut off the tail")]
    Truncated {
        /// Last record present.
        last: u64,
        /// Seq in the signed head.
        head: u64,
    },
    /// The record a head names has another hash.
    #[error("record {0} does not match the signed head")]
    HeadMismatch(u64),
    /// The chain does not start at record 1 and no checkpoint stands for what is missing.
    #[error(
        "the chain starts at record {first}, not 1, and no checkpoint stands for the records before it: \
         records were deleted, or the checkpoint of a prune was"
    )]
    Unanchored {
        /// The first record present.
        first: u64,
    },
    /// The checkpoint's signature is not a trusted node's (forged, or its key is not trusted).
    #[error(
        "the checkpoint at record {seq} is not signed by a trusted node key (it names signer {signer:?}): \
         it was forged, or pass the public key of the node that pruned"
    )]
    CheckpointSignature {
        /// The seq the checkpoint names.
        seq: u64,
        /// The key id it names.
        signer: String,
    },
    /// The first record left is not the one after the checkpoint.
    #[error(
        "the checkpoint stands for records 1 to {checkpoint} but the first record left is {first}: \
         records were deleted without a checkpoint for them, or the checkpoint was replaced"
    )]
    NotAfterCheckpoint {
        /// The seq the checkpoint names.
        checkpoint: u64,
        /// The first record present.
        first: u64,
    },
    /// The first record left does not link to the checkpoint's hash.
    #[error(
        "record {0} does not link to the checkpoint before it: the checkpoint or the record was replaced"
    )]
    CheckpointLink(u64),
}

/// Checks a whole chain (records in seq order, starting at 1) against the trusted node keys and
/// signed heads: [`verify_from`] without a checkpoint (nothing was pruned).
pub fn verify(records: &[AuditRecord], heads: &[SignedHead], keys: &TrustedKeys) -> Result<u64, Tampering> {
    verify_from(None, records, heads, keys)
}

/// Checks a chain whose start may have been pruned: `records` in seq order follow `checkpoint`
/// (or start at record 1 when there is none), checked against the trusted node keys and signed
/// heads. The checkpoint must be signed by a trusted key. Each record must be signed by the key
/// it names (any trusted key for records without a signer); each head must be signed by a
/// trusted key and name a record of the chain with its hash (a head below the checkpoint names
/// a pruned record: only its signature is checked; a head at the checkpoint must carry its
/// hash). A head may be a prefix: records after it are fine (other replicas extend the chain,
/// and a node may die before writing its head). Returns the number of records verified.
pub fn verify_from(
    checkpoint: Option<&Checkpoint>,
    records: &[AuditRecord],
    heads: &[SignedHead],
    keys: &TrustedKeys,
) -> Result<u64, Tampering> {
    if let Some(c) = checkpoint {
        let msg = checkpoint_message(c.seq, &c.hash, c.at_ms);
        if keys.check(&c.signer, msg.as_bytes(), &c.signature) != Some(true) {
            return Err(Tampering::CheckpointSignature {
                seq: c.seq,
                signer: c.signer.clone(),
            });
        }
    }
    walk(checkpoint, records, Some(keys))?;
    let base = checkpoint.map_or(0, |c| c.seq);
    let last = records.last().map_or(base, |r| r.seq);
    for h in heads {
        if keys.check(&h.signer, head_message(h.seq, &h.hash).as_bytes(), &h.signature) != Some(true) {
            return Err(Tampering::HeadSignature(h.seq));
        }
        if h.seq > last {
            return Err(Tampering::Truncated { last, head: h.seq });
        }
        let hash = match h.seq.checked_sub(base) {
            // Its record was pruned: the signature is all there is to check.
            None => continue,
            Some(0) => checkpoint.map_or(GENESIS, |c| c.hash.as_str()),
            Some(i) => records[i as usize - 1].hash.as_str(),
        };
        if h.seq > 0 && hash != h.hash {
            return Err(Tampering::HeadMismatch(h.seq));
        }
    }
    Ok(records.len() as u64)
}

/// The records of a chain read before its checkpoint, without those the checkpoint stands for:
/// a prune that commits between the two reads removes records already read. Read the records
/// first: the other way round, a prune in between would leave a checkpoint older than the
/// first record read, which [`verify_from`] rightly reports as tampering.
pub fn after_checkpoint(checkpoint: Option<&Checkpoint>, mut records: Vec<AuditRecord>) -> Vec<AuditRecord> {
    if let Some(c) = checkpoint {
        records.retain(|r| r.seq > c.seq);
    }
    records
}

/// Checks that `records` (in seq order) follow `checkpoint` (or start at record 1) without
/// gaps, each linking to the one before and matching its hash, without checking signatures:
/// what the store checks before it prunes records, so a checkpoint never stands for a broken
/// chain (signatures need every replica's public key; `cadre audit verify` checks them).
pub fn check_links(checkpoint: Option<&Checkpoint>, records: &[AuditRecord]) -> Result<(), Tampering> {
    walk(checkpoint, records, None)
}

/// The record checks of [`verify_from`] (signatures only with `keys`), first problem first.
fn walk(
    checkpoint: Option<&Checkpoint>,
    records: &[AuditRecord],
    keys: Option<&TrustedKeys>,
) -> Result<(), Tampering> {
    let (base, mut prev) = checkpoint.map_or((0, GENESIS), |c| (c.seq, c.hash.as_str()));
    for (i, r) in records.iter().enumerate() {
        let expected = base + i as u64 + 1;
        if r.seq != expected {
            return Err(match (i, checkpoint) {
                (0, Some(c)) => Tampering::NotAfterCheckpoint {
                    checkpoint: c.seq,
                    first: r.seq,
                },
                (0, None) => Tampering::Unanchored { first: r.seq },
                _ => Tampering::Sequence {
                    expected,
                    found: r.seq,
                },
            });
        }
        if r.prev_hash != prev {
            return Err(match (i, checkpoint) {
                (0, Some(_)) => Tampering::CheckpointLink(r.seq),
                _ => Tampering::Link(r.seq),
            });
        }
        if record_hash(r.seq, &r.draft, &r.prev_hash) != r.hash {
            return Err(Tampering::Edited(r.seq));
        }
        match keys.map(|k| k.check(&r.signer, r.hash.as_bytes(), &r.signature)) {
            Some(None) => {
                return Err(Tampering::UntrustedSigner {
                    seq: r.seq,
                    signer: r.signer.clone(),
                });
            }
            Some(Some(false)) => return Err(Tampering::Signature(r.seq)),
            Some(Some(true)) | None => {}
        }
        prev = &r.hash;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A signing key no other call returns (each chain, each replica gets its own).
    fn test_key() -> SigningKey {
        static NEXT: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(1);
        SigningKey::from_bytes(&[NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed); 32])
    }

    fn chain(n: usize) -> (Vec<AuditRecord>, SignedHead, TrustedKeys, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let key = test_key();
        let public = key.verifying_key();
        let sealer = Sealer::new(key, dir.path());
        let mut tail = ChainTail::default();
        let records = (0..n)
            .map(|i| {
                sealer.seal(
                    &mut tail,
                    AuditDraft::new("submit", &format!("task-{i}"), "ok", ""),
                )
            })
            .collect();
        sealer.write_head(&tail).unwrap();
        let head: SignedHead =
            serde_json::from_slice(&std::fs::read(dir.path().join(HEAD_FILE)).unwrap()).unwrap();
        (records, head, TrustedKeys::new([public]), dir)
    }

    #[test]
    fn an_untouched_chain_verifies_and_every_kind_of_tampering_is_caught() {
        let (records, head, key, _dir) = chain(5);
        assert_eq!(verify(&records, std::slice::from_ref(&head), &key), Ok(5));

        let mut edited = records.clone();
        edited[2].draft.outcome = "denied".into();
        assert_eq!(
            verify(&edited, std::slice::from_ref(&head), &key),
            Err(Tampering::Edited(3))
        );

        let mut deleted = records.clone();
        deleted.remove(1);
        assert!(matches!(
            verify(&deleted, std::slice::from_ref(&head), &key),
            Err(Tampering::Sequence {
                expected: 2,
                found: 3
            })
        ));

        let mut reordered = records.clone();
        reordered.swap(1, 2);
        assert!(matches!(
            verify(&reordered, std::slice::from_ref(&head), &key),
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
        assert!(verify(&inserted, std::slice::from_ref(&head), &key).is_err());

        let truncated = &records[..3];
        assert_eq!(
            verify(truncated, std::slice::from_ref(&head), &key),
            Err(Tampering::Truncated { last: 3, head: 5 })
        );

        let mut resigned = records.clone();
        resigned[4].signature = "00".repeat(64);
        assert_eq!(
            verify(&resigned, std::slice::from_ref(&head), &key),
            Err(Tampering::Signature(5))
        );

        let (_, _, other_key, _d) = chain(1);
        assert!(matches!(
            verify(&records, std::slice::from_ref(&head), &other_key),
            Err(Tampering::UntrustedSigner { seq: 1, .. })
        ));

        // A record re-signed with another key that claims the original signer.
        let (other, _, _, _d2) = chain(1);
        let mut swapped = records.clone();
        swapped[0].signature = other[0].signature.clone();
        assert_eq!(
            verify(&swapped, std::slice::from_ref(&head), &key),
            Err(Tampering::Signature(1))
        );

        // Records from before signers were recorded verify with any trusted key.
        let mut legacy = records.clone();
        legacy.iter_mut().for_each(|r| r.signer.clear());
        assert_eq!(verify(&legacy, &[], &key), Ok(5));
    }

    #[test]
    fn a_pruned_chain_verifies_from_its_checkpoint_and_tampering_with_it_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let sealer = Sealer::new(test_key(), dir.path());
        let keys = TrustedKeys::new([sealer.key.verifying_key()]);
        let mut tail = ChainTail::default();
        let mut records = Vec::new();
        let mut heads = Vec::new();
        for i in 1..=10 {
            records.push(sealer.seal(&mut tail, AuditDraft::new("submit", &format!("t{i}"), "ok", "")));
            if [2, 4, 10].contains(&i) {
                heads.push(sealer.head(&tail));
            }
        }
        // Records 1 to 4 pruned: the rest verifies from the checkpoint; the head below it is
        // checked for its signature, the one at it against its hash.
        let cp = sealer.checkpoint(&records[3]);
        let rest = &records[4..];
        assert_eq!(verify_from(Some(&cp), rest, &heads, &keys), Ok(6));
        assert_eq!(verify_from(Some(&cp), &[], &heads[..2], &keys), Ok(0));
        assert_eq!(verify_from(None, &records, &heads, &keys), Ok(10));
        // Records read before a prune committed, the checkpoint after it.
        assert_eq!(after_checkpoint(Some(&cp), records.clone()), rest);
        assert_eq!(after_checkpoint(None, records.clone()), records);

        // The checkpoint deleted after the prune.
        assert_eq!(
            verify(rest, &heads, &keys),
            Err(Tampering::Unanchored { first: 5 })
        );
        // Replaced by an older checkpoint.
        let older = sealer.checkpoint(&records[1]);
        assert_eq!(
            verify_from(Some(&older), rest, &heads, &keys),
            Err(Tampering::NotAfterCheckpoint {
                checkpoint: 2,
                first: 5
            })
        );
        // A record deleted after the checkpoint.
        assert_eq!(
            verify_from(Some(&cp), &records[5..], &[], &keys),
            Err(Tampering::NotAfterCheckpoint {
                checkpoint: 4,
                first: 6
            })
        );
        // Forged with an untrusted key, also when it claims the trusted signer; or edited.
        let forger = Sealer::new(test_key(), dir.path());
        let forged = forger.checkpoint(&records[3]);
        assert_eq!(
            verify_from(Some(&forged), rest, &[], &keys),
            Err(Tampering::CheckpointSignature {
                seq: 4,
                signer: forger.key_id().to_string()
            })
        );
        let claimed = Checkpoint {
            signer: sealer.key_id().to_string(),
            ..forged.clone()
        };
        assert!(matches!(
            verify_from(Some(&claimed), rest, &[], &keys),
            Err(Tampering::CheckpointSignature { seq: 4, .. })
        ));
        let moved = Checkpoint {
            at_ms: cp.at_ms + 1,
            ..cp.clone()
        };
        assert!(matches!(
            verify_from(Some(&moved), rest, &[], &keys),
            Err(Tampering::CheckpointSignature { .. })
        ));
        // A head's signature does not pass as a checkpoint's (separate domains).
        let as_head = Checkpoint {
            signature: sealer
                .head(&ChainTail {
                    seq: 4,
                    hash: cp.hash.clone(),
                })
                .signature,
            ..cp.clone()
        };
        assert!(matches!(
            verify_from(Some(&as_head), rest, &[], &keys),
            Err(Tampering::CheckpointSignature { .. })
        ));
        // A signed checkpoint of another record 4: the first record does not link to it, and
        // the head at 4 does not match it.
        let mut other = records[3].clone();
        other.hash = "ab".repeat(32);
        let wrong = sealer.checkpoint(&other);
        assert_eq!(
            verify_from(Some(&wrong), rest, &[], &keys),
            Err(Tampering::CheckpointLink(5))
        );
        let mut wrong_rest = rest.to_vec();
        wrong_rest[0].prev_hash = wrong.hash.clone();
        assert_eq!(
            verify_from(Some(&wrong), &wrong_rest, &[], &keys),
            Err(Tampering::Edited(5))
        );
        assert_eq!(
            verify_from(
                Some(&cp),
                rest,
                &[sealer.head(&ChainTail {
                    seq: 4,
                    hash: other.hash
                })],
                &keys
            ),
            Err(Tampering::HeadMismatch(4))
        );
        // Heads are still checked: a forged one below the checkpoint, a cut-off tail above it.
        let mut bad_head = heads[0].clone();
        bad_head.signature = "00".repeat(64);
        assert_eq!(
            verify_from(Some(&cp), rest, &[bad_head], &keys),
            Err(Tampering::HeadSignature(2))
        );
        assert_eq!(
            verify_from(Some(&cp), &rest[..3], &heads, &keys),
            Err(Tampering::Truncated { last: 7, head: 10 })
        );
        // Records after the checkpoint are still checked; the links alone need no key.
        let mut edited = rest.to_vec();
        edited[2].draft.detail = "changed".into();
        assert_eq!(
            verify_from(Some(&cp), &edited, &[], &keys),
            Err(Tampering::Edited(7))
        );
        assert_eq!(check_links(Some(&cp), &edited), Err(Tampering::Edited(7)));
        assert_eq!(check_links(Some(&cp), rest), Ok(()));
        assert_eq!(check_links(None, rest), Err(Tampering::Unanchored { first: 5 }));
    }

    #[test]
    fn a_chain_sealed_by_two_replicas_verifies_with_both_keys_and_both_heads() {
        let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = Sealer::new(test_key(), a_dir.path());
        let b = Sealer::new(test_key(), b_dir.path());
        let mut tail = ChainTail::default();
        let mut records = Vec::new();
        let (mut a_head, mut b_head) = (None, None);
        for i in 0..6 {
            let (sealer, head) = if i % 3 == 0 {
                (&b, &mut b_head)
            } else {
                (&a, &mut a_head)
            };
            records.push(sealer.seal(&mut tail, AuditDraft::new("submit", &format!("t{i}"), "ok", "")));
            *head = Some(sealer.head(&tail));
        }
        let heads = [a_head.unwrap(), b_head.unwrap()];
        assert!(heads[0].seq != heads[1].seq, "each head is a prefix of the chain");
        let both = TrustedKeys::new([a.key.verifying_key(), b.key.verifying_key()]);
        assert_eq!(verify(&records, &heads, &both), Ok(6));
        let only_a = TrustedKeys::new([a.key.verifying_key()]);
        assert_eq!(
            verify(&records, &[], &only_a),
            Err(Tampering::UntrustedSigner {
                seq: 1,
                signer: b.key_id().to_string()
            })
        );
        // A's head checked against B's key alone is not trusted.
        let only_b = TrustedKeys::new([b.key.verifying_key()]);
        assert_eq!(
            verify(&records[..1], &heads[1..], &only_b),
            Err(Tampering::Truncated { last: 1, head: 4 }),
            "B's head is checked with B's key, and the chain is cut"
        );
        assert_eq!(
            verify(&records[..1], &heads[..1], &only_b),
            Err(Tampering::HeadSignature(heads[0].seq))
        );
    }
}
