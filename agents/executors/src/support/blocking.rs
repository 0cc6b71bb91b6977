//! Running CPU-bound executor work (decoding, resizing, signal analysis) off the async runtime.
//!
//! A blocking closure cannot be dropped mid-way the way a future can, so [`run_blocking`] hands
//! it the cancel token to poll between steps, and the awaiting executor returns
//! [`ExecError::Cancelled`] as soon as the task is cancelled, leaving the thread to notice at its
//! next check.

use tokio_util::sync::CancellationToken;

use cadre_agents::executor::{ExecContext, ExecError};

/// Runs `work` on tokio's blocking pool. Cancellation is honoured before it starts, while it
/// runs (the closure should call [`checkpoint`] between steps) and after it finishes. A panic in
/// `work` becomes [`ExecError::Fatal`], naming `what`.
pub async fn run_blocking<T, F>(ctx: &ExecContext, what: &str, work: F) -> Result<T, ExecError>
where
    T: Send + 'static,
    F: FnOnce(&CancellationToken) -> Result<T, ExecError> + Send + 'static,
{
    checkpoint(&ctx.cancel)?;
    let cancel = ctx.cancel.clone();
    let handle = tokio::task::spawn_blocking(move || work(&cancel));
    let res = tokio::select! {
        joined = handle => joined.map_err(|e| ExecError::Fatal(format!("{what} failed: {e}")))?,
        _ = ctx.cancel.cancelled() => return Err(ExecError::Cancelled),
    };
    checkpoint(&ctx.cancel)?;
    res
}

/// `Err(Cancelled)` once `cancel` has fired: the `?`-able check for loops in blocking work.
pub fn checkpoint(cancel: &CancellationToken) -> Result<(), ExecError> {
    if cancel.is_cancelled() {
        Err(ExecError::Cancelled)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use cadre_agents::NoReport;
    use cadre_proto::TaskId;

    use super::*;

    fn ctx() -> ExecContext {
        ExecContext::new(
            TaskId::new(),
            "t".into(),
            1,
            CancellationToken::new(),
            Arc::new(NoReport),
        )
    }

    #[tokio::test]
    async fn returns_the_result_or_the_panic() {
        assert_eq!(run_blocking(&ctx(), "sum", |_| Ok(2 + 2)).await, Ok(4));
        let err = run_blocking::<(), _>(&ctx(), "decoding", |_| panic!("boom"))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ExecError::Fatal(m) if m.starts_with("decoding failed")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn cancel_before_during_and_after() {
        let c = ctx();
        c.cancel.cancel();
        assert_eq!(run_blocking(&c, "x", |_| Ok(1)).await, Err(ExecError::Cancelled));

        // The awaiting side returns at once; the closure sees the token at its next checkpoint.
        let c = ctx();
        let (tx, rx) = std::sync::mpsc::channel();
        let token = c.cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            token.cancel();
        });
        let res = run_blocking(&c, "x", move |cancel| {
            while checkpoint(cancel).is_ok() {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            tx.send(()).unwrap();
            Ok(1)
        })
        .await;
        assert_eq!(res, Err(ExecError::Cancelled));
        rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
    }
}
