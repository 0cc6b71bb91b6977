//! What an operator has paused: [`PauseSet`], the set of [`Pause`]s a supervisor consults before
//! it starts a queued task. Paused tasks stay queued; running ones finish. Tier 0 keeps the set
//! durably and sends the whole set to every supervisor whenever it changes (and again after a
//! supervisor or a supervisor node restarts), so a supervisor never decides on its own.

use serde::{Deserialize, Serialize};

/// One paused scope.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "scope", rename_all = "snake_case")]
pub enum Pause {
    /// Every pool of a supervisor.
    Supervisor {
        /// The supervisor's name.
        supervisor: String,
    },
    /// One pool (worker kind) of a supervisor.
    Pool {
        /// The supervisor's name.
        supervisor: String,
        /// The worker kind.
        worker_kind: String,
    },
    /// Every task whose type starts with a prefix.
    TaskTypePrefix {
        /// The prefix (non-empty).
        prefix: String,
    },
    /// Every task of a tenant.
    Tenant {
        /// The tenant.
        tenant: String,
    },
}

/// A queued task as a pause sees it.
#[derive(Clone, Copy, Debug)]
pub struct PauseProbe<'a> {
    /// The supervisor that would run it.
    pub supervisor: &'a str,
    /// Its pool.
    pub worker_kind: &'a str,
    /// Its type.
    pub task_type: &'a str,
    /// Its tenant.
    pub tenant: &'a str,
}

impl Pause {
    /// Whether this pause stops the whole pool `worker_kind` of `supervisor` (its own pause or
    /// its supervisor's), as status and metrics report it.
    pub fn holds_pool(&self, supervisor: &str, worker_kind: &str) -> bool {
        match self {
            Pause::Supervisor { supervisor: s } => s == supervisor,
            Pause::Pool {
                supervisor: s,
                worker_kind: k,
            } => s == supervisor && k == worker_kind,
            _ => false,
        }
    }

    /// Whether this pause holds `task` back.
    pub fn holds(&self, task: PauseProbe<'_>) -> bool {
        match self {
            Pause::Supervisor { supervisor } => supervisor == task.supervisor,
            Pause::Pool {
                supervisor,
                worker_kind,
            } => supervisor == task.supervisor && worker_kind == task.worker_kind,
            Pause::TaskTypePrefix { prefix } => task.task_type.starts_with(prefix.as_str()),
            Pause::Tenant { tenant } => tenant == task.tenant,
        }
    }
}

/// Every pause in force (empty: nothing paused).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseSet {
    /// The pauses, in no particular order.
    pub pauses: Vec<Pause>,
}

impl PauseSet {
    /// Whether any pause holds `task` back.
    pub fn holds(&self, task: PauseProbe<'_>) -> bool {
        self.pauses.iter().any(|p| p.holds(task))
    }

    /// Whether nothing is paused.
    pub fn is_empty(&self) -> bool {
        self.pauses.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe<'a>(task_type: &'a str, tenant: &'a str) -> PauseProbe<'a> {
        PauseProbe {
            supervisor: "intelligence",
            worker_kind: "writer",
            task_type,
            tenant,
        }
    }

    #[test]
    fn each_scope_holds_only_its_tasks() {
        let sup = Pause::Supervisor {
            supervisor: "intelligence".into(),
        };
        let pool = Pause::Pool {
            supervisor: "intelligence".into(),
            worker_kind: "coder".into(),
        };
        let prefix = Pause::TaskTypePrefix {
            prefix: "intelligence.text.".into(),
        };
        let tenant = Pause::Tenant {
            tenant: "acme".into(),
        };
        let t = probe("intelligence.text.summarize", "other");
        assert!(sup.holds(t));
        assert!(!pool.holds(t), "another pool of the supervisor");
        assert!(prefix.holds(t));
        assert!(!tenant.holds(t));
        assert!(tenant.holds(probe("intelligence.code.write", "acme")));
        assert!(!prefix.holds(probe("intelligence.code.write", "acme")));
        let set = PauseSet { pauses: vec![tenant] };
        assert!(set.holds(probe("x.y.z", "acme")));
        assert!(!set.holds(probe("x.y.z", "beta")));
        assert!(PauseSet::default().is_empty());
    }
}
