//! The `mcp` executor against a real MCP server nobody here wrote: the official Python SDK's
//! `MCPServer` (formerly FastMCP) running tests/python/fastmcp_server.py, over stdio and over
//! streamable HTTP, from the venv `scripts/deps-python.sh` makes. A few failure modes use
//! small shell commands as misbehaving servers.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cadre_agents::schema::validate;
use cadre_agents::{ExecContext, Report, Usage};
use cadre_proto::TaskId;
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use super::limits::QUOTE_CHARS;
use super::*;

/// How long a Python server may take to start (the test machine may be busy).
const PATIENCE: Duration = Duration::from_secs(180);

/// The workspace root: this crate is `agents/executors`.
fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).unwrap()
}

/// The venv `scripts/deps-python.sh` makes: `$CARGO_TARGET_DIR/pyenv`, else `target/pyenv`.
fn python() -> String {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|d| workspace().join(d))
        .unwrap_or_else(|| workspace().join("target"));
    let python = target.join("pyenv").join("bin").join("python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/deps-python.sh to install the Python MCP SDK these tests drive",
        python.display()
    );
    python.to_string_lossy().into_owned()
}

fn script() -> String {
    let path = workspace().join("tests/python/fastmcp_server.py");
    path.to_string_lossy().into_owned()
}

/// A fresh-process-per-task stdio server on the Python SDK.
fn stdio_server() -> McpServerConfig {
    let mut s = McpServerConfig::stdio(python(), &[&script(), "stdio"]);
    s.env.insert("PYTHONDONTWRITEBYTECODE".into(), "1".into());
    s.connect_timeout_ms = PATIENCE.as_millis() as u64;
    s
}

/// The Python SDK serving streamable HTTP on a free port; killed when dropped.
struct HttpServer {
    _child: Child,
    url: String,
}

async fn http_server() -> HttpServer {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(python())
        .arg(script())
        .args(["http", &port.to_string()])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the Python MCP server");
    let deadline = Instant::now() + PATIENCE;
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the Python MCP server exited ({status}) before listening on {port}");
        }
        assert!(
            Instant::now() < deadline,
            "the Python MCP server did not listen on {port}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    HttpServer {
        _child: child,
        url: format!("http://127.0.0.1:{port}/mcp"),
    }
}

fn http_config(url: &str) -> McpServerConfig {
    let mut s = McpServerConfig::http(url);
    s.connect_timeout_ms = PATIENCE.as_millis() as u64;
    s
}

fn client(servers: Vec<(&str, McpServerConfig)>) -> McpClient {
    let config = McpClientConfig {
        servers: servers.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
    };
    assert_eq!(config.validate(), Vec::<String>::new());
    McpClient::new(config)
}

/// Records the progress an attempt reports.
#[derive(Default)]
struct Recorder(Mutex<Vec<(f64, String)>>);

impl Report for Recorder {
    fn progress(&self, fraction: f64, message: String) {
        self.0.lock().unwrap().push((fraction, message));
    }
    fn usage(&self, _usage: Usage) {}
}

impl Recorder {
    fn saw(&self, message: &str) -> bool {
        self.0.lock().unwrap().iter().any(|(_, m)| m == message)
    }
}

fn context(cancel: CancellationToken, report: Arc<Recorder>) -> ExecContext {
    ExecContext::new(TaskId::new(), "system.mcp.call".into(), 1, cancel, report)
}

async fn call(exec: &McpClient, params: Value) -> Result<Value, ExecError> {
    exec.execute(crate::support::test_support::ctx(), params).await
}

/// Checks a real result against the published result schema, and returns it.
fn fits(exec: &McpClient, result: Result<Value, ExecError>) -> Value {
    let result = result.unwrap();
    validate(&exec.result_schema().unwrap(), &result).unwrap_or_else(|e| panic!("{result}: {e}"));
    result
}

fn fatal_with(result: Result<Value, ExecError>, needles: &[&str]) {
    match result {
        Err(ExecError::Fatal(m)) => {
            for n in needles {
                assert!(m.contains(n), "{m:?} lacks {n:?}");
            }
        }
        other => panic!("expected a fatal error with {needles:?}, got {other:?}"),
    }
}

