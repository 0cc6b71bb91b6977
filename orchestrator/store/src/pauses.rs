//! What an operator paused ([`PauseStore`]): supervisors, pools, task-type prefixes and
//! tenants, one row each in `pauses`. Tier 0 reads the whole set back every few seconds and
//! sends it to every supervisor, so a pause survives restarts of any process and reaches every
//! replica sharing the database. Written directly, each call its own statement (a pause is
//! idempotent and needs no event); the act is audited by the core.
//!
//! Both SQL stores implement [`PauseStore`] with the same statements (`impl_pause_store!`).

use std::marker::PhantomData;

use async_trait::async_trait;
use cadre_supervisors::Pause;
use sqlx::{Database, Encode, QueryBuilder, Type};

use crate::error::StoreResult;

/// Most pauses read back (a node refuses new ones well before; see the core).
pub const MAX_STORED_PAUSES: i64 = 10_000;

/// A pause as stored: the scope and who paused it, when and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredPause {
    /// What is paused.
    pub pause: Pause,
    /// When, Unix milliseconds.
    pub paused_at_ms: i64,
    /// Who (a subject).
    pub paused_by: String,
    /// Why, as the operator said.
    pub reason: String,
}

#[async_trait]
/// Durable storage of the pause set.
pub trait PauseStore: Send + Sync {
    /// Stores a pause unless its scope is paused already; true when stored now.
    async fn add_pause(&self, p: &StoredPause) -> StoreResult<bool>;
    /// Removes the pause of a scope; true when there was one.
    async fn remove_pause(&self, p: &Pause) -> StoreResult<bool>;
    /// Every pause, oldest first.
    async fn pauses(&self) -> StoreResult<Vec<StoredPause>>;
}

/// The key columns of a pause: (scope, supervisor, worker_kind, prefix, tenant).
pub(crate) fn key_columns(p: &Pause) -> [String; 5] {
    let e = String::new;
    match p {
        Pause::Supervisor { supervisor } => ["supervisor".into(), supervisor.clone(), e(), e(), e()],
        Pause::Pool {
            supervisor,
            worker_kind,
        } => ["pool".into(), supervisor.clone(), worker_kind.clone(), e(), e()],
        Pause::TaskTypePrefix { prefix } => ["task_type_prefix".into(), e(), e(), prefix.clone(), e()],
        Pause::Tenant { tenant } => ["tenant".into(), e(), e(), e(), tenant.clone()],
    }
}

/// A stored row: (scope, supervisor, worker_kind, prefix, tenant, paused_at_ms, paused_by,
/// reason).
pub(crate) type PauseRow = (String, String, String, String, String, i64, String, String);

/// The pauses of stored rows (a row of an unknown scope, from a newer version, is skipped).
pub(crate) fn from_rows(rows: Vec<PauseRow>) -> Vec<StoredPause> {
    rows.into_iter()
        .filter_map(
            |(scope, supervisor, worker_kind, prefix, tenant, at, by, reason)| {
                let pause = match scope.as_str() {
                    "supervisor" => Pause::Supervisor { supervisor },
                    "pool" => Pause::Pool {
                        supervisor,
                        worker_kind,
                    },
                    "task_type_prefix" => Pause::TaskTypePrefix { prefix },
                    "tenant" => Pause::Tenant { tenant },
                    other => {
                        tracing::warn!(scope = other, "skipping a pause of an unknown scope");
                        return None;
                    }
                };
                Some(StoredPause {
                    pause,
                    paused_at_ms: at,
                    paused_by: by,
                    reason,
                })
            },
        )
        .collect()
}

/// Query builders for database `DB` (only used as `PauseSql::<DB>::...`).
pub(crate) struct PauseSql<DB>(PhantomData<DB>);

