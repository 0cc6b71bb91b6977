//! What intake checks for a workflow instance instead of a route: the workflow is registered,
//! its input (the task's params) fits the definition's input schema, and the instance asks
//! for nothing a workflow cannot give (a sandbox: its steps run the code, not the instance).

use cadre_proto::{SecurityLevel, SpecError, TaskSpec, WORKFLOW_SUPERVISOR};

use super::version_kind;
use crate::error::{Error, Result};
use crate::node::Node;

/// Where an admitted instance is stored: no supervisor runs it; the engine drives it on the
/// definition version it names.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceRoute {
    /// The definition version the instance keeps.
    pub version: u32,
}

impl InstanceRoute {
    /// The supervisor name it is stored under.
    pub fn supervisor(&self) -> &'static str {
        WORKFLOW_SUPERVISOR
    }

    /// The worker kind it is stored under (`v<version>`).
    pub fn worker_kind(&self) -> String {
        version_kind(self.version)
    }
}

impl Node {
    /// Admits an instance of workflow `name` on the newest version of its definition.
    pub(crate) async fn instance_route(&self, spec: &TaskSpec, name: &str) -> Result<InstanceRoute> {
        if spec.security_level == SecurityLevel::Fortress {
            return Err(Error::FailedPrecondition(format!(
                "{} is a workflow: it runs no code of its own to sandbox; run the steps that need \
                 a sandbox as fortress tasks",
                spec.task_type
            )));
        }
        let loaded = self.loaded(name, None).await?;
        if let Some(schema) = &loaded.input
            && let Err(e) = schema.validate(&spec.params)
        {
            return Err(SpecError::invalid(
                "spec.params",
                format!("does not fit the input schema of workflow {name}: {e}"),
            )
            .into());
        }
        Ok(InstanceRoute {
            version: loaded.def.version,
        })
    }
}
