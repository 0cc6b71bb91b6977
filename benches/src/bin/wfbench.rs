//! `wfbench`: a 10-step linear workflow of no-op steps, against the same steps run one after
//! another by a client with `SubmitAndWait`, in the same run on the same node.
//!
//! The tool starts cadre in this process (`cadre_benches::node::InProcess`: SQLite with
//! `synchronous=full`, a temporary data dir, auth with the node's own commander key) and
//! registers workflow `chain` whose `--steps` steps (default 10) each run `system.debug.echo`
//! and need the one before (each reads the previous step's output, so the chain is a real
//! dependency, as a client loop that passes results on). Then, `--rounds` times (default 30),
//! alternating which goes first:
//!
//! - **workflow**: one `SubmitAndWait` of `workflow.chain.run`; the node drives the steps;
//! - **client loop**: `--steps` `SubmitAndWait`s of `system.debug.echo`, one after the other,
//!   each with the previous result in its params.
//!
//! with `--concurrency` (default 1) of each running at once. Every instance and task must end
//! SUCCEEDED. The report gives the median and p90 wall time of each and the ratio of medians
//! workflow / client loop (target at most 1.0), then one `RESULT {json}` line.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cadre_benches::grpc::{TaskClient, connect};
use cadre_benches::node::InProcess;
use cadre_benches::stats::{quantile, ratio};
use cadre_client::Bearer;
use cadre_proto::v1::task_service_client::TaskServiceClient;
use cadre_proto::v1::workflow_service_client::WorkflowServiceClient;
use cadre_proto::v1::{RegisterWorkflowRequest, SubmitAndWaitRequest, TaskSpec, TaskState};
use clap::Parser;
use serde_json::{Value, json};

/// The ratio the issue asks for: the node drives steps at least as fast as a client next to it.
const TARGET_RATIO: f64 = 1.0;

/// Command line of `wfbench`.
#[derive(Parser, Debug)]
#[command(
    name = "wfbench",
    about = "A linear workflow of no-op steps against the same steps driven by a client loop"
)]
struct Args {
    /// Steps of the workflow (and tasks of one client loop).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=200))]
    steps: u64,
    /// Measured rounds of each.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    rounds: u64,
    /// Unmeasured rounds of each first.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(0..=1_000))]
    warmup: u64,
    /// Workflows (and client loops) running at once in a round.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=256))]
    concurrency: u64,
}

/// The workflow: `steps` echo steps, each needing and reading the one before.
fn chain(steps: u64) -> Value {
    let steps: Vec<Value> = (0..steps)
        .map(|i| {
            let mut step = json!({"id": format!("s{i}"), "task": "system.debug.echo", "params": {"i": i}});
            if i > 0 {
                step["needs"] = json!([format!("s{}", i - 1)]);
                step["params"]["prev"] = json!(format!("${{{{ steps.s{}.output.i }}}}", i - 1));
            }
            step
        })
        .collect();
    json!({"name": "chain", "version": 1, "steps": steps})
}

/// A `SubmitAndWait` that must end SUCCEEDED; its result.
async fn run(mut client: TaskClient, task_type: &str, params: &Value) -> anyhow::Result<Value> {
    let task = client
        .submit_and_wait(SubmitAndWaitRequest {
            spec: Some(TaskSpec {
                task_type: task_type.into(),
                params_json: params.to_string(),
                ..Default::default()
            }),
            wait_ms: 0,
        })
        .await
        .map_err(|s| anyhow::anyhow!("SubmitAndWait {task_type}: {:?}: {}", s.code(), s.message()))?
        .into_inner();
    if task.state != TaskState::Succeeded as i32 {
        bail!("{task_type} ended {:?}: {}", task.state(), task.error);
    }
    serde_json::from_str(&task.result_json).context("result JSON")
}

