//! The dashboard's pauses in headless Chromium: a supervisor pauses a pool through the
//! overview's form, sees it listed and the pool marked paused in the tree, and resumes it with
//! its button; the node agrees at each step.

use cadre_proto::v1;

use crate::common::*;
use crate::dashboard::run_browser_script;

/// The browser half, run by node from tests/browser (where playwright-core is). Settings in
/// the environment: CADRE_URL, CADRE_TOKEN. Prints "paused" once the pause is shown and
/// "pauses test passed" when every check held; exits 1 otherwise.
const SCRIPT: &str = r#####"
import path from "node:path";
import { check, runInChromium } from "./harness.mjs";

const env = process.env;
const url = env.CADRE_URL.replace(/\/$/, "");
let step = "start";

async function run(page) {
  step = "sign in";
  await page.goto(`${url}/`);
  await page.fill("#login-token", env.CADRE_TOKEN);
  await page.click("#login-form button[type=submit]");
  await page.locator("#session").waitFor({ state: "visible" });
  await page.locator('[data-pool="intelligence/writer"]').waitFor();
  check((await page.locator("#pauses").textContent()).includes("Nothing is paused"), "nothing paused at first");

  step = "pause a pool through the form";
  await page.locator("#pause-form").evaluate((f) => { f.closest("details").open = true; });
  await page.selectOption("#pause-scope", "pool");
  check(await page.locator("#pause-prefix").isHidden(), "fields of other scopes are hidden");
  await page.fill("#pause-supervisor", "intelligence");
  await page.fill("#pause-kind", "writer");
  await page.fill("#pause-reason", "browser test");
  const [sent] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/v1/pauses") && r.request().method() === "POST"),
    page.click("#pause-form button[type=submit]"),
  ]);
  check(sent.status() === 201, `the pause answered ${sent.status()}`);
  const item = page.locator('.pause-item[data-pause="pool intelligence/writer"]');
  await item.waitFor();
  check((await item.textContent()).includes("browser test"), "the reason is shown");
  await page.locator('tr.paused[data-pool="intelligence/writer"]').waitFor();
  console.log("paused");

  step = "a refused pause is shown";
  await page.fill("#pause-kind", "nosuch");
  await page.click("#pause-form button[type=submit]");
  await page.locator("#pause-error").filter({ hasText: "Refused" }).waitFor();

  step = "resume with the button";
  const [resumed] = await Promise.all([
    page.waitForResponse((r) => r.url().includes("/v1/pauses?") && r.request().method() === "DELETE"),
    item.getByRole("button", { name: "Resume" }).click(),
  ]);
  check(resumed.status() === 200, `the resume answered ${resumed.status()}`);
  await page.locator("#pauses").filter({ hasText: "Nothing is paused" }).waitFor();
  await page.locator('tr.paused[data-pool="intelligence/writer"]').waitFor({ state: "detached" });
}

await runInChromium({ name: "pauses", run, step: () => step, ignore: (t) => t.includes("404") });
"#####;

#[tokio::test]
async fn the_dashboard_pauses_and_resumes_a_pool() {
    let node = TestNode::start("").await;
    let supervisor = issue(&node, "default", "supervisor").await;
    run_browser_script(&node, SCRIPT, "pauses", &[("CADRE_TOKEN", &supervisor)]).await;
    let mut admin = node.admin().await;
    let now = admin
        .list_pauses(v1::ListPausesRequest {})
        .await
        .unwrap()
        .into_inner()
        .pauses;
    assert!(now.is_empty(), "resumed through the page: {now:?}");
}
