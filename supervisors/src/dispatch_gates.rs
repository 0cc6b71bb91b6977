//! One answer to "may this queued task start now?", and where the tasks that may not wait.
//!
//! Three things can hold a queued task back, checked in this order by [`decide`] each time the
//! supervisor's pump takes a task from a pool's [`FairQueue`](crate::FairQueue):
//!
//! 1. a pause ([`PauseSet`]) that covers its supervisor, pool, type or tenant;
//! 2. a hold on its task type: an upstream answered "rate limited, retry after T" to an
//!    attempt of that type, so the type's tasks in this pool wait until T;
//! 3. its concurrency key at its limit ([`KeyLimits`]), or older tasks of the same key already
//!    waiting in this pool (so a key's tasks start in queue order).
//!
//! A task held back is parked in the pool's [`Parking`], in a lot for its reason, ordered as it
//! stood in the queue (priority, then age), and still counts in the queue depth. It goes back
//! to the queue at its old place when its reason ends: the pause set no longer holds it, the
//! type's hold expires, or a slot of its key is given back (as many as there are free slots,
//! oldest first). The queue keeps flowing past parked tasks, so one full key, one held type or
//! one paused tenant never blocks the rest.
//!
//! Cost: taking, parking and restoring a task are O(log n). A task is parked at most once per
//! time its reason ends, so the pump does O(log n) work per task started in the common case.
//! The worst cases: a change of the pause set re-checks every paused task of the supervisor
//! (O(paused)); the end of a type's hold restores every task of that type (O(held log n)).

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use cadre_proto::TaskId;
use tokio::time::Instant;

use crate::dispatch_config::{DispatchConfig, UpstreamConfig, Weights};
use crate::key_limits::{Acquire, KeyId, KeyLimits, KeyPermit, Wake};
use crate::pause::{PauseProbe, PauseSet};
use crate::priority_queue::Popped;
use crate::task::QueuedTask;

/// A queued task's place: the queue entry it came from.
pub type Entry = Popped<TaskId>;

/// Most urgent, then oldest, first.
type Order = (Reverse<u8>, u64);

/// The dispatch settings every supervisor of a process shares.
#[derive(Default)]
pub struct Dispatch {
    /// Tenant weights of the fair queues.
    pub weights: Arc<Weights>,
    /// Running limits per concurrency key (one table per process).
    pub keys: Arc<KeyLimits>,
    /// Bounds on rate-limit holds.
    pub upstream: UpstreamConfig,
}

impl Dispatch {
    /// The shared settings for `config`.
    pub fn new(config: &DispatchConfig) -> Self {
        Dispatch {
            weights: Arc::new(Weights::from(&config.fairness)),
            keys: Arc::new(KeyLimits::new(config.concurrency.clone())),
            upstream: config.upstream.clone(),
        }
    }
}

/// What a supervisor starts with besides its pools: the shared dispatch settings and the
/// pauses in force.
#[derive(Clone, Default)]
pub struct Gates {
    /// Shared by every supervisor of the process.
    pub dispatch: Arc<Dispatch>,
    /// The pauses in force when the supervisor starts (later ones come as messages).
    pub pauses: PauseSet,
}

/// Why a task is parked, and in which lot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParkedFor {
    /// A pause holds it.
    Pause,
    /// Its type is held after a rate limit.
    Type(String),
    /// Its concurrency key is full.
    Key(KeyId),
}

/// What the pump does with a task it took from the queue.
pub enum Decision {
    /// Start it (holding its key's slot, if it has a limited key).
    Start(Option<KeyPermit>),
    /// Park it.
    Park(ParkedFor),
    /// Its type's hold has just expired: end the hold (restoring the type's parked tasks),
    /// put this task back and take again, so the type's tasks go in their order.
    HoldExpired,
}

/// A type held after a rate limit.
struct TypeHold {
    until: Instant,
    parked: BTreeMap<Order, Entry>,
}

/// The parked tasks of one pool.
#[derive(Default)]
pub struct Parking {
    paused: BTreeMap<Order, Entry>,
    types: HashMap<String, TypeHold>,
    keys: HashMap<KeyId, BTreeMap<Order, Entry>>,
}

