//! What decides which queued task starts next besides priority, as configured: tenant weights
//! (`[fairness]`), running limits per concurrency key (`[[concurrency]]`) and the bounds on
//! holding a task type that an upstream rate-limited (`[upstream]`). The node's config embeds
//! these sections; [`DispatchConfig::problems`] checks them.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Largest tenant weight.
pub const MAX_WEIGHT: u32 = 1000;
/// Largest running limit of a concurrency rule.
pub const MAX_KEY_LIMIT: u32 = 100_000;
/// Most `[[concurrency]]` rules.
pub const MAX_RULES: usize = 1000;
/// Longest a type may be held after a rate limit (`upstream.max_hold_ms` at most).
pub const MAX_HOLD: Duration = Duration::from_secs(3_600);

/// `[fairness]`: tenant weights in the fair queue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FairnessConfig {
    /// Weight of a tenant not in `weights` (1 to 1000).
    pub default_weight: u32,
    /// Tenant -> weight (1 to 1000). Within a priority, tenants with queued work are served in
    /// proportion to their weights.
    pub weights: BTreeMap<String, u32>,
}

impl Default for FairnessConfig {
    fn default() -> Self {
        FairnessConfig {
            default_weight: 1,
            weights: BTreeMap::new(),
        }
    }
}

/// Tenant weights as the queue reads them.
#[derive(Clone, Debug, Default)]
pub struct Weights {
    default: u32,
    tenants: HashMap<String, u32>,
}

impl Weights {
    /// `default` for tenants not in `tenants`; weights are clamped to 1..=[`MAX_WEIGHT`].
    pub fn new(default: u32, tenants: HashMap<String, u32>) -> Self {
        Weights { default, tenants }
    }

    /// The weight of `tenant`, in 1..=[`MAX_WEIGHT`].
    pub fn of(&self, tenant: &str) -> u32 {
        self.tenants
            .get(tenant)
            .copied()
            .unwrap_or(self.default)
            .clamp(1, MAX_WEIGHT)
    }
}

impl From<&FairnessConfig> for Weights {
    fn from(c: &FairnessConfig) -> Self {
        Weights::new(
            c.default_weight,
            c.weights.iter().map(|(t, w)| (t.clone(), *w)).collect(),
        )
    }
}

/// One `[[concurrency]]` rule: at most `limit` tasks whose concurrency key matches `key` run
/// at once, counted per (tenant, key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConcurrencyRule {
    /// The key, or a prefix ending in `*` (`repo:*`; `*` alone matches every key).
    pub key: String,
    /// Tasks with one key that may run at once (1 to 100,000).
    pub limit: u32,
    /// Only this tenant's tasks; absent = every tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

impl ConcurrencyRule {
    /// Whether the rule applies to `key` of `tenant`.
    pub fn matches(&self, tenant: &str, key: &str) -> bool {
        if self.tenant.as_deref().is_some_and(|t| t != tenant) {
            return false;
        }
        match self.key.strip_suffix('*') {
            Some(prefix) => key.starts_with(prefix),
            None => key == self.key,
        }
    }

    /// How specific the rule is: a tenant's rule beats an every-tenant one, an exact key beats
    /// a prefix, a longer prefix beats a shorter one.
    pub fn specificity(&self) -> (bool, bool, usize) {
        (
            self.tenant.is_some(),
            !self.key.ends_with('*'),
            self.key.trim_end_matches('*').len(),
        )
    }
}

/// `[upstream]`: how long a task type may be held after a provider or hook answered "rate
/// limited, retry after ...", and how often one task may be put back for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// Longest hold of a task type after one rate-limited attempt, in ms (at most 1 hour);
    /// a longer `Retry-After` is cut to it.
    pub max_hold_ms: u64,
    /// Times one task may be put back in the queue for a rate limit (its attempt not counted)
    /// before it FAILS; 0 = a rate-limited attempt fails like any retryable error.
    pub max_requeues: u32,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            max_hold_ms: 3_600_000,
            max_requeues: 20,
        }
    }
}

impl UpstreamConfig {
    /// The hold for a `Retry-After` of `asked`, within `max_hold_ms`.
    pub fn hold_for(&self, asked: Duration) -> Duration {
        asked.min(Duration::from_millis(self.max_hold_ms)).min(MAX_HOLD)
    }
}

/// The dispatch settings of a process's supervisors.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DispatchConfig {
    /// Tenant weights.
    pub fairness: FairnessConfig,
    /// Running limits per concurrency key.
    pub concurrency: Vec<ConcurrencyRule>,
    /// Rate-limit holds.
    pub upstream: UpstreamConfig,
}

