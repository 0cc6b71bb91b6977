//! The WorkerService gRPC face: external workers (any language) connect here and run the tasks
//! routed to executor `remote` (see `cadre_executors::remote` for the dispatch side and
//! `proto/cadre/v1/worker.proto` for the protocol).
//!
//! One `Attach` stream per worker: it authenticates (role `supervisor` or above: a worker
//! sees the params of every tenant's tasks of its types), registers, then the stream's reader
//! feeds the worker's messages to its [`WorkerSession`] until the worker hangs up, falls silent
//! for three heartbeat intervals, breaks the protocol, its credential stops working (checked
//! again every [`RECHECK`]: expired, revoked, or its signing key rotated out; the stream ends
//! with UNAUTHENTICATED), or the node shuts down. Dropping the session fails the tasks in flight
//! on that worker as retryable.

use std::pin::Pin;
use std::sync::Arc;

use cadre_executors::{RegisterError, RemoteHub, WorkerSession};
use cadre_proto::v1::{self, worker_message, worker_service_server::WorkerService};
use futures::Stream;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use cadre_core::auth::{Action, Authenticator, Principal};
use cadre_core::node::Node;

/// WorkerService on a node that runs supervisors.
#[derive(Clone)]
pub struct WorkerApi {
    /// The connected workers, shared with the `remote` executor.
    pub hub: Arc<RemoteHub>,
    /// Credential checks.
    pub auth: Arc<Authenticator>,
    /// The node core, for auditing (None on a supervisor node, which keeps no audit chain).
    pub node: Option<Arc<Node>>,
    /// Fires at shutdown: open streams end so the server can stop.
    pub shutdown: CancellationToken,
}

/// How often an attached worker's credential is checked again.
pub const RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

type ServerStream = Pin<Box<dyn Stream<Item = Result<v1::ServerMessage, Status>> + Send>>;

/// Sets `cadre_remote_workers` to the hub's count.
pub fn record_connected(hub: &RemoteHub) {
    metrics::gauge!("cadre_remote_workers").set(hub.connected() as f64);
}

impl WorkerApi {
    async fn authorize<T>(&self, req: &Request<T>) -> Result<Principal, Status> {
        let header = req.metadata().get("authorization").and_then(|v| v.to_str().ok());
        self.authorize_header(header).await
    }

    async fn authorize_header(&self, header: Option<&str>) -> Result<Principal, Status> {
        let res = match &self.node {
            Some(node) => node.authorize(header, Action::ConnectWorker).await,
            None => self.auth.authorize(header, Action::ConnectWorker),
        };
        res.map_err(|e| {
            tracing::warn!(action = Action::ConnectWorker.name(), error = %e, "worker refused");
            Status::from(e)
        })
    }
}

#[tonic::async_trait]
impl WorkerService for WorkerApi {
    type AttachStream = ServerStream;

    async fn attach(
        &self,
        req: Request<Streaming<v1::WorkerMessage>>,
    ) -> Result<Response<ServerStream>, Status> {
        let p = self.authorize(&req).await?;
        let header = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut inbound = req.into_inner();
        let silence = self.hub.config().liveness_timeout();
        let first = tokio::time::timeout(silence, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("register: not sent in time"))??;
        let Some(v1::WorkerMessage {
            body: Some(worker_message::Body::Register(reg)),
        }) = first
        else {
            return Err(Status::invalid_argument(
                "register: the first message must be register",
            ));
        };
        let kinds = reg.kinds.join(",");
        let (mut session, outbox) = self.hub.connect(reg).map_err(|e| match e {
            RegisterError::Invalid(m) => Status::invalid_argument(m),
            RegisterError::Full(m) => Status::resource_exhausted(m),
        })?;
        record_connected(&self.hub);
        tracing::info!(worker = session.worker_id(), session = session.id(), subject = %p.subject, kinds, "remote worker connected");
        if let Some(node) = &self.node {
            node.worker_connected(&p, session.worker_id(), &kinds).await?;
        }
        let (end_tx, end_rx) = tokio::sync::oneshot::channel::<Status>();
        let hub = self.hub.clone();
        let api = self.clone();
        tokio::spawn(async move {
            let end = read(&mut session, &mut inbound, silence, &api, header.as_deref()).await;
            if let Err(status) = end {
                session.set_end_reason(status.message().to_string());
                let _ = end_tx.send(status);
            }
            drop(session);
            record_connected(&hub);
        });
        // The outbox ends when the session is dropped (the hub forgets the worker); then the
        // reason, if the node ended the stream, closes it as an error status.
        let ending = futures::stream::once(async move { end_rx.await.ok() }).filter_map(|s| s.map(Err));
        let stream = ReceiverStream::new(outbox).map(Ok).chain(ending);
        Ok(Response::new(Box::pin(stream)))
    }
}

/// Feeds the worker's messages to its session until the stream ends (Ok) or the node ends it
/// (Err: the status the worker gets). The credential `header` is checked again every
/// [`RECHECK`].
async fn read(
    session: &mut WorkerSession,
    inbound: &mut Streaming<v1::WorkerMessage>,
    silence: std::time::Duration,
    api: &WorkerApi,
    header: Option<&str>,
) -> Result<(), Status> {
    let mut recheck = tokio::time::interval(RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    recheck.tick().await;
    let mut deadline = tokio::time::Instant::now() + silence;
    loop {
        let msg = tokio::select! {
            m = tokio::time::timeout_at(deadline, inbound.message()) => m,
            _ = recheck.tick() => {
                if let Err(s) = api.authorize_header(header).await {
                    return Err(Status::unauthenticated(format!("credential no longer valid: {}", s.message())));
                }
                continue;
            }
            _ = api.shutdown.cancelled() => return Err(Status::unavailable("the node is shutting down")),
        };
        deadline = tokio::time::Instant::now() + silence;
        match msg {
            Err(_) => {
                return Err(Status::deadline_exceeded(format!(
                    "no heartbeat for {} ms (three intervals)",
                    silence.as_millis()
                )));
            }
            Ok(Ok(None)) => return Ok(()),
            Ok(Err(e)) => {
                session.set_end_reason(format!("stream error: {}", e.message()));
                return Ok(());
            }
            Ok(Ok(Some(m))) => session.handle(m).map_err(Status::invalid_argument)?,
        }
    }
}
