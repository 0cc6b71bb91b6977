//! What tier-0 replicas share about credentials and admission ([`RevocationStore`]): revoked
//! JWTs (by token id or by subject), the JWT signing keys `cadre token rotate` made, and which
//! tier-0 replicas are alive (so each takes its share of a tenant's submit rate). Every replica
//! reads all three back every second; each write is its own statement, audited by the core.
//!
//! Both SQL stores implement [`RevocationStore`] with the same statements
//! (`impl_revocation_store!`).

use std::marker::PhantomData;

use async_trait::async_trait;
use sqlx::{Database, Encode, QueryBuilder, Type};

use crate::error::StoreResult;

/// Most revocations read back (the core refuses new ones beyond it).
pub const MAX_STORED_REVOCATIONS: i64 = 100_000;
/// Most signing keys read back (the newest ones).
pub const MAX_SIGNING_KEYS: i64 = 1_000;
/// A replica row older than this is deleted by the next heartbeat of any replica.
const REPLICA_FORGET_MS: i64 = 60_000;

/// A revoked JWT or subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    /// `jti` (one token) or `subject` (every token of it issued at or before `revoked_at_ms`).
    pub kind: String,
    /// The token id or the subject.
    pub value: String,
    /// When, Unix milliseconds.
    pub revoked_at_ms: i64,
    /// When it may be forgotten (no token it names is valid any more), Unix milliseconds.
    pub expires_at_ms: i64,
    /// Who revoked it (a subject).
    pub revoked_by: String,
}

/// A JWT signing key made by a rotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSigningKey {
    /// Key id (the JWT header's `kid`).
    pub kid: String,
    /// `HS256` or `EdDSA`.
    pub algorithm: String,
    /// The secret (HS256) or PKCS#8 private key (EdDSA), sealed by the core.
    pub sealed: String,
    /// The EdDSA public key (PEM); empty for HS256.
    pub public_pem: String,
    /// When it was made, Unix milliseconds.
    pub created_at_ms: i64,
}

#[async_trait]
/// Durable storage of revocations, signing keys and tier-0 replica heartbeats.
pub trait RevocationStore: Send + Sync {
    /// Stores a revocation (a second one of the same token or subject replaces it).
    async fn add_revocation(&self, r: &Revocation) -> StoreResult<()>;
    /// Every revocation, oldest first (at most [`MAX_STORED_REVOCATIONS`]).
    async fn revocations(&self) -> StoreResult<Vec<Revocation>>;
    /// Forgets revocations that expired before `now_ms`; how many.
    async fn prune_revocations(&self, now_ms: i64) -> StoreResult<u64>;
    /// Stores a new signing key.
    async fn add_signing_key(&self, k: &StoredSigningKey) -> StoreResult<()>;
    /// Signing keys, oldest first (the newest [`MAX_SIGNING_KEYS`]).
    async fn signing_keys(&self) -> StoreResult<Vec<StoredSigningKey>>;
    /// Records that replica `id` is alive at `now_ms`; returns how many replicas were seen
    /// since `live_since_ms` (itself included).
    async fn beat_replica(&self, id: &str, now_ms: i64, live_since_ms: i64) -> StoreResult<u32>;
}

/// A stored revocation row: (kind, value, revoked_at_ms, expires_at_ms, revoked_by).
pub(crate) type RevocationRow = (String, String, i64, i64, String);
/// A stored key row: (kid, algorithm, sealed, public_pem, created_at_ms).
pub(crate) type KeyRow = (String, String, String, String, i64);

/// Revocations of stored rows.
pub(crate) fn revocations_from(rows: Vec<RevocationRow>) -> Vec<Revocation> {
    rows.into_iter()
        .map(
            |(kind, value, revoked_at_ms, expires_at_ms, revoked_by)| Revocation {
                kind,
                value,
                revoked_at_ms,
                expires_at_ms,
                revoked_by,
            },
        )
        .collect()
}

/// Signing keys of stored rows, oldest first.
pub(crate) fn keys_from(mut rows: Vec<KeyRow>) -> Vec<StoredSigningKey> {
    rows.reverse();
    rows.into_iter()
        .map(
            |(kid, algorithm, sealed, public_pem, created_at_ms)| StoredSigningKey {
                kid,
                algorithm,
                sealed,
                public_pem,
                created_at_ms,
            },
        )
        .collect()
}

