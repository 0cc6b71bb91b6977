//! Token and cost budgets: a model price table, daily caps per tenant and for the whole node,
//! usage recorded per model call, and the fallback to a cheaper model near a cap.
//!
//! Which cap wins: every cap that applies is checked and the most restrictive one decides.
//! A tenant is bound by its own cap (`budgets.tenants.<name>`, else `budgets.tenant_default`)
//! and by the node's `budgets.global` cap. Near any of them (`fallback_at`, a fraction),
//! tasks that allow it run on their model's cheaper fallback; past any of them, Submit is
//! refused with RESOURCE_EXHAUSTED naming the cap. (Per-credential caps are not built.)
//! Days are UTC dates.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use cadre_agents::Usage;
use serde::{Deserialize, Serialize};

/// Budget configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetConfig {
    /// Fraction of a cap from which tasks that allow it fall back to a cheaper model.
    pub fallback_at: f64,
    /// Model name -> prices (USD per 1,000 tokens) and its cheaper fallback.
    pub models: BTreeMap<String, ModelPrice>,
    /// The node's daily cap over all tenants.
    pub global: Cap,
    /// The daily cap of tenants without their own.
    pub tenant_default: Cap,
    /// Daily caps of named tenants.
    pub tenants: BTreeMap<String, Cap>,
}

/// Prices of one model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    /// USD per 1,000 prompt tokens.
    pub input_per_1k: f64,
    /// USD per 1,000 completion tokens.
    pub output_per_1k: f64,
    /// The cheaper model to use near a cap (empty = none).
    #[serde(default)]
    pub fallback: String,
}

/// A daily cap; 0 means no cap on that measure.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cap {
    /// Tokens (in + out) per UTC day.
    pub daily_tokens: u64,
    /// USD per UTC day.
    pub daily_cost_usd: f64,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            fallback_at: 0.8,
            models: BTreeMap::new(),
            global: Cap::default(),
            tenant_default: Cap::default(),
            tenants: BTreeMap::new(),
        }
    }
}

impl BudgetConfig {
    /// Problems with the table, one per entry.
    pub fn problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if !(0.0..=1.0).contains(&self.fallback_at) {
            errs.push("budgets.fallback_at: must be between 0 and 1".into());
        }
        for (name, m) in &self.models {
            if [m.input_per_1k, m.output_per_1k]
                .iter()
                .any(|p| !p.is_finite() || *p < 0.0)
            {
                errs.push(format!("budgets.models.{name}: prices must be 0 or more"));
            }
            if !m.fallback.is_empty() && !self.models.contains_key(&m.fallback) {
                errs.push(format!(
                    "budgets.models.{name}.fallback: {:?} is not in budgets.models",
                    m.fallback
                ));
            }
        }
        for (name, cap) in std::iter::once(("global", &self.global))
            .chain(std::iter::once(("tenant_default", &self.tenant_default)))
            .chain(self.tenants.iter().map(|(k, v)| (k.as_str(), v)))
        {
            if !cap.daily_cost_usd.is_finite() || cap.daily_cost_usd < 0.0 {
                errs.push(format!("budgets.{name}.daily_cost_usd: must be 0 or more"));
            }
        }
        errs
    }
}

/// What a tenant's budget allows for its next task.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Below every `fallback_at` threshold.
    Ok,
    /// Near a cap: use cheaper models where allowed. Carries the reason.
    NearCap(String),
    /// Past a cap: refuse. Carries the reason.
    Exceeded(String),
}

/// Today's spend of one tenant.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Spend {
    /// Tokens in + out.
    pub tokens: u64,
    /// USD.
    pub cost_usd: f64,
}

/// Prices, caps and today's spend. Shared by intake (checks) and the writer (records).
pub struct Budgets {
    cfg: BudgetConfig,
    today: Mutex<(String, HashMap<String, Spend>)>,
}

