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
}

impl cadre_agents::Report for AttemptReport {
    fn progress(&self, fraction: f64, message: String) {
        self.sink.progress(self.task_id, self.attempt, fraction, message);
    }

    fn usage(&self, usage: cadre_agents::Usage) {
        self.sink.usage(self.task_id, usage);
    }
}
