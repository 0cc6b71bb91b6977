//! The dashboard's Schedules page in headless Chromium: an operator sees a schedule with its
//! next fire times, pauses it, resumes it and triggers it with the row's buttons; creates one
//! from the form (a bad cron expression first: the node's error shows and nothing is made);
//! deletes one from its row after confirming; a viewer's create is refused by the node. The
//! node agrees at each step over gRPC.

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

/// The browser half of the create and delete tests. Settings in the environment: CADRE_URL,
/// CADRE_TOKEN, MODE (`create`: a bad cron, then a good one; `refused`: one create that the
/// node refuses with 403; `delete`: SCHEDULE_ID is deleted, KEEP_ID stays). Prints
/// "schedule-<MODE> test passed" when every check held; exits 1 otherwise.
const FORM_SCRIPT: &str = r#####"
import { check, runInChromium } from "./harness.mjs";

const env = process.env;
const url = env.CADRE_URL.replace(/\/$/, "");
const mode = env.MODE;
/** A name with markup: the page must show it as text. */
const NAME = `nightly <img src=x onerror="window.pwned=1"> & "co"`;
let step = "start";

/** Signs in with CADRE_TOKEN and opens the schedules page. */
async function open(page) {
  step = "sign in";
  await page.goto(`${url}/`);
  await page.fill("#login-token", env.CADRE_TOKEN);
  await page.click("#login-form button[type=submit]");
  await page.locator("#session").waitFor({ state: "visible" });
  step = "open the schedules page";
  await page.click('#nav a[data-view="schedules"]');
  await page.locator("#schedule-form").waitFor({ state: "attached" });
}

/** Fills the form with a cron schedule on `cron`. */
async function fill(page, cron) {
  step = `fill the form (${cron})`;
  await page.fill("#schedule-name", NAME);
  await page.fill("#schedule-type", "system.debug.echo");
  await page.selectOption("#schedule-timing", "cron");
  await page.fill("#schedule-cron", cron);
  await page.fill("#schedule-zone", "Europe/Paris");
  await page.selectOption("#schedule-missed", "run_once");
  await page.selectOption("#schedule-overlap", "skip");
  await page.fill("#schedule-params", '{"n": 7}');
}

/** Clicks Create; the node's answer (status and JSON body). */
async function submit(page) {
  step = "submit";
  const [r] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/v1/schedules") && r.request().method() === "POST"),
    page.click("#schedule-create"),
  ]);
  return { status: r.status(), body: await r.json() };
}

/** The refusal shows next to the form with the node's message, and the form kept its values. */
async function refusedKeepsForm(page, r, status, cron) {
  step = `a ${status} refusal shows`;
  check(r.status === status, `the node answered ${r.status}, not ${status}: ${JSON.stringify(r.body)}`);
  const message = r.body.error.message;
  check(message, "the refusal has a message");
  await page.locator("#schedule-error", { hasText: message }).waitFor();
  check((await page.inputValue("#schedule-cron")) === cron, "the form kept the cron expression");
  check((await page.inputValue("#schedule-name")) === NAME, "the form kept the name");
  check((await page.inputValue("#schedule-zone")) === "Europe/Paris", "the form kept the zone");
  check((await page.inputValue("#schedule-params")) === '{"n": 7}', "the form kept the params");
  check((await page.inputValue("#schedule-overlap")) === "skip", "the form kept the overlap policy");
}

async function create(page) {
  await open(page);
  check(await page.locator("#schedule-panel").evaluate((d) => d.open), "the form is open for an operator");
  await fill(page, "61 * * * * *");
  await refusedKeepsForm(page, await submit(page), 400, "61 * * * * *");
  check((await page.locator("#schedule-table tbody tr").count()) === 0, "the bad schedule is not listed");
  await page.fill("#schedule-cron", "0 30 9 * * Mon-Fri");
  const r = await submit(page);
  check(r.status === 201, `created: ${r.status} ${JSON.stringify(r.body)}`);
  step = "the new schedule is listed with its next fire times";
  const row = page.locator(`#schedule-table tr[data-id="${r.body.schedule.id}"]`);
  await row.waitFor();
  const text = await row.textContent();
  check(text.includes(NAME), `the name shows as text: ${text}`);
  check((await row.locator("img").count()) === 0, "no markup from the name");
  check(await page.evaluate(() => window.pwned === undefined), "no script from the name");
  check(text.includes("0 30 9 * * Mon-Fri (Europe/Paris)"), `the cron and zone show: ${text}`);
  const fires = await row.locator("td.col-time").textContent();
  check(fires.split(",").length === 5, `five next fire times show: ${fires}`);
  check((await page.textContent("#schedule-error")) === "", "the old error is gone");
  if (env.CADRE_SHOTS) await page.screenshot({ path: `${env.CADRE_SHOTS}/schedule-create.png`, fullPage: true });
  console.log(`created ${r.body.schedule.id}`);
}

