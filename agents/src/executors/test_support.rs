//! Helpers shared by the executors' unit tests.

use std::sync::Arc;

use cadre_proto::TaskId;
use tokio_util::sync::CancellationToken;

use crate::{ExecContext, NoReport};

/// A context for one attempt of a test task, with its own cancel token and no delegate.
pub(crate) fn ctx() -> ExecContext {
    ExecContext::new(
        TaskId::new(),
        "test.exec.run".into(),
        1,
        CancellationToken::new(),
        Arc::new(NoReport),
    )
}
