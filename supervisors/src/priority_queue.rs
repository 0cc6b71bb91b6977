//! The per-pool run queue: strict priority 0-9 (higher first), FIFO within a tenant, and
//! within a priority weighted fair shares across tenants by stride scheduling.
//!
//! Each tenant with queued items at a level has a *pass*; the tenant with the lowest pass goes
//! next and its pass grows by its stride, `STRIDE / weight`, so over any stretch in which two
//! tenants both have work, a tenant of weight 3 is served three times as often as one of
//! weight one. The level keeps a virtual time (Waldspurger's global pass) that advances by
//! `STRIDE / total weight of the tenants with work` per item served; a tenant that becomes
//! active starts at it, or at its own pass if that is later. So time spent idle banks no
//! credit, a tenant arriving late gets its share at once, and a stream of newcomers cannot
//! starve a tenant already waiting. Ties go to the tenant that has waited longest, so equal
//! weights are plain round-robin.
//!
//! Every item gets a sequence number when pushed; a [`Popped`] item can be put back at its old
//! place with [`FairQueue::restore`], which is how the supervisor parks a task that may not start
//! yet (paused, its concurrency key full, its type held) and returns it later without losing its
//! turn. Push, pop and restore are O(log n).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use cadre_proto::Priority;

use crate::dispatch_config::Weights;

/// The pass a weight-1 tenant advances by per item served.
const STRIDE: u128 = 1 << 32;

/// A fair priority queue of `T`.
#[derive(Debug)]
pub struct FairQueue<T> {
    levels: Vec<Level<T>>,
    len: usize,
    next_seq: u64,
    weights: Arc<Weights>,
}

/// An item taken from the queue with where it stood, so it can be put back there.
#[derive(Debug, Clone)]
pub struct Popped<T> {
    /// Its priority.
    pub priority: Priority,
    /// Its tenant.
    pub tenant: Arc<str>,
    /// Its place: lower is older.
    pub seq: u64,
    /// The item.
    pub item: T,
}

impl<T> Popped<T> {
    /// The order in which parked items come back: most urgent first, then oldest.
    pub fn order(&self) -> (Reverse<u8>, u64) {
        (Reverse(self.priority.get()), self.seq)
    }
}

#[derive(Debug)]
struct Level<T> {
    /// Active tenants by (pass, turn): the first one goes next.
    ready: BTreeSet<(u128, u64, Arc<str>)>,
    tenants: HashMap<Arc<str>, Tenant<T>>,
    /// The level's virtual time: it advances by `STRIDE / total weight of the tenants with
    /// work` per item served (Waldspurger's global pass), and a tenant becoming active starts
    /// at it.
    vtime: u128,
    /// Sum of the weights of the tenants with work.
    active_weight: u128,
    /// Tie-breaker: when a tenant joined `ready`.
    turn: u64,
}

#[derive(Debug)]
struct Tenant<T> {
    pass: u128,
    weight: u128,
    items: BTreeMap<u64, T>,
}

impl<T> Default for Level<T> {
    fn default() -> Self {
        Level {
            ready: BTreeSet::new(),
            tenants: HashMap::new(),
            vtime: 0,
            active_weight: 0,
            turn: 0,
        }
    }
}

impl<T> Default for FairQueue<T> {
    fn default() -> Self {
        Self::with_weights(Arc::new(Weights::default()))
    }
}

impl<T> Level<T> {
    fn insert(&mut self, tenant: &str, seq: u64, item: T, weight: u32) {
        let vtime = self.vtime;
        let (key, t) = match self.tenants.get_key_value(tenant) {
            Some((k, _)) => (k.clone(), self.tenants.get_mut(tenant).expect("present")),
            None => {
                let k: Arc<str> = Arc::from(tenant);
                let t = self.tenants.entry(k.clone()).or_insert(Tenant {
                    pass: vtime,
                    weight: u128::from(weight.max(1)),
                    items: BTreeMap::new(),
                });
                (k, t)
            }
        };
        let was_idle = t.items.is_empty();
        t.items.insert(seq, item);
        if was_idle {
            // No banked credit: an idle tenant comes back at the current pass at the earliest.
            t.pass = t.pass.max(vtime);
            self.active_weight += t.weight;
            self.turn += 1;
            self.ready.insert((t.pass, self.turn, key));
        }
    }

