//! The stdio transport: a child process reading newline-delimited JSON-RPC messages on stdin
//! and writing its own on stdout. Lines are read with a cap ([`super::McpServerConfig::max_response_bytes`]),
//! and stderr is drained into a small ring so a dying server's last words can be quoted.

use std::collections::VecDeque;
use std::process::Stdio as Piped;
use std::sync::{Arc, Mutex};

use cadre_agents::executor::ExecError;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::config::McpServerConfig;
use super::limits::{STDIO_EXIT_GRACE, quote, too_large};

/// Bytes of a child's stderr kept (the last ones).
const STDERR_TAIL: usize = 4096;

/// A running stdio server.
pub(super) struct Stdio {
    /// The server's name in the config, for messages.
    name: String,
    /// Killed when dropped, so a cancelled or abandoned session never leaves it running.
    child: Child,
    /// `None` once closed (the child sees end of file).
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    /// The line being read (kept here, so its capacity is reused).
    line: Vec<u8>,
    /// Largest line accepted.
    max_line: usize,
    /// The last [`STDERR_TAIL`] bytes the child wrote to stderr.
    stderr: Arc<Mutex<VecDeque<u8>>>,
    /// The task filling `stderr`; done at the pipe's end of file.
    drainer: tokio::task::JoinHandle<()>,
}

impl Stdio {
    /// Spawns the server's command with a cleared environment holding only the variables of
    /// `inherit_env` and `env`.
    pub(super) fn spawn(name: &str, cfg: &McpServerConfig) -> Result<Self, ExecError> {
        let program = cfg.command.as_deref().unwrap_or_default();
        let mut cmd = Command::new(program);
        cmd.args(&cfg.args)
            .env_clear()
            .stdin(Piped::piped())
            .stdout(Piped::piped())
            .stderr(Piped::piped())
            .kill_on_drop(true);
        for var in &cfg.inherit_env {
            if let Some(v) = std::env::var_os(var) {
                cmd.env(var, v);
            }
        }
        cmd.envs(&cfg.env);
        if let Some(dir) = &cfg.cwd {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().map_err(|e| {
            ExecError::Retryable(format!("cannot start MCP server {name:?} ({program}): {e}"))
        })?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(ExecError::Fatal(format!(
                "MCP server {name:?}: the child's pipes are missing"
            )));
        };
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL)));
        let drainer = tokio::spawn(drain(stderr, tail.clone()));
        Ok(Stdio {
            name: name.to_string(),
            child,
            stdin: Some(stdin),
            stdout: BufReader::new(stdout),
            line: Vec::new(),
            max_line: cfg.max_response_bytes,
            stderr: tail,
            drainer,
        })
    }

    /// Writes one message as a line.
    pub(super) async fn send(&mut self, msg: &Value) -> Result<(), ExecError> {
        let mut line =
            serde_json::to_vec(msg).map_err(|e| ExecError::Fatal(format!("cannot encode a message: {e}")))?;
        line.push(b'\n');
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(ExecError::Fatal(format!(
                "MCP server {:?}: stdin is closed",
                self.name
            )));
        };
        let written = async {
            stdin.write_all(&line).await?;
            stdin.flush().await
        }
        .await;
        match written {
            Ok(()) => Ok(()),
            Err(_) => Err(self.gone().await),
        }
    }

    /// The next message: one line of JSON. Blank lines and lines that are not JSON (a server
    /// logging to stdout by mistake) are skipped; end of file is `None`.
    pub(super) async fn next(&mut self) -> Result<Option<Value>, ExecError> {
        loop {
            if !self.read_line().await? {
                return Ok(None);
            }
            let text = self.line.trim_ascii();
            if text.is_empty() {
                continue;
            }
            match serde_json::from_slice(text) {
                Ok(v) => return Ok(Some(v)),
                Err(e) => {
                    tracing::debug!(server = %self.name, error = %e, "skipping a stdout line that is not JSON")
                }
            }
        }
    }

    /// Reads one line (without its newline) into `self.line`, refusing one longer than
    /// `max_line`; false at end of file.
    async fn read_line(&mut self) -> Result<bool, ExecError> {
        self.line.clear();
        loop {
            let buf =
                self.stdout.fill_buf().await.map_err(|e| {
                    ExecError::Retryable(format!("reading from MCP server {:?}: {e}", self.name))
                })?;
            if buf.is_empty() {
                return Ok(!self.line.is_empty());
            }
            let (take, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (i, true),
                None => (buf.len(), false),
            };
            if self.line.len() + take > self.max_line {
                return Err(too_large(&self.name, self.max_line));
            }
            self.line.extend_from_slice(&buf[..take]);
            self.stdout.consume(if done { take + 1 } else { take });
            if done {
                return Ok(true);
            }
        }
    }

    /// The error for a server that stopped answering: its exit status (when it has exited
    /// within a moment) and the end of its stderr.
    pub(super) async fn gone(&mut self) -> ExecError {
        let status = tokio::time::timeout(STDIO_EXIT_GRACE, self.child.wait()).await;
        let status = match status {
            Ok(Ok(s)) => {
                // It has exited: its last words may still be in the pipe, not yet in the tail.
                let _ = tokio::time::timeout(STDIO_EXIT_GRACE, &mut self.drainer).await;
                format!("exited ({s})")
            }
            _ => "closed its stdout".to_string(),
        };
        let stderr = {
            let tail = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
            String::from_utf8_lossy(&tail.iter().copied().collect::<Vec<u8>>()).into_owned()
        };
        ExecError::Retryable(format!(
            "MCP server {:?} {status} before answering; stderr: {}",
            self.name,
            quote(&stderr)
        ))
    }

    /// Ends the process. Politely (close stdin; kill it if it has not exited after
    /// [`STDIO_EXIT_GRACE`], in the background) or, when `abrupt`, killed and reaped before
    /// this returns.
    pub(super) async fn close(mut self, abrupt: bool) {
        self.stdin = None;
        if abrupt {
            if let Err(e) = self.child.kill().await {
                tracing::debug!(server = %self.name, error = %e, "could not kill the MCP server");
            }
            return;
        }
        let mut child = self.child;
        tokio::spawn(async move {
            if tokio::time::timeout(STDIO_EXIT_GRACE, child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        });
    }
}

/// Reads `stderr` to its end, keeping the last [`STDERR_TAIL`] bytes in `tail`.
async fn drain(mut stderr: impl AsyncRead + Unpin, tail: Arc<Mutex<VecDeque<u8>>>) {
    let mut buf = [0u8; 1024];
    while let Ok(n) = stderr.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let mut tail = tail.lock().unwrap_or_else(|p| p.into_inner());
        tail.extend(&buf[..n]);
        let excess = tail.len().saturating_sub(STDERR_TAIL);
        tail.drain(..excess);
    }
}
