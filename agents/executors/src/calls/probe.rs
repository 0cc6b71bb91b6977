//! Health probes (`probe`): is an HTTP, TCP or NATS endpoint up, and how long did it take to
//! answer?
//!
//! A probe that ran is a successful task, whatever it found: an endpoint that refuses the
//! connection, answers 503 or does not answer in time comes back as `"healthy": false` with the
//! reason in `detail`. Only params that cannot be probed (a bad or disallowed target) fail the
//! task.
//!
//! Targets are checked against an allow-list before anything is resolved or connected
//! ([`HealthConfig::allow`]), so the probe cannot be pointed at arbitrary hosts (SSRF). The
//! default list is loopback only. HTTP redirects are not followed (a redirect could leave the
//! allow-list) and no proxy from the environment is used.

use std::time::Duration;

use async_trait::async_trait;
use cadre_agents::ExecutorRegistry;
use cadre_agents::executor::{ExecContext, ExecError, Executor, decode_params};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use crate::support::params_schema as schema;
use crate::support::words::clip;

/// Longest line read from a NATS server (its INFO line is usually well under 2 KiB).
const MAX_NATS_LINE: u64 = 16 * 1024;
/// Longest `detail` returned: server-supplied text is cut to this many characters.
const MAX_DETAIL_CHARS: usize = 300;
/// Upper bound for `max_timeout_ms` in the config: a probe holds a worker at most this long.
const TIMEOUT_CEILING_MS: u64 = 60_000;

/// Config section for health probes (`[executors.health]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Whether the `probe` executor is registered at all.
    pub enabled: bool,
    /// Hosts a probe may target: `host` (any port), `host:port` (`[v6]:port` for IPv6) or
    /// `*.domain` (any subdomain of domain, any port). Matched against the host as written in
    /// the target (IPv4 in http(s) URLs is normalised, so `0x7f.1` is `127.0.0.1`), before it
    /// is resolved. Default: loopback only (`127.0.0.1`, `::1`, `localhost`).
    pub allow: Vec<String>,
    /// Allow every target, ignoring `allow`. This includes private networks and cloud
    /// metadata addresses: prefer listing hosts.
    pub allow_any: bool,
    /// Timeout of a probe whose params give none, in milliseconds.
    pub default_timeout_ms: u64,
    /// Largest `timeout_ms` a task may ask for, in milliseconds (at most 60000).
    pub max_timeout_ms: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            enabled: true,
            allow: vec!["127.0.0.1".into(), "::1".into(), "localhost".into()],
            allow_any: false,
            default_timeout_ms: 5_000,
            max_timeout_ms: 30_000,
        }
    }
}

impl HealthConfig {
    /// Problems with this section, each prefixed with its path under `executors`.
    pub fn validate(&self) -> Vec<String> {
        let mut errs = Vec::new();
        for (i, entry) in self.allow.iter().enumerate() {
            if let Err(e) = AllowEntry::parse(entry) {
                errs.push(format!("health.allow[{i}]: {entry:?}: {e}"));
            }
        }
        if !(1..=TIMEOUT_CEILING_MS).contains(&self.max_timeout_ms) {
            errs.push(format!(
                "health.max_timeout_ms: must be 1-{TIMEOUT_CEILING_MS}, not {}",
                self.max_timeout_ms
            ));
        }
        if self.default_timeout_ms == 0 || self.default_timeout_ms > self.max_timeout_ms {
            errs.push(format!(
                "health.default_timeout_ms: must be 1-{} (max_timeout_ms), not {}",
                self.max_timeout_ms, self.default_timeout_ms
            ));
        }
        errs
    }
}

/// Registers `probe` (unless disabled), configured by `config`.
pub(crate) fn register(r: &mut ExecutorRegistry, config: &HealthConfig) {
    if !config.enabled {
        return;
    }
    match Probe::new(config) {
        Ok(p) => r.register("probe", std::sync::Arc::new(p)),
        Err(e) => tracing::error!("executor probe not registered: {e}"),
    }
}

