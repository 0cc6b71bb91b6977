//! The observability pack against the real tools: `promtool check metrics` on a live scrape,
//! deploy/prometheus alert rules through `promtool check rules` and their unit tests through
//! `promtool test rules`, and the Grafana dashboard's queries parsed by promtool and limited
//! to metrics the README documents. promtool comes from Debian's `prometheus` package
//! (scripts/deps-promtool.sh).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::common::*;

fn promtool() -> Command {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("promtool").is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "promtool is missing: run scripts/deps-promtool.sh (Debian package prometheus)"
    );
    Command::new("promtool")
}

/// Runs promtool with `args` (and `stdin`); returns (success, stdout + stderr).
fn run_promtool(args: &[&str], dir: &Path, stdin: Option<&str>) -> (bool, String) {
    let mut cmd = promtool();
    cmd.args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run promtool");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Metric names in the README's Metrics table.
fn documented_metrics() -> BTreeSet<String> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let section = readme
        .split("## Metrics")
        .nth(1)
        .expect("README has a Metrics section");
    let section = section.split("\n## ").next().unwrap();
    section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|n| n.starts_with("cadre_"))
        .map(str::to_string)
        .collect()
}

/// `cadre_*` metric names used in a PromQL expression, histogram suffixes removed.
fn metrics_in(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("cadre_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[i + name.len()..];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name);
        out.insert(base.to_string());
    }
    out
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let dir = repo_root().join("deploy/prometheus");
    let (ok, out) = run_promtool(&["check", "rules", "alerts.yml"], &dir, None);
    assert!(ok, "promtool check rules:\n{out}");
    let (ok, out) = run_promtool(&["test", "rules", "alerts_test.yml"], &dir, None);
    assert!(ok && out.contains("SUCCESS"), "promtool test rules:\n{out}");
    // The issue's alerts are all there, and every metric they use is documented.
    let rules = std::fs::read_to_string(dir.join("alerts.yml")).unwrap();
    for alert in [
        "CadreHighErrorRate",
        "CadreHighP95Latency",
        "CadreBudgetNearCap",
        "CadreWorkerRestartStorm",
        "CadreSupervisorRestartStorm",
        "CadreStoreDown",
        "CadreNatsDown",
    ] {
        assert!(rules.contains(&format!("alert: {alert}")), "{alert} missing");
        assert!(
            std::fs::read_to_string(dir.join("alerts_test.yml"))
                .unwrap()
                .contains(&format!("alertname: {alert}")),
            "{alert} has no unit test"
        );
    }
    let documented = documented_metrics();
    for m in metrics_in(&rules) {
        assert!(
            documented.contains(&m),
            "alerts use {m}, which README's Metrics table does not list"
        );
    }
}

#[test]
fn grafana_dashboard_queries_parse_and_use_documented_metrics() {
    let path = repo_root().join("deploy/grafana/cadre-dashboard.json");
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let panels = dash["panels"].as_array().expect("panels");
    let titles: Vec<String> = panels
        .iter()
        .map(|p| p["title"].as_str().unwrap().to_lowercase())
        .collect();
    for want in [
        "throughput",
        "latency",
        "errors",
        "queue depth",
        "pool sizes",
        "restarts",
        "tokens per tenant",
        "cost per tenant",
    ] {
        assert!(
            titles.iter().any(|t| t.contains(want)),
            "no {want} panel in {titles:?}"
        );
    }
    // Every query, with the dashboard's variables filled in, must parse: promtool checks them
    // as recording rules.
    let documented = documented_metrics();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    let mut n = 0;
    for p in panels {
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap().replace("$job", ".*");
            for m in metrics_in(&expr) {
                assert!(
                    documented.contains(&m),
                    "panel {:?} uses undocumented {m}",
                    p["title"]
                );
            }
            n += 1;
            rules.push_str(&format!(
                "      - record: dashboard:q{n}\n        expr: {}\n",
                serde_json::to_string(&expr).unwrap()
            ));
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("dashboard.yml"), rules).unwrap();
    let (ok, out) = run_promtool(&["check", "rules", "dashboard.yml"], tmp.path(), None);
    assert!(ok, "dashboard queries do not parse:\n{out}");
    assert!(out.contains(&format!("{n} rules found")), "{out}");
}

