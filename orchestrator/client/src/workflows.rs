//! The workflow calls: register a definition (JSON), list and read definitions, and send a
//! signal or an approval to a waiting instance. An instance is a task (`workflow.<name>.run`):
//! start, read, wait for and cancel it with the task calls.

use cadre_proto::v1;
use serde::Serialize;

use crate::connect::Client;
use crate::error::{Error, Result};

/// What an approval step waits for: approve or reject, with an optional comment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Go on.
    Approve,
    /// Stop (the step fails, or its `on_reject` runs).
    Reject,
}

impl Client {
    /// Registers a workflow definition written as JSON. The same definition again answers
    /// `created: false`; another definition under an existing name and version ALREADY_EXISTS.
    pub async fn register_workflow(&self, definition_json: &str) -> Result<v1::RegisterWorkflowResponse> {
        let req = v1::RegisterWorkflowRequest {
            definition_json: definition_json.to_string(),
        };
        self.call(&self.workflows, req, |mut c, r| async move {
            c.register_workflow(r).await
        })
        .await
    }

    /// The newest version of every workflow, or every version of `name` (oldest first).
    pub async fn list_workflows(&self, name: &str) -> Result<Vec<v1::WorkflowDefinition>> {
        let req = v1::ListWorkflowsRequest {
            name: name.to_string(),
        };
        let r = self
            .call(&self.workflows, req, |mut c, r| async move {
                c.list_workflows(r).await
            })
            .await?;
        Ok(r.workflows)
    }

    /// One workflow: `version`, or the newest when None.
    pub async fn get_workflow(&self, name: &str, version: Option<u32>) -> Result<v1::WorkflowDefinition> {
        let req = v1::GetWorkflowRequest {
            name: name.to_string(),
            version: version.unwrap_or(0),
        };
        self.call(
            &self.workflows,
            req,
            |mut c, r| async move { c.get_workflow(r).await },
        )
        .await
    }

    /// Sends signal `name` with `payload` (any JSON) to a waiting instance; its sequence
    /// number and the instance with its steps. Not retried: a retry could deliver it twice.
    pub async fn signal(
        &self,
        task_id: &str,
        name: &str,
        payload: &impl Serialize,
    ) -> Result<v1::SignalResponse> {
        let payload_json = serde_json::to_string(payload)
            .map_err(|e| Error::Config(format!("the payload is not JSON: {e}")))?;
        let req = v1::SignalRequest {
            task_id: task_id.to_string(),
            name: name.to_string(),
            payload_json,
        };
        self.call_once(&self.workflows, req, |mut c, r| async move { c.signal(r).await })
            .await
    }

    /// Answers the approval step waiting on signal `name`.
    pub async fn approve(
        &self,
        task_id: &str,
        name: &str,
        decision: Decision,
        comment: Option<&str>,
    ) -> Result<v1::SignalResponse> {
        let payload = serde_json::json!({ "decision": decision, "comment": comment });
        self.signal(task_id, name, &payload).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_are_written_as_the_node_reads_them() {
        assert_eq!(serde_json::to_string(&Decision::Approve).unwrap(), r#""approve""#);
        assert_eq!(serde_json::to_string(&Decision::Reject).unwrap(), r#""reject""#);
    }
}
