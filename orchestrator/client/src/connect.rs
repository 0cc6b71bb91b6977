//! Reaching a node: [`ClientBuilder`] takes the endpoint, the credential, TLS (and mTLS)
//! settings, timeouts and the retry policy; [`Client`] holds the connection (one HTTP/2
//! channel, cheap to clone, reconnecting on its own) and the [`Bearer`] interceptor that puts
//! the credential and trace context on every call.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use cadre_proto::v1::schedule_service_client::ScheduleServiceClient;
use cadre_proto::v1::{
    admin_service_client::AdminServiceClient, task_service_client::TaskServiceClient,
    workflow_service_client::WorkflowServiceClient,
};
use tonic::metadata::{Ascii, MetadataMap, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::error::{Error, Result};
use crate::retry::Retry;

/// The W3C trace-context header.
const TRACEPARENT: &str = "traceparent";

/// A channel whose calls carry the credential.
pub(crate) type Authed = InterceptedService<Channel, Bearer>;

/// Adds `authorization: Bearer <credential>` to every call, then lets a propagator (e.g. the
/// OpenTelemetry one) add the current trace context, and else sends a fixed `traceparent`
/// (e.g. from the `TRACEPARENT` environment variable) so the node's spans join the caller's
/// trace.
#[derive(Clone, Default)]
pub struct Bearer {
    authorization: Option<MetadataValue<Ascii>>,
    traceparent: Option<MetadataValue<Ascii>>,
    propagate: Option<fn(&mut MetadataMap)>,
}

impl Bearer {
    /// A bearer for `credential` (a JWT or an API key); None sends no header.
    pub fn new(credential: Option<&str>) -> Result<Self> {
        let authorization = credential
            .map(|c| {
                format!("Bearer {}", c.trim())
                    .parse()
                    .map_err(|_| Error::Config("the credential has characters a header cannot carry".into()))
            })
            .transpose()?;
        Ok(Bearer {
            authorization,
            ..Bearer::default()
        })
    }

    /// Sends `traceparent` (a W3C trace context, e.g. the `TRACEPARENT` environment variable)
    /// on calls the propagator gave none; a malformed one is ignored.
    pub fn with_traceparent(mut self, traceparent: Option<&str>) -> Self {
        self.traceparent = traceparent
            .map(str::trim)
            .filter(|tp| is_traceparent(tp))
            .and_then(|tp| tp.parse().ok());
        self
    }

    /// Calls `propagate` on every request's metadata, e.g. to inject the current span's
    /// trace context.
    pub fn with_propagator(mut self, propagate: fn(&mut MetadataMap)) -> Self {
        self.propagate = Some(propagate);
        self
    }

    /// Reads the credential a node wrote to `<data_dir>/credentials` for local use.
    pub fn from_data_dir(data_dir: &Path) -> Option<String> {
        std::fs::read_to_string(data_dir.join(crate::CREDENTIALS_FILE))
            .ok()
            .map(|s| s.trim().to_string())
    }
}

/// Whether `tp` is a W3C `traceparent`: `VV-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`
/// in lower case, ids not all zero, version not `ff` (a later version may append fields).
fn is_traceparent(tp: &str) -> bool {
    let hex =
        |s: &str, len: usize| s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
    let mut parts = tp.splitn(5, '-');
    let (Some(version), Some(trace), Some(parent), Some(flags)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let rest_ok = match parts.next() {
        None => true,
        Some(_) => version != "00",
    };
    hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && nonzero(trace)
        && hex(parent, 16)
        && nonzero(parent)
        && hex(flags, 2)
        && rest_ok
}

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut req: tonic::Request<()>,
    ) -> std::result::Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.authorization {
            req.metadata_mut().insert("authorization", v.clone());
        }
        if let Some(propagate) = self.propagate {
            propagate(req.metadata_mut());
        }
        if let Some(tp) = &self.traceparent
            && !req.metadata().contains_key(TRACEPARENT)
        {
            req.metadata_mut().insert(TRACEPARENT, tp.clone());
        }
        Ok(req)
    }
}

/// TLS settings for `https://` endpoints: the CA that signed the node's certificate (else the
/// system roots are not used: give the CA), a client certificate and key for mutual TLS, and
/// the name to check in the node's certificate.
#[derive(Clone, Debug, Default)]
pub struct Tls {
    /// CA certificate (PEM).
    pub ca_cert_pem: Option<Vec<u8>>,
    /// Client certificate and private key (PEM), for nodes that require mTLS.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// The name to check in the node's certificate (default: the endpoint's host).
    pub domain: Option<String>,
}

