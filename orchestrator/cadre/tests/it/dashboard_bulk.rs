//! The dashboard's bulk form in headless Chromium: as an operator, filter the task list by
//! state and type, count with a dry run, cancel exactly the counted tasks, then replay the
//! failed ones; the node is asked what happened. An observer is not offered the form.

use std::time::Duration;

use cadre_proto::v1;

use crate::common::*;
use crate::dashboard::run_browser_script;

/// The browser half, run by node from tests/browser (where playwright-core is). Settings come
/// in the environment: CADRE_URL, CADRE_TOKEN (operator), CADRE_OBSERVER, CADRE_SHOTS. Prints
/// "bulk test passed" when every check held; exits 1 otherwise.
const BULK_SCRIPT: &str = r#####"
import path from "node:path";
import { check, runInChromium } from "./harness.mjs";

const env = process.env;
const url = env.CADRE_URL.replace(/\/$/, "");
let step = "start";

async function signIn(page, token) {
  await page.goto(`${url}/`);
  await page.fill("#login-token", token);
  await page.click("#login-form button[type=submit]");
  await page.locator("#session").waitFor({ state: "visible" });
  await page.evaluate(() => { location.hash = "#/tasks"; });
  await page.locator('#task-table[data-loaded="true"]').waitFor({ state: "attached" });
}

async function bulk(page, action, expectCount) {
  await page.selectOption("#bulk-action", action);
  await page.click("#bulk-count");
  await page.locator(`#bulk-result[data-matched="${expectCount}"]`).waitFor();
  const confirm = page.locator("#bulk-confirm");
  await confirm.waitFor({ state: "visible" });
  const [resp] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith(`/v1/bulk/${action}`) && !JSON.parse(r.request().postData()).dry_run),
    confirm.click(),
  ]);
  check(resp.status() === 200, `the ${action} answered ${resp.status()}`);
  const body = await resp.json();
  check(body.acted === expectCount, `${action} acted on ${body.acted}, counted ${expectCount}`);
  await page.locator(`#bulk-result[data-acted="${expectCount}"]`).waitFor();
  check(await confirm.isHidden(), "the confirm button is gone after the call");
  return body;
}

async function run(page) {
  step = "sign in as an operator";
  await signIn(page, env.CADRE_TOKEN);
  check(await page.locator("#bulk-panel").isVisible(), "the bulk form is offered to an operator");
  await page.click("#bulk-panel summary");

  step = "an empty filter is refused in the page";
  await page.click("#bulk-count");
  await page.locator("#bulk-result").filter({ hasText: "needs a filter" }).waitFor();
  check(await page.locator("#bulk-confirm").isHidden(), "nothing to confirm without a filter");

  step = "cancel the queued and running sleeps";
  await page.fill("#filter-prefix", "system.debug.sleep");
  await page.click('.chip:has(input[value="QUEUED"])');
  await page.click('.chip:has(input[value="RUNNING"])');
  const cancelled = await bulk(page, "cancel", 3);
  console.log(`cancelled: ${cancelled.task_ids.join(",")}`);

  step = "replay the failed ones with the error text";
  await page.click('.chip:has(input[value="QUEUED"])');
  await page.click('.chip:has(input[value="RUNNING"])');
  await page.fill("#filter-prefix", "");
  await page.click('.chip:has(input[value="FAILED"])');
  await page.fill("#bulk-error", "PAGE BOOM");
  const replayed = await bulk(page, "replay", 1);
  console.log(`replayed: ${replayed.replays[0].original_id} -> ${replayed.replays[0].task_id}`);

  step = "an observer is not offered the form";
  await page.click("#logout");
  await signIn(page, env.CADRE_OBSERVER);
  check(await page.locator("#bulk-panel").isHidden(), "no bulk form for an observer");
}

await runInChromium({ name: "bulk", run, step: () => step });
"#####;

#[tokio::test]
async fn bulk_cancel_and_replay_in_headless_chromium() {
    let node = TestNode::start("").await;
    let operator = issue(&node, "default", "operator").await;
    let observer = issue(&node, "default", "observer").await;
    let mut c = node.tasks_as(Some(&operator)).await;
    let mut sleeps = Vec::new();
    for _ in 0..3 {
        sleeps.push(
            submit(&mut c, spec("system.debug.sleep", r#"{"ms": 60000}"#))
                .await
                .id,
        );
    }
    let params = r#"{"message": "page boom", "retryable": false}"#;
    let failed = run(&mut c, fast_retry(spec("system.debug.fail", params), 1)).await;
    let other = run(
        &mut c,
        fast_retry(spec("system.debug.fail", r#"{"retryable": false}"#), 1),
    )
    .await;

    let output = run_browser_script(
        &node,
        BULK_SCRIPT,
        "bulk",
        &[("CADRE_TOKEN", &operator), ("CADRE_OBSERVER", &observer)],
    )
    .await;

    // What the node made of the clicks.
    let patience = Duration::from_secs(30);
    for id in &sleeps {
        eventually("a counted sleep cancelled", patience, || {
            let mut c = c.clone();
            async move { (state(&get(&mut c, id).await) == v1::TaskState::Cancelled).then_some(()) }
        })
        .await;
    }
    let line = output
        .lines()
        .find_map(|l| l.strip_prefix("replayed: "))
        .unwrap_or_else(|| panic!("no replay in:\n{output}"));
    let (original, copy) = line.trim().split_once(" -> ").unwrap();
    assert_eq!(original, failed.id);
    assert_ne!(original, other.id);
    assert_eq!(get(&mut c, copy).await.replay_of, failed.id);
}
