//! The `system` supervisor's node tasks on a real node: node health, a metrics snapshot,
//! audit-chain verification (and its catching a tampered chain) and config validation.

use serde_json::Value;
use sqlx::sqlite::SqlitePoolOptions;

use crate::common::*;

async fn result(c: &mut Tasks, task_type: &str, params: &str) -> Value {
    let t = run(c, spec(task_type, params)).await;
    assert_eq!(
        state(&t),
        cadre_proto::v1::TaskState::Succeeded,
        "{task_type}: {t:#?}"
    );
    serde_json::from_str(&t.result_json).unwrap()
}

#[tokio::test]
async fn node_tasks_report_health_metrics_audit_and_config() {
    let node = TestNode::start("").await;
    let mut c = node.tasks().await;
    // Something to count and to audit.
    result(&mut c, "system.debug.echo", r#"{"n":1}"#).await;

    let health = result(&mut c, "system.health.node", "{}").await;
    assert_eq!(health["store_up"], true, "{health}");
    assert_eq!(health["bus_up"], true);
    assert_eq!(health["ready"], true);
    assert!(health["store_latency_ms"].as_f64().unwrap() >= 0.0);

    let metrics = result(&mut c, "system.monitor.metrics", r#"{"prefix":"cadre_tasks_"}"#).await;
    let samples = metrics["samples"].as_array().unwrap();
    assert!(!samples.is_empty(), "{metrics}");
    assert!(
        samples
            .iter()
            .all(|s| s["name"].as_str().unwrap().starts_with("cadre_tasks_"))
    );
    assert!(
        samples.iter().any(|s| s["name"] == "cadre_tasks_completed_total"
            && s["labels"]["state"] == "SUCCEEDED"
            && s["value"].as_f64().unwrap() >= 1.0),
        "the echo task is counted: {metrics}"
    );

    let audit = result(&mut c, "system.audit.verify", "{}").await;
    assert_eq!(audit["intact"], true, "{audit}");
    assert!(audit["records"].as_u64().unwrap() >= 1, "{audit}");

    let own = result(&mut c, "system.config.validate", "{}").await;
    assert_eq!(
        (own["source"].clone(), own["valid"].clone()),
        ("node".into(), true.into()),
        "{own}"
    );
    assert!(own["routes"].as_u64().unwrap() > 10);
    let params = serde_json::json!({
        "toml": "[supervisors.system.pools]\nmonitor = 100000\n[routes.\"a.b.c\"]\nsupervisor = \"nope\"\nworker = \"x\"\nexecutor = \"echo\"\n"
    });
    let bad = result(&mut c, "system.config.validate", &params.to_string()).await;
    assert_eq!(bad["valid"], false, "{bad}");
    let errors: Vec<&str> = bad["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("supervisors.system.pools.monitor")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("supervisor \"nope\" is not configured")),
        "{errors:?}"
    );
    let unparsable = result(&mut c, "system.config.validate", r#"{"toml":"[server\nx="}"#).await;
    assert_eq!(unparsable["valid"], false);

    // Tamper with the live chain: the task sees it.
    let url = format!("sqlite:{}", node.dir.join("data").join("cadre.db").display());
    let db = SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    sqlx::query("UPDATE audit SET target = target || 'x' WHERE seq = (SELECT MIN(seq) FROM audit)")
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    let audit = result(&mut c, "system.audit.verify", "{}").await;
    assert_eq!(audit["intact"], false, "{audit}");
    assert!(!audit["problem"].as_str().unwrap().is_empty());

    // Node-wide state needs the supervisor role; node health does not.
    let operator = issue(&node, "default", "operator").await;
    let mut op = node.tasks_as(Some(&operator)).await;
    for task_type in [
        "system.monitor.metrics",
        "system.audit.verify",
        "system.config.validate",
    ] {
        let err = op
            .submit(cadre_proto::v1::SubmitRequest {
                spec: Some(spec(task_type, "{}")),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "{task_type}");
        assert!(
            err.message().contains("needs the supervisor role"),
            "{}",
            err.message()
        );
    }
    result(&mut op, "system.health.node", "{}").await;
    let supervisor = issue(&node, "default", "supervisor").await;
    let mut sup = node.tasks_as(Some(&supervisor)).await;
    result(
        &mut sup,
        "system.monitor.metrics",
        r#"{"prefix":"cadre_store_up"}"#,
    )
    .await;

    // Params are checked like any task's.
    let refused = c
        .submit(cadre_proto::v1::SubmitRequest {
            spec: Some(spec("system.health.node", r#"{"x":1}"#)),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    drop(c);
    assert!(node.stop().await.success());
}
