//! Helpers for tests of this crate and of the crates above it (feature `test-util`).

pub mod pg;

use std::time::Duration;

use cadre_proto::{Priority, RetryPolicy, TaskRecord, TaskSpec};

/// A new QUEUED `system.debug.echo` task of tenant `t` on `system/monitor`, with idempotency
/// key `key`.
pub fn record(key: Option<&str>) -> TaskRecord {
    let spec = TaskSpec {
        task_type: "system.debug.echo".into(),
        params: serde_json::json!({}),
        priority: Priority::default(),
        timeout: Duration::from_secs(1),
        retry: RetryPolicy::default(),
        idempotency_key: key.map(str::to_string),
        parent_id: None,
        security_level: Default::default(),
        concurrency_key: None,
        debounce: None,
        replay_of: None,
    };
    TaskRecord::queued("t", spec, "system", "monitor")
}
