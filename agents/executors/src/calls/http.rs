//! Webhook calls (`http`): a task names a hook configured in `[executors.http.hooks.<name>]`
//! and sends a JSON body; the hook's answer comes back as the result.
//!
//! Each attempt has its own timeout. Connection failures, timeouts, 5xx and 429 are retried
//! with exponential backoff (a `Retry-After` on 429 or 503, in seconds or as an HTTP-date, is
//! waited out up to `max_retry_after_ms`); any other 4xx is [`ExecError::Fatal`]. A hook that
//! asks to wait longer, or still asks to wait after the last try, ends the attempt as
//! [`ExecError::RateLimited`]: the supervisor puts the task back without counting the attempt
//! and holds the task type for the wait. Every failed attempt counts
//! against the hook's circuit breaker, shared by all tasks: after `breaker_failures` failures in
//! a row the hook is open for `breaker_cooldown_ms` and tasks fail fast (Retryable, "circuit
//! open"); then one trial call is let through (half-open), which closes the circuit when it
//! succeeds and opens it again when it fails.
//!
//! Redirects are not followed and no proxy is used. The `Authorization` secret read from
//! `authorization_env` is marked sensitive, never logged, and cut out of error messages.

use std::collections::BTreeMap;
use std::error::Error as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cadre_agents::ExecutorRegistry;
use cadre_agents::executor::{ExecContext, ExecError, Executor, decode_params};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::support::params_schema as schema;

/// Longest per-attempt timeout a hook may configure (10 minutes).
const MAX_TIMEOUT_MS: u64 = 600_000;
/// Most retries a hook may configure.
const MAX_RETRIES: u32 = 10;
/// Largest response body a hook may accept (64 MiB).
const MAX_RESPONSE_BYTES: usize = 64 << 20;
/// Longest wait between attempts a hook may configure (10 minutes).
const MAX_WAIT_MS: u64 = 600_000;
/// How much of an error response's body goes into the error message.
const SNIPPET_BYTES: usize = 300;

/// Config section for webhook calls (`[executors.http]`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// The hooks tasks may call, by the name their params use (`{"hook": "<name>"}`). Empty by
    /// default: `http` then refuses every task.
    pub hooks: BTreeMap<String, HookConfig>,
}

/// The HTTP method a hook is called with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HookMethod {
    /// `POST` (the default).
    #[default]
    Post,
    /// `PUT`.
    Put,
    /// `PATCH`.
    Patch,
    /// `GET`.
    Get,
    /// `DELETE`.
    Delete,
}

impl HookMethod {
    fn as_reqwest(self) -> reqwest::Method {
        match self {
            HookMethod::Post => reqwest::Method::POST,
            HookMethod::Put => reqwest::Method::PUT,
            HookMethod::Patch => reqwest::Method::PATCH,
            HookMethod::Get => reqwest::Method::GET,
            HookMethod::Delete => reqwest::Method::DELETE,
        }
    }
}

/// One webhook (`[executors.http.hooks.<name>]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HookConfig {
    /// The URL called (`http` or `https`).
    pub url: String,
    /// `POST` (default), `PUT`, `PATCH`, `GET` or `DELETE`.
    pub method: HookMethod,
    /// Headers sent with every call (not secrets: they appear in `cadre config check`).
    pub headers: BTreeMap<String, String>,
    /// Name of an environment variable holding a token, sent as `Authorization: Bearer <it>`.
    /// Read at each call, so a rotated token applies at once; never logged.
    pub authorization_env: Option<String>,
    /// Timeout of one attempt in milliseconds, connecting to reading the whole body
    /// (default 10 000).
    pub timeout_ms: u64,
    /// Attempts after the first on a connection failure, timeout, 5xx or 429 (default 2).
    pub retries: u32,
    /// Wait before the first retry in milliseconds, doubled each retry (default 200).
    pub backoff_ms: u64,
    /// Longest wait between attempts in milliseconds (default 5 000).
    pub max_backoff_ms: u64,
    /// Longest `Retry-After` waited out inside an attempt, in milliseconds (default 30 000); a
    /// hook that asks for more ends the attempt as rate-limited (the task waits in the queue,
    /// not on a worker).
    pub max_retry_after_ms: u64,
    /// Largest response body accepted, in bytes (default 1 MiB); a larger one fails the task.
    pub max_response_bytes: usize,
    /// Failed attempts in a row that open the circuit (default 5; 0 = no breaker).
    pub breaker_failures: u32,
    /// How long an open circuit refuses calls, in milliseconds (default 30 000).
    pub breaker_cooldown_ms: u64,
}

impl Default for HookConfig {
    fn default() -> Self {
        HookConfig {
            url: String::new(),
            method: HookMethod::Post,
            headers: BTreeMap::new(),
            authorization_env: None,
            timeout_ms: 10_000,
            retries: 2,
            backoff_ms: 200,
            max_backoff_ms: 5_000,
            max_retry_after_ms: 30_000,
            max_response_bytes: 1 << 20,
            breaker_failures: 5,
            breaker_cooldown_ms: 30_000,
        }
    }
}

