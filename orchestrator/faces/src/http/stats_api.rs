//! The JSON API of the dashboard's charts (docs/HTTP_API.md, "Stats for charts"):
//! `GET /v1/stats/tasks` (finished tasks and latency percentiles per minute),
//! `GET /v1/stats/queues` (each pool's sampled queue depth) and `GET /v1/stats/usage` (tokens
//! and cost per day, tenant and model). The core decides everything, tenant scope included
//! ([`cadre_core::stats`]); this file translates.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use cadre_core::auth::Action;
use cadre_core::node::Node;
use cadre_core::stats;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::api::{ApiResult, Pairs, answer, authorize, query, query_num, query_one};

type Shared = Arc<Node>;

/// The stats routes, each registered with its OpenAPI description.
pub fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(task_stats))
        .routes(routes!(queue_history))
        .routes(routes!(usage_by_day))
}

/// Finished tasks per bucket.
#[derive(Serialize, ToSchema)]
pub struct TaskStatsView {
    /// The window's start (Unix ms, inclusive; a bucket boundary).
    pub from_ms: i64,
    /// Its end (exclusive): the end of the current bucket.
    pub to_ms: i64,
    /// The bucket's length in ms.
    pub bucket_ms: i64,
    /// Whose tasks: a tenant, or null for every tenant (commanders only).
    pub tenant: Option<String>,
    /// One per bucket, oldest first, empty ones included.
    pub buckets: Vec<TaskBucketView>,
    /// 1 when the percentiles come from every task; n: from about one task in n.
    pub latency_sample_every: i64,
}

/// One bucket of [`TaskStatsView`].
#[derive(Serialize, ToSchema)]
pub struct TaskBucketView {
    /// Its start (Unix ms).
    pub start_ms: i64,
    /// Tasks that succeeded in it.
    pub succeeded: u64,
    /// Tasks that failed.
    pub failed: u64,
    /// Tasks cancelled.
    pub cancelled: u64,
    /// Tasks that timed out.
    pub timed_out: u64,
    /// Latency (finish minus creation) percentiles of its succeeded and failed tasks; null
    /// when none finished.
    pub latency_ms: Option<PercentilesView>,
}

/// Latency percentiles in ms (nearest rank).
#[derive(Serialize, ToSchema)]
pub struct PercentilesView {
    /// Latencies they were taken from.
    pub count: u64,
    /// Median.
    pub p50: i64,
    /// 90th percentile.
    pub p90: i64,
    /// 99th percentile.
    pub p99: i64,
}

/// Each pool's sampled queue depth.
#[derive(Serialize, ToSchema)]
pub struct QueueHistoryView {
    /// The tier-0 process that sampled them (each replica samples its own, in memory: the
    /// history starts empty when it starts).
    pub node_id: String,
    /// How often it samples, ms.
    pub interval_ms: i64,
    /// Samples kept per pool.
    pub capacity: usize,
    /// By supervisor and worker kind.
    pub pools: Vec<PoolSeriesView>,
}

/// One pool's queue depths.
#[derive(Serialize, ToSchema)]
pub struct PoolSeriesView {
    /// The supervisor.
    pub supervisor: String,
    /// The worker kind.
    pub worker_kind: String,
    /// `[at_ms, depth]` pairs, oldest first.
    pub samples: Vec<[i64; 2]>,
}

/// Usage per UTC day, tenant and model.
#[derive(Serialize, ToSchema)]
pub struct UsageByDayView {
    /// The first day, `YYYY-MM-DD`.
    pub from_day: String,
    /// The last day: today (UTC).
    pub to_day: String,
    /// By day, tenant and model (days without usage have no row).
    pub rows: Vec<DailyUsageView>,
    /// Whether rows were left out (at most 10,000 are answered).
    pub truncated: bool,
}

/// Usage of one tenant and model on one day.
#[derive(Serialize, ToSchema)]
pub struct DailyUsageView {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// The tenant.
    pub tenant: String,
    /// The model.
    pub model: String,
    /// Prompt tokens.
    pub tokens_in: i64,
    /// Completion tokens.
    pub tokens_out: i64,
    /// Cost in US dollars.
    pub cost_usd: f64,
}

