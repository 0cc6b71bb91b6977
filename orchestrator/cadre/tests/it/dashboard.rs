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
        ("/assets/app.js", "text/javascript", "from \"./workflow.js\""),
        ("/assets/api.js", "text/javascript", "new WebSocket("),
        ("/assets/ui.js", "text/javascript", "export function h("),
        ("/assets/workflow.js", "text/javascript", "/signals/"),
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
pub(crate) fn browser_deps_missing(browser_dir: &Path) -> Option<String> {
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
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(browser_dir.join("dashboard.mjs"))
        .arg(&node.http)
        .arg(&token)
        .arg(&shots)
        .arg(&observer)
        .current_dir(&browser_dir);
    let (status, output) = run_logged(cmd, &shots.join("dashboard.log")).await;
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

/// The browser half of `workflow_steps_and_approvals_in_headless_chromium`, run by node from
/// tests/browser (where playwright-core is). Once signed in, it starts an instance of `ship`
/// and opens it at once, while its first step still runs, and watches the steps list change
/// live; approves the gate with a comment through the page; checks that a refused decision is
/// shown, not swallowed; rejects a second instance's gate with a comment. Settings come in the
/// environment: CADRE_URL, CADRE_TOKEN, CADRE_SHOTS. It prints the instances it started
/// ("approve: <id>", "reject: <id>"), and "workflow test passed" when every check held;
/// exits 1 otherwise.
const WORKFLOW_SCRIPT: &str = r#####"
import { check, fitsWidth, runInChromium, shot } from "./harness.mjs";

const env = process.env;
const url = env.CADRE_URL.replace(/\/$/, "");
const PATIENCE = 60_000;
let step = "start";
let refusalExpected = false;
const go = async (page, hash, ready) => {
  await page.evaluate((h) => { location.hash = h; }, hash);
  await page.locator(ready).first().waitFor({ state: "visible" });
};
/** Starts an instance of `ship` through the API (what is tested is the page, not this). */
const startShip = async (label) => {
  const resp = await fetch(`${url}/v1/tasks`, {
    method: "POST",
    headers: { Authorization: `Bearer ${env.CADRE_TOKEN}`, "Content-Type": "application/json" },
    body: JSON.stringify({ task_type: "workflow.ship.run", params: {} }),
  });
  const json = await resp.json();
  check(resp.ok, `starting ship answered ${resp.status}: ${JSON.stringify(json)}`);
  console.log(`${label}: ${json.task.id}`);
  return json.task.id;
};
const stepLi = (page, id, state) => page.locator(`#steps li[data-step="${id}"]${state ? `[data-state="${state}"]` : ""}`);

async function run(page) {
  step = "sign in";
  await page.goto(`${url}/`);
  await page.fill("#login-token", env.CADRE_TOKEN);
  await page.click("#login-form button[type=submit]");
  await page.locator("#session").waitFor({ state: "visible" });

  step = "the instance's steps, live";
  await page.locator('#task-table[data-loaded="true"]').waitFor({ state: "attached" });
  const approveId = await startShip("approve");
  await go(page, `#/tasks/${approveId}`, "#workflow-steps");
  await page.evaluate(() => { window.__notReloaded = true; });
  // Step a sleeps 2 s: the page opens before the gate waits, and must see it start waiting.
  await stepLi(page, "a").waitFor();
  const first = await stepLi(page, "a").getAttribute("data-state");
  check(["PENDING", "RUNNING"].includes(first), `step a is under way when the page opens (${first})`);
  await stepLi(page, "gate", "WAITING").waitFor({ timeout: PATIENCE });
  check(await page.evaluate(() => window.__notReloaded === true), "the steps changed without a reload");
  const ids = await page.locator("#steps > li").evaluateAll((lis) => lis.map((li) => li.dataset.step));
  check(JSON.stringify(ids) === JSON.stringify(["a", "gate", "after"]), `the steps are listed in order (${ids})`);
  check((await stepLi(page, "a").getAttribute("data-state")) === "SUCCEEDED", "step a shows SUCCEEDED");
  check((await stepLi(page, "after").getAttribute("data-state")) === "PENDING", "step after shows PENDING");
  const took = (await stepLi(page, "a").locator(".step-dur").textContent()).trim();
  check(/^\d+(\.\d+)? s$/.test(took), `step a's duration is readable (${took})`);
  check((await stepLi(page, "a").locator(".step-output").textContent()).includes("2000"), "step a's output is shown");
  check((await stepLi(page, "a").locator(".step-tasks a").count()) === 1, "step a links its task");
  check((await stepLi(page, "gate").locator(".badge").textContent()) === "WAITING", "the gate's badge says WAITING");
  check((await stepLi(page, "gate").locator(".approval-prompt").textContent()) === "Ship it?", "the gate shows its prompt");
  const approve = stepLi(page, "gate").getByRole("button", { name: "Approve" });
  check(await approve.isEnabled(), "Approve is offered");
  check(await stepLi(page, "gate").getByRole("button", { name: "Reject" }).isEnabled(), "Reject is offered");
  await fitsWidth(page, "workflow instance");
  await shot(page, "laptop-workflow");

  step = "approve through the page";
  await stepLi(page, "gate").locator(".approval-comment").fill("looks good");
  // Enter in the comment decides nothing.
  await stepLi(page, "gate").locator(".approval-comment").press("Enter");
  await page.waitForTimeout(300);
  check((await stepLi(page, "gate").getAttribute("data-state")) === "WAITING", "Enter in the comment sends nothing");
  const [sent] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith(`/v1/tasks/${approveId}/signals/gate`)),
    approve.click(),
  ]);
  check(sent.status() === 200, `the approval answered ${sent.status()}`);
  check(JSON.parse(sent.request().postData()).comment === "looks good", "the comment is sent");
  await stepLi(page, "gate", "SUCCEEDED").waitFor({ timeout: PATIENCE });
  await page.locator('#task-state[data-state="SUCCEEDED"]').waitFor({ timeout: PATIENCE });
  await stepLi(page, "after", "SUCCEEDED").waitFor({ timeout: PATIENCE });
  const output = await stepLi(page, "gate").locator(".step-output").textContent();
  check(output.includes('"decision": "approve"') && output.includes("looks good"), `the gate's output records the approval: ${output}`);
  check((await stepLi(page, "gate").locator(".approval").count()) === 0, "a decided gate offers no buttons");
  check(await page.evaluate(() => window.__notReloaded === true), "the page was not reloaded");

  step = "a refused decision is shown";
  const rejectId = await startShip("reject");
  await go(page, `#/tasks/${rejectId}`, '#steps li[data-step="gate"][data-state="WAITING"] .approval-form');
  await page.route("**/signals/**", (route) =>
    route.fulfill({ status: 409, contentType: "application/json", body: JSON.stringify({ error: { code: "failed_precondition", message: "step gate <b>was</b> decided already" } }) }),
  );
  refusalExpected = true;
  await stepLi(page, "gate").getByRole("button", { name: "Reject" }).click();
  const shown = stepLi(page, "gate").locator(".approval-error");
  await shown.filter({ hasText: "decided already" }).waitFor();
  check((await shown.textContent()).includes("<b>was</b>"), "the refusal is shown as text, not markup");
  check(await stepLi(page, "gate").getByRole("button", { name: "Approve" }).isDisabled(), "after a 409 the buttons wait for the page to catch up");
  await page.unroute("**/signals/**");
  refusalExpected = false;

  step = "reject through the page";
  await go(page, "#/tasks", "#task-table");
  await go(page, `#/tasks/${rejectId}`, '#steps li[data-step="gate"][data-state="WAITING"] .approval-form');
  await stepLi(page, "gate").locator(".approval-comment").fill("not today");
  await stepLi(page, "gate").getByRole("button", { name: "Reject" }).click();
  await page.locator('#task-state[data-state="FAILED"]').waitFor({ timeout: PATIENCE });
  await stepLi(page, "gate", "FAILED").waitFor({ timeout: PATIENCE });
  check((await stepLi(page, "gate").locator(".step-error").textContent()).includes("not today"), "the gate's error names the comment");
  check((await stepLi(page, "after").getAttribute("data-state")) !== "SUCCEEDED", "nothing runs after a rejection");

  step = "phone width";
  await page.setViewportSize({ width: 390, height: 844 });
  await go(page, `#/tasks/${approveId}`, "#workflow-steps");
  await fitsWidth(page, "workflow instance on a phone");
  await shot(page, "phone-workflow");
}

