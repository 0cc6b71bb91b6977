//! Per-tenant admission limits: a GCRA rate limit on submits (governor) and a cap on how many
//! unfinished tasks one tenant may hold. A tenant listed under `quotas.tenants` gets its own
//! limits; every other tenant shares the defaults (each with its own bucket).
//!
//! With several tier-0 replicas on one store, each replica takes an equal share of every
//! rate: `ceil(rate / n)` per second and `ceil(burst / n)` at once, where `n` is the number of
//! replicas that wrote their heartbeat to the store in the last [`LIVE_WINDOW`] (each writes
//! one every second: `crate::replicas`). Admission itself stays in memory: no store round trip
//! on the submit path. Summed over replicas a tenant gets at most `rate + n - 1` per second;
//! for up to a second after a replica joins, the others still use the larger share (at most
//! one share more). A client that talks to one replica only gets that replica's share. The
//! unfinished-task caps are counted from the store every second (the writer's refresh).

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU32, Ordering};
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

/// A replica whose heartbeat is older than this is not counted.
pub const LIVE_WINDOW: Duration = Duration::from_secs(3);

/// One replica's share of `per_second` (burst `burst`) among `replicas`.
fn quota(per_second: u32, burst: u32, replicas: u32) -> Option<Quota> {
    let n = replicas.max(1);
    let rate = NonZeroU32::new(per_second.div_ceil(n))?;
    let burst = NonZeroU32::new(burst.max(per_second).div_ceil(n)).unwrap_or(rate);
    Some(Quota::per_second(rate).allow_burst(burst))
}

/// The rate limiters for one replica count.
struct Limiters {
    shared: Option<DefaultKeyedRateLimiter<String>>,
    named: HashMap<String, Option<DefaultDirectRateLimiter>>,
}

impl Limiters {
    fn new(cfg: &QuotaConfig, replicas: u32) -> Self {
        Limiters {
            shared: quota(cfg.submits_per_second, cfg.burst, replicas).map(DefaultKeyedRateLimiter::keyed),
            named: cfg
                .tenants
                .iter()
                .map(|(t, q)| {
                    (
                        t.clone(),
                        quota(q.submits_per_second, q.burst, replicas).map(DefaultDirectRateLimiter::direct),
                    )
                })
                .collect(),
        }
    }
}

/// The limiters in force.
pub struct Quotas {
    cfg: QuotaConfig,
    limiters: RwLock<Limiters>,
    replicas: AtomicU32,
    default_cap: u64,
    caps: HashMap<String, u64>,
    clock: DefaultClock,
}

impl Quotas {
    /// Builds the limiters from config (for one replica).
    pub fn new(cfg: &QuotaConfig) -> Self {
        metrics::gauge!("cadre_tier0_replicas").set(1.0);
        Quotas {
            cfg: cfg.clone(),
            limiters: RwLock::new(Limiters::new(cfg, 1)),
            replicas: AtomicU32::new(1),
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
        let l = self.limiters.read().unwrap_or_else(|e| e.into_inner());
        let verdict = match l.named.get(tenant) {
            Some(Some(limiter)) => limiter.check(),
            Some(None) => Ok(()),
            None => match &l.shared {
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

    /// Sets how many tier-0 replicas share the rates; the limiters are rebuilt (with full
    /// buckets: one burst share more) when it changes.
    pub fn set_replicas(&self, n: u32) {
        let n = n.max(1);
        metrics::gauge!("cadre_tier0_replicas").set(f64::from(n));
        if self.replicas.swap(n, Ordering::Relaxed) != n {
            *self.limiters.write().unwrap_or_else(|e| e.into_inner()) = Limiters::new(&self.cfg, n);
            tracing::info!(replicas = n, "tier-0 replicas share the submit rates");
        }
    }

    /// How many replicas the rates are shared among.
    pub fn replicas(&self) -> u32 {
        self.replicas.load(Ordering::Relaxed)
    }

    /// Forgets idle tenants' buckets so memory stays bounded by active tenants.
    pub fn forget_idle(&self) {
        let l = self.limiters.read().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = &l.shared {
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

    #[test]
    fn replicas_share_a_rate() {
        let cfg = QuotaConfig {
            submits_per_second: 10,
            burst: 10,
            ..Default::default()
        };
        let q = Quotas::new(&cfg);
        q.set_replicas(3);
        let admitted = (0..20).filter(|_| q.admit("t").is_ok()).count();
        assert_eq!(admitted, 4, "ceil(10 / 3) at once");
    }
}
