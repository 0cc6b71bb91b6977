//! The gRPC client side that `loadgen` and `distbench` share: channels to a node, and one
//! `SubmitAndWait` whose task must end SUCCEEDED.

use std::time::Duration;

use anyhow::Context;
use cadre_client::Bearer;
use cadre_proto::v1::task_service_client::TaskServiceClient;
use cadre_proto::v1::{SubmitAndWaitRequest, TaskState};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// A task client that sends a credential with every call.
pub type TaskClient = TaskServiceClient<InterceptedService<Channel, Bearer>>;

/// Opens `n` separate channels (HTTP/2 connections) to `url`, with `TCP_NODELAY` and a 5 s
/// connect timeout.
pub async fn connect(url: &str, n: u64) -> anyhow::Result<Vec<Channel>> {
    let endpoint = Endpoint::from_shared(url.to_string())
        .with_context(|| format!("{url:?} is not a valid endpoint URL"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5));
    let mut channels = Vec::new();
    for _ in 0..n {
        channels.push(
            endpoint
                .connect()
                .await
                .with_context(|| format!("cannot connect to {url}"))?,
        );
    }
    Ok(channels)
}

/// Sends `req` and waits for the task; fails with a message on an error status or when the
/// task ends in any state but SUCCEEDED.
pub async fn submit_and_wait_succeeded(
    mut client: TaskClient,
    req: SubmitAndWaitRequest,
) -> Result<(), String> {
    let task = client
        .submit_and_wait(req)
        .await
        .map_err(|s| format!("SubmitAndWait: {:?}: {}", s.code(), s.message()))?
        .into_inner();
    if task.state == TaskState::Succeeded as i32 {
        Ok(())
    } else {
        let state = TaskState::try_from(task.state).map_or("UNKNOWN", |s| s.as_str_name());
        Err(format!("task ended {state}: {}", task.error))
    }
}
