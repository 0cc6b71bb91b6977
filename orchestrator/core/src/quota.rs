//! Per-tenant admission limits: a GCRA rate limit on submits (governor) and a cap on how many
//! unfinished tasks one tenant may hold. A tenant listed under `quotas.tenants` gets its own
//! limits; every other tenant shares the defaults (each with its own bucket).
//!
//! In the embedded default the counters live in this process. (Distributed mode will need
//! them in a shared store so they hold across orchestrator replicas.)

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};
use serde::{Deserialize, Serialize};

/// Admission limits, per tenant. The default: no limits.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaConfig {
    /// Sustained submits per second per tenant; 0 = unlimited.
    pub submits_per_second: u32,
    /// Submits a tenant may make at once above the sustained rate.
    pub burst: u32,
    /// Unfinished tasks one tenant may hold; 0 = unlimited (the node-wide
    /// `limits.max_pending_tasks` still applies).
    pub max_unfinished_per_tenant: u64,
    /// Limits for named tenants, replacing the defaults above.
    pub tenants: BTreeMap<String, TenantQuota>,
}

/// Limits for one named tenant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantQuota {
    /// Sustained submits per second; 0 = unlimited.
    pub submits_per_second: u32,
    /// Burst above the sustained rate.
    #[serde(default)]
    pub burst: u32,
    /// Unfinished tasks it may hold; 0 = unlimited.
    #[serde(default)]
    pub max_unfinished: u64,
}

fn quota(per_second: u32, burst: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(per_second)?;
    let burst = NonZeroU32::new(burst.max(per_second)).unwrap_or(rate);
    Some(Quota::per_second(rate).allow_burst(burst))
}

/// The limiters in force.
pub struct Quotas {
    shared: Option<DefaultKeyedRateLimiter<String>>,
    named: HashMap<String, Option<DefaultDirectRateLimiter>>,
    default_cap: u64,
    caps: HashMap<String, u64>,
    clock: DefaultClock,
}

impl Quotas {
    /// Builds the limiters from config.
    pub fn new(cfg: &QuotaConfig) -> Self {
        Quotas {
            shared: quota(cfg.submits_per_second, cfg.burst).map(DefaultKeyedRateLimiter::keyed),
            named: cfg
                .tenants
                .iter()
                .map(|(t, q)| {
                    (
                        t.clone(),
                        quota(q.submits_per_second, q.burst).map(DefaultDirectRateLimiter::direct),
                    )
                })
                .collect(),
            default_cap: cfg.max_unfinished_per_tenant,
            caps: cfg
                .tenants
                .iter()
                .map(|(t, q)| (t.clone(), q.max_unfinished))
                .collect(),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one submit from `tenant`'s bucket, or says how long until one is free.
    pub fn admit(&self, tenant: &str) -> Result<(), Duration> {
        let verdict = match self.named.get(tenant) {
            Some(Some(limiter)) => limiter.check(),
            Some(None) => Ok(()),
            None => match &self.shared {
                Some(limiter) => limiter.check_key(&tenant.to_string()),
                None => Ok(()),
            },
        };
        verdict.map_err(|not_until| {
            not_until
                .wait_time_from(self.clock.now())
                .max(Duration::from_millis(1))
        })
    }

    /// The unfinished-task cap of `tenant`, if any.
    pub fn cap(&self, tenant: &str) -> Option<u64> {
        let cap = self.caps.get(tenant).copied().unwrap_or(self.default_cap);
        (cap > 0).then_some(cap)
    }

    /// Forgets idle tenants' buckets so memory stays bounded by active tenants.
    pub fn forget_idle(&self) {
        if let Some(l) = &self.shared {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_that_floods_is_held_back_and_others_are_not() {
        let cfg = QuotaConfig {
            submits_per_second: 1,
            burst: 3,
            max_unfinished_per_tenant: 5,
            tenants: BTreeMap::from([(
                "vip".to_string(),
                TenantQuota {
                    submits_per_second: 0,
                    burst: 0,
                    max_unfinished: 0,
                },
            )]),
        };
        let q = Quotas::new(&cfg);
        for _ in 0..3 {
            assert!(q.admit("flood").is_ok());
        }
        let wait = q.admit("flood").unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(q.admit("other").is_ok(), "buckets are per tenant");
        for _ in 0..100 {
            assert!(q.admit("vip").is_ok(), "named tenant without a rate");
        }
        assert_eq!((q.cap("flood"), q.cap("vip")), (Some(5), None));
        assert!(Quotas::new(&QuotaConfig::default()).admit("any").is_ok());
    }
}
