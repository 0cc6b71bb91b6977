//! The dashboard charts' JSON endpoints through the real binary: `GET /v1/stats/tasks`
//! (finished tasks and latency percentiles per minute, within the caller's tenant),
//! `GET /v1/stats/queues` (sampled queue depths, supervisor role) and `GET /v1/stats/usage`
//! (usage per day, tenant and model, from llm tasks run against the fake provider); bad query
//! values are refused with 400.

use std::time::Duration;

use cadre_fake_llm::Fake;
use cadre_proto::v1;
use serde_json::{Value, json};

use crate::common::{TestNode, eventually, fast_retry, http_exchange, issue, run, spec};

/// GET `path` with `token`: (status, JSON body).
pub(crate) async fn get(node: &TestNode, token: &str, path: &str) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    let (code, _, body) = http_exchange(node, "GET", path, &[("Authorization", &auth)], None).await;
    (code, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// Runs `n` echo tasks and `failed` failing ones as `token`'s tenant, to their end.
pub(crate) async fn finish_tasks(node: &TestNode, token: &str, n: usize, failed: usize) {
    let mut c = node.tasks_as(Some(token)).await;
    for _ in 0..n {
        let t = run(&mut c, spec("system.debug.echo", r#"{"x": 1}"#)).await;
        assert_eq!(t.state(), v1::TaskState::Succeeded, "{t:?}");
    }
    for _ in 0..failed {
        let s = fast_retry(spec("system.debug.fail", r#"{"retryable": false}"#), 1);
        let t = run(&mut c, s).await;
        assert_eq!(t.state(), v1::TaskState::Failed, "{t:?}");
    }
}

/// (succeeded, failed, latencies measured) summed over the buckets of a stats answer.
fn totals(body: &Value) -> (u64, u64, u64) {
    let buckets = body["buckets"].as_array().expect("buckets");
    let sum = |f: &dyn Fn(&Value) -> u64| buckets.iter().map(f).sum::<u64>();
    (
        sum(&|b| b["succeeded"].as_u64().unwrap()),
        sum(&|b| b["failed"].as_u64().unwrap()),
        sum(&|b| b["latency_ms"]["count"].as_u64().unwrap_or(0)),
    )
}

/// `/v1/stats/tasks` as `token` (with `query`) once its totals are `want`.
async fn stats_until(node: &TestNode, token: &str, query: &str, want: (u64, u64, u64)) -> Value {
    eventually(
        "the finished tasks counted",
        Duration::from_secs(15),
        || async move {
            let (code, body) = get(node, token, &format!("/v1/stats/tasks{query}")).await;
            assert_eq!(code, 200, "{body}");
            (totals(&body) == want).then_some(body)
        },
    )
    .await
}

#[tokio::test]
async fn task_stats_count_each_tenants_finished_tasks_only() {
    let node = TestNode::start("").await;
    let a = issue(&node, "acme", "operator").await;
    let b = issue(&node, "beta", "operator").await;
    finish_tasks(&node, &a, 3, 2).await;
    finish_tasks(&node, &b, 1, 0).await;

    let body = stats_until(&node, &a, "", (3, 2, 5)).await;
    assert_eq!(body["tenant"], "acme");
    assert_eq!(body["bucket_ms"], 60_000);
    assert_eq!(body["latency_sample_every"], 1);
    let buckets = body["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 60, "an hour of minutes");
    let (from, to) = (body["from_ms"].as_i64().unwrap(), body["to_ms"].as_i64().unwrap());
    assert_eq!((to - from, from % 60_000), (3_600_000, 0));
    let lat = buckets
        .iter()
        .find_map(|b| b["latency_ms"].as_object())
        .expect("a bucket with latencies");
    let (p50, p99) = (lat["p50"].as_i64().unwrap(), lat["p99"].as_i64().unwrap());
    assert!(p50 >= 0 && p50 <= p99 && p99 < 60_000, "{lat:?}");

    // Beta sees its own task, whatever tenant it names; acme's are not in its counts.
    stats_until(&node, &b, "", (1, 0, 1)).await;
    let body = stats_until(&node, &b, "?tenant=acme", (1, 0, 1)).await;
    assert_eq!(body["tenant"], "beta");

    // A commander sees every tenant's, or the one it names.
    let root = node.credential();
    let body = stats_until(
        &node,
        &root,
        "?tenant=acme&window_minutes=30&bucket_seconds=300",
        (3, 2, 5),
    )
    .await;
    assert_eq!(body["buckets"].as_array().unwrap().len(), 6);
    let (code, body) = get(&node, &root, "/v1/stats/tasks").await;
    assert_eq!(code, 200, "{body}");
    assert!(body["tenant"].is_null());
    let (ok, failed, _) = totals(&body);
    assert!(ok >= 4 && failed >= 2, "{body}");
}

#[tokio::test]
async fn stats_refuse_bad_query_values() {
    let node = TestNode::start("").await;
    let root = node.credential();
    for path in [
        "/v1/stats/tasks?window_minutes=abc",
        "/v1/stats/tasks?window_minutes=-5",
        "/v1/stats/tasks?window_minutes=0",
        "/v1/stats/tasks?window_minutes=100000",
        "/v1/stats/tasks?bucket_seconds=1",
        "/v1/stats/tasks?window_minutes=1440&bucket_seconds=10",
        "/v1/stats/tasks?window_minutes=1&bucket_seconds=120",
        "/v1/stats/usage?days=0",
        "/v1/stats/usage?days=91",
        "/v1/stats/usage?days=thirty",
    ] {
        let (code, body) = get(&node, &root, path).await;
        assert_eq!(code, 400, "{path}: {body}");
        assert_eq!(body["error"]["code"], "invalid_argument", "{path}: {body}");
    }
    let (code, _) = get(&node, "not-a-token", "/v1/stats/tasks").await;
    assert_eq!(code, 401);
}

#[tokio::test]
async fn queue_depths_are_sampled_for_the_supervisor_role() {
    let node = TestNode::start("").await;
    let root = node.credential();
    let body = eventually("a queue-depth sample", Duration::from_secs(30), || {
        let root = root.clone();
        let node = &node;
        async move {
            let (code, body) = get(node, &root, "/v1/stats/queues").await;
            assert_eq!(code, 200, "{body}");
            let pools = body["pools"].as_array().cloned().unwrap_or_default();
            (!pools.is_empty()).then_some(body)
        }
    })
    .await;
    assert_eq!(body["interval_ms"], 10_000);
    assert_eq!(body["capacity"], 360);
    let pool = body["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["supervisor"] == "system")
        .unwrap_or_else(|| panic!("the system supervisor's pools: {body}"));
    let sample = &pool["samples"][0];
    assert!(
        sample[0].as_i64().unwrap() > 0 && sample[1].as_u64().is_some(),
        "{pool}"
    );

    let operator = issue(&node, "acme", "operator").await;
    let (code, body) = get(&node, &operator, "/v1/stats/queues").await;
    assert_eq!(code, 403, "{body}");
}

/// Models on the fake: `echo` (priced) on provider `a`.
fn llm_config(fake: &Fake) -> String {
    format!(
        "[executors.llm]\ncache_entries = 0\n\
         [executors.llm.providers.a]\nbase_url = \"{}\"\n\
         [executors.llm.models.echo]\nprovider = \"a\"\nmodel = \"echo\"\n\
         [budgets.models.echo]\ninput_per_1k = 1.0\noutput_per_1k = 2.0\n",
        fake.base_url
    )
}

/// Runs a chat with the fake as `token`'s tenant, to its end.
pub(crate) async fn chat(node: &TestNode, token: &str, prompt: &str) -> String {
    let mut c = node.tasks_as(Some(token)).await;
    let params = json!({ "model": "echo", "prompt": prompt }).to_string();
    let t = run(&mut c, spec("intelligence.llm.chat", &params)).await;
    assert_eq!(t.state(), v1::TaskState::Succeeded, "{t:?}");
    t.id
}

/// The usage rows `/v1/stats/usage<query>` answers `token`, once there are `n`.
async fn usage_rows(node: &TestNode, token: &str, query: &str, n: usize) -> (Value, Vec<Value>) {
    eventually("the usage per day", Duration::from_secs(15), || async move {
        let (code, body) = get(node, token, &format!("/v1/stats/usage{query}")).await;
        assert_eq!(code, 200, "{body}");
        let rows = body["rows"].as_array().cloned().unwrap_or_default();
        (rows.len() == n).then_some((body, rows))
    })
    .await
}

#[tokio::test]
async fn usage_by_day_stays_within_the_tenant() {
    let fake = Fake::start().await;
    let node = TestNode::start(&llm_config(&fake)).await;
    let a = issue(&node, "acme", "operator").await;
    let b = issue(&node, "beta", "observer").await;
    let b_op = issue(&node, "beta", "operator").await;
    chat(&node, &a, "one").await;
    chat(&node, &a, "two three").await;
    chat(&node, &b_op, "beta's").await;

    let (body, rows) = usage_rows(&node, &a, "", 1).await;
    let today = body["to_day"].as_str().unwrap().to_string();
    assert_eq!(rows[0]["tenant"], "acme");
    assert_eq!(
        (rows[0]["day"].as_str(), rows[0]["model"].as_str()),
        (Some(today.as_str()), Some("echo"))
    );
    assert!(rows[0]["tokens_in"].as_i64().unwrap() > 0 && rows[0]["cost_usd"].as_f64().unwrap() > 0.0);
    assert_eq!(body["truncated"], false);
    let from = body["from_day"].as_str().unwrap();
    let span = |d: &str| chrono_days(d);
    assert_eq!(span(&today) - span(from), 29, "30 days, today included");

    // Beta (an observer) sees its own row only, whatever tenant it names.
    let (_, rows) = usage_rows(&node, &b, "?tenant=acme&days=7", 1).await;
    assert_eq!(rows[0]["tenant"], "beta");
    // A commander sees both, or the one it names.
    let root = node.credential();
    let (_, rows) = usage_rows(&node, &root, "", 2).await;
    let tenants: Vec<_> = rows.iter().map(|r| r["tenant"].as_str().unwrap()).collect();
    assert_eq!(tenants, ["acme", "beta"]);
    usage_rows(&node, &root, "?tenant=beta&days=1", 1).await;
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date.
fn chrono_days(d: &str) -> i64 {
    let p: Vec<i64> = d.split('-').map(|x| x.parse().unwrap()).collect();
    let (y, m, day) = (p[0] - i64::from(p[1] <= 2), p[1], p[2]);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