impl Tls {
    /// TLS settings read from PEM files.
    pub fn from_files(
        ca_cert: Option<&Path>,
        client: Option<(&Path, &Path)>,
        domain: Option<String>,
    ) -> Result<Tls> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| Error::Config(format!("cannot read {}: {e}", p.display())))
        };
        Ok(Tls {
            ca_cert_pem: ca_cert.map(read).transpose()?,
            identity: client
                .map(|(c, k)| Ok::<_, Error>((read(c)?, read(k)?)))
                .transpose()?,
            domain,
        })
    }

    fn config(&self) -> ClientTlsConfig {
        let mut tls = ClientTlsConfig::new();
        if let Some(ca) = &self.ca_cert_pem {
            tls = tls.ca_certificate(Certificate::from_pem(ca));
        }
        if let Some((cert, key)) = &self.identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        if let Some(d) = &self.domain {
            tls = tls.domain_name(d.clone());
        }
        tls
    }
}

/// Settings of a [`Client`] before it connects.
#[derive(Clone)]
pub struct ClientBuilder {
    endpoint: String,
    credential: Option<String>,
    tls: Tls,
    connect_timeout: Duration,
    bearer: Bearer,
    retry: Retry,
}

impl ClientBuilder {
    /// Settings for the node at `endpoint` (`http://host:port`, or `https://` for TLS).
    pub fn new(endpoint: impl Into<String>) -> Self {
        ClientBuilder {
            endpoint: endpoint.into(),
            credential: None,
            tls: Tls::default(),
            connect_timeout: Duration::from_secs(5),
            bearer: Bearer::default(),
            retry: Retry::default(),
        }
    }

    /// The credential (a JWT or an API key) every call carries; None sends none.
    pub fn token(mut self, credential: Option<String>) -> Self {
        self.credential = credential;
        self
    }

    /// TLS settings for an `https://` endpoint.
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = tls;
        self
    }

    /// How long connecting may take (default 5 s).
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// A fixed W3C `traceparent` for calls made outside any propagated context.
    pub fn traceparent(mut self, tp: Option<&str>) -> Self {
        self.bearer = self.bearer.with_traceparent(tp);
        self
    }

    /// A function that adds the current trace context to each call's metadata.
    pub fn propagator(mut self, propagate: fn(&mut MetadataMap)) -> Self {
        self.bearer = self.bearer.with_propagator(propagate);
        self
    }

    /// How UNAVAILABLE is retried (default [`Retry::default`]).
    pub fn retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    fn endpoint(&self) -> Result<Endpoint> {
        let invalid = |message: String| Error::InvalidEndpoint {
            endpoint: self.endpoint.clone(),
            message,
        };
        let mut ep = Channel::from_shared(self.endpoint.clone())
            .map_err(|e| invalid(e.to_string()))?
            .connect_timeout(self.connect_timeout);
        if self.endpoint.starts_with("https://") {
            ep = ep
                .tls_config(self.tls.config())
                .map_err(|e| invalid(format!("TLS setup failed: {e}")))?;
        }
        Ok(ep)
    }

    fn bearer(&self) -> Result<Bearer> {
        let fresh = Bearer::new(self.credential.as_deref())?;
        Ok(Bearer {
            authorization: fresh.authorization,
            ..self.bearer.clone()
        })
    }

    /// Connects now: an error if the node cannot be reached within the connect timeout.
    pub async fn connect(self) -> Result<Client> {
        let channel = self.endpoint()?.connect().await.map_err(|e| Error::Connect {
            endpoint: self.endpoint.clone(),
            message: transport_message(&e),
        })?;
        Ok(Client::new(channel, self.bearer()?, self.retry))
    }

    /// A client that connects on its first call (and reconnects as needed); an unreachable
    /// node shows as UNAVAILABLE on calls, which are retried.
    pub fn connect_lazy(self) -> Result<Client> {
        let channel = self.endpoint()?.connect_lazy();
        Ok(Client::new(channel, self.bearer()?, self.retry))
    }
}