impl From<stats::TaskStats> for TaskStatsView {
    fn from(s: stats::TaskStats) -> Self {
        let buckets = s
            .buckets
            .into_iter()
            .map(|b| TaskBucketView {
                start_ms: b.start_ms,
                succeeded: b.succeeded,
                failed: b.failed,
                cancelled: b.cancelled,
                timed_out: b.timed_out,
                latency_ms: b.latency.map(|p| PercentilesView {
                    count: p.count,
                    p50: p.p50,
                    p90: p.p90,
                    p99: p.p99,
                }),
            })
            .collect();
        TaskStatsView {
            from_ms: s.from_ms,
            to_ms: s.to_ms,
            bucket_ms: s.bucket_ms,
            tenant: s.tenant,
            buckets,
            latency_sample_every: s.latency_sample_every,
        }
    }
}

/// `GET /v1/stats/tasks`.
#[utoipa::path(
    get,
    path = "/v1/stats/tasks",
    tag = "stats",
    operation_id = "task_stats",
    summary = "Tasks finished per minute and their latency percentiles",
    description = "From the store: the same on every tier-0 replica. Non-commanders get their own tenant's tasks.",
    params(
        ("window_minutes" = Option<u32>, Query, description = "How far back (default 60, at most 1440)."),
        ("bucket_seconds" = Option<u32>, Query, description = "Bucket length (default 60, at least 10; at most 360 buckets)."),
        ("tenant" = Option<String>, Query, description = "Commanders: this tenant only (default every tenant)."),
    ),
    responses((status = 200, description = "Counts and percentiles per bucket", body = TaskStatsView)),
)]
async fn task_stats(
    State(node): State<Shared>,
    headers: HeaderMap,
    q: Result<Query<Pairs>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    let window = query_num::<u32>(&q, "window_minutes")?.map(|m| i64::from(m) * 60_000);
    let bucket = query_num::<u32>(&q, "bucket_seconds")?.map(|s| i64::from(s) * 1_000);
    let p = authorize(&node, &headers, Action::ListTasks).await?;
    let tenant = query_one(&q, "tenant").unwrap_or_default();
    let s = node.task_stats(&p, tenant, window, bucket).await?;
    answer(StatusCode::OK, TaskStatsView::from(s))
}

/// `GET /v1/stats/queues`.
#[utoipa::path(
    get,
    path = "/v1/stats/queues",
    tag = "stats",
    operation_id = "queue_history",
    summary = "Each pool's queue depth over the last hour (supervisor role)",
    description = "Sampled every 10 s in the answering process's memory: empty after it starts, and each tier-0 replica has its own.",
    responses((status = 200, description = "The samples per pool", body = QueueHistoryView)),
)]
async fn queue_history(State(node): State<Shared>, headers: HeaderMap) -> ApiResult {
    let p = authorize(&node, &headers, Action::Status).await?;
    let h = node.queue_history(&p).await?;
    let pools = h
        .pools
        .into_iter()
        .map(|s| PoolSeriesView {
            supervisor: s.supervisor,
            worker_kind: s.worker_kind,
            samples: s.samples.into_iter().map(|(at, d)| [at, i64::from(d)]).collect(),
        })
        .collect();
    let view = QueueHistoryView {
        node_id: h.node_id,
        interval_ms: h.interval_ms,
        capacity: h.capacity,
        pools,
    };
    answer(StatusCode::OK, view)
}

/// `GET /v1/stats/usage`.
#[utoipa::path(
    get,
    path = "/v1/stats/usage",
    tag = "stats",
    operation_id = "usage_by_day",
    summary = "Tokens and cost per day, tenant and model",
    description = "Non-commanders get their own tenant's usage.",
    params(
        ("days" = Option<u32>, Query, description = "Days back, today included (default 30, at most 90)."),
        ("tenant" = Option<String>, Query, description = "Commanders: this tenant only (default every tenant)."),
    ),
    responses((status = 200, description = "Usage per day, tenant and model", body = UsageByDayView)),
)]
async fn usage_by_day(
    State(node): State<Shared>,
    headers: HeaderMap,
    q: Result<Query<Pairs>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    let days = query_num::<u32>(&q, "days")?;
    let p = authorize(&node, &headers, Action::ReadUsage).await?;
    let tenant = query_one(&q, "tenant").unwrap_or_default();
    let u = node.usage_by_day(&p, tenant, days).await?;
    let rows = u
        .rows
        .into_iter()
        .map(|r| DailyUsageView {
            day: r.day,
            tenant: r.tenant,
            model: r.model,
            tokens_in: r.tokens_in,
            tokens_out: r.tokens_out,
            cost_usd: r.cost_usd,
        })
        .collect();
    let view = UsageByDayView {
        from_day: u.from_day,
        to_day: u.to_day,
        rows,
        truncated: u.truncated,
    };
    answer(StatusCode::OK, view)
}
