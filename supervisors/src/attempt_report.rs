//! Where an attempt's progress and usage go: the supervisor's [`TaskSink`], tagged with the
//! task and the attempt, through the executor-facing [`cadre_agents::Report`] seam.

use std::sync::Arc;

use cadre_proto::TaskId;

use crate::sink::TaskSink;

/// Forwards one attempt's progress and usage to the sink.
pub(crate) struct AttemptReport {
    /// Where they go.
    pub(crate) sink: Arc<dyn TaskSink>,
    /// The task.
    pub(crate) task_id: TaskId,
    /// The attempt (progress of another attempt is ignored by the store).
    pub(crate) attempt: u32,
    /// The task's trace id (from its `traceparent`; "" when it has none), for call records.
    pub(crate) trace_id: String,
}

impl AttemptReport {
    /// The report of attempt `attempt` of `task_id`, a task of the trace `traceparent` names.
    pub(crate) fn new(
        sink: Arc<dyn TaskSink>,
        task_id: TaskId,
        attempt: u32,
        traceparent: Option<&str>,
    ) -> Self {
        let trace_id = traceparent.and_then(crate::attempt_span::trace_id);
        AttemptReport {
            sink,
            task_id,
            attempt,
            trace_id: trace_id.unwrap_or_default().to_string(),
        }
    }
}

impl cadre_agents::Report for AttemptReport {
    fn progress(&self, fraction: f64, message: String) {
        self.sink.progress(self.task_id, self.attempt, fraction, message);
    }

    /// Tagged with the attempt and the task's trace id when the executor did not set them.
    fn usage(&self, mut usage: cadre_agents::Usage) {
        if usage.attempt == 0 {
            usage.attempt = self.attempt;
        }
        if usage.trace_id.is_empty() {
            usage.trace_id.clone_from(&self.trace_id);
        }
        self.sink.usage(self.task_id, usage);
    }
}
