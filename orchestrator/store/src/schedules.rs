//! Schedules: cron expressions and intervals that submit a task (docs/SCHEDULES.md). Each row
//! keeps its next tick (`next_fire_at`); every tier-0 replica runs a scheduler loop, and a
//! replica claims a tick with one compare-and-set UPDATE (`... WHERE id = ? AND next_fire_at =
//! ?`) that also advances it, so only one replica fires a tick. The claimed tick stays in
//! `inflight_tick` until intake has answered, with a deadline (`inflight_until`) after which
//! another replica fires it again: a replica that dies between the claim and the submit loses
//! no tick, and the fire's idempotency key makes the repeat harmless.
//!
//! Rows are written directly, each call its own statement: nothing here needs an event or the
//! audit chain's order (the core audits schedule acts through the writer).

use async_trait::async_trait;

use crate::error::StoreResult;

/// A schedule as stored.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StoredSchedule {
    /// Its id (a UUIDv7).
    pub id: String,
    /// The tenant its fires are submitted as.
    pub tenant: String,
    /// A label.
    pub name: String,
    /// The cron expression ("" for an interval).
    pub cron: String,
    /// The IANA zone the cron expression is read in.
    pub time_zone: String,
    /// The interval in milliseconds (0 for a cron expression).
    pub every_ms: i64,
    /// Where an interval's ticks are counted from, Unix milliseconds.
    pub anchor_ms: i64,
    /// The task to submit, an encoded `cadre.v1.TaskSpec`.
    pub spec: Vec<u8>,
    /// The missed-tick policy: `skip` or `run_once`.
    pub missed: String,
    /// The overlap policy: `allow`, `skip` or `cancel_previous`.
    pub overlap: String,
    /// Whether it is paused.
    pub paused: bool,
    /// The next tick, Unix milliseconds.
    pub next_fire_at: i64,
    /// A claimed tick whose fire intake has not answered yet (0: none).
    pub inflight_tick: i64,
    /// When another replica may fire `inflight_tick` again, Unix milliseconds.
    pub inflight_until: i64,
    /// When it was created, Unix milliseconds.
    pub created_at_ms: i64,
    /// Who created it.
    pub created_by: String,
    /// The role its fires are submitted with (its creator's).
    pub creator_role: String,
    /// The tick of the last accepted fire (0: none).
    pub last_fire_at_ms: i64,
    /// The task of the last accepted fire ("" before the first).
    pub last_task_id: String,
    /// Why the last fire was refused ("" when it was accepted).
    pub last_error: String,
    /// Fires accepted by intake.
    pub fires: i64,
    /// Ticks not fired because the previous run was unfinished.
    pub skipped: i64,
}

/// How one fire ended, recorded on its schedule.
#[derive(Clone, Debug, PartialEq)]
pub enum FireRecord {
    /// Intake accepted it: the tick and the task.
    Fired {
        /// The tick (or, for a manual trigger, when it was triggered), Unix milliseconds.
        tick_ms: i64,
        /// The task submitted.
        task_id: String,
    },
    /// Intake refused it: why.
    Refused(String),
    /// Not fired: the previous run was unfinished (overlap `skip`).
    Skipped,
}

