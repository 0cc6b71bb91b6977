//! Running limits per concurrency key, shared by every supervisor of a process.
//!
//! A task with a concurrency key whose (tenant, key) has a `[[concurrency]]` rule may start only
//! while fewer than the rule's `limit` tasks of that tenant with that key run in this process,
//! whichever supervisor, pool or task type runs them. Starting takes a [`KeyPermit`]; dropping
//! it (the attempt ended, the task was cancelled, its supervisor died with its state) gives the
//! slot back, so nothing can leak it. A slot is held only while an attempt runs: not during a
//! retry's backoff, not while the task waits in the queue.
//!
//! A supervisor that found a key full parks its task and stays registered as a waiter of the
//! key ([`KeyLimits::acquire`] registers it under the same lock that saw the key full, so no
//! release is missed) until it has no parked task of that key left ([`KeyLimits::unwatch`]);
//! each release calls every waiter's [`Wake`]. Keys without a matching rule are unlimited and
//! cost one scan of the rules per dispatch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::dispatch_config::ConcurrencyRule;

/// A concurrency key of a tenant: what a limit counts.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId {
    /// The tenant.
    pub tenant: String,
    /// The task's concurrency key.
    pub key: String,
}

/// A new waiter id (one per supervisor instance).
pub fn next_waiter_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Called (outside any lock) when a slot of a key a waiter watches is given back.
pub type Wake = Arc<dyn Fn(KeyId) + Send + Sync>;

/// The limits and what runs under them.
pub struct KeyLimits {
    /// Most specific first (config order among equals).
    rules: Vec<ConcurrencyRule>,
    keys: Mutex<HashMap<KeyId, KeyState>>,
}

struct KeyState {
    limit: u32,
    running: u32,
    /// Waiter id -> how to wake it.
    waiters: HashMap<u64, Wake>,
}

/// What [`KeyLimits::acquire`] decided.
pub enum Acquire {
    /// No rule limits this key.
    Unlimited,
    /// A slot, held until the permit is dropped.
    Granted(KeyPermit),
    /// The key is at its limit; the waiter is registered.
    Full,
}

/// One running task's slot of its key; dropping it gives the slot back.
pub struct KeyPermit {
    limits: Arc<KeyLimits>,
    id: KeyId,
}

impl Drop for KeyPermit {
    fn drop(&mut self) {
        self.limits.release(&self.id);
    }
}

impl std::fmt::Debug for KeyPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyPermit({:?})", self.id)
    }
}

impl Default for KeyLimits {
    fn default() -> Self {
        KeyLimits::new(Vec::new())
    }
}

