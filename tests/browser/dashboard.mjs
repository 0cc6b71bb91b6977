// End-to-end test of the cadre web dashboard in headless Chromium.
//
//   node tests/browser/dashboard.mjs <http-url> <commander-token> <screenshot-dir> [<observer-token>]
//
// Drives Debian's /usr/bin/chromium with playwright-core (scripts/deps-browser.sh installs
// both) against a running node, as a person would: signs in with the token, submits a task
// from the page and watches it reach SUCCEEDED live, opens its page and timeline, cancels a
// running task from its page, scales a pool and sees the tree change, looks at usage, and
// shows every view again at phone width. Any console error or page error fails the run. With
// an observer token of another tenant, it also signs in as that observer in a second tab and
// checks that the page offers it no action it may not take and shows it none of the
// commander's tasks. Screenshots of every view at both widths land in <screenshot-dir>.
// Exits 0 when every check passed, 1 otherwise.

import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

const [base, token, shots, observerToken] = process.argv.slice(2);
if (!base || !token || !shots) {
  console.error("usage: node dashboard.mjs <http-url> <commander-token> <screenshot-dir>");
  process.exit(2);
}
const url = base.replace(/\/$/, "");
const CHROMIUM = "/usr/bin/chromium";
const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const LAPTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
/** How long a task may take to reach its end on a loaded 2-core CI machine. */
const TASK_PATIENCE_MS = 60_000;

const problems = [];
let step = "start";

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

/** Calls the node's API directly (not through the page), as a second client would. */
async function api(method, p, body) {
  const resp = await fetch(`${url}${p}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await resp.json();
  check(resp.ok, `${method} ${p} answered ${resp.status}: ${JSON.stringify(json)}`);
  return json;
}

/** Fails the run on any console error or uncaught page error of `page`. */
function watch(page) {
  page.setDefaultTimeout(20_000);
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console error during "${step}": ${m.text()} (${m.location().url}:${m.location().lineNumber})`);
  });
  page.on("pageerror", (e) => problems.push(`page error during "${step}": ${e.stack ?? e.message}`));
}

async function shot(page, name) {
  // From the top, so the sticky header is drawn where it belongs in a full-page picture.
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
}

/** The page must fit its width: nothing may force sideways scrolling. */
async function fitsWidth(page, what) {
  const { scroll, inner } = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    inner: window.innerWidth,
  }));
  check(scroll <= inner, `${what}: the page is ${scroll}px wide in a ${inner}px window`);
}

async function go(page, hash, ready) {
  await page.evaluate((h) => {
    location.hash = h;
  }, hash);
  await page.locator(ready).first().waitFor({ state: "visible" });
}

/** Records every data-state a task row takes, to prove the table changed live. */
async function watchRowStates(page, id) {
  await page.evaluate((id) => {
    window.__rowStates = [];
    const tbody = document.querySelector("#task-table tbody");
    const note = () => {
      const tr = tbody.querySelector(`tr[data-id="${id}"]`);
      const s = tr?.dataset.state;
      if (s && window.__rowStates.at(-1) !== s) window.__rowStates.push(s);
    };
    new MutationObserver(note).observe(tbody, { subtree: true, childList: true, attributes: true, attributeFilter: ["data-state"] });
    note();
  }, id);
}