/// One parsed entry of [`HealthConfig::allow`].
#[derive(Clone, Debug, PartialEq)]
enum AllowEntry {
    /// This host, any port.
    Host(String),
    /// This host and port.
    HostPort(String, u16),
    /// Any subdomain of this domain (stored with its leading dot).
    Suffix(String),
}

impl AllowEntry {
    fn parse(entry: &str) -> Result<Self, String> {
        let entry = entry.trim().to_ascii_lowercase();
        if let Some(domain) = entry.strip_prefix("*.") {
            check_host(domain)?;
            return Ok(AllowEntry::Suffix(format!(".{domain}")));
        }
        if check_host(&entry).is_ok() {
            return Ok(AllowEntry::Host(normalise_host(&entry)));
        }
        if !entry.contains(':') {
            return Err("not a host name, IP address, host:port or *.domain".into());
        }
        let (host, port) = split_host_port(&entry)?;
        Ok(AllowEntry::HostPort(host, port))
    }

    fn allows(&self, host: &str, port: u16) -> bool {
        match self {
            AllowEntry::Host(h) => h == host,
            AllowEntry::HostPort(h, p) => h == host && *p == port,
            AllowEntry::Suffix(s) => host.ends_with(s.as_str()),
        }
    }
}

/// A host as compared with the allow-list: lower case, IPv6 without brackets.
fn normalise_host(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

/// Whether `host` is an IP address or a plausible DNS name (brackets allowed around IPv6).
fn check_host(host: &str) -> Result<(), String> {
    let bare = normalise_host(host);
    if bare.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let name_ok = !bare.is_empty()
        && bare.len() <= 253
        && !host.contains(['[', ']'])
        && bare.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if name_ok {
        Ok(())
    } else {
        Err("not a host name or IP address".into())
    }
}

/// `host:port` or `[v6]:port`, the host normalised.
fn split_host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest
            .split_once("]:")
            .ok_or("an IPv6 address needs the form [addr]:port")?;
        (h, p)
    } else {
        s.rsplit_once(':').ok_or("needs the form host:port")?
    };
    check_host(host)?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("port {port:?} is not a number 1-65535"))?;
    if port == 0 {
        return Err("port 0 cannot be probed".into());
    }
    Ok((normalise_host(host), port))
}

/// What kind of endpoint a target names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeKind {
    /// `http://` or `https://`: a GET whose status is checked.
    Http,
    /// `tcp://host:port`: the connection is opened and closed.
    Tcp,
    /// `nats://host:port`: the NATS handshake (INFO, CONNECT, PING/PONG).
    Nats,
}

/// A parsed, allowed target.
struct Target {
    kind: ProbeKind,
    /// Host as compared with the allow-list.
    host: String,
    port: u16,
    /// The URL to GET (http only).
    url: Option<reqwest::Url>,
}

/// Parses `target`; every problem is [`ExecError::InvalidParams`].
fn parse_target(target: &str) -> Result<Target, ExecError> {
    let bad = |why: &str| ExecError::InvalidParams(format!("target {target:?}: {why}"));
    let (scheme, rest) = target
        .split_once("://")
        .ok_or_else(|| bad("needs a scheme: http://, https://, tcp:// or nats://"))?;
    match scheme.to_ascii_lowercase().as_str() {
        "http" | "https" => {
            let url = reqwest::Url::parse(target).map_err(|e| bad(&e.to_string()))?;
            if !url.username().is_empty() || url.password().is_some() {
                return Err(bad("credentials in the URL are not supported"));
            }
            let host = url.host_str().ok_or_else(|| bad("has no host"))?;
            let port = url.port_or_known_default().ok_or_else(|| bad("has no port"))?;
            Ok(Target {
                kind: ProbeKind::Http,
                host: normalise_host(host),
                port,
                url: Some(url),
            })
        }
        s @ ("tcp" | "nats") => {
            let rest = rest.strip_suffix('/').unwrap_or(rest);
            if rest.contains(['/', '?', '#', '@']) {
                return Err(bad("must be scheme://host:port with nothing else"));
            }
            let (host, port) = if s == "nats" && !rest.contains(':') {
                (rest.to_ascii_lowercase(), 4222)
            } else {
                split_host_port(&rest.to_ascii_lowercase()).map_err(|e| bad(&e))?
            };
            check_host(&host).map_err(|e| bad(&e))?;
            let kind = if s == "tcp" {
                ProbeKind::Tcp
            } else {
                ProbeKind::Nats
            };
            Ok(Target {
                kind,
                host,
                port,
                url: None,
            })
        }
        other => Err(bad(&format!(
            "scheme {other:?} is not supported (http, https, tcp, nats)"
        ))),
    }
}