/// One workflow instance, start to end.
async fn workflow_once(client: TaskClient) -> anyhow::Result<Duration> {
    let start = Instant::now();
    run(client, "workflow.chain.run", &json!({})).await?;
    Ok(start.elapsed())
}

/// The same steps by a client, one after the other, each passing the last result on.
async fn client_loop_once(client: TaskClient, steps: u64) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut prev = Value::Null;
    for i in 0..steps {
        let out = run(
            client.clone(),
            "system.debug.echo",
            &json!({"i": i, "prev": prev}),
        )
        .await?;
        prev = out.get("i").cloned().unwrap_or(Value::Null);
    }
    Ok(start.elapsed())
}

/// `concurrency` of one kind at once; each one's wall time.
async fn round(client: &TaskClient, args: &Args, workflow: bool) -> anyhow::Result<Vec<Duration>> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency {
        let c = client.clone();
        let steps = args.steps;
        set.spawn(async move {
            if workflow {
                workflow_once(c).await
            } else {
                client_loop_once(c, steps).await
            }
        });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r.context("a round's task panicked")??);
    }
    Ok(out)
}

/// Median and p90 of `times`, in milliseconds.
fn summary(times: &[Duration]) -> (f64, f64) {
    let mut us: Vec<u64> = times.iter().map(|d| d.as_micros() as u64).collect();
    us.sort_unstable();
    (
        quantile(&us, 0.5) as f64 / 1000.0,
        quantile(&us, 0.9) as f64 / 1000.0,
    )
}

async fn bench(args: Args) -> anyhow::Result<bool> {
    let node = InProcess::start(64, "full").await?;
    let url = format!("http://{}", node.running.grpc_addr);
    let channel = connect(&url, 1).await?.remove(0);
    let bearer = Bearer::new(node.credential().as_deref())?;
    let client = TaskServiceClient::with_interceptor(channel.clone(), bearer.clone());
    WorkflowServiceClient::with_interceptor(channel, bearer)
        .register_workflow(RegisterWorkflowRequest {
            definition_json: chain(args.steps).to_string(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("RegisterWorkflow: {}", s.message()))?;
    for _ in 0..args.warmup {
        round(&client, &args, true).await?;
        round(&client, &args, false).await?;
    }
    let (mut flows, mut loops) = (Vec::new(), Vec::new());
    for r in 0..args.rounds {
        // Alternate the order, so neither always runs on a node the other just warmed.
        let first_workflow = r % 2 == 0;
        for workflow in [first_workflow, !first_workflow] {
            let times = round(&client, &args, workflow).await?;
            if workflow {
                flows.extend(times);
            } else {
                loops.extend(times);
            }
        }
    }
    node.running.shutdown().await;
    let (wf_p50, wf_p90) = summary(&flows);
    let (cl_p50, cl_p90) = summary(&loops);
    let r = ratio(wf_p50, cl_p50);
    println!(
        "{} steps, {} rounds, concurrency {}",
        args.steps, args.rounds, args.concurrency
    );
    println!("{:<12} {:>10} {:>10}", "", "p50 ms", "p90 ms");
    println!("{:<12} {wf_p50:>10.2} {wf_p90:>10.2}", "workflow");
    println!("{:<12} {cl_p50:>10.2} {cl_p90:>10.2}", "client loop");
    println!("ratio workflow / client loop (p50): {r:.3} (target <= {TARGET_RATIO})");
    let result = json!({
        "bench": "wfbench", "steps": args.steps, "rounds": args.rounds,
        "concurrency": args.concurrency,
        "workflow_p50_ms": wf_p50, "workflow_p90_ms": wf_p90,
        "client_loop_p50_ms": cl_p50, "client_loop_p90_ms": cl_p90,
        "ratio": r, "target": TARGET_RATIO,
    });
    println!("RESULT {result}");
    Ok(r <= TARGET_RATIO)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    cadre_benches::exit_code(bench(args).await, "the workflow was slower than the client loop")
}
