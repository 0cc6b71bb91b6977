//! LLM call records: one per model call of llm tasks, newest first (observer role; a tenant
//! sees its own, a commander every tenant's or the one it names).

use cadre_proto::v1;

use crate::connect::Client;
use crate::error::Result;

impl Client {
    /// One page of model call records matching `req` (every filter optional; `limit` 0 =
    /// 100, at most 1000; `cursor` = the previous page's `next_cursor`). A bad filter is
    /// INVALID_ARGUMENT.
    pub async fn llm_calls(&self, req: v1::ListLlmCallsRequest) -> Result<v1::ListLlmCallsResponse> {
        self.call(
            &self.admin,
            req,
            |mut c, r| async move { c.list_llm_calls(r).await },
        )
        .await
    }
}
