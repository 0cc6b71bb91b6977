//! LLM call records (`llm_calls`): one row per model call, stored in the same transaction as
//! the call's usage report (a [`crate::WriteOp::Usage`] whose [`cadre_agents::Usage`] carries
//! the call's details), with the tenant of its task; listed newest first through
//! [`LlmCallStore`]; deleted with their task by retention.
//!
//! The prompt and reply arrive already redacted and bounded by tier 0 (or absent when the node
//! does not keep them): the store keeps what it is given.

use async_trait::async_trait;
use cadre_agents::executor::Fallback;
use cadre_proto::TaskId;

use crate::StoreResult;
use crate::plan::UsageRecord;

/// Most records one [`LlmCallStore::llm_calls`] page returns.
pub const MAX_PAGE: u32 = 1000;

/// Which call records to list (every filter optional), newest first.
#[derive(Clone, Debug, Default)]
pub struct LlmCallFilter {
    /// Only this tenant's calls (None = every tenant).
    pub tenant: Option<String>,
    /// Only the calls of this task.
    pub task_id: Option<TaskId>,
    /// Only calls that asked for or were answered by this model.
    pub model: Option<String>,
    /// Only calls answered by this provider.
    pub provider: Option<String>,
    /// Only calls started at or after this time, Unix milliseconds.
    pub since_ms: Option<i64>,
    /// Only calls started before this time, Unix milliseconds.
    pub until_ms: Option<i64>,
    /// Only records with a smaller id (the next page after the record with this id).
    pub before_id: Option<i64>,
    /// Page size (at most [`MAX_PAGE`]).
    pub limit: u32,
}

/// One model call as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredLlmCall {
    /// The record's id (increasing in insert order; the paging cursor).
    pub id: i64,
    /// The task that made the call.
    pub task_id: String,
    /// Its tenant.
    pub tenant: String,
    /// The attempt that made it (0: not reported).
    pub attempt: u32,
    /// The provider that answered ("" for a cache hit the cache knew nothing about).
    pub provider: String,
    /// The model the task asked for.
    pub model_requested: String,
    /// The model that answered (the price table's key).
    pub model_used: String,
    /// The models tried first that did not answer, in order.
    pub fallbacks: Vec<Fallback>,
    /// When the call started, Unix milliseconds.
    pub started_at_ms: i64,
    /// Milliseconds to the first token of a streamed reply (None: not streamed).
    pub first_token_ms: Option<u64>,
    /// Milliseconds the call took, fallbacks included.
    pub total_ms: u64,
    /// Prompt tokens.
    pub tokens_in: u64,
    /// Completion tokens.
    pub tokens_out: u64,
    /// USD at the node's prices.
    pub cost_usd: f64,
    /// Why the reply ended, as the provider said.
    pub finish_reason: String,
    /// Served from the response cache.
    pub cache_hit: bool,
    /// The task's trace id ("" when traces were not exported).
    pub trace_id: String,
    /// The prompt as text (None unless the node keeps prompts).
    pub prompt: Option<String>,
    /// The reply as text (None unless the node keeps prompts).
    pub reply: Option<String>,
}

/// Reading call records.
#[async_trait]
pub trait LlmCallStore: Send + Sync {
    /// The records `filter` selects, newest (highest id) first, at most `filter.limit` (and at
    /// most [`MAX_PAGE`]).
    async fn llm_calls(&self, filter: &LlmCallFilter) -> StoreResult<Vec<StoredLlmCall>>;
}

/// The columns of a record, in the order [`CallRow`] and the inserts use.
pub(crate) const CALL_COLUMNS: &str = "task_id, tenant, attempt, provider, model_requested, model_used, \
     fallbacks, started_at_ms, first_token_ms, total_ms, tokens_in, tokens_out, cost_usd, \
     finish_reason, cache_hit, trace_id, prompt, reply";