/// Whether `task` (taken from the queue as `entry`) may start now on pool `worker_kind` of
/// `supervisor` (see the module docs for the order of the checks).
pub fn decide(
    parking: &Parking,
    pauses: &PauseSet,
    supervisor: &str,
    task: &QueuedTask,
    entry: &Entry,
    keys: &Arc<KeyLimits>,
    waiter: (u64, &Wake),
) -> Decision {
    let probe = PauseProbe {
        supervisor,
        worker_kind: &task.worker_kind,
        task_type: &task.task_type,
        tenant: &task.tenant,
    };
    if !pauses.is_empty() && pauses.holds(probe) {
        return Decision::Park(ParkedFor::Pause);
    }
    if let Some(hold) = parking.types.get(&task.task_type) {
        if hold.until > Instant::now() {
            return Decision::Park(ParkedFor::Type(task.task_type.clone()));
        }
        return Decision::HoldExpired;
    }
    let Some(key) = &task.concurrency_key else {
        return Decision::Start(None);
    };
    if !keys.any() {
        return Decision::Start(None);
    }
    let id = KeyId {
        tenant: task.tenant.clone(),
        key: key.clone(),
    };
    // Older tasks of this key wait already: this one queues behind them.
    if let Some(lot) = parking.keys.get(&id)
        && lot.keys().next().is_some_and(|first| *first < entry.order())
    {
        return Decision::Park(ParkedFor::Key(id));
    }
    match keys.acquire(&id, waiter) {
        Acquire::Unlimited => Decision::Start(None),
        Acquire::Granted(p) => Decision::Start(Some(p)),
        Acquire::Full => Decision::Park(ParkedFor::Key(id)),
    }
}

/// What becomes of a task whose attempt an upstream rate-limited.
pub enum RateLimitStep {
    /// The attempt fails like any retryable error (`upstream.max_requeues` = 0).
    Retry,
    /// The task FAILS with this message: it was put back too often.
    Fail(String),
    /// The attempt is given back and the task put back in the queue; its type is held for
    /// `hold`. `message` goes on its QUEUED event.
    Requeue {
        /// How long its type waits.
        hold: Duration,
        /// Why, for the event.
        message: String,
    },
}

/// Decides what becomes of `task` after a rate-limited attempt (asking for `asked`), counting
/// the requeue on the task and giving its attempt back when it goes back to the queue.
pub fn after_rate_limit(
    task: &mut QueuedTask,
    upstream: &UpstreamConfig,
    message: &str,
    asked: Duration,
) -> RateLimitStep {
    if upstream.max_requeues == 0 {
        return RateLimitStep::Retry;
    }
    if task.rate_limited >= upstream.max_requeues {
        return RateLimitStep::Fail(format!(
            "{message} (rate-limited {} times; upstream.max_requeues = {})",
            task.rate_limited + 1,
            upstream.max_requeues
        ));
    }
    task.rate_limited += 1;
    task.attempts_started = task.attempts_started.saturating_sub(1);
    let hold = upstream.hold_for(asked);
    let message = requeue_message(
        message,
        &task.task_type,
        hold,
        (task.rate_limited, upstream.max_requeues),
    );
    RateLimitStep::Requeue { hold, message }
}

/// The QUEUED event's message of a task put back for a rate limit ([`requeue_hold`] reads it
/// back); `(n, max)`: the requeue's number and the most allowed.
fn requeue_message(why: &str, task_type: &str, hold: Duration, (n, max): (u32, u32)) -> String {
    format!(
        "rate-limited: {why}; type {task_type} held for {} ms, attempt not counted (requeue {n} of {max})",
        hold.as_millis()
    )
}

/// The hold a requeue message of [`after_rate_limit`] names (`rate-limited: ...; type <t>
/// held for <n> ms, ...`), for those who read the QUEUED event (the model gateway answers 429
/// with it as Retry-After); None for any other message.
pub fn requeue_hold(message: &str) -> Option<Duration> {
    if !message.starts_with("rate-limited: ") {
        return None;
    }
    let (_, rest) = message.rsplit_once(" held for ")?;
    let (ms, unit) = rest.split_once(' ')?;
    unit.starts_with("ms")
        .then(|| ms.parse().ok().map(Duration::from_millis))?
}

/// Whether `pauses` cover the whole pool `worker_kind` of `supervisor` (a pause of the
/// supervisor or of the pool itself), for its status.
pub fn pool_paused(pauses: &PauseSet, supervisor: &str, worker_kind: &str) -> bool {
    pauses
        .pauses
        .iter()
        .any(|p| p.holds_pool(supervisor, worker_kind))
}

