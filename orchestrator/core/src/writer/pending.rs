//! The unfinished-task counters the writer keeps for intake's bounds
//! (`limits.max_pending_tasks` and the per-tenant caps): set from the store, moved by commits.

use std::collections::HashMap;

/// Unfinished tasks, in total and per tenant (bounds intake and per-tenant caps).
pub(super) struct Pending {
    /// All tenants' together.
    total: u64,
    /// Per tenant; a tenant with none has no entry.
    by_tenant: HashMap<String, u64>,
}

impl Pending {
    /// The counts of `by_tenant` (the store's count of unfinished tasks), in total their sum.
    pub(super) fn new(by_tenant: HashMap<String, u64>) -> Self {
        Pending {
            total: by_tenant.values().sum(),
            by_tenant,
        }
    }

    /// Unfinished tasks in total.
    pub(super) fn total(&self) -> u64 {
        self.total
    }

    /// Unfinished tasks of `tenant`.
    pub(super) fn of(&self, tenant: &str) -> u64 {
        self.by_tenant.get(tenant).copied().unwrap_or(0)
    }

    /// A task of `tenant` was stored.
    pub(super) fn added(&mut self, tenant: &str) {
        self.total += 1;
        *self.by_tenant.entry(tenant.to_string()).or_default() += 1;
    }

    /// A task of `tenant` reached a terminal state (counts never go below zero: the task may
    /// have been counted before a refresh from the store).
    pub(super) fn finished(&mut self, tenant: &str) {
        self.total = self.total.saturating_sub(1);
        if let Some(n) = self.by_tenant.get_mut(tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.by_tenant.remove(tenant);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_move_per_tenant_and_never_go_below_zero() {
        let mut p = Pending::new(HashMap::from([("a".to_string(), 2), ("b".to_string(), 1)]));
        assert_eq!((p.total(), p.of("a"), p.of("b"), p.of("c")), (3, 2, 1, 0));
        p.added("c");
        p.finished("a");
        assert_eq!((p.total(), p.of("a"), p.of("c")), (3, 1, 1));
        p.finished("b");
        assert!(!p.by_tenant.contains_key("b"), "a tenant at zero leaves no entry");
        p.finished("b");
        p.finished("unknown");
        assert_eq!((p.total(), p.of("b")), (0, 0));
        p.finished("a");
        assert_eq!((p.total(), p.of("a")), (0, 0), "the total stays at zero");
    }
}
