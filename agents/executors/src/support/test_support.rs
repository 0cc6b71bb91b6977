//! Helpers shared by the executors' unit tests.

use std::sync::Arc;

use async_trait::async_trait;
use cadre_proto::TaskId;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use cadre_agents::{Delegate, ExecContext, ExecError, NoReport};

/// Runs sub-tasks in-process on the built-in executors, routed as the default configuration
/// routes them (`multimodal.vision.analyze` to `image_analyze`, `system.debug.echo` to `echo`,
/// `system.debug.sleep` to `sleep`, `system.debug.fail` to `fail`).
pub(crate) struct InProcess;

#[async_trait]
impl Delegate for InProcess {
    async fn delegate(
        &self,
        parent: TaskId,
        task_type: String,
        params: Value,
        cancel: CancellationToken,
    ) -> Result<Value, ExecError> {
        let executor = match task_type.as_str() {
            "multimodal.vision.analyze" => "image_analyze",
            "system.debug.echo" => "echo",
            "system.debug.sleep" => "sleep",
            "system.debug.fail" => "fail",
            other => return Err(ExecError::Fatal(format!("no route for {other}"))),
        };
        let sub = ExecContext::new(parent, task_type, 1, cancel, Arc::new(NoReport));
        crate::builtin().get(executor).unwrap().execute(sub, params).await
    }
}

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

/// A small deterministic xorshift generator for mutation tests (no test depends on a seed
/// from the environment, so failures reproduce).
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator starting from `seed` (any value but 0).
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    /// The next value, uniform over `0..n` (n > 0), near enough for tests.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    /// `bytes` with a few random bytes overwritten and, sometimes, its tail cut off.
    pub(crate) fn mutate(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = bytes.to_vec();
        for _ in 0..=self.below(4) {
            let i = self.below(out.len());
            out[i] = self.below(256) as u8;
        }
        if self.below(4) == 0 {
            out.truncate(self.below(out.len() + 1));
        }
        out
    }
}
