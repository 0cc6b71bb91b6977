//! What a supervisor node holds: the tasks it runs (with their messages' ackers and the room
//! they take) and the ids of tasks cancelled before they reached it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use cadre_proto::TaskId;
use tokio::sync::OwnedSemaphorePermit;

use crate::node::transport::Acker;
use crate::task::QueuedTask;

/// Cancelled task ids remembered by replicas that did not hold them.
pub(super) const CANCELLED_MEMORY: usize = 10_000;

/// One task this node runs until its terminal event is durable.
pub(super) struct Inflight {
    /// The supervisor running it.
    pub supervisor: String,
    /// The task.
    pub task: QueuedTask,
    /// Its message's newest delivery; None for sub-tasks delegated to this node directly
    /// (not from the work queue).
    pub acker: Option<Arc<dyn Acker>>,
    /// The room it takes in its supervisor's pull loop, given back when it is dropped.
    pub _permit: Option<OwnedSemaphorePermit>,
    /// Times its supervisor put it back in the queue here (QUEUED transitions), carried on
    /// its transitions so a re-run's events are not deduplicated as repeats.
    pub round: u32,
    /// Delegations between it and its root, as far as this node knows: the depth a peer
    /// delegated it at, 0 for a task from the work queue (tier 0 knows those depths).
    pub depth: u32,
}

/// The held tasks and the cancels remembered.
#[derive(Default)]
pub(super) struct Held {
    inflight: Mutex<HashMap<TaskId, Inflight>>,
    cancelled: Mutex<Cancelled>,
}

impl Held {
    /// The held tasks, locked.
    pub fn lock(&self) -> MutexGuard<'_, HashMap<TaskId, Inflight>> {
        self.inflight.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a cancel for `id` arrived while this node did not hold it.
    pub fn was_cancelled(&self, id: TaskId) -> bool {
        self.cancelled().set.contains(&id)
    }

    /// Remembers that `id` was cancelled (the oldest of [`CANCELLED_MEMORY`] is forgotten).
    pub fn remember_cancel(&self, id: TaskId) {
        let mut c = self.cancelled();
        if c.set.insert(id) {
            c.order.push_back(id);
            if c.order.len() > CANCELLED_MEMORY
                && let Some(old) = c.order.pop_front()
            {
                c.set.remove(&old);
            }
        }
    }

    fn cancelled(&self) -> MutexGuard<'_, Cancelled> {
        self.cancelled.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Cancelled ids, and the order they came in (to forget the oldest).
#[derive(Default)]
struct Cancelled {
    set: HashSet<TaskId>,
    order: VecDeque<TaskId>,
}
