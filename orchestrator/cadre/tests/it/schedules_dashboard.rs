//! The dashboard's Schedules page in headless Chromium: an operator sees a schedule with its
//! next fire times, pauses it, resumes it and triggers it with the row's buttons; the node
//! agrees at each step.

use cadre_proto::v1;

use crate::common::*;
use crate::dashboard::run_browser_script;
use crate::schedules::schedules_as;

/// The browser half, run by node from tests/browser (where playwright-core is). Settings in
/// the environment: CADRE_URL, CADRE_TOKEN, SCHEDULE_ID. Prints "schedules test passed" when
/// every check held; exits 1 otherwise.
const SCRIPT: &str = r#####"
import path from "node:path";
import { check, runInChromium } from "./harness.mjs";

const env = process.env;
const url = env.CADRE_URL.replace(/\/$/, "");
const id = env.SCHEDULE_ID;
let step = "start";

/** Clicks the row's `verb` button and waits for the node's answer. */
async function press(page, verb) {
  step = verb;
  const row = page.locator(`#schedule-table tr[data-id="${id}"]`);
  const [r] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith(`/v1/schedules/${id}/${verb}`)),
    row.locator(`button[data-verb="${verb}"]`).click(),
  ]);
  if (r.status() !== 200) throw new Error(`${verb} answered ${r.status()}`);
  return row;
}

async function run(page) {
  step = "sign in";
  await page.goto(`${url}/`);
  await page.fill("#login-token", env.CADRE_TOKEN);
  await page.click("#login-form button[type=submit]");
  await page.locator("#session").waitFor({ state: "visible" });
  step = "the page lists the schedule";
  await page.click('#nav a[data-view="schedules"]');
  const row = page.locator(`#schedule-table tr[data-id="${id}"]`);
  await row.waitFor();
  if (!(await row.textContent()).includes("system.debug.echo")) throw new Error("no task type in the row");
  await press(page, "pause");
  await row.filter({ hasText: "paused" }).waitFor();
  await press(page, "resume");
  await row.locator('button[data-verb="pause"]').waitFor();
  await press(page, "trigger");
}

await runInChromium({ name: "schedules", run, step: () => step });
"#####;

#[tokio::test]
async fn the_dashboard_pauses_resumes_and_triggers_a_schedule() {
    let node = TestNode::start("").await;
    let operator = issue(&node, "default", "operator").await;
    let mut c = schedules_as(&node, Some(&operator)).await;
    let s = c
        .create_schedule(v1::CreateScheduleRequest {
            cron: "0 0 12 * * *".into(),
            time_zone: "Europe/Paris".into(),
            task: Some(spec("system.debug.echo", "{}")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    run_browser_script(
        &node,
        SCRIPT,
        "schedules",
        &[("CADRE_TOKEN", &operator), ("SCHEDULE_ID", &s.id)],
    )
    .await;
    let now = c
        .get_schedule(v1::GetScheduleRequest { id: s.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert!(!now.paused, "resumed through the page");
    assert_eq!(now.fires, 1, "triggered once through the page: {now:?}");
}
