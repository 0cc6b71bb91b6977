//! What a tier-0 process knows of the pause set ([`Paused`]); kept in step with the store by
//! `crate::pauses`.

use std::collections::BTreeSet;
use std::sync::{Mutex, RwLock};

use cadre_store::StoredPause;
use cadre_supervisors::PauseSet;

/// What this tier-0 process knows of the pause set.
#[derive(Default)]
pub struct Paused {
    /// The set as last read from the store, oldest first.
    pub(crate) current: RwLock<Vec<StoredPause>>,
    /// `cadre_paused` label pairs set to 1 last time, set to 0 once they go.
    pub(crate) exported: Mutex<BTreeSet<(&'static str, String)>>,
    /// The last delivery error logged (the same one is not logged again every round).
    pub(crate) last_error: Mutex<Option<String>>,
    /// Held from reading the store to sending the set, so a set read before a change is never
    /// sent after the set read after it.
    pub(crate) delivering: tokio::sync::Mutex<()>,
}

impl Paused {
    /// The set in force, as stored.
    pub fn current(&self) -> Vec<StoredPause> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The set in force, as supervisors take it.
    pub fn set(&self) -> PauseSet {
        PauseSet {
            pauses: self.current().into_iter().map(|p| p.pause).collect(),
        }
    }
}