/// The calls both transports must answer alike, run concurrently against server `s`.
async fn common_calls(exec: &McpClient, s: &str) {
    let (sum, echo, kept, failed, divided, unknown, bad, big) = tokio::join!(
        call(
            exec,
            json!({ "server": s, "tool": "add", "arguments": { "a": 2, "b": 3 } })
        ),
        call(
            exec,
            json!({ "server": s, "tool": "echo", "arguments": { "text": "héllo" } })
        ),
        call(
            exec,
            json!({ "server": s, "tool": "fail", "arguments": { "message": "kept" }, "return_tool_errors": true })
        ),
        call(
            exec,
            json!({ "server": s, "tool": "fail", "arguments": { "message": "boom" } })
        ),
        call(
            exec,
            json!({ "server": s, "tool": "divide", "arguments": { "a": 1, "b": 0 } })
        ),
        call(exec, json!({ "server": s, "tool": "no_such_tool" })),
        call(
            exec,
            json!({ "server": s, "tool": "add", "arguments": { "a": "two", "b": 3 } })
        ),
        call(
            exec,
            json!({ "server": "small", "tool": "big", "arguments": { "size": 100_000 } })
        ),
    );
    let sum = fits(exec, sum);
    assert_eq!(sum["structured_content"], json!({ "sum": 5 }), "{s}");
    assert_eq!(sum["is_error"], false);
    assert_eq!(sum["content"][0]["type"], "text");
    let echo = fits(exec, echo);
    assert_eq!(
        echo["content"],
        json!([{ "type": "text", "text": "héllo" }]),
        "{s}"
    );
    let kept = fits(exec, kept);
    assert_eq!(kept["is_error"], true);
    assert!(
        kept["content"][0]["text"].as_str().unwrap().contains("kept"),
        "{kept}"
    );
    fatal_with(failed, &["\"fail\"", "boom"]);
    fatal_with(divided, &["-32602", "b must not be 0", "tools/call"]);
    fatal_with(unknown, &["no_such_tool"]);
    fatal_with(bad, &["\"add\"", "validation error"]);
    fatal_with(big, &["max_response_bytes", "16384"]);
}

fn small(mut s: McpServerConfig) -> McpServerConfig {
    s.max_response_bytes = 16 * 1024;
    s
}

#[tokio::test]
async fn stdio_calls_reach_a_real_server() {
    let exec = client(vec![("py", stdio_server()), ("small", small(stdio_server()))]);
    common_calls(&exec, "py").await;
}

#[tokio::test]
async fn http_calls_reach_a_real_server() {
    let server = http_server().await;
    let mut authed = http_config(&server.url);
    // A variable cargo sets for the tests, standing in for a token variable.
    authed.bearer_token_env = Some("CARGO_PKG_NAME".into());
    authed.headers.insert("X-Cadre-Test".into(), "yes".into());
    let exec = client(vec![("web", authed), ("small", small(http_config(&server.url)))]);
    common_calls(&exec, "web").await;
    for (name, want) in [
        ("authorization", "Bearer cadre-executors"),
        ("x-cadre-test", "yes"),
    ] {
        let r = call(
            &exec,
            json!({ "server": "web", "tool": "header", "arguments": { "name": name } }),
        );
        let r = fits(&exec, r.await);
        assert_eq!(r["structured_content"], json!({ "result": want }), "{name}");
    }
}

#[tokio::test]
async fn params_are_checked_before_any_server_is_reached() {
    let mut limited = McpServerConfig::stdio("/nonexistent/never-started", &[]);
    limited.tools = Some(vec!["add".into()]);
    let exec = client(vec![("limited", limited)]);
    let err = call(&exec, json!({ "server": "nope", "tool": "add" }))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ExecError::InvalidParams("no MCP server named \"nope\" (configured: limited)".into())
    );
    let err = call(&exec, json!({ "server": "limited", "tool": "die" }))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ExecError::InvalidParams(m) if m.contains("\"die\" is not allowed")),
        "{err:?}"
    );
    let err = call(
        &exec,
        json!({ "server": "limited", "tool": "add", "arguments": [1] }),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ExecError::InvalidParams(_)), "{err:?}");
    let none = McpClient::new(McpClientConfig::default());
    let err = call(&none, json!({ "server": "x", "tool": "y" }))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ExecError::InvalidParams("no MCP server named \"x\" (configured: none)".into())
    );
}