/// The transport error and its causes on one line.
fn transport_message(e: &tonic::transport::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.contains(&text) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// A connection to one node with the caller's credential: every call of the task, workflow
/// and admin services. Clones share the connection.
#[derive(Clone)]
pub struct Client {
    pub(crate) tasks: TaskServiceClient<Authed>,
    pub(crate) workflows: WorkflowServiceClient<Authed>,
    pub(crate) schedules: ScheduleServiceClient<Authed>,
    pub(crate) admin: AdminServiceClient<Authed>,
    pub(crate) retry: Retry,
}

impl Client {
    /// Settings for the node at `endpoint`.
    pub fn builder(endpoint: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(endpoint)
    }

    /// Connects to `endpoint` with `credential` and the default settings.
    pub async fn connect(endpoint: impl Into<String>, credential: Option<String>) -> Result<Client> {
        ClientBuilder::new(endpoint).token(credential).connect().await
    }

    fn new(channel: Channel, bearer: Bearer, retry: Retry) -> Client {
        Client {
            tasks: TaskServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            workflows: WorkflowServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            schedules: ScheduleServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            admin: AdminServiceClient::with_interceptor(channel, bearer),
            retry,
        }
    }

    /// One call through `client`, retried on UNAVAILABLE by the client's policy: for calls
    /// that are safe to repeat (reads, and writes that converge: cancel, scale, register).
    pub(crate) async fn call<C, Req, T, F, Fut>(&self, client: &C, req: Req, f: F) -> Result<T>
    where
        C: Clone,
        Req: Clone,
        F: Fn(C, Req) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        self.retry
            .run(|| {
                let answer = f(client.clone(), req.clone());
                async move { Ok(answer.await?.into_inner()) }
            })
            .await
    }

    /// One call through `client`, not retried: for writes that would happen twice (signals,
    /// new API keys).
    pub(crate) async fn call_once<C, Req, T, F, Fut>(&self, client: &C, req: Req, f: F) -> Result<T>
    where
        C: Clone,
        F: FnOnce(C, Req) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        Ok(f(client.clone(), req).await?.into_inner())
    }

    /// The retry policy calls use.
    pub fn retry_policy(&self) -> Retry {
        self.retry
    }

    /// The generated task-service client with the credential attached, for calls this crate
    /// does not wrap.
    pub fn raw_tasks(&self) -> TaskServiceClient<InterceptedService<Channel, Bearer>> {
        self.tasks.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::service::Interceptor;

    #[test]
    fn bearer_sets_authorization_and_a_fixed_traceparent() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut b = Bearer::new(Some(" tok ")).unwrap().with_traceparent(Some(tp));
        let req = b.call(tonic::Request::new(())).unwrap();
        assert_eq!(req.metadata().get("authorization").unwrap(), "Bearer tok");
        assert_eq!(req.metadata().get(TRACEPARENT).unwrap(), tp);
        let mut none = Bearer::new(None).unwrap();
        let req = none.call(tonic::Request::new(())).unwrap();
        assert!(req.metadata().get("authorization").is_none());
    }

    #[test]
    fn only_well_formed_traceparents_are_sent() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(is_traceparent(good));
        assert!(is_traceparent(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-later"
        ));
        for bad in [
            "",
            "not-a-traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert!(!is_traceparent(bad), "{bad}");
        }
        let mut b = Bearer::default().with_traceparent(Some("nope"));
        assert!(
            b.call(tonic::Request::new(()))
                .unwrap()
                .metadata()
                .get(TRACEPARENT)
                .is_none()
        );
    }

    #[test]
    fn a_propagated_traceparent_wins_over_the_fixed_one() {
        fn propagate(m: &mut MetadataMap) {
            m.insert(
                TRACEPARENT,
                "00-11111111111111111111111111111111-2222222222222222-01"
                    .parse()
                    .unwrap(),
            );
        }
        let mut b = Bearer::new(None)
            .unwrap()
            .with_traceparent(Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"))
            .with_propagator(propagate);
        let req = b.call(tonic::Request::new(())).unwrap();
        assert_eq!(
            req.metadata().get(TRACEPARENT).unwrap(),
            "00-11111111111111111111111111111111-2222222222222222-01"
        );
    }

    #[test]
    fn a_credential_a_header_cannot_carry_is_a_config_error() {
        assert!(matches!(Bearer::new(Some("bad\ntoken")), Err(Error::Config(_))));
    }

    #[tokio::test]
    async fn bad_endpoints_and_unreachable_nodes_are_told_apart() {
        let e = Client::connect("not a url", None).await.err().unwrap();
        assert!(matches!(e, Error::InvalidEndpoint { .. }), "{e}");
        // A port nothing listens on: bind one, then drop it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = Client::connect(format!("http://127.0.0.1:{port}"), None)
            .await
            .err()
            .unwrap();
        assert!(matches!(e, Error::Connect { .. }) && e.is_retryable(), "{e}");
    }
}
