//! Fusion (`fuse`): runs up to [`MAX_TASKS`] sub-tasks of any types through the delegate
//! ([`ExecContext::delegate`]), at most [`CONCURRENCY`] at a time, and combines their results
//! into one object keyed by each sub-task's `key` (or its index).
//!
//! In mode `all` (the default) the first failure fails the task and cancels the sub-tasks still
//! running; in mode `any_ok` failures are recorded under `errors` and the task succeeds when at
//! least one sub-task did. Cancelling the task cancels every sub-task.

use std::collections::BTreeSet;

use async_trait::async_trait;
use cadre_agents::executor::{ExecContext, ExecError, Executor, decode_params};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::support::params_schema as schema;
use crate::support::words::clip;

/// Most sub-tasks in one fusion.
pub const MAX_TASKS: usize = 16;
/// Most sub-tasks running at once.
pub const CONCURRENCY: usize = 4;
/// Longest `key`, in characters.
const MAX_KEY_CHARS: usize = 64;
/// Longest `task_type`, in characters.
const MAX_TASK_TYPE_CHARS: usize = 128;
/// Longest error message kept per failed sub-task, in characters.
const MAX_ERROR_CHARS: usize = 500;

/// `multimodal.fusion.combine` (worker kind fusion): `{"tasks": [{"task_type":
/// "intelligence.text.keywords", "params": {...}, "key": "kw"}, ...], "mode": "all"}` ->
/// `{"results": {key: result}, "errors": {key: message}, "succeeded", "failed"}`.
pub struct Fuse;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FuseParams {
    tasks: Vec<SubTask>,
    #[serde(default)]
    mode: Mode,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubTask {
    task_type: String,
    #[serde(default = "empty_object")]
    params: Value,
    key: Option<String>,
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

/// What a failed sub-task does to the fusion.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Mode {
    /// Any failure fails the task.
    #[default]
    All,
    /// Failures are recorded; the task fails only when every sub-task failed.
    AnyOk,
}

#[async_trait]
impl Executor for Fuse {
    fn params_schema(&self) -> Option<Value> {
        let task = schema::object(
            &["task_type"],
            &[
                (
                    "task_type",
                    schema::text("the sub-task's type, e.g. intelligence.text.keywords"),
                ),
                ("params", {
                    let mut p = schema::any("the sub-task's params (default {})");
                    p["type"] = "object".into();
                    p
                }),
                ("key", {
                    let mut k = schema::text("its name in the result (default: its index)");
                    k["maxLength"] = MAX_KEY_CHARS.into();
                    k
                }),
            ],
        );
        let mut tasks = schema::array(task, "the sub-tasks, run concurrently");
        tasks["minItems"] = 1.into();
        tasks["maxItems"] = MAX_TASKS.into();
        let mut mode = schema::one_of(
            &["all", "any_ok"],
            "all: any failure fails the task; any_ok: failures are recorded under errors",
        );
        mode["default"] = "all".into();
        Some(schema::object(&["tasks"], &[("tasks", tasks), ("mode", mode)]))
    }

    fn result_schema(&self) -> Option<Value> {
        let n = |what| schema::int_range(0, MAX_TASKS as i64, what);
        Some(schema::record(&[
            ("results", {
                let mut r = schema::any("each successful sub-task's result, by key");
                r["type"] = "object".into();
                r
            }),
            ("errors", {
                let mut e = schema::any("each failed sub-task's error, by key");
                e["type"] = "object".into();
                e["additionalProperties"] = json!({ "type": "string" });
                e
            }),
            ("succeeded", n("sub-tasks that succeeded")),
            ("failed", n("sub-tasks that failed")),
        ]))
    }