/// `system.health.probe` (worker kind health): `{"target": "http://...", "timeout_ms": 2000,
/// "expect_status": 204}` -> [`ProbeResult`].
pub struct Probe {
    allow: Vec<AllowEntry>,
    allow_any: bool,
    default_timeout_ms: u64,
    max_timeout_ms: u64,
    http: reqwest::Client,
}

impl Probe {
    /// A prober with the given settings (assumed valid; entries of `allow` that do not parse
    /// are skipped, so they allow nothing).
    pub fn new(config: &HealthConfig) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| format!("building the HTTP client failed: {e}"))?;
        Ok(Probe {
            allow: config
                .allow
                .iter()
                .filter_map(|e| AllowEntry::parse(e).ok())
                .collect(),
            allow_any: config.allow_any,
            default_timeout_ms: config.default_timeout_ms.max(1),
            max_timeout_ms: config.max_timeout_ms.max(1),
            http,
        })
    }

    fn allowed(&self, t: &Target) -> bool {
        self.allow_any || self.allow.iter().any(|a| a.allows(&t.host, t.port))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeParams {
    target: String,
    timeout_ms: Option<u64>,
    expect_status: Option<u16>,
}

/// What [`Probe`] returns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// The target, as given.
    pub target: String,
    /// What was probed.
    pub kind: ProbeKind,
    /// Whether the endpoint answered as expected in time.
    pub healthy: bool,
    /// Milliseconds until the answer (or the failure).
    pub latency_ms: u64,
    /// `HTTP 200`, `connected`, `NATS server 2.10.7 (JetStream on)`, or what went wrong.
    pub detail: String,
}

#[async_trait]
impl Executor for Probe {
    fn params_schema(&self) -> Option<Value> {
        Some(schema::object(
            &["target"],
            &[
                (
                    "target",
                    schema::text("http(s)://host[:port]/path, tcp://host:port or nats://host[:port]"),
                ),
                (
                    "timeout_ms",
                    schema::integer(
                        1,
                        self.max_timeout_ms as i64,
                        self.default_timeout_ms as i64,
                        "give up (unhealthy) after this many milliseconds",
                    ),
                ),
                (
                    "expect_status",
                    schema::int_range(
                        100,
                        599,
                        "http only: the status that means healthy (default: any 2xx)",
                    ),
                ),
            ],
        ))
    }

    fn result_schema(&self) -> Option<Value> {
        Some(schema::record(&[
            ("target", schema::text("the target, as given")),
            (
                "kind",
                schema::one_of(&["http", "tcp", "nats"], "what was probed"),
            ),
            (
                "healthy",
                schema::boolean("whether it answered as expected in time"),
            ),
            (
                "latency_ms",
                schema::count("milliseconds until the answer or the failure"),
            ),
            ("detail", schema::string("what it answered, or what went wrong")),
        ]))
    }

