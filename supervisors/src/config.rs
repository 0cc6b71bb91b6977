//! Supervisor specs and the routing table.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::restart_policy::RestartIntensity;

/// What one tier-1 supervisor owns: a pool size per worker kind and its restart intensity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisorSpec {
    /// Worker kind -> pool size (the kind's concurrency limit).
    pub pools: BTreeMap<String, usize>,
    /// Worker restarts tolerated before the supervisor gives up and escalates.
    #[serde(default)]
    pub restart: RestartIntensity,
}

/// Where one task type goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// The tier-1 supervisor.
    pub supervisor: String,
    /// The worker kind (pool) inside it.
    pub worker: String,
    /// The executor the worker runs (a name in the executor registry).
    pub executor: String,
}

/// Task type -> [`Route`]. Exact matches only: an unknown type is rejected at intake.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RoutingTable(pub BTreeMap<String, Route>);

impl RoutingTable {
    /// The route for `task_type`, if any.
    pub fn resolve(&self, task_type: &str) -> Option<&Route> {
        self.0.get(task_type)
    }

    /// Every task type and its route.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Route)> {
        self.0.iter()
    }
}
