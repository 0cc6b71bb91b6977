//! cadre workflows as data: a workflow is a named, versioned DAG of steps, registered as JSON
//! and immutable under its version; an instance is a task whose steps are its sub-tasks. This
//! crate holds everything about workflows that needs no store, no network and no clock of its
//! own, so it is tested exhaustively on its own; the tier-0 engine (`cadre_core::workflows`)
//! reads an instance's stored state, runs [`reconcile()`] and carries out its actions.
//!
//! Layer: 3.
//! May import: cadre-agents, cadre-proto.
//!
//! Layout:
//! - [`definition`]: the definition format ([`Definition`], [`Step`]) and its parsing.
//! - [`reference`]: the `${{ path }}` reference syntax and its resolution.
//! - [`condition`]: the `when` operator tree.
//! - [`validate`]: registration checks, every problem named.
//! - [`keys`]: the idempotency keys that make each sub-task submission happen once.
//! - [`observed`]: what the reconciler reads and decides; [`reconcile`]: the decision;
//!   [`agent`]: the durable agent loop inside it.
#![forbid(unsafe_code)]

pub mod agent;
pub mod condition;
pub mod definition;
pub mod keys;
pub mod observed;
pub mod reconcile;
pub mod reference;
pub mod validate;

pub use definition::{Definition, Step, StepKind, instance_task_type, workflow_of};
pub use observed::{
    Action, Child, Done, Observed, Outcome, Plan, Record, Signal, StepReport, Submission, Waiting,
};
pub use reconcile::reconcile;
pub use validate::{Catalog, validate};
