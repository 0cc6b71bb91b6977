//! The scheduler loop every tier-0 replica runs (roles `all` and `orchestrator`). It wakes at
//! the earliest tick in the store, or after [`MAX_SLEEP`] at most (so schedules another
//! replica created are seen), and for each schedule with work:
//!
//! 1. a fire in flight past its deadline (the replica that claimed it died or stalled) is
//!    reclaimed with a compare-and-set and fired again (its idempotency key makes a repeat
//!    answer the first task);
//! 2. otherwise its due tick is claimed with a compare-and-set that advances `next_fire_at`
//!    ([`cadre_store::ScheduleStore::claim_tick`]): only the replica whose UPDATE matched
//!    fires it. A tick late by at most `[schedules] missed_grace_ms` fires as usual; one
//!    later than that was missed (no replica ran): `skip` fires none of the missed ticks,
//!    `run_once` fires the most recent one; either way the schedule goes on from the next
//!    future tick, and a `schedule.missed` act is audited;
//! 3. the fire applies the overlap policy against the previous fire's task, goes through
//!    intake as the schedule's tenant (quotas and validation apply) and is recorded on the
//!    schedule: a refusal becomes its last error (audited as `schedule.fire`, logged), and
//!    is not retried: the next tick fires as usual.
//!
//! The loop runs beside intake and never holds anything intake needs.

use std::sync::{Arc, Weak};
use std::time::Duration;

use cadre_proto::clock::now_ms;
use cadre_store::{FireRecord, StoredSchedule};
use tokio_util::sync::CancellationToken;

use super::ops::{fire_principal, timing_of};
use super::{Missed, Overlap, tick_key};
use crate::error::Result;
use crate::node::Node;

/// The longest sleep between two looks at the store.
pub const MAX_SLEEP: Duration = Duration::from_secs(1);
/// The shortest (a schedule that cannot be advanced must not spin the loop).
const MIN_SLEEP: Duration = Duration::from_millis(20);
/// How long a claimed fire may take before another replica fires it again.
const INFLIGHT_LEASE_MS: i64 = 30_000;
/// Schedules handled per look.
const BATCH: u32 = 100;
/// How far missed ticks are counted for the audit record.
const COUNT_MAX: usize = 10_000;

/// Starts the loop on `node` until `shutdown` (or until the node is dropped).
pub fn spawn(node: &Arc<Node>, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
    let weak: Weak<Node> = Arc::downgrade(node);
    tokio::spawn(async move {
        loop {
            let Some(node) = weak.upgrade() else { return };
            let wait = match node.schedule_pass().await {
                Ok(wait) => wait,
                Err(e) => {
                    tracing::warn!(error = %e, "scheduler: cannot read schedules");
                    MAX_SLEEP
                }
            };
            drop(node);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait.clamp(MIN_SLEEP, MAX_SLEEP)) => {}
            }
        }
    })
}

impl Node {
    /// One look at the store: handles every schedule with work; returns how long to sleep.
    async fn schedule_pass(&self) -> Result<Duration> {
        let now = now_ms();
        let due = self.store.due_schedules(now, BATCH).await?;
        let full = due.len() as u32 == BATCH;
        for s in due {
            if let Err(e) = self.schedule_work(&s, now).await {
                tracing::warn!(schedule = %s.id, error = %e, "scheduler: cannot fire");
            }
        }
        if full {
            return Ok(Duration::ZERO);
        }
        let next = self.store.next_schedule_due().await?;
        let now = now_ms();
        Ok(match next {
            Some(t) => Duration::from_millis(t.saturating_sub(now).max(0) as u64),
            None => MAX_SLEEP,
        })
    }

