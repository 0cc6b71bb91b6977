//! Registering and reading workflow definitions. A definition is checked in full at
//! registration ([`cadre_workflow::validate`] against this node's task types and the
//! workflows already registered), stored under its name and version, and never changes: the
//! same definition registered again is accepted as it is, a different one under a version
//! that exists is ALREADY_EXISTS. Instances keep the version they started with.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use cadre_agents::schema::Schema;
use cadre_proto::SpecError;
use cadre_proto::clock::now_ms;
use cadre_store::StoredDefinition;
use cadre_workflow::{Catalog, Definition, validate};
use serde_json::Value;

use super::Loaded;
use crate::auth::{Action, Principal};
use crate::error::{Error, Result};
use crate::node::Node;

/// Who registered the definitions loaded from config files at start.
pub const FROM_CONFIG: &str = "config";

/// What registration checks task types against: this node's routes and executors, and the
/// registered workflows (a step may start another workflow).
pub struct NodeCatalog {
    /// Params schema by task type (None: the executor publishes none).
    types: BTreeMap<String, Option<Value>>,
    /// The task type routed to the `llm` executor, if any.
    model: Option<String>,
}

impl Catalog for NodeCatalog {
    fn params_schema(&self, task_type: &str) -> Option<Option<Value>> {
        self.types.get(task_type).cloned()
    }

    fn model_task_type(&self) -> Option<String> {
        self.model.clone()
    }
}

impl Node {
    /// Registers a definition (JSON). Returns it as stored and whether it was stored now
    /// (false: this very definition was registered before). Audited as `workflow.register`.
    pub async fn register_workflow(&self, p: &Principal, body: &str) -> Result<(StoredDefinition, bool)> {
        self.permit(p, Action::RegisterWorkflow).await?;
        let (stored, created) = self.register_definition(body, &p.subject).await?;
        if created {
            let target = format!("{}@{}", stored.name, stored.version);
            self.audit(Some(p), "workflow.register", &target, "ok", "").await;
        }
        Ok((stored, created))
    }

    /// Registers the definitions in `files` (JSON) at start, as [`FROM_CONFIG`]. A file whose
    /// name and version are registered with a different definition stops the start: a
    /// definition never changes under its version.
    pub async fn register_workflow_files(&self, files: &[impl AsRef<Path>]) -> Result<Vec<StoredDefinition>> {
        let mut out = Vec::with_capacity(files.len());
        for f in files {
            let f = f.as_ref();
            let body = std::fs::read_to_string(f).map_err(|e| {
                Error::FailedPrecondition(format!("workflows.files: cannot read {}: {e}", f.display()))
            })?;
            let (stored, _) = self
                .register_definition(&body, FROM_CONFIG)
                .await
                .map_err(|e| Error::FailedPrecondition(format!("workflows.files: {}: {e}", f.display())))?;
            out.push(stored);
        }
        Ok(out)
    }

    /// The definition checks and the insert, without permission or audit.
    async fn register_definition(&self, body: &str, by: &str) -> Result<(StoredDefinition, bool)> {
        let def = Definition::from_json(body).map_err(|e| SpecError::invalid("definition", e))?;
        let catalog = self.catalog().await?;
        if let Err(problems) = validate(&def, &catalog) {
            return Err(SpecError::invalid("definition", problems.join("; ")).into());
        }
        let stored = StoredDefinition {
            name: def.name.clone(),
            version: def.version,
            body: canonical(&def)?,
            created_at_ms: now_ms(),
            created_by: by.to_string(),
        };
        if self.store.insert_definition(&stored).await? {
            tracing::info!(workflow = %stored.name, version = stored.version, by, "workflow registered");
            return Ok((stored, true));
        }
        let existing = self
            .store
            .definition(&stored.name, Some(stored.version))
            .await?
            .ok_or_else(|| Error::Unavailable("the store refused the definition; retry".into()))?;
        if existing.body == stored.body {
            return Ok((existing, false));
        }
        let newest = self
            .store
            .definition(&stored.name, None)
            .await?
            .map_or(stored.version, |d| d.version);
        Err(Error::AlreadyExists(format!(
            "workflow {} version {} is registered with a different definition; a version never \
             changes: register it as version {}",
            stored.name,
            stored.version,
            newest + 1
        )))
    }

    /// The newest version of every workflow, or every version of `name` (oldest first).
    pub async fn workflows(&self, p: &Principal, name: Option<&str>) -> Result<Vec<StoredDefinition>> {
        self.permit(p, Action::ReadWorkflows).await?;
        Ok(self.store.definitions(name).await?)
    }

    /// One version of a workflow, or its newest (`version` None).
    pub async fn workflow(
        &self,
        p: &Principal,
        name: &str,
        version: Option<u32>,
    ) -> Result<StoredDefinition> {
        self.permit(p, Action::ReadWorkflows).await?;
        self.store.definition(name, version).await?.ok_or_else(|| {
            Error::NotFound(match version {
                Some(v) => format!("no workflow {name} version {v}"),
                None => format!("no workflow {name}"),
            })
        })
    }

    /// A definition, parsed and compiled, from the cache or the store: version `version`, or
    /// the newest.
    pub(crate) async fn loaded(&self, name: &str, version: Option<u32>) -> Result<Arc<Loaded>> {
        if let Some(v) = version
            && let Some(l) = self.workflows.cached(name, v)
        {
            return Ok(l);
        }
        let stored = self.store.definition(name, version).await?.ok_or_else(|| {
            SpecError::invalid(
                "spec.task_type",
                format!("no workflow {name} is registered (register it first: cadre workflow register)"),
            )
        })?;
        if let Some(l) = self.workflows.cached(&stored.name, stored.version) {
            return Ok(l);
        }
        let def = Definition::from_json(&stored.body)
            .map_err(|e| Error::Unavailable(format!("stored workflow {name} is unreadable: {e}")))?;
        let input = def
            .input_schema
            .as_ref()
            .map(Schema::compile)
            .transpose()
            .map_err(|e| Error::Unavailable(format!("stored workflow {name}: input_schema: {e}")))?;
        let loaded = Arc::new(Loaded { def, input });
        self.workflows.keep(loaded.clone());
        Ok(loaded)
    }

    /// What registration checks against: every routed task type with its params schema, and
    /// every registered workflow's instance type with its input schema.
    pub(crate) async fn catalog(&self) -> Result<NodeCatalog> {
        let routes = self.router.routes();
        let mut types = BTreeMap::new();
        let mut model = None;
        for (task_type, route) in routes.iter() {
            let schema = self
                .router
                .executor(&route.executor)
                .and_then(|e| e.params_schema());
            types.insert(task_type.clone(), schema);
            if route.executor == "llm" && model.is_none() {
                model = Some(task_type.clone());
            }
        }
        for d in self.store.definitions(None).await? {
            let input = Definition::from_json(&d.body).ok().and_then(|d| d.input_schema);
            types.insert(cadre_workflow::instance_task_type(&d.name), input);
        }
        Ok(NodeCatalog { types, model })
    }
}

/// A definition as stored: its parsed form written back, so the same definition with other
/// spacing or key order is the same text.
fn canonical(def: &Definition) -> Result<String> {
    serde_json::to_string(def).map_err(|e| Error::Unavailable(format!("cannot encode the definition: {e}")))
}