/// A record to insert (or as read, without its id), its text as the store keeps it.
#[derive(sqlx::FromRow)]
pub(crate) struct CallInsert {
    task_id: String,
    tenant: String,
    attempt: i64,
    provider: String,
    model_requested: String,
    model_used: String,
    fallbacks: String,
    started_at_ms: i64,
    first_token_ms: Option<i64>,
    total_ms: i64,
    tokens_in: i64,
    tokens_out: i64,
    cost_usd: f64,
    finish_reason: String,
    cache_hit: bool,
    trace_id: String,
    prompt: Option<String>,
    reply: Option<String>,
}

impl CallInsert {
    /// The record of usage report `u`, each text passed through `text` (how the database keeps
    /// text). A report without a start time started when it was reported; one that names no
    /// requested model asked for the one that answered.
    pub(crate) fn new(u: &UsageRecord<'_>, text: impl Fn(&str) -> String) -> Self {
        let c = u.usage;
        let requested = if c.model_requested.is_empty() {
            &c.model
        } else {
            &c.model_requested
        };
        let fallbacks: Vec<Fallback> = c
            .fallbacks
            .iter()
            .map(|f| Fallback {
                provider: text(&f.provider),
                model: text(&f.model),
                error: text(&f.error),
            })
            .collect();
        CallInsert {
            task_id: u.task_id.to_string(),
            tenant: text(u.tenant),
            attempt: i64::from(c.attempt),
            provider: text(&c.provider),
            model_requested: text(requested),
            model_used: text(&c.model),
            fallbacks: serde_json::to_string(&fallbacks).unwrap_or_else(|_| "[]".into()),
            started_at_ms: if c.started_at_ms > 0 {
                c.started_at_ms
            } else {
                u.at_ms
            },
            first_token_ms: c.first_token_ms.map(clamp),
            total_ms: clamp(c.total_ms),
            tokens_in: clamp(c.tokens_in),
            tokens_out: clamp(c.tokens_out),
            cost_usd: u.cost_usd,
            finish_reason: text(&c.finish_reason),
            cache_hit: c.cache_hit,
            trace_id: text(&c.trace_id),
            prompt: c.prompt.as_deref().map(&text),
            reply: c.reply.as_deref().map(&text),
        }
    }
}

/// `v` as a BIGINT (saturating).
fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Inserts one record in a SQLite batch's transaction.
pub(crate) async fn sqlite_insert(conn: &mut sqlx::SqliteConnection, c: &CallInsert) -> StoreResult<()> {
    // The columns are a constant of this module; every value is bound.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO llm_calls ({CALL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )))
    .bind(&c.task_id)
    .bind(&c.tenant)
    .bind(c.attempt)
    .bind(&c.provider)
    .bind(&c.model_requested)
    .bind(&c.model_used)
    .bind(&c.fallbacks)
    .bind(c.started_at_ms)
    .bind(c.first_token_ms)
    .bind(c.total_ms)
    .bind(c.tokens_in)
    .bind(c.tokens_out)
    .bind(c.cost_usd)
    .bind(&c.finish_reason)
    .bind(c.cache_hit)
    .bind(&c.trace_id)
    .bind(&c.prompt)
    .bind(&c.reply)
    .execute(conn)
    .await?;
    Ok(())
}

/// Inserts a PostgreSQL batch's records in one statement, in its transaction (nothing to do
/// for none).
pub(crate) async fn pg_insert(conn: &mut sqlx::PgConnection, calls: &[CallInsert]) -> StoreResult<()> {
    if calls.is_empty() {
        return Ok(());
    }
    fn col<U>(rows: &[CallInsert], f: impl Fn(&CallInsert) -> U) -> Vec<U> {
        rows.iter().map(f).collect()
    }
    // The columns are a constant of this module; every value is bound.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO llm_calls ({CALL_COLUMNS}) SELECT * FROM UNNEST($1::text[], $2::text[], \
         $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bigint[], $9::bigint[], \
         $10::bigint[], $11::bigint[], $12::bigint[], $13::float8[], $14::text[], $15::bool[], \
         $16::text[], $17::text[], $18::text[])"
    )))
    .bind(col(calls, |c| c.task_id.clone()))
    .bind(col(calls, |c| c.tenant.clone()))
    .bind(col(calls, |c| c.attempt))
    .bind(col(calls, |c| c.provider.clone()))
    .bind(col(calls, |c| c.model_requested.clone()))
    .bind(col(calls, |c| c.model_used.clone()))
    .bind(col(calls, |c| c.fallbacks.clone()))
    .bind(col(calls, |c| c.started_at_ms))
    .bind(col(calls, |c| c.first_token_ms))
    .bind(col(calls, |c| c.total_ms))
    .bind(col(calls, |c| c.tokens_in))
    .bind(col(calls, |c| c.tokens_out))
    .bind(col(calls, |c| c.cost_usd))
    .bind(col(calls, |c| c.finish_reason.clone()))
    .bind(col(calls, |c| c.cache_hit))
    .bind(col(calls, |c| c.trace_id.clone()))
    .bind(col(calls, |c| c.prompt.clone()))
    .bind(col(calls, |c| c.reply.clone()))
    .execute(conn)
    .await?;
    Ok(())
}