#[tokio::test]
async fn a_missing_command_or_a_closed_port_is_retryable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let exec = client(vec![
        (
            "missing",
            McpServerConfig::stdio("/nonexistent/cadre-mcp-server", &[]),
        ),
        (
            "closed",
            McpServerConfig::http(format!("http://127.0.0.1:{port}/mcp")),
        ),
    ]);
    let err = call(&exec, json!({ "server": "missing", "tool": "t" }))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ExecError::Retryable(m) if m.contains("cannot start MCP server \"missing\"")),
        "{err:?}"
    );
    let err = call(&exec, json!({ "server": "closed", "tool": "t" }))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ExecError::Retryable(m) if m.contains(&format!("127.0.0.1:{port}"))),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_server_that_dies_is_retryable_and_quotes_its_stderr() {
    let exec = client(vec![("py", stdio_server())]);
    let err = call(
        &exec,
        json!({ "server": "py", "tool": "die", "arguments": { "code": 3 } }),
    )
    .await
    .unwrap_err();
    match err {
        ExecError::Retryable(m) => {
            assert!(m.contains("exit status: 3"), "{m}");
            assert!(m.contains("dying on request"), "{m}");
        }
        other => panic!("{other:?}"),
    }
}

/// Misbehaving servers played by the shell: an endless line, a silent one, and one speaking
/// an unknown protocol version.
#[tokio::test]
async fn misbehaving_servers_are_refused_within_bounds() {
    let sh = |script: &str| McpServerConfig::stdio("/bin/sh", &["-c", script]);
    let mut silent = sh("exec sleep 600");
    silent.connect_timeout_ms = 300;
    let exec = client(vec![
        ("endless", small(sh("exec cat /dev/zero"))),
        ("silent", silent),
        (
            "ancient",
            sh(
                r#"read line; echo '{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"1999-01-01","capabilities":{}}}'; exec sleep 600"#,
            ),
        ),
    ]);
    let err = call(&exec, json!({ "server": "endless", "tool": "t" })).await;
    fatal_with(err, &["max_response_bytes"]);
    let err = call(&exec, json!({ "server": "silent", "tool": "t" }))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ExecError::Retryable(m) if m.contains("did not complete initialize")),
        "{err:?}"
    );
    let err = call(&exec, json!({ "server": "ancient", "tool": "t" })).await;
    fatal_with(err, &["1999-01-01", "2025-06-18"]);
}

/// Starts the slow tool on `server`, waits until it reports progress, cancels the task and
/// returns the marker file's lines.
async fn cancel_the_slow_tool(exec: &McpClient, server: &str) -> (Vec<String>, PathBuf) {
    let marker = std::env::temp_dir().join(format!("cadre-mcp-{}", TaskId::new()));
    let cancel = CancellationToken::new();
    let report = Arc::new(Recorder::default());
    let params = json!({ "server": server, "tool": "slow",
        "arguments": { "seconds": 600, "marker": marker.to_string_lossy() } });
    let run = exec.execute(context(cancel.clone(), report.clone()), params);
    let watch = async {
        let deadline = Instant::now() + PATIENCE;
        while !report.saw("sleeping") {
            assert!(Instant::now() < deadline, "no progress from the slow tool");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        cancel.cancel();
    };
    let (result, ()) = tokio::join!(run, watch);
    assert_eq!(result, Err(ExecError::Cancelled));
    let seen = report.0.lock().unwrap().clone();
    assert!(seen.contains(&(0.25, "started".into())), "{seen:?}");
    assert!(seen.contains(&(0.5, "sleeping".into())), "{seen:?}");
    let lines = std::fs::read_to_string(&marker).unwrap();
    (lines.lines().map(str::to_string).collect(), marker)
}

#[tokio::test]
async fn cancelling_a_stdio_call_kills_the_server() {
    let exec = client(vec![("py", stdio_server())]);
    let (lines, marker) = cancel_the_slow_tool(&exec, "py").await;
    let pid = lines[0].strip_prefix("started ").unwrap();
    // Killed and reaped before execute returned.
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "{pid} still runs");
    std::fs::remove_file(marker).unwrap();
}

