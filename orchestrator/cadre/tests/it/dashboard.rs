//! The web dashboard: served from the binary with its security headers, and driven end to end
//! in headless Chromium (tests/browser/dashboard.mjs) against a real node.

use crate::common::repo_root;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{TestNode, issue};

/// Screenshots dashboard.mjs must leave in target/screenshots (among others).
const SCREENSHOTS: [&str; 6] = [
    "laptop-overview",
    "laptop-tasks",
    "laptop-task",
    "phone-overview",
    "phone-tasks",
    "phone-task",
];

/// Debian's Chromium, which scripts/deps-browser.sh installs.
const CHROMIUM: &str = "/usr/bin/chromium";

/// An HTTP answer: status, lower-case header lines, body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// GET `path` with no credential at all, as a browser opening the page does.
async fn get_anonymous(node: &TestNode, path: &str) -> Answer {
    let addr = node.http.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let (head, body) = buf.split_once("\r\n\r\n").expect("an HTTP answer");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_string(),
    }
}

#[tokio::test]
async fn dashboard_is_served_without_a_credential_with_a_strict_policy() {
    let node = TestNode::start("").await;
    for (path, content_type, marker) in [
        (
            "/",
            "text/html",
            "<script type=\"module\" src=\"/assets/app.js\">",
        ),
        ("/assets/app.js", "text/javascript", "new WebSocket("),
        ("/assets/style.css", "text/css", "@media (max-width: 640px)"),
        ("/assets/favicon.svg", "image/svg+xml", "<svg"),
    ] {
        let a = get_anonymous(&node, path).await;
        assert_eq!(a.status, 200, "GET {path}: {}", a.body);
        let ct = a.header("content-type").unwrap_or_default();
        assert!(ct.starts_with(content_type), "GET {path}: content-type {ct}");
        let csp = a.header("content-security-policy").unwrap_or_default();
        assert!(
            csp.contains("default-src 'self'") && csp.contains("connect-src 'self' ws: wss:"),
            "GET {path}: content-security-policy {csp:?}"
        );
        assert_eq!(a.header("x-content-type-options"), Some("nosniff"), "GET {path}");
        assert!(a.body.contains(marker), "GET {path} lacks {marker:?}");
    }
    for path in ["/assets/nope.js", "/assets/..%2Fdashboard.rs"] {
        let a = get_anonymous(&node, path).await;
        assert_eq!(a.status, 404, "GET {path}: {}", a.body);
        assert_eq!(a.header("x-content-type-options"), Some("nosniff"), "GET {path}");
    }
}

/// What is missing for the browser test, as a message naming the fix.
fn browser_deps_missing(browser_dir: &Path) -> Option<String> {
    let mut missing = Vec::new();
    if !Path::new(CHROMIUM).exists() {
        missing.push(format!("{CHROMIUM} (Debian's chromium)"));
    }
    if !browser_dir.join("node_modules/playwright-core").is_dir() {
        missing.push("tests/browser/node_modules (playwright-core)".to_string());
    }
    if Command::new("node").arg("--version").output().is_err() {
        missing.push("node".to_string());
    }
    (!missing.is_empty()).then(|| {
        format!(
            "the dashboard browser test needs {}: run scripts/deps-browser.sh",
            missing.join(", ")
        )
    })
}

/// Runs tests/browser/dashboard.mjs against a real node: sign in, submit a task and watch it
/// reach SUCCEEDED live, open its timeline, scale a pool, phone width, no console errors; then
/// as an observer of another tenant: no actions offered, none of the other tenant's tasks.
#[tokio::test]
async fn dashboard_works_in_headless_chromium() {
    let root = repo_root();
    let browser_dir = root.join("tests/browser");
    if let Some(why) = browser_deps_missing(&browser_dir) {
        panic!("{why}");
    }
    let node = TestNode::start("").await;
    let token = issue(&node, "default", "commander").await;
    let observer = issue(&node, "acme", "observer").await;
    let shots = root.join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    for name in SCREENSHOTS.iter().chain(&["failure"]) {
        let _ = std::fs::remove_file(shots.join(format!("{name}.png")));
    }
    let log_path = shots.join("dashboard.log");
    let log = std::fs::File::create(&log_path).unwrap();

    let mut child = tokio::process::Command::new("node")
        .arg(browser_dir.join("dashboard.mjs"))
        .arg(&node.http)
        .arg(&token)
        .arg(&shots)
        .arg(&observer)
        .current_dir(&browser_dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn node");
    let status = tokio::time::timeout(Duration::from_secs(300), child.wait())
        .await
        .expect("tests/browser/dashboard.mjs finishes within 5 minutes")
        .unwrap();
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        status.success(),
        "dashboard.mjs failed ({status}):\n{output}\nnode log:\n{}",
        crate::common::read_log(&node.dir)
    );
    assert!(output.contains("dashboard test passed"), "{output}");
    for name in SCREENSHOTS {
        let png = shots.join(format!("{name}.png"));
        let len = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
        assert!(len > 1000, "{} missing or empty", png.display());
    }
}
