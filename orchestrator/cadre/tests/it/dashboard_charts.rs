//! The dashboard's charts in headless Chromium against a real node that ran tasks (some
//! failed) and an llm task on the fake provider: the overview's bars carry the counts
//! `GET /v1/stats/tasks` reports, its latency points their percentiles, each pool has a
//! queue-depth sparkline; the usage page stacks the day's cost by tenant and by model; the llm
//! task's page lists its model call with a latency bar, an echo task's page lists none.
//! Screenshots go to target/screenshots (laptop and phone widths).

use std::time::Duration;

use cadre_fake_llm::Fake;
use serde_json::Value;

use crate::common::{TestNode, eventually, issue, run, spec};
use crate::dashboard::run_browser_script;
use crate::stats::{chat, finish_tasks, get};

/// The browser half: settings in the environment (CADRE_URL, CADRE_TOKEN, CADRE_SHOTS,
/// CADRE_SUCCEEDED and CADRE_FAILED: the node's counts, CADRE_LLM_TASK, CADRE_ECHO_TASK);
/// prints "charts test passed" when every check held.
const SCRIPT: &str = r#####"
import { check, fitsWidth, runInChromium, shot } from "./harness.mjs";

const env = process.env;
const url = env.CADRE_URL.replace(/\/$/, "");
const PATIENCE = 40_000;
let step = "start";
const go = async (page, hash, ready) => {
  await page.evaluate((h) => { location.hash = h; }, hash);
  await page.locator(ready).first().waitFor({ state: "visible", timeout: PATIENCE });
};
const sumOf = (page, sel, attr) => page.locator(sel).evaluateAll((els, a) => els.reduce((s, e) => s + Number(e.getAttribute(a)), 0), attr);

async function overview(page, width) {
  step = `overview charts (${width})`;
  await go(page, "#/", `#chart-throughput[data-succeeded="${env.CADRE_SUCCEEDED}"][data-failed="${env.CADRE_FAILED}"]`);
  check((await page.locator("#chart-throughput g.bar").count()) === 60, "one bar per minute of the hour");
  check((await sumOf(page, "#chart-throughput g.bar", "data-succeeded")) === Number(env.CADRE_SUCCEEDED), "the bars add up to the succeeded count");
  check((await sumOf(page, "#chart-throughput g.bar", "data-failed")) === Number(env.CADRE_FAILED), "the bars add up to the failed count");
  check((await page.locator("#chart-throughput rect.c-failed").count()) >= 1, "failed tasks are drawn");
  const pts = await page.locator("#chart-latency circle.pt").evaluateAll((els) => els.map((e) => [Number(e.dataset.p50), Number(e.dataset.p90), Number(e.dataset.p99), Number(e.dataset.count)]));
  check(pts.length >= 1, "a latency point");
  check(pts.every(([a, b, c, n]) => a <= b && b <= c && n >= 1), `percentiles in order: ${JSON.stringify(pts)}`);
  check(pts.reduce((s, p) => s + p[3], 0) === Number(env.CADRE_SUCCEEDED) + Number(env.CADRE_FAILED), "every finished task is measured");
  step = `queue sparklines (${width})`;
  await page.locator('#chart-queues li[data-queue-pool^="system/"]').first().waitFor({ timeout: PATIENCE });
  const spark = page.locator('#chart-queues li[data-queue-pool^="system/"]').first();
  check(Number(await spark.getAttribute("data-samples")) >= 1, "the pool has samples");
  check((await spark.locator("svg.spark polyline").count()) === 1, "the sparkline is drawn");
  await fitsWidth(page, `overview at ${width}`);
  await shot(page, `${width}-overview-charts`);
}

async function usage(page, width) {
  step = `usage chart (${width})`;
  await go(page, "#/usage", "#chart-usage rect.seg");
  check((await page.locator("#chart-usage g.bar").count()) === 30, "thirty days");
  const today = new Date().toISOString().slice(0, 10);
  const bar = page.locator(`#chart-usage g.bar[data-day="${today}"]`);
  check(Number(await bar.getAttribute("data-cost")) > 0 && Number(await bar.getAttribute("data-tokens")) > 0, "today's bar has cost and tokens");
  check((await bar.locator('rect[data-key="default"]').count()) === 1, "stacked by tenant");
  await page.selectOption("#usage-chart-by", "model");
  await page.locator(`#chart-usage g.bar[data-day="${today}"] rect[data-key="echo"]`).waitFor();
  await page.selectOption("#usage-chart-measure", "tokens");
  check((await page.locator("#chart-usage .legend").textContent()).includes("echo"), "the legend names the model");
  await fitsWidth(page, `usage at ${width}`);
  await shot(page, `${width}-usage-charts`);
  await page.selectOption("#usage-chart-by", "tenant");
  await page.selectOption("#usage-chart-measure", "cost");
}

