//! The in-process event hub and resumable watch streams.
//!
//! The writer publishes each event after its batch is durable, in cursor order. A watch
//! subscribes to the live events first, then reads stored events after its cursor, then follows
//! the live events, skipping what it already sent. A watcher that falls behind its bounded
//! buffer loses its live subscription (it never holds the node back) and goes back to the store
//! from its last cursor: nothing is missed or repeated.
//!
//! Two kinds of live subscription keep the cost of a watcher proportional to what it watches:
//! a watch of one task (every SubmitAndWait, every Cancel) gets only that task's events through
//! a small per-task channel; a filter watch (type prefix, states) gets the broadcast of all
//! events, `limits.event_buffer` deep.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cadre_proto::{TaskEvent, TaskId};
use tokio::sync::{broadcast, mpsc};

use cadre_store::{EventFilter, Store, StoreError};

/// Events read from the store per catch-up query.
const CATCH_UP_PAGE: u32 = 500;
/// Events buffered per watch stream towards its client.
const STREAM_BUFFER: usize = 256;
/// Live events buffered for a one-task watcher before it falls back to the store.
const TASK_BUFFER: usize = 64;

type Shared = Arc<TaskEvent>;

/// Fans committed events out to live watchers.
#[derive(Clone)]
pub struct Hub {
    all: broadcast::Sender<Shared>,
    by_task: Arc<Mutex<HashMap<TaskId, Vec<mpsc::Sender<Shared>>>>>,
}

/// A live subscription: every event, or one task's.
enum Live {
    All(broadcast::Receiver<Shared>),
    Task(TaskSub),
}

/// One task's live channel; unregisters itself when dropped, so watches of tasks that never
/// publish again (already finished) leave nothing behind.
struct TaskSub {
    rx: mpsc::Receiver<Shared>,
    id: TaskId,
    by_task: Arc<Mutex<HashMap<TaskId, Vec<mpsc::Sender<Shared>>>>>,
}

impl Drop for TaskSub {
    fn drop(&mut self) {
        self.rx.close();
        let mut by_task = self.by_task.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(subs) = by_task.get_mut(&self.id) {
            subs.retain(|tx| !tx.is_closed());
            if subs.is_empty() {
                by_task.remove(&self.id);
            }
        }
    }
}

/// Why a live subscription yielded no event.
enum Gap {
    /// Events were dropped for this watcher: re-read the store.
    Lagged,
    /// The hub is gone (node shutting down).
    Closed,
}

/// A live watch of one task taken before the task is stored (see [`Hub::watch_new`]): it
/// sees every event of the task, so no store read is needed to catch up.
pub struct TaskWatch(TaskSub);

impl TaskWatch {
    /// Waits for the task's terminal event. None if the watch fell behind (its buffer was
    /// full and the hub dropped it) or the hub closed: then the store has the events.
    pub async fn terminal(mut self) -> Option<Shared> {
        while let Some(e) = self.0.rx.recv().await {
            if e.state.is_terminal() {
                return Some(e);
            }
        }
        None
    }

    /// The task's next event (progress reports included). None once the hub dropped this
    /// watch (its buffer was full, or the task finished and the terminal event was read) or
    /// closed: the store has the stored events from the last cursor seen.
    pub async fn next(&mut self) -> Option<Shared> {
        self.0.rx.recv().await
    }
}

impl Live {
    async fn recv(&mut self) -> Result<Shared, Gap> {
        match self {
            Live::All(rx) => rx.recv().await.map_err(|e| match e {
                broadcast::error::RecvError::Lagged(_) => Gap::Lagged,
                broadcast::error::RecvError::Closed => Gap::Closed,
            }),
            // The hub drops a task channel when it is full (or after the terminal event, which
            // is then already in the channel): either way the store has everything.
            Live::Task(sub) => sub.rx.recv().await.ok_or(Gap::Lagged),
        }
    }
}

impl Hub {
    /// A hub whose filter watchers may fall `capacity` events behind before they lag.
    pub fn new(capacity: usize) -> Self {
        Hub {
            all: broadcast::channel(capacity).0,
            by_task: Arc::default(),
        }
    }

    /// Publishes a committed event.
    pub fn publish(&self, event: TaskEvent) {
        let event = Arc::new(event);
        let mut by_task = self.by_task.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(subs) = by_task.get_mut(&event.task_id) {
            subs.retain(|tx| tx.try_send(event.clone()).is_ok());
            if subs.is_empty() || event.state.is_terminal() {
                by_task.remove(&event.task_id);
            }
        }
        drop(by_task);
        if self.all.receiver_count() > 0 {
            let _ = self.all.send(event);
        }
    }

    /// Watches task `id` live from now on. Taken before a new task is inserted, it sees all
    /// of that task's events without reading the store (SubmitAndWait).
    pub fn watch_new(&self, id: TaskId) -> TaskWatch {
        TaskWatch(self.task_sub(id))
    }

