//! The peer registry: supervisor nodes announce themselves in a NATS KV bucket whose entries
//! expire (`bus.peer_ttl_ms`) unless renewed, so nodes find each other without static
//! addresses and a dead node drops out by itself. Status, Scale, SetPauses, SetCredentials and Delegate calls
//! go to the nodes found here over the SupervisorPeer gRPC service ([`Peers`] is the node
//! runtime's [`PeerDelegation`]).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use cadre_proto::v1::{self, PoolStatus, SupervisorStatus, supervisor_peer_client::SupervisorPeerClient};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use cadre_supervisors::SharedRoutes;
use cadre_supervisors::node::{PeerDelegation, PeerError};
use tonic::metadata::{Ascii, MetadataValue};

use crate::conn::Conn;
use crate::error::{BusError, BusResult};

/// How long one peer call may take.
const PEER_TIMEOUT: Duration = Duration::from_secs(10);

/// One live supervisor node, as registered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerEntry {
    /// Its `node.id`.
    pub node_id: String,
    /// Its SupervisorPeer gRPC URL, e.g. `http://10.0.0.5:50051`.
    pub url: String,
    /// Supervisors it runs.
    pub supervisors: Vec<String>,
}

/// Makes a short-lived credential for calls to peers (None when auth is off).
pub type Minter = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// A gRPC client of one peer, with this node's credential on every call.
pub type PeerClient = SupervisorPeerClient<InterceptedService<Channel, NodeCredential>>;

/// What every call to a peer carries: this node's credential (minted per client) and the
/// caller's trace context.
#[derive(Clone)]
pub struct NodeCredential(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for NodeCredential {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        cadre_trace::inject_metadata(req.metadata_mut());
        Ok(req)
    }
}

/// Handle to the registry; cheap to clone.
#[derive(Clone)]
pub struct Peers {
    inner: Arc<Inner>,
}

struct Inner {
    kv: tokio::sync::OnceCell<kv::Store>,
    routes: SharedRoutes,
    minter: Minter,
    ttl: Duration,
}

impl Peers {
    /// A registry that starts working once [`Peers::attach`] gives it a NATS connection.
    pub fn new(routes: SharedRoutes, minter: Minter, ttl: Duration) -> Self {
        Peers {
            inner: Arc::new(Inner {
                kv: tokio::sync::OnceCell::new(),
                routes,
                minter,
                ttl,
            }),
        }
    }

