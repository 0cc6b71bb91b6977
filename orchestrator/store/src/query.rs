//! The read side both SQL stores share, written once: [`Sql`] builds each query with the right
//! placeholders for its database (`?` for SQLite, `$n` for PostgreSQL), and `impl_sql_store!`
//! implements the [`crate::Store`] trait on them for either store (writes stay each store's own).

use std::marker::PhantomData;

use cadre_proto::TaskId;
use sqlx::{Database, Encode, QueryBuilder, Type};

use crate::rows::{API_KEY_COLUMNS, AUDIT_COLUMNS, EVENT_COLUMNS, TASK_COLUMNS, UNFINISHED};
use crate::{ApiKeyRecord, EventFilter, TaskFilter, UsageFilter};

/// Query builders for database `DB` (only used as `Sql::<DB>::...`).
pub(super) struct Sql<DB>(PhantomData<DB>);

impl<DB> Sql<DB>
where
    DB: Database,
    DB::Arguments: Default,
    String: for<'t> Encode<'t, DB> + Type<DB>,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
    Option<i64>: for<'t> Encode<'t, DB> + Type<DB>,
{
    /// One task row by id.
    pub fn task(id: TaskId) -> QueryBuilder<DB> {
        let mut qb = QueryBuilder::new(format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = "));
        qb.push_bind(id.to_string());
        qb
    }

    /// The delegation depth of task `id`.
    pub fn depth(id: TaskId) -> QueryBuilder<DB> {
        let mut qb = QueryBuilder::new("SELECT depth FROM tasks WHERE id = ");
        qb.push_bind(id.to_string());
        qb
    }

    /// The id of the task `tenant` submitted with idempotency key `key`.
    pub fn idempotent(tenant: &str, key: &str) -> QueryBuilder<DB> {
        let mut qb = QueryBuilder::new("SELECT id FROM tasks WHERE tenant = ");
        qb.push_bind(tenant.to_string())
            .push(" AND idempotency_key = ")
            .push_bind(key.to_string());
        qb
    }

    /// Ids of the sub-tasks of `id` in the parent's own tenant (a child another tenant made is
    /// not listed), oldest first.
    pub fn children(id: TaskId, tenant: &str) -> QueryBuilder<DB> {
        let mut qb = QueryBuilder::new("SELECT id FROM tasks WHERE parent_id = ");
        qb.push_bind(id.to_string())
            .push(" AND tenant = ")
            .push_bind(tenant.to_string())
            .push(" ORDER BY id");
        qb
    }

    /// A page of task rows, newest first.
    pub fn list(f: &TaskFilter) -> QueryBuilder<DB> {
        let mut qb = QueryBuilder::new(format!("SELECT {TASK_COLUMNS} FROM tasks WHERE 1 = 1"));
        if let Some(t) = &f.tenant {
            qb.push(" AND tenant = ").push_bind(t.clone());
        }
        if !f.states.is_empty() {
            qb.push(" AND state IN (");
            let mut sep = qb.separated(", ");
            for s in &f.states {
                sep.push_bind(s.as_str().to_string());
            }
            qb.push(")");
        }
        if let Some(p) = &f.type_prefix {
            Self::prefix(&mut qb, p);
        }
        if let Some(p) = f.parent_id {
            qb.push(" AND parent_id = ").push_bind(p.to_string());
        }
        if let Some(b) = f.before {
            qb.push(" AND id < ").push_bind(b.to_string());
        }
        if let Some(t) = f.created_after_ms {
            qb.push(" AND created_at_ms >= ").push_bind(t);
        }
        if let Some(t) = f.created_before_ms {
            qb.push(" AND created_at_ms < ").push_bind(t);
        }
        if let Some(text) = &f.error_contains {
            qb.push(" AND LOWER(error) LIKE ")
                .push_bind(contains_pattern(text))
                .push(" ESCAPE '\\'");
        }
        qb.push(" ORDER BY id DESC LIMIT ").push_bind(f.limit as i64);
        qb
    }

    /// `AND task_type starts with p` (no LIKE, so `%` and `_` in `p` are plain characters).
    fn prefix(qb: &mut QueryBuilder<DB>, p: &str) {
        qb.push(" AND substr(task_type, 1, length(")
            .push_bind(p.to_string())
            .push(")) = ")
            .push_bind(p.to_string());
    }

    /// Event rows after `after` matching the filter, oldest first.
    pub fn events_after(after: u64, f: &EventFilter, limit: u32) -> QueryBuilder<DB> {
        let mut qb = QueryBuilder::new(format!("SELECT {EVENT_COLUMNS} FROM events WHERE cursor > "));
        qb.push_bind(after as i64);
        if let Some(id) = f.task_id {
            qb.push(" AND task_id = ").push_bind(id.to_string());
        }
        if let Some(p) = &f.type_prefix {
            Self::prefix(&mut qb, p);
        }
        if let Some(t) = &f.tenant {
            qb.push(" AND tenant = ").push_bind(t.clone());
        }
        if let Some(p) = f.parent_id {
            qb.push(" AND parent_id = ").push_bind(p.to_string());
        }
        qb.push(" ORDER BY cursor LIMIT ").push_bind(limit as i64);
        qb
    }

    /// Unfinished task rows, of one supervisor or all, oldest first.
    pub fn unfinished(supervisor: Option<&str>) -> QueryBuilder<DB> {
        let mut qb = QueryBuilder::new(format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE state IN {UNFINISHED}"
        ));
        if let Some(s) = supervisor {
            qb.push(" AND supervisor = ").push_bind(s.to_string());
        }
        qb.push(" ORDER BY id");
        qb
    }

    /// `(tenant, count)` of unfinished tasks.
    pub fn count_unfinished() -> QueryBuilder<DB> {
        QueryBuilder::new(format!(
            "SELECT tenant, COUNT(*) FROM tasks WHERE state IN {UNFINISHED} GROUP BY tenant"
        ))
    }

    /// `(seq, hash)` of the last audit record (or of the checkpoint of a prune, if none is left).
    pub fn audit_tail() -> QueryBuilder<DB> {
        QueryBuilder::new(crate::audit_prune::CHAIN_END)
    }

    /// Audit rows in seq order: all, or those whose target is `target`.
    pub fn audit_records(target: Option<&str>) -> QueryBuilder<DB> {
        let mut qb = QueryBuilder::new(format!("SELECT {AUDIT_COLUMNS} FROM audit"));
        if let Some(t) = target {
            qb.push(" WHERE target = ").push_bind(t.to_string());
        }
        qb.push(" ORDER BY seq");
        qb
    }

    /// Usage rows summed per tenant and model.
    pub fn usage(f: &UsageFilter) -> QueryBuilder<DB> {
        let mut qb = QueryBuilder::new(
            "SELECT tenant, model, CAST(SUM(tokens_in) AS BIGINT) AS tokens_in, \
             CAST(SUM(tokens_out) AS BIGINT) AS tokens_out, SUM(cost_usd) AS cost_usd FROM usage WHERE 1 = 1",
        );
        if let Some(id) = f.task_id {
            qb.push(" AND task_id = ").push_bind(id.to_string());
        }
        if let Some(t) = &f.tenant {
            qb.push(" AND tenant = ").push_bind(t.clone());
        }
        if let Some(d) = &f.day {
            qb.push(" AND day = ").push_bind(d.clone());
        }
        qb.push(" GROUP BY tenant, model ORDER BY tenant, model");
        qb
    }

    /// Inserts an API key.
    pub fn insert_api_key(k: &ApiKeyRecord) -> QueryBuilder<DB> {
        let mut qb = QueryBuilder::new(format!("INSERT INTO api_keys ({API_KEY_COLUMNS}) "));
        qb.push_values([k], |mut b, k| {
            b.push_bind(k.id.clone())
                .push_bind(k.name.clone())
                .push_bind(k.tenant.clone())
                .push_bind(k.role.as_str().to_string())
                .push_bind(k.salt.clone())
                .push_bind(k.hash.clone())
                .push_bind(k.created_at_ms)
                .push_bind(k.revoked_at_ms)
                .push_bind(k.expires_at_ms);
        });
        qb
    }

    /// Every API key row, oldest first.
    pub fn api_keys() -> QueryBuilder<DB> {
        QueryBuilder::new(format!(
            "SELECT {API_KEY_COLUMNS} FROM api_keys ORDER BY created_at_ms, id"
        ))
    }

    /// Revokes key `id` unless it is revoked already.
    pub fn revoke_api_key(id: &str, at_ms: i64) -> QueryBuilder<DB> {
        let mut qb = QueryBuilder::new("UPDATE api_keys SET revoked_at_ms = ");
        qb.push_bind(at_ms)
            .push(" WHERE id = ")
            .push_bind(id.to_string())
            .push(" AND revoked_at_ms IS NULL");
        qb
    }
}