/// The larger of `spent / cap` over tokens and USD; None when `cap` has no limit.
fn used_ratio(cap: &Cap, spent: Spend) -> Option<f64> {
    let tokens = (cap.daily_tokens > 0).then(|| spent.tokens as f64 / cap.daily_tokens as f64);
    let usd = (cap.daily_cost_usd > 0.0).then(|| spent.cost_usd / cap.daily_cost_usd);
    match (tokens, usd) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

impl Budgets {
    /// Budgets with today's spend so far (from the store).
    pub fn new(cfg: BudgetConfig, day: String, spent: HashMap<String, Spend>) -> Self {
        Budgets {
            cfg,
            today: Mutex::new((day, spent)),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &BudgetConfig {
        &self.cfg
    }

    /// What `usage` costs at the configured prices (0 for a model not in the table).
    pub fn cost(&self, usage: &Usage) -> f64 {
        self.cfg
            .models
            .get(&usage.model)
            .map(|p| {
                (usage.tokens_in as f64 * p.input_per_1k + usage.tokens_out as f64 * p.output_per_1k) / 1000.0
            })
            .unwrap_or(0.0)
    }

    /// Adds recorded usage to today's spend.
    pub fn record(&self, day: &str, tenant: &str, tokens: u64, cost_usd: f64) {
        let mut t = self.today.lock().unwrap_or_else(|e| e.into_inner());
        // YYYY-MM-DD compares as text: a late record of yesterday must not reset today.
        if day < t.0.as_str() {
            return;
        }
        if t.0 != day {
            *t = (day.to_string(), HashMap::new());
        }
        let s = t.1.entry(tenant.to_string()).or_default();
        s.tokens += tokens;
        s.cost_usd += cost_usd;
        let mine = *s;
        let all = t.1.values().fold(Spend::default(), |a, s| Spend {
            tokens: a.tokens + s.tokens,
            cost_usd: a.cost_usd + s.cost_usd,
        });
        drop(t);
        if let Some(r) = used_ratio(self.tenant_cap(tenant), mine) {
            metrics::gauge!("cadre_budget_used_ratio", "tenant" => tenant.to_string()).set(r);
        }
        if let Some(r) = used_ratio(&self.cfg.global, all) {
            metrics::gauge!("cadre_budget_used_ratio", "tenant" => "*").set(r);
        }
    }

    /// Raises today's spend to what the store holds for `day` (every replica's usage), tenant by
    /// tenant; spend recorded here since that read stays (the larger of the two wins).
    pub fn merge(&self, day: &str, stored: HashMap<String, Spend>) {
        let mut t = self.today.lock().unwrap_or_else(|e| e.into_inner());
        if day < t.0.as_str() {
            return;
        }
        if t.0 != day {
            *t = (day.to_string(), HashMap::new());
        }
        for (tenant, s) in stored {
            let mine = t.1.entry(tenant).or_default();
            mine.tokens = mine.tokens.max(s.tokens);
            mine.cost_usd = mine.cost_usd.max(s.cost_usd);
        }
    }

    /// Today's spend of `tenant` and of the whole node.
    pub fn spend(&self, day: &str, tenant: &str) -> (Spend, Spend) {
        let t = self.today.lock().unwrap_or_else(|e| e.into_inner());
        if t.0 != day {
            return (Spend::default(), Spend::default());
        }
        let mine = t.1.get(tenant).copied().unwrap_or_default();
        let all = t.1.values().fold(Spend::default(), |a, s| Spend {
            tokens: a.tokens + s.tokens,
            cost_usd: a.cost_usd + s.cost_usd,
        });
        (mine, all)
    }

    /// The cap that binds `tenant`.
    pub fn tenant_cap(&self, tenant: &str) -> &Cap {
        self.cfg.tenants.get(tenant).unwrap_or(&self.cfg.tenant_default)
    }

    /// Checks `tenant` against its own cap and the global one; the most restrictive decides.
    pub fn check(&self, day: &str, tenant: &str) -> Verdict {
        let (mine, all) = self.spend(day, tenant);
        let mut near = None;
        for (whose, cap, spent) in [
            (format!("tenant {tenant}"), self.tenant_cap(tenant), mine),
            ("the node".to_string(), &self.cfg.global, all),
        ] {
            let checks = [
                (cap.daily_tokens as f64, spent.tokens as f64, "tokens"),
                (cap.daily_cost_usd, spent.cost_usd, "USD"),
            ];
            for (limit, used, unit) in checks {
                if limit <= 0.0 {
                    continue;
                }
                if used >= limit {
                    return Verdict::Exceeded(format!(
                        "{whose} has used {used:.4} of its daily budget of {limit} {unit} (budgets); it resets at 00:00 UTC"
                    ));
                }
                if used >= limit * self.cfg.fallback_at && near.is_none() {
                    near = Some(format!(
                        "{whose} is at {:.0}% of its daily {unit} budget",
                        100.0 * used / limit
                    ));
                }
            }
        }
        near.map(Verdict::NearCap).unwrap_or(Verdict::Ok)
    }

    /// The cheaper model to use instead of `model`, if the table names one.
    pub fn fallback(&self, model: &str) -> Option<&str> {
        self.cfg
            .models
            .get(model)
            .map(|m| m.fallback.as_str())
            .filter(|f| !f.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_restrictive_cap_decides() {
        let cfg = BudgetConfig {
            fallback_at: 0.5,
            models: BTreeMap::from([
                (
                    "big".to_string(),
                    ModelPrice {
                        input_per_1k: 1.0,
                        output_per_1k: 2.0,
                        fallback: "small".into(),
                    },
                ),
                (
                    "small".to_string(),
                    ModelPrice {
                        input_per_1k: 0.1,
                        output_per_1k: 0.1,
                        fallback: String::new(),
                    },
                ),
            ]),
            global: Cap {
                daily_tokens: 0,
                daily_cost_usd: 10.0,
            },
            tenant_default: Cap {
                daily_tokens: 1000,
                daily_cost_usd: 0.0,
            },
            tenants: BTreeMap::new(),
        };
        assert!(cfg.problems().is_empty());
        let b = Budgets::new(cfg, "d".into(), HashMap::new());
        assert_eq!(
            b.cost(&Usage {
                model: "big".into(),
                tokens_in: 1000,
                tokens_out: 500,
                ..Default::default()
            }),
            2.0
        );
        assert_eq!(b.check("d", "a"), Verdict::Ok);
        b.record("d", "a", 600, 1.0);
        assert!(matches!(b.check("d", "a"), Verdict::NearCap(r) if r.contains("tenant a")));
        b.record("d", "a", 400, 1.0);
        assert!(matches!(b.check("d", "a"), Verdict::Exceeded(r) if r.contains("tenant a")));
        assert_eq!(
            b.check("d", "b"),
            Verdict::Ok,
            "another tenant is not bound by a's cap"
        );
        b.record("d", "b", 10, 8.0);
        assert!(
            matches!(b.check("d", "b"), Verdict::Exceeded(r) if r.contains("the node")),
            "the global cap binds everyone"
        );
        assert_eq!(
            b.check("tomorrow", "a"),
            Verdict::Ok,
            "a new day starts from zero"
        );
        assert_eq!(b.fallback("big"), Some("small"));
        assert_eq!(b.fallback("small"), None);
    }
}