    /// What one schedule needs at `now`: a stale fire fired again, or its due tick claimed.
    async fn schedule_work(&self, s: &StoredSchedule, now: i64) -> Result<()> {
        if s.inflight_tick != 0 && s.inflight_until <= now {
            let until = now + INFLIGHT_LEASE_MS;
            if self
                .store
                .reclaim_fire(&s.id, s.inflight_tick, s.inflight_until, until)
                .await?
            {
                self.fire(s, s.inflight_tick).await?;
            }
            return Ok(());
        }
        if s.paused || s.next_fire_at > now {
            return Ok(());
        }
        let timing = match timing_of(s) {
            Ok(t) => t,
            Err(e) => {
                // Cannot happen for a schedule this node stored; look again in a minute.
                tracing::warn!(schedule = %s.id, error = %e, "scheduler: unreadable timing");
                self.store
                    .claim_tick(&s.id, s.next_fire_at, now + 60_000, None, 0)
                    .await?;
                return Ok(());
            }
        };
        let grace = self.config().schedules.missed_grace_ms.max(100) as i64;
        let far = i64::MAX / 2;
        let (fire, next, missed) = if now - s.next_fire_at <= grace {
            let next = timing.next_after(s.next_fire_at).unwrap_or(far);
            (Some(s.next_fire_at), next, None)
        } else {
            let next = timing.next_after(now).unwrap_or(far);
            let latest = timing.last_at_or_before(now).unwrap_or(s.next_fire_at);
            let fire = match Missed::from_name(&s.missed) {
                Ok(Missed::RunOnce) => Some(latest),
                _ => None,
            };
            (fire, next, Some(latest))
        };
        let until = now + INFLIGHT_LEASE_MS;
        if !self
            .store
            .claim_tick(&s.id, s.next_fire_at, next, fire, until)
            .await?
        {
            return Ok(()); // another replica claimed it
        }
        if let Some(latest) = missed {
            self.audit_missed(s, &timing, latest, fire).await;
        }
        if let Some(tick) = fire {
            self.fire(s, tick).await?;
        }
        Ok(())
    }

    /// Fires tick `tick` of a claimed schedule: the overlap policy, intake, the record.
    async fn fire(&self, s: &StoredSchedule, tick: i64) -> Result<()> {
        let overlap = Overlap::from_name(&s.overlap).unwrap_or(Overlap::Allow);
        if overlap != Overlap::Allow
            && let Some(previous) = self.unfinished_previous(s).await
        {
            if overlap == Overlap::Skip {
                tracing::info!(schedule = %s.id, tick, previous = %previous.id, "schedule tick skipped: the previous run is unfinished");
                return Ok(self
                    .store
                    .record_fire(&s.id, Some(tick), &FireRecord::Skipped)
                    .await?);
            }
            let reason = format!("cancelled by schedule {}: a new run started", s.id);
            self.stop_tree(&previous, &reason).await;
            let p = fire_principal(s);
            self.audit(Some(&p), "task.cancel", &previous.id.to_string(), "ok", &reason)
                .await;
        }
        let rec = match self.submit_fire(s, tick_key(&s.id, tick)).await {
            Ok(task) => FireRecord::Fired {
                tick_ms: tick,
                task_id: task.id.to_string(),
            },
            Err(e) => {
                tracing::warn!(schedule = %s.id, tenant = %s.tenant, tick, error = %e, "schedule fire refused");
                let p = fire_principal(s);
                self.audit(Some(&p), "schedule.fire", &s.id, "refused", &e.to_string())
                    .await;
                FireRecord::Refused(e.to_string())
            }
        };
        Ok(self.store.record_fire(&s.id, Some(tick), &rec).await?)
    }

    /// The previous fire's task, if it is unfinished.
    async fn unfinished_previous(&self, s: &StoredSchedule) -> Option<cadre_proto::TaskRecord> {
        let id = s.last_task_id.parse().ok()?;
        let task = self.get_record(id).await.ok()?;
        (!task.state.is_terminal()).then_some(task)
    }

    /// Records that ticks were missed (`schedule.missed`): how many, and which one fired.
    async fn audit_missed(
        &self,
        s: &StoredSchedule,
        timing: &super::timing::Timing,
        latest: i64,
        fired: Option<i64>,
    ) {
        let mut n = 0usize;
        let mut t = Some(s.next_fire_at);
        while let Some(tick) = t
            && tick <= latest
            && n < COUNT_MAX
        {
            n += 1;
            t = timing.next_after(tick);
        }
        let count = if n >= COUNT_MAX {
            format!("{n}+")
        } else {
            n.to_string()
        };
        let what = match fired {
            Some(tick) => format!("fired the most recent, {tick} (run_once)"),
            None => "fired none (skip)".to_string(),
        };
        let detail = format!("{count} ticks missed from {} to {latest}; {what}", s.next_fire_at);
        tracing::info!(schedule = %s.id, detail = %detail, "schedule ticks missed");
        let p = fire_principal(s);
        self.audit(Some(&p), "schedule.missed", &s.id, "ok", &detail)
            .await;
    }
}