async function run(page) {
  step = "open the dashboard";
  const resp = await page.goto(`${url}/`);
  check(resp.ok(), `GET / answered ${resp.status()}`);
  check((resp.headers()["content-security-policy"] ?? "").includes("default-src 'self'"), "GET / carries the Content-Security-Policy");
  await page.locator("#login-form").waitFor({ state: "visible" });
  await fitsWidth(page, "login");
  await shot(page, "laptop-login");

  step = "sign in";
  await page.fill("#login-token", token);
  await page.click("#login-form button[type=submit]");
  await page.locator("#session").waitFor({ state: "visible" });
  check((await page.textContent("#who")).includes("commander"), "the header names the commander role");
  check(await page.evaluate(() => sessionStorage.getItem("cadre.token") !== null), "the token is kept in sessionStorage");
  await page.locator('#live[data-state="live"]').waitFor();

  step = "the supervisor tree";
  const monitor = page.locator('tr[data-pool="system/monitor"]');
  await monitor.waitFor({ state: "visible" });
  const supervisors = await page.locator("#tree [data-supervisor]").count();
  const status = await api("GET", "/v1/status");
  check(supervisors === status.supervisors.length, `the tree shows ${supervisors} supervisors, the node has ${status.supervisors.length}`);
  await fitsWidth(page, "overview");
  await shot(page, "laptop-overview");

  step = "submit a task from the page";
  await go(page, "#/tasks", "#submit-form");
  await page.locator('#task-table[data-loaded="true"]').waitFor({ state: "attached" });
  await page.fill("#submit-type", "system.debug.sleep");
  await page.fill("#submit-params", '{"ms": 1500}');
  const [submitted] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/v1/tasks") && r.request().method() === "POST"),
    page.click("#submit-button"),
  ]);
  check(submitted.status() === 201, `POST /v1/tasks answered ${submitted.status()}`);
  const id = (await submitted.json()).task.id;
  await watchRowStates(page, id);
  const row = page.locator(`#task-table tr[data-id="${id}"]`);
  await row.waitFor({ state: "visible" });
  check((await row.textContent()).includes("system.debug.sleep"), "the new row shows its task type");
  await page.evaluate(() => {
    window.__notReloaded = true;
  });

  step = "the task reaches SUCCEEDED live";
  await page.locator(`#task-table tr[data-id="${id}"][data-state="SUCCEEDED"]`).waitFor({ timeout: TASK_PATIENCE_MS });
  const seen = await page.evaluate(() => window.__rowStates);
  check(seen.includes("RUNNING"), `the row went through RUNNING live (saw ${seen.join(" → ")})`);
  check(await page.evaluate(() => window.__notReloaded === true), "the page was not reloaded");

  step = "a task submitted elsewhere appears live";
  const other = (await api("POST", "/v1/tasks", { task_type: "system.debug.echo", params: { from: "api" } })).task;
  await page.locator(`#task-table tr[data-id="${other.id}"][data-state="SUCCEEDED"]`).waitFor({ timeout: TASK_PATIENCE_MS });
  check(await page.evaluate(() => window.__notReloaded === true), "the page was not reloaded");

  step = "filters";
  await page.fill("#filter-prefix", "system.debug.echo");
  await page.locator(`#task-table tr[data-id="${id}"]`).waitFor({ state: "detached" });
  await page.locator(`#task-table tr[data-id="${other.id}"]`).waitFor({ state: "visible" });
  await page.fill("#filter-prefix", "");
  await page.click('.chip:has(input[value="FAILED"])');
  await page.locator(`#task-table tr[data-id="${id}"]`).waitFor({ state: "detached" });
  await page.click('.chip:has(input[value="FAILED"])');
  await page.locator(`#task-table tr[data-id="${id}"]`).waitFor({ state: "visible" });
  await fitsWidth(page, "tasks");
  await shot(page, "laptop-tasks");

  step = "the task page and its timeline";
  await page.click(`#task-table tr[data-id="${id}"] a`);
  await page.locator("#timeline").waitFor({ state: "visible" });
  check(page.url().endsWith(`#/tasks/${id}`), `the task page is at #/tasks/<id> (${page.url()})`);
  check((await page.textContent(".task-id")) === id, "the task page names the task");
  await page.locator('#task-state[data-state="SUCCEEDED"]').waitFor();
  for (const s of ["QUEUED", "RUNNING", "SUCCEEDED"]) {
    check((await page.locator(`#timeline li[data-state="${s}"]`).count()) > 0, `the timeline shows ${s}`);
  }
  check((await page.locator("#timeline li.ev-progress").count()) > 0, "the timeline shows progress events");
  check((await page.textContent("#task-result")).includes("1500"), "the result is shown");
  check((await page.textContent("#view-task")).includes('"ms": 1500'), "the params are shown");
  await fitsWidth(page, "task page");
  await shot(page, "laptop-task");

  step = "a running task's page follows it live";
  const slow = (await api("POST", "/v1/tasks", { task_type: "system.debug.sleep", params: { ms: 3000 } })).task;
  await go(page, `#/tasks/${slow.id}`, "#task-state");
  await page.locator('#task-state[data-state="SUCCEEDED"]').waitFor({ timeout: TASK_PATIENCE_MS });
  await page.locator('#timeline li[data-state="SUCCEEDED"]').waitFor();
  await page.locator("#task-result").waitFor();

  step = "cancel a task from its page";
  const long = (await api("POST", "/v1/tasks", { task_type: "system.debug.sleep", params: { ms: 120000 } })).task;
  await go(page, `#/tasks/${long.id}`, "#task-cancel");
  await page.click("#task-cancel");
  await page.locator('#task-state[data-state="CANCELLED"]').waitFor({ timeout: TASK_PATIENCE_MS });
  await page.locator('#timeline li[data-state="CANCELLED"]').waitFor();
  check((await api("GET", `/v1/tasks/${long.id}`)).task.state === "CANCELLED", "the node has the task CANCELLED");

  step = "scale a pool";
  await go(page, "#/", 'tr[data-pool="system/monitor"]');
  const before = Number(await monitor.getAttribute("data-target"));
  const wanted = before + 2;
  await monitor.locator(".scale-input").fill(String(wanted));
  await monitor.locator(".scale-form button").click();
  await page.locator(`tr[data-pool="system/monitor"][data-target="${wanted}"]`).waitFor();
  await page.locator(`tr[data-pool="system/monitor"][data-live="${wanted}"]`).waitFor({ timeout: TASK_PATIENCE_MS });
  const pool = (await api("GET", "/v1/status")).supervisors.find((s) => s.name === "system").pools.find((p) => p.worker_kind === "monitor");
  check(pool.target_size === wanted, `the node's system/monitor pool is ${pool.target_size}, asked for ${wanted}`);
  await shot(page, "laptop-overview-scaled");

  step = "usage";
  await go(page, "#/usage", "#usage-form");
  await page.locator("#usage-stats .stat").first().waitFor();
  await fitsWidth(page, "usage");
  await shot(page, "laptop-usage");

  step = "phone width";
  await page.setViewportSize(PHONE);
  for (const [hash, ready, name] of [
    ["#/", 'tr[data-pool="system/monitor"]', "phone-overview"],
    ["#/tasks", `#task-table tr[data-id="${id}"]`, "phone-tasks"],
    [`#/tasks/${id}`, "#timeline", "phone-task"],
    ["#/usage", "#usage-stats .stat", "phone-usage"],
  ]) {
    await go(page, hash, ready);
    await fitsWidth(page, name);
    await shot(page, name);
  }

  step = "sign out";
  await page.click("#logout");
  await page.locator("#login-form").waitFor({ state: "visible" });
  check(await page.evaluate(() => sessionStorage.getItem("cadre.token") === null), "signing out forgets the token");
}