    fn pop(&mut self) -> Option<(Arc<str>, u64, T)> {
        let (pass, _, tenant) = self.ready.pop_first()?;
        self.vtime += STRIDE / self.active_weight.max(1);
        let t = self.tenants.get_mut(&tenant).expect("ready tenants are known");
        let (seq, item) = t.items.pop_first().expect("ready tenants have items");
        t.pass = pass + STRIDE / t.weight;
        if t.items.is_empty() {
            self.active_weight -= t.weight;
            if self.ready.is_empty() {
                // Nobody waits: idle tenants' passes would decide nothing.
                self.tenants.clear();
            } else if t.pass <= self.vtime {
                self.tenants.remove(&tenant);
            } else {
                self.forget_idle();
            }
        } else {
            self.turn += 1;
            self.ready.insert((t.pass, self.turn, tenant.clone()));
        }
        Some((tenant, seq, item))
    }

    /// Drops idle tenants whose pass the level has caught up with (they would start at the
    /// current pass anyway), once there are many: amortised O(1) per pop.
    fn forget_idle(&mut self) {
        if self.tenants.len() > 2 * self.ready.len() + 1024 {
            let vtime = self.vtime;
            self.tenants.retain(|_, t| !t.items.is_empty() || t.pass > vtime);
        }
    }
}

impl<T> FairQueue<T> {
    /// An empty queue in which every tenant has weight 1.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty queue with these tenant weights.
    pub fn with_weights(weights: Arc<Weights>) -> Self {
        FairQueue {
            levels: (0..=Priority::MAX.get()).map(|_| Level::default()).collect(),
            len: 0,
            next_seq: 0,
            weights,
        }
    }

