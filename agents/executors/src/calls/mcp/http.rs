//! The streamable HTTP transport: every message is a POST to the server's endpoint; a
//! request's answer comes back as a JSON body or as an event stream (which may carry
//! notifications and server requests before the answer). The session id the server gives at
//! `initialize` and the negotiated protocol version are sent with every later request, and the
//! session is DELETEd at the end. Bodies and events are read with a cap.

use std::collections::VecDeque;

use cadre_agents::executor::ExecError;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Response, StatusCode};
use serde_json::Value;

use super::config::McpServerConfig;
use super::limits::{GOODBYE_PATIENCE, quote, too_large};
use super::sse::SseDecoder;

/// The session header.
const SESSION_ID: &str = "mcp-session-id";
/// The protocol version header.
const PROTOCOL_VERSION: &str = "mcp-protocol-version";
/// Most bytes of an error response's body quoted.
const ERROR_BODY: usize = 2048;

/// Where the messages of the current request come from.
enum Inbox {
    /// Nothing more to read.
    Empty,
    /// Messages already read (a JSON body, or events decoded from the last chunk).
    Ready(VecDeque<Value>),
    /// An event stream still open, and the messages decoded but not handed out yet.
    Stream {
        body: Response,
        decoder: SseDecoder,
        ready: VecDeque<Value>,
    },
}

/// A streamable HTTP session.
pub(super) struct Http {
    /// The server's name in the config, for messages.
    name: String,
    client: reqwest::Client,
    url: reqwest::Url,
    /// Sent with every request: authorization, configured extras, and, once known, the session
    /// id and protocol version.
    headers: HeaderMap,
    /// Whether the server gave a session id (then the session is DELETEd at the end).
    has_session: bool,
    inbox: Inbox,
    /// Largest body or event accepted.
    max: usize,
}

impl Http {
    /// A session with the server at `url`; the bearer token is read from its variable now.
    pub(super) fn new(
        name: &str,
        client: reqwest::Client,
        url: &str,
        cfg: &McpServerConfig,
    ) -> Result<Self, ExecError> {
        let fatal = |what: String| ExecError::Fatal(format!("MCP server {name:?}: {what}"));
        let url = reqwest::Url::parse(url).map_err(|e| fatal(format!("bad url {url:?}: {e}")))?;
        let mut headers = HeaderMap::new();
        for (k, v) in &cfg.headers {
            let k = HeaderName::from_bytes(k.as_bytes()).map_err(|e| fatal(format!("header {k:?}: {e}")))?;
            let v = HeaderValue::from_str(v).map_err(|e| fatal(format!("header {k}: {e}")))?;
            headers.insert(k, v);
        }
        if let Some(var) = &cfg.bearer_token_env {
            let token = std::env::var(var).map_err(|_| {
                fatal(format!(
                    "the bearer token variable {var} is not set in the agent's environment"
                ))
            })?;
            let mut v = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
                .map_err(|_| fatal(format!("the token in {var} is not a valid header value")))?;
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        }
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        Ok(Http {
            name: name.to_string(),
            client,
            url,
            headers,
            has_session: false,
            inbox: Inbox::Empty,
            max: cfg.max_response_bytes,
        })
    }

    /// Sends the negotiated protocol version with every later request.
    pub(super) fn set_protocol_version(&mut self, version: &str) -> Result<(), ExecError> {
        let v = HeaderValue::from_str(version)
            .map_err(|_| ExecError::Fatal(format!("bad protocol version {version:?}")))?;
        self.headers.insert(PROTOCOL_VERSION, v);
        Ok(())
    }

