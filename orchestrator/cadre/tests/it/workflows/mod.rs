//! Workflows end to end against a real `cadre serve`: definitions, DAGs, waits and
//! approvals through every face, crashes, the agent loop.

mod agents;
mod counter;
mod crashes;
mod dags;
mod waits;

use std::time::Duration;

use cadre_client::Bearer;
use cadre_proto::v1::{self, workflow_service_client::WorkflowServiceClient};
use serde_json::{Value, json};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::common::{Tasks, TestNode, eventually, get, state};

pub use counter::Counter;

/// A WorkflowService client with a credential.
pub type Flows = WorkflowServiceClient<InterceptedService<Channel, Bearer>>;

/// A WorkflowService client with the node's commander credential.
pub async fn flows(node: &TestNode) -> Flows {
    flows_as(node, Some(&node.credential())).await
}

/// A WorkflowService client with `credential`.
pub async fn flows_as(node: &TestNode, credential: Option<&str>) -> Flows {
    WorkflowServiceClient::with_interceptor(node.channel().await, TestNode::bearer(credential))
}

/// Config for a node whose `system.http.call` hook `count` posts to `counter`.
pub fn counter_config(counter: &Counter) -> String {
    format!(
        "[executors.http.hooks.count]\nurl = \"{}\"\ntimeout_ms = 30000\nretries = 0\n",
        counter.url()
    )
}

/// A step that calls the counting hook with `{"step": id, ...extra}` (its output's `body` is
/// what the counter answers: that body with `n`).
pub fn counted(id: &str, extra: Value) -> Value {
    let mut body = json!({ "step": id });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    json!({ "id": id, "task": "system.http.call", "params": { "hook": "count", "body": body } })
}

/// Registers `def` and returns it as stored.
pub async fn register(node: &TestNode, def: &Value) -> v1::WorkflowDefinition {
    flows(node)
        .await
        .register_workflow(v1::RegisterWorkflowRequest {
            definition_json: def.to_string(),
        })
        .await
        .unwrap_or_else(|e| panic!("register {def}: {e:?}"))
        .into_inner()
        .workflow
        .expect("workflow")
}

/// Starts an instance of workflow `name` with `input`.
pub async fn start(c: &mut Tasks, name: &str, input: Value) -> v1::Task {
    c.submit(v1::SubmitRequest {
        spec: Some(v1::TaskSpec {
            task_type: format!("workflow.{name}.run"),
            params_json: input.to_string(),
            ..Default::default()
        }),
    })
    .await
    .unwrap_or_else(|e| panic!("start {name}: {e:?}"))
    .into_inner()
    .task
    .expect("task")
}

/// The instance once it is finished.
pub async fn finished(c: &Tasks, id: &str, patience: Duration) -> v1::Task {
    eventually(&format!("workflow {id} to finish"), patience, || {
        let mut c = c.clone();
        let id = id.to_string();
        async move {
            let t = get(&mut c, &id).await;
            is_terminal(state(&t)).then_some(t)
        }
    })
    .await
}

/// The instance once `step` is in `want` (e.g. `WAITING`).
pub async fn step_reaches(c: &Tasks, id: &str, step: &str, want: &str, patience: Duration) -> v1::Task {
    eventually(&format!("step {step} of {id} to be {want}"), patience, || {
        let mut c = c.clone();
        let id = id.to_string();
        let step = step.to_string();
        let want = want.to_string();
        async move {
            let t = get(&mut c, &id).await;
            (step_state(&t, &step) == want).then_some(t)
        }
    })
    .await
}

/// A step's state in an instance.
pub fn step_state(t: &v1::Task, step: &str) -> String {
    t.steps
        .iter()
        .find(|s| s.id == step)
        .map(|s| s.state.clone())
        .unwrap_or_else(|| panic!("no step {step} in {t:?}"))
}

/// A step's output in an instance.
pub fn step_output(t: &v1::Task, step: &str) -> Value {
    let s = t.steps.iter().find(|s| s.id == step).expect("step");
    serde_json::from_str(&s.output_json).unwrap_or(Value::Null)
}

/// The instance's result.
pub fn result(t: &v1::Task) -> Value {
    serde_json::from_str(&t.result_json).unwrap_or_else(|e| panic!("result of {t:?}: {e}"))
}

fn is_terminal(s: v1::TaskState) -> bool {
    matches!(
        s,
        v1::TaskState::Succeeded | v1::TaskState::Failed | v1::TaskState::Cancelled | v1::TaskState::TimedOut
    )
}