impl WebhookConfig {
    /// Problems with this section, each prefixed with its path under `executors`.
    pub fn validate(&self) -> Vec<String> {
        let mut errs = Vec::new();
        for (name, h) in &self.hooks {
            if !crate::system::exec::valid_name(name) {
                errs.push(format!(
                    "http.hooks.{name:?}: a hook name is 1-64 letters, digits, '_', '-' or '.'"
                ));
            }
            let mut bad = |field: &str, what: String| errs.push(format!("http.hooks.{name}.{field}: {what}"));
            if let Err(e) = parse_url(&h.url) {
                bad("url", e);
            }
            if let Err(e) = header_map(&h.headers) {
                bad("headers", e);
            }
            if let Some(var) = &h.authorization_env {
                if var.is_empty() || var.contains(['=', '\0']) {
                    bad("authorization_env", format!("{var:?} is not a variable name"));
                }
                if h.headers.keys().any(|k| k.eq_ignore_ascii_case("authorization")) {
                    bad(
                        "headers",
                        "Authorization is set here and by authorization_env".into(),
                    );
                }
            }
            if !(1..=MAX_TIMEOUT_MS).contains(&h.timeout_ms) {
                bad("timeout_ms", format!("must be 1-{MAX_TIMEOUT_MS}"));
            }
            if h.retries > MAX_RETRIES {
                bad("retries", format!("must be at most {MAX_RETRIES}"));
            }
            for (field, v) in [
                ("backoff_ms", h.backoff_ms),
                ("max_backoff_ms", h.max_backoff_ms),
                ("max_retry_after_ms", h.max_retry_after_ms),
                ("breaker_cooldown_ms", h.breaker_cooldown_ms),
            ] {
                if v > MAX_WAIT_MS {
                    bad(field, format!("must be at most {MAX_WAIT_MS}"));
                }
            }
            if !(1..=MAX_RESPONSE_BYTES).contains(&h.max_response_bytes) {
                bad("max_response_bytes", format!("must be 1-{MAX_RESPONSE_BYTES}"));
            }
            if h.breaker_failures > 0 && h.breaker_cooldown_ms == 0 {
                bad(
                    "breaker_cooldown_ms",
                    "must be above 0 when the breaker is on".into(),
                );
            }
        }
        errs
    }
}

fn parse_url(url: &str) -> Result<Url, String> {
    let u = Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(format!("{url:?} is not an http(s) URL with a host"));
    }
    Ok(u)
}

fn header_map(headers: &BTreeMap<String, String>) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("{k:?} is not a header name"))?;
        let value = HeaderValue::from_str(v).map_err(|_| format!("the value of {k:?} is not valid"))?;
        map.insert(name, value);
    }
    Ok(map)
}

/// Registers `http` with the configured hooks (always, so a route to it is valid even when no
/// hook is configured; its tasks then fail with InvalidParams).
pub(crate) fn register(r: &mut ExecutorRegistry, config: &WebhookConfig) {
    r.register("http", Arc::new(Webhook::new(config.clone())));
}

/// How the executor reads secrets from the environment (the process environment in
/// production, a map in tests, since setting process variables is unsafe).
pub type SecretLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// `system.http.call`: `{"hook": "<name>", "body": <any JSON>}` -> [`WebhookResult`].
pub struct Webhook {
    /// The configured hooks with their breakers.
    hooks: BTreeMap<String, Hook>,
    /// One client (one connection pool) for every hook; an error if it could not be built.
    client: Result<reqwest::Client, String>,
    /// Where `authorization_env` variables are read from.
    secrets: SecretLookup,
}

/// A hook ready to call.
struct Hook {
    /// Its settings.
    config: HookConfig,
    /// URL and headers parsed, or why they do not parse (then every call fails).
    prepared: Result<(Url, HeaderMap), String>,
    /// Its circuit breaker, shared by every task calling it.
    breaker: Mutex<Breaker>,
}

impl Webhook {
    /// An executor for `config`, reading secrets from the process environment.
    pub fn new(config: WebhookConfig) -> Self {
        Webhook::with_secrets(config, Arc::new(|k| std::env::var(k).ok()))
    }