    async fn execute(&self, ctx: ExecContext, params: Value) -> Result<Value, ExecError> {
        let p: ProbeParams = decode_params(&params)?;
        let timeout_ms = p.timeout_ms.unwrap_or(self.default_timeout_ms);
        if !(1..=self.max_timeout_ms).contains(&timeout_ms) {
            return Err(ExecError::InvalidParams(format!(
                "timeout_ms must be 1-{}",
                self.max_timeout_ms
            )));
        }
        let target = parse_target(&p.target)?;
        if let Some(s) = p.expect_status {
            if target.kind != ProbeKind::Http {
                return Err(ExecError::InvalidParams(
                    "expect_status applies to http(s) targets only".into(),
                ));
            }
            if !(100..=599).contains(&s) {
                return Err(ExecError::InvalidParams("expect_status must be 100-599".into()));
            }
        }
        if !self.allowed(&target) {
            return Err(ExecError::InvalidParams(format!(
                "target host {} port {} is not allowed by executors.health.allow",
                target.host, target.port
            )));
        }
        let start = Instant::now();
        let outcome = tokio::select! {
            o = self.probe(&target, p.expect_status, timeout_ms) => o,
            _ = ctx.cancel.cancelled() => return Err(ExecError::Cancelled),
        };
        let (healthy, detail) = match outcome {
            Ok(detail) => (true, detail),
            Err(detail) => (false, detail),
        };
        let result = ProbeResult {
            target: p.target,
            kind: target.kind,
            healthy,
            latency_ms: start.elapsed().as_millis() as u64,
            detail: clip(&detail, MAX_DETAIL_CHARS),
        };
        ctx.progress(1.0, format!("{}: {}", result.target, result.detail));
        serde_json::to_value(result).map_err(|e| ExecError::Fatal(e.to_string()))
    }
}

impl Probe {
    /// Runs the probe for at most `timeout_ms`: `Ok(detail)` when healthy, `Err(detail)` when
    /// not.
    async fn probe(&self, t: &Target, expect_status: Option<u16>, timeout_ms: u64) -> Result<String, String> {
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        let timed_out = |what: &str| format!("timed out after {timeout_ms} ms {what}");
        match t.kind {
            ProbeKind::Http => {
                let url = t.url.clone().ok_or("no URL")?;
                let response = timeout_at(deadline, self.http.get(url).send())
                    .await
                    .map_err(|_| timed_out("waiting for the HTTP response"))?
                    .map_err(|e| error_chain(&e))?;
                let status = response.status().as_u16();
                let detail = format!("HTTP {status}");
                let healthy = match expect_status {
                    Some(want) => status == want,
                    None => (200..300).contains(&status),
                };
                if healthy { Ok(detail) } else { Err(detail) }
            }
            ProbeKind::Tcp => {
                timeout_at(deadline, connect(t))
                    .await
                    .map_err(|_| timed_out("connecting"))??;
                Ok("connected".into())
            }
            ProbeKind::Nats => {
                let stream = timeout_at(deadline, connect(t))
                    .await
                    .map_err(|_| timed_out("connecting"))??;
                nats_handshake(stream, deadline).await
            }
        }
    }
}

/// Opens a TCP connection to the target.
async fn connect(t: &Target) -> Result<TcpStream, String> {
    TcpStream::connect((t.host.as_str(), t.port))
        .await
        .map_err(|e| format!("connecting to {}:{} failed: {e}", t.host, t.port))
}

