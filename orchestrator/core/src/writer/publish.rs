//! [`HubFeed`]: how committed events reach the hub.

use std::sync::Arc;

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
