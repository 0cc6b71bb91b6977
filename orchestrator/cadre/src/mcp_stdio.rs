//! `cadre mcp`: MCP over stdio for agents that launch a local server, relayed to a running
//! node's streamable HTTP endpoint (`/mcp`, see [`cadre_faces::http::mcp`]).
//!
//! Each newline-delimited JSON-RPC message read from stdin is POSTed to the node with the
//! CLI's credential; JSON answers and every message of an SSE answer (progress notifications,
//! then the result) are written to stdout, one per line. `initialize` is relayed before
//! anything else is read, so the session id it returns goes on every later request; other
//! messages are relayed concurrently, so a `notifications/cancelled` reaches the node while its
//! tool call is still running. stdout carries only protocol messages; diagnostics go to
//! stderr. At end of input the session is deleted.

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, anyhow};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Longest line accepted on stdin.
const MAX_LINE: usize = 4 << 20;

/// Where and as whom to relay.
#[derive(Clone)]
struct Relay {
    /// `host:port` of the node's HTTP listener.
    addr: String,
    credential: Option<String>,
    session: Arc<Mutex<Option<String>>>,
    version: Arc<Mutex<Option<String>>>,
    out: mpsc::Sender<String>,
}

/// Runs the relay until stdin ends. `http` is the node's HTTP base URL (`http://host:port`).
pub async fn run(http: &str, credential: Option<String>) -> Result<()> {
    let addr = http
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("cadre mcp needs the node's plain http:// address, got {http:?}"))?
        .trim_end_matches('/')
        .to_string();
    let (out, mut rx) = mpsc::channel::<String>(256);
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(line) = rx.recv().await {
            if stdout.write_all(line.as_bytes()).await.is_err()
                || stdout.write_all(b"\n").await.is_err()
                || stdout.flush().await.is_err()
            {
                break;
            }
        }
    });
    let relay = Relay {
        addr,
        credential,
        session: Arc::default(),
        version: Arc::default(),
        out,
    };
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut calls = tokio::task::JoinSet::new();
    while let Some(line) = lines.next_line().await.context("reading stdin")? {
        let line = line.trim().to_string();
        if line.is_empty() {
            continue;
        }
        if line.len() > MAX_LINE {
            relay
                .emit(error_reply(
                    &Value::Null,
                    -32600,
                    "Invalid Request: message too large",
                ))
                .await;
            continue;
        }
        let is_initialize = serde_json::from_str::<Value>(&line)
            .ok()
            .and_then(|v| v.get("method").and_then(Value::as_str).map(|m| m == "initialize"))
            .unwrap_or(false);
        if is_initialize {
            relay.forward(line).await;
        } else {
            let r = relay.clone();
            calls.spawn(async move { r.forward(line).await });
        }
        while calls.try_join_next().is_some() {}
    }
    while calls.join_next().await.is_some() {}
    relay.close_session().await;
    drop(relay);
    let _ = writer.await;
    Ok(())
}

fn error_reply(id: &Value, code: i64, message: &str) -> String {
    json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } }).to_string()
}

/// One HTTP answer: status, lower-cased headers, and a reader positioned at the body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: BufReader<TcpStream>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Relay {
    async fn emit(&self, line: String) {
        let _ = self.out.send(line).await;
    }

    /// Sends one HTTP/1.0 request (the body ends when the connection closes, so SSE needs no
    /// chunk decoding).
    async fn request(&self, method: &str, body: Option<&str>) -> Result<Answer> {
        let mut s = TcpStream::connect(&self.addr)
            .await
            .with_context(|| format!("cannot reach the cadre node at {}", self.addr))?;
        let mut req = format!(
            "{method} /mcp HTTP/1.0\r\nHost: {}\r\nAccept: application/json, text/event-stream\r\n",
            self.addr
        );
        if let Some(c) = &self.credential {
            req.push_str(&format!("Authorization: Bearer {c}\r\n"));
        }
        if let Some(sid) = self.session.lock().unwrap_or_else(|e| e.into_inner()).as_deref() {
            req.push_str(&format!("Mcp-Session-Id: {sid}\r\n"));
        }
        if let Some(v) = self.version.lock().unwrap_or_else(|e| e.into_inner()).as_deref() {
            req.push_str(&format!("MCP-Protocol-Version: {v}\r\n"));
        }
        let body = body.unwrap_or("");
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        ));
        s.write_all(req.as_bytes()).await?;
        s.write_all(body.as_bytes()).await?;
        let mut rd = BufReader::new(s);
        let mut line = String::new();
        rd.read_line(&mut line).await?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| anyhow!("not an HTTP answer: {line:?}"))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            if rd.read_line(&mut line).await? == 0 || line == "\r\n" || line == "\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        Ok(Answer {
            status,
            headers,
            body: rd,
        })
    }

    /// Relays one message and writes whatever comes back.
    async fn forward(&self, line: String) {
        let id = serde_json::from_str::<Value>(&line)
            .ok()
            .and_then(|v| v.get("id").cloned());
        let mut answer = match self.request("POST", Some(&line)).await {
            Ok(a) => a,
            Err(e) => {
                eprintln!("cadre mcp: {e:#}");
                if let Some(id) = id {
                    self.emit(error_reply(&id, -32603, &format!("{e:#}"))).await;
                }
                return;
            }
        };
        if answer.status == 202 {
            return;
        }
        if let Some(sid) = answer.header("mcp-session-id").map(str::to_string) {
            *self.session.lock().unwrap_or_else(|e| e.into_inner()) = Some(sid);
        }
        let sse = answer
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream"));
        if sse {
            let mut data = String::new();
            let mut l = String::new();
            loop {
                l.clear();
                match answer.body.read_line(&mut l).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let t = l.trim_end_matches(['\r', '\n']);
                if let Some(d) = t.strip_prefix("data:") {
                    data.push_str(d.strip_prefix(' ').unwrap_or(d));
                } else if t.is_empty() && !data.is_empty() {
                    self.emit(std::mem::take(&mut data)).await;
                }
            }
            return;
        }
        let mut body = String::new();
        let _ = answer.body.read_to_string(&mut body).await;
        match serde_json::from_str::<Value>(&body) {
            Ok(v) if v.get("jsonrpc").is_some() => {
                if let Some(version) = v
                    .get("result")
                    .and_then(|r| r.get("protocolVersion"))
                    .and_then(Value::as_str)
                {
                    *self.version.lock().unwrap_or_else(|e| e.into_inner()) = Some(version.to_string());
                }
                self.emit(v.to_string()).await;
            }
            _ => {
                // Not JSON-RPC (401 from the node, a proxy's error page): tell the client.
                let message = match answer.status {
                    401 => "the node refused the credential: pass --token or CADRE_TOKEN, or run where <data-dir>/credentials is readable".to_string(),
                    s => format!("the node answered HTTP {s}: {}", body.trim()),
                };
                eprintln!("cadre mcp: {message}");
                if let Some(id) = id {
                    self.emit(error_reply(&id, -32603, &message)).await;
                }
            }
        }
    }

    async fn close_session(&self) {
        if self.session.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
            let _ = self.request("DELETE", None).await;
        }
    }
}