async function task(page, width) {
  step = `model calls (${width})`;
  await go(page, `#/tasks/${env.CADRE_LLM_TASK}`, "#llm-calls tr.llm-call");
  const row = page.locator("#llm-calls tr.llm-call").first();
  check(Number(await row.getAttribute("data-tokens-in")) > 0, "the call's tokens");
  check((await row.textContent()).includes("echo"), "the call's model");
  const total = Number(await row.locator("svg.call-bar").getAttribute("data-total-ms"));
  check(total >= 0 && (await row.locator("svg.call-bar rect.call-total").count()) === 1, "a latency bar");
  await fitsWidth(page, `llm task at ${width}`);
  await shot(page, `${width}-task-calls`);
  step = `no model calls (${width})`;
  await go(page, `#/tasks/${env.CADRE_ECHO_TASK}`, "#task-state");
  await page.waitForTimeout(500);
  check(await page.locator("#llm-calls").isHidden(), "a task without calls shows no panel");
}

async function run(page) {
  step = "sign in";
  await page.goto(`${url}/`);
  await page.fill("#login-token", env.CADRE_TOKEN);
  await page.click("#login-form button[type=submit]");
  await page.locator("#session").waitFor({ state: "visible" });
  await overview(page, "laptop");
  await usage(page, "laptop");
  await task(page, "laptop");
  await page.setViewportSize({ width: 390, height: 844 });
  await overview(page, "phone");
  await usage(page, "phone");
  await task(page, "phone");
}

await runInChromium({ name: "charts", run, step: () => step });
"#####;

/// Totals (succeeded, failed) `/v1/stats/tasks` reports once they stop changing and include
/// `at_least` succeeded.
async fn settled_counts(node: &TestNode, token: &str, at_least: u64) -> (u64, u64) {
    eventually("the counts settled", Duration::from_secs(15), || async move {
        let read = || async {
            let (code, body) = get(node, token, "/v1/stats/tasks").await;
            assert_eq!(code, 200, "{body}");
            let sum = |k: &str| {
                body["buckets"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|b: &Value| b[k].as_u64().unwrap())
                    .sum::<u64>()
            };
            (sum("succeeded"), sum("failed"))
        };
        let first = read().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        (first == read().await && first.0 >= at_least).then_some(first)
    })
    .await
}

#[tokio::test]
async fn dashboard_charts_in_headless_chromium() {
    let fake = Fake::start().await;
    let config = format!(
        "[executors.llm]\ncache_entries = 0\n\
         [executors.llm.providers.a]\nbase_url = \"{}\"\n\
         [executors.llm.models.echo]\nprovider = \"a\"\nmodel = \"echo\"\n\
         [budgets.models.echo]\ninput_per_1k = 1.0\noutput_per_1k = 2.0\n",
        fake.base_url
    );
    let node = TestNode::start(&config).await;
    let token = issue(&node, "default", "commander").await;
    finish_tasks(&node, &token, 3, 2).await;
    let llm = chat(&node, &token, "draw me a chart").await;
    let mut c = node.tasks_as(Some(&token)).await;
    let echo = run(&mut c, spec("system.debug.echo", "{}")).await.id;
    let (ok, failed) = settled_counts(&node, &token, 5).await;
    assert!(failed >= 2, "{failed}");
    eventually("the call's usage recorded", Duration::from_secs(15), || async {
        let (_, body) = get(&node, &token, "/v1/stats/usage?days=1").await;
        (!body["rows"].as_array().map(Vec::is_empty).unwrap_or(true)).then_some(())
    })
    .await;

    let shots = crate::common::repo_root().join("target/screenshots");
    for w in ["laptop", "phone"] {
        for name in ["overview-charts", "usage-charts", "task-calls"] {
            let _ = std::fs::remove_file(shots.join(format!("{w}-{name}.png")));
        }
    }
    let (ok, failed) = (ok.to_string(), failed.to_string());
    run_browser_script(
        &node,
        SCRIPT,
        "charts",
        &[
            ("CADRE_TOKEN", &token),
            ("CADRE_SUCCEEDED", &ok),
            ("CADRE_FAILED", &failed),
            ("CADRE_LLM_TASK", &llm),
            ("CADRE_ECHO_TASK", &echo),
        ],
    )
    .await;
    for w in ["laptop", "phone"] {
        for name in ["overview-charts", "usage-charts", "task-calls"] {
            let png = shots.join(format!("{w}-{name}.png"));
            let len = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
            assert!(len > 1000, "{} missing or empty", png.display());
        }
    }
}