async function refused(page) {
  await open(page);
  step = "the viewer is told the node will refuse";
  await page.locator("#schedule-role-note").waitFor();
  await page.click("#schedule-panel summary");
  await fill(page, "0 0 8 * * *");
  await refusedKeepsForm(page, await submit(page), 403, "0 0 8 * * *");
}

async function remove(page) {
  await open(page);
  const row = page.locator(`#schedule-table tr[data-id="${env.SCHEDULE_ID}"]`);
  const kept = page.locator(`#schedule-table tr[data-id="${env.KEEP_ID}"]`);
  await kept.waitFor();
  step = "Delete asks first; Keep takes it back";
  await row.locator('button[data-verb="delete"]').click();
  await row.locator('button[data-verb="keep"]').click();
  await row.locator('button[data-verb="delete"]').click();
  step = "confirm the delete";
  const [r] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith(`/v1/schedules/${env.SCHEDULE_ID}`) && r.request().method() === "DELETE"),
    row.locator('button[data-verb="confirm-delete"]').click(),
  ]);
  check(r.status() === 204, `delete answered ${r.status()}`);
  step = "the row goes away";
  await row.waitFor({ state: "detached" });
  check((await kept.count()) === 1, "the other schedule is still listed");
}

const runs = { create, refused, delete: remove };
await runInChromium({
  name: `schedule-${mode}`,
  run: runs[mode],
  step: () => step,
  // The expected refusals are logged by Chromium as failed loads.
  ignore: (t) => t.includes("Failed to load resource") && /status of (400|403)/.test(t),
});
"#####;

/// Every schedule of the default tenant, read over gRPC with `credential`.
async fn all_schedules(node: &TestNode, credential: &str) -> Vec<v1::Schedule> {
    schedules_as(node, Some(credential))
        .await
        .list_schedules(v1::ListSchedulesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .schedules
}

#[tokio::test]
async fn the_dashboard_creates_a_cron_schedule_after_showing_a_bad_cron_error() {
    let node = TestNode::start("").await;
    let operator = issue(&node, "default", "operator").await;
    let out = run_browser_script(
        &node,
        FORM_SCRIPT,
        "schedule-create",
        &[("CADRE_TOKEN", &operator), ("MODE", "create")],
    )
    .await;
    let list = all_schedules(&node, &operator).await;
    assert_eq!(list.len(), 1, "only the good schedule was made: {list:?}");
    let s = &list[0];
    assert!(out.contains(&format!("created {}", s.id)), "{out}");
    assert_eq!(s.cron, "0 30 9 * * Mon-Fri");
    assert_eq!(s.time_zone, "Europe/Paris");
    assert_eq!(s.missed, v1::MissedTickPolicy::RunOnce as i32);
    assert_eq!(s.overlap, v1::OverlapPolicy::Skip as i32);
    assert_eq!(s.every_ms, 0);
    assert!(!s.paused);
    assert_eq!(s.name, r#"nightly <img src=x onerror="window.pwned=1"> & "co""#);
    let task = s.task.as_ref().expect("the schedule's task");
    assert_eq!(task.task_type, "system.debug.echo");
    let params: serde_json::Value = serde_json::from_str(&task.params_json).unwrap();
    assert_eq!(params, serde_json::json!({"n": 7}));
}

#[tokio::test]
async fn the_dashboard_deletes_a_schedule_from_its_row() {
    let node = TestNode::start("").await;
    let operator = issue(&node, "default", "operator").await;
    let mut c = schedules_as(&node, Some(&operator)).await;
    let mut make = async |name: &str| {
        c.create_schedule(v1::CreateScheduleRequest {
            name: name.into(),
            every_ms: 60_000,
            task: Some(spec("system.debug.echo", "{}")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .id
    };
    let gone = make("gone").await;
    let kept = make("kept").await;
    run_browser_script(
        &node,
        FORM_SCRIPT,
        "schedule-delete",
        &[
            ("CADRE_TOKEN", &operator),
            ("MODE", "delete"),
            ("SCHEDULE_ID", &gone),
            ("KEEP_ID", &kept),
        ],
    )
    .await;
    let ids: Vec<String> = all_schedules(&node, &operator)
        .await
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, vec![kept], "only the confirmed delete happened");
    let status = schedules_as(&node, Some(&operator))
        .await
        .get_schedule(v1::GetScheduleRequest { id: gone })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn the_dashboard_shows_a_viewers_refused_create() {
    let node = TestNode::start("").await;
    let observer = issue(&node, "default", "observer").await;
    run_browser_script(
        &node,
        FORM_SCRIPT,
        "schedule-refused",
        &[("CADRE_TOKEN", &observer), ("MODE", "refused")],
    )
    .await;
    let list = all_schedules(&node, &node.credential()).await;
    assert!(list.is_empty(), "the refused create made nothing: {list:?}");
}