    async fn execute(&self, ctx: ExecContext, params: Value) -> Result<Value, ExecError> {
        /// How long a failed fusion waits for its cancelled sub-tasks to stop.
        const DRAIN: std::time::Duration = std::time::Duration::from_secs(10);
        let p: FuseParams = decode_params(&params)?;
        let tasks = check(&ctx, p.tasks)?;
        let total = tasks.len();
        // The sub-tasks watch a child token: cancelling the task cancels them, and so does
        // leaving early (a failure in mode all), through the drop guard.
        let mut sub = ctx.clone();
        sub.cancel = ctx.cancel.child_token();
        let guard = sub.cancel.clone().drop_guard();
        let mut running = futures::stream::iter(tasks.into_iter().map(|(key, t)| {
            let sub = sub.clone();
            async move {
                // Not started once the fusion gave up (a failure in mode all).
                if sub.cancel.is_cancelled() {
                    return (key, t.task_type, Err(ExecError::Cancelled));
                }
                let res = sub.delegate(&t.task_type, t.params).await;
                (key, t.task_type, res)
            }
        }))
        .buffer_unordered(CONCURRENCY);
        ctx.progress(0.0, format!("running {total} sub-tasks"));

        let (mut results, mut errors) = (Map::new(), Map::new());
        let mut first_error: Option<ExecError> = None;
        loop {
            let next = tokio::select! {
                next = running.next() => next,
                _ = ctx.cancel.cancelled() => return Err(ExecError::Cancelled),
            };
            let Some((key, task_type, res)) = next else {
                break;
            };
            let outcome = match res {
                Ok(v) => {
                    results.insert(key.clone(), v);
                    "ok"
                }
                Err(_) if ctx.cancel.is_cancelled() => return Err(ExecError::Cancelled),
                Err(e) => {
                    let e = blame(&key, &task_type, e);
                    if p.mode == Mode::All {
                        // Cancel the sub-tasks still running and wait for their delegates to
                        // see it, so they are cancelled where they run rather than dropped
                        // here and left running.
                        sub.cancel.cancel();
                        let drain = async { while running.next().await.is_some() {} };
                        let _ = tokio::time::timeout(DRAIN, drain).await;
                        return Err(e);
                    }
                    errors.insert(key.clone(), Value::String(clip(&e.to_string(), MAX_ERROR_CHARS)));
                    first_error.get_or_insert(e);
                    "failed"
                }
            };
            let done = results.len() + errors.len();
            ctx.progress(
                done as f64 / total as f64,
                format!("{done} of {total} sub-tasks done ({key}: {outcome})"),
            );
        }
        guard.disarm();
        if results.is_empty()
            && let Some(e) = first_error
        {
            return Err(every_failed(e, &errors));
        }
        Ok(json!({
            "succeeded": results.len(),
            "failed": errors.len(),
            "results": results,
            "errors": errors,
        }))
    }
}

/// Checks the sub-tasks and names each: its `key`, or its index.
fn check(ctx: &ExecContext, tasks: Vec<SubTask>) -> Result<Vec<(String, SubTask)>, ExecError> {
    let invalid = ExecError::InvalidParams;
    if tasks.is_empty() || tasks.len() > MAX_TASKS {
        return Err(invalid(format!("tasks must hold 1-{MAX_TASKS} sub-tasks")));
    }
    let mut keys = BTreeSet::new();
    let mut named = Vec::with_capacity(tasks.len());
    for (i, t) in tasks.into_iter().enumerate() {
        let ty = &t.task_type;
        if ty.is_empty() || ty.chars().count() > MAX_TASK_TYPE_CHARS {
            return Err(invalid(format!(
                "tasks[{i}].task_type must be 1-{MAX_TASK_TYPE_CHARS} characters"
            )));
        }
        if *ty == ctx.task_type {
            return Err(invalid(format!(
                "tasks[{i}].task_type {ty} is this task's own type: a fusion cannot run itself"
            )));
        }
        if !t.params.is_object() {
            return Err(invalid(format!("tasks[{i}].params must be an object")));
        }
        let key = match &t.key {
            Some(k) if k.is_empty() || k.chars().count() > MAX_KEY_CHARS => {
                return Err(invalid(format!(
                    "tasks[{i}].key must be 1-{MAX_KEY_CHARS} characters"
                )));
            }
            Some(k) => k.clone(),
            None => i.to_string(),
        };
        if !keys.insert(key.clone()) {
            return Err(invalid(format!(
                "tasks[{i}]: key {key:?} is used twice (a sub-task without a key is named by its index)"
            )));
        }
        named.push((key, t));
    }
    Ok(named)
}

/// A sub-task's error, kept in kind and prefixed with which sub-task it was. A sub-task
/// cancelled by someone else is a fatal failure of the fusion.
fn blame(key: &str, task_type: &str, e: ExecError) -> ExecError {
    let at = format!("sub-task {key} ({task_type})");
    match e {
        ExecError::InvalidParams(m) => ExecError::InvalidParams(format!("{at}: {m}")),
        ExecError::Retryable(m) => ExecError::Retryable(format!("{at}: {m}")),
        ExecError::Fatal(m) => ExecError::Fatal(format!("{at}: {m}")),
        ExecError::Cancelled => ExecError::Fatal(format!("{at} was cancelled")),
        // The sub-task's type was rate-limited, not the fusion's.
        ExecError::RateLimited { message, .. } => ExecError::Retryable(format!("{at}: {message}")),
    }
}

/// The error of a fusion in which every sub-task failed: of the kind of the first failure,
/// listing all of them.
fn every_failed(first: ExecError, errors: &Map<String, Value>) -> ExecError {
    let all: Vec<&str> = errors.values().filter_map(Value::as_str).collect();
    let m = format!("every sub-task failed: {}", all.join("; "));
    match first {
        ExecError::Retryable(_) => ExecError::Retryable(m),
        ExecError::InvalidParams(_) => ExecError::InvalidParams(m),
        _ => ExecError::Fatal(m),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use cadre_agents::schema::validate;
    use cadre_agents::{Delegate, NoReport, Report, Usage};
    use cadre_proto::TaskId;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::support::test_support::{InProcess, ctx};

    /// The in-process delegate, watched: how many sub-tasks run at once at most, and the cancel
    /// token each was given.
    #[derive(Default)]
    struct Watched {
        running: AtomicUsize,
        most: AtomicUsize,
        tokens: Mutex<Vec<CancellationToken>>,
    }

    #[async_trait]
    impl Delegate for Watched {
        async fn delegate(
            &self,
            parent: TaskId,
            task_type: String,
            params: Value,
            cancel: CancellationToken,
        ) -> Result<Value, ExecError> {
            self.tokens.lock().unwrap().push(cancel.clone());
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            let res = InProcess.delegate(parent, task_type, params, cancel).await;
            self.running.fetch_sub(1, Ordering::SeqCst);
            res
        }
    }

    /// Progress messages, in order.
    #[derive(Default)]
    struct Progress(Mutex<Vec<(f64, String)>>);

    impl Report for Progress {
        fn progress(&self, fraction: f64, message: String) {
            self.0.lock().unwrap().push((fraction, message));
        }
        fn usage(&self, _usage: Usage) {}
    }

    fn fusion_ctx(delegate: Arc<dyn Delegate>, report: Arc<dyn Report>) -> ExecContext {
        ExecContext::new(
            TaskId::new(),
            "multimodal.fusion.combine".into(),
            1,
            CancellationToken::new(),
            report,
        )
        .with_delegate(Some(delegate))
    }

    /// Runs a fusion through `delegate`; checks params and result against the schemas.
    async fn run_on(delegate: Arc<dyn Delegate>, params: Value) -> Result<Value, ExecError> {
        validate(&Fuse.params_schema().unwrap(), &params).unwrap_or_else(|e| panic!("{e}"));
        let v = Fuse
            .execute(fusion_ctx(delegate, Arc::new(NoReport)), params)
            .await?;
        validate(&Fuse.result_schema().unwrap(), &v).unwrap_or_else(|e| panic!("{v}: {e}"));
        Ok(v)
    }

    async fn run(params: Value) -> Result<Value, ExecError> {
        run_on(Arc::new(InProcess), params).await
    }

    fn echo(n: i64) -> Value {
        json!({ "task_type": "system.debug.echo", "params": { "n": n } })
    }

    fn fail(retryable: bool) -> Value {
        json!({ "task_type": "system.debug.fail", "params": { "message": "boom", "retryable": retryable } })
    }

    #[tokio::test]
    async fn combines_results_by_key_or_index() {
        let report = Arc::new(Progress::default());
        let params = json!({ "tasks": [
            echo(1),
            { "task_type": "system.debug.echo", "params": { "n": 2 }, "key": "second" },
            { "task_type": "system.debug.sleep", "params": { "ms": 10 }, "key": "nap" },
            { "task_type": "system.debug.echo" },
        ] });
        let v = Fuse
            .execute(fusion_ctx(Arc::new(InProcess), report.clone()), params)
            .await
            .unwrap();
        assert_eq!(
            v,
            json!({
                "results": { "0": { "n": 1 }, "second": { "n": 2 }, "nap": { "slept_ms": 10 }, "3": {} },
                "errors": {},
                "succeeded": 4,
                "failed": 0,
            })
        );
        // Progress after each sub-task, ending at 1.
        let progress = report.0.lock().unwrap();
        assert_eq!(progress.len(), 5, "{progress:?}");
        assert_eq!(progress[0], (0.0, "running 4 sub-tasks".to_string()));
        assert_eq!(progress[4].0, 1.0);
        assert!(
            progress[4].1.starts_with("4 of 4 sub-tasks done ("),
            "{progress:?}"
        );
        assert!(progress.iter().any(|(_, m)| m.ends_with("(nap: ok)")));
    }

    #[tokio::test]
    async fn mode_all_fails_on_the_first_failure() {
        let err = run(json!({ "tasks": [echo(1), fail(true)] })).await.unwrap_err();
        assert_eq!(
            err,
            ExecError::Retryable("sub-task 1 (system.debug.fail): boom".into())
        );
        let err = run(json!({ "tasks": [fail(false)], "mode": "all" }))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            ExecError::Fatal("sub-task 0 (system.debug.fail): boom".into())
        );
        // A sub-task's bad params are the fusion's bad params.
        let err = run(json!({ "tasks": [{ "task_type": "system.debug.sleep", "params": {} }] }))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ExecError::InvalidParams(m) if m.starts_with("sub-task 0 (system.debug.sleep): missing field `ms`")),
            "{err:?}"
        );

