//! `audit_verify` (`system.audit.verify`).

use async_trait::async_trait;
use cadre_agents::{ExecContext, ExecError, Executor};
use serde_json::{Value, json};

use cadre_store::chain as audit;

use crate::system_tasks::view::{NodeCell, empty_params_schema, no_params, node};

/// `audit_verify`: `cadre audit verify` as a task, trusting this node's signing key.
pub struct AuditVerify(pub NodeCell);

#[async_trait]
impl Executor for AuditVerify {
    async fn execute(&self, _ctx: ExecContext, params: Value) -> Result<Value, ExecError> {
        no_params(&params)?;
        let node = node(&self.0)?;
        let data_dir = node.data_dir();
        let pem = std::fs::read_to_string(data_dir.join(audit::NODE_PUBLIC_KEY_FILE))
            .map_err(|e| ExecError::Fatal(format!("cannot read the node public key: {e}")))?;
        let key = audit::public_key(&pem).map_err(|e| ExecError::Fatal(e.to_string()))?;
        let keys = audit::TrustedKeys::new([key]);
        let heads: Vec<audit::SignedHead> = match std::fs::read(data_dir.join(audit::HEAD_FILE)) {
            Ok(bytes) => vec![
                serde_json::from_slice(&bytes)
                    .map_err(|e| ExecError::Fatal(format!("the signed head is not valid JSON: {e}")))?,
            ],
            Err(_) => Vec::new(),
        };
        let unreadable =
            |e: cadre_store::StoreError| ExecError::Retryable(format!("cannot read the audit chain: {e}"));
        // The records first, then the checkpoint (see `audit::after_checkpoint`).
        let records = node.store().audit_records(None).await.map_err(unreadable)?;
        let checkpoint = node.store().audit_checkpoint().await.map_err(unreadable)?;
        let records = audit::after_checkpoint(checkpoint.as_ref(), records);
        let head_seq = heads.first().map(|h| h.seq);
        let pruned = checkpoint.as_ref().map(|c| c.seq);
        Ok(
            match audit::verify_from(checkpoint.as_ref(), &records, &heads, &keys) {
                Ok(n) => json!({
                    "intact": true, "records": n, "signed_head_seq": head_seq, "pruned_through_seq": pruned,
                    "problem": null,
                }),
                Err(t) => json!({
                    "intact": false, "records": records.len(), "signed_head_seq": head_seq,
                    "pruned_through_seq": pruned, "problem": t.to_string(),
                }),
            },
        )
    }

    fn params_schema(&self) -> Option<Value> {
        Some(empty_params_schema())
    }

    fn result_schema(&self) -> Option<Value> {
        Some(json!({
            "type": "object",
            "properties": {
                "intact": { "type": "boolean", "description": "Every link and signature is valid and the chain reaches the signed head" },
                "records": { "type": "integer", "minimum": 0 },
                "signed_head_seq": { "type": ["integer", "null"] },
                "pruned_through_seq": {
                    "type": ["integer", "null"],
                    "description": "The chain's records up to this one were pruned; it was checked from their signed checkpoint",
                },
                "problem": { "type": ["string", "null"], "description": "What is wrong, when not intact" },
            },
            "required": ["intact", "records", "signed_head_seq", "pruned_through_seq", "problem"],
            "additionalProperties": false,
        }))
    }
}
