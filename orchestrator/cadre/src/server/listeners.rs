//! What a node binds and writes before it serves: the data-dir lock, the two listeners, TLS
//! (one `[tls]` certificate for both), the URL peers reach it at, and `endpoints.json`.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use cadre_core::config::{Config, TlsConfig};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore};

/// The bound sockets and their TLS, which the servers take over ([`Bound::sockets`]).
pub(crate) struct Sockets {
    /// The gRPC listener.
    pub grpc: TcpListener,
    /// The HTTP listener.
    pub http: TcpListener,
    /// gRPC TLS, HTTP/2 offered by ALPN (None: plaintext).
    pub tls: Option<TlsAcceptor>,
    /// HTTP TLS, the same certificate and client CA (None: plaintext).
    pub http_tls: Option<TlsAcceptor>,
    /// The plain-HTTP probe listener (`server.probe_addr`), if configured.
    pub probe: Option<TcpListener>,
}

/// A node's listeners, bound (port 0 picks free ports), with its data dir locked.
pub(crate) struct Bound {
    /// The sockets, until the servers take them.
    pub sockets: Option<Sockets>,
    /// Where gRPC listens.
    pub grpc_addr: SocketAddr,
    /// Where HTTP listens.
    pub http_addr: SocketAddr,
    /// Where the probe listener listens, if configured.
    pub probe_addr: Option<SocketAddr>,
    /// `https` with TLS, else `http`.
    pub scheme: &'static str,
    /// The gRPC URL peers use to reach this process.
    pub url: String,
    /// The data dir's lock, held for the life of the process.
    pub lock: File,
}

impl Bound {
    /// Locks the data dir and binds both listeners.
    pub async fn bind(config: &Config) -> anyhow::Result<Bound> {
        let lock = lock_data_dir(&config.node.data_dir)?;
        let grpc = TcpListener::bind(&config.server.grpc_addr)
            .await
            .with_context(|| format!("cannot listen on server.grpc_addr {}", config.server.grpc_addr))?;
        let http = TcpListener::bind(&config.server.http_addr)
            .await
            .with_context(|| format!("cannot listen on server.http_addr {}", config.server.http_addr))?;
        let (grpc_addr, http_addr) = (grpc.local_addr()?, http.local_addr()?);
        let tls = tls_acceptor(&config.tls, b"h2")?;
        let http_tls = tls_acceptor(&config.tls, b"http/1.1")?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = advertised_url(config, grpc_addr, scheme);
        let probe = match config.server.probe_addr.as_str() {
            "" => None,
            addr => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on server.probe_addr {addr}"))?,
            ),
        };
        let probe_addr = probe.as_ref().map(TcpListener::local_addr).transpose()?;
        Ok(Bound {
            sockets: Some(Sockets {
                grpc,
                http,
                tls,
                http_tls,
                probe,
            }),
            grpc_addr,
            http_addr,
            probe_addr,
            scheme,
            url,
            lock,
        })
    }
}

/// What `endpoints.json` holds.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
pub struct Endpoints {
    /// gRPC endpoint URL, e.g. `http://127.0.0.1:50051` (`https://` with TLS).
    pub grpc: String,
    /// HTTP base URL (`https://` with TLS).
    pub http: String,
    /// The serving process.
    pub pid: u32,
    /// The plain-HTTP probe listener's base URL (`server.probe_addr`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<String>,
}

impl Endpoints {
    /// Reads `<data_dir>/endpoints.json`, if a node wrote one.
    pub fn read(data_dir: &Path) -> Option<Endpoints> {
        let text = std::fs::read_to_string(data_dir.join("endpoints.json")).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// Takes the data directory's lock so two nodes never share one store.
fn lock_data_dir(dir: &Path) -> anyhow::Result<File> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create data dir {}", dir.display()))?;
    lock_file(&dir.join("lock"), &format!("data dir {}", dir.display()))
}

/// Takes an exclusive lock on `path` (created if missing) for the life of the process.
fn lock_file(path: &Path, what: &str) -> anyhow::Result<File> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    file.try_lock().map_err(|_| {
        anyhow::anyhow!(
            "{what} is in use by another cadre process (lock {})",
            path.display()
        )
    })?;
    Ok(file)
}

/// A `store.url` outside the data dir gets a lock of its own beside the database file, so two
/// nodes never write one SQLite file (the store keeps its view of unfinished tasks in memory).
pub(crate) fn lock_store_url(url: &str) -> anyhow::Result<Option<File>> {
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return Ok(None);
    };
    let path = rest
        .trim_start_matches("//")
        .split('?')
        .next()
        .unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(None);
    }
    let lock = PathBuf::from(format!("{path}.lock"));
    lock_file(&lock, &format!("store {path}")).map(Some)
}

/// The gRPC URL peers use to reach this process.
fn advertised_url(config: &Config, bound: SocketAddr, scheme: &str) -> String {
    if !config.node.advertise_addr.is_empty() {
        return format!("{scheme}://{}", config.node.advertise_addr);
    }
    let host = if bound.ip().is_unspecified() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        bound.ip()
    };
    format!("{scheme}://{}", SocketAddr::new(host, bound.port()))
}

/// Writes `<data_dir>/endpoints.json` (write then rename, so a reader never sees half a file).
pub(crate) fn write_endpoints(config: &Config, bound: &Bound) -> anyhow::Result<PathBuf> {
    let scheme = bound.scheme;
    let endpoints = Endpoints {
        grpc: format!("{scheme}://{}", bound.grpc_addr),
        http: format!("{scheme}://{}", bound.http_addr),
        pid: std::process::id(),
        probe: bound.probe_addr.map(|p| format!("http://{p}")),
    };
    let endpoints_file = config.node.data_dir.join("endpoints.json");
    let tmp = endpoints_file.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(&endpoints)?)?;
    std::fs::rename(&tmp, &endpoints_file)?;
    Ok(endpoints_file)
}

/// Reads the TLS files into a listener's rustls acceptor (None when TLS is off): one
/// certificate for both listeners, client certificates required and verified against
/// `client_ca_file` when it is set, `alpn` (`h2` for gRPC, `http/1.1` for HTTP) offered by ALPN.
fn tls_acceptor(cfg: &TlsConfig, alpn: &[u8]) -> anyhow::Result<Option<TlsAcceptor>> {
    if !cfg.enabled() {
        return Ok(None);
    }
    let read =
        |what: &str, path: &str| std::fs::read(path).with_context(|| format!("cannot read {what} {path}"));
    let certs = |what: &str, path: &str| -> anyhow::Result<Vec<CertificateDer<'static>>> {
        let certs = CertificateDer::pem_slice_iter(&read(what, path)?)
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("{what} {path}: not a PEM certificate"))?;
        anyhow::ensure!(!certs.is_empty(), "{what} {path}: no certificate in it");
        Ok(certs)
    };
    let chain = certs("tls.cert_file", &cfg.cert_file)?;
    let key = PrivateKeyDer::from_pem_slice(&read("tls.key_file", &cfg.key_file)?)
        .with_context(|| format!("tls.key_file {}: not a PEM private key", cfg.key_file))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = if cfg.client_ca_file.is_empty() {
        builder.with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(certs("tls.client_ca_file", &cfg.client_ca_file)?);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
            .build()
            .with_context(|| format!("tls.client_ca_file {}", cfg.client_ca_file))?;
        builder.with_client_cert_verifier(verifier)
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .context("tls.cert_file and tls.key_file do not make a usable identity")?;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}
