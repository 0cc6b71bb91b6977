//! Step 5 of the writer task: committed events to the hub. [`HubFeed`] says how: published
//! here right after the commit, or read back from the store by a tailer that this step wakes.

use std::sync::Arc;

use cadre_store::WriteOutcome;

use crate::hub::Hub;

/// How committed events reach the hub's live subscribers.
#[derive(Clone)]
pub enum HubFeed {
    /// Published by the writer right after each commit (one tier-0 process).
    Direct,
    /// Read back from the store by a tailer ([`crate::hub::tail`]), which sees every
    /// replica's commits in cursor order; the writer only wakes it (and calls `announce`,
    /// which tells the other replicas).
    Tail {
        /// The local tailer's wake-up.
        wake: Arc<tokio::sync::Notify>,
        /// Tells other replicas a commit happened.
        announce: Arc<dyn Fn() + Send + Sync>,
    },
}

impl HubFeed {
    /// Publishes the event of one committed write to `hub` (in batch order, so in cursor
    /// order), when the writer feeds the hub directly.
    pub(super) fn publish(&self, hub: &Hub, outcome: &WriteOutcome) {
        if let (WriteOutcome::Event { event, .. }, HubFeed::Direct) = (outcome, self) {
            hub.publish(event.clone());
        }
    }

    /// After a batch is committed and answered: wakes the local tailer and tells the other
    /// replicas, when a tailer feeds the hub.
    pub(super) fn committed(&self) {
        if let HubFeed::Tail { wake, announce } = self {
            wake.notify_one();
            announce();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use cadre_proto::{TaskId, TaskState};

    use super::*;
    use crate::writer::testing::committed;

    fn finished(task_id: TaskId, cursor: u64) -> WriteOutcome {
        committed(task_id, TaskState::Succeeded, cursor)
    }

    #[tokio::test]
    async fn direct_publishes_each_event_and_announces_nothing() {
        let (hub, id) = (Hub::new(8), TaskId::new());
        let watch = hub.watch_new(id);
        HubFeed::Direct.publish(&hub, &finished(id, 7));
        HubFeed::Direct.committed();
        let got = watch.terminal().await.expect("published");
        assert_eq!((got.task_id, got.cursor), (id, 7));
    }

    #[tokio::test]
    async fn tail_publishes_nothing_and_wakes_the_tailer_once_a_batch() {
        let (hub, id) = (Hub::new(8), TaskId::new());
        let watch = hub.watch_new(id);
        let announced = Arc::new(AtomicUsize::new(0));
        let counted = announced.clone();
        let wake = Arc::new(tokio::sync::Notify::new());
        let feed = HubFeed::Tail {
            wake: wake.clone(),
            announce: Arc::new(move || {
                counted.fetch_add(1, Ordering::SeqCst);
            }),
        };
        feed.publish(&hub, &finished(id, 7));
        assert_eq!(announced.load(Ordering::SeqCst), 0);
        feed.committed();
        assert_eq!(announced.load(Ordering::SeqCst), 1);
        tokio::time::timeout(std::time::Duration::from_secs(1), wake.notified())
            .await
            .expect("the tailer was woken");
        // What the tailer would publish is the first event the watch sees.
        HubFeed::Direct.publish(&hub, &finished(id, 8));
        let got = watch.terminal().await.expect("published");
        assert_eq!(got.cursor, 8, "the tailer publishes, not the writer");
    }
}
