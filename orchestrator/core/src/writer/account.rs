//! Step 4 of the writer task: what one committed write changes on this node and tells its
//! operators (the unfinished-task counters and task metrics, the `task.record` span and the
//! transition's log line, today's spend and usage metrics), and the signed audit head a
//! committed batch leaves.

use std::sync::Mutex;

use cadre_proto::clock::now_ms;
use cadre_proto::{TaskEvent, TaskState};
use cadre_store::chain::{ChainTail, Sealer};
use cadre_store::{WriteOp, WriteOutcome};
use opentelemetry::trace::TraceId;

use super::pending::Pending;
use crate::budget::Budgets;

/// Accounts for one committed write, `op` with its `outcome`: counters and task metrics, then
/// (for a transition) the fields of its `task.record` span and its log line, with the trace
/// it was decided in, then (for usage) today's spend.
pub(super) fn account(
    op: &WriteOp,
    outcome: &WriteOutcome,
    span: &tracing::Span,
    trace_id: Option<TraceId>,
    pending: &Mutex<Pending>,
    budgets: &Budgets,
) {
    count_tasks(op, outcome, pending);
    if let (WriteOp::Transition(_), WriteOutcome::Event { event, .. }) = (op, outcome) {
        if !span.is_none() {
            span.record("tenant", event.tenant.as_str());
            span.record("task_type", event.task_type.as_str());
        }
        log_transition(event, trace_id);
    }
    spend(outcome, budgets);
}

/// Updates the unfinished-task counters and the task metrics for one applied write: a stored
/// task is submitted, a terminal transition completes it.
fn count_tasks(op: &WriteOp, outcome: &WriteOutcome, pending: &Mutex<Pending>) {
    let WriteOutcome::Event { event, created_at_ms } = outcome else {
        return;
    };
    match op {
        WriteOp::Insert(_) => {
            let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
            p.added(&event.tenant);
            metrics::counter!("cadre_tasks_submitted_total").increment(1);
        }
        WriteOp::Transition(_) | WriteOp::Supersede { .. } if event.state.is_terminal() => {
            let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
            p.finished(&event.tenant);
            drop(p);
            metrics::counter!("cadre_tasks_completed_total", "state" => event.state.as_str()).increment(1);
            let secs = (now_ms() - created_at_ms).max(0) as f64 / 1000.0;
            metrics::histogram!("cadre_task_duration_seconds", "state" => event.state.as_str()).record(secs);
        }
        _ => {}
    }
}

/// Logs a committed transition with the task's identifiers: FAILED and TIMED_OUT at warn, a
/// scheduled retry at info, SUCCEEDED and CANCELLED at debug (no info line per success: there
/// may be thousands a second). Field values are only computed for enabled levels.
fn log_transition(event: &TaskEvent, trace_id: Option<TraceId>) {
    macro_rules! line {
        ($level:ident, $what:literal) => {
            tracing::$level!(
                task_id = %event.task_id,
                tenant = %event.tenant,
                task_type = %event.task_type,
                trace_id = trace_id.map(tracing::field::display),
                attempt = event.attempt,
                detail = %event.message,
                $what
            )
        };
    }
    match event.state {
        TaskState::Failed => line!(warn, "task failed"),
        TaskState::TimedOut => line!(warn, "task timed out"),
        TaskState::Retrying => line!(info, "task retry scheduled"),
        TaskState::Cancelled => line!(debug, "task cancelled"),
        TaskState::Succeeded => line!(debug, "task succeeded"),
        _ => {}
    }
}

/// Adds committed usage to today's spend of its tenant and to the token and cost metrics.
fn spend(outcome: &WriteOutcome, budgets: &Budgets) {
    if let WriteOutcome::Usage {
        tenant,
        day,
        tokens,
        cost_usd,
    } = outcome
    {
        budgets.record(day, tenant, *tokens, *cost_usd);
        metrics::counter!("cadre_tokens_used_total", "tenant" => tenant.clone()).increment(*tokens);
        metrics::counter!("cadre_cost_usd_micros_total", "tenant" => tenant.clone())
            .increment((cost_usd * 1e6) as u64);
    }
}

/// The last audit record a batch sealed (its outcomes in order): the head this node signs.
pub(super) fn sealed_head(outcomes: &[WriteOutcome]) -> Option<ChainTail> {
    outcomes.iter().rev().find_map(|o| match o {
        WriteOutcome::Audited { seq, hash } => Some(ChainTail {
            seq: *seq,
            hash: hash.clone(),
        }),
        _ => None,
    })
}

