//! Routing a task type to where it runs, and making a stored task runnable there.
//!
//! One [`Router`] per process holds the routes in force (swapped whole by a config reload) and
//! the executors by name. Intake uses it to refuse unknown types and build the runnable task,
//! recovery (tier 0's store, a supervisor node's held messages) to run stored tasks again, and
//! `ListTaskTypes` to describe each type with its executor's schemas.

use std::sync::{Arc, RwLock};

use cadre_agents::{Executor, ExecutorRegistry};
use cadre_proto::{SecurityLevel, TaskRecord};

use crate::config::{Route, RoutingTable};
use crate::task::QueuedTask;

/// Routes shared by intake, recovery and reload; swapped whole on reload.
pub type SharedRoutes = Arc<RwLock<Arc<RoutingTable>>>;

/// A task type no route names, with the types that are known.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("unknown task type {task_type:?} (known: {known})")]
pub struct UnknownType {
    /// The type asked for.
    pub task_type: String,
    /// Every routed type, comma-separated in name order.
    pub known: String,
}

/// The routes in force and the executors they name.
#[derive(Clone)]
pub struct Router {
    /// The routes, swapped whole on reload.
    pub routes: SharedRoutes,
    /// Executors by name.
    pub registry: ExecutorRegistry,
}

impl Router {
    /// A router over `routes` and `registry`.
    pub fn new(routes: RoutingTable, registry: ExecutorRegistry) -> Self {
        Router {
            routes: Arc::new(RwLock::new(Arc::new(routes))),
            registry,
        }
    }

    /// The routes in force now.
    pub fn routes(&self) -> Arc<RoutingTable> {
        self.routes.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the routes (a config reload); tasks already queued keep their route.
    pub fn replace(&self, routes: RoutingTable) {
        *self.routes.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(routes);
    }

    /// The route of `task_type`, or why there is none.
    pub fn route(&self, task_type: &str) -> Result<Route, UnknownType> {
        let routes = self.routes();
        routes.resolve(task_type).cloned().ok_or_else(|| UnknownType {
            task_type: task_type.to_string(),
            known: routes
                .iter()
                .map(|(t, _)| t.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// The executor registered under `name`.
    pub fn executor(&self, name: &str) -> Option<Arc<dyn Executor>> {
        self.registry.get(name)
    }

    /// A runnable task for `record` on `route`, or None if the route's executor is unknown.
    pub fn queued(&self, record: &TaskRecord, route: &Route) -> Option<QueuedTask> {
        Some(QueuedTask {
            id: record.id,
            tenant: record.tenant.clone(),
            task_type: record.spec.task_type.clone(),
            worker_kind: route.worker.clone(),
            executor: self.registry.get(&route.executor)?,
            params: record.spec.params.clone(),
            priority: record.spec.priority,
            timeout: record.spec.timeout,
            retry: record.spec.retry.clone(),
            attempts_started: record.attempt,
            verified: record.spec.security_level != SecurityLevel::Standard,
            fortress: record.spec.security_level == SecurityLevel::Fortress,
            // Intake fills this in from the submit span. The store does not keep it, so a task
            // recovered after a restart (or a supervisor restart) starts a new trace.
            traceparent: None,
            concurrency_key: record.spec.concurrency_key.clone(),
            rate_limited: 0,
        })
    }
}
