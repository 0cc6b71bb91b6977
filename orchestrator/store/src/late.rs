//! Late transitions: a state change that reaches the store after one that followed it.
//!
//! In distributed mode the tier-0 replicas share the events consumer, so two transitions of one
//! task can be stored by different replicas in either order (and a message a replica took and
//! lost comes back after the consumer's ack wait): a task's RETRYING or SUCCEEDED can be stored
//! before its RUNNING. A transition is late when its task is finished, or when [`order`] puts it
//! before the task's current state (neither being QUEUED, see below). A late transition changes
//! nothing the task is (a terminal task row never changes state again, an unfinished one keeps
//! its newer state); but what happened is kept: its event is placed in the task's history by
//! [`order`], before any terminal event. The events from that place on move one slot
//! later: each takes the seq and cursor of the one after it, and the last (the terminal event)
//! takes the next cursor. So a task's events are complete and in the order the transitions
//! happened, by seq and by cursor alike; there is still at most one terminal event, the last;
//! seqs and cursors have no gaps. The stored rows moved are rewritten in place (same
//! cursor, new content) and the task row's seq counts the new event.
//!
//! QUEUED transitions are never late for an unfinished task, and applied as they come: a
//! QUEUED gives an attempt back (after a RUNNING of the next attempt number, on a rate limit or
//! a node's shutdown), which the order without the node's `round` cannot tell from an old
//! one. For a finished task a late QUEUED is placed after the start of the attempt it gives
//! back (see [`order`]).
//!
//! What watchers see: a watch started later reads the whole history in order. A watch that was
//! open meanwhile (of the unfinished task, or of several tasks) does not see the late event (its
//! slot is behind the watch's position) but sees the task's last event once more, with its new
//! cursor and seq: for a finished task its terminal event, after which a watch of the task had
//! already ended.
//!
//! Ignored are: a terminal transition (the task has its end); a repeat, whose history holds an
//! event with the same state, attempt and message (a message delivered twice); and one that
//! [`order`] places after the terminal event, such as a RUNNING of a later attempt (a re-run
//! after the end, e.g. a task message redelivered after its terminal event was published: it
//! happened after the task finished, and the history ends there).

use cadre_proto::{TaskEvent, TaskId, TaskState};
use cadre_supervisors::Transition;

use crate::plan::{Past, Plan, PlanIo};
use crate::rows::{EVENT_COLUMNS, EventRow, LIVE_COLUMNS, LiveRow};
use crate::{StoreResult, WriteOutcome};

/// Where a transition falls in its task's history: by attempt, then RUNNING, progress, a
/// QUEUED (which names the attempt before the one it gives back, so QUEUED k follows a RUNNING
/// of attempt k + 1), RETRYING, the terminal state. (The task's first event, its QUEUED at
/// insert, precedes everything: [`key_of`].)
pub(super) fn order(state: TaskState, attempt: u32, is_progress: bool) -> (u32, u8) {
    match state {
        TaskState::Queued => (attempt.saturating_add(1), 2),
        TaskState::Running if is_progress => (attempt, 2),
        TaskState::Running => (attempt, 1),
        TaskState::Retrying => (attempt, 3),
        _ => (attempt, 4),
    }
}

/// [`order`] of a stored event; the task's first event comes first.
fn key_of(e: &TaskEvent) -> (u32, u8) {
    if e.seq == 1 {
        return (0, 0);
    }
    order(e.state, e.attempt, e.is_progress)
}

