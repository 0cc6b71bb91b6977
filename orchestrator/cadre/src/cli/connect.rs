//! How client commands reach the node; no command of its own. It finds the endpoint
//! (`--endpoint` / `CADRE_ENDPOINT`, else `<data-dir>/endpoints.json` written by `cadre serve`,
//! else the default), the credential (`--token` / `CADRE_TOKEN`, else `<data-dir>/credentials`),
//! sets up TLS for `https://` endpoints and opens the channel whose calls carry the credential
//! and the caller's `TRACEPARENT` through the [`Bearer`] interceptor. `cadre mcp` uses the same
//! lookups for the node's HTTP address.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use cadre_core::auth::Bearer;
use cadre_proto::v1::{
    admin_service_client::AdminServiceClient, task_service_client::TaskServiceClient,
    workflow_service_client::WorkflowServiceClient,
};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use super::args::ClientTls;
use crate::server::Endpoints;

/// The task client with credentials attached.
pub(super) type TasksClient = TaskServiceClient<InterceptedService<Channel, Bearer>>;

/// The workflow client with credentials attached.
pub(super) type WorkflowsClient = WorkflowServiceClient<InterceptedService<Channel, Bearer>>;

/// The admin client with credentials attached.
pub(super) type AdminClient = AdminServiceClient<InterceptedService<Channel, Bearer>>;

/// The data dir when `--data-dir` / `CADRE_DATA_DIR` is not given.
const DEFAULT_DATA_DIR: &str = "cadre-data";

/// The node's gRPC endpoint when neither the flag nor endpoints.json names one.
const DEFAULT_GRPC: &str = "http://127.0.0.1:50051";

/// The node's HTTP address when neither the flag nor endpoints.json names one.
const DEFAULT_HTTP: &str = "http://127.0.0.1:8080";

/// The global flags that say which node a client command talks to and as whom; nothing is
/// read or connected until a command asks.
pub(super) struct Target {
    /// `--endpoint` / `CADRE_ENDPOINT`.
    pub(super) endpoint: Option<String>,
    /// `--data-dir` / `CADRE_DATA_DIR`.
    pub(super) data_dir: Option<PathBuf>,
    /// `--token` / `CADRE_TOKEN`.
    pub(super) token: Option<String>,
    /// The TLS flags, for `https://` endpoints.
    pub(super) tls: ClientTls,
}

impl Target {
    /// The data dir: the flag, else `cadre-data`.
    pub(super) fn data_dir_or_default(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
    }

    /// The credential: the flag, else the one `cadre serve` wrote into the data dir.
    pub(super) fn credential(&self) -> Option<String> {
        self.token
            .clone()
            .or_else(|| Bearer::from_data_dir(&self.data_dir_or_default()))
    }

    /// The node's HTTP address: `flag`, else `http` in endpoints.json, else the default.
    pub(super) fn http_endpoint(&self, flag: Option<String>) -> String {
        endpoint(flag, &self.data_dir_or_default(), |e| e.http, DEFAULT_HTTP)
    }

    /// The node's gRPC endpoint: `--endpoint`, else `grpc` in endpoints.json, else the default.
    fn grpc_endpoint(&self) -> String {
        endpoint(
            self.endpoint.clone(),
            &self.data_dir_or_default(),
            |e| e.grpc,
            DEFAULT_GRPC,
        )
    }

    /// A task client of the node.
    pub(super) async fn tasks(self) -> Result<TasksClient> {
        let (channel, bearer) = self.connect().await?;
        Ok(TaskServiceClient::with_interceptor(channel, bearer))
    }

    /// A workflow client of the node.
    pub(super) async fn workflows(self) -> Result<WorkflowsClient> {
        let (channel, bearer) = self.connect().await?;
        Ok(WorkflowServiceClient::with_interceptor(channel, bearer))
    }

    /// An admin client of the node.
    pub(super) async fn admin(self) -> Result<AdminClient> {
        let (channel, bearer) = self.connect().await?;
        Ok(AdminServiceClient::with_interceptor(channel, bearer))
    }

    /// Connects to the node's gRPC endpoint (within 5 s) and makes the interceptor that sends
    /// the credential and trace context on every call.
    async fn connect(self) -> Result<(Channel, Bearer)> {
        let endpoint = self.grpc_endpoint();
        let credential = self.credential();
        // A caller's trace continues through this command (W3C trace context, as set by
        // e.g. `otel-cli` or a CI system).
        let traceparent = std::env::var("TRACEPARENT").ok();
        let bearer = Bearer::new(credential.as_deref())?.with_traceparent(traceparent.as_deref());

        let mut ep = Channel::from_shared(endpoint.clone())
            .map_err(|e| anyhow!("invalid endpoint {endpoint:?}: {e}"))?
            .connect_timeout(Duration::from_secs(5));
        if endpoint.starts_with("https://") {
            ep = ep
                .tls_config(client_tls(&self.tls)?)
                .map_err(|e| anyhow!("TLS setup failed: {e}"))?;
        }
        let channel = ep
            .connect()
            .await
            .map_err(|e| anyhow!("cannot reach cadre at {endpoint}: {e} (is `cadre serve` running?)"))?;
        Ok((channel, bearer))
    }
}

/// One of the node's addresses: `flag`, else the one `pick` takes from
/// `<data_dir>/endpoints.json`, else `default`.
fn endpoint(flag: Option<String>, data_dir: &Path, pick: fn(Endpoints) -> String, default: &str) -> String {
    flag.or_else(|| Endpoints::read(data_dir).map(pick))
        .unwrap_or_else(|| default.into())
}

/// tonic's client TLS settings from the flags.
pub fn client_tls(t: &ClientTls) -> Result<ClientTlsConfig> {
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    let mut tls = ClientTlsConfig::new();
    if let Some(ca) = &t.ca_cert {
        tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
    }
    if let (Some(cert), Some(key)) = (&t.client_cert, &t.client_key) {
        tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    if let Some(d) = &t.tls_domain {
        tls = tls.domain_name(d.clone());
    }
    Ok(tls)
}