/// The NATS client handshake: read INFO, send CONNECT and PING, expect PONG. `Ok` names the
/// server version and whether JetStream is on.
async fn nats_handshake(stream: TcpStream, deadline: Instant) -> Result<String, String> {
    let mut stream = BufReader::new(stream);
    let first = timeout_at(deadline, read_line(&mut stream))
        .await
        .map_err(|_| "timed out waiting for the NATS INFO line (not a NATS server?)".to_string())??;
    let info = first
        .strip_prefix("INFO ")
        .ok_or_else(|| format!("not a NATS server: expected INFO, got {}", quoted(&first)))?;
    let info: Value =
        serde_json::from_str(info).map_err(|e| format!("not a NATS server: INFO is not JSON ({e})"))?;
    let version = info["version"].as_str().unwrap_or("(unknown version)");
    let jetstream = if info["jetstream"].as_bool().unwrap_or(false) {
        "on"
    } else {
        "off"
    };
    let server = format!("NATS server {version} (JetStream {jetstream})");
    timeout_at(
        deadline,
        stream
            .get_mut()
            .write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\nPING\r\n"),
    )
    .await
    .map_err(|_| format!("{server}: timed out sending CONNECT"))?
    .map_err(|e| format!("{server}: sending CONNECT failed: {e}"))?;
    // The server may send its own PING or +OK lines first; a handful is plenty.
    for _ in 0..8 {
        let line = timeout_at(deadline, read_line(&mut stream))
            .await
            .map_err(|_| format!("{server}: timed out waiting for PONG"))?
            .map_err(|e| format!("{server}: {e}"))?;
        match line.as_str() {
            "PONG" => return Ok(server),
            "+OK" | "PING" => continue,
            l if l.starts_with("INFO ") => continue,
            other => return Err(format!("{server}: {}", quoted(other))),
        }
    }
    Err(format!("{server}: no PONG"))
}

/// Reads one line (at most [`MAX_NATS_LINE`] bytes) without its line ending.
async fn read_line(stream: &mut BufReader<TcpStream>) -> Result<String, String> {
    let mut line = Vec::new();
    let n = (&mut *stream)
        .take(MAX_NATS_LINE)
        .read_until(b'\n', &mut line)
        .await
        .map_err(|e| format!("reading failed: {e}"))?;
    if n == 0 {
        return Err("the server closed the connection".into());
    }
    if line.last() != Some(&b'\n') {
        if n as u64 >= MAX_NATS_LINE {
            return Err(format!("a line longer than {MAX_NATS_LINE} bytes"));
        }
        return Err("the server closed the connection mid-line".into());
    }
    let text = String::from_utf8_lossy(&line);
    Ok(text.trim_end_matches(['\r', '\n']).to_string())
}

/// Server-supplied text for a detail: quoted, escaped and short.
fn quoted(s: &str) -> String {
    format!("{:?}", clip(s, 60))
}

