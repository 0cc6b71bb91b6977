//! The JSON API of LLM call records (docs/HTTP_API.md, "LLM calls"): `GET /v1/llm-calls`,
//! AdminService.ListLlmCalls over HTTP. The core checks the filters and decides the tenant
//! scope ([`cadre_core::llm_calls`]); this file translates.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use cadre_core::auth::Action;
use cadre_core::node::Node;
use cadre_proto::v1;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::api::{ApiResult, Pairs, answer, authorize, invalid, query, query_num, query_one};
use crate::http::views::ErrorBody;

type Shared = Arc<Node>;

/// The query keys `GET /v1/llm-calls` takes.
const KEYS: [&str; 8] = [
    "task_id", "tenant", "model", "provider", "since_ms", "until_ms", "limit", "cursor",
];

/// The LLM call routes, each registered with its OpenAPI description.
pub fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new().routes(routes!(list))
}

/// A model of a fallback chain that did not answer.
#[derive(Serialize, ToSchema)]
pub struct LlmFallbackView {
    /// Its provider.
    pub provider: String,
    /// The model.
    pub model: String,
    /// Why it did not answer (short).
    pub error: String,
}

/// One model call as recorded.
#[derive(Serialize, ToSchema)]
pub struct LlmCallView {
    /// The record's id (newer records have larger ids), as a string.
    pub id: String,
    /// The task that made the call.
    pub task_id: String,
    /// Its tenant.
    pub tenant: String,
    /// The attempt that made it.
    pub attempt: u32,
    /// The provider that answered.
    pub provider: String,
    /// The model the task asked for.
    pub model_requested: String,
    /// The model that answered.
    pub model_used: String,
    /// The models tried first that did not answer, in order.
    pub fallbacks: Vec<LlmFallbackView>,
    /// When the call started, Unix ms.
    pub started_at_ms: i64,
    /// Milliseconds to the first token of a streamed reply; null when not streamed.
    pub first_token_ms: Option<u64>,
    /// Milliseconds the call took, fallbacks included.
    pub total_ms: u64,
    /// Prompt tokens.
    pub tokens_in: u64,
    /// Completion tokens.
    pub tokens_out: u64,
    /// USD at the node's prices.
    pub cost_usd: f64,
    /// Why the reply ended (`stop`, `length`, `tool_calls`, ...).
    pub finish_reason: String,
    /// Served from the response cache.
    pub cache_hit: bool,
    /// The task's trace id ("" when traces are not exported).
    pub trace_id: String,
    /// The prompt as text, redacted and bounded; null unless the node keeps prompts.
    pub prompt: Option<String>,
    /// The reply as text, likewise.
    pub reply: Option<String>,
}

impl From<v1::LlmCall> for LlmCallView {
    fn from(c: v1::LlmCall) -> Self {
        LlmCallView {
            id: c.id.to_string(),
            task_id: c.task_id,
            tenant: c.tenant,
            attempt: c.attempt,
            provider: c.provider,
            model_requested: c.model_requested,
            model_used: c.model_used,
            fallbacks: c
                .fallbacks
                .into_iter()
                .map(|f| LlmFallbackView {
                    provider: f.provider,
                    model: f.model,
                    error: f.error,
                })
                .collect(),
            started_at_ms: c.started_at_ms,
            first_token_ms: c.first_token_ms,
            total_ms: c.total_ms,
            tokens_in: c.tokens_in,
            tokens_out: c.tokens_out,
            cost_usd: c.cost_usd,
            finish_reason: c.finish_reason,
            cache_hit: c.cache_hit,
            trace_id: c.trace_id,
            prompt: c.prompt,
            reply: c.reply,
        }
    }
}

/// One page of call records.
#[derive(Serialize, ToSchema)]
pub struct LlmCallPage {
    /// Newest first.
    pub calls: Vec<LlmCallView>,
    /// Pass as `cursor` for the next page; null when there is none.
    pub next_cursor: Option<String>,
}

/// `GET /v1/llm-calls`.
#[utoipa::path(
    get,
    path = "/v1/llm-calls",
    tag = "admin",
    operation_id = "list_llm_calls",
    summary = "Model call records, newest first",
    description = "One record per model call of llm tasks (the gateway's included). Observer \
        role; a tenant sees only its own calls, a commander every tenant's or the one it names. \
        `prompt` and `reply` are null unless the node keeps them (`[llm_calls] capture_prompts`).",
    params(
        ("task_id" = Option<String>, Query, description = "Only this task's calls."),
        ("tenant" = Option<String>, Query, description = "Commanders: this tenant only (others always get their own)."),
        ("model" = Option<String>, Query, description = "Only calls that asked for or were answered by this model."),
        ("provider" = Option<String>, Query, description = "Only calls answered by this provider."),
        ("since_ms" = Option<i64>, Query, description = "Only calls started at or after this time (Unix ms)."),
        ("until_ms" = Option<i64>, Query, description = "Only calls started before this time (Unix ms)."),
        ("limit" = Option<u32>, Query, description = "At most this many (1-1000, default 100)."),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page."),
    ),
    responses(
        (status = 200, description = "One page of call records", body = LlmCallPage),
        (status = 400, description = "A bad filter or cursor", body = ErrorBody),
    ),
)]
async fn list(
    State(node): State<Shared>,
    headers: HeaderMap,
    q: Result<Query<Pairs>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    if let Some((k, _)) = q.iter().find(|(k, _)| !KEYS.contains(&k.as_str())) {
        return Err(invalid(
            "query",
            format!("unknown parameter {k:?} (known: {})", KEYS.join(", ")),
        ));
    }
    let p = authorize(&node, &headers, Action::ReadUsage).await?;
    let text = |k: &str| query_one(&q, k).unwrap_or_default().to_string();
    let limit = match query_num::<u32>(&q, "limit")? {
        Some(0) => return Err(invalid("limit", "must be 1 to 1000")),
        n => n.unwrap_or(0),
    };
    let req = v1::ListLlmCallsRequest {
        task_id: text("task_id"),
        tenant: text("tenant"),
        model: text("model"),
        provider: text("provider"),
        since_ms: query_num(&q, "since_ms")?,
        until_ms: query_num(&q, "until_ms")?,
        limit,
        cursor: text("cursor"),
    };
    let r = node.list_llm_calls(&p, &req).await?;
    let page = LlmCallPage {
        calls: r.calls.into_iter().map(LlmCallView::from).collect(),
        next_cursor: (!r.next_cursor.is_empty()).then_some(r.next_cursor),
    };
    answer(StatusCode::OK, page)
}