    /// POSTs one message. For a request, its answer becomes the inbox; for a notification or
    /// an answer, the server must accept it (202, or any 2xx).
    pub(super) async fn send(&mut self, msg: &Value) -> Result<(), ExecError> {
        let is_request = msg.get("method").is_some() && msg.get("id").is_some();
        let resp = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .json(msg)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(self.refused(resp).await);
        }
        if let Some(id) = resp.headers().get(SESSION_ID).cloned() {
            self.headers.insert(SESSION_ID, id);
            self.has_session = true;
        }
        if !is_request {
            return Ok(());
        }
        if status == StatusCode::ACCEPTED {
            return Err(ExecError::Fatal(format!(
                "MCP server {:?} answered a request with 202 Accepted and no body",
                self.name
            )));
        }
        let kind = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_default();
        self.inbox = match kind.as_str() {
            "application/json" => {
                let body = self.read_body(resp).await?;
                let msg = serde_json::from_slice(&body).map_err(|e| {
                    ExecError::Fatal(format!("MCP server {:?} sent malformed JSON: {e}", self.name))
                })?;
                Inbox::Ready(VecDeque::from([msg]))
            }
            "text/event-stream" => Inbox::Stream {
                body: resp,
                decoder: SseDecoder::new(self.max),
                ready: VecDeque::new(),
            },
            other => {
                return Err(ExecError::Fatal(format!(
                    "MCP server {:?} answered with content type {other:?}",
                    self.name
                )));
            }
        };
        Ok(())
    }

    /// The next message of the current request's answer; `None` when it holds no more.
    pub(super) async fn next(&mut self) -> Result<Option<Value>, ExecError> {
        loop {
            match &mut self.inbox {
                Inbox::Empty => return Ok(None),
                Inbox::Ready(q) => {
                    let next = q.pop_front();
                    if q.is_empty() {
                        self.inbox = Inbox::Empty;
                    }
                    return Ok(next);
                }
                Inbox::Stream { body, decoder, ready } => {
                    if let Some(msg) = ready.pop_front() {
                        return Ok(Some(msg));
                    }
                    let chunk = body.chunk().await;
                    let Some(chunk) = chunk.map_err(|e| unreachable(&self.name, &self.url, e))? else {
                        self.inbox = Inbox::Empty;
                        return Ok(None);
                    };
                    let events = decoder
                        .feed(&chunk)
                        .map_err(|_| too_large(&self.name, self.max))?;
                    for data in events {
                        match serde_json::from_slice(&data) {
                            Ok(v) => ready.push_back(v),
                            Err(e) => {
                                tracing::debug!(server = %self.name, error = %e, "skipping an event that is not JSON")
                            }
                        }
                    }
                }
            }
        }
    }

    /// The error for an answer that ended without the response.
    pub(super) fn gone(&self) -> ExecError {
        ExecError::Retryable(format!(
            "MCP server {:?} ended its answer without a response",
            self.name
        ))
    }

    /// DELETEs the session, best effort.
    pub(super) async fn close(self) {
        if !self.has_session {
            return;
        }
        let delete = self
            .client
            .delete(self.url.clone())
            .headers(self.headers.clone())
            .send();
        match tokio::time::timeout(GOODBYE_PATIENCE, delete).await {
            Ok(Ok(r)) => tracing::debug!(server = %self.name, status = %r.status(), "session deleted"),
            _ => tracing::debug!(server = %self.name, "could not delete the session"),
        }
    }

    /// Reads a whole body, refusing more than `max` bytes.
    async fn read_body(&self, mut resp: Response) -> Result<Vec<u8>, ExecError> {
        if resp.content_length().is_some_and(|n| n > self.max as u64) {
            return Err(self.too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.unreachable(e))? {
            if body.len() + chunk.len() > self.max {
                return Err(self.too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn too_large(&self) -> ExecError {
        too_large(&self.name, self.max)
    }

    fn unreachable(&self, e: reqwest::Error) -> ExecError {
        unreachable(&self.name, &self.url, e)
    }

    /// The error for a non-2xx answer: retryable for 408, 429, 5xx and a session the server
    /// no longer knows (404 once a session exists), fatal otherwise.
    async fn refused(&self, mut resp: Response) -> ExecError {
        let status = resp.status();
        let mut body = Vec::new();
        while let Ok(Some(chunk)) = resp.chunk().await {
            body.extend_from_slice(&chunk[..chunk.len().min(ERROR_BODY - body.len())]);
            if body.len() >= ERROR_BODY {
                break;
            }
        }
        let what = format!(
            "MCP server {:?} answered {status}: {}",
            self.name,
            quote(&String::from_utf8_lossy(&body))
        );
        let expired = status == StatusCode::NOT_FOUND && self.has_session;
        if expired
            || status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
        {
            ExecError::Retryable(what)
        } else {
            ExecError::Fatal(what)
        }
    }
}

/// The error for a request that could not be sent or whose answer broke off.
fn unreachable(name: &str, url: &reqwest::Url, e: reqwest::Error) -> ExecError {
    ExecError::Retryable(format!("MCP server {name:?} at {url}: {e}"))
}