/// Query builders for database `DB` (only used as `RevocationSql::<DB>::...`).
pub(crate) struct RevocationSql<DB>(PhantomData<DB>);

impl<DB> RevocationSql<DB>
where
    DB: Database,
    DB::Arguments: Default,
    String: for<'t> Encode<'t, DB> + Type<DB>,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
{
    /// Inserts or replaces a revocation.
    pub fn insert(r: &Revocation) -> QueryBuilder<DB> {
        let mut qb = QueryBuilder::new(
            "INSERT INTO revocations (kind, value, revoked_at_ms, expires_at_ms, revoked_by) ",
        );
        qb.push_values([r], |mut b, r| {
            b.push_bind(r.kind.clone())
                .push_bind(r.value.clone())
                .push_bind(r.revoked_at_ms)
                .push_bind(r.expires_at_ms)
                .push_bind(r.revoked_by.clone());
        });
        qb.push(
            " ON CONFLICT (kind, value) DO UPDATE SET revoked_at_ms = excluded.revoked_at_ms, \
             expires_at_ms = excluded.expires_at_ms, revoked_by = excluded.revoked_by",
        );
        qb
    }

    /// Every revocation, oldest first.
    pub fn all() -> QueryBuilder<DB> {
        let mut qb = QueryBuilder::new(
            "SELECT kind, value, revoked_at_ms, expires_at_ms, revoked_by FROM revocations \
             ORDER BY revoked_at_ms, kind, value LIMIT ",
        );
        qb.push_bind(MAX_STORED_REVOCATIONS);
        qb
    }

    /// Deletes expired revocations.
    pub fn prune(now_ms: i64) -> QueryBuilder<DB> {
        let mut qb = QueryBuilder::new("DELETE FROM revocations WHERE expires_at_ms < ");
        qb.push_bind(now_ms);
        qb
    }

    /// Inserts a signing key.
    pub fn insert_key(k: &StoredSigningKey) -> QueryBuilder<DB> {
        let mut qb = QueryBuilder::new(
            "INSERT INTO signing_keys (kid, algorithm, sealed, public_pem, created_at_ms) ",
        );
        qb.push_values([k], |mut b, k| {
            b.push_bind(k.kid.clone())
                .push_bind(k.algorithm.clone())
                .push_bind(k.sealed.clone())
                .push_bind(k.public_pem.clone())
                .push_bind(k.created_at_ms);
        });
        qb
    }

    /// The newest signing keys, newest first.
    pub fn keys() -> QueryBuilder<DB> {
        let mut qb = QueryBuilder::new(
            "SELECT kid, algorithm, sealed, public_pem, created_at_ms FROM signing_keys \
             ORDER BY created_at_ms DESC, kid DESC LIMIT ",
        );
        qb.push_bind(MAX_SIGNING_KEYS);
        qb
    }

    /// Upserts a replica's heartbeat.
    pub fn beat(id: &str, now_ms: i64) -> QueryBuilder<DB> {
        let mut qb = QueryBuilder::new("INSERT INTO tier0_replicas (id, seen_at_ms) ");
        qb.push_values([(id, now_ms)], |mut b, (id, at)| {
            b.push_bind(id.to_string()).push_bind(at);
        });
        qb.push(" ON CONFLICT (id) DO UPDATE SET seen_at_ms = excluded.seen_at_ms");
        qb
    }

    /// Deletes replicas not seen for a minute.
    pub fn forget(now_ms: i64) -> QueryBuilder<DB> {
        let mut qb = QueryBuilder::new("DELETE FROM tier0_replicas WHERE seen_at_ms < ");
        qb.push_bind(now_ms - REPLICA_FORGET_MS);
        qb
    }

    /// Counts replicas seen since `since_ms`.
    pub fn live(since_ms: i64) -> QueryBuilder<DB> {
        let mut qb = QueryBuilder::new("SELECT COUNT(*) FROM tier0_replicas WHERE seen_at_ms >= ");
        qb.push_bind(since_ms);
        qb
    }
}