/// A stored record as read.
#[derive(sqlx::FromRow)]
pub(crate) struct CallRow {
    id: i64,
    #[sqlx(flatten)]
    call: CallInsert,
}

impl From<CallRow> for StoredLlmCall {
    fn from(row: CallRow) -> Self {
        let n = |v: i64| v.max(0) as u64;
        let r = row.call;
        StoredLlmCall {
            id: row.id,
            task_id: r.task_id,
            tenant: r.tenant,
            attempt: u32::try_from(r.attempt.max(0)).unwrap_or(u32::MAX),
            provider: r.provider,
            model_requested: r.model_requested,
            model_used: r.model_used,
            // Written by this module; unreadable JSON would be a foreign row: no fallbacks.
            fallbacks: serde_json::from_str(&r.fallbacks).unwrap_or_default(),
            started_at_ms: r.started_at_ms,
            first_token_ms: r.first_token_ms.map(n),
            total_ms: n(r.total_ms),
            tokens_in: n(r.tokens_in),
            tokens_out: n(r.tokens_out),
            cost_usd: r.cost_usd,
            finish_reason: r.finish_reason,
            cache_hit: r.cache_hit,
            trace_id: r.trace_id,
            prompt: r.prompt,
            reply: r.reply,
        }
    }
}

/// Implements [`LlmCallStore`] for a SQL store type on its `pool` (of database `$db`); filter
/// text goes through the type's `stored_text` first, so what was written is found again.
macro_rules! impl_llm_call_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::llm_calls::LlmCallStore for $store {
            async fn llm_calls(
                &self,
                f: &$crate::llm_calls::LlmCallFilter,
            ) -> $crate::StoreResult<Vec<$crate::llm_calls::StoredLlmCall>> {
                let t = |v: &str| Self::stored_text(v).into_owned();
                let mut qb = sqlx::QueryBuilder::<$db>::new(format!(
                    "SELECT id, {} FROM llm_calls WHERE 1 = 1",
                    $crate::llm_calls::CALL_COLUMNS
                ));
                if let Some(v) = &f.tenant {
                    qb.push(" AND tenant = ").push_bind(t(v));
                }
                if let Some(v) = &f.task_id {
                    qb.push(" AND task_id = ").push_bind(v.to_string());
                }
                if let Some(v) = &f.model {
                    qb.push(" AND (model_used = ")
                        .push_bind(t(v))
                        .push(" OR model_requested = ")
                        .push_bind(t(v))
                        .push(")");
                }
                if let Some(v) = &f.provider {
                    qb.push(" AND provider = ").push_bind(t(v));
                }
                if let Some(v) = f.since_ms {
                    qb.push(" AND started_at_ms >= ").push_bind(v);
                }
                if let Some(v) = f.until_ms {
                    qb.push(" AND started_at_ms < ").push_bind(v);
                }
                if let Some(v) = f.before_id {
                    qb.push(" AND id < ").push_bind(v);
                }
                let limit = f.limit.min($crate::llm_calls::MAX_PAGE);
                qb.push(" ORDER BY id DESC LIMIT ")
                    .push_bind(i64::from(limit));
                let rows: Vec<$crate::llm_calls::CallRow> = qb.build_query_as().fetch_all(&self.pool).await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }
        }
    };
}
pub(crate) use impl_llm_call_store;
