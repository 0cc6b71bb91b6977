//! The audit chain through the real binary: acts are recorded, `cadre audit verify` passes on
//! an untouched chain and fails on every kind of tampering, `cadre audit export` packages a task.

use std::path::Path;

use cadre_proto::v1;
use cadre_store::AuditPruneStore;
use sqlx::sqlite::SqlitePoolOptions;
use tonic::Code;

use crate::common::*;

/// Copies what `cadre audit` reads into a fresh dir and applies `sql` to the copy.
async fn tampered(data: &Path, sql: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "cadre.db",
        "cadre.db-wal",
        "cadre.db-shm",
        "node-ed25519.pub.pem",
        "audit-head.json",
    ] {
        if data.join(f).exists() {
            std::fs::copy(data.join(f), dir.path().join(f)).unwrap();
        }
    }
    let url = format!("sqlite:{}", dir.path().join("cadre.db").display());
    let db = SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    for stmt in sql {
        sqlx::query(sqlx::AssertSqlSafe(stmt.to_string()))
            .execute(&db)
            .await
            .unwrap();
    }
    db.close().await;
    dir
}

#[tokio::test]
async fn the_chain_records_acts_verifies_and_catches_every_kind_of_tampering() {
    let tmp = tempfile::tempdir().unwrap();
    let node = TestNode::start_in(tmp.path(), "").await;
    let mut c = node.tasks().await;
    let task = run(&mut c, spec("system.debug.echo", "{}")).await;
    let plain = submit(&mut c, spec("system.debug.sleep", r#"{"ms": 20000}"#)).await;
    c.cancel(v1::CancelRequest {
        id: plain.id.clone(),
        reason: "audit me".into(),
    })
    .await
    .unwrap();
    node.admin()
        .await
        .reload_config(v1::ReloadConfigRequest {})
        .await
        .unwrap();
    let scale = v1::ScaleRequest {
        supervisor: "system".into(),
        worker_kind: "health".into(),
        replicas: 3,
    };
    node.admin().await.scale(scale).await.unwrap();
    let observer = issue(&node, "x", "observer").await;
    let denied = node
        .tasks_as(Some(&observer))
        .await
        .submit(v1::SubmitRequest {
            spec: Some(spec("system.debug.echo", "{}")),
        })
        .await;
    assert_eq!(denied.unwrap_err().code(), Code::PermissionDenied);
    let anon = node
        .tasks_as(Some("garbage"))
        .await
        .list(v1::ListRequest::default())
        .await;
    assert_eq!(anon.unwrap_err().code(), Code::Unauthenticated);
    // A reload by SIGHUP is audited too: wait until its record is in the store.
    node.signal("HUP");
    let db_url = format!("sqlite:{}?mode=ro", tmp.path().join("data/cadre.db").display());
    let probe = SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&db_url)
        .await
        .unwrap();
    eventually(
        "SIGHUP reload audited",
        std::time::Duration::from_secs(10),
        || {
            let probe = &probe;
            async move {
                let n: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM audit WHERE action = 'admin.reload' AND actor = 'SIGHUP'",
                )
                .fetch_one(probe)
                .await
                .unwrap();
                (n == 1).then_some(())
            }
        },
    )
    .await;
    probe.close().await;
    assert!(node.stop().await.success());

    let data = tmp.path().join("data");
    let out = cadre_audit(&data, &["verify"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("audit chain OK"));

    let db = SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&format!("sqlite:{}?mode=ro", data.join("cadre.db").display()))
        .await
        .unwrap();
    let acts: Vec<(i64, String, String, String)> =
        sqlx::query_as("SELECT seq, action, target, outcome FROM audit ORDER BY seq")
            .fetch_all(&db)
            .await
            .unwrap();
    db.close().await;
    let has = |action: &str, outcome: &str| acts.iter().any(|(_, a, _, o)| a == action && o == outcome);
    assert!(
        acts.iter()
            .any(|(_, a, t, o)| a == "task.submit" && *t == task.id && o == "ok"),
        "{acts:?}"
    );
    assert!(
        has("admin.scale", "ok") && has("token.issue", "ok") && has("admin.reload", "ok"),
        "{acts:?}"
    );
    for action in ["task.submit", "task.cancel"] {
        assert!(
            acts.iter().any(|(_, a, t, _)| a == action && *t == plain.id),
            "{action} of a plain submit: {acts:?}"
        );
    }
    assert!(
        has("task.submit", "denied") && has("task.list", "unauthenticated"),
        "{acts:?}"
    );
    let n = acts.len() as i64;
    assert!(n >= 5);

    let cases: Vec<(&str, Vec<String>)> = vec![
        ("edit", vec!["UPDATE audit SET outcome = 'ok' WHERE outcome = 'denied'".into()]),
        ("delete", vec!["DELETE FROM audit WHERE seq = 2".into()]),
        (
            "insert",
            vec![
                "UPDATE audit SET seq = seq + 1000 WHERE seq >= 3".to_string(),
                "UPDATE audit SET seq = seq - 999 WHERE seq >= 1003".to_string(),
                "INSERT INTO audit SELECT 3, at_ms, actor, tenant, role, action, 'forged', outcome, detail, prev_hash, hash, signature, signer FROM audit WHERE seq = 2".into(),
            ],
        ),
        (
            "reorder",
            vec![
                "UPDATE audit SET seq = -2 WHERE seq = 2".into(),
                "UPDATE audit SET seq = 2 WHERE seq = 3".into(),
                "UPDATE audit SET seq = 3 WHERE seq = -2".into(),
            ],
        ),
        ("truncate", vec![format!("DELETE FROM audit WHERE seq > {}", n - 2)]),
    ];
    for (what, sql) in cases {
        let sql: Vec<&str> = sql.iter().map(String::as_str).collect();
        let dir = tampered(&data, &sql).await;
        let out = cadre_audit(dir.path(), &["verify"]);
        assert_eq!(out.status.code(), Some(1), "{what} must be detected: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("TAMPERED"), "{what}: {err}");
        if what == "truncate" {
            assert!(err.contains("cut off the tail"), "{err}");
        }
    }

    let evidence = tmp.path().join("evidence.json");
    let out = cadre_audit(
        &data,
        &["export", "--task", &task.id, "--out", evidence.to_str().unwrap()],
    );
    assert!(out.status.success(), "{out:?}");
    let pkg: serde_json::Value = serde_json::from_slice(&std::fs::read(&evidence).unwrap()).unwrap();
    assert_eq!(pkg["task_id"], task.id.as_str());
    assert!(
        pkg["node_public_key_pem"]
            .as_str()
            .unwrap()
            .contains("BEGIN PUBLIC KEY")
    );
    let records = pkg["records"].as_array().unwrap();
    assert!(!records.is_empty() && records.iter().all(|r| r["target"] == task.id.as_str()));
    assert!(pkg["how_to_verify"].as_str().unwrap().contains("Ed25519"));
}

#[tokio::test]
async fn verified_and_fortress_results_are_signed_and_fortress_runs_only_in_the_exec_sandbox() {
    let tmp = tempfile::tempdir().unwrap();
    let sandbox = "[executors.exec.commands.upper]\nprogram = \"/usr/bin/tr\"\nargs = [\"a-z\", \"A-Z\"]\n\
                   memory_limit_bytes = 268435456\n\
                   [executors.exec.commands.open]\nprogram = \"/usr/bin/tr\"\nargs = [\"a-z\", \"A-Z\"]\nnetwork = \"host\"\n\
                   [executors.exec.commands.unbounded]\nprogram = \"/usr/bin/tr\"\nargs = [\"a-z\", \"A-Z\"]\nmemory_limit_bytes = 0\n";
    let node = TestNode::start_in(tmp.path(), sandbox).await;
    let mut c = node.tasks().await;
    let verified = v1::TaskSpec {
        security_level: v1::SecurityLevel::Verified as i32,
        ..spec("system.debug.echo", r#"{"answer": 42}"#)
    };
    let t = run(&mut c, verified).await;
    assert_eq!(
        t.result_signature.len(),
        128,
        "an Ed25519 signature in hex: {t:?}"
    );
    let plain = run(&mut c, spec("system.debug.echo", "{}")).await;
    assert!(
        plain.result_signature.is_empty(),
        "standard results are not signed"
    );

    let fortress = |task_type: &str, params: &str| v1::TaskSpec {
        security_level: v1::SecurityLevel::Fortress as i32,
        ..spec(task_type, params)
    };
    // Anything but the exec sandbox is refused: another executor, a command with network, a
    // command without a memory limit.
    for (task_type, params, why) in [
        ("system.debug.echo", "{}", "run only in the exec sandbox"),
        (
            "system.exec.run",
            r#"{"command":"open","stdin":"x"}"#,
            "needs no network",
        ),
        (
            "system.exec.run",
            r#"{"command":"unbounded","stdin":"x"}"#,
            "needs a memory limit",
        ),
    ] {
        let err = c
            .submit(v1::SubmitRequest {
                spec: Some(fortress(task_type, params)),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{task_type} {params}");
        assert!(err.message().contains(why), "{}", err.message());
    }
    // In the sandbox it runs, isolated, and its result is signed.
    let sealed = run(
        &mut c,
        fortress("system.exec.run", r#"{"command":"upper","stdin":"fortress"}"#),
    )
    .await;
    assert_eq!(state(&sealed), v1::TaskState::Succeeded, "{sealed:#?}");
    let result: serde_json::Value = serde_json::from_str(&sealed.result_json).unwrap();
    assert_eq!(result["stdout"], "FORTRESS");
    assert_eq!(result["network_isolated"], true);
    assert_eq!(sealed.result_signature.len(), 128);

    let data = tmp.path().join("data");
    let verify = |id: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_cadre"))
            .arg("--data-dir")
            .arg(&data)
            .args(["verify-result", id])
            .output()
            .unwrap()
    };
    let out = verify(&t.id);
    assert!(out.status.success(), "{out:?}");
    let out = verify(&sealed.id);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("signature valid"));
    let out = verify(&plain.id);
    assert_eq!(out.status.code(), Some(1), "no signature to check");

    // Someone edits the stored result: the signature no longer matches.
    assert!(node.stop().await.success());
    let url = format!("sqlite:{}", data.join("cadre.db").display());
    let db = SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    sqlx::query("UPDATE tasks SET result = '{\"answer\":43}' WHERE id = ?")
        .bind(&t.id)
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    let node = TestNode::start_in(tmp.path(), "").await;
    let out = verify(&t.id);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("does NOT match"));
    drop(node);
}

/// The `system.audit.verify` task's result.
async fn audit_task(c: &mut Tasks) -> serde_json::Value {
    let t = run(c, spec("system.audit.verify", "{}")).await;
    assert_eq!(state(&t), v1::TaskState::Succeeded, "{t:#?}");
    serde_json::from_str(&t.result_json).unwrap()
}

/// Prunes the chain of the (stopped) node in `data` as the node's own key: up to `limit` of the
/// oldest records but the newest.
async fn prune(data: &Path, limit: u32) -> u64 {
    let store = cadre_store::sqlite::SqliteStore::open(&data.join("cadre.db"), true)
        .await
        .unwrap();
    let sealer = cadre_store::chain::Sealer::new(cadre_core::audit::node_key(data).unwrap(), data);
    let n = store.prune_audit(i64::MAX, limit, &sealer).await.unwrap();
    store.close().await;
    n
}

/// The checkpoint of the chain in `data`.
async fn checkpoint(data: &Path) -> cadre_store::chain::Checkpoint {
    let store = cadre_store::sqlite::SqliteStore::open_read_only(&data.join("cadre.db"))
        .await
        .unwrap();
    let c = store.audit_checkpoint().await.unwrap().expect("a checkpoint");
    store.close().await;
    c
}

#[tokio::test]
async fn a_pruned_chain_verifies_from_its_checkpoint_and_sealing_continues() {
    let tmp = tempfile::tempdir().unwrap();
    let node = TestNode::start_in(tmp.path(), "").await;
    let mut c = node.tasks().await;
    let old = run(&mut c, spec("system.debug.echo", "{}")).await;
    for _ in 0..5 {
        run(&mut c, spec("system.debug.echo", "{}")).await;
    }
    assert!(node.stop().await.success());
    let data = tmp.path().join("data");

    // Two prunes: the second replaces the first's checkpoint; the newest record always stays.
    assert_eq!(prune(&data, 2).await, 2);
    let out = cadre_audit(&data, &["verify"]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("audit chain OK from a checkpoint at record 2 (2 records pruned"),
        "{stdout}"
    );
    let first = checkpoint(&data).await;
    // One record per submit: 6; 2 are left after the second prune.
    assert_eq!(prune(&data, 2).await, 2);
    let through = 4;
    let out = cadre_audit(&data, &["verify"]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "from a checkpoint at record {through} (4 records pruned"
        )) && stdout.contains(": 2 records"),
        "{stdout}"
    );

    // The export of a task older than the pruned start says so.
    let evidence = tmp.path().join("evidence.json");
    let out = cadre_audit(
        &data,
        &["export", "--task", &old.id, "--out", evidence.to_str().unwrap()],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("were pruned behind a signed checkpoint"),
        "{out:?}"
    );
    let pkg: serde_json::Value = serde_json::from_slice(&std::fs::read(&evidence).unwrap()).unwrap();
    assert_eq!(pkg["checkpoint"]["seq"], through);
    assert!(pkg["pruned"].as_str().unwrap().contains(&old.id), "{pkg}");

    // Tampering with the pruned chain is caught.
    let older = format!(
        "UPDATE audit_checkpoint SET seq = {}, hash = '{}', at_ms = {}, signature = '{}', signer = '{}'",
        first.seq, first.hash, first.at_ms, first.signature, first.signer
    );
    let cases = [
        (
            "checkpoint deleted",
            "DELETE FROM audit_checkpoint".to_string(),
            "no checkpoint stands for".to_string(),
        ),
        (
            "one more record deleted",
            "DELETE FROM audit WHERE seq = (SELECT MIN(seq) FROM audit)".into(),
            format!(
                "stands for records 1 to {through} but the first record left is {}",
                through + 2
            ),
        ),
        (
            "the older checkpoint put back",
            older,
            format!(
                "stands for records 1 to 2 but the first record left is {}",
                through + 1
            ),
        ),
        (
            "forged checkpoint",
            "UPDATE audit_checkpoint SET signature = substr(signature, 3) || '00'".into(),
            "is not signed by a trusted node key".into(),
        ),
    ];
    for (what, sql, why) in cases {
        let dir = tampered(&data, &[&sql]).await;
        let out = cadre_audit(dir.path(), &["verify"]);
        assert_eq!(out.status.code(), Some(1), "{what} must be detected: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("TAMPERED") && err.contains(&why), "{what}: {err}");
    }

    // The node seals after the checkpoint; the audit task and `cadre audit verify` check from it.
    let node = TestNode::start_in(tmp.path(), "").await;
    let mut c = node.tasks().await;
    run(&mut c, spec("system.debug.echo", "{}")).await;
    let audit = audit_task(&mut c).await;
    assert_eq!(audit["intact"], true, "{audit}");
    assert_eq!(audit["pruned_through_seq"], through, "{audit}");
    assert!(audit["records"].as_u64().unwrap() >= 2, "{audit}");
    assert!(node.stop().await.success());
    let store = cadre_store::sqlite::SqliteStore::open_read_only(&data.join("cadre.db"))
        .await
        .unwrap();
    let records = cadre_store::Store::audit_records(&store, None).await.unwrap();
    store.close().await;
    assert_eq!(records[0].seq, through + 1);
    assert_eq!(records[0].prev_hash, checkpoint(&data).await.hash);
    let out = cadre_audit(&data, &["verify"]);
    assert!(out.status.success(), "{out:?}");
}
