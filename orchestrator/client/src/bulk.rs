//! Bulk operations: cancel, or replay, every task a [`v1::TaskQuery`] matches (at most a
//! limit per call; a dry run only counts). A bulk cancel is retried on UNAVAILABLE (cancelling
//! again converges); a bulk replay is not (a retry would make second copies).

use cadre_proto::v1;

use crate::connect::Client;
use crate::error::Result;

/// A bulk request: which tasks, how many at most, and whether only to count.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BulkRequest {
    /// The request as it goes on the wire.
    pub req: v1::BulkRequest,
}

impl BulkRequest {
    /// Tasks matching `query` (at least one of its filters must be set).
    pub fn new(query: v1::TaskQuery) -> Self {
        BulkRequest {
            req: v1::BulkRequest {
                query: Some(query),
                ..Default::default()
            },
        }
    }

    /// Only count (and list the first ids of) what would be acted on.
    pub fn dry_run(mut self) -> Self {
        self.req.dry_run = true;
        self
    }

    /// Act on at most `limit` tasks (1-10000; default 1000).
    pub fn limit(mut self, limit: u32) -> Self {
        self.req.limit = limit;
        self
    }

    /// Why the tasks are cancelled (recorded as their error).
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.req.reason = reason.into();
        self
    }
}

impl Client {
    /// Cancels every unfinished task the request matches (operator role).
    pub async fn bulk_cancel(&self, req: BulkRequest) -> Result<v1::BulkResponse> {
        self.call(
            &self.tasks,
            req.req,
            |mut c, r| async move { c.bulk_cancel(r).await },
        )
        .await
    }

    /// Submits a copy of every finished task the request matches (operator role); not
    /// retried.
    pub async fn bulk_replay(&self, req: BulkRequest) -> Result<v1::BulkResponse> {
        self.call_once(
            &self.tasks,
            req.req,
            |mut c, r| async move { c.bulk_replay(r).await },
        )
        .await
    }
}
