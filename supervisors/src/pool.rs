//! One pool of a supervisor: its workers (slots), its fair queue and the tasks parked beside
//! it. The supervisor ([`crate::supervisor`]) owns and drives it; this is only its shape.

use std::collections::BTreeMap;

use cadre_agents::WorkerMsg;
use cadre_proto::TaskId;
use ractor::ActorRef;

use crate::dispatch_gates::{Dispatch, Parking};
use crate::priority_queue::FairQueue;

/// A worker kind's pool.
pub(crate) struct Pool {
    /// Workers asked for.
    pub(crate) target: usize,
    /// Slot id -> worker.
    pub(crate) slots: BTreeMap<u64, Slot>,
    /// Tasks waiting for a worker, in dispatch order.
    pub(crate) queue: FairQueue<TaskId>,
    /// Tasks taken from `queue` that may not start yet.
    pub(crate) parking: Parking,
    /// Live entries in `queue` and `parking` (cancelled ones are skipped lazily when popped).
    pub(crate) queued: usize,
    /// Worker crashes.
    pub(crate) restarts: u64,
    /// The id the next new slot gets.
    pub(crate) next_slot: u64,
}

/// One worker of a pool.
pub(crate) struct Slot {
    /// The worker actor.
    pub(crate) actor: ActorRef<WorkerMsg>,
    /// The task it runs.
    pub(crate) running: Option<TaskId>,
    /// Stops once idle (pool shrinking).
    pub(crate) retiring: bool,
}

impl Pool {
    /// An empty pool of `target` workers whose queue weighs tenants as `dispatch` says.
    pub(crate) fn new(target: usize, dispatch: &Dispatch) -> Self {
        Pool {
            target,
            slots: BTreeMap::new(),
            queue: FairQueue::with_weights(dispatch.weights.clone()),
            parking: Parking::default(),
            queued: 0,
            restarts: 0,
            next_slot: 0,
        }
    }

    /// Workers not retiring.
    pub(crate) fn active(&self) -> usize {
        self.slots.values().filter(|s| !s.retiring).count()
    }

    /// Workers running a task.
    pub(crate) fn busy(&self) -> usize {
        self.slots.values().filter(|s| s.running.is_some()).count()
    }
}