    /// An executor for `config` reading `authorization_env` variables through `secrets`.
    pub fn with_secrets(config: WebhookConfig, secrets: SecretLookup) -> Self {
        let hooks = config
            .hooks
            .into_iter()
            .map(|(name, config)| {
                let prepared = parse_url(&config.url).and_then(|u| Ok((u, header_map(&config.headers)?)));
                let hook = Hook {
                    config,
                    prepared,
                    breaker: Mutex::new(Breaker::default()),
                };
                (name, hook)
            })
            .collect();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"));
        Webhook {
            hooks,
            client,
            secrets,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookParams {
    hook: String,
    #[serde(default)]
    body: Option<Value>,
}

/// What [`Webhook`] returns for a 2xx answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WebhookResult {
    /// The hook's name.
    pub hook: String,
    /// HTTP status (2xx).
    pub status: u16,
    /// The answer's `Content-Type`, if it had one.
    pub content_type: Option<String>,
    /// The body: its JSON when it parses as JSON, else its text (invalid UTF-8 replaced).
    pub body: Value,
    /// Whether `body` is parsed JSON.
    pub body_is_json: bool,
    /// Attempts made, the successful one included.
    pub attempts: u32,
    /// Wall time of the whole call, retries included, in milliseconds.
    pub duration_ms: u64,
}

#[async_trait]
impl Executor for Webhook {
    fn params_schema(&self) -> Option<Value> {
        let names: Vec<&str> = self.hooks.keys().map(String::as_str).collect();
        let hook = if names.is_empty() {
            schema::text("a configured hook (none is configured)")
        } else {
            schema::one_of(&names, "the configured hook to call")
        };
        Some(schema::object(
            &["hook"],
            &[
                ("hook", hook),
                (
                    "body",
                    schema::any("JSON sent as the request body; none when absent or null"),
                ),
            ],
        ))
    }

    fn result_schema(&self) -> Option<Value> {
        Some(schema::record(&[
            ("hook", schema::text("the hook's name")),
            ("status", schema::int_range(200, 299, "HTTP status")),
            (
                "content_type",
                schema::nullable(schema::string("the answer's Content-Type")),
            ),
            ("body", schema::any("the answer's JSON, or its text")),
            ("body_is_json", schema::boolean("whether body is parsed JSON")),
            (
                "attempts",
                schema::int_range(1, i64::from(MAX_RETRIES) + 1, "attempts made"),
            ),
            ("duration_ms", schema::count("wall time in milliseconds")),
        ]))
    }

    async fn execute(&self, ctx: ExecContext, params: Value) -> Result<Value, ExecError> {
        let p: WebhookParams = decode_params(&params)?;
        let Some(hook) = self.hooks.get(&p.hook) else {
            let known: Vec<&str> = self.hooks.keys().map(String::as_str).collect();
            return Err(ExecError::InvalidParams(format!(
                "unknown hook {:?} (configured: {})",
                p.hook,
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            )));
        };
        let name = &p.hook;
        let fatal = |what: String| ExecError::Fatal(format!("hook {name}: {what}"));
        let client = self.client.as_ref().map_err(|e| fatal(e.clone()))?;
        let (url, headers) = hook.prepared.as_ref().map_err(|e| fatal(e.clone()))?;
        let secret = match &hook.config.authorization_env {
            None => None,
            Some(var) => match (self.secrets)(var) {
                Some(v) if !v.is_empty() => Some(v),
                _ => return Err(fatal(format!("environment variable {var} is not set"))),
            },
        };
        let mut headers = headers.clone();
        if let Some(token) = &secret {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| fatal("the authorization token is not a valid header value".into()))?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let redact = |text: String| match &secret {
            Some(s) if !s.is_empty() => text.replace(s.as_str(), "[redacted]"),
            _ => text,
        };
        let c = &hook.config;
        let started = Instant::now();
        let attempts = c.retries + 1;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let permit = hook
                .admit()
                .map_err(|why| ExecError::Retryable(format!("hook {name}: circuit open ({why})")))?;
            ctx.progress(
                f64::from(attempt - 1) / f64::from(attempts),
                format!("calling hook {name} (attempt {attempt} of {attempts})"),
            );
            let call = self.call(client, c, url, &headers, p.body.as_ref());
            let outcome = tokio::select! {
                o = tokio::time::timeout(Duration::from_millis(c.timeout_ms), call) => o,
                _ = ctx.cancel.cancelled() => return Err(ExecError::Cancelled),
            };
            let (failure, asked_wait) = match outcome {
                Err(_) => (format!("no complete answer within {} ms", c.timeout_ms), None),
                Ok(Err(e)) => (redact(e), None),
                Ok(Ok(answer))
                    if answer.status.is_server_error() || answer.status == StatusCode::TOO_MANY_REQUESTS =>
                {
                    let body = redact(snippet(&answer.body));
                    (format!("answered {}: {body}", answer.status), answer.retry_after)
                }
                Ok(Ok(answer)) => {
                    // The hook answered: it is alive, whatever it said.
                    permit.succeed();
                    return answer.into_result(name, c, attempt, started, &redact);
                }
            };
            permit.fail();
            let last = attempt == attempts;
            if let Some(limited) = rate_limited(name, &failure, asked_wait, last, c.max_retry_after_ms) {
                return Err(limited);
            }
            if last {
                return Err(ExecError::Retryable(format!(
                    "hook {name} failed after {attempts} attempt{}: {failure}",
                    if attempts == 1 { "" } else { "s" }
                )));
            }
            let wait = asked_wait.unwrap_or_else(|| backoff(c, attempt));
            tracing::debug!(hook = %name, attempt, "webhook {failure}; retrying after {wait:?}");
            wait_or_cancel(&ctx, wait).await?;
        }
    }
}

/// The end of an attempt whose hook asked to wait `asked`: longer than `max_retry_after_ms`,
/// or after the `last` try, the attempt is rate-limited (the supervisor holds the task type
/// that long instead of a worker waiting); None when the wait is taken here.
fn rate_limited(
    name: &str,
    failure: &str,
    asked: Option<Duration>,
    last: bool,
    max_retry_after_ms: u64,
) -> Option<ExecError> {
    let wait = asked?;
    let too_long = wait > Duration::from_millis(max_retry_after_ms);
    (last || too_long).then(|| ExecError::RateLimited {
        message: format!(
            "hook {name} {failure} and asks to retry after {} ms{}",
            wait.as_millis(),
            if too_long {
                ", more than max_retry_after_ms"
            } else {
                ""
            }
        ),
        retry_after: wait,
    })
}

impl Webhook {
    /// One attempt: sends the request and reads the body, keeping at most
    /// `max_response_bytes` (and one byte more, to tell that it was longer).
    async fn call(
        &self,
        client: &reqwest::Client,
        c: &HookConfig,
        url: &Url,
        headers: &HeaderMap,
        body: Option<&Value>,
    ) -> Result<Answer, String> {
        let mut req = client
            .request(c.method.as_reqwest(), url.clone())
            .headers(headers.clone());
        if let Some(body) = body {
            req = req.json(body);
        }
        let mut resp = req.send().await.map_err(describe)?;
        let status = resp.status();
        let header = |name: HeaderName| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let content_type = header(CONTENT_TYPE);
        let retry_after = header(RETRY_AFTER)
            .and_then(|v| crate::support::retry_after::parse(&v, std::time::SystemTime::now()))
            .filter(|_| status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE);
        let max = c.max_response_bytes;
        let mut body = Vec::new();
        let mut oversized = resp.content_length().is_some_and(|n| n > max as u64);
        while !oversized && let Some(chunk) = resp.chunk().await.map_err(describe)? {
            if body.len() + chunk.len() > max {
                oversized = true;
            } else {
                body.extend_from_slice(&chunk);
            }
        }
        Ok(Answer {
            status,
            content_type,
            retry_after,
            body,
            oversized,
        })
    }
}

/// What a hook answered to one attempt.
struct Answer {
    /// Its status.
    status: StatusCode,
    /// Its `Content-Type`.
    content_type: Option<String>,
    /// Its `Retry-After` (seconds or an HTTP-date, at most an hour), on 429 and 503 only.
    retry_after: Option<Duration>,
    /// Its body, or as much as fits the limit.
    body: Vec<u8>,
    /// Whether the body was longer than `max_response_bytes`.
    oversized: bool,
}

impl Answer {
    /// The task's result for an answer that is not retried.
    fn into_result(
        self,
        name: &str,
        c: &HookConfig,
        attempts: u32,
        started: Instant,
        redact: &dyn Fn(String) -> String,
    ) -> Result<Value, ExecError> {
        if !self.status.is_success() {
            let what = if self.status.is_redirection() {
                "redirects are not followed".to_string()
            } else {
                redact(snippet(&self.body))
            };
            return Err(ExecError::Fatal(format!(
                "hook {name} answered {}: {what}",
                self.status
            )));
        }
        if self.oversized {
            return Err(ExecError::Fatal(format!(
                "hook {name}: the response is larger than max_response_bytes ({} bytes)",
                c.max_response_bytes
            )));
        }
        let (body, body_is_json) = if self.body.is_empty() {
            (json!(""), false)
        } else {
            match serde_json::from_slice::<Value>(&self.body) {
                Ok(v) => (v, true),
                Err(_) => (json!(String::from_utf8_lossy(&self.body)), false),
            }
        };
        let result = WebhookResult {
            hook: name.to_string(),
            status: self.status.as_u16(),
            content_type: self.content_type,
            body,
            body_is_json,
            attempts,
            duration_ms: started.elapsed().as_millis() as u64,
        };
        serde_json::to_value(result).map_err(|e| ExecError::Fatal(e.to_string()))
    }
}

/// A reqwest error with its causes, without the URL (which may carry credentials).
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The start of a body, as text, for an error message.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(SNIPPET_BYTES)]);
    let text = text.trim();
    if text.is_empty() {
        "(empty body)".into()
    } else {
        text.to_string()
    }
}

