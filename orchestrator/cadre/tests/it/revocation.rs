//! Credentials and limits that hold across tier-0 replicas: two `--role orchestrator` nodes on
//! one PostgreSQL database ([`TestDb`]) and one NATS prefix, plus a supervisor node. A JWT
//! revoked (by id or by subject) or an API key revoked on one replica is refused by the other
//! within about a second; a signing key rotated on one is used by the other, and the old key
//! stops verifying after `auth.key_overlap_secs`; a tenant's submit rate and daily budget hold
//! over both replicas together. On one node (SQLite): revocation, rotation, and a remote
//! worker whose credential is revoked or expires losing its stream.

use std::time::{Duration, Instant};

use cadre_proto::v1::{self, server_message, worker_message};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use crate::common::replicas::SharedStore;
use crate::common::*;

/// A tenant with a submit rate.
const RATED: &str = "rated";
/// Its rate (and burst), per second.
const RATE: u32 = 10;
/// A tenant with a daily token budget.
const SPENDER: &str = "spender";

/// Issues a token on `node`, returning the whole answer (id and key id too).
async fn issue_full(
    node: &TestNode,
    subject: &str,
    tenant: &str,
    role: &str,
    ttl_secs: u64,
) -> v1::IssueTokenResponse {
    let req = v1::IssueTokenRequest {
        subject: subject.into(),
        tenant: tenant.into(),
        role: role.into(),
        ttl_secs,
    };
    node.admin().await.issue_token(req).await.unwrap().into_inner()
}

/// The status of a ListTasks call with `cred` (Ok or the refusal).
async fn list_with(node: &TestNode, cred: &str) -> Result<(), tonic::Status> {
    node.tasks_as(Some(cred))
        .await
        .list(v1::ListRequest::default())
        .await
        .map(drop)
}

/// Waits until `node` refuses `cred` as UNAUTHENTICATED; returns the message.
async fn refused_on(node: &TestNode, cred: &str, what: &str) -> String {
    eventually(what, Duration::from_secs(15), || async {
        match list_with(node, cred).await {
            Err(e) if e.code() == Code::Unauthenticated => Some(e.message().to_string()),
            _ => None,
        }
    })
    .await
}

async fn revoke(
    node: &TestNode,
    token_id: &str,
    subject: &str,
) -> Result<v1::RevokeTokenResponse, tonic::Status> {
    let req = v1::RevokeTokenRequest {
        token_id: token_id.into(),
        subject: subject.into(),
    };
    node.admin().await.revoke_token(req).await.map(|r| r.into_inner())
}