    /// Items queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `item` for `tenant` at `priority`.
    pub fn push(&mut self, priority: Priority, tenant: &str, item: T) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.insert(priority, tenant, seq, item);
    }

    /// Puts a popped item back where it stood (before everything of its tenant pushed after it).
    pub fn restore(&mut self, p: Popped<T>) {
        self.insert(p.priority, &p.tenant, p.seq, p.item);
    }

    fn insert(&mut self, priority: Priority, tenant: &str, seq: u64, item: T) {
        let weight = self.weights.of(tenant);
        self.levels[priority.get() as usize].insert(tenant, seq, item, weight);
        self.len += 1;
    }

    /// Takes the next item: highest priority first, then the tenant whose turn it is.
    pub fn pop(&mut self) -> Option<T> {
        self.pop_entry().map(|p| p.item)
    }

    /// Like [`FairQueue::pop`], with where the item stood.
    pub fn pop_entry(&mut self) -> Option<Popped<T>> {
        for (n, level) in self.levels.iter_mut().enumerate().rev() {
            if let Some((tenant, seq, item)) = level.pop() {
                self.len -= 1;
                return Some(Popped {
                    priority: Priority::new(n as i64).expect("levels are priorities"),
                    tenant,
                    seq,
                    item,
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: i64) -> Priority {
        Priority::new(n).unwrap()
    }

    fn weighted(pairs: &[(&str, u32)]) -> FairQueue<String> {
        FairQueue::with_weights(Arc::new(Weights::new(
            1,
            pairs.iter().map(|(t, w)| (t.to_string(), *w)).collect(),
        )))
    }

    #[test]
    fn higher_priority_first_fifo_within() {
        let mut q = FairQueue::new();
        q.push(p(1), "t", "low-1");
        q.push(p(9), "t", "high-1");
        q.push(p(1), "t", "low-2");
        q.push(p(9), "t", "high-2");
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(order, ["high-1", "high-2", "low-1", "low-2"]);
        assert!(q.is_empty());
    }

    #[test]
    fn tenants_take_turns_within_a_priority() {
        let mut q = FairQueue::new();
        for i in 0..100 {
            q.push(p(5), "flood", format!("flood-{i}"));
        }
        q.push(p(5), "small", "small-0".to_string());
        assert_eq!(q.pop().unwrap(), "flood-0");
        assert_eq!(q.pop().unwrap(), "small-0");
        assert_eq!(q.pop().unwrap(), "flood-1");
        assert_eq!(q.len(), 98);
    }

    #[test]
    fn weights_share_a_flood_three_to_one_and_stay_fifo() {
        let mut q = weighted(&[("a", 3)]);
        for i in 0..400 {
            q.push(p(5), "a", format!("a-{i:03}"));
            q.push(p(5), "b", format!("b-{i:03}"));
        }
        let first: Vec<String> = (0..200).map(|_| q.pop().unwrap()).collect();
        let a: Vec<&String> = first.iter().filter(|s| s.starts_with('a')).collect();
        assert_eq!(a.len(), 150, "{first:?}");
        // FIFO within each tenant.
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(a, sorted);
        // Never more than three of a's in a row, never two of b's.
        let s: String = first.iter().map(|x| &x[..1]).collect();
        assert!(!s.contains("aaaa") && !s.contains("bb"), "{s}");
    }

    #[test]
    fn a_late_tenant_gets_its_share_at_once_without_banked_credit() {
        let mut q = weighted(&[("a", 3)]);
        for i in 0..1000 {
            q.push(p(5), "b", format!("b-{i}"));
        }
        // b alone for a long while: it advances the level's pass far.
        for _ in 0..500 {
            q.pop().unwrap();
        }
        for i in 0..100 {
            q.push(p(5), "a", format!("a-{i}"));
        }
        let next: Vec<String> = (0..40).map(|_| q.pop().unwrap()).collect();
        let a = next.iter().filter(|s| s.starts_with('a')).count();
        assert!(
            (29..=31).contains(&a),
            "a gets 3 of every 4 from its first turn: {next:?}"
        );
        // And b is not starved by a's arrival either.
        assert!(next[..5].iter().any(|s| s.starts_with('b')), "{next:?}");
    }

    #[test]
    fn a_tenant_that_pauses_briefly_does_not_jump_ahead() {
        let mut q = weighted(&[]);
        q.push(p(5), "a", "a-0".to_string());
        for i in 0..10 {
            q.push(p(5), "b", format!("b-{i}"));
        }
        assert_eq!(q.pop().unwrap(), "a-0");
        // a is idle for a moment with its pass ahead; when it comes back b goes first.
        q.push(p(5), "a", "a-1".to_string());
        assert_eq!(q.pop().unwrap(), "b-0");
        assert_eq!(q.pop().unwrap(), "a-1");
    }

    #[test]
    fn restore_puts_an_item_back_in_its_place() {
        let mut q = FairQueue::new();
        for i in 0..3 {
            q.push(p(5), "t", i);
        }
        let first = q.pop_entry().unwrap();
        let second = q.pop_entry().unwrap();
        q.push(p(5), "t", 3);
        q.restore(second);
        q.restore(first);
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(order, [0, 1, 2, 3]);
    }

    #[test]
    fn many_idle_tenants_are_forgotten() {
        let mut q = FairQueue::new();
        for i in 0..3 {
            q.push(p(5), "busy", -1 - i);
        }
        let mut busy_served = 0;
        for i in 0..5000 {
            q.push(p(5), &format!("t{i}"), i);
            if q.pop().unwrap() < 0 {
                busy_served += 1;
            }
        }
        assert_eq!(
            busy_served, 3,
            "a stream of new tenants does not starve a waiting one"
        );
        assert!(q.levels[5].tenants.len() < 1100, "{}", q.levels[5].tenants.len());
    }
}