impl<DB> PauseSql<DB>
where
    DB: Database,
    DB::Arguments: Default,
    String: for<'t> Encode<'t, DB> + Type<DB>,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
{
    /// Inserts a pause unless its scope is paused. `text` makes text storable.
    pub fn insert(p: &StoredPause, text: fn(&str) -> String) -> QueryBuilder<DB> {
        let mut qb = QueryBuilder::new(
            "INSERT INTO pauses (scope, supervisor, worker_kind, prefix, tenant, paused_at_ms, paused_by, reason) ",
        );
        qb.push_values([p], |mut b, p| {
            for c in key_columns(&p.pause) {
                b.push_bind(text(&c));
            }
            b.push_bind(p.paused_at_ms)
                .push_bind(text(&p.paused_by))
                .push_bind(text(&p.reason));
        });
        qb.push(" ON CONFLICT (scope, supervisor, worker_kind, prefix, tenant) DO NOTHING");
        qb
    }

    /// Deletes the pause of a scope.
    pub fn delete(p: &Pause, text: fn(&str) -> String) -> QueryBuilder<DB> {
        let mut qb = QueryBuilder::new("DELETE FROM pauses WHERE ");
        let names = ["scope", "supervisor", "worker_kind", "prefix", "tenant"];
        for (i, (name, value)) in names.iter().zip(key_columns(p)).enumerate() {
            if i > 0 {
                qb.push(" AND ");
            }
            qb.push(*name).push(" = ").push_bind(text(&value));
        }
        qb
    }

    /// Every pause, oldest first.
    pub fn all() -> QueryBuilder<DB> {
        let mut qb = QueryBuilder::new(
            "SELECT scope, supervisor, worker_kind, prefix, tenant, paused_at_ms, paused_by, reason \
             FROM pauses ORDER BY paused_at_ms, scope, supervisor, worker_kind, prefix, tenant LIMIT ",
        );
        qb.push_bind(MAX_STORED_PAUSES);
        qb
    }
}

/// Implements [`PauseStore`] for a SQL store type with the [`PauseSql`] statements on its
/// `pool` (of database `$db`). Text goes through the type's `stored_text` first.
macro_rules! impl_pause_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::pauses::PauseStore for $store {
            async fn add_pause(&self, p: &$crate::pauses::StoredPause) -> $crate::StoreResult<bool> {
                let n = $crate::pauses::PauseSql::<$db>::insert(p, |s| Self::stored_text(s).into_owned())
                    .build()
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                Ok(n == 1)
            }

            async fn remove_pause(&self, p: &cadre_supervisors::Pause) -> $crate::StoreResult<bool> {
                let n = $crate::pauses::PauseSql::<$db>::delete(p, |s| Self::stored_text(s).into_owned())
                    .build()
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                Ok(n > 0)
            }

            async fn pauses(&self) -> $crate::StoreResult<Vec<$crate::pauses::StoredPause>> {
                let rows: Vec<$crate::pauses::PauseRow> = $crate::pauses::PauseSql::<$db>::all()
                    .build_query_as()
                    .fetch_all(&self.pool)
                    .await?;
                Ok($crate::pauses::from_rows(rows))
            }
        }
    };
}
pub(crate) use impl_pause_store;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::SqliteStore;

    #[tokio::test]
    async fn pauses_are_idempotent_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cadre.db");
        let store = SqliteStore::open(&path, true).await.unwrap();
        let pool = StoredPause {
            pause: Pause::Pool {
                supervisor: "intelligence".into(),
                worker_kind: "writer".into(),
            },
            paused_at_ms: 5,
            paused_by: "ops".into(),
            reason: "maintenance".into(),
        };
        let tenant = StoredPause {
            pause: Pause::Tenant {
                tenant: "acme".into(),
            },
            paused_at_ms: 7,
            ..pool.clone()
        };
        assert!(store.add_pause(&pool).await.unwrap());
        assert!(!store.add_pause(&pool).await.unwrap(), "paused already");
        assert!(store.add_pause(&tenant).await.unwrap());
        assert_eq!(store.pauses().await.unwrap(), vec![pool.clone(), tenant.clone()]);
        drop(store);
        let store = SqliteStore::open(&path, true).await.unwrap();
        assert_eq!(store.pauses().await.unwrap().len(), 2);
        assert!(store.remove_pause(&pool.pause).await.unwrap());
        assert!(!store.remove_pause(&pool.pause).await.unwrap(), "resumed already");
        assert_eq!(store.pauses().await.unwrap(), vec![tenant]);
    }
}
