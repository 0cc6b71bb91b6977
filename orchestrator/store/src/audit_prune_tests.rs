//! [`crate::AuditPruneStore`] on both databases: pruning the chain's start behind a signed
//! checkpoint keeps it verifiable, sealing continues after a prune, a second prune replaces
//! the checkpoint, the newest record always stays, and concurrent pruners (two replicas on
//! PostgreSQL) and sealers end with one consistent chain, and a broken chain is not pruned.

use std::sync::Arc;

use std::sync::atomic::{AtomicU8, Ordering};

use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::chain::{AuditDraft, Checkpoint, Sealer, SignedHead, Tampering, TrustedKeys, verify, verify_from};
use crate::testing::pg::TestDb;
use crate::{AuditPruneStore, Store, WriteOp, WriteOutcome};

/// A sealer with a key no other call returns, and its public key.
fn sealer() -> (Sealer, VerifyingKey, tempfile::TempDir) {
    static NEXT: AtomicU8 = AtomicU8::new(1);
    let key = SigningKey::from_bytes(&[NEXT.fetch_add(1, Ordering::Relaxed); 32]);
    let public = key.verifying_key();
    let dir = tempfile::tempdir().unwrap();
    (Sealer::new(key, dir.path()), public, dir)
}

/// Seals records sealed at `at_ms`, one each; returns their seqs.
async fn seal(s: &dyn Store, sealer: &Sealer, at_ms: &[i64]) -> Vec<u64> {
    let ops: Vec<WriteOp> = at_ms
        .iter()
        .map(|at| {
            WriteOp::AuditDraft(Box::new(AuditDraft {
                at_ms: *at,
                ..AuditDraft::new("task.submit", &format!("task-{at}"), "ok", "")
            }))
        })
        .collect();
    let out = s.apply(&ops, Some(sealer)).await.unwrap();
    out.iter()
        .map(|o| match o {
            WriteOutcome::Audited { seq, .. } => *seq,
            other => panic!("expected a sealed record, got {other:?}"),
        })
        .collect()
}

/// The chain as stored, checked from its checkpoint.
async fn check(s: &dyn Store, heads: &[SignedHead], keys: &TrustedKeys) -> Result<u64, Tampering> {
    let checkpoint = s.audit_checkpoint().await.unwrap();
    let records = s.audit_records(None).await.unwrap();
    verify_from(checkpoint.as_ref(), &records, heads, keys)
}

async fn the_chain_verifies_from_the_checkpoint(s: &dyn Store) {
    let (sealer, public, _dir) = sealer();
    let keys = TrustedKeys::new([public]);
    assert_eq!(
        s.prune_audit(i64::MAX, 10, &sealer).await.unwrap(),
        0,
        "an empty chain"
    );
    seal(s, &sealer, &(1..=10).map(|i| i * 1000).collect::<Vec<_>>()).await;
    let head10 = sealer.head(&s.audit_tail().await.unwrap());
    assert_eq!(
        s.prune_audit(1000, 10, &sealer).await.unwrap(),
        0,
        "nothing sealed before"
    );
    assert_eq!(s.audit_checkpoint().await.unwrap(), None);

    // Three of the five old enough (limit), then the other two.
    assert_eq!(s.prune_audit(5500, 3, &sealer).await.unwrap(), 3);
    let first: Checkpoint = s.audit_checkpoint().await.unwrap().unwrap();
    assert_eq!(
        (first.seq, first.at_ms, first.signer.as_str()),
        (3, 3000, sealer.key_id())
    );
    let records = s.audit_records(None).await.unwrap();
    assert_eq!(records.first().map(|r| r.seq), Some(4));
    assert_eq!(first.hash, records[0].prev_hash);
    assert_eq!(check(s, std::slice::from_ref(&head10), &keys).await, Ok(7));
    assert_eq!(
        verify(&records, &[], &keys),
        Err(Tampering::Unanchored { first: 4 }),
        "without the checkpoint the pruned start is missing"
    );
    assert_eq!(s.prune_audit(5500, 100, &sealer).await.unwrap(), 2);
    let second = s.audit_checkpoint().await.unwrap().unwrap();
    assert_eq!(second.seq, 5, "the second prune replaced the checkpoint");
    let records = s.audit_records(None).await.unwrap();
    assert_eq!(
        verify_from(Some(&first), &records, &[], &keys),
        Err(Tampering::NotAfterCheckpoint {
            checkpoint: 3,
            first: 6
        }),
        "an older checkpoint put back is caught"
    );

    // Sealing continues after the prune and the chain still verifies, old heads included.
    assert_eq!(seal(s, &sealer, &[11_000, 12_000]).await, vec![11, 12]);
    let head12 = sealer.head(&s.audit_tail().await.unwrap());
    let heads = [sealer.head(&crate::chain::ChainTail::default()), head10, head12];
    assert_eq!(check(s, &heads, &keys).await, Ok(7));

    // Everything old enough goes but the newest record: the chain's end stays.
    assert_eq!(s.prune_audit(i64::MAX, 100, &sealer).await.unwrap(), 6);
    assert_eq!(s.audit_tail().await.unwrap().seq, 12);
    assert_eq!(s.audit_checkpoint().await.unwrap().unwrap().seq, 11);
    assert_eq!(s.prune_audit(i64::MAX, 100, &sealer).await.unwrap(), 0);
    assert_eq!(check(s, &heads, &keys).await, Ok(1));
    assert_eq!(seal(s, &sealer, &[13_000]).await, vec![13]);
    assert_eq!(check(s, &heads, &keys).await, Ok(2));
}