await runInChromium({ name: "workflow", run, step: () => step, ignore: (t) => refusalExpected && t.includes("409") });
"#####;

/// A workflow instance's page in headless Chromium: its steps with their states, durations
/// and outputs, kept live; its waiting approval with the prompt and Approve and Reject, decided
/// through the page (not the API) by an operator; a refusal shown. Then the node is asked
/// what happened: the approved instance SUCCEEDED with the decision recorded in the gate's
/// output, the rejected one FAILED with the comment in its error.
#[tokio::test]
async fn workflow_steps_and_approvals_in_headless_chromium() {
    use crate::workflows::{finished, register, result, step_output, step_state};
    use cadre_proto::v1::TaskState;

    let node = TestNode::start("").await;
    register(
        &node,
        &serde_json::json!({"name": "ship", "version": 1, "steps": [
            {"id": "a", "task": "system.debug.sleep", "params": {"ms": 2000}},
            {"id": "gate", "needs": ["a"], "wait": {"approval": {"prompt": "Ship it?"}}},
            {"id": "after", "needs": ["gate"], "task": "system.debug.echo",
             "params": {"by": "${{ steps.gate.output.by }}"}}
        ]}),
    )
    .await;
    let operator = issue(&node, "default", "operator").await;

    let shots = repo_root().join("target/screenshots");
    for name in ["laptop-workflow", "phone-workflow", "workflow-failure"] {
        let _ = std::fs::remove_file(shots.join(format!("{name}.png")));
    }
    let output = run_browser_script(&node, WORKFLOW_SCRIPT, "workflow", &[("CADRE_TOKEN", &operator)]).await;

    // What the node made of the clicks.
    let started = |label: &str| {
        output
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{label}: ")))
            .unwrap_or_else(|| panic!("no {label} instance in:\n{output}"))
            .trim()
            .to_string()
    };
    let c = node.tasks().await;
    let patience = Duration::from_secs(30);
    let t = finished(&c, &started("approve"), patience).await;
    assert_eq!(crate::common::state(&t), TaskState::Succeeded, "{t:?}");
    let gate = step_output(&t, "gate");
    assert_eq!(gate["decision"], "approve", "{gate}");
    assert_eq!(gate["comment"], "looks good", "{gate}");
    assert_eq!(gate["by"], "operator-default", "{gate}");
    assert_eq!(step_state(&t, "after"), "SUCCEEDED");
    assert_eq!(result(&t)["after"]["by"], "operator-default", "{t:?}");

    let t = finished(&c, &started("reject"), patience).await;
    assert_eq!(crate::common::state(&t), TaskState::Failed, "{t:?}");
    assert!(t.error.contains("not today"), "{}", t.error);
    assert_eq!(step_state(&t, "gate"), "FAILED");
    let gate = t.steps.iter().find(|s| s.id == "gate").expect("gate");
    assert_eq!(gate.error, "rejected by operator-default: not today");
    assert_ne!(step_state(&t, "after"), "SUCCEEDED");
}