/// Writes the signed audit head naming `head` (once the batch that sealed it is committed);
/// nothing when the batch sealed no record or the node has no sealer. A failure is logged.
pub(super) fn write_head(head: Option<ChainTail>, sealer: Option<&Sealer>) {
    if let (Some(head), Some(sealer)) = (head, sealer)
        && let Err(e) = sealer.write_head(&head)
    {
        tracing::error!(error = %e, "cannot write the signed audit head");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use cadre_proto::TaskId;
    use cadre_store::testing::record;
    use cadre_supervisors::Transition;

    use super::*;
    use crate::budget::BudgetConfig;
    use crate::writer::testing::committed;

    fn event(state: TaskState) -> WriteOutcome {
        committed(TaskId::new(), state, 1)
    }

    /// Empty counters and budgets on day 2025-01-01.
    fn books() -> (Mutex<Pending>, Budgets) {
        let budgets = Budgets::new(BudgetConfig::default(), "2025-01-01".into(), HashMap::new());
        (Mutex::new(Pending::new(HashMap::new())), budgets)
    }

    fn transition(state: TaskState) -> WriteOp {
        WriteOp::Transition(Transition::new(TaskId::new(), state, 1, ""))
    }

    #[test]
    fn a_stored_task_counts_until_its_terminal_transition() {
        let (pending, budgets) = books();
        let none = tracing::Span::none();
        let apply = |op: WriteOp, outcome: WriteOutcome| {
            account(&op, &outcome, &none, None, &pending, &budgets);
            pending.lock().unwrap().of("t")
        };
        assert_eq!(
            apply(WriteOp::Insert(Box::new(record(None))), event(TaskState::Queued)),
            1
        );
        assert_eq!(
            apply(transition(TaskState::Running), event(TaskState::Running)),
            1
        );
        assert_eq!(
            apply(transition(TaskState::Succeeded), WriteOutcome::Ignored),
            1,
            "neither a running task nor an ignored write finishes it"
        );
        assert_eq!(apply(transition(TaskState::Failed), event(TaskState::Failed)), 0);
    }

    #[test]
    fn committed_usage_adds_to_todays_spend() {
        let (pending, budgets) = books();
        let usage = WriteOutcome::Usage {
            tenant: "t".into(),
            day: "2025-01-01".into(),
            tokens: 30,
            cost_usd: 0.5,
        };
        let op = transition(TaskState::Running); // the op is not looked at for usage
        account(&op, &usage, &tracing::Span::none(), None, &pending, &budgets);
        let (mine, all) = budgets.spend("2025-01-01", "t");
        assert_eq!((mine.tokens, mine.cost_usd, all.tokens), (30, 0.5, 30));
    }

    #[test]
    fn the_head_is_the_last_record_the_batch_sealed() {
        let audited = |seq: u64| WriteOutcome::Audited {
            seq,
            hash: format!("h{seq}"),
        };
        let outcomes = [
            audited(4),
            event(TaskState::Queued),
            audited(5),
            WriteOutcome::Ignored,
        ];
        let head = sealed_head(&outcomes).expect("sealed");
        assert_eq!((head.seq, head.hash.as_str()), (5, "h5"));
        assert!(sealed_head(&[event(TaskState::Queued)]).is_none());
    }

    #[test]
    fn the_signed_head_is_written_only_with_a_sealer_and_a_sealed_record() {
        let dir = tempfile::tempdir().unwrap();
        let sealer = Sealer::new(ed25519_dalek::SigningKey::from_bytes(&[3; 32]), dir.path());
        let head = || {
            Some(ChainTail {
                seq: 2,
                hash: "h2".into(),
            })
        };
        write_head(head(), None);
        write_head(None, Some(&sealer));
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "nothing written"
        );
        write_head(head(), Some(&sealer));
        let files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(files.len(), 1, "the head file, renamed into place: {files:?}");
        let written = std::fs::read_to_string(dir.path().join(&files[0])).unwrap();
        assert_eq!(
            written,
            String::from_utf8(
                serde_json::to_vec_pretty(&sealer.head(&ChainTail {
                    seq: 2,
                    hash: "h2".into()
                }))
                .unwrap()
            )
            .unwrap()
        );
    }
}
