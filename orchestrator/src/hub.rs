//! The in-process event hub and resumable watch streams.
//!
//! The writer publishes each event after its batch is durable, in cursor order. A watch
//! subscribes to the live channel first, then reads stored events after its cursor, then
//! follows the live channel, skipping what it already sent. A watcher that falls more than
//! `limits.event_buffer` events behind loses its place in the live channel (it never holds the
//! node back) and goes back to the store from its last cursor: nothing is missed or repeated.

use std::sync::Arc;

use cadre_proto::TaskEvent;
use tokio::sync::{broadcast, mpsc};

use crate::store::{EventFilter, Store, StoreError};

/// Events read from the store per catch-up query.
const CATCH_UP_PAGE: u32 = 500;
/// Events buffered per watch stream towards its client.
const STREAM_BUFFER: usize = 256;

/// Fans committed events out to live watchers.
#[derive(Clone)]
pub struct Hub {
    tx: broadcast::Sender<Arc<TaskEvent>>,
}

impl Hub {
    /// A hub whose subscribers may fall `capacity` events behind before they lag.
    pub fn new(capacity: usize) -> Self {
        Hub {
            tx: broadcast::channel(capacity).0,
        }
    }

    /// Publishes a committed event (no-op without subscribers).
    pub fn publish(&self, event: TaskEvent) {
        let _ = self.tx.send(Arc::new(event));
    }

    /// A live subscription.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<TaskEvent>> {
        self.tx.subscribe()
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
        let mut live = self.subscribe();
        tokio::spawn(async move {
            let mut last = after;
            loop {
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
                        if !filter.matches(&e) {
                            continue;
                        }
                        let done = until_terminal && e.state.is_terminal();
                        if out.send(Ok(e)).await.is_err() || done {
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
                            if !filter.matches(&e) {
                                continue;
                            }
                            let done = until_terminal && e.state.is_terminal();
                            if out.send(Ok((*e).clone())).await.is_err() || done {
                                return;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            tracing::debug!(skipped = n, last, "watcher lagged; re-reading the store");
                            break;
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            }
        });
        rx
    }
}
