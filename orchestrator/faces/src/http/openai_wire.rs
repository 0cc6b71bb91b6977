//! The OpenAI wire shapes of the model gateway (docs/GATEWAY_API.md): the error answer
//! (`{"error": {"message", "type", "param", "code"}}` with its status and retry headers,
//! [`OpenAiError`]), how a finished task that did not succeed maps to one ([`failure`]), and
//! what a succeeded `llm` task answered ([`Reply`]), shared by the JSON answer
//! ([`super::openai_api`]) and the streamed one ([`super::openai_stream`]).

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cadre_proto::clock::now_ms;
use cadre_proto::{SpecError, TaskRecord, TaskState};
use serde::Serialize;
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use cadre_core::error::Error;

/// The header naming the task that served a request.
pub const TASK_HEADER: &str = "x-cadre-task-id";

/// OpenAI's error body.
#[derive(Serialize, ToSchema)]
pub struct OpenAiErrorBody {
    /// The error.
    pub error: OpenAiErrorDetail,
}

/// What went wrong, as OpenAI says it.
#[derive(Serialize, ToSchema)]
pub struct OpenAiErrorDetail {
    /// Why, for a person.
    pub message: String,
    /// The class: `invalid_request_error`, `authentication_error`, `permission_error`,
    /// `not_found_error`, `rate_limit_error`, `insufficient_quota`, `server_error`,
    /// `upstream_error`, `timeout_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The request field at fault, when one is.
    pub param: Option<String>,
    /// A stable code (docs/GATEWAY_API.md, "Errors").
    pub code: Option<String>,
}

/// An answer in OpenAI's error shape, with its status and retry advice.
#[derive(Debug)]
pub struct OpenAiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// `error.type`.
    pub kind: &'static str,
    /// `error.code`.
    pub code: &'static str,
    /// `error.message`.
    pub message: String,
    /// `error.param`.
    pub param: Option<Box<str>>,
    /// `Retry-After` (and `retry-after-ms`), when waiting helps.
    pub retry_after: Option<Duration>,
    /// `x-should-retry: false` for answers a retry would repeat.
    pub no_retry: bool,
    /// `x-cadre-task-id`, when a task was made.
    pub task: Option<Box<str>>,
}

impl OpenAiError {
    /// An error of `status` with no retry advice.
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        OpenAiError {
            status,
            kind,
            code,
            message: message.into(),
            param: None,
            retry_after: None,
            no_retry: false,
            task: None,
        }
    }

    /// A 400 about `param`.
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_argument",
            message,
        );
        e.param = Some(param.into());
        e
    }

    /// A 400 for a parameter cadre does not support (it is refused, never silently dropped).
    pub fn unsupported(param: &str, why: &str) -> Self {
        let mut e = Self::invalid(
            param,
            format!("`{param}` is not supported by this gateway: {why}"),
        );
        e.code = "unsupported_parameter";
        e
    }

    /// The same error, telling the client to wait `d` before asking again.
    pub fn retry_after(mut self, d: Duration) -> Self {
        self.retry_after = Some(d);
        self
    }

    /// The same error, telling the client not to retry (`x-should-retry: false`).
    pub fn not_retried(mut self) -> Self {
        self.no_retry = true;
        self
    }

    /// The same error, naming the task that served the request.
    pub fn for_task(mut self, task: &TaskRecord) -> Self {
        self.task = Some(task.id.to_string().into());
        self
    }

    /// The `{"error": ...}` body as JSON (also sent as an SSE frame after a stream started).
    pub fn body(&self) -> Value {
        json!({ "error": {
            "message": self.message, "type": self.kind, "param": self.param, "code": self.code,
        }})
    }
}

