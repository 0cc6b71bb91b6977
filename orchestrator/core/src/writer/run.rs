//! The writer task.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use cadre_proto::TaskEvent;
use cadre_store::chain::{ChainTail, Sealer};
use cadre_store::{Store, StoreError, WriteOp, WriteOutcome};
use opentelemetry::trace::TraceId;
use tokio::sync::mpsc;

use super::pending::Pending;
use super::publish::HubFeed;
use super::request::Request;
use crate::budget::Budgets;
use crate::hub::Hub;
use cadre_proto::TaskState;
use cadre_proto::clock::now_ms;

#[allow(clippy::too_many_arguments)]
pub(super) async fn run(
    store: Arc<dyn Store>,
    hub: Hub,
    mut rx: mpsc::Receiver<Request>,
    batch_max: usize,
    pending: Arc<Mutex<Pending>>,
    sealer: Option<Sealer>,
    budgets: Arc<Budgets>,
    feed: HubFeed,
) {
    let mut received: Vec<Request> = Vec::with_capacity(batch_max);
    let mut inbox: std::collections::VecDeque<Request> = std::collections::VecDeque::with_capacity(batch_max);
    let mut batch: Vec<Request> = Vec::with_capacity(batch_max);
    loop {
        if inbox.is_empty() {
            if rx.recv_many(&mut received, batch_max).await == 0 {
                break;
            }
            inbox.extend(received.drain(..));
        }
        // A group sent with `write_together` is one request here; its writes join the batch
        // together, so they commit (or fail) together. A group that would take the batch past
        // `batch_max` waits for the next one, and so does everything received after it.
        while let Some(req) = inbox.front() {
            if !batch.is_empty() && batch.len() + 1 + req.with.len() > batch_max {
                break;
            }
            let Some(mut req) = inbox.pop_front() else { break };
            let with = std::mem::take(&mut req.with);
            batch.push(req);
            batch.extend(with);
        }
        let mut backoff = Duration::from_millis(50);
        // Verified results are signed by the node before they are stored. Audit drafts are
        // sealed by the store, in commit order; a retried batch seals them again after
        // whatever committed meanwhile.
        for req in &mut batch {
            if let Some(WriteOp::Transition(t)) = &mut req.op
                && t.sign
                && t.signature.is_none()
            {
                let json = t.result.as_ref().map(|v| v.to_string()).unwrap_or_default();
                t.signature = sealer.as_ref().map(|s| s.sign_result(t.task_id, &json));
            }
        }
        loop {
            let ops: Vec<WriteOp> = batch.iter().filter_map(|r| r.op.clone()).collect();
            let applied = if ops.is_empty() {
                Ok(Vec::new())
            } else {
                store.apply(&ops, sealer.as_ref()).await
            };
            match applied {
                Ok(outcomes) => {
                    // The last record this node sealed: its signed head.
                    let head = outcomes.iter().rev().find_map(|o| match o {
                        WriteOutcome::Audited { seq, hash } => Some(ChainTail {
                            seq: *seq,
                            hash: hash.clone(),
                        }),
                        _ => None,
                    });
                    let mut outcomes = outcomes.into_iter();
                    for req in batch.drain(..) {
                        let Some(op) = &req.op else {
                            if let Some(reply) = req.reply {
                                let _ = reply.send(Ok(WriteOutcome::Ignored));
                            }
                            continue;
                        };
                        let Some(outcome) = outcomes.next() else { break };
                        account(op, &outcome, &pending);
                        if let (WriteOp::Transition(_), WriteOutcome::Event { event, .. }) = (op, &outcome) {
                            if !req.span.is_none() {
                                req.span.record("tenant", event.tenant.as_str());
                                req.span.record("task_type", event.task_type.as_str());
                            }
                            log_transition(event, req.trace_id);
                        }
                        if let WriteOutcome::Usage {
                            tenant,
                            day,
                            tokens,
                            cost_usd,
                        } = &outcome
                        {
                            budgets.record(day, tenant, *tokens, *cost_usd);
                            metrics::counter!("cadre_tokens_used_total", "tenant" => tenant.clone())
                                .increment(*tokens);
                            metrics::counter!("cadre_cost_usd_micros_total", "tenant" => tenant.clone())
                                .increment((cost_usd * 1e6) as u64);
                        }
                        if let (WriteOutcome::Event { event, .. }, HubFeed::Direct) = (&outcome, &feed) {
                            hub.publish(event.clone());
                        }
                        if let Some(reply) = req.reply {
                            let _ = reply.send(Ok(outcome));
                        }
                    }
                    if let HubFeed::Tail { wake, announce } = &feed {
                        wake.notify_one();
                        announce();
                    }
                    if let (Some(head), Some(sealer)) = (head, &sealer)
                        && let Err(e) = sealer.write_head(&head)
                    {
                        tracing::error!(error = %e, "cannot write the signed audit head");
                    }
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, ops = batch.len(), "store write failed");
                    // Waiters get the error now; fire-and-forget transitions are retried.
                    batch.retain_mut(|req| match req.reply.take() {
                        Some(reply) => {
                            let _ = reply.send(Err(StoreError(e.0.clone())));
                            false
                        }
                        None => true,
                    });
                    if batch.is_empty() {
                        break;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
    tracing::debug!("writer drained and stopped");
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

/// Updates counters and metrics for one applied write.
fn account(op: &WriteOp, outcome: &WriteOutcome, pending: &Mutex<Pending>) {
    let WriteOutcome::Event { event, created_at_ms } = outcome else {
        return;
    };
    match op {
        WriteOp::Insert(_) => {
            let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
            p.total += 1;
            *p.by_tenant.entry(event.tenant.clone()).or_default() += 1;
            metrics::counter!("cadre_tasks_submitted_total").increment(1);
        }
        WriteOp::Transition(_) if event.state.is_terminal() => {
            let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
            p.total = p.total.saturating_sub(1);
            if let Some(n) = p.by_tenant.get_mut(&event.tenant) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    p.by_tenant.remove(&event.tenant);
                }
            }
            drop(p);
            metrics::counter!("cadre_tasks_completed_total", "state" => event.state.as_str()).increment(1);
            let secs = (now_ms() - created_at_ms).max(0) as f64 / 1000.0;
            metrics::histogram!("cadre_task_duration_seconds", "state" => event.state.as_str()).record(secs);
        }
        _ => {}
    }
}