        // The sub-tasks still running when one fails are cancelled.
        let watched = Arc::new(Watched::default());
        let slow = json!({ "task_type": "system.debug.sleep", "params": { "ms": 60000 } });
        let err = run_on(watched.clone(), json!({ "tasks": [slow, slow, fail(false)] }))
            .await
            .unwrap_err();
        assert!(matches!(err, ExecError::Fatal(_)), "{err:?}");
        let tokens = watched.tokens.lock().unwrap();
        assert_eq!(tokens.len(), 3);
        assert!(tokens.iter().all(CancellationToken::is_cancelled));
    }

    #[tokio::test]
    async fn mode_any_ok_records_failures() {
        let v = run(json!({ "tasks": [
            echo(1),
            fail(true),
            { "task_type": "no.such.type", "key": "lost" },
        ], "mode": "any_ok" }))
        .await
        .unwrap();
        assert_eq!(
            v,
            json!({
                "results": { "0": { "n": 1 } },
                "errors": {
                    "1": "sub-task 1 (system.debug.fail): boom",
                    "lost": "sub-task lost (no.such.type): no route for no.such.type",
                },
                "succeeded": 1,
                "failed": 2,
            })
        );
        // Nothing succeeded: the task fails, listing every failure.
        let err = run(json!({ "tasks": [fail(true), fail(false)], "mode": "any_ok" }))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            ExecError::Retryable(
                "every sub-task failed: sub-task 0 (system.debug.fail): boom; \
                 sub-task 1 (system.debug.fail): boom"
                    .into()
            )
        );
    }

    #[tokio::test]
    async fn runs_at_most_four_at_once() {
        let watched = Arc::new(Watched::default());
        let nap = json!({ "task_type": "system.debug.sleep", "params": { "ms": 20 } });
        let v = run_on(watched.clone(), json!({ "tasks": vec![nap; 9] }))
            .await
            .unwrap();
        assert_eq!(v["succeeded"], 9);
        assert_eq!(watched.most.load(Ordering::SeqCst), CONCURRENCY);
        // None was cancelled after the fusion succeeded.
        assert!(
            !watched
                .tokens
                .lock()
                .unwrap()
                .iter()
                .any(CancellationToken::is_cancelled)
        );
    }

    #[tokio::test]
    async fn cancel_cancels_the_sub_tasks() {
        let watched = Arc::new(Watched::default());
        let c = fusion_ctx(watched.clone(), Arc::new(NoReport));
        let token = c.cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            token.cancel();
        });
        let slow = json!({ "task_type": "system.debug.sleep", "params": { "ms": 60000 } });
        let res = Fuse.execute(c, json!({ "tasks": [slow, slow] })).await;
        assert_eq!(res, Err(ExecError::Cancelled));
        {
            let tokens = watched.tokens.lock().unwrap();
            assert_eq!(tokens.len(), 2);
            assert!(tokens.iter().all(CancellationToken::is_cancelled));
        }

        let c = fusion_ctx(Arc::new(InProcess), Arc::new(NoReport));
        c.cancel.cancel();
        assert_eq!(
            Fuse.execute(c, json!({ "tasks": [echo(1)] })).await,
            Err(ExecError::Cancelled)
        );
    }

    #[tokio::test]
    async fn refuses_bad_params() {
        let many = vec![echo(1); MAX_TASKS + 1];
        let long_key = "k".repeat(MAX_KEY_CHARS + 1);
        for (params, want) in [
            (json!({ "tasks": [] }), "tasks must hold 1-16 sub-tasks"),
            (json!({ "tasks": many }), "tasks must hold 1-16 sub-tasks"),
            (
                json!({ "tasks": [{ "task_type": "system.debug.echo", "key": "a" }, { "task_type": "system.debug.echo", "key": "a" }] }),
                "key \"a\" is used twice",
            ),
            (
                json!({ "tasks": [echo(1), { "task_type": "system.debug.echo", "key": "0" }] }),
                "key \"0\" is used twice",
            ),
            (
                json!({ "tasks": [{ "task_type": "system.debug.echo", "key": "" }] }),
                "key must be 1-64",
            ),
            (
                json!({ "tasks": [{ "task_type": "system.debug.echo", "key": long_key }] }),
                "key must be 1-64",
            ),
            (
                json!({ "tasks": [{ "task_type": "" }] }),
                "task_type must be 1-128",
            ),
            (
                json!({ "tasks": [{ "task_type": "system.debug.echo", "params": [1] }] }),
                "params must be an object",
            ),
            (
                json!({ "tasks": [{ "task_type": "multimodal.fusion.combine" }] }),
                "a fusion cannot run itself",
            ),
            (
                json!({ "tasks": [echo(1)], "mode": "some" }),
                "unknown variant `some`",
            ),
            (
                json!({ "tasks": [{ "task_type": "x", "priority": 1 }] }),
                "unknown field `priority`",
            ),
        ] {
            let c = fusion_ctx(Arc::new(InProcess), Arc::new(NoReport));
            let err = Fuse.execute(c, params.clone()).await.unwrap_err();
            assert!(
                matches!(&err, ExecError::InvalidParams(m) if m.contains(want)),
                "{params}: {err:?}"
            );
        }
        // Without a delegate the fusion cannot run at all.
        let err = Fuse
            .execute(ctx(), json!({ "tasks": [echo(1)] }))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            ExecError::Fatal("sub-task 0 (system.debug.echo): this worker cannot delegate sub-tasks".into())
        );
    }
}
