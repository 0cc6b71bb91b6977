//! The holds a tier-0 replica knows of, by the end of their window (see [`super`]).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::sync::{Arc, Mutex};

use cadre_proto::TaskId;

/// Known holds by the end of their window (soonest first), and the set of their tasks.
type Due = (BinaryHeap<Reverse<(i64, TaskId)>>, HashSet<TaskId>);

/// The holds this replica knows of, by the end of their window, and the wake-up of the loop
/// that releases them ([`super::spawn`]).
#[derive(Default)]
pub struct Debouncer {
    /// (window end, task), soonest first, and the tasks in it.
    due: Mutex<Due>,
    /// Woken when a hold is added.
    pub(super) wake: Arc<tokio::sync::Notify>,
}

impl Debouncer {
    /// Remembers that task `id` holds its key until `until_ms`.
    pub(super) fn expect(&self, id: TaskId, until_ms: i64) {
        let mut due = self.due.lock().unwrap_or_else(|e| e.into_inner());
        if due.1.insert(id) {
            due.0.push(Reverse((until_ms, id)));
        }
        drop(due);
        self.wake.notify_one();
    }

    /// Takes the known holds whose window has passed at `now`; returns them and the end of the
    /// next window (if any).
    pub(super) fn take_due(&self, now: i64) -> (Vec<TaskId>, Option<i64>) {
        let mut due = self.due.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        while let Some(Reverse((until, id))) = due.0.peek().copied() {
            if until > now {
                return (out, Some(until));
            }
            due.0.pop();
            due.1.remove(&id);
            out.push(id);
        }
        (out, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_come_due_in_window_order_once_each() {
        let d = Debouncer::default();
        let (a, b) = (TaskId::new(), TaskId::new());
        d.expect(a, 20);
        d.expect(b, 10);
        d.expect(a, 20);
        assert_eq!(d.take_due(5), (vec![], Some(10)));
        assert_eq!(d.take_due(20), (vec![b, a], None));
        assert_eq!(d.take_due(30), (vec![], None));
    }
}