#[async_trait]
/// Durable storage of schedules, and the claim that makes each tick fire once.
pub trait ScheduleStore: Send + Sync {
    /// Stores a new schedule.
    async fn insert_schedule(&self, s: &StoredSchedule) -> StoreResult<()>;
    /// One schedule.
    async fn schedule(&self, id: &str) -> StoreResult<Option<StoredSchedule>>;
    /// Schedules by id after `after` (of one tenant, or all), at most `limit`.
    async fn schedules(
        &self,
        tenant: Option<&str>,
        after: &str,
        limit: u32,
    ) -> StoreResult<Vec<StoredSchedule>>;
    /// How many schedules a tenant has.
    async fn count_schedules(&self, tenant: &str) -> StoreResult<u64>;
    /// Schedules with work at `now_ms`: unpaused with a tick due, or with a fire in flight
    /// past its deadline; at most `limit`, most overdue first.
    async fn due_schedules(&self, now_ms: i64, limit: u32) -> StoreResult<Vec<StoredSchedule>>;
    /// The earliest tick of any unpaused schedule, or in-flight deadline.
    async fn next_schedule_due(&self) -> StoreResult<Option<i64>>;
    /// Claims the tick `expected` of an unpaused schedule by moving it to `next`; with `fire`
    /// (a tick to fire, usually `expected`), also marks that fire in flight until `until`.
    /// False, nothing written, when another replica claimed it first (or it was paused,
    /// deleted or changed).
    async fn claim_tick(
        &self,
        id: &str,
        expected: i64,
        next: i64,
        fire: Option<i64>,
        until: i64,
    ) -> StoreResult<bool>;
    /// Claims a fire in flight whose deadline `expected_until` passed, until `until`; false
    /// when another replica did first, or it was answered.
    async fn reclaim_fire(&self, id: &str, tick: i64, expected_until: i64, until: i64) -> StoreResult<bool>;
    /// Records how a fire ended; with `inflight`, that fire is no longer in flight.
    async fn record_fire(&self, id: &str, inflight: Option<i64>, rec: &FireRecord) -> StoreResult<()>;
    /// Pauses, or resumes with the next tick `next_fire_at`; false if there is no such
    /// schedule.
    async fn set_schedule_paused(&self, id: &str, paused: bool, next_fire_at: i64) -> StoreResult<bool>;
    /// Deletes a schedule; false if there was none.
    async fn delete_schedule(&self, id: &str) -> StoreResult<bool>;
}

/// The columns [`ScheduleRow`] reads, in `INSERT` order.
pub(crate) const SCHEDULE_COLUMNS: &str = "id, tenant, name, cron, time_zone, every_ms, anchor_ms, spec, \
     missed, overlap, paused, next_fire_at, inflight_tick, inflight_until, created_at_ms, created_by, \
     creator_role, last_fire_at_ms, last_task_id, last_error, fires, skipped";

/// A stored schedule row.
#[derive(sqlx::FromRow)]
pub(crate) struct ScheduleRow {
    id: String,
    tenant: String,
    name: String,
    cron: String,
    time_zone: String,
    every_ms: i64,
    anchor_ms: i64,
    spec: Vec<u8>,
    missed: String,
    overlap: String,
    paused: i64,
    next_fire_at: i64,
    inflight_tick: i64,
    inflight_until: i64,
    created_at_ms: i64,
    created_by: String,
    creator_role: String,
    last_fire_at_ms: i64,
    last_task_id: String,
    last_error: String,
    fires: i64,
    skipped: i64,
}

impl From<ScheduleRow> for StoredSchedule {
    fn from(r: ScheduleRow) -> Self {
        StoredSchedule {
            id: r.id,
            tenant: r.tenant,
            name: r.name,
            cron: r.cron,
            time_zone: r.time_zone,
            every_ms: r.every_ms,
            anchor_ms: r.anchor_ms,
            spec: r.spec,
            missed: r.missed,
            overlap: r.overlap,
            paused: r.paused != 0,
            next_fire_at: r.next_fire_at,
            inflight_tick: r.inflight_tick,
            inflight_until: r.inflight_until,
            created_at_ms: r.created_at_ms,
            created_by: r.created_by,
            creator_role: r.creator_role,
            last_fire_at_ms: r.last_fire_at_ms,
            last_task_id: r.last_task_id,
            last_error: r.last_error,
            fires: r.fires,
            skipped: r.skipped,
        }
    }
}