/// The wait after failed attempt `attempt` (1-based): `backoff_ms` doubled each time, capped.
fn backoff(c: &HookConfig, attempt: u32) -> Duration {
    let ms = c
        .backoff_ms
        .saturating_mul(1u64 << (attempt - 1).min(20))
        .min(c.max_backoff_ms);
    Duration::from_millis(ms)
}

async fn wait_or_cancel(ctx: &ExecContext, wait: Duration) -> Result<(), ExecError> {
    tokio::select! {
        _ = tokio::time::sleep(wait) => Ok(()),
        _ = ctx.cancel.cancelled() => Err(ExecError::Cancelled),
    }
}

/// A hook's circuit breaker.
#[derive(Debug, Default)]
struct Breaker {
    /// Failed attempts in a row while closed.
    failures: u32,
    /// Where it stands.
    state: BreakerState,
}

#[derive(Debug, Default, Clone, Copy, PartialEq)]
enum BreakerState {
    /// Calls go through.
    #[default]
    Closed,
    /// Calls are refused until then.
    Open { until: Instant },
    /// One trial call is in flight; others are refused until it ends.
    HalfOpen,
}

impl Hook {
    /// Lets one attempt through, or says why the circuit refuses it.
    fn admit(&self) -> Result<Permit<'_>, String> {
        let permit = |trial| Permit {
            hook: self,
            trial,
            done: false,
        };
        if self.config.breaker_failures == 0 {
            return Ok(permit(false));
        }
        let mut b = self.breaker.lock().unwrap_or_else(|e| e.into_inner());
        match b.state {
            BreakerState::Closed => Ok(permit(false)),
            BreakerState::Open { until } => {
                let now = Instant::now();
                if now < until {
                    Err(format!(
                        "{} failures in a row; next trial in {} ms",
                        self.config.breaker_failures,
                        (until - now).as_millis()
                    ))
                } else {
                    b.state = BreakerState::HalfOpen;
                    Ok(permit(true))
                }
            }
            BreakerState::HalfOpen => Err("a trial call is in flight".into()),
        }
    }
}