/// An error and its sources, `: `-separated (reqwest's own message hides the cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let msg = s.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use cadre_agents::schema::validate;
    use serde_json::json;
    use tokio::net::TcpListener;

    use super::*;
    use crate::support::test_support::ctx;

    /// Runs `params` on a default prober; checks the result against the result schema.
    async fn run(params: Value) -> Result<ProbeResult, ExecError> {
        run_with(&HealthConfig::default(), params).await
    }

    async fn run_with(config: &HealthConfig, params: Value) -> Result<ProbeResult, ExecError> {
        let probe = Probe::new(config).unwrap();
        validate(&probe.params_schema().unwrap(), &params).unwrap_or_else(|e| panic!("{e}"));
        let v = probe.execute(ctx(), params).await?;
        validate(&probe.result_schema().unwrap(), &v).unwrap_or_else(|e| panic!("{v}: {e}"));
        Ok(serde_json::from_value(v).unwrap())
    }

    /// A listener on a free loopback port, and that port.
    async fn listener() -> (TcpListener, u16) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        (l, port)
    }

    /// A tiny HTTP server answering every request with `status`; returns its port.
    async fn http_server(status: u16) -> u16 {
        let (l, port) = listener().await;
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 65536 {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let reply =
                        format!("HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi");
                    let _ = s.write_all(reply.as_bytes()).await;
                });
            }
        });
        port
    }

    /// A server that accepts connections, sends `greeting` (if any) and then says nothing more.
    async fn quiet_server(greeting: &'static [u8]) -> u16 {
        let (l, port) = listener().await;
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut s, _)) = l.accept().await {
                let _ = s.write_all(greeting).await;
                held.push(s);
            }
        });
        port
    }

    #[tokio::test]
    async fn http_status_decides_health() {
        let ok = http_server(200).await;
        let r = run(json!({ "target": format!("http://127.0.0.1:{ok}/healthz") }))
            .await
            .unwrap();
        assert_eq!(
            (r.kind, r.healthy, r.detail.as_str()),
            (ProbeKind::Http, true, "HTTP 200")
        );

        let down = http_server(503).await;
        let target = format!("http://localhost:{down}/");
        let r = run(json!({ "target": target })).await.unwrap();
        assert_eq!((r.healthy, r.detail.as_str()), (false, "HTTP 503"));
        assert_eq!(r.target, target);
        // Unless 503 is what the caller expects (e.g. a node that must be drained).
        let r = run(json!({ "target": target, "expect_status": 503 }))
            .await
            .unwrap();
        assert!(r.healthy, "{r:?}");
        let r = run(json!({ "target": format!("http://127.0.0.1:{ok}/"), "expect_status": 204 }))
            .await
            .unwrap();
        assert_eq!((r.healthy, r.detail.as_str()), (false, "HTTP 200"));

        // Redirects are reported, not followed.
        let moved = http_server(302).await;
        let r = run(json!({ "target": format!("http://127.0.0.1:{moved}/") }))
            .await
            .unwrap();
        assert_eq!((r.healthy, r.detail.as_str()), (false, "HTTP 302"));
    }

    #[tokio::test]
    async fn a_silent_http_server_times_out_unhealthy() {
        let port = quiet_server(b"").await;
        let r = run(json!({ "target": format!("http://127.0.0.1:{port}/"), "timeout_ms": 200 }))
            .await
            .unwrap();
        assert!(!r.healthy);
        assert_eq!(r.detail, "timed out after 200 ms waiting for the HTTP response");
        assert!(r.latency_ms >= 200, "{r:?}");
    }

    #[tokio::test]
    async fn tcp_open_and_closed_ports() {
        let (l, open) = listener().await;
        let r = run(json!({ "target": format!("tcp://127.0.0.1:{open}") }))
            .await
            .unwrap();
        assert_eq!(
            (r.kind, r.healthy, r.detail.as_str()),
            (ProbeKind::Tcp, true, "connected")
        );
        drop(l);
        // The port was just freed: nothing listens there now.
        let r = run(json!({ "target": format!("tcp://127.0.0.1:{open}/") }))
            .await
            .unwrap();
        assert!(!r.healthy);
        assert!(
            r.detail
                .starts_with(&format!("connecting to 127.0.0.1:{open} failed:")),
            "{r:?}"
        );
        let r = run(json!({ "target": format!("http://127.0.0.1:{open}/") }))
            .await
            .unwrap();
        assert!(!r.healthy && r.detail.contains("onnect"), "{r:?}");
    }

    /// The NATS server this machine runs on 127.0.0.1:4222 (with JetStream).
    #[tokio::test]
    async fn a_real_nats_server_is_healthy() {
        let r = run(json!({ "target": "nats://127.0.0.1:4222" })).await.unwrap();
        assert_eq!(r.kind, ProbeKind::Nats);
        assert!(r.healthy, "{r:?}");
        assert!(r.detail.starts_with("NATS server 2."), "{r:?}");
        assert!(r.detail.ends_with("(JetStream on)"), "{r:?}");
        // The default port.
        let r = run(json!({ "target": "nats://localhost" })).await.unwrap();
        assert!(r.healthy, "{r:?}");
    }

    #[tokio::test]
    async fn things_that_are_not_nats_are_unhealthy() {
        let ssh = quiet_server(b"SSH-2.0-OpenSSH_9.6\r\n").await;
        let r = run(json!({ "target": format!("nats://127.0.0.1:{ssh}") }))
            .await
            .unwrap();
        assert!(!r.healthy);
        assert_eq!(
            r.detail,
            "not a NATS server: expected INFO, got \"SSH-2.0-OpenSSH_9.6\""
        );

        // An HTTP server waits for the client to speak first.
        let http = http_server(200).await;
        let r = run(json!({ "target": format!("nats://127.0.0.1:{http}"), "timeout_ms": 200 }))
            .await
            .unwrap();
        assert!(!r.healthy);
        assert_eq!(
            r.detail,
            "timed out waiting for the NATS INFO line (not a NATS server?)"
        );

        // INFO that is not JSON, and a server that refuses CONNECT.
        let bad_info = quiet_server(b"INFO nope\r\n").await;
        let r = run(json!({ "target": format!("nats://127.0.0.1:{bad_info}") }))
            .await
            .unwrap();
        assert!(
            r.detail.starts_with("not a NATS server: INFO is not JSON"),
            "{r:?}"
        );
        let refusing = quiet_server(
            b"INFO {\"version\":\"9.9.9\",\"auth_required\":true}\r\n-ERR 'Authorization Violation'\r\n",
        )
        .await;
        let r = run(json!({ "target": format!("nats://127.0.0.1:{refusing}") }))
            .await
            .unwrap();
        assert!(!r.healthy);
        assert_eq!(
            r.detail,
            "NATS server 9.9.9 (JetStream off): \"-ERR 'Authorization Violation'\""
        );

        // A never-ending first line is cut off, not buffered.
        let (l, endless) = listener().await;
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let junk = vec![b'x'; 4096];
            while s.write_all(&junk).await.is_ok() {}
        });
        let r = run(json!({ "target": format!("nats://127.0.0.1:{endless}") }))
            .await
            .unwrap();
        assert_eq!(
            (r.healthy, r.detail.as_str()),
            (false, "a line longer than 16384 bytes")
        );
    }

    #[tokio::test]
    async fn refuses_bad_and_disallowed_targets() {
        for (params, want) in [
            (json!({ "target": "localhost:80" }), "needs a scheme"),
            (
                json!({ "target": "ftp://127.0.0.1/" }),
                "scheme \"ftp\" is not supported",
            ),
            (json!({ "target": "http://" }), "empty host"),
            (json!({ "target": "tcp://127.0.0.1" }), "needs the form host:port"),
            (
                json!({ "target": "tcp://127.0.0.1:99999" }),
                "not a number 1-65535",
            ),
            (json!({ "target": "tcp://127.0.0.1:0" }), "port 0"),
            (json!({ "target": "tcp://127.0.0.1:80/x" }), "nothing else"),
            (json!({ "target": "tcp://bad host:80" }), "not a host name"),
            (json!({ "target": "http://u:p@127.0.0.1/" }), "credentials"),
            (json!({ "target": "http://example.com/" }), "not allowed"),
            (json!({ "target": "tcp://10.0.0.1:22" }), "not allowed"),
            (
                json!({ "target": "http://169.254.169.254/latest/" }),
                "not allowed",
            ),
            (
                json!({ "target": "http://127.0.0.1@example.com/" }),
                "credentials",
            ),
            (
                json!({ "target": "tcp://127.0.0.1:80", "expect_status": 200 }),
                "http(s) targets only",
            ),
            (
                json!({ "target": "http://127.0.0.1/", "timeout_ms": 0 }),
                "timeout_ms must be 1-30000",
            ),
            (
                json!({ "target": "http://127.0.0.1/", "timeout_ms": 30001 }),
                "timeout_ms must be 1-30000",
            ),
            (
                json!({ "target": "http://127.0.0.1/", "expect_status": 600 }),
                "expect_status must be 100-599",
            ),
            (
                json!({ "target": "http://127.0.0.1/", "method": "POST" }),
                "unknown field `method`",
            ),
        ] {
            let probe = Probe::new(&HealthConfig::default()).unwrap();
            let err = probe.execute(ctx(), params.clone()).await.unwrap_err();
            assert!(
                matches!(&err, ExecError::InvalidParams(m) if m.contains(want)),
                "{params}: {err:?}"
            );
        }
    }

    #[tokio::test]
    async fn the_allow_list_decides_which_hosts() {
        let port = http_server(200).await;
        let config = HealthConfig {
            allow: vec![format!("127.0.0.1:{port}"), "*.example.com".into()],
            ..HealthConfig::default()
        };
        let target = |p: u16| json!({ "target": format!("http://127.0.0.1:{p}/") });
        assert!(run_with(&config, target(port)).await.unwrap().healthy);
        // The same host on another port, and localhost (no longer listed), are refused.
        let other = http_server(200).await;
        let err = run_with(&config, target(other)).await.unwrap_err();
        assert!(matches!(err, ExecError::InvalidParams(m) if m.contains("not allowed")));
        let err = run_with(&config, json!({ "target": format!("tcp://localhost:{port}") }))
            .await
            .unwrap_err();
        assert!(matches!(err, ExecError::InvalidParams(_)));
        // allow_any lets everything through.
        let any = HealthConfig {
            allow: vec![],
            allow_any: true,
            ..HealthConfig::default()
        };
        assert!(run_with(&any, target(other)).await.unwrap().healthy);

        let entry = |s: &str| AllowEntry::parse(s).unwrap();
        assert!(entry("*.example.com").allows("db.example.com", 5432));
        assert!(!entry("*.example.com").allows("example.com", 5432));
        assert!(!entry("*.example.com").allows("evilexample.com", 5432));
        assert!(entry("[::1]:8080").allows("::1", 8080));
        assert!(entry("LocalHost").allows("localhost", 1));
        // Hex IPv4 in an http URL is normalised before matching.
        let t = parse_target("http://0x7f.1:8080/").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 8080));
    }

    #[test]
    fn config_validation_names_every_problem() {
        assert_eq!(HealthConfig::default().validate(), Vec::<String>::new());
        let bad = HealthConfig {
            allow: vec!["ok.example".into(), "bad host".into(), "h:0".into()],
            max_timeout_ms: 100_000,
            default_timeout_ms: 0,
            ..HealthConfig::default()
        };
        assert_eq!(
            bad.validate(),
            vec![
                "health.allow[1]: \"bad host\": not a host name, IP address, host:port or *.domain"
                    .to_string(),
                "health.allow[2]: \"h:0\": port 0 cannot be probed".to_string(),
                "health.max_timeout_ms: must be 1-60000, not 100000".to_string(),
                "health.default_timeout_ms: must be 1-100000 (max_timeout_ms), not 0".to_string(),
            ]
        );
        let parsed: HealthConfig =
            serde_json::from_value(json!({ "allow": ["db.internal:5432"], "max_timeout_ms": 1000 })).unwrap();
        assert_eq!(parsed.default_timeout_ms, 5_000);
        assert_eq!(
            parsed.validate(),
            vec!["health.default_timeout_ms: must be 1-1000 (max_timeout_ms), not 5000".to_string()]
        );
        let mut r = ExecutorRegistry::new();
        register(
            &mut r,
            &HealthConfig {
                enabled: false,
                ..HealthConfig::default()
            },
        );
        assert_eq!(r.names().count(), 0);
        register(&mut r, &HealthConfig::default());
        assert_eq!(r.names().collect::<Vec<_>>(), vec!["probe"]);
    }

    #[tokio::test]
    async fn cancel_stops_a_waiting_probe() {
        let port = quiet_server(b"").await;
        let probe = Probe::new(&HealthConfig::default()).unwrap();
        let c = ctx();
        let token = c.cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            token.cancel();
        });
        let res = probe
            .execute(
                c,
                json!({ "target": format!("nats://127.0.0.1:{port}"), "timeout_ms": 30000 }),
            )
            .await;
        assert_eq!(res, Err(ExecError::Cancelled));
    }
}