#[tokio::test]
async fn a_live_scrape_passes_promtool_and_every_metric_is_documented() {
    let node = TestNode::start(
        "[budgets.models.m]\ninput_per_1k = 0.01\noutput_per_1k = 0.02\n\
         [budgets.tenant_default]\ndaily_tokens = 100000\n",
    )
    .await;
    let mut t = node.tasks().await;
    // Populate the families: a success with usage, a failure, an open event subscriber.
    run(
        &mut t,
        spec(
            "system.debug.echo",
            r#"{"usage": {"model": "m", "tokens_in": 100, "tokens_out": 50}}"#,
        ),
    )
    .await;
    run(
        &mut t,
        fast_retry(
            spec("system.debug.fail", r#"{"message": "no", "retryable": false}"#),
            1,
        ),
    )
    .await;
    let addr = node.http.trim_start_matches("http://").to_string();
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let req = format!(
        "GET /v1/events/sse HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\r\n",
        node.credential()
    );
    let (_rd, mut wr) = tcp.into_split();
    tokio::io::AsyncWriteExt::write_all(&mut wr, req.as_bytes())
        .await
        .unwrap();

    let body = eventually(
        "the probes and usage in the scrape",
        std::time::Duration::from_secs(20),
        || async {
            let (code, body) = node.http_get("/metrics").await;
            (code == 200
                && body.contains("cadre_store_up 1")
                && body.contains("cadre_event_subscribers{transport=\"sse\"} 1")
                && body.contains("cadre_tokens_used_total{tenant=\"default\"} 150"))
            .then_some(body)
        },
    )
    .await;
    assert!(
        body.contains("cadre_budget_used_ratio{tenant=\"default\"} 0.0015"),
        "150 of 100,000 tokens:\n{body}"
    );
    let (ok, out) = run_promtool(&["check", "metrics"], repo_root(), Some(&body));
    assert!(
        ok && out.trim().is_empty(),
        "promtool check metrics:\n{out}\n--- scrape:\n{body}"
    );

    // Every family in the scrape is documented, and no label carries a task id.
    let documented = documented_metrics();
    for line in body.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split_whitespace().nth(2).unwrap();
        assert!(
            documented.contains(name),
            "{name} is exported but not in README's Metrics table"
        );
    }
    assert!(!body.contains("task_id"), "task ids must not be labels");
    node.stop().await;
}

/// Before any task runs, every documented counter and gauge family is in the scrape, at 0 for
/// the label sets the config names (so an alert on one reads 0, not "no data"); the histogram
/// has no samples yet and the budget ratio exists only where a cap is set.
#[tokio::test]
async fn every_counter_and_gauge_is_exported_from_the_start() {
    let node = TestNode::start("[quotas.tenants.acme]\nsubmits_per_second = 5\nburst = 5\n").await;
    let waits = ["cadre_task_duration_seconds", "cadre_budget_used_ratio"];
    let body = eventually(
        "every family in the first scrapes",
        std::time::Duration::from_secs(20),
        || async {
            let (code, body) = node.http_get("/metrics").await;
            let missing: Vec<String> = documented_metrics()
                .into_iter()
                .filter(|m| !waits.contains(&m.as_str()))
                .filter(|m| !body.contains(&format!("# TYPE {m} ")))
                .collect();
            (code == 200 && missing.is_empty()).then_some(body)
        },
    )
    .await;
    for zero in [
        "cadre_tasks_submitted_total 0",
        "cadre_tasks_completed_total{state=\"TIMED_OUT\"} 0",
        "cadre_tasks_completed_total{state=\"SUCCEEDED\"} 0",
        "cadre_supervisor_restarts_total{supervisor=\"system\"} 0",
        "cadre_worker_restarts_total{supervisor=\"system\",kind=\"exec\"} 0",
        "cadre_worker_restarts_total{supervisor=\"intelligence\",kind=\"writer\"} 0",
        "cadre_event_subscribers_lagged_total{transport=\"ws\"} 0",
        "cadre_event_subscribers{transport=\"sse\"} 0",
        "cadre_tokens_used_total{tenant=\"default\"} 0",
        "cadre_tokens_used_total{tenant=\"acme\"} 0",
        "cadre_workflow_engine_restarts_total 0",
        "cadre_progress_dropped_total 0",
        "cadre_remote_workers 0",
        "cadre_queue_depth{supervisor=\"multimodal\"} 0",
    ] {
        assert!(body.lines().any(|l| l == zero), "{zero} missing from:\n{body}");
    }
    let (ok, out) = run_promtool(&["check", "metrics"], repo_root(), Some(&body));
    assert!(ok && out.trim().is_empty(), "promtool check metrics:\n{out}");
}