/** A second tab signed in as an observer of another tenant. */
async function runObserver(page) {
  step = "observer: sign in";
  await page.goto(`${url}/`);
  await page.fill("#login-token", observerToken);
  await page.click("#login-form button[type=submit]");
  await page.locator("#session").waitFor({ state: "visible" });
  check((await page.textContent("#who")).includes("observer"), "the header names the observer role");
  step = "observer: tasks";
  await page.locator('#task-table[data-loaded="true"]').waitFor({ state: "attached" });
  check(page.url().endsWith("#/tasks"), `an observer lands on the task table (${page.url()})`);
  check(!(await page.locator("#submit-panel").isVisible()), "an observer is offered no submit form");
  check(!(await page.locator('#nav a[data-view="overview"]').isVisible()), "an observer is offered no supervisor tree");
  check((await page.locator("#task-table tbody tr").count()) === 0, "an observer of another tenant sees none of the commander's tasks");
  step = "observer: overview";
  await go(page, "#/", "#tree .empty");
  check((await page.locator(".scale-form").count()) === 0, "an observer is offered no scale control");
  await shot(page, "laptop-observer");
}

async function main() {
  mkdirSync(shots, { recursive: true });
  const profile = mkdtempSync(path.join(tmpdir(), "cadre-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: LAPTOP,
    timeout: 60_000,
  });
  let ok = false;
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    watch(page);
    try {
      await run(page);
      if (observerToken) {
        const second = await context.newPage();
        watch(second);
        await runObserver(second);
      }
      ok = true;
    } catch (e) {
      problems.push(`failed at "${step}": ${e.stack ?? e.message}`);
      await shot(page, "failure").catch(() => {});
    }
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
  if (!ok || problems.length) {
    for (const p of problems) console.error(p);
    console.error(`dashboard test FAILED; screenshots in ${shots}`);
    process.exit(1);
  }
  console.log(`dashboard test passed; screenshots in ${shots}`);
}

main().catch((e) => {
  console.error(e.stack ?? e.message);
  process.exit(1);
});
