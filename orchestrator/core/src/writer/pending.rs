//! The unfinished-task counters the writer keeps for intake's bounds.

use std::collections::HashMap;

/// Unfinished tasks, in total and per tenant (bounds intake and per-tenant caps).
#[derive(Default)]
pub(super) struct Pending {
    pub(super) total: u64,
    pub(super) by_tenant: HashMap<String, u64>,
}
