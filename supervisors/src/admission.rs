//! The checks of intake that need only the routes and the executors: run by tier 0's intake
//! pipeline (`cadre_core::intake`, before the checks that need the store, quotas and budgets)
//! and by a supervisor-only node's SupervisorPeer, so a sub-task is judged by the same code
//! wherever it is submitted.
//!
//! In order: [`parse`] (the wire spec into a [`TaskSpec`], every field validated),
//! [`Admission::route`] (the type must be routed), [`Admission::sandboxed`] (a `fortress`
//! task only on an executor that sandboxes it) and [`Admission::fits_schema`] (params against
//! the executor's params schema).
//!
//! [`Admission::within_depth`] bounds sub-task chains (`limits.max_delegation_depth`); it needs
//! the parent's depth: tier 0 keeps it in its store, and SupervisorPeer.Delegate carries it
//! (`parent_depth`) from node to node, so a supervisor-only node (no store) refuses a sub-task
//! past the limit too. A supervisor node counts the depth of a task it took from the work
//! queue as 0 (tier 0 knows it), so a chain that leaves tier 0 that way may run up to the
//! limit more levels on supervisor nodes before it is refused.

use cadre_proto::{SecurityLevel, SpecError, SpecLimits, TaskSpec, v1};

use crate::config::Route;
use crate::router::Router;

/// Why a submission was refused here.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Malformed or out-of-range input, an unknown type, params that do not fit the schema.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The task cannot run as asked here (a `fortress` task whose executor does not sandbox it).
    #[error("{0}")]
    Precondition(String),
}

/// A spec admitted so far, with where it runs.
#[derive(Debug, Clone)]
pub struct Admission {
    /// The validated spec.
    pub spec: TaskSpec,
    /// Where it runs.
    pub route: Route,
}

/// The wire spec as a validated [`TaskSpec`] (defaults filled in, every field in range).
pub fn parse(wire: Option<&v1::TaskSpec>, limits: &SpecLimits) -> Result<TaskSpec, Refusal> {
    Ok(TaskSpec::from_wire(wire, limits)?)
}

impl Admission {
    /// Routes `spec`: an unknown type is refused, naming the known ones.
    pub fn route(spec: TaskSpec, router: &Router) -> Result<Admission, Refusal> {
        let route = router
            .route(&spec.task_type)
            .map_err(|e| SpecError::invalid("spec.task_type", e.to_string()))?;
        Ok(Admission { spec, route })
    }

    /// Refuses a `fortress` task unless its executor sandboxes its params (today: `exec`, on a
    /// command with no network and a memory limit; the wall-time limit is always on), as the
    /// executor itself was configured at start. The worker checks again before it runs, so a
    /// route changed by a reload cannot take it out of the sandbox.
    pub fn sandboxed(&self, router: &Router) -> Result<(), Refusal> {
        if self.spec.security_level != SecurityLevel::Fortress {
            return Ok(());
        }
        let executor = &self.route.executor;
        let check = match router.executor(executor) {
            Some(e) => e.sandboxed(&self.spec.params),
            None => Err(format!("executor {executor:?} does not exist")),
        };
        check.map_err(|why| {
            Refusal::Precondition(format!(
                "spec.security_level: fortress {why} (task type {} runs on executor {executor:?})",
                self.spec.task_type
            ))
        })
    }

    /// Params that do not fit the executor's params schema are refused here, naming the
    /// failing path, before anything is stored.
    pub fn fits_schema(&self, router: &Router) -> Result<(), Refusal> {
        if let Some(schema) = router.registry.params_schema(&self.route.executor)
            && let Err(e) = schema.validate(&self.spec.params)
        {
            return Err(SpecError::invalid("spec.params_json", e.to_string()).into());
        }
        Ok(())
    }

    /// Refuses a sub-task of `parent`, itself `parent_depth` delegations below its root, when
    /// that would pass `max` (`limits.max_delegation_depth`): a delegation loop ends here
    /// with FAILED_PRECONDITION instead of recursing for ever.
    pub fn within_depth(parent: &str, parent_depth: u32, max: u32) -> Result<(), Refusal> {
        if parent_depth < max {
            return Ok(());
        }
        Err(Refusal::Precondition(format!(
            "spec.parent_id: task {parent} is already {parent_depth} delegations deep; \
             limits.max_delegation_depth ({max}) allows it no sub-task"
        )))
    }

    /// Every check of this module in order: parse, route, sandbox, schema.
    pub fn admit(
        wire: Option<&v1::TaskSpec>,
        limits: &SpecLimits,
        router: &Router,
    ) -> Result<Admission, Refusal> {
        let admission = Admission::route(parse(wire, limits)?, router)?;
        admission.sandboxed(router)?;
        admission.fits_schema(router)?;
        Ok(admission)
    }
}

#[cfg(test)]
mod tests {
    use super::{Admission, Refusal};

    #[test]
    fn a_parent_at_the_depth_limit_takes_no_sub_task() {
        assert!(Admission::within_depth("p", 0, 1).is_ok());
        assert!(Admission::within_depth("p", 7, 8).is_ok());
        match Admission::within_depth("p", 8, 8) {
            Err(Refusal::Precondition(m)) => {
                assert!(
                    m.contains("limits.max_delegation_depth (8)") && m.contains("task p"),
                    "{m}"
                )
            }
            other => panic!("{other:?}"),
        }
    }
}