/// One admitted attempt; its end moves the breaker.
struct Permit<'a> {
    /// The hook whose breaker it moves.
    hook: &'a Hook,
    /// Whether it is the half-open trial.
    trial: bool,
    /// Whether its outcome was recorded.
    done: bool,
}

impl Permit<'_> {
    /// The hook answered: the circuit closes.
    fn succeed(mut self) {
        self.done = true;
        let mut b = self.hook.lock();
        b.failures = 0;
        b.state = BreakerState::Closed;
    }

    /// The attempt failed: one more failure, which may open the circuit.
    fn fail(mut self) {
        self.done = true;
        let threshold = self.hook.config.breaker_failures;
        if threshold == 0 {
            return;
        }
        let cooldown = Duration::from_millis(self.hook.config.breaker_cooldown_ms);
        let mut b = self.hook.lock();
        b.failures = b.failures.saturating_add(1);
        if self.trial || (b.state == BreakerState::Closed && b.failures >= threshold) {
            b.state = BreakerState::Open {
                until: Instant::now() + cooldown,
            };
        }
    }
}

impl Drop for Permit<'_> {
    /// A trial that ended without an outcome (cancelled) hands the trial to the next caller.
    fn drop(&mut self) {
        if self.trial && !self.done {
            let mut b = self.hook.lock();
            if b.state == BreakerState::HalfOpen {
                b.state = BreakerState::Open {
                    until: Instant::now(),
                };
            }
        }
    }
}