impl DispatchConfig {
    /// What is wrong with these settings, one line per problem (empty: valid).
    pub fn problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
        let weight = |field: String, w: u32, errs: &mut Vec<String>| {
            if !(1..=MAX_WEIGHT).contains(&w) {
                errs.push(format!("{field}: must be 1 to {MAX_WEIGHT}, got {w}"));
            }
        };
        weight(
            "fairness.default_weight".into(),
            self.fairness.default_weight,
            &mut errs,
        );
        for (t, w) in &self.fairness.weights {
            if t.is_empty() {
                errs.push("fairness.weights: a tenant name is empty".into());
            }
            weight(format!("fairness.weights.{t}"), *w, &mut errs);
        }
        if self.concurrency.len() > MAX_RULES {
            errs.push(format!("concurrency: at most {MAX_RULES} rules"));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, r) in self.concurrency.iter().enumerate() {
            let at = format!("concurrency[{i}]");
            if r.key.is_empty() || r.key.len() > cadre_proto::MAX_KEY_BYTES {
                errs.push(format!(
                    "{at}.key: must be 1 to {} bytes",
                    cadre_proto::MAX_KEY_BYTES
                ));
            }
            if r.key.trim_end_matches('*').contains('*') || r.key.ends_with("**") {
                errs.push(format!(
                    "{at}.key: {:?}: `*` may only end the key (a prefix pattern)",
                    r.key
                ));
            }
            if !(1..=MAX_KEY_LIMIT).contains(&r.limit) {
                errs.push(format!(
                    "{at}.limit: must be 1 to {MAX_KEY_LIMIT}, got {}",
                    r.limit
                ));
            }
            if r.tenant.as_deref() == Some("") {
                errs.push(format!("{at}.tenant: empty (leave it out for every tenant)"));
            }
            if !seen.insert((r.tenant.clone(), r.key.clone())) {
                errs.push(format!(
                    "{at}: a second rule for key {:?} and the same tenant",
                    r.key
                ));
            }
        }
        if self.upstream.max_hold_ms == 0 || self.upstream.max_hold_ms > MAX_HOLD.as_millis() as u64 {
            errs.push(format!(
                "upstream.max_hold_ms: must be 1 to {}, got {}",
                MAX_HOLD.as_millis(),
                self.upstream.max_hold_ms
            ));
        }
        if self.upstream.max_requeues > 10_000 {
            errs.push("upstream.max_requeues: at most 10000".into());
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(key: &str, limit: u32, tenant: Option<&str>) -> ConcurrencyRule {
        ConcurrencyRule {
            key: key.into(),
            limit,
            tenant: tenant.map(str::to_string),
        }
    }

    #[test]
    fn rules_match_exact_keys_and_prefixes_per_tenant() {
        let prefix = rule("repo:*", 2, None);
        assert!(prefix.matches("acme", "repo:x"));
        assert!(prefix.matches("beta", "repo:"));
        assert!(!prefix.matches("acme", "rep"));
        let exact = rule("repo:x", 1, Some("acme"));
        assert!(exact.matches("acme", "repo:x"));
        assert!(!exact.matches("beta", "repo:x"));
        assert!(!exact.matches("acme", "repo:xy"));
        assert!(rule("*", 1, None).matches("t", "anything"));
        assert!(exact.specificity() > prefix.specificity());
        assert!(rule("repo:*", 2, Some("a")).specificity() > rule("repo:x", 2, None).specificity());
        assert!(rule("repo:ab*", 1, None).specificity() > prefix.specificity());
    }

    #[test]
    fn problems_name_each_bad_setting() {
        let mut c = DispatchConfig::default();
        assert!(c.problems().is_empty());
        c.fairness.default_weight = 0;
        c.fairness.weights.insert("acme".into(), 1001);
        c.concurrency = vec![
            rule("a*b", 1, None),
            rule("k", 0, None),
            rule("k", 2, None),
            rule("", 1, Some("")),
        ];
        c.upstream.max_hold_ms = 0;
        let p = c.problems().join("\n");
        for want in [
            "fairness.default_weight: must be 1 to 1000, got 0",
            "fairness.weights.acme: must be 1 to 1000, got 1001",
            "concurrency[0].key: \"a*b\": `*` may only end the key",
            "concurrency[1].limit: must be 1 to 100000, got 0",
            "concurrency[2]: a second rule for key \"k\"",
            "concurrency[3].key: must be 1 to 256 bytes",
            "concurrency[3].tenant: empty",
            "upstream.max_hold_ms: must be 1 to 3600000, got 0",
        ] {
            assert!(p.contains(want), "{want} not in:\n{p}");
        }
    }

    #[test]
    fn weights_default_and_clamp() {
        let w = Weights::from(&FairnessConfig {
            default_weight: 2,
            weights: [("acme".to_string(), 3)].into(),
        });
        assert_eq!((w.of("acme"), w.of("other")), (3, 2));
        assert_eq!(Weights::default().of("x"), 1);
    }
}