impl Plan<'_> {
    /// Whether `t` is late (module docs): its task is not unfinished (finished or unknown:
    /// [`Self::late`] tells), or `t` is neither terminal nor QUEUED and ordered before the
    /// unfinished task's current state, which is not QUEUED.
    pub(super) fn is_late(&self, t: &Transition) -> bool {
        let Some(l) = self.current(t.task_id) else {
            return true;
        };
        let moves = !t.state.is_terminal() && t.state != TaskState::Queued;
        moves
            && l.state != TaskState::Queued
            && order(t.state, t.attempt, false) < order(l.state, l.attempt, false)
    }

    /// A late transition: recorded in its task's history as the module docs say; `Ignored` if
    /// terminal for a finished task, a repeat, after the end, or for a task that is unknown or
    /// not finished and not known to this batch (a transition before its task's insert).
    pub(super) async fn late(
        &mut self,
        t: &Transition,
        now: i64,
        io: &mut impl PlanIo,
    ) -> StoreResult<WriteOutcome> {
        if t.state.is_terminal() {
            return Ok(WriteOutcome::Ignored);
        }
        let Some(mut past) = self.past(t.task_id, io).await? else {
            return Ok(WriteOutcome::Ignored);
        };
        Ok(self.place(t, now, &mut past))
    }

    /// Places `t` in `past` (and in the batch) as the module docs say.
    fn place(&mut self, t: &Transition, now: i64, past: &mut Past) -> WriteOutcome {
        let repeat = past.events.iter().any(|e| {
            !e.is_progress && e.state == t.state && e.attempt == t.attempt && e.message == t.message
        });
        let key = order(t.state, t.attempt, false);
        let end = past
            .events
            .iter()
            .position(|e| e.state.is_terminal())
            .unwrap_or(past.events.len());
        let after_end = past.events.get(end).is_some_and(|e| key_of(e) <= key);
        if repeat || after_end {
            return WriteOutcome::Ignored;
        }
        let at = past.events[..end]
            .iter()
            .position(|e| key_of(e) > key)
            .unwrap_or(end);
        let first_seq = past.events.get(at).map_or(past.task.seq + 1, |e| e.seq);
        let mut slots: Vec<u64> = past.events[at..].iter().map(|e| e.cursor).collect();
        slots.push(self.cursor);
        self.cursor += 1;
        let event = TaskEvent {
            cursor: 0,
            task_id: t.task_id,
            seq: 0,
            state: t.state,
            attempt: t.attempt,
            message: t.message.clone(),
            progress: 0.0,
            result: t.result.clone(),
            at_ms: now,
            task_type: past.task.task_type.clone(),
            tenant: past.task.tenant.clone(),
            is_progress: false,
            parent_id: past.task.parent_id,
        };
        past.events.insert(at, event);
        for (i, (e, cursor)) in past.events[at..].iter_mut().zip(slots).enumerate() {
            e.cursor = cursor;
            e.seq = first_seq + i as u64;
            self.put(e.clone());
        }
        past.task.seq += 1;
        self.count_event(t.task_id, now);
        WriteOutcome::Event {
            event: past.events[at].clone(),
            created_at_ms: past.task.created_at_ms,
        }
    }

    /// The task row's seq counts one more event: an unfinished task's through the batch's row
    /// change, a finished task's in its row change of this batch or one of its own.
    fn count_event(&mut self, id: TaskId, now: i64) {
        if let Some(mut l) = self.current(id) {
            l.seq += 1;
            self.row(id, crate::plan::RowUpdate::of(&l, now));
            self.staged.insert(id, Some(l));
            return;
        }
        match self.rows.iter_mut().find(|(rid, _)| *rid == id) {
            Some((_, update)) => update.seq += 1,
            None => self.seq_bumps.push(id),
        }
    }

    /// Stages `e` at its cursor: a stored event rewritten, an event of this batch replaced, or
    /// the batch's newest event.
    fn put(&mut self, e: TaskEvent) {
        let slot = if e.cursor < self.start {
            self.rewritten.iter_mut().find(|x| x.cursor == e.cursor)
        } else {
            self.events.iter_mut().find(|x| x.cursor == e.cursor)
        };
        match slot {
            Some(slot) => *slot = e,
            None if e.cursor < self.start => self.rewritten.push(e),
            None => self.events.push(e),
        }
    }

    /// Task `id` with its whole history as this batch has left it so far (stored events, as
    /// rewritten, then this batch's); None if it is unknown, or neither finished nor known to
    /// the batch as unfinished.
    async fn past(&mut self, id: TaskId, io: &mut impl PlanIo) -> StoreResult<Option<Past>> {
        let Some(mut past) = io.history(id).await? else {
            return Ok(None);
        };
        for e in &mut past.events {
            if let Some(r) = self.rewritten.iter().find(|r| r.cursor == e.cursor) {
                *e = r.clone();
            }
        }
        past.events
            .extend(self.events.iter().filter(|e| e.task_id == id).cloned());
        past.events.sort_by_key(|e| e.seq);
        if let Some(last) = past.events.last() {
            (past.task.seq, past.task.state) = (last.seq, last.state);
        }
        if let Some(l) = self.current(id) {
            past.task = l;
            return Ok(Some(past));
        }
        Ok(past.task.state.is_terminal().then_some(past))
    }
}

