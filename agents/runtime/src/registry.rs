//! The executor registry: which [`Executor`] runs under which name.
//!
//! It knows no executor itself; the built-in ones are registered by `cadre-executors`
//! (`cadre_executors::builtin`, `cadre_executors::configured`), and the node adds its own.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::executor::Executor;

/// Maps the executor names used in routes (`echo`, `summarize`, ...) to implementations.
#[derive(Clone, Default)]
pub struct ExecutorRegistry {
    executors: BTreeMap<String, Arc<dyn Executor>>,
}

impl ExecutorRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces an executor under `name`.
    pub fn register(&mut self, name: impl Into<String>, executor: Arc<dyn Executor>) {
        self.executors.insert(name.into(), executor);
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
