//! The executor registry: which [`Executor`] runs under which name.
//!
//! It knows no executor itself; the built-in ones are registered by `cadre-executors`
//! (`cadre_executors::builtin`, `cadre_executors::configured`), and the node adds its own.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use crate::executor::Executor;
use crate::schema::Schema;

/// Maps the executor names used in routes (`echo`, `summarize`, ...) to implementations.
#[derive(Clone, Default)]
pub struct ExecutorRegistry {
    executors: BTreeMap<String, Arc<dyn Executor>>,
    /// Compiled params schemas by executor name (None: it publishes none, or not a valid
    /// schema), compiled at first use and shared by every clone.
    params: Arc<Mutex<HashMap<String, Option<Arc<Schema>>>>>,
}

impl ExecutorRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces an executor under `name`.
    pub fn register(&mut self, name: impl Into<String>, executor: Arc<dyn Executor>) {
        let name = name.into();
        self.params
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&name);
        self.executors.insert(name, executor);
    }

    /// The compiled params schema of executor `name` (None when it has none, or when it
    /// publishes one that is not a valid schema, which is logged once).
    pub fn params_schema(&self, name: &str) -> Option<Arc<Schema>> {
        let mut cache = self.params.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(hit) = cache.get(name) {
            return hit.clone();
        }
        let compiled = self.get(name)?.params_schema().and_then(|raw| match Schema::compile(&raw) {
            Ok(s) => Some(Arc::new(s)),
            Err(e) => {
                tracing::error!(executor = name, error = %e, "the executor's params schema is not valid; params go unchecked at intake");
                None
            }
        });
        cache.insert(name.to_string(), compiled.clone());
        compiled
    }

    /// Looks an executor up by name.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Executor>> {
        self.executors.get(name).cloned()
    }

    /// Registered names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.executors.keys().map(String::as_str)
    }
}