/// The task's row and events from rows read by a store.
fn past_of(row: Option<LiveRow>, events: Vec<EventRow>) -> StoreResult<Option<Past>> {
    let Some(row) = row else {
        return Ok(None);
    };
    let (_, task) = row.into_live()?;
    let events = events
        .into_iter()
        .map(EventRow::into_event)
        .collect::<StoreResult<_>>()?;
    Ok(Some(Past { task, events }))
}

/// The statements of [`PlanIo::history`] and of writing what late transitions changed, for one
/// database (they differ in their placeholders and in how text is stored).
macro_rules! late_sql {
    ($name:ident, $conn:ty, $by_id:literal, $update_event:literal, $bump:literal) => {
        /// The statements late transitions need on this database.
        pub(super) mod $name {
            use super::*;

            /// The task's row and events (see [`PlanIo::history`]).
            pub async fn history(conn: &mut $conn, id: TaskId) -> StoreResult<Option<Past>> {
                let row: Option<LiveRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {LIVE_COLUMNS} FROM tasks WHERE id = {}",
                    $by_id
                )))
                .bind(id.to_string())
                .fetch_optional(&mut *conn)
                .await?;
                let events: Vec<EventRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE task_id = {} ORDER BY seq",
                    $by_id
                )))
                .bind(id.to_string())
                .fetch_all(&mut *conn)
                .await?;
                past_of(row, events)
            }

            /// Rewrites the stored events `plan` placed new content in (their text as `text`
            /// makes it storable) and moves the rows' seqs it counted; run before the batch's
            /// own rows are written.
            pub async fn rewrite(
                conn: &mut $conn,
                plan: &Plan<'_>,
                text: fn(&str) -> String,
            ) -> StoreResult<()> {
                for e in &plan.rewritten {
                    sqlx::query($update_event)
                        .bind(e.seq as i64)
                        .bind(e.state.as_str())
                        .bind(e.attempt as i64)
                        .bind(text(&e.message))
                        .bind(e.progress)
                        .bind(e.result.as_ref().map(|v| v.to_string()))
                        .bind(e.at_ms)
                        .bind(e.is_progress)
                        .bind(e.cursor as i64)
                        .execute(&mut *conn)
                        .await?;
                }
                for id in &plan.seq_bumps {
                    sqlx::query($bump)
                        .bind(id.to_string())
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(())
            }
        }
    };
}

late_sql!(
    sqlite_sql,
    sqlx::SqliteConnection,
    "?",
    "UPDATE events SET seq = ?, state = ?, attempt = ?, message = ?, progress = ?, result = ?, \
     at_ms = ?, is_progress = ? WHERE cursor = ?",
    "UPDATE tasks SET seq = seq + 1 WHERE id = ?"
);
late_sql!(
    pg_sql,
    sqlx::PgConnection,
    "$1",
    "UPDATE events SET seq = $1, state = $2, attempt = $3, message = $4, progress = $5, \
     result = $6, at_ms = $7, is_progress = $8 WHERE cursor = $9",
    "UPDATE tasks SET seq = seq + 1 WHERE id = $1"
);
