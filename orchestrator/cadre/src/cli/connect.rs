//! How client commands reach the node; no command of its own. It finds the endpoint
//! (`--endpoint` / `CADRE_ENDPOINT`, else `<data-dir>/endpoints.json` written by `cadre serve`,
//! else the default), the credential (`--token` / `CADRE_TOKEN`, else `<data-dir>/credentials`),
//! sets up TLS for `https://` endpoints and connects a [`cadre_client::Client`] whose calls
//! carry the credential and the caller's trace context: every command talks to the node
//! through that client crate. `cadre mcp` uses the same
//! lookups for the node's HTTP address.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use cadre_client::{Bearer, Client, Tls};

use super::args::ClientTls;
use crate::server::Endpoints;

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

    /// A client of the node: connected (within 5 s) with the credential, TLS for `https://`
    /// endpoints and the caller's trace context (the current span's, else `TRACEPARENT`).
    pub(super) async fn client(self) -> Result<Client> {
        let endpoint = self.grpc_endpoint();
        let tls = if endpoint.starts_with("https://") {
            client_tls(&self.tls)?
        } else {
            Tls::default()
        };
        // A caller's trace continues through this command (W3C trace context, as set by
        // e.g. `otel-cli` or a CI system); the client ignores a malformed one.
        let traceparent = std::env::var("TRACEPARENT").ok();
        Client::builder(endpoint)
            .token(self.credential())
            .tls(tls)
            .traceparent(traceparent.as_deref())
            .propagator(cadre_trace::inject_metadata)
            .connect()
            .await
            .map_err(|e| match e {
                cadre_client::Error::Connect { .. } => anyhow!("{e} (is `cadre serve` running?)"),
                e => e.into(),
            })
    }
}

/// One of the node's addresses: `flag`, else the one `pick` takes from
/// `<data_dir>/endpoints.json`, else `default`.
fn endpoint(flag: Option<String>, data_dir: &Path, pick: fn(Endpoints) -> String, default: &str) -> String {
    flag.or_else(|| Endpoints::read(data_dir).map(pick))
        .unwrap_or_else(|| default.into())
}

/// The client's TLS settings from the flags.
pub fn client_tls(t: &ClientTls) -> Result<Tls> {
    let client = t.client_cert.as_deref().zip(t.client_key.as_deref());
    Ok(Tls::from_files(
        t.ca_cert.as_deref(),
        client,
        t.tls_domain.clone(),
    )?)
}