/// Implements [`RevocationStore`] for a SQL store type with the [`RevocationSql`] statements on
/// its `pool` (of database `$db`).
macro_rules! impl_revocation_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::revocations::RevocationStore for $store {
            async fn add_revocation(&self, r: &$crate::revocations::Revocation) -> $crate::StoreResult<()> {
                $crate::revocations::RevocationSql::<$db>::insert(r)
                    .build()
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn revocations(&self) -> $crate::StoreResult<Vec<$crate::revocations::Revocation>> {
                let rows: Vec<$crate::revocations::RevocationRow> =
                    $crate::revocations::RevocationSql::<$db>::all()
                        .build_query_as()
                        .fetch_all(&self.pool)
                        .await?;
                Ok($crate::revocations::revocations_from(rows))
            }

            async fn prune_revocations(&self, now_ms: i64) -> $crate::StoreResult<u64> {
                let n = $crate::revocations::RevocationSql::<$db>::prune(now_ms)
                    .build()
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                Ok(n)
            }

            async fn add_signing_key(
                &self,
                k: &$crate::revocations::StoredSigningKey,
            ) -> $crate::StoreResult<()> {
                $crate::revocations::RevocationSql::<$db>::insert_key(k)
                    .build()
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn signing_keys(&self) -> $crate::StoreResult<Vec<$crate::revocations::StoredSigningKey>> {
                let rows: Vec<$crate::revocations::KeyRow> =
                    $crate::revocations::RevocationSql::<$db>::keys()
                        .build_query_as()
                        .fetch_all(&self.pool)
                        .await?;
                Ok($crate::revocations::keys_from(rows))
            }

            async fn beat_replica(
                &self,
                id: &str,
                now_ms: i64,
                live_since_ms: i64,
            ) -> $crate::StoreResult<u32> {
                $crate::revocations::RevocationSql::<$db>::beat(id, now_ms)
                    .build()
                    .execute(&self.pool)
                    .await?;
                $crate::revocations::RevocationSql::<$db>::forget(now_ms)
                    .build()
                    .execute(&self.pool)
                    .await?;
                let (n,): (i64,) = $crate::revocations::RevocationSql::<$db>::live(live_since_ms)
                    .build_query_as()
                    .fetch_one(&self.pool)
                    .await?;
                Ok(n.clamp(1, i64::from(u32::MAX)) as u32)
            }
        }
    };
}
pub(crate) use impl_revocation_store;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::SqliteStore;

    #[tokio::test]
    async fn revocations_keys_and_replicas_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("cadre.db"), true)
            .await
            .unwrap();
        let r = Revocation {
            kind: "jti".into(),
            value: "abc".into(),
            revoked_at_ms: 10,
            expires_at_ms: 100,
            revoked_by: "ops".into(),
        };
        store.add_revocation(&r).await.unwrap();
        let again = Revocation {
            revoked_at_ms: 20,
            expires_at_ms: 200,
            ..r.clone()
        };
        store.add_revocation(&again).await.unwrap();
        assert_eq!(store.revocations().await.unwrap(), vec![again]);
        assert_eq!(store.prune_revocations(150).await.unwrap(), 0);
        assert_eq!(store.prune_revocations(250).await.unwrap(), 1);
        assert!(store.revocations().await.unwrap().is_empty());
        for (kid, at) in [("k2", 2), ("k1", 1)] {
            let k = StoredSigningKey {
                kid: kid.into(),
                algorithm: "HS256".into(),
                sealed: "x".into(),
                public_pem: String::new(),
                created_at_ms: at,
            };
            store.add_signing_key(&k).await.unwrap();
        }
        let kids: Vec<String> = store
            .signing_keys()
            .await
            .unwrap()
            .into_iter()
            .map(|k| k.kid)
            .collect();
        assert_eq!(kids, ["k1", "k2"], "oldest first");
        assert_eq!(store.beat_replica("a", 1_000, 0).await.unwrap(), 1);
        assert_eq!(store.beat_replica("b", 2_000, 0).await.unwrap(), 2);
        assert_eq!(
            store.beat_replica("b", 5_000, 3_000).await.unwrap(),
            1,
            "a is stale"
        );
    }
}