impl Hook {
    fn lock(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    use axum::Router;
    use axum::body::{Body, Bytes};
    use axum::extract::State;
    use axum::http::{HeaderMap as AxumHeaders, StatusCode as AxumStatus};
    use axum::response::{IntoResponse, Response};
    use axum::routing::{get, post};
    use cadre_agents::schema::validate;

    use super::*;
    use crate::support::test_support::ctx;

    const SECRET: &str = "s3cr3t-token-value";

    /// What the test server saw and how it behaves.
    #[derive(Default)]
    struct Seen {
        /// Requests per route.
        calls: Mutex<HashMap<&'static str, u32>>,
        /// When each request to `/limited` arrived.
        limited_at: Mutex<Vec<Instant>>,
        /// Whether `/down` answers 200 (else 500).
        healthy: AtomicBool,
        /// Requests that reached `/slow`.
        slow: AtomicU32,
    }

    impl Seen {
        fn count(&self, route: &'static str) -> u32 {
            let mut calls = self.calls.lock().unwrap();
            let n = calls.entry(route).or_default();
            *n += 1;
            *n
        }

        fn calls(&self, route: &'static str) -> u32 {
            self.calls.lock().unwrap().get(route).copied().unwrap_or(0)
        }
    }

    type S = State<Arc<Seen>>;

    /// Starts the test server on a port of 127.0.0.1.
    async fn server() -> (SocketAddr, Arc<Seen>) {
        let seen = Arc::new(Seen::default());
        let app = Router::new()
            .route(
                "/json",
                post(|headers: AxumHeaders, body: Bytes| async move {
                    let got: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let ct = headers
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let source = headers
                        .get("x-source")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    axum::Json(json!({ "got": got, "content_type": ct, "x_source": source }))
                }),
            )
            .route("/text", post(|| async { "plain words" }))
            .route("/empty", get(|| async { AxumStatus::NO_CONTENT }))
            .route(
                "/whoami",
                post(|headers: AxumHeaders| async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("none");
                    auth.to_string()
                }),
            )
            .route(
                "/forbidden",
                post(|headers: AxumHeaders| async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("none");
                    (AxumStatus::UNAUTHORIZED, format!("bad token {auth}"))
                }),
            )
            .route(
                "/flaky",
                post(|State(s): S| async move {
                    if s.count("flaky") == 1 {
                        (AxumStatus::INTERNAL_SERVER_ERROR, "try again").into_response()
                    } else {
                        axum::Json(json!({ "ok": true })).into_response()
                    }
                }),
            )
            .route(
                "/limited",
                post(|State(s): S| async move {
                    s.limited_at.lock().unwrap().push(Instant::now());
                    if s.count("limited") == 1 {
                        (AxumStatus::TOO_MANY_REQUESTS, [("retry-after", "1")], "slow down").into_response()
                    } else {
                        "ok".into_response()
                    }
                }),
            )
            .route(
                "/date-limited",
                post(|State(s): S| async move {
                    s.limited_at.lock().unwrap().push(Instant::now());
                    if s.count("date-limited") == 1 {
                        let at =
                            httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(2));
                        (
                            AxumStatus::SERVICE_UNAVAILABLE,
                            [("retry-after", at)],
                            "maintenance",
                        )
                            .into_response()
                    } else {
                        "ok".into_response()
                    }
                }),
            )
            .route(
                "/date-far",
                post(|| async {
                    let at =
                        httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(7200));
                    (
                        AxumStatus::TOO_MANY_REQUESTS,
                        [("retry-after", at)],
                        "quota exhausted",
                    )
                }),
            )
            .route(
                "/very-limited",
                post(|| async {
                    (
                        AxumStatus::TOO_MANY_REQUESTS,
                        [("retry-after", "3600")],
                        "come back later",
                    )
                }),
            )
            .route(
                "/down",
                post(|State(s): S| async move {
                    s.count("down");
                    if s.healthy.load(Ordering::SeqCst) {
                        (AxumStatus::OK, "up")
                    } else {
                        (AxumStatus::SERVICE_UNAVAILABLE, "down")
                    }
                }),
            )
            .route(
                "/slow",
                post(|State(s): S| async move {
                    s.slow.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "late"
                }),
            )
            .route("/big", post(|| async { "a".repeat(2048) }))
            .route(
                "/big-stream",
                post(|| async {
                    let chunks = (0..8).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'b'; 512])));
                    Response::new(Body::from_stream(futures::stream::iter(chunks)))
                }),
            )
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (addr, seen)
    }

    fn hook(addr: SocketAddr, path: &str) -> HookConfig {
        HookConfig {
            url: format!("http://{addr}{path}"),
            backoff_ms: 10,
            ..Default::default()
        }
    }

    fn webhook(hooks: &[(&str, HookConfig)]) -> Webhook {
        let config = WebhookConfig {
            hooks: hooks.iter().map(|(n, h)| (n.to_string(), h.clone())).collect(),
        };
        assert_eq!(config.validate(), Vec::<String>::new());
        let secrets = |k: &str| (k == "HOOK_TOKEN").then(|| SECRET.to_string());
        Webhook::with_secrets(config, Arc::new(secrets))
    }

    /// Calls a hook; a result must fit the published schemas.
    async fn call(w: &Webhook, params: Value) -> Result<WebhookResult, ExecError> {
        validate(&w.params_schema().unwrap(), &params).unwrap();
        let r = w.execute(ctx(), params).await?;
        validate(&w.result_schema().unwrap(), &r).unwrap_or_else(|e| panic!("{r}: {e}"));
        Ok(serde_json::from_value(r).unwrap())
    }

    #[tokio::test]
    async fn posts_the_body_and_parses_a_json_answer() {
        let (addr, _) = server().await;
        let mut h = hook(addr, "/json");
        h.headers.insert("X-Source".into(), "cadre".into());
        let w = webhook(&[("j", h)]);
        let r = call(&w, json!({ "hook": "j", "body": { "n": [1, 2] } }))
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert!(r.body_is_json);
        assert_eq!(
            r.body,
            json!({ "got": { "n": [1, 2] }, "content_type": "application/json", "x_source": "cadre" })
        );
        assert_eq!(r.content_type.as_deref(), Some("application/json"));
        assert_eq!(r.attempts, 1);
    }

    #[tokio::test]
    async fn a_text_answer_comes_back_as_text() {
        let (addr, _) = server().await;
        let mut empty = hook(addr, "/empty");
        empty.method = HookMethod::Get;
        let w = webhook(&[("t", hook(addr, "/text")), ("e", empty)]);
        let r = call(&w, json!({ "hook": "t" })).await.unwrap();
        assert_eq!((r.body, r.body_is_json), (json!("plain words"), false));
        assert_eq!(r.content_type.as_deref(), Some("text/plain; charset=utf-8"));
        let r = call(&w, json!({ "hook": "e" })).await.unwrap();
        assert_eq!((r.status, r.body, r.body_is_json), (204, json!(""), false));
    }

    #[tokio::test]
    async fn a_server_error_is_retried() {
        let (addr, seen) = server().await;
        let w = webhook(&[("f", hook(addr, "/flaky"))]);
        let r = call(&w, json!({ "hook": "f", "body": 1 })).await.unwrap();
        assert_eq!((r.status, r.attempts), (200, 2));
        assert_eq!(seen.calls("flaky"), 2);
    }

    #[tokio::test]
    async fn retry_after_is_honoured() {
        let (addr, seen) = server().await;
        let w = webhook(&[("l", hook(addr, "/limited"))]);
        let r = call(&w, json!({ "hook": "l" })).await.unwrap();
        assert_eq!(r.attempts, 2);
        let at = seen.limited_at.lock().unwrap().clone();
        assert_eq!(at.len(), 2);
        // The retry waited the second it was asked to, not the 10 ms backoff.
        assert!(at[1] - at[0] >= Duration::from_millis(950), "{:?}", at[1] - at[0]);
    }

    #[tokio::test]
    async fn a_retry_after_date_is_waited_out() {
        let (addr, seen) = server().await;
        let w = webhook(&[("d", hook(addr, "/date-limited"))]);
        let r = call(&w, json!({ "hook": "d" })).await.unwrap();
        assert_eq!(r.attempts, 2);
        let at = seen.limited_at.lock().unwrap().clone();
        // The date was 2 s ahead at one-second resolution: more than a second, not the 10 ms
        // backoff an unread date used to fall back to.
        assert!(at[1] - at[0] >= Duration::from_millis(900), "{:?}", at[1] - at[0]);
    }

    #[tokio::test]
    async fn a_retry_after_beyond_the_cap_ends_the_attempt_as_rate_limited() {
        let (addr, _) = server().await;
        let w = webhook(&[("v", hook(addr, "/very-limited")), ("f", hook(addr, "/date-far"))]);
        let err = w.execute(ctx(), json!({ "hook": "v" })).await.unwrap_err();
        assert_eq!(
            err,
            ExecError::RateLimited {
                message: "hook v answered 429 Too Many Requests: come back later and asks to retry \
                          after 3600000 ms, more than max_retry_after_ms"
                    .into(),
                retry_after: Duration::from_secs(3600),
            }
        );
        // A date two hours ahead is cut to the hour.
        match w.execute(ctx(), json!({ "hook": "f" })).await {
            Err(ExecError::RateLimited { retry_after, .. }) => {
                assert_eq!(retry_after, Duration::from_secs(3600))
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn still_limited_after_the_last_try_is_rate_limited() {
        let (addr, _) = server().await;
        let mut h = hook(addr, "/limited");
        h.retries = 0;
        let w = webhook(&[("l", h)]);
        match w.execute(ctx(), json!({ "hook": "l" })).await {
            Err(ExecError::RateLimited { message, retry_after }) => {
                assert_eq!(retry_after, Duration::from_secs(1));
                assert!(message.contains("answered 429"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_slow_server_times_out_as_retryable() {
        let (addr, seen) = server().await;
        let mut h = hook(addr, "/slow");
        h.timeout_ms = 200;
        h.retries = 1;
        let w = webhook(&[("s", h)]);
        let err = w.execute(ctx(), json!({ "hook": "s" })).await.unwrap_err();
        assert_eq!(
            err,
            ExecError::Retryable("hook s failed after 2 attempts: no complete answer within 200 ms".into())
        );
        assert_eq!(seen.slow.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_refused_connection_is_retryable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let mut h = hook(addr, "/");
        h.retries = 0;
        let w = webhook(&[("gone", h)]);
        match w.execute(ctx(), json!({ "hook": "gone" })).await {
            Err(ExecError::Retryable(m)) => {
                assert!(
                    m.starts_with("hook gone failed after 1 attempt: error sending request"),
                    "{m}"
                );
                assert!(!m.contains("127.0.0.1"), "{m}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn the_breaker_opens_half_opens_and_closes() {
        let (addr, seen) = server().await;
        let mut h = hook(addr, "/down");
        h.retries = 0;
        h.breaker_failures = 2;
        h.breaker_cooldown_ms = 300;
        let w = webhook(&[("d", h)]);
        let params = json!({ "hook": "d" });
        for _ in 0..2 {
            let err = w.execute(ctx(), params.clone()).await.unwrap_err();
            assert!(err.to_string().contains("503 Service Unavailable: down"), "{err}");
        }
        // Open: refused without a request.
        let err = w.execute(ctx(), params.clone()).await.unwrap_err();
        assert!(err.is_retryable());
        assert!(
            err.to_string()
                .starts_with("hook d: circuit open (2 failures in a row"),
            "{err}"
        );
        assert_eq!(seen.calls("down"), 2);
        // After the cool-down one trial goes through; it fails, so the circuit opens again.
        tokio::time::sleep(Duration::from_millis(350)).await;
        let err = w.execute(ctx(), params.clone()).await.unwrap_err();
        assert!(err.to_string().contains("503"), "{err}");
        assert_eq!(seen.calls("down"), 3);
        let err = w.execute(ctx(), params.clone()).await.unwrap_err();
        assert!(err.to_string().contains("circuit open"), "{err}");
        // The next trial succeeds and closes it: calls go through again.
        seen.healthy.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(350)).await;
        for _ in 0..3 {
            assert_eq!(call(&w, params.clone()).await.unwrap().body, json!("up"));
        }
        assert_eq!(seen.calls("down"), 6);
    }

    #[tokio::test]
    async fn a_cancelled_trial_hands_the_trial_on() {
        let (addr, seen) = server().await;
        let mut h = hook(addr, "/slow");
        h.retries = 0;
        h.breaker_failures = 1;
        h.breaker_cooldown_ms = 1;
        h.timeout_ms = 2_000;
        let w = Arc::new(webhook(&[("s", h)]));
        let params = json!({ "hook": "s" });
        assert!(w.execute(ctx(), params.clone()).await.is_err());
        tokio::time::sleep(Duration::from_millis(20)).await;
        // The trial is cancelled mid-request...
        let c = ctx();
        let cancel = c.cancel.clone();
        let trial = tokio::spawn({
            let (w, params) = (w.clone(), params.clone());
            async move { w.execute(c, params).await }
        });
        while seen.slow.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        cancel.cancel();
        assert_eq!(trial.await.unwrap(), Err(ExecError::Cancelled));
        // ...and the next task gets to try instead of finding the circuit stuck half-open.
        let err = w.execute(ctx(), params).await.unwrap_err();
        assert!(err.to_string().contains("no complete answer"), "{err}");
        assert_eq!(seen.slow.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn an_oversized_body_is_refused() {
        let (addr, _) = server().await;
        let mut big = hook(addr, "/big");
        big.max_response_bytes = 1024;
        let mut stream = hook(addr, "/big-stream");
        stream.max_response_bytes = 1024;
        let w = webhook(&[("big", big), ("stream", stream)]);
        for name in ["big", "stream"] {
            let err = w.execute(ctx(), json!({ "hook": name })).await.unwrap_err();
            assert_eq!(
                err,
                ExecError::Fatal(format!(
                    "hook {name}: the response is larger than max_response_bytes (1024 bytes)"
                ))
            );
        }
    }

    #[tokio::test]
    async fn the_secret_arrives_and_stays_out_of_errors() {
        let (addr, _) = server().await;
        let mut who = hook(addr, "/whoami");
        who.authorization_env = Some("HOOK_TOKEN".into());
        let mut forbidden = hook(addr, "/forbidden");
        forbidden.authorization_env = Some("HOOK_TOKEN".into());
        let mut unset = hook(addr, "/whoami");
        unset.authorization_env = Some("NOT_SET".into());
        let w = webhook(&[("who", who), ("forbidden", forbidden), ("unset", unset)]);
        let r = call(&w, json!({ "hook": "who" })).await.unwrap();
        assert_eq!(r.body, json!(format!("Bearer {SECRET}")));
        // The server echoes the token in its 401 body; the error shows it redacted.
        let err = w
            .execute(ctx(), json!({ "hook": "forbidden" }))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            ExecError::Fatal("hook forbidden answered 401 Unauthorized: bad token Bearer [redacted]".into())
        );
        let err = w.execute(ctx(), json!({ "hook": "unset" })).await.unwrap_err();
        assert_eq!(
            err,
            ExecError::Fatal("hook unset: environment variable NOT_SET is not set".into())
        );
    }

    #[tokio::test]
    async fn cancelling_stops_a_request_in_flight() {
        let (addr, seen) = server().await;
        let w = Arc::new(webhook(&[("s", hook(addr, "/slow"))]));
        let c = ctx();
        let cancel = c.cancel.clone();
        let task = tokio::spawn({
            let w = w.clone();
            async move { w.execute(c, json!({ "hook": "s" })).await }
        });
        while seen.slow.load(Ordering::SeqCst) < 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        cancel.cancel();
        assert_eq!(task.await.unwrap(), Err(ExecError::Cancelled));
    }

    #[tokio::test]
    async fn params_must_name_a_configured_hook() {
        let (addr, _) = server().await;
        let w = webhook(&[("j", hook(addr, "/json"))]);
        let cases = [
            (json!({ "hook": "nope" }), "unknown hook \"nope\" (configured: j)"),
            (json!({ "hook": "j", "extra": 1 }), "unknown field `extra`"),
            (json!({ "body": {} }), "missing field `hook`"),
        ];
        for (params, want) in cases {
            match w.execute(ctx(), params.clone()).await {
                Err(ExecError::InvalidParams(m)) => assert!(m.contains(want), "{params}: {m}"),
                other => panic!("{params}: {other:?}"),
            }
        }
    }

    #[test]
    fn config_problems_are_all_reported() {
        let c: WebhookConfig = serde_json::from_value(json!({
            "hooks": {
                "a": { "url": "ftp://x", "headers": { "bad name": "v", "Authorization": "x" },
                       "authorization_env": "", "timeout_ms": 0, "retries": 11,
                       "max_response_bytes": 0, "breaker_cooldown_ms": 0, "backoff_ms": 700000 },
                "b": { "url": "https://example.com/hook", "method": "PUT" },
            }
        }))
        .unwrap();
        assert_eq!(
            c.validate(),
            vec![
                "http.hooks.a.url: \"ftp://x\" is not an http(s) URL with a host",
                "http.hooks.a.headers: \"bad name\" is not a header name",
                "http.hooks.a.authorization_env: \"\" is not a variable name",
                "http.hooks.a.headers: Authorization is set here and by authorization_env",
                "http.hooks.a.timeout_ms: must be 1-600000",
                "http.hooks.a.retries: must be at most 10",
                "http.hooks.a.backoff_ms: must be at most 600000",
                "http.hooks.a.max_response_bytes: must be 1-67108864",
                "http.hooks.a.breaker_cooldown_ms: must be above 0 when the breaker is on",
            ]
        );
        assert_eq!(c.hooks["b"].method, HookMethod::Put);
    }
}