async fn rotate(node: &TestNode) -> v1::RotateSigningKeyResponse {
    node.admin()
        .await
        .rotate_signing_key(v1::RotateSigningKeyRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// Waits until `node` shares submit rates among `n` replicas.
async fn wait_replicas(node: &TestNode, n: f64) {
    eventually("replicas counted", Duration::from_secs(20), || async {
        (node.metric("cadre_tier0_replicas").await == Some(n)).then_some(())
    })
    .await;
}

/// Submits `RATED` tasks flat out through both replicas for `secs` seconds; returns how many
/// were admitted and how long it took.
async fn flood(a: &TestNode, b: &TestNode, cred: &str, secs: u64) -> (usize, Duration) {
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let mut jobs = Vec::new();
    for node in [a, b] {
        for _ in 0..2 {
            let mut c = node.tasks_as(Some(cred)).await;
            jobs.push(tokio::spawn(async move {
                let mut ok = 0usize;
                while Instant::now() < until {
                    let req = v1::SubmitRequest {
                        spec: Some(spec("system.debug.echo", "{}")),
                    };
                    match c.submit(req).await {
                        Ok(_) => ok += 1,
                        Err(e) => {
                            assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                }
                ok
            }));
        }
    }
    let mut admitted = 0;
    for j in jobs {
        admitted += j.await.unwrap();
    }
    (admitted, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn credentials_and_limits_hold_across_two_replicas() {
    let shared = SharedStore::new(
        "key_overlap_secs = 4\nleeway_secs = 0\n",
        &format!(
            "[quotas.tenants.{RATED}]\nsubmits_per_second = {RATE}\nburst = {RATE}\n\
             [budgets.tenants.{SPENDER}]\ndaily_tokens = 100\n"
        ),
    )
    .await;
    let a = shared.orchestrator("a").await;
    let b = shared.orchestrator("b").await;
    let sup = shared.supervisor("system").await;

    // An API key made and revoked on A stops working on B.
    let key = a
        .admin()
        .await
        .create_api_key(v1::CreateApiKeyRequest {
            name: "ci".into(),
            tenant: "t1".into(),
            role: "observer".into(),
            ttl_secs: 0,
        })
        .await
        .unwrap()
        .into_inner();
    eventually("B knows A's new key", Duration::from_secs(15), || async {
        list_with(&b, &key.secret).await.ok()
    })
    .await;
    a.admin()
        .await
        .revoke_api_key(v1::RevokeApiKeyRequest {
            id: key.key.unwrap().id,
        })
        .await
        .unwrap();
    let msg = refused_on(&b, &key.secret, "B refuses the revoked key").await;
    assert!(msg.contains("revoked"), "{msg}");

    // A JWT revoked by id on A is refused on B; a sibling token of the same subject is not.
    let one = issue_full(&a, "alice", "t1", "observer", 600).await;
    let two = issue_full(&a, "alice", "t1", "observer", 600).await;
    list_with(&b, &one.token).await.unwrap();
    assert!(!one.token_id.is_empty() && one.token_id != two.token_id);
    revoke(&a, &one.token_id, "").await.unwrap();
    let msg = refused_on(&b, &one.token, "B refuses the token revoked by id").await;
    assert!(msg.contains(&one.token_id) && msg.contains("revoked"), "{msg}");
    list_with(&b, &two.token).await.unwrap();
    // By subject: every token of it issued until now.
    let bob = issue_full(&b, "bob", "t1", "observer", 600).await;
    revoke(&b, "", "bob").await.unwrap();
    let msg = refused_on(&a, &bob.token, "A refuses the subject's token").await;
    assert!(msg.contains("subject bob"), "{msg}");
    // Bad input: neither or both.
    for (id, subject) in [("", ""), ("x", "y")] {
        let e = revoke(&a, id, subject).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    }

    // Rotation on A: B signs with the new key within a second; the old key works during the
    // overlap (4 s) and not after.
    let before = issue_full(&b, "carol", "t1", "observer", 600).await;
    assert!(before.key_id.starts_with("base-"), "{}", before.key_id);
    let rotated = rotate(&a).await;
    list_with(&b, &before.token).await.unwrap();
    let after = eventually("B signs with the new key", Duration::from_secs(15), || async {
        let t = issue_full(&b, "carol", "t1", "observer", 600).await;
        (t.key_id == rotated.key_id).then_some(t)
    })
    .await;
    list_with(&a, &after.token).await.unwrap();
    let msg = refused_on(&b, &before.token, "the old key retires after the overlap").await;
    assert!(msg.contains("rotated out"), "{msg}");
    list_with(&b, &after.token).await.unwrap();

    // The submit rate holds over both replicas together.
    wait_replicas(&a, 2.0).await;
    wait_replicas(&b, 2.0).await;
    let rated = issue(&a, RATED, "operator").await;
    let (admitted, took) = flood(&a, &b, &rated, 3).await;
    let allowed = f64::from(RATE) * took.as_secs_f64() + f64::from(RATE) + 2.0;
    eprintln!(
        "revocation: {admitted} submits admitted over both replicas in {took:?} (allowed about {allowed:.0})"
    );
    assert!(admitted > 0);
    assert!(
        (admitted as f64) <= allowed * 1.3,
        "{admitted} admitted in {took:?}: the rate {RATE}/s does not hold across replicas"
    );

    // The daily budget: usage recorded through A stops the tenant on B.
    let spender = issue(&a, SPENDER, "operator").await;
    let usage = r#"{"usage": {"model": "m", "tokens_in": 150, "tokens_out": 0}}"#;
    run(
        &mut a.tasks_as(Some(&spender)).await,
        spec("system.debug.echo", usage),
    )
    .await;
    let cb = b.tasks_as(Some(&spender)).await;
    let e = eventually("B refuses the spent tenant", Duration::from_secs(15), || {
        let mut cb = cb.clone();
        async move {
            let req = v1::SubmitRequest {
                spec: Some(spec("system.debug.echo", "{}")),
            };
            cb.submit(req).await.err()
        }
    })
    .await;
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(
        e.message().contains("budget") || e.message().contains("cap"),
        "{e:?}"
    );

    assert!(sup.stop().await.success());
    assert!(a.stop().await.success());
    assert!(b.stop().await.success());
    shared.cleanup().await;
}

const KIND: &str = "intelligence.remote.text";

/// A node that routes `KIND` to remote workers; tokens without clock leeway.
fn worker_config() -> String {
    format!(
        "[auth]\nleeway_secs = 0\nkey_overlap_secs = 3\n[executors.remote]\nheartbeat_interval_ms = 500\n\
         [routes.\"{KIND}\"]\nsupervisor = \"intelligence\"\nworker = \"research\"\nexecutor = \"remote\"\n"
    )
}

/// Attaches a worker with `cred` that heartbeats every 100 ms; returns its inbound stream.
async fn attach(node: &TestNode, cred: &str, id: &str) -> tonic::Streaming<v1::ServerMessage> {
    try_attach(node, cred, id).await.unwrap()
}

/// [`attach`], or the status the node refused the worker with.
async fn try_attach(
    node: &TestNode,
    cred: &str,
    id: &str,
) -> Result<tonic::Streaming<v1::ServerMessage>, tonic::Status> {
    let (tx, out) = mpsc::channel(64);
    tx.send(v1::WorkerMessage {
        body: Some(worker_message::Body::Register(v1::WorkerRegister {
            worker_id: id.into(),
            kinds: vec![KIND.into()],
            max_concurrency: 1,
        })),
    })
    .await
    .unwrap();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let hb = v1::WorkerMessage {
                body: Some(worker_message::Body::Heartbeat(v1::WorkerHeartbeat {})),
            };
            if tx.send(hb).await.is_err() {
                return;
            }
        }
    });
    let mut rx = node
        .workers_as(Some(cred))
        .await
        .attach(ReceiverStream::new(out))
        .await?
        .into_inner();
    let first = rx.message().await?.unwrap().body.unwrap();
    assert!(matches!(first, server_message::Body::Registered(_)), "{first:?}");
    Ok(rx)
}

/// Reads until the stream ends; the status it ended with (patience: 30 s).
async fn ended(mut rx: tonic::Streaming<v1::ServerMessage>) -> tonic::Status {
    let read = async {
        loop {
            match rx.message().await {
                Err(status) => return status,
                Ok(None) => return tonic::Status::ok("ended without a status"),
                Ok(Some(_)) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the stream ends")
}

#[tokio::test]
async fn a_remote_worker_loses_its_stream_when_its_credential_is_revoked_or_expires() {
    let node = TestNode::start(&worker_config()).await;
    let revoked = issue_full(&node, "worker-a", "default", "supervisor", 600).await;
    let rx = attach(&node, &revoked.token, "wa").await;
    revoke(&node, "", "worker-a").await.unwrap();
    let status = ended(rx).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("revoked"), "{status:?}");

    let short = issue_full(&node, "worker-b", "default", "supervisor", 2).await;
    let rx = attach(&node, &short.token, "wb").await;
    let status = ended(rx).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("xpired"), "{status:?}");

    // A revoked API key ends its worker's stream too.
    let key = node
        .admin()
        .await
        .create_api_key(v1::CreateApiKeyRequest {
            name: "worker-c".into(),
            tenant: "default".into(),
            role: "supervisor".into(),
            ttl_secs: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let rx = attach(&node, &key.secret, "wc").await;
    node.admin()
        .await
        .revoke_api_key(v1::RevokeApiKeyRequest {
            id: key.key.unwrap().id,
        })
        .await
        .unwrap();
    let status = ended(rx).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
}

#[tokio::test]
async fn on_one_node_revocation_and_rotation_are_commander_only_audited_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start_in(dir.path(), &worker_config()).await;
    let t = issue_full(&node, "dave", "t1", "operator", 600).await;
    // An operator may neither revoke nor rotate.
    for e in [
        node.admin_as(Some(&t.token))
            .await
            .revoke_token(v1::RevokeTokenRequest {
                token_id: t.token_id.clone(),
                subject: String::new(),
            })
            .await
            .unwrap_err(),
        node.admin_as(Some(&t.token))
            .await
            .rotate_signing_key(v1::RotateSigningKeyRequest {})
            .await
            .unwrap_err(),
    ] {
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    }
    revoke(&node, &t.token_id, "").await.unwrap();
    let msg = list_with(&node, &t.token).await.unwrap_err();
    assert_eq!(msg.code(), Code::Unauthenticated);
    let before = issue_full(&node, "erin", "t1", "observer", 600).await;
    let rotated = rotate(&node).await;
    let after = issue_full(&node, "erin", "t1", "observer", 600).await;
    assert_eq!(after.key_id, rotated.key_id);
    list_with(&node, &before.token).await.unwrap();

    // After a restart: the revocation holds, the rotated key still signs and verifies.
    assert!(node.stop().await.success());
    let node = TestNode::start_in(dir.path(), &worker_config()).await;
    assert_eq!(
        list_with(&node, &t.token).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    list_with(&node, &after.token).await.unwrap();
    assert_eq!(
        issue_full(&node, "erin", "t1", "observer", 60).await.key_id,
        rotated.key_id
    );
    let msg = refused_on(&node, &before.token, "the old key retires after the overlap").await;
    assert!(msg.contains("rotated out"), "{msg}");

    assert!(node.stop().await.success());
    let url = format!("sqlite:{}?mode=ro", dir.path().join("data/cadre.db").display());
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    let actions: Vec<String> = sqlx::query_scalar("SELECT action FROM audit WHERE outcome = 'ok'")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    for want in ["auth.revoke_token", "auth.rotate_keys"] {
        assert!(actions.iter().any(|a| a == want), "{want} audited: {actions:?}");
    }
}

/// Runs `cadre <args>` against `node` as its commander; (exit success, stdout, stderr).
async fn cli(node: &TestNode, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_cadre"))
        .args(["--endpoint", &node.grpc, "--token", &node.credential()])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_cli_issues_revokes_and_rotates() {
    let node = TestNode::start("[auth]\nalgorithm = \"EdDSA\"\n").await;
    let (ok, token, err) = cli(
        &node,
        &[
            "token",
            "issue",
            "--tenant",
            "t1",
            "--role",
            "observer",
            "--subject",
            "frank",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let token = token.trim().to_string();
    let id = err
        .split_whitespace()
        .skip_while(|w| *w != "id")
        .nth(1)
        .unwrap_or_else(|| panic!("no token id in {err:?}"))
        .to_string();
    list_with(&node, &token).await.unwrap();
    let (ok, out, err) = cli(&node, &["token", "revoke", "--id", &id]).await;
    assert!(ok && out.contains(&id), "{out} {err}");
    let e = list_with(&node, &token).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    // Neither or both of --id and --subject: a usage error.
    assert!(!cli(&node, &["token", "revoke"]).await.0);
    assert!(
        !cli(&node, &["token", "revoke", "--id", "a", "--subject", "b"])
            .await
            .0
    );
    // Rotation with EdDSA: new tokens carry the new key id and work.
    let (ok, out, err) = cli(&node, &["token", "rotate"]).await;
    assert!(ok && out.contains("new signing key"), "{out} {err}");
    let kid = out
        .split_whitespace()
        .nth(3)
        .unwrap()
        .trim_end_matches(';')
        .to_string();
    let t = issue_full(&node, "grace", "t1", "observer", 60).await;
    assert_eq!(t.key_id, kid);
    list_with(&node, &t.token).await.unwrap();
}

/// Supervisor nodes keep no store: tier 0 sends them its revocations and rotated signing keys
/// (SupervisorPeer.SetCredentials). A worker attached to a supervisor node loses its stream
/// when its token is revoked at tier 0, and a token signed with a key rotated at tier 0 is
/// accepted by the supervisor node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn supervisor_nodes_take_revocations_and_rotated_keys_from_tier_0() {
    // worker_config()'s [auth] keys go into the shared [auth] table, its route after it.
    let config = worker_config();
    let (auth_keys, routes) = config
        .strip_prefix("[auth]\n")
        .and_then(|c| c.split_once("[executors.remote]"))
        .unwrap();
    let shared = SharedStore::new(auth_keys, &format!("[executors.remote]{routes}")).await;
    let tier0 = shared.orchestrator("tier0").await;
    let sup = shared.supervisor("intelligence").await;

    let token = issue_full(&tier0, "node-worker", "default", "supervisor", 600).await;
    let rx = attach(&sup, &token.token, "nw").await;
    revoke(&tier0, "", "node-worker").await.unwrap();
    let status = ended(rx).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("revoked"), "{status:?}");
    let Err(refused) = try_attach(&sup, &token.token, "nw2").await else {
        panic!("a revoked token attached a worker to the supervisor node");
    };
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");

    let rotated = rotate(&tier0).await;
    let fresh = issue_full(&tier0, "rotated-worker", "default", "supervisor", 600).await;
    assert_eq!(
        fresh.key_id, rotated.key_id,
        "new tokens are signed with the new key"
    );
    let rx = eventually(
        "the supervisor node accepts a token signed with the rotated key",
        Duration::from_secs(15),
        || async { try_attach(&sup, &fresh.token, "rw").await.ok() },
    )
    .await;
    drop(rx);

    assert!(sup.stop().await.success());
    assert!(tier0.stop().await.success());
    shared.cleanup().await;
}