/// Implements [`ScheduleStore`] for a SQL store type on its `pool` (of database `$db`); text a
/// caller passes goes through the type's `stored_text` first.
macro_rules! impl_schedule_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::schedules::ScheduleStore for $store {
            async fn insert_schedule(
                &self,
                s: &$crate::schedules::StoredSchedule,
            ) -> $crate::StoreResult<()> {
                let t = |v: &str| Self::stored_text(v).into_owned();
                let mut qb = sqlx::QueryBuilder::<$db>::new(format!(
                    "INSERT INTO schedules ({}) ",
                    $crate::schedules::SCHEDULE_COLUMNS
                ));
                qb.push_values([s], |mut b, s| {
                    b.push_bind(t(&s.id))
                        .push_bind(t(&s.tenant))
                        .push_bind(t(&s.name))
                        .push_bind(t(&s.cron))
                        .push_bind(t(&s.time_zone))
                        .push_bind(s.every_ms)
                        .push_bind(s.anchor_ms)
                        .push_bind(s.spec.clone())
                        .push_bind(t(&s.missed))
                        .push_bind(t(&s.overlap))
                        .push_bind(i64::from(s.paused))
                        .push_bind(s.next_fire_at)
                        .push_bind(s.inflight_tick)
                        .push_bind(s.inflight_until)
                        .push_bind(s.created_at_ms)
                        .push_bind(t(&s.created_by))
                        .push_bind(t(&s.creator_role))
                        .push_bind(s.last_fire_at_ms)
                        .push_bind(t(&s.last_task_id))
                        .push_bind(t(&s.last_error))
                        .push_bind(s.fires)
                        .push_bind(s.skipped);
                });
                qb.build().execute(&self.pool).await?;
                Ok(())
            }

            async fn schedule(
                &self,
                id: &str,
            ) -> $crate::StoreResult<Option<$crate::schedules::StoredSchedule>> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(format!(
                    "SELECT {} FROM schedules WHERE id = ",
                    $crate::schedules::SCHEDULE_COLUMNS
                ));
                qb.push_bind(Self::stored_text(id).into_owned());
                let row: Option<$crate::schedules::ScheduleRow> =
                    qb.build_query_as().fetch_optional(&self.pool).await?;
                Ok(row.map(Into::into))
            }

            async fn schedules(
                &self,
                tenant: Option<&str>,
                after: &str,
                limit: u32,
            ) -> $crate::StoreResult<Vec<$crate::schedules::StoredSchedule>> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(format!(
                    "SELECT {} FROM schedules WHERE id > ",
                    $crate::schedules::SCHEDULE_COLUMNS
                ));
                qb.push_bind(Self::stored_text(after).into_owned());
                if let Some(t) = tenant {
                    qb.push(" AND tenant = ")
                        .push_bind(Self::stored_text(t).into_owned());
                }
                qb.push(" ORDER BY id LIMIT ").push_bind(i64::from(limit));
                let rows: Vec<$crate::schedules::ScheduleRow> =
                    qb.build_query_as().fetch_all(&self.pool).await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn count_schedules(&self, tenant: &str) -> $crate::StoreResult<u64> {
                let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT COUNT(*) FROM schedules WHERE tenant = ");
                qb.push_bind(Self::stored_text(tenant).into_owned());
                let n: i64 = qb.build_query_scalar().fetch_one(&self.pool).await?;
                Ok(n.max(0) as u64)
            }

            async fn due_schedules(
                &self,
                now_ms: i64,
                limit: u32,
            ) -> $crate::StoreResult<Vec<$crate::schedules::StoredSchedule>> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(format!(
                    "SELECT {} FROM schedules WHERE (paused = 0 AND next_fire_at <= ",
                    $crate::schedules::SCHEDULE_COLUMNS
                ));
                qb.push_bind(now_ms)
                    .push(") OR (inflight_tick <> 0 AND inflight_until <= ")
                    .push_bind(now_ms)
                    .push(") ORDER BY next_fire_at LIMIT ")
                    .push_bind(i64::from(limit));
                let rows: Vec<$crate::schedules::ScheduleRow> =
                    qb.build_query_as().fetch_all(&self.pool).await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn next_schedule_due(&self) -> $crate::StoreResult<Option<i64>> {
                let (a, b): (Option<i64>, Option<i64>) = sqlx::query_as(
                    "SELECT (SELECT MIN(next_fire_at) FROM schedules WHERE paused = 0), \
                     (SELECT MIN(inflight_until) FROM schedules WHERE inflight_tick <> 0)",
                )
                .fetch_one(&self.pool)
                .await?;
                Ok(match (a, b) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                })
            }

            async fn claim_tick(
                &self,
                id: &str,
                expected: i64,
                next: i64,
                fire: Option<i64>,
                until: i64,
            ) -> $crate::StoreResult<bool> {
                let mut qb = sqlx::QueryBuilder::<$db>::new("UPDATE schedules SET next_fire_at = ");
                qb.push_bind(next);
                if let Some(tick) = fire {
                    qb.push(", inflight_tick = ")
                        .push_bind(tick)
                        .push(", inflight_until = ")
                        .push_bind(until);
                }
                qb.push(" WHERE id = ")
                    .push_bind(Self::stored_text(id).into_owned())
                    .push(" AND next_fire_at = ")
                    .push_bind(expected)
                    .push(" AND paused = 0");
                let n = qb.build().execute(&self.pool).await?.rows_affected();
                Ok(n == 1)
            }

            async fn reclaim_fire(
                &self,
                id: &str,
                tick: i64,
                expected_until: i64,
                until: i64,
            ) -> $crate::StoreResult<bool> {
                let mut qb = sqlx::QueryBuilder::<$db>::new("UPDATE schedules SET inflight_until = ");
                qb.push_bind(until)
                    .push(" WHERE id = ")
                    .push_bind(Self::stored_text(id).into_owned())
                    .push(" AND inflight_tick = ")
                    .push_bind(tick)
                    .push(" AND inflight_until = ")
                    .push_bind(expected_until);
                let n = qb.build().execute(&self.pool).await?.rows_affected();
                Ok(n == 1)
            }

            async fn record_fire(
                &self,
                id: &str,
                inflight: Option<i64>,
                rec: &$crate::schedules::FireRecord,
            ) -> $crate::StoreResult<()> {
                use $crate::schedules::FireRecord;
                let mut qb = sqlx::QueryBuilder::<$db>::new("UPDATE schedules SET ");
                match rec {
                    FireRecord::Fired { tick_ms, task_id } => {
                        qb.push("fires = fires + 1, last_error = '', last_fire_at_ms = ")
                            .push_bind(*tick_ms)
                            .push(", last_task_id = ")
                            .push_bind(Self::stored_text(task_id).into_owned());
                    }
                    FireRecord::Refused(why) => {
                        qb.push("last_error = ")
                            .push_bind(Self::stored_text(why).into_owned());
                    }
                    FireRecord::Skipped => {
                        qb.push("skipped = skipped + 1");
                    }
                }
                if let Some(tick) = inflight {
                    qb.push(", inflight_tick = CASE WHEN inflight_tick = ")
                        .push_bind(tick)
                        .push(" THEN 0 ELSE inflight_tick END");
                }
                qb.push(" WHERE id = ")
                    .push_bind(Self::stored_text(id).into_owned());
                qb.build().execute(&self.pool).await?;
                Ok(())
            }

            async fn set_schedule_paused(
                &self,
                id: &str,
                paused: bool,
                next_fire_at: i64,
            ) -> $crate::StoreResult<bool> {
                let mut qb = sqlx::QueryBuilder::<$db>::new("UPDATE schedules SET paused = ");
                qb.push_bind(i64::from(paused));
                if !paused {
                    qb.push(", next_fire_at = ").push_bind(next_fire_at);
                }
                qb.push(" WHERE id = ")
                    .push_bind(Self::stored_text(id).into_owned());
                let n = qb.build().execute(&self.pool).await?.rows_affected();
                Ok(n == 1)
            }

            async fn delete_schedule(&self, id: &str) -> $crate::StoreResult<bool> {
                let mut qb = sqlx::QueryBuilder::<$db>::new("DELETE FROM schedules WHERE id = ");
                qb.push_bind(Self::stored_text(id).into_owned());
                let n = qb.build().execute(&self.pool).await?.rows_affected();
                Ok(n == 1)
            }
        }
    };
}
pub(crate) use impl_schedule_store;
