//! A started node and its graceful stop.

use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cadre_core::node::Node;
use cadre_core::writer::Writer;
use cadre_supervisors::OrchestratorMsg;
use cadre_supervisors::node::NodeRuntime;
use ractor::ActorRef;
use tokio_util::sync::CancellationToken;

/// A started node.
pub struct Running {
    /// The bound gRPC address.
    pub grpc_addr: SocketAddr,
    /// The bound HTTP address.
    pub http_addr: SocketAddr,
    /// The node core (None on a supervisor node, which has no store or intake).
    pub node: Option<Arc<Node>>,
    /// The supervisor-node runtime (distributed mode), if this process pulls tasks from NATS.
    pub runtime: Option<Arc<NodeRuntime>>,
    /// The root actor of this process's supervisors.
    pub(crate) orchestrator: ActorRef<OrchestratorMsg>,
    /// The workflow engine's supervisor (tier 0 only).
    pub workflow_engine: Option<ActorRef<cadre_core::workflows::engine::SupervisorMsg>>,
    /// The writer (tier 0), flushed last.
    pub(crate) writer: Option<Writer>,
    /// How long open calls, the actor tree and the writer may take to stop.
    pub(crate) grace: Duration,
    /// Cancelled to stop both servers.
    pub(crate) shutdown: CancellationToken,
    /// The gRPC and HTTP servers.
    pub(crate) servers: Vec<tokio::task::JoinHandle<()>>,
    /// The writer's task, awaited after the final flush.
    pub(crate) writer_task: Option<tokio::task::JoinHandle<()>>,
    /// `<data_dir>/endpoints.json`, removed at a clean stop.
    pub(crate) endpoints_file: PathBuf,
    /// The data dir's lock.
    pub(crate) _lock: File,
    /// The lock beside a SQLite `store.url` outside the data dir.
    pub(crate) _store_lock: Option<File>,
}

impl Running {
    /// Stops intake, waits up to the grace period for open calls and streams, stops the actor
    /// tree (running tasks are recovered at the next start, or handed back to NATS for another
    /// replica) and flushes the writer.
    pub async fn shutdown(self) {
        tracing::info!("shutting down");
        self.shutdown.cancel();
        let grace = self.grace;
        for s in self.servers {
            let abort = s.abort_handle();
            if tokio::time::timeout(grace, s).await.is_err() {
                tracing::warn!("open calls outlived the shutdown grace period; closing them");
                abort.abort();
            }
        }
        if let Some(engine) = &self.workflow_engine {
            let _ = engine.stop_and_wait(Some("shutdown".into()), Some(grace)).await;
        }
        let orchestrator = &self.orchestrator;
        let _ = orchestrator
            .call(OrchestratorMsg::Shutdown, Some(grace + Duration::from_secs(5)))
            .await;
        let _ = orchestrator
            .stop_and_wait(Some("shutdown".into()), Some(grace))
            .await;
        if let Some(runtime) = &self.runtime {
            runtime.drain(grace).await;
            runtime.release().await;
        }
        if let Some(writer) = &self.writer
            && let Err(e) = writer.flush().await
        {
            tracing::warn!(error = %e, "final flush failed");
        }
        drop(self.writer);
        drop(self.node);
        if let Some(t) = self.writer_task {
            let _ = tokio::time::timeout(grace, t).await;
        }
        let _ = std::fs::remove_file(&self.endpoints_file);
        tracing::info!("stopped");
    }
}