/// Replicas (stores on one database, each with its own key) prune and seal at once; the chain
/// ends consistent: what was pruned is exactly what the checkpoint stands for, and the rest
/// verifies from it with every replica's key.
async fn concurrent_pruners_end_consistent(replicas: Vec<Arc<dyn Store>>) {
    let sealers: Vec<_> = replicas.iter().map(|_| Arc::new(sealer())).collect();
    let keys = TrustedKeys::new(sealers.iter().map(|s| s.1));
    seal(&*replicas[0], &sealers[0].0, &vec![1; 100]).await;
    let mut tasks = tokio::task::JoinSet::new();
    for (store, sealer) in replicas.iter().zip(&sealers) {
        for _ in 0..5 {
            let (store, sealer) = (store.clone(), sealer.clone());
            tasks.spawn(async move { store.prune_audit(2, 10, &sealer.0).await.unwrap() });
        }
        let (store, sealer) = (store.clone(), sealer.clone());
        tasks.spawn(async move {
            for _ in 0..5 {
                seal(&*store, &sealer.0, &[5; 10]).await;
            }
            0
        });
    }
    let pruned: u64 = tasks.join_all().await.into_iter().sum();
    let s = &*replicas[0];
    let checkpoint = s.audit_checkpoint().await.unwrap().unwrap();
    assert_eq!(
        checkpoint.seq, pruned,
        "the checkpoint stands for exactly what was pruned"
    );
    // Only the 100 sealed before `before_ms` go, as many as the prunes may take; the last of
    // them stays if no later record was sealed when its prune ran.
    let room = 10 * 5 * replicas.len() as u64;
    assert!(
        (99.min(room)..=100.min(room)).contains(&pruned),
        "{pruned} pruned"
    );
    let tail = s.audit_tail().await.unwrap().seq;
    assert_eq!(tail, 100 + 50 * replicas.len() as u64);
    let verified = check(s, &[], &keys).await.unwrap();
    assert_eq!(verified + checkpoint.seq, tail);
}

#[tokio::test]
async fn sqlite_the_chain_verifies_from_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::sqlite::SqliteStore::open(&dir.path().join("s.db"), false)
        .await
        .unwrap();
    the_chain_verifies_from_the_checkpoint(&store).await;
}

#[tokio::test]
async fn postgres_the_chain_verifies_from_the_checkpoint() {
    let db = TestDb::create().await;
    let store = crate::postgres::PgStore::connect(db.url(), 4).await.unwrap();
    the_chain_verifies_from_the_checkpoint(&store).await;
}

#[tokio::test]
async fn sqlite_pruning_while_sealing_ends_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::sqlite::SqliteStore::open(&dir.path().join("s.db"), false)
        .await
        .unwrap();
    concurrent_pruners_end_consistent(vec![Arc::new(store)]).await;
}

#[tokio::test]
async fn postgres_two_replicas_pruning_while_sealing_end_consistent() {
    let db = TestDb::create().await;
    let a = crate::postgres::PgStore::connect(db.url(), 4).await.unwrap();
    let b = crate::postgres::PgStore::connect(db.url(), 4).await.unwrap();
    concurrent_pruners_end_consistent(vec![Arc::new(a), Arc::new(b)]).await;
}

#[tokio::test]
async fn a_broken_chain_is_not_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = crate::sqlite::SqliteStore::open(&path, false).await.unwrap();
    let (sealer, _, _keys_dir) = sealer();
    seal(&store, &sealer, &[1, 2, 3, 4, 5]).await;
    let raw = sqlx::sqlite::SqlitePool::connect(&format!("sqlite:{}", path.display()))
        .await
        .unwrap();
    sqlx::query("UPDATE audit SET detail = 'edited' WHERE seq = 4")
        .execute(&raw)
        .await
        .unwrap();
    raw.close().await;
    let err = store.prune_audit(i64::MAX, 10, &sealer).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("not pruning the audit chain, it is broken: record 4 was edited"),
        "{err}"
    );
    assert_eq!(
        store.audit_records(None).await.unwrap().len(),
        5,
        "nothing pruned"
    );
    assert_eq!(store.audit_checkpoint().await.unwrap(), None);
    // Records before the edit (and the one after them, checked for its link) are fine to go.
    assert_eq!(store.prune_audit(3, 10, &sealer).await.unwrap(), 2);
}
