//! Steps 2 and 3 of the writer task: signing the batch's verified results, then applying the
//! batch to the store in one transaction, retried with backoff until it commits or no write
//! in it is left to retry.

use std::time::Duration;

use cadre_store::chain::Sealer;
use cadre_store::{Store, StoreError, WriteOp, WriteOutcome};

use super::request::Request;

/// The wait before a failed batch is tried again the first time.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// The longest wait between two tries of a failed batch.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Signs the result of every transition in `batch` that asks for it (`sign`) and has no
/// signature yet; without a sealer none is signed. Verified results are signed by the node
/// before they are stored; audit drafts, in contrast, are sealed by the store, in commit order
/// (a retried batch seals them again after whatever committed meanwhile).
pub(super) fn seal(batch: &mut [Request], sealer: Option<&Sealer>) {
    for req in batch {
        if let Some(WriteOp::Transition(t)) = &mut req.op
            && t.sign
            && t.signature.is_none()
        {
            let json = t.result.as_ref().map(|v| v.to_string()).unwrap_or_default();
            t.signature = sealer.map(|s| s.sign_result(t.task_id, &json));
        }
    }
}

/// Applies the writes of `batch` (barriers carry none) in one transaction and returns their
/// outcomes, in order. If the store fails, the writes someone waits for are answered with the
/// error and leave the batch; the others (fire-and-forget transitions, usage, progress, audit)
/// are tried again after a backoff (50 ms doubling to 5 s) until the store takes them. Before
/// each new try, `top_up` adds what was queued meanwhile (within the batch's bound), so a
/// write someone waits for (a submit) is answered at the next try, with the error while the
/// store still fails, instead of waiting behind the retries for as long as the store is away.
/// None when the failure answered every request in the batch: nothing is left to commit.
pub(super) async fn apply(
    store: &dyn Store,
    sealer: Option<&Sealer>,
    batch: &mut Vec<Request>,
    mut top_up: impl FnMut(&mut Vec<Request>),
) -> Option<Vec<WriteOutcome>> {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let ops: Vec<WriteOp> = batch.iter().filter_map(|r| r.op.clone()).collect();
        let applied = if ops.is_empty() {
            Ok(Vec::new())
        } else {
            store.apply(&ops, sealer).await
        };
        match applied {
            Ok(outcomes) => return Some(outcomes),
            Err(e) => {
                tracing::error!(error = %e, ops = batch.len(), "store write failed");
                answer_waiters(batch, &e);
                if batch.is_empty() {
                    return None;
                }
                tokio::time::sleep(backoff).await;
                backoff = next_backoff(backoff);
                top_up(batch);
                seal(batch, sealer);
            }
        }
    }
}

/// Answers every request of `batch` someone waits for with the error `e` and drops it from the
/// batch (a waiter decides itself whether to write again); keeps the others, to be retried.
fn answer_waiters(batch: &mut Vec<Request>, e: &StoreError) {
    batch.retain_mut(|req| match req.reply.take() {
        Some(reply) => {
            let _ = reply.send(Err(StoreError(e.0.clone())));
            false
        }
        None => true,
    });
}

/// The wait after `backoff` for the next try: twice as long, at most [`MAX_BACKOFF`].
fn next_backoff(backoff: Duration) -> Duration {
    (backoff * 2).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use cadre_proto::{TaskId, TaskState};
    use cadre_supervisors::Transition;
    use ed25519_dalek::SigningKey;
    use tokio::sync::oneshot;

    use super::*;

    fn transition(sign: bool, signature: Option<&str>) -> Request {
        let mut t = Transition::new(TaskId::new(), TaskState::Succeeded, 1, "");
        t.result = Some(serde_json::json!({"answer": 42}));
        t.sign = sign;
        t.signature = signature.map(str::to_string);
        Request::new(Some(WriteOp::Transition(t)), None)
    }

    fn signature(req: &Request) -> Option<&str> {
        match &req.op {
            Some(WriteOp::Transition(t)) => t.signature.as_deref(),
            _ => None,
        }
    }

    #[test]
    fn only_results_that_ask_for_it_and_have_no_signature_are_signed() {
        let dir = tempfile::tempdir().unwrap();
        let sealer = Sealer::new(SigningKey::from_bytes(&[7; 32]), dir.path());
        let mut batch = vec![
            transition(true, None),
            transition(false, None),
            transition(true, Some("kept")),
        ];
        let Some(WriteOp::Transition(t)) = &batch[0].op else {
            unreachable!()
        };
        let expected = sealer.sign_result(t.task_id, r#"{"answer":42}"#);
        seal(&mut batch, Some(&sealer));
        assert_eq!(signature(&batch[0]), Some(expected.as_str()));
        assert_eq!(signature(&batch[1]), None, "not a verified task");
        assert_eq!(
            signature(&batch[2]),
            Some("kept"),
            "signed before a retry: not again"
        );

        let mut batch = vec![transition(true, None)];
        seal(&mut batch, None);
        assert_eq!(signature(&batch[0]), None, "no sealer, no signature");
    }

    #[test]
    fn a_failure_answers_the_waiters_and_keeps_the_rest_to_retry() {
        let (reply, mut rx) = oneshot::channel();
        let (barrier, mut barrier_rx) = oneshot::channel();
        let mut batch = vec![
            transition(false, None),
            Request::new(
                Some(WriteOp::Transition(Transition::new(
                    TaskId::new(),
                    TaskState::Running,
                    1,
                    "",
                ))),
                Some(reply),
            ),
            Request::new(None, Some(barrier)),
            transition(false, None),
        ];
        answer_waiters(&mut batch, &StoreError("disk full".into()));
        assert_eq!(batch.len(), 2);
        assert!(batch.iter().all(|r| r.reply.is_none()));
        assert_eq!(rx.try_recv().unwrap().unwrap_err().0, "disk full");
        assert_eq!(barrier_rx.try_recv().unwrap().unwrap_err().0, "disk full");
    }

    #[test]
    fn the_backoff_doubles_from_50_ms_up_to_5_s() {
        let mut waits = vec![FIRST_BACKOFF];
        while waits.len() < 10 {
            waits.push(next_backoff(*waits.last().unwrap()));
        }
        let ms: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [50, 100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
    }
}