impl KeyLimits {
    /// Limits from `rules` (validated by the config).
    pub fn new(mut rules: Vec<ConcurrencyRule>) -> Self {
        // Stable: among rules as specific as each other the first in the config wins.
        rules.sort_by_key(|r| std::cmp::Reverse(r.specificity()));
        KeyLimits {
            rules,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// Whether any rule exists (with none, keys cost nothing).
    pub fn any(&self) -> bool {
        !self.rules.is_empty()
    }

    /// The limit of `id`: the most specific matching rule's, or None (unlimited).
    pub fn limit_of(&self, id: &KeyId) -> Option<u32> {
        self.rules
            .iter()
            .find(|r| r.matches(&id.tenant, &id.key))
            .map(|r| r.limit)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<KeyId, KeyState>> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a slot of `id`, or registers `waiter` to be woken when one is given back.
    pub fn acquire(self: &Arc<Self>, id: &KeyId, waiter: (u64, &Wake)) -> Acquire {
        let Some(limit) = self.limit_of(id) else {
            return Acquire::Unlimited;
        };
        let mut keys = self.lock();
        let state = keys.entry(id.clone()).or_insert_with(|| KeyState {
            limit,
            running: 0,
            waiters: HashMap::new(),
        });
        if state.running < state.limit {
            state.running += 1;
            return Acquire::Granted(KeyPermit {
                limits: self.clone(),
                id: id.clone(),
            });
        }
        state.waiters.entry(waiter.0).or_insert_with(|| waiter.1.clone());
        Acquire::Full
    }

    /// Free slots of `id` now (`u32::MAX` when unlimited).
    pub fn room(&self, id: &KeyId) -> u32 {
        let Some(limit) = self.limit_of(id) else {
            return u32::MAX;
        };
        self.lock()
            .get(id)
            .map_or(limit, |s| s.limit.saturating_sub(s.running))
    }

    /// Tasks of `id` running now.
    pub fn running(&self, id: &KeyId) -> u32 {
        self.lock().get(id).map_or(0, |s| s.running)
    }

    /// `waiter` no longer waits for `id`.
    pub fn unwatch(&self, id: &KeyId, waiter: u64) {
        let mut keys = self.lock();
        if let Some(s) = keys.get_mut(id) {
            s.waiters.remove(&waiter);
            if s.running == 0 && s.waiters.is_empty() {
                keys.remove(id);
            }
        }
    }

    fn release(&self, id: &KeyId) {
        let wakes: Vec<Wake> = {
            let mut keys = self.lock();
            let Some(s) = keys.get_mut(id) else { return };
            s.running = s.running.saturating_sub(1);
            let wakes = s.waiters.values().cloned().collect();
            if s.running == 0 && s.waiters.is_empty() {
                keys.remove(id);
            }
            wakes
        };
        for wake in wakes {
            wake(id.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn limits(rules: &[(&str, u32, Option<&str>)]) -> Arc<KeyLimits> {
        Arc::new(KeyLimits::new(
            rules
                .iter()
                .map(|(k, l, t)| ConcurrencyRule {
                    key: k.to_string(),
                    limit: *l,
                    tenant: t.map(str::to_string),
                })
                .collect(),
        ))
    }

    fn id(tenant: &str, key: &str) -> KeyId {
        KeyId {
            tenant: tenant.into(),
            key: key.into(),
        }
    }

    #[test]
    fn the_most_specific_rule_sets_the_limit() {
        let l = limits(&[
            ("repo:*", 2, None),
            ("repo:big", 5, None),
            ("repo:*", 1, Some("acme")),
        ]);
        assert_eq!(l.limit_of(&id("beta", "repo:x")), Some(2));
        assert_eq!(l.limit_of(&id("beta", "repo:big")), Some(5));
        assert_eq!(
            l.limit_of(&id("acme", "repo:big")),
            Some(1),
            "a tenant's rule wins"
        );
        assert_eq!(l.limit_of(&id("acme", "other")), None);
    }

    #[test]
    fn slots_are_counted_per_tenant_and_key_and_given_back_on_drop() {
        let l = limits(&[("k*", 2, None)]);
        let woken = Arc::new(AtomicUsize::new(0));
        let w = woken.clone();
        let wake: Wake = Arc::new(move |_| {
            w.fetch_add(1, Ordering::SeqCst);
        });
        let a = id("acme", "k1");
        let p1 = l.acquire(&a, (1, &wake));
        let p2 = l.acquire(&a, (1, &wake));
        assert!(matches!(p1, Acquire::Granted(_)) && matches!(p2, Acquire::Granted(_)));
        assert!(matches!(l.acquire(&a, (1, &wake)), Acquire::Full));
        assert!(matches!(
            l.acquire(&id("beta", "k1"), (1, &wake)),
            Acquire::Granted(_)
        ));
        assert!(matches!(
            l.acquire(&id("acme", "k2"), (1, &wake)),
            Acquire::Granted(_)
        ));
        assert!(matches!(
            l.acquire(&id("acme", "x"), (1, &wake)),
            Acquire::Unlimited
        ));
        assert_eq!((l.running(&a), l.room(&a)), (2, 0));
        drop(p1);
        assert_eq!(woken.load(Ordering::SeqCst), 1, "the waiter is woken");
        assert_eq!(l.room(&a), 1);
        l.unwatch(&a, 1);
        drop(p2);
        assert_eq!(woken.load(Ordering::SeqCst), 1, "not after unwatch");
        assert!(
            l.lock().is_empty() || !l.lock().contains_key(&a),
            "no state left for an idle key"
        );
    }
}