    /// Opens (or creates) the bucket; retried until it works.
    pub async fn attach(&self, conn: Conn) {
        let bucket = conn.names.peers_bucket();
        let mut delay = Duration::from_millis(100);
        loop {
            // The bucket's stream is created by hand with the KV layout: `create_key_value`
            // first queries account info, which async-nats cannot parse from NATS 2.9 (the
            // version Debian ships).
            let stream = async_nats::jetstream::stream::Config {
                name: format!("KV_{bucket}"),
                subjects: vec![format!("$KV.{bucket}.>")],
                max_messages_per_subject: 1,
                max_age: self.inner.ttl,
                allow_rollup: true,
                deny_delete: true,
                allow_direct: true,
                discard: async_nats::jetstream::stream::DiscardPolicy::New,
                ..Default::default()
            };
            let store = match conn.js.get_or_create_stream(stream).await {
                Ok(_) => conn.js.get_key_value(&bucket).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match store {
                Ok(s) => {
                    let _ = self.inner.kv.set(s);
                    return;
                }
                Err(e) => {
                    tracing::warn!(%bucket, error = %e, "cannot open the peer registry; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// The executor the routes name for `task_type`.
    pub fn executor_name(&self, task_type: &str) -> Option<String> {
        let routes = self
            .inner
            .routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        routes.resolve(task_type).map(|r| r.executor.clone())
    }

    /// Keeps `entry` registered under `key` until the process ends: renewed every third of
    /// the TTL.
    pub async fn announce_owned(self, key: String, entry: PeerEntry) {
        let body = serde_json::to_vec(&entry).unwrap_or_default();
        let every = self.inner.ttl / 3;
        loop {
            if let Some(kv) = self.inner.kv.get()
                && let Err(e) = kv.put(&key, body.clone().into()).await
            {
                tracing::warn!(error = %e, "peer heartbeat failed");
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Every live supervisor node.
    pub async fn list(&self) -> BusResult<Vec<PeerEntry>> {
        let kv = self
            .inner
            .kv
            .get()
            .ok_or_else(|| BusError::Unavailable("NATS is not reachable yet; no peer registry".into()))?;
        let mut keys = kv
            .keys()
            .await
            .map_err(|e| BusError::Unavailable(format!("peer registry: {e}")))?;
        let mut out = Vec::new();
        while let Some(k) = keys.next().await {
            let Ok(k) = k else { continue };
            if let Ok(Some(v)) = kv.get(&k).await
                && let Ok(e) = serde_json::from_slice::<PeerEntry>(&v)
            {
                out.push(e);
            }
        }
        out.sort_by(|a, b| a.node_id.cmp(&b.node_id).then(a.url.cmp(&b.url)));
        Ok(out)
    }

    /// A client for `entry`.
    pub async fn client(&self, entry: &PeerEntry) -> BusResult<PeerClient> {
        let channel = tonic::transport::Endpoint::from_shared(entry.url.clone())
            .map_err(|e| BusError::Unavailable(format!("peer {}: bad address: {e}", entry.node_id)))?
            .connect_timeout(Duration::from_secs(3))
            .timeout(PEER_TIMEOUT)
            .connect()
            .await
            .map_err(|e| BusError::Unavailable(format!("peer {} at {}: {e}", entry.node_id, entry.url)))?;
        let credential = (self.inner.minter)()
            .map(|t| format!("Bearer {}", t.trim()).parse())
            .transpose()
            .map_err(|_| BusError::Unavailable("the node credential cannot travel as a header".into()))?;
        Ok(SupervisorPeerClient::with_interceptor(
            channel,
            NodeCredential(credential),
        ))
    }

    /// Nodes running `supervisor`, in a random order (spreads delegated work).
    pub async fn running(&self, supervisor: &str) -> BusResult<Vec<PeerEntry>> {
        let mut nodes: Vec<PeerEntry> = self
            .list()
            .await?
            .into_iter()
            .filter(|e| e.supervisors.iter().any(|s| s == supervisor))
            .collect();
        fastrand::shuffle(&mut nodes);
        Ok(nodes)
    }

    /// Every supervisor replica on every node; a node that does not answer shows as
    /// `unreachable`.
    pub async fn status(&self) -> BusResult<Vec<SupervisorStatus>> {
        let asks = self.list().await?.into_iter().flat_map(|e| {
            e.supervisors.clone().into_iter().map(move |s| {
                let e = e.clone();
                async move {
                    let answer = async {
                        let mut c = self.client(&e).await?;
                        c.status(v1::PeerStatusRequest {
                            supervisor: s.clone(),
                        })
                        .await
                        .map(|r| r.into_inner())
                        .map_err(|st| BusError::Unavailable(st.message().to_string()))
                    }
                    .await;
                    let mut st = answer.unwrap_or_else(|err| SupervisorStatus {
                        name: s.clone(),
                        state: format!("unreachable: {err}"),
                        ..Default::default()
                    });
                    st.node_id = e.node_id.clone();
                    st.address = e.url.clone();
                    st
                }
            })
        });
        let mut all = futures::future::join_all(asks).await;
        all.sort_by(|a, b| a.name.cmp(&b.name).then(a.node_id.cmp(&b.node_id)));
        Ok(all)
    }

    /// Sends the whole pause set to every live node (at once); the error names the nodes that
    /// did not take it.
    /// Before NATS is reached no node is known: nothing to do (the caller sends again).
    pub async fn set_pauses(&self, set: &cadre_supervisors::PauseSet) -> BusResult<()> {
        let request = v1::SetPausesRequest {
            pauses: crate::pause_wire::set_to_wire(set),
        };
        self.to_every_node("pause set", request, |mut c, r| async move {
            c.set_pauses(r).await.map(drop)
        })
        .await
    }

    /// Sends the revocations and rotated signing keys to every live node, as
    /// [`Peers::set_pauses`] sends the pause set.
    pub async fn set_credentials(&self, request: &v1::SetCredentialsRequest) -> BusResult<()> {
        self.to_every_node("credentials", request.clone(), |mut c, r| async move {
            c.set_credentials(r).await.map(drop)
        })
        .await
    }

    /// Makes `call` with a copy of `request` on every live node at once; the error names the
    /// nodes that did not take `what`. Nothing to do before NATS is reached (no node is known).
    async fn to_every_node<R, F, Fut>(&self, what: &str, request: R, call: F) -> BusResult<()>
    where
        R: Clone,
        F: Fn(PeerClient, R) -> Fut,
        Fut: std::future::Future<Output = Result<(), tonic::Status>>,
    {
        if self.inner.kv.get().is_none() {
            return Ok(());
        }
        let sends = self.list().await?.into_iter().map(|e| {
            let (request, call) = (request.clone(), &call);
            async move {
                let answer = async {
                    let c = self.client(&e).await?;
                    call(c, request).await.map_err(BusError::Peer)
                }
                .await;
                answer.map_err(|err| format!("{} ({}): {err}", e.node_id, e.url))
            }
        });
        let failed: Vec<String> = futures::future::join_all(sends)
            .await
            .into_iter()
            .filter_map(Result::err)
            .collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(BusError::Unavailable(format!(
                "{what} not taken by {}",
                failed.join("; ")
            )))
        }
    }

    /// Resizes `kind` of `supervisor` on every node that runs it.
    pub async fn scale(&self, supervisor: &str, kind: &str, size: usize) -> BusResult<Vec<PoolStatus>> {
        let nodes = self.running(supervisor).await?;
        if nodes.is_empty() {
            return Err(BusError::NotFound(format!(
                "no live node runs supervisor {supervisor:?}"
            )));
        }
        let mut out = Vec::new();
        for e in nodes {
            let mut c = self.client(&e).await?;
            let pool = c
                .scale(v1::ScaleRequest {
                    supervisor: supervisor.to_string(),
                    worker_kind: kind.to_string(),
                    replicas: size as u32,
                })
                .await
                .map_err(BusError::Peer)?
                .into_inner();
            out.push(pool);
        }
        Ok(out)
    }
}

#[async_trait::async_trait]
impl PeerDelegation for Peers {
    /// Asks one of the nodes running `supervisor` (in a random order, see [`Peers::running`]).
    async fn delegate(&self, supervisor: &str, request: v1::DelegateRequest) -> Result<v1::Task, PeerError> {
        let nodes = self
            .running(supervisor)
            .await
            .map_err(|e| PeerError::Unreachable(e.to_string()))?;
        let node = nodes.first().ok_or(PeerError::NoNode)?;
        let mut client = self
            .client(node)
            .await
            .map_err(|e| PeerError::Unreachable(e.to_string()))?;
        let task = client
            .delegate(request)
            .await
            .map_err(|s| PeerError::Refused(s.message().to_string()))?;
        Ok(task.into_inner())
    }
}