    fn task_sub(&self, id: TaskId) -> TaskSub {
        let (tx, rx) = mpsc::channel(TASK_BUFFER);
        self.by_task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id)
            .or_default()
            .push(tx);
        TaskSub {
            rx,
            id,
            by_task: self.by_task.clone(),
        }
    }

    fn subscribe(&self, task: Option<TaskId>) -> Live {
        match task {
            Some(id) => Live::Task(self.task_sub(id)),
            None => Live::All(self.all.subscribe()),
        }
    }

    /// Streams events matching `filter` with cursor > `after`: stored ones, then live ones.
    /// With `until_terminal`, the stream ends after the first terminal event that matches.
    /// The stream ends with an error if the store fails.
    pub fn watch(
        &self,
        store: Arc<dyn Store>,
        filter: EventFilter,
        after: u64,
        until_terminal: bool,
    ) -> mpsc::Receiver<Result<TaskEvent, StoreError>> {
        let (out, rx) = mpsc::channel(STREAM_BUFFER);
        let hub = self.clone();
        tokio::spawn(async move {
            let mut last = after;
            loop {
                let mut live = hub.subscribe(filter.task_id);
                // Catch up from the store until it has nothing newer.
                loop {
                    let page = match store.events_after(last, &filter, CATCH_UP_PAGE).await {
                        Ok(p) => p,
                        Err(e) => {
                            let _ = out.send(Err(e)).await;
                            return;
                        }
                    };
                    let n = page.len();
                    for e in page {
                        last = e.cursor;
                        // A one-task watch ends at the terminal event even if its state filter
                        // hides it.
                        let done = until_terminal && e.state.is_terminal();
                        let sent = !filter.matches(&e) || out.send(Ok(e)).await.is_ok();
                        if !sent || done {
                            return;
                        }
                    }
                    if n < CATCH_UP_PAGE as usize {
                        break;
                    }
                }
                // Follow live events until the client leaves or we lag.
                loop {
                    match live.recv().await {
                        Ok(e) => {
                            if e.cursor <= last {
                                continue;
                            }
                            last = e.cursor;
                            let done = until_terminal && e.state.is_terminal();
                            let sent = !filter.matches(&e) || out.send(Ok((*e).clone())).await.is_ok();
                            if !sent || done {
                                return;
                            }
                        }
                        Err(Gap::Lagged) => {
                            tracing::debug!(last, "watcher lagged; re-reading the store");
                            break;
                        }
                        Err(Gap::Closed) => return,
                    }
                }
            }
        });
        rx
    }
}

/// Feeds `hub` from the store in cursor order, starting after `after`: used when several
/// tier-0 replicas share one store, so every replica's watchers see every replica's commits.
/// Reads when woken (a local commit or another replica's announcement) and at least every
/// 250 ms.
pub async fn tail(store: Arc<dyn Store>, hub: Hub, wake: Arc<tokio::sync::Notify>, mut after: u64) {
    loop {
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(std::time::Duration::from_millis(250)) => {}
        }
        loop {
            match store
                .events_after(after, &EventFilter::default(), CATCH_UP_PAGE)
                .await
            {
                Ok(page) if page.is_empty() => break,
                Ok(page) => {
                    for e in page {
                        after = e.cursor;
                        hub.publish(e);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "event tailer cannot read the store; retrying");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cadre_proto::TaskState;

    fn event(task_id: TaskId, cursor: u64, state: TaskState) -> TaskEvent {
        TaskEvent {
            cursor,
            task_id,
            seq: cursor,
            state,
            attempt: 0,
            message: String::new(),
            progress: 0.0,
            result: None,
            at_ms: 0,
            task_type: "system.debug.echo".into(),
            tenant: "default".into(),
            is_progress: false,
            parent_id: None,
        }
    }

    #[tokio::test]
    async fn task_subscribers_get_only_their_task_and_are_dropped_after_terminal() {
        let hub = Hub::new(16);
        let (a, b) = (TaskId::new(), TaskId::new());
        let mut live = hub.subscribe(Some(a));
        hub.publish(event(b, 1, TaskState::Queued));
        hub.publish(event(a, 2, TaskState::Queued));
        hub.publish(event(a, 3, TaskState::Succeeded));
        assert_eq!(live.recv().await.ok().unwrap().cursor, 2);
        assert_eq!(live.recv().await.ok().unwrap().cursor, 3);
        assert!(live.recv().await.is_err(), "closed after the terminal event");
        assert!(hub.by_task.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn dropping_a_watch_of_a_quiet_task_unregisters_it() {
        let hub = Hub::new(16);
        let live = hub.subscribe(Some(TaskId::new()));
        assert_eq!(hub.by_task.lock().unwrap().len(), 1);
        drop(live);
        assert!(hub.by_task.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_full_task_subscriber_is_dropped_not_waited_for() {
        let hub = Hub::new(16);
        let a = TaskId::new();
        let mut live = hub.subscribe(Some(a));
        for c in 1..=(TASK_BUFFER as u64 + 1) {
            hub.publish(event(a, c, TaskState::Running));
        }
        for _ in 0..TASK_BUFFER {
            assert!(live.recv().await.is_ok());
        }
        assert!(
            matches!(live.recv().await, Err(Gap::Lagged)),
            "overflow means: re-read the store"
        );
    }

    #[tokio::test]
    async fn a_new_task_watch_returns_its_terminal_event_or_none_when_it_fell_behind() {
        let hub = Hub::new(16);
        let (a, b) = (TaskId::new(), TaskId::new());
        let watch = hub.watch_new(a);
        hub.publish(event(a, 1, TaskState::Queued));
        hub.publish(event(b, 2, TaskState::Succeeded));
        hub.publish(event(a, 3, TaskState::Running));
        hub.publish(event(a, 4, TaskState::Failed));
        let done = watch.terminal().await.expect("terminal event");
        assert_eq!((done.cursor, done.state), (4, TaskState::Failed));
        assert!(hub.by_task.lock().unwrap().is_empty());

        let behind = hub.watch_new(b);
        for c in 1..=(TASK_BUFFER as u64 + 1) {
            hub.publish(event(b, c, TaskState::Running));
        }
        hub.publish(event(b, 100, TaskState::Succeeded));
        assert!(
            behind.terminal().await.is_none(),
            "dropped: the caller reads the store"
        );
    }
}
