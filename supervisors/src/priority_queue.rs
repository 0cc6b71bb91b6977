//! The per-pool run queue: strict priority 0-9 (higher first), FIFO within a priority, and
//! within a priority round-robin across tenants, so a tenant with a million queued tasks
//! cannot starve a tenant with one. Weights per tenant are the next step (DESIGN section 3);
//! the ring already gives each tenant its own FIFO to weight.

use std::collections::{HashMap, VecDeque};

use cadre_proto::Priority;

/// A fair priority queue of `T`.
#[derive(Debug)]
pub struct FairQueue<T> {
    levels: Vec<Level<T>>,
    len: usize,
}

#[derive(Debug)]
struct Level<T> {
    /// Tenants with queued items, in round-robin order.
    ring: VecDeque<String>,
    queues: HashMap<String, VecDeque<T>>,
}

impl<T> Default for Level<T> {
    fn default() -> Self {
        Level {
            ring: VecDeque::new(),
            queues: HashMap::new(),
        }
    }
}

impl<T> Default for FairQueue<T> {
    fn default() -> Self {
        FairQueue {
            levels: (0..=Priority::MAX.get()).map(|_| Level::default()).collect(),
            len: 0,
        }
    }
}

impl<T> FairQueue<T> {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
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
        let level = &mut self.levels[priority.get() as usize];
        let q = level.queues.entry(tenant.to_string()).or_default();
        if q.is_empty() {
            level.ring.push_back(tenant.to_string());
        }
        q.push_back(item);
        self.len += 1;
    }

    /// Takes the next item: highest priority first, then the next tenant in the ring.
    pub fn pop(&mut self) -> Option<T> {
        for level in self.levels.iter_mut().rev() {
            while let Some(tenant) = level.ring.pop_front() {
                let Some(q) = level.queues.get_mut(&tenant) else {
                    continue;
                };
                let Some(item) = q.pop_front() else {
                    level.queues.remove(&tenant);
                    continue;
                };
                if q.is_empty() {
                    level.queues.remove(&tenant);
                } else {
                    level.ring.push_back(tenant);
                }
                self.len -= 1;
                return Some(item);
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
}
