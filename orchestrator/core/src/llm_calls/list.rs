//! `Node::list_llm_calls`: AdminService.ListLlmCalls, `GET /v1/llm-calls` and `cadre calls
//! list` decided in one place: the filters checked, the tenant scope applied (as usage's).

use cadre_proto::v1;
use cadre_proto::{SpecError, TaskId};
use cadre_store::{LlmCallFilter, StoredLlmCall};

use crate::auth::{Action, Principal};
use crate::error::Result;
use crate::node::Node;

/// Records per page when the caller does not say.
pub const DEFAULT_PAGE: u32 = 100;
/// Longest text filter (model, provider, tenant), in bytes.
const MAX_FILTER_BYTES: usize = 256;

impl Node {
    /// A page of model call records, newest first, within the principal's tenant scope (as
    /// [`Node::usage`]: a tenant sees its own, a commander all or the tenant it names).
    /// Bad filters (a task id that is no UUID, a limit over 1000, a malformed cursor, an empty
    /// time window, text over 256 bytes) are INVALID_ARGUMENT.
    pub async fn list_llm_calls(
        &self,
        p: &Principal,
        req: &v1::ListLlmCallsRequest,
    ) -> Result<v1::ListLlmCallsResponse> {
        self.permit(p, Action::ReadUsage).await?;
        let mut filter = filter_of(req)?;
        filter.tenant = p.reads_tenant(filter.tenant.as_deref().unwrap_or_default());
        let rows = self.store.llm_calls(&filter).await?;
        let next_cursor = match rows.last() {
            Some(last) if rows.len() as u32 == filter.limit => last.id.to_string(),
            _ => String::new(),
        };
        Ok(v1::ListLlmCallsResponse {
            calls: rows.into_iter().map(to_wire).collect(),
            next_cursor,
        })
    }
}

/// The store filter a request asks for, checked (the tenant as named, before scoping).
fn filter_of(req: &v1::ListLlmCallsRequest) -> Result<LlmCallFilter> {
    let text = |field: &str, v: &str| -> Result<Option<String>> {
        if v.len() > MAX_FILTER_BYTES {
            return Err(SpecError::invalid(field, format!("at most {MAX_FILTER_BYTES} bytes")).into());
        }
        Ok((!v.is_empty()).then(|| v.to_string()))
    };
    let task_id = match req.task_id.as_str() {
        "" => None,
        id => Some(
            id.parse::<TaskId>()
                .map_err(|_| SpecError::invalid("task_id", format!("{id:?} is not a task id")))?,
        ),
    };
    let limit = match req.limit {
        0 => DEFAULT_PAGE,
        n if n > cadre_store::llm_calls::MAX_PAGE => {
            return Err(
                SpecError::invalid("limit", format!("at most {}", cadre_store::llm_calls::MAX_PAGE)).into(),
            );
        }
        n => n,
    };
    let before_id = match req.cursor.as_str() {
        "" => None,
        c => match c.parse::<i64>() {
            Ok(id) if id > 0 => Some(id),
            _ => return Err(SpecError::invalid("cursor", "not a cursor this API returned").into()),
        },
    };
    if let (Some(since), Some(until)) = (req.since_ms, req.until_ms)
        && since >= until
    {
        return Err(SpecError::invalid("until_ms", "must be after since_ms").into());
    }
    Ok(LlmCallFilter {
        tenant: text("tenant", &req.tenant)?,
        task_id,
        model: text("model", &req.model)?,
        provider: text("provider", &req.provider)?,
        since_ms: req.since_ms,
        until_ms: req.until_ms,
        before_id,
        limit,
    })
}

/// A stored record on the wire.
fn to_wire(c: StoredLlmCall) -> v1::LlmCall {
    v1::LlmCall {
        id: c.id,
        task_id: c.task_id,
        tenant: c.tenant,
        attempt: c.attempt,
        provider: c.provider,
        model_requested: c.model_requested,
        model_used: c.model_used,
        fallbacks: c
            .fallbacks
            .into_iter()
            .map(|f| v1::LlmFallback {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_checked() {
        let ok = v1::ListLlmCallsRequest::default();
        assert_eq!(filter_of(&ok).unwrap().limit, DEFAULT_PAGE);
        for bad in [
            v1::ListLlmCallsRequest {
                task_id: "nope".into(),
                ..Default::default()
            },
            v1::ListLlmCallsRequest {
                limit: 1001,
                ..Default::default()
            },
            v1::ListLlmCallsRequest {
                cursor: "x".into(),
                ..Default::default()
            },
            v1::ListLlmCallsRequest {
                since_ms: Some(5),
                until_ms: Some(5),
                ..Default::default()
            },
            v1::ListLlmCallsRequest {
                model: "m".repeat(257),
                ..Default::default()
            },
        ] {
            assert!(
                matches!(filter_of(&bad), Err(crate::error::Error::Spec(_))),
                "{bad:?}"
            );
        }
    }
}