impl Parking {
    /// Tasks parked.
    pub fn len(&self) -> usize {
        self.paused.len()
            + self.types.values().map(|h| h.parked.len()).sum::<usize>()
            + self.keys.values().map(BTreeMap::len).sum::<usize>()
    }

    /// Whether nothing is parked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Parks `entry` for `why`.
    pub fn park(&mut self, why: &ParkedFor, entry: Entry) {
        let order = entry.order();
        match why {
            ParkedFor::Pause => {
                self.paused.insert(order, entry);
            }
            ParkedFor::Type(t) => {
                let hold = self.types.entry(t.clone()).or_insert_with(|| TypeHold {
                    until: Instant::now(),
                    parked: BTreeMap::new(),
                });
                hold.parked.insert(order, entry);
            }
            ParkedFor::Key(id) => {
                self.keys.entry(id.clone()).or_default().insert(order, entry);
            }
        }
    }

    /// Takes a parked entry out (its task was cancelled); true if it was there.
    pub fn remove(&mut self, why: &ParkedFor, entry_order: Order) -> bool {
        match why {
            ParkedFor::Pause => self.paused.remove(&entry_order).is_some(),
            ParkedFor::Type(t) => self
                .types
                .get_mut(t)
                .is_some_and(|h| h.parked.remove(&entry_order).is_some()),
            ParkedFor::Key(id) => {
                let Some(lot) = self.keys.get_mut(id) else {
                    return false;
                };
                let removed = lot.remove(&entry_order).is_some();
                if lot.is_empty() {
                    self.keys.remove(id);
                }
                removed
            }
        }
    }

    /// Whether tasks of `id` are parked here.
    pub fn waits_for(&self, id: &KeyId) -> bool {
        self.keys.contains_key(id)
    }

    /// Every key with parked tasks.
    pub fn waited_keys(&self) -> impl Iterator<Item = &KeyId> {
        self.keys.keys()
    }

    /// Takes out the paused tasks `still_paused` no longer holds, oldest first.
    pub fn unpause(&mut self, mut still_paused: impl FnMut(&Entry) -> bool) -> Vec<Entry> {
        let (keep, go): (BTreeMap<_, _>, BTreeMap<_, _>) = std::mem::take(&mut self.paused)
            .into_iter()
            .partition(|(_, e)| still_paused(e));
        self.paused = keep;
        go.into_values().collect()
    }

    /// Holds `task_type` until `until` (a later hold extends it, an earlier one is ignored);
    /// true if the hold is new or longer.
    pub fn hold_type(&mut self, task_type: &str, until: Instant) -> bool {
        if let Some(hold) = self.types.get_mut(task_type) {
            if hold.until >= until {
                return false;
            }
            hold.until = until;
            return true;
        }
        self.types.insert(
            task_type.to_string(),
            TypeHold {
                until,
                parked: BTreeMap::new(),
            },
        );
        true
    }

    /// When the hold of `task_type` ends, if it is held.
    pub fn held_until(&self, task_type: &str) -> Option<Instant> {
        self.types.get(task_type).map(|h| h.until)
    }

    /// Ends the hold of `task_type` if it has expired, returning its parked tasks.
    pub fn end_hold(&mut self, task_type: &str, now: Instant) -> Vec<Entry> {
        match self.types.get(task_type) {
            Some(h) if h.until <= now => self
                .types
                .remove(task_type)
                .map(|h| h.parked.into_values().collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Takes out up to `n` of the oldest parked tasks of `id`.
    pub fn take_key(&mut self, id: &KeyId, n: u32) -> Vec<Entry> {
        let Some(lot) = self.keys.get_mut(id) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        while (out.len() as u32) < n
            && let Some((_, e)) = lot.pop_first()
        {
            out.push(e);
        }
        if lot.is_empty() {
            self.keys.remove(id);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hold_of_a_requeue_message_reads_back() {
        let hold = Duration::from_millis(1_500);
        let m = requeue_message("429 from openai; held for a while", "llm.chat", hold, (2, 20));
        assert_eq!(requeue_hold(&m), Some(hold));
        assert_eq!(requeue_hold("rate-limited: no hold here"), None);
        assert_eq!(requeue_hold("retrying: type t held for 5 ms"), None);
    }
}