impl From<Error> for OpenAiError {
    fn from(e: Error) -> Self {
        use StatusCode as S;
        let message = e.to_string();
        match e {
            Error::Unauthenticated(_) => Self::new(
                S::UNAUTHORIZED,
                "authentication_error",
                "unauthenticated",
                message,
            ),
            Error::PermissionDenied(_) => {
                Self::new(S::FORBIDDEN, "permission_error", "permission_denied", message)
            }
            Error::Spec(SpecError::Invalid { field, .. }) => Self::invalid(&field, message),
            Error::Spec(SpecError::TooLarge { .. }) => Self::new(
                S::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                "payload_too_large",
                message,
            ),
            Error::NotFound(_) => Self::new(S::NOT_FOUND, "not_found_error", "not_found", message),
            Error::AlreadyExists(_) | Error::FailedPrecondition(_) => Self::new(
                S::BAD_REQUEST,
                "invalid_request_error",
                "failed_precondition",
                message,
            ),
            Error::RateLimited { retry_after, .. } => Self::new(
                S::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "rate_limit_exceeded",
                message,
            )
            .retry_after(retry_after),
            Error::Exhausted(_) => Self::new(
                S::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "resource_exhausted",
                message,
            )
            .retry_after(Duration::from_secs(1)),
            Error::OverBudget(_) => Self::new(
                S::TOO_MANY_REQUESTS,
                "insufficient_quota",
                "budget_exceeded",
                message,
            )
            .retry_after(until_next_utc_day())
            .not_retried(),
            Error::Unavailable(_) => {
                Self::new(S::SERVICE_UNAVAILABLE, "server_error", "unavailable", message)
                    .retry_after(Duration::from_secs(1))
            }
            Error::DeadlineExceeded(_) => {
                Self::new(S::GATEWAY_TIMEOUT, "timeout_error", "deadline_exceeded", message)
            }
        }
    }
}

/// Until the next UTC midnight, when daily budgets start again.
fn until_next_utc_day() -> Duration {
    const DAY_MS: i64 = 86_400_000;
    let now = now_ms();
    Duration::from_millis((DAY_MS - now.rem_euclid(DAY_MS)).max(1000) as u64)
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        let headers = resp.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(after) = self.retry_after {
            let secs = after.as_secs_f64().ceil().max(1.0) as u64;
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
            headers.insert(
                "retry-after-ms",
                HeaderValue::from(after.as_millis().max(1) as u64),
            );
        }
        if self.no_retry {
            headers.insert("x-should-retry", HeaderValue::from_static("false"));
        }
        if let Some(id) = self.task.as_deref().and_then(|t| HeaderValue::from_str(t).ok()) {
            headers.insert(TASK_HEADER, id);
        }
        resp
    }
}

/// The answer of a task that did not succeed (`record.state` terminal, not SUCCEEDED):
///
/// | the task | status | `code` |
/// |---|---|---|
/// | TIMED_OUT, or every model of the chain timed out | 504 | `upstream_timeout` |
/// | failed on invalid params (the executor's own checks) | 400 | `invalid_argument` |
/// | a provider refused the request (400/413/422) | 400 | `upstream_refused` |
/// | every model rate-limited, or put back too often | 429 + Retry-After | `upstream_rate_limited` |
/// | the reply did not fit `response_format` after the executor's one retry | 502 | `response_schema_mismatch` |
/// | every model unreachable or failing (5xx, 401/403/404 of a provider, bad replies) | 502 | `upstream_error` |
/// | CANCELLED | 503 | `cancelled` |
pub fn failure(record: &TaskRecord) -> OpenAiError {
    use StatusCode as S;
    let why = record.error.clone().unwrap_or_default();
    let message = format!("task {} {}: {why}", record.id, record.state);
    let e = match record.state {
        TaskState::TimedOut => upstream_timeout(message),
        TaskState::Cancelled => {
            OpenAiError::new(S::SERVICE_UNAVAILABLE, "server_error", "cancelled", message)
        }
        _ if why.starts_with("invalid params:") => OpenAiError::new(
            S::BAD_REQUEST,
            "invalid_request_error",
            "invalid_argument",
            message,
        ),
        _ if why.contains("refused the request") => OpenAiError::new(
            S::BAD_REQUEST,
            "invalid_request_error",
            "upstream_refused",
            message,
        ),
        _ if why.contains("rate-limited") => OpenAiError::new(
            S::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "upstream_rate_limited",
            message,
        )
        .retry_after(Duration::from_secs(1)),
        _ if why.contains("does not fit response_schema") => OpenAiError::new(
            S::BAD_GATEWAY,
            "upstream_error",
            "response_schema_mismatch",
            message,
        )
        .not_retried(),
        _ if all_timed_out(&why) => upstream_timeout(message),
        _ => OpenAiError::new(S::BAD_GATEWAY, "upstream_error", "upstream_error", message),
    };
    e.for_task(record)
}

/// The 504 of a task whose providers, or itself, timed out.
fn upstream_timeout(message: String) -> OpenAiError {
    OpenAiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        "timeout_error",
        "upstream_timeout",
        message,
    )
}

