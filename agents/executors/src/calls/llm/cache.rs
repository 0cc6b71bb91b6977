//! The response cache: replies keyed by a digest of the request, bounded in entries and age.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

/// A digest of everything that decides a reply (model, messages, sampling, schema).
pub type CacheKey = [u8; 32];

/// Digest of a request's canonical JSON (serde_json keeps object keys sorted).
pub fn key(request: &Value) -> CacheKey {
    Sha256::digest(request.to_string().as_bytes()).into()
}

/// Replies by request digest. Oldest entries go first when it is full; expired ones are
/// never returned.
pub struct ResponseCache {
    capacity: usize,
    ttl: Duration,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<CacheKey, (Instant, Value)>,
    order: VecDeque<CacheKey>,
}

impl ResponseCache {
    /// A cache of at most `capacity` replies (0 = off), each valid for `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        ResponseCache {
            capacity,
            ttl,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The reply stored under `key`, if it has not expired.
    pub fn get(&self, key: &CacheKey) -> Option<Value> {
        if self.capacity == 0 {
            return None;
        }
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v.clone())
    }

    /// Stores `reply` under `key`, evicting the oldest entry when full.
    pub fn put(&self, key: CacheKey, reply: Value) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.entries.insert(key, (Instant::now(), reply)).is_none() {
            inner.order.push_back(key);
        }
        while inner.entries.len() > self.capacity {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            inner.entries.remove(&old);
        }
    }

    /// Whether no reply is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replies held now (expired ones included until evicted).
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bounded_oldest_out_and_expiring() {
        let c = ResponseCache::new(2, Duration::from_secs(60));
        let (a, b, d) = (key(&json!(1)), key(&json!(2)), key(&json!(3)));
        c.put(a, json!("a"));
        c.put(b, json!("b"));
        c.put(d, json!("d"));
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(&a), None);
        assert_eq!(c.get(&b), Some(json!("b")));
        assert_eq!(c.get(&d), Some(json!("d")));
        // Keys of equal JSON objects agree whatever the key order was.
        assert_eq!(key(&json!({"x": 1, "y": 2})), key(&json!({"y": 2, "x": 1})));

        let expired = ResponseCache::new(2, Duration::ZERO);
        expired.put(a, json!("a"));
        assert_eq!(expired.get(&a), None);
        let off = ResponseCache::new(0, Duration::from_secs(60));
        off.put(a, json!("a"));
        assert_eq!((off.len(), off.get(&a)), (0, None));
    }
}