#[tokio::test]
async fn cancelling_an_http_call_cancels_it_on_the_server() {
    let server = http_server().await;
    let exec = client(vec![("web", http_config(&server.url))]);
    let (_, marker) = cancel_the_slow_tool(&exec, "web").await;
    // The server got notifications/cancelled (not just a dropped connection) and stopped the tool.
    wait_for_lines(&marker, &["notified: the task was cancelled", "cancelled"]).await;
    std::fs::remove_file(&marker).unwrap();

    // A call that outlives call_timeout_ms is cancelled the same way and may be retried.
    let mut hasty = http_config(&server.url);
    hasty.call_timeout_ms = 500;
    let exec = client(vec![("hasty", hasty)]);
    let params = json!({ "server": "hasty", "tool": "slow",
        "arguments": { "seconds": 600, "marker": marker.to_string_lossy() } });
    let err = call(&exec, params).await.unwrap_err();
    assert!(
        matches!(&err, ExecError::Retryable(m) if m.contains("timed out after 500ms")),
        "{err:?}"
    );
    wait_for_lines(&marker, &["notified: timed out after 500ms", "cancelled"]).await;
    std::fs::remove_file(&marker).unwrap();
}

/// Waits until the marker file holds every line of `want` (and the tool never finished).
async fn wait_for_lines(marker: &Path, want: &[&str]) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = std::fs::read_to_string(marker).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        assert!(!lines.contains(&"finished"), "{text}");
        if want.iter().all(|w| lines.contains(w)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the server never noted {want:?}: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn config_problems_are_all_named() {
    let toml_like = json!({ "servers": {
        "both": { "command": "x", "url": "http://h/mcp" },
        "neither": {},
        "bad": { "url": "ftp://h", "args": ["a"], "headers": { "Accept": "x", "bad name": "v" },
                 "connect_timeout_ms": 0, "max_response_bytes": 10, "tools": [""] },
        "ok": { "command": "/usr/bin/server", "tools": ["add"] },
    }});
    let config: McpClientConfig = serde_json::from_value(toml_like).unwrap();
    assert_eq!(
        config.validate(),
        vec![
            "mcp.servers.bad.url: \"ftp://h\" is not an http:// or https:// URL",
            "mcp.servers.bad.args: only for command servers",
            "mcp.servers.bad.headers: \"Accept\" is set by the client itself",
            "mcp.servers.bad.headers: \"bad name\" is not a header name",
            "mcp.servers.bad.tools: holds an empty name",
            "mcp.servers.bad.connect_timeout_ms: must be above 0",
            "mcp.servers.bad.max_response_bytes: must be in 1024..=268435456",
            "mcp.servers.both.command/url: set only one (stdio or streamable HTTP)",
            "mcp.servers.neither.command/url: set one (stdio or streamable HTTP)",
        ]
    );
    let unknown = serde_json::from_value::<McpClientConfig>(
        json!({ "servers": { "s": { "command": "x", "comand": "y" } } }),
    );
    assert!(
        unknown
            .unwrap_err()
            .to_string()
            .contains("unknown field `comand`")
    );
}

#[test]
fn tool_results_are_checked_and_tool_errors_fail() {
    let ok = tool_result(
        "s",
        "t",
        json!({ "content": [{ "type": "text", "text": "a" }] }),
        false,
    );
    assert_eq!(
        ok,
        Ok(
            json!({ "content": [{ "type": "text", "text": "a" }], "structured_content": null, "is_error": false })
        )
    );
    assert_eq!(
        tool_result("s", "t", json!({}), false).unwrap()["content"],
        json!([])
    );
    for bad in [
        json!({ "content": "text" }),
        json!({ "content": ["text"] }),
        json!({ "content": [], "structuredContent": [1] }),
    ] {
        fatal_with(tool_result("s", "t", bad, false), &["MCP server \"s\""]);
    }
    let long = "x".repeat(QUOTE_CHARS + 10);
    let failed = json!({ "isError": true, "content": [
        { "type": "text", "text": "first" }, { "type": "image", "data": "", "mimeType": "image/png" },
        { "type": "text", "text": long } ] });
    let err = tool_result("s", "t", failed.clone(), false)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("tool \"t\" on MCP server \"s\" failed: first\nxxx"),
        "{err}"
    );
    assert!(
        err.ends_with("x…") && err.len() < QUOTE_CHARS + 60,
        "{}",
        err.len()
    );
    assert_eq!(tool_result("s", "t", failed, true).unwrap()["is_error"], true);
}