/// Whether an `llm` failure's summary (`no model answered: <model> (<provider>): <why>; ...`)
/// says every model timed out (`no reply within <n> ms`, `no chunk within ...`).
fn all_timed_out(why: &str) -> bool {
    let Some(summary) = why.strip_prefix("no model answered: ") else {
        return false;
    };
    // Each attempt's reason, the last followed by the supervisor's ` (attempt n of m)`.
    summary.split("; ").all(|attempt| {
        attempt.split_once(" within ").is_some_and(|(_, rest)| {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            digits > 0 && rest[digits..].starts_with(" ms")
        })
    })
}

/// The 429 of a task put back for an upstream rate limit (the core cancelled it).
pub(crate) fn held(task: &TaskRecord, after: Duration, why: &str) -> OpenAiError {
    OpenAiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limit_error",
        "upstream_rate_limited",
        format!(
            "every provider of the model is rate-limited; task {} was cancelled ({why})",
            task.id
        ),
    )
    .retry_after(after)
    .for_task(task)
}

/// `resp` with the task's id in [`TASK_HEADER`] and `x-request-id`.
pub(crate) fn with_task(mut resp: Response, task: &TaskRecord) -> Response {
    if let Ok(v) = HeaderValue::from_str(&task.id.to_string()) {
        resp.headers_mut().insert(TASK_HEADER, v.clone());
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// What a succeeded `llm` task answered, as OpenAI says it.
pub(crate) struct Reply {
    /// `chatcmpl-<task id>`.
    pub id: String,
    /// Unix seconds of the task's creation.
    pub created: i64,
    /// The model that answered (a fallback's name when the chain fell back).
    pub model: String,
    /// The text: the JSON value itself under `response_format`, else the reply as given.
    pub content: Option<String>,
    /// The tool calls the model asked for.
    pub tool_calls: Vec<Value>,
    /// `stop`, `length`, `tool_calls`, ...
    pub finish_reason: String,
    /// (prompt, completion) tokens.
    pub tokens: (u64, u64),
}

impl Reply {
    /// The reply of `record` (SUCCEEDED) to a request for `model`.
    pub fn of(record: &TaskRecord, model: &str) -> Self {
        let r = record.result.clone().unwrap_or(Value::Null);
        let tool_calls = r["tool_calls"].as_array().cloned().unwrap_or_default();
        let content = match (&r["json"], r["content"].as_str()) {
            (Value::Null, Some(text)) => Some(text.to_string()),
            (Value::Null, None) => None,
            (json, _) => Some(json.to_string()),
        };
        let content = content.filter(|c| !c.is_empty() || tool_calls.is_empty());
        let finish_reason = match r["finish_reason"].as_str() {
            _ if !tool_calls.is_empty() => "tool_calls".to_string(),
            Some(f) => f.to_string(),
            None => "stop".to_string(),
        };
        Reply {
            id: format!("chatcmpl-{}", record.id),
            created: record.created_at_ms / 1000,
            model: r["model"].as_str().unwrap_or(model).to_string(),
            content,
            tool_calls,
            finish_reason,
            tokens: (
                r["usage"]["tokens_in"].as_u64().unwrap_or(0),
                r["usage"]["tokens_out"].as_u64().unwrap_or(0),
            ),
        }
    }

    /// The assistant message.
    pub fn message(&self) -> Value {
        let mut m = Map::new();
        m.insert("role".into(), json!("assistant"));
        m.insert("content".into(), json!(self.content));
        if !self.tool_calls.is_empty() {
            m.insert("tool_calls".into(), Value::Array(self.tool_calls.clone()));
        }
        Value::Object(m)
    }

    /// OpenAI's `usage`.
    pub fn usage(&self) -> Value {
        let (p, c) = self.tokens;
        json!({ "prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_told_from_other_failures() {
        assert!(all_timed_out(
            "no model answered: a (p): no reply within 100 ms; b (q): no chunk within 50 ms (attempt 1 of 1)"
        ));
        assert!(!all_timed_out(
            "no model answered: a (p): no reply within 100 ms; b (q): HTTP 500: boom"
        ));
        assert!(!all_timed_out("invalid params: x"));
    }

    #[test]
    fn errors_have_openai_shape_and_retry_advice() {
        let e = OpenAiError::from(Error::RateLimited {
            message: "slow down".into(),
            retry_after: Duration::from_millis(1500),
        });
        let resp = e.into_response();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "2");
        assert_eq!(resp.headers()["retry-after-ms"], "1500");
        let e = OpenAiError::from(Error::OverBudget("spent".into()));
        assert!(e.no_retry && e.retry_after.is_some(), "{e:?}");
        assert_eq!(
            e.body(),
            json!({"error": {"message": "spent", "type": "insufficient_quota", "param": null, "code": "budget_exceeded"}})
        );
    }
}
