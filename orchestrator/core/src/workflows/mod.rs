//! Workflows in tier 0. A workflow is a named, versioned DAG of steps ([`cadre_workflow`]
//! holds the format and the reconciler); an instance is a task of type
//! `workflow.<name>.run`, stored under the [`cadre_proto::WORKFLOW_SUPERVISOR`] with worker
//! kind `v<version>` (the definition it keeps), whose steps are its sub-tasks.
//!
//! - [`definitions`]: registering (API or config files) and reading definitions, the parsed
//!   and compiled definitions cache, and the catalog registration checks use.
//! - [`admission`]: what intake does differently for an instance (its input checked against
//!   the definition's input schema; no supervisor to dispatch to).
//! - [`engine`]: the supervised actor that drives every unfinished instance: it follows the
//!   event log, reconciles an instance when one of its sub-tasks ends, a signal arrives or a
//!   timer is due, and applies what the reconciler decides ([`drive`]). One replica leads.
//! - [`signals`]: signals and approvals sent to an instance.
//! - [`report`]: an instance's steps as Get, the dashboard and the engine's progress events
//!   show them.

pub mod admission;
pub mod definitions;
pub mod drive;
pub mod engine;
pub(crate) mod report;
pub mod signals;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cadre_agents::schema::Schema;
use cadre_workflow::Definition;

/// Definitions kept parsed and compiled, by (name, version): stored definitions never
/// change, so an entry never goes stale.
const CACHE_MAX: usize = 1024;

/// A definition ready to run: parsed, and its input schema compiled.
pub struct Loaded {
    /// The definition.
    pub def: Definition,
    /// Its input schema, compiled (None: any input).
    pub input: Option<Schema>,
}

/// The node's workflow state that is not in the store: the definitions cache.
#[derive(Default)]
pub struct Workflows {
    cache: Mutex<HashMap<(String, u32), Arc<Loaded>>>,
}

impl Workflows {
    /// The cached definition, if any.
    fn cached(&self, name: &str, version: u32) -> Option<Arc<Loaded>> {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(name.to_string(), version))
            .cloned()
    }

    /// Caches a definition (the cache is emptied when full: entries are cheap to load again).
    fn keep(&self, loaded: Arc<Loaded>) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert((loaded.def.name.clone(), loaded.def.version), loaded);
    }
}

/// The worker kind an instance of `version` is stored with.
pub fn version_kind(version: u32) -> String {
    format!("v{version}")
}

/// The version an instance's worker kind names.
pub fn kind_version(kind: &str) -> Option<u32> {
    kind.strip_prefix('v')?.parse().ok()
}