/// The LIKE pattern of a case-insensitive substring match for `text` (compared with
/// `LOWER(column)`, escape character `\`): lower-cased, with `\`, `%` and `_` escaped so they
/// match themselves.
pub(crate) fn contains_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.to_lowercase().chars() {
        if matches!(c, '\\' | '%' | '_') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// Implements [`crate::Store`] for a SQL store type the same way for both databases: writes go
/// to the type's own `apply_batch`, reads run the [`Sql`] queries on its `pool` (of database
/// `$db`). Text a caller passes (keys, ids, names, filter values) first goes through the type's
/// `stored_text`, the form in which that store keeps text.
macro_rules! impl_sql_store {
    ($store:ty, $db:ty) => {
        impl $store {
            /// [`Self::stored_text`] of an optional filter value.
            fn stored_opt(s: &Option<String>) -> Option<String> {
                s.as_deref().map(|s| Self::stored_text(s).into_owned())
            }
        }

        #[async_trait::async_trait]
        impl $crate::Store for $store {
            async fn apply(
                &self,
                ops: &[$crate::WriteOp],
                sealer: Option<&$crate::chain::Sealer>,
            ) -> $crate::StoreResult<Vec<$crate::WriteOutcome>> {
                self.apply_batch(ops, sealer).await
            }

            async fn get(
                &self,
                id: cadre_proto::TaskId,
            ) -> $crate::StoreResult<Option<cadre_proto::TaskRecord>> {
                self.get_task(id).await
            }

            async fn get_many(
                &self,
                ids: &[cadre_proto::TaskId],
            ) -> $crate::StoreResult<Vec<cadre_proto::TaskRecord>> {
                self.get_tasks(ids).await
            }

            async fn depth(&self, id: cadre_proto::TaskId) -> $crate::StoreResult<Option<u32>> {
                let depth: Option<i64> = $crate::query::Sql::<$db>::depth(id)
                    .build_query_scalar()
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(depth.map(|d| u32::try_from(d).unwrap_or(u32::MAX)))
            }

            fn reads_in_batches(&self) -> bool {
                Self::READS_IN_BATCHES
            }

            async fn find_idempotent(
                &self,
                tenant: &str,
                key: &str,
            ) -> $crate::StoreResult<Option<cadre_proto::TaskRecord>> {
                let id: Option<String> = $crate::query::Sql::<$db>::idempotent(
                    &Self::stored_text(tenant),
                    &Self::stored_text(key),
                )
                .build_query_scalar()
                .fetch_optional(&self.pool)
                .await?;
                match id {
                    Some(id) => self.get($crate::rows::parse_id(&id)?).await,
                    None => Ok(None),
                }
            }

            async fn list(
                &self,
                f: &$crate::TaskFilter,
            ) -> $crate::StoreResult<Vec<cadre_proto::TaskRecord>> {
                let f = &$crate::TaskFilter {
                    tenant: Self::stored_opt(&f.tenant),
                    type_prefix: Self::stored_opt(&f.type_prefix),
                    error_contains: Self::stored_opt(&f.error_contains),
                    ..f.clone()
                };
                $crate::rows::TaskRow::records(
                    $crate::query::Sql::<$db>::list(f)
                        .build_query_as()
                        .fetch_all(&self.pool)
                        .await?,
                )
            }

            async fn events_after(
                &self,
                after: u64,
                f: &$crate::EventFilter,
                limit: u32,
            ) -> $crate::StoreResult<Vec<cadre_proto::TaskEvent>> {
                use $crate::rows::EventRow;
                let f = &$crate::EventFilter {
                    tenant: Self::stored_opt(&f.tenant),
                    type_prefix: Self::stored_opt(&f.type_prefix),
                    ..f.clone()
                };
                let rows: Vec<EventRow> = $crate::query::Sql::<$db>::events_after(after, f, limit)
                    .build_query_as()
                    .fetch_all(&self.pool)
                    .await?;
                rows.into_iter().map(EventRow::into_event).collect()
            }

            async fn unfinished(
                &self,
                supervisor: Option<&str>,
            ) -> $crate::StoreResult<Vec<cadre_proto::TaskRecord>> {
                $crate::rows::TaskRow::records(
                    $crate::query::Sql::<$db>::unfinished(supervisor)
                        .build_query_as()
                        .fetch_all(&self.pool)
                        .await?,
                )
            }

            async fn count_unfinished(&self) -> $crate::StoreResult<std::collections::HashMap<String, u64>> {
                let rows: Vec<(String, i64)> = $crate::query::Sql::<$db>::count_unfinished()
                    .build_query_as()
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows.into_iter().map(|(t, n)| (t, n as u64)).collect())
            }

            async fn ping(&self) -> $crate::StoreResult<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn max_cursor(&self) -> $crate::StoreResult<u64> {
                let (max,): (Option<i64>,) = sqlx::query_as("SELECT MAX(cursor) FROM events")
                    .fetch_one(&self.pool)
                    .await?;
                Ok(max.unwrap_or(0).max(0) as u64)
            }

            async fn audit_tail(&self) -> $crate::StoreResult<$crate::chain::ChainTail> {
                let row: Option<(i64, String)> = $crate::query::Sql::<$db>::audit_tail()
                    .build_query_as()
                    .fetch_optional(&self.pool)
                    .await?;
                Ok($crate::ops::audit_tail_of(row))
            }

            async fn audit_records(
                &self,
                target: Option<&str>,
            ) -> $crate::StoreResult<Vec<$crate::chain::AuditRecord>> {
                use $crate::rows::AuditRow;
                let target = target.map(Self::stored_text);
                let rows: Vec<AuditRow> = $crate::query::Sql::<$db>::audit_records(target.as_deref())
                    .build_query_as()
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows.into_iter().map(AuditRow::into_record).collect())
            }

            async fn usage(
                &self,
                f: &$crate::UsageFilter,
            ) -> $crate::StoreResult<Vec<cadre_proto::v1::ModelUsage>> {
                let f = &$crate::UsageFilter {
                    tenant: Self::stored_opt(&f.tenant),
                    day: Self::stored_opt(&f.day),
                    ..f.clone()
                };
                let rows: Vec<$crate::rows::UsageRow> = $crate::query::Sql::<$db>::usage(f)
                    .build_query_as()
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows
                    .into_iter()
                    .map(cadre_proto::v1::ModelUsage::from)
                    .collect())
            }

            async fn insert_api_key(&self, k: &$crate::ApiKeyRecord) -> $crate::StoreResult<()> {
                let k = $crate::ApiKeyRecord {
                    id: Self::stored_text(&k.id).into_owned(),
                    name: Self::stored_text(&k.name).into_owned(),
                    tenant: Self::stored_text(&k.tenant).into_owned(),
                    ..k.clone()
                };
                $crate::query::Sql::<$db>::insert_api_key(&k)
                    .build()
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn api_keys(&self) -> $crate::StoreResult<Vec<$crate::ApiKeyRecord>> {
                use $crate::rows::ApiKeyRow;
                let rows: Vec<ApiKeyRow> = $crate::query::Sql::<$db>::api_keys()
                    .build_query_as()
                    .fetch_all(&self.pool)
                    .await?;
                rows.into_iter().map(ApiKeyRow::into_record).collect()
            }

            async fn revoke_api_key(&self, id: &str, at_ms: i64) -> $crate::StoreResult<bool> {
                let n = $crate::query::Sql::<$db>::revoke_api_key(&Self::stored_text(id), at_ms)
                    .build()
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                Ok(n == 1)
            }
        }
    };
}
pub(super) use impl_sql_store;

#[cfg(test)]
mod tests {
    use super::contains_pattern;

    #[test]
    fn contains_patterns_escape_like_wildcards() {
        assert_eq!(contains_pattern("Boom"), "%boom%");
        assert_eq!(contains_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
        assert_eq!(contains_pattern(""), "%%");
    }
}
