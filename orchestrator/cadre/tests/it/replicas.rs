//! Several tier-0 replicas on one PostgreSQL database and one NATS prefix, as real processes:
//! two `cadre serve --role orchestrator` nodes sharing a throwaway database ([`TestDb`]) and a
//! `--role supervisor` node that runs the work. Both replicas take submits at once; every task
//! finishes, the unfinished-task caps see the other replica's tasks, and the replicas write
//! one audit chain that `cadre audit verify` accepts with both node keys.

use std::time::Duration;

use cadre_proto::v1;
use sqlx::Connection;

use crate::common::cluster::wait_all_terminal;
use crate::common::replicas::{SharedStore, wait_supervisor_running};
use crate::common::*;

/// Tasks each replica takes.
const PER_REPLICA: usize = 300;
/// Concurrent submitters per replica.
const SUBMITTERS: usize = 4;
/// A tenant whose unfinished-task cap is checked across replicas.
const CAPPED: &str = "capped";
/// Its cap.
const CAP: usize = 3;

/// Submits `n` echo tasks through `node` from [`SUBMITTERS`] concurrent clients.
async fn submit_many(node: &TestNode, n: usize) -> Vec<String> {
    let mut jobs = Vec::new();
    for s in 0..SUBMITTERS {
        let mut c = node.tasks().await;
        let count = n / SUBMITTERS + usize::from(s < n % SUBMITTERS);
        jobs.push(tokio::spawn(async move {
            let mut ids = Vec::with_capacity(count);
            for _ in 0..count {
                ids.push(submit(&mut c, spec("system.debug.echo", r#"{"n":1}"#)).await.id);
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for j in jobs {
        ids.extend(j.await.unwrap());
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_orchestrator_replicas_share_one_store_and_one_audit_chain() {
    let shared = SharedStore::new(
        "",
        &format!("[quotas.tenants.{CAPPED}]\nsubmits_per_second = 0\nmax_unfinished = {CAP}\n"),
    )
    .await;
    let a = shared.orchestrator("a").await;
    let b = shared.orchestrator("b").await;
    let sup = shared.supervisor("system").await;
    wait_supervisor_running(&[&a, &b]).await;

    // The cap holds across replicas: tasks taken by A count on B within a refresh or two.
    let capped = issue(&a, CAPPED, "operator").await;
    let mut ca = a.tasks_as(Some(&capped)).await;
    let mut cb = b.tasks_as(Some(&capped)).await;
    let mut held = Vec::new();
    for _ in 0..CAP {
        held.push(
            submit(&mut ca, spec("system.debug.sleep", r#"{"ms":600000}"#))
                .await
                .id,
        );
    }
    // B accepts until its counters are refreshed from the store (about a second).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let req = v1::SubmitRequest {
            spec: Some(spec("system.debug.sleep", r#"{"ms":600000}"#)),
        };
        match cb.submit(req).await {
            Ok(r) => held.push(r.into_inner().task.unwrap().id),
            Err(e) => break e,
        }
        assert!(std::time::Instant::now() < deadline, "B never saw A's tasks");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("cap"), "{refused:?}");
    eprintln!(
        "replicas: B refused at {} unfinished tasks of the capped tenant (cap {CAP})",
        held.len()
    );
    for id in &held {
        let _ = cb
            .cancel(v1::CancelRequest {
                id: id.clone(),
                reason: "test".into(),
            })
            .await;
    }

    // Both replicas take submits at once.
    let (ids_a, ids_b) = tokio::join!(submit_many(&a, PER_REPLICA), submit_many(&b, PER_REPLICA));
    let all: Vec<String> = ids_a.iter().chain(&ids_b).chain(&held).cloned().collect();
    let mut c = a.tasks().await;
    let done = wait_all_terminal(&mut c, &all, Duration::from_secs(120)).await;
    let bad: Vec<_> = done
        .values()
        .filter(|t| !held.contains(&t.id) && state(t) != v1::TaskState::Succeeded)
        .collect();
    assert!(bad.is_empty(), "every task succeeds: {:?}", bad.first());
    // Either replica answers for every task.
    let mut cb = b.tasks().await;
    assert_eq!(state(&get(&mut cb, &ids_a[0]).await), v1::TaskState::Succeeded);

    let (a_data, b_data) = (shared.tmp.path().join("a/data"), shared.tmp.path().join("b/data"));
    assert!(sup.stop().await.success());
    assert!(a.stop().await.success());
    assert!(b.stop().await.success());

    // One chain: seqs 1..N without gaps or duplicates, sealed by both replicas' keys, one
    // record per accepted submit.
    let mut conn = sqlx::PgConnection::connect(shared.db.url()).await.unwrap();
    let seqs: Vec<i64> = sqlx::query_scalar("SELECT seq FROM audit ORDER BY seq")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        seqs,
        (1..=seqs.len() as i64).collect::<Vec<_>>(),
        "gap-free, unique seqs"
    );
    let signers: i64 = sqlx::query_scalar("SELECT COUNT(DISTINCT signer) FROM audit")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(signers, 2, "each replica seals with its own key");
    let submits: Vec<String> =
        sqlx::query_scalar("SELECT target FROM audit WHERE action = 'task.submit' AND outcome = 'ok'")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let submits: std::collections::HashSet<String> = submits.into_iter().collect();
    assert!(
        all.iter().all(|id| submits.contains(id)),
        "every submit is audited"
    );
    conn.close().await.unwrap();

    // `cadre audit verify` accepts the shared chain with both keys and both heads...
    let b_key = b_data.join("node-ed25519.pub.pem");
    let b_head = b_data.join("audit-head.json");
    let out = cadre_audit(
        &a_data,
        &[
            "verify",
            "--store-url",
            shared.db.url(),
            "--trusted-key",
            b_key.to_str().unwrap(),
            "--head",
            b_head.to_str().unwrap(),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("audit chain OK") && stdout.contains("by 2 signing key(s)"),
        "{stdout}"
    );
    eprintln!("replicas: {}", stdout.trim());
    // ... and refuses it without B's key: B's records are not trusted.
    let out = cadre_audit(&a_data, &["verify", "--store-url", shared.db.url()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not trusted"),
        "{out:?}"
    );

    shared.cleanup().await;
}