/// Runs one embedded browser script (its `name` as given to `runInChromium` in
/// tests/browser/harness.mjs) with node from tests/browser, against `node` (CADRE_URL), with
/// `env` and CADRE_SHOTS = target/screenshots; panics with its output and the node's log unless
/// it printed "<name> test passed". Returns its output (also in target/screenshots/<name>.log).
pub(crate) async fn run_browser_script(
    node: &TestNode,
    script: &str,
    name: &str,
    env: &[(&str, &str)],
) -> String {
    let root = repo_root();
    let browser_dir = root.join("tests/browser");
    if let Some(why) = browser_deps_missing(&browser_dir) {
        panic!("{why}");
    }
    let shots = root.join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let mut cmd = tokio::process::Command::new("node");
    cmd.args(["--input-type=module", "-e", script])
        .env("CADRE_URL", &node.http)
        .env("CADRE_SHOTS", &shots)
        .envs(env.iter().copied())
        .current_dir(&browser_dir);
    let (status, output) = run_logged(cmd, &shots.join(format!("{name}.log"))).await;
    assert!(
        status.success() && output.contains(&format!("{name} test passed")),
        "the {name} browser test failed ({status}):\n{output}\nnode log:\n{}",
        crate::common::read_log(&node.dir)
    );
    output
}

/// Runs a browser script (`cmd`, set up but not started) with its output going to `log_path`,
/// for at most 5 minutes; its exit status and everything it printed.
pub(crate) async fn run_logged(
    mut cmd: tokio::process::Command,
    log_path: &Path,
) -> (std::process::ExitStatus, String) {
    let log = std::fs::File::create(log_path).unwrap();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn node");
    let status = tokio::time::timeout(Duration::from_secs(300), child.wait())
        .await
        .unwrap_or_else(|_| panic!("{}: the browser script ran over 5 minutes", log_path.display()))
        .unwrap();
    (status, std::fs::read_to_string(log_path).unwrap_or_default())
}
