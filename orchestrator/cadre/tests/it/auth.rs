//! Authentication, the role x call table, tenant isolation, credentials management.

use std::time::Duration;

use cadre_core::auth::{Action, Role};
use cadre_proto::v1::{self, TaskState};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tonic::Code;

use crate::common::*;

fn b64url(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (*b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(overrides: serde_json::Value) -> serde_json::Value {
    let t = now();
    let mut c = serde_json::json!({
        "sub": "mallory", "tenant": "default", "role": "commander",
        "iss": "cadre", "aud": "cadre", "exp": t + 600, "nbf": t - 10, "iat": t,
    });
    for (k, v) in overrides.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

async fn get_code(node: &TestNode, credential: Option<&str>) -> Code {
    let req = v1::GetRequest {
        id: "0190f0f0-0000-7000-8000-000000000000".into(),
    };
    match node.tasks_as(credential).await.get(req).await {
        Ok(_) => Code::Ok,
        Err(e) => e.code(),
    }
}

#[tokio::test]
async fn forged_and_broken_credentials_are_unauthenticated() {
    let node = TestNode::start("").await;
    let secret = std::fs::read_to_string(node.dir.join("data/auth/hs256.key")).unwrap();
    let secret = secret.trim().as_bytes();
    let sign = |alg: Algorithm, key: &EncodingKey, c: serde_json::Value| {
        jsonwebtoken::encode(&Header::new(alg), &c, key).unwrap()
    };
    let good_key = EncodingKey::from_secret(secret);
    // The control: a token signed with the node's secret and sane claims works.
    let ok = sign(Algorithm::HS256, &good_key, claims(serde_json::json!({})));
    assert_eq!(
        get_code(&node, Some(&ok)).await,
        Code::NotFound,
        "authenticated, then no such task"
    );

    let t = now();
    let alg_none = format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT"}"#),
        b64url(claims(serde_json::json!({})).to_string().as_bytes())
    );
    let forged = [
        ("alg none", alg_none),
        (
            "wrong key",
            sign(
                Algorithm::HS256,
                &EncodingKey::from_secret(b"not-the-node-secret-not-the-node"),
                claims(serde_json::json!({})),
            ),
        ),
        (
            "HS384 instead of the pinned HS256",
            sign(Algorithm::HS384, &good_key, claims(serde_json::json!({}))),
        ),
        (
            "expired",
            sign(
                Algorithm::HS256,
                &good_key,
                claims(serde_json::json!({"exp": t - 3600})),
            ),
        ),
        (
            "not yet valid",
            sign(
                Algorithm::HS256,
                &good_key,
                claims(serde_json::json!({"nbf": t + 3600})),
            ),
        ),
        (
            "wrong audience",
            sign(
                Algorithm::HS256,
                &good_key,
                claims(serde_json::json!({"aud": "someone-else"})),
            ),
        ),
        (
            "wrong issuer",
            sign(
                Algorithm::HS256,
                &good_key,
                claims(serde_json::json!({"iss": "evil"})),
            ),
        ),
        (
            "unknown role",
            sign(
                Algorithm::HS256,
                &good_key,
                claims(serde_json::json!({"role": "root"})),
            ),
        ),
        ("garbage", "definitely.not.a-token".to_string()),
        ("unknown API key", "cadre_0000_ffff".to_string()),
        ("API key with a wrong secret", format!("{}x", node.credential())),
    ];
    for (what, token) in forged {
        assert_eq!(
            get_code(&node, Some(&token)).await,
            Code::Unauthenticated,
            "{what}"
        );
    }
    assert_eq!(
        get_code(&node, None).await,
        Code::Unauthenticated,
        "no credential"
    );
    let status = node
        .tasks_as(None)
        .await
        .list(v1::ListRequest::default())
        .await
        .unwrap_err();
    assert!(
        status.message().contains("Bearer"),
        "the error says what to send: {}",
        status.message()
    );
}

#[tokio::test]
async fn eddsa_node_refuses_hs256_tokens_made_from_its_public_key() {
    let node = TestNode::start("[auth]\nalgorithm = \"EdDSA\"\n").await;
    let token = issue(&node, "default", "observer").await;
    assert_eq!(token.split('.').next().map(|h| h.len() > 10), Some(true));
    assert_eq!(
        get_code(&node, Some(&token)).await,
        Code::NotFound,
        "EdDSA tokens work"
    );
    // Key confusion: HMAC-sign with the public key as the secret.
    let public = std::fs::read(node.dir.join("data/auth/ed25519-public.pem")).unwrap();
    let confused = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(serde_json::json!({})),
        &EncodingKey::from_secret(&public),
    )
    .unwrap();
    assert_eq!(get_code(&node, Some(&confused)).await, Code::Unauthenticated);
}

/// One call per action, made with `cred`; returns the status code (Ok for success).
async fn call(node: &TestNode, cred: &str, action: Action, own_task: &str) -> Code {
    let mut t = node.tasks_as(Some(cred)).await;
    let mut a = node.admin_as(Some(cred)).await;
    let mut p = node.peer_as(Some(cred)).await;
    let code = |r: Result<(), tonic::Status>| r.err().map(|e| e.code()).unwrap_or(Code::Ok);
    match action {
        Action::GetTask => code(t.get(v1::GetRequest { id: own_task.into() }).await.map(drop)),
        Action::ListTasks => code(t.list(v1::ListRequest::default()).await.map(drop)),
        Action::WatchTasks => code(
            t.watch(v1::WatchRequest {
                task_id: own_task.into(),
                ..Default::default()
            })
            .await
            .map(drop),
        ),
        Action::SubmitTask => code(
            t.submit(v1::SubmitRequest {
                spec: Some(spec("system.debug.echo", "{}")),
            })
            .await
            .map(drop),
        ),
        Action::CancelTask => code(
            t.cancel(v1::CancelRequest {
                id: own_task.into(),
                reason: String::new(),
            })
            .await
            .map(drop),
        ),
        Action::Delegate => {
            let req = v1::DelegateRequest {
                parent_id: own_task.into(),
                spec: Some(spec("system.debug.echo", "{}")),
                wait_ms: 0,
                tenant: String::new(),
                parent_depth: 0,
            };
            code(p.delegate(req).await.map(drop))
        }
        Action::Status => code(a.status(v1::StatusRequest {}).await.map(drop)),
        Action::Scale => {
            let req = v1::ScaleRequest {
                supervisor: "system".into(),
                worker_kind: "health".into(),
                replicas: 2,
            };
            code(a.scale(req).await.map(drop))
        }
        Action::Reload => code(a.reload_config(v1::ReloadConfigRequest {}).await.map(drop)),
        Action::ReadMetrics => {
            let addr = node.http.trim_start_matches("http://");
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let req = format!("GET /metrics HTTP/1.0\r\nHost: x\r\nAuthorization: Bearer {cred}\r\n\r\n");
            s.write_all(req.as_bytes()).await.unwrap();
            let mut buf = String::new();
            s.read_to_string(&mut buf).await.unwrap();
            match buf.split_whitespace().nth(1) {
                Some("200") => Code::Ok,
                Some("403") => Code::PermissionDenied,
                other => panic!("/metrics answered {other:?}"),
            }
        }
        Action::IssueToken => {
            let req = v1::IssueTokenRequest {
                subject: "x".into(),
                tenant: "t1".into(),
                role: "observer".into(),
                ttl_secs: 60,
            };
            code(a.issue_token(req).await.map(drop))
        }
        Action::ManageKeys => code(a.list_api_keys(v1::ListApiKeysRequest {}).await.map(drop)),
        Action::ReadUsage => code(a.usage(v1::UsageRequest::default()).await.map(drop)),
        Action::ConnectWorker => {
            let mut w = node.workers_as(Some(cred)).await;
            let register = v1::WorkerMessage {
                body: Some(v1::worker_message::Body::Register(v1::WorkerRegister {
                    worker_id: "auth-check".into(),
                    kinds: vec!["system.remote.check".into()],
                    max_concurrency: 1,
                })),
            };
            code(w.attach(tokio_stream::iter(vec![register])).await.map(drop))
        }
        Action::RegisterWorkflow => {
            let def = r#"{"name": "auth-check", "version": 1, "steps": [{"id": "a", "task": "system.debug.echo"}]}"#;
            let req = v1::RegisterWorkflowRequest {
                definition_json: def.into(),
            };
            let mut f = crate::workflows::flows_as(node, Some(cred)).await;
            code(f.register_workflow(req).await.map(drop))
        }
        Action::ReadWorkflows => {
            let mut f = crate::workflows::flows_as(node, Some(cred)).await;
            code(
                f.list_workflows(v1::ListWorkflowsRequest::default())
                    .await
                    .map(drop),
            )
        }
        Action::Signal => {
            let req = v1::SignalRequest {
                task_id: own_task.into(),
                name: "go".into(),
                payload_json: "{}".into(),
            };
            let mut f = crate::workflows::flows_as(node, Some(cred)).await;
            code(f.signal(req).await.map(drop))
        }
        Action::Pause => {
            let pause = v1::Pause {
                scope: "pool".into(),
                supervisor: "system".into(),
                worker_kind: "health".into(),
                ..Default::default()
            };
            code(a.pause(v1::PauseRequest { pause: Some(pause) }).await.map(drop))
        }
        Action::Resume => {
            let pause = v1::Pause {
                scope: "pool".into(),
                supervisor: "system".into(),
                worker_kind: "health".into(),
                ..Default::default()
            };
            code(a.resume(v1::ResumeRequest { pause: Some(pause) }).await.map(drop))
        }
        Action::ApplyPauses => code(p.set_pauses(v1::SetPausesRequest::default()).await.map(drop)),
        Action::ApplyCredentials => code(
            p.set_credentials(v1::SetCredentialsRequest::default())
                .await
                .map(drop),
        ),
        Action::RevokeToken => {
            let req = v1::RevokeTokenRequest {
                token_id: "no-such-token".into(),
                subject: String::new(),
            };
            code(a.revoke_token(req).await.map(drop))
        }
        Action::RotateKeys => code(
            a.rotate_signing_key(v1::RotateSigningKeyRequest {})
                .await
                .map(drop),
        ),
        Action::ManageSchedules => {
            let req = v1::CreateScheduleRequest {
                every_ms: 60_000,
                paused: true,
                task: Some(spec("system.debug.echo", "{}")),
                ..Default::default()
            };
            let mut s = crate::schedules::schedules_as(node, Some(cred)).await;
            code(s.create_schedule(req).await.map(drop))
        }
        Action::ReadSchedules => {
            let mut s = crate::schedules::schedules_as(node, Some(cred)).await;
            code(
                s.list_schedules(v1::ListSchedulesRequest::default())
                    .await
                    .map(drop),
            )
        }
    }
}

#[tokio::test]
async fn every_role_may_make_exactly_the_calls_the_table_allows() {
    let node = TestNode::start("").await;
    for role in Role::ALL {
        let cred = issue(&node, "t1", role.as_str()).await;
        // A task of this tenant, submitted by an operator, for the calls that need one.
        let op = issue(&node, "t1", "operator").await;
        let own = submit(
            &mut node.tasks_as(Some(&op)).await,
            spec("system.debug.sleep", r#"{"ms": 2000}"#),
        )
        .await
        .id;
        for action in Action::ALL {
            let code = call(&node, &cred, action, &own).await;
            let allowed = role >= action.min_role();
            if allowed {
                assert!(
                    !matches!(code, Code::PermissionDenied | Code::Unauthenticated),
                    "{role} should be allowed {action:?}, got {code:?}"
                );
            } else {
                assert_eq!(code, Code::PermissionDenied, "{role} must be refused {action:?}");
            }
        }
    }
}

#[tokio::test]
async fn tenants_never_see_each_other() {
    let node = TestNode::start("").await;
    let alice = issue(&node, "alice", "operator").await;
    let bob = issue(&node, "bob", "operator").await;
    let mut a = node.tasks_as(Some(&alice)).await;
    let mut b = node.tasks_as(Some(&bob)).await;
    // Bob watches everything he may see, from the start.
    let mut bob_stream = b.watch(v1::WatchRequest::default()).await.unwrap().into_inner();

    let secret = run(&mut a, spec("system.debug.echo", r#"{"secret":"alice"}"#)).await;
    assert_eq!(secret.tenant, "alice");
    let running = submit(&mut a, spec("system.debug.sleep", r#"{"ms": 5000}"#)).await;
    let mine = run(&mut b, spec("system.debug.echo", r#"{"mine":"bob"}"#)).await;

    for id in [&secret.id, &running.id] {
        assert_eq!(
            b.get(v1::GetRequest { id: id.clone() }).await.unwrap_err().code(),
            Code::NotFound
        );
        let cancel = v1::CancelRequest {
            id: id.clone(),
            reason: String::new(),
        };
        assert_eq!(b.cancel(cancel).await.unwrap_err().code(), Code::NotFound);
        let watch = v1::WatchRequest {
            task_id: id.clone(),
            ..Default::default()
        };
        assert_eq!(b.watch(watch).await.unwrap_err().code(), Code::NotFound);
    }
    let listed = b
        .list(v1::ListRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tasks;
    assert_eq!(
        listed.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        vec![mine.id.as_str()]
    );
    // Bob's filter stream carries only his own task's events.
    for _ in 0..3 {
        let e = tokio::time::timeout(Duration::from_secs(10), bob_stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(e.task_id, mine.id);
        assert_eq!(e.tenant, "bob");
    }
    // Parent ids of another tenant are refused too.
    let sneaky = v1::TaskSpec {
        parent_id: secret.id.clone(),
        ..spec("system.debug.echo", "{}")
    };
    assert_eq!(
        b.submit(v1::SubmitRequest { spec: Some(sneaky) })
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    // Alice's running task was not cancelled by Bob; a commander sees both tenants.
    assert_eq!(state(&get(&mut a, &running.id).await), TaskState::Running);
    let all = node
        .tasks()
        .await
        .list(v1::ListRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tasks;
    assert_eq!(all.len(), 3);
}

#[tokio::test]
async fn api_keys_are_shown_once_stored_hashed_and_revocable() {
    let node = TestNode::start("").await;
    let mut admin = node.admin().await;
    let created = admin
        .create_api_key(v1::CreateApiKeyRequest {
            name: "ci-bot".into(),
            tenant: "ci".into(),
            role: "operator".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let key = created.key.unwrap();
    assert!(created.secret.starts_with(&format!("cadre_{}_", key.id)));
    let t = run(
        &mut node.tasks_as(Some(&created.secret)).await,
        spec("system.debug.echo", "{}"),
    )
    .await;
    assert_eq!(t.tenant, "ci");

    let listed = admin
        .list_api_keys(v1::ListApiKeysRequest {})
        .await
        .unwrap()
        .into_inner()
        .keys;
    assert!(
        listed
            .iter()
            .any(|k| k.id == key.id && k.role == "operator" && k.revoked_at_ms == 0)
    );
    let db = std::fs::read(node.db_path()).unwrap_or_default();
    let wal = std::fs::read(node.db_path().with_extension("db-wal")).unwrap_or_default();
    let secret_part = created.secret.rsplit('_').next().unwrap().as_bytes();
    for bytes in [&db, &wal] {
        assert!(
            !bytes.windows(secret_part.len()).any(|w| w == secret_part),
            "the secret is not stored"
        );
    }

    admin
        .revoke_api_key(v1::RevokeApiKeyRequest { id: key.id.clone() })
        .await
        .unwrap();
    assert_eq!(
        get_code(&node, Some(&created.secret)).await,
        Code::Unauthenticated,
        "revoked keys stop at once"
    );
    let again = admin
        .revoke_api_key(v1::RevokeApiKeyRequest { id: key.id })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound);
    let bad_role = v1::CreateApiKeyRequest {
        name: "x".into(),
        tenant: "ci".into(),
        role: "root".into(),
        ..Default::default()
    };
    assert_eq!(
        admin.create_api_key(bad_role).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let bad_ttl = v1::IssueTokenRequest {
        subject: "x".into(),
        tenant: "ci".into(),
        role: "observer".into(),
        ttl_secs: 0,
    };
    assert_eq!(
        admin.issue_token(bad_ttl).await.unwrap_err().code(),
        Code::InvalidArgument
    );
}

#[tokio::test]
async fn first_start_writes_a_private_commander_credential_the_cli_uses() {
    let tmp = tempfile::tempdir().unwrap();
    let node = TestNode::start_in(tmp.path(), "").await;
    let path = node.dir.join("data/credentials");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let data = node.dir.join("data");
    let cadre = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_cadre"))
            .env_remove("CADRE_TOKEN")
            .arg("--data-dir")
            .arg(&data)
            .args(args)
            .output()
            .unwrap()
    };
    let out = cadre(&[
        "token", "issue", "--tenant", "acme", "--role", "observer", "--ttl", "1h",
    ]);
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let out = cadre(&["--token", &token, "submit", "system.debug.echo", "{}"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("PermissionDenied"),
        "{out:?}"
    );
    let out = cadre(&[
        "key", "create", "--name", "bot", "--tenant", "acme", "--role", "operator",
    ]);
    assert!(out.status.success(), "{out:?}");
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let out = cadre(&["--token", &key, "submit", "system.debug.echo", "{}", "--wait"]);
    assert!(out.status.success(), "{out:?}");
    let out = cadre(&["key", "list"]);
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        listing.contains("bot") && listing.contains("bootstrap-commander") && !listing.contains(&key),
        "{listing}"
    );
    // A restart keeps the same credential.
    let before = std::fs::read_to_string(&path).unwrap();
    assert!(node.stop().await.success());
    let node = TestNode::start_in(tmp.path(), "").await;
    assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
    assert_eq!(get_code(&node, Some(before.trim())).await, Code::NotFound);
}

#[tokio::test]
async fn auth_none_is_explicit_and_metrics_can_be_public() {
    let node = TestNode::start("[auth]\nmode = \"none\"\nmetrics_public = true\n").await;
    assert_eq!(
        get_code(&node, None).await,
        Code::NotFound,
        "no credential needed"
    );
    assert!(!node.dir.join("data/credentials").exists());
    let addr = node.http.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    assert!(
        buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200"),
        "{buf}"
    );
    let log = std::fs::read_to_string(node.dir.join("serve.log")).unwrap();
    assert!(
        log.contains("auth.mode = \\\"none\\\"") || log.contains("auth.mode = \"none\""),
        "{log}"
    );

    // With auth on, /metrics without a credential is 401 with a Bearer challenge; /health is open.
    let secure = TestNode::start("").await;
    let addr = secure.http.trim_start_matches("http://");
    for (path, want) in [("/metrics", "401"), ("/health", "200"), ("/ready", "200")] {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).await.unwrap();
        assert_eq!(buf.split_whitespace().nth(1), Some(want), "{path}: {buf}");
        if want == "401" {
            assert!(
                buf.to_ascii_lowercase().contains("www-authenticate: bearer"),
                "{buf}"
            );
        }
    }
}

#[tokio::test]
async fn rate_limits_and_caps_are_per_tenant_and_say_when_to_retry() {
    use tonic_types::StatusExt;
    let cfg = "[quotas]\nsubmits_per_second = 1\nburst = 5\n\
               [quotas.tenants.capped]\nsubmits_per_second = 1000\nburst = 1000\nmax_unfinished = 2\n";
    let node = TestNode::start(cfg).await;
    let flood = issue(&node, "flood", "operator").await;
    let calm = issue(&node, "calm", "operator").await;
    let mut f = node.tasks_as(Some(&flood)).await;
    let mut accepted = 0;
    let mut refused = None;
    for _ in 0..20 {
        match f
            .submit(v1::SubmitRequest {
                spec: Some(spec("system.debug.echo", "{}")),
            })
            .await
        {
            Ok(_) => accepted += 1,
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    assert!(
        (5..=6).contains(&accepted),
        "the burst is admitted, then the rate holds: {accepted}"
    );
    let err = refused.expect("the flood is refused");
    assert_eq!(err.code(), Code::ResourceExhausted);
    let retry = err
        .get_details_retry_info()
        .and_then(|r| r.retry_delay)
        .expect("RetryInfo detail");
    assert!(
        retry > Duration::ZERO && retry <= Duration::from_secs(1),
        "{retry:?}"
    );
    assert!(err.metadata().get("retry-after-ms").is_some());
    // Another tenant is not held back by the flood.
    run(
        &mut node.tasks_as(Some(&calm)).await,
        spec("system.debug.echo", "{}"),
    )
    .await;
    // After the advertised delay the flood may submit again.
    tokio::time::sleep(retry + Duration::from_millis(50)).await;
    f.submit(v1::SubmitRequest {
        spec: Some(spec("system.debug.echo", "{}")),
    })
    .await
    .unwrap();

    // A cap on unfinished tasks: two long tasks fill it, the third is refused until one ends.
    let capped = issue(&node, "capped", "operator").await;
    let mut c = node.tasks_as(Some(&capped)).await;
    let a = submit(&mut c, spec("system.debug.sleep", r#"{"ms": 30000}"#)).await;
    submit(&mut c, spec("system.debug.sleep", r#"{"ms": 30000}"#)).await;
    let err = c
        .submit(v1::SubmitRequest {
            spec: Some(spec("system.debug.echo", "{}")),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(err.message().contains("cap"), "{}", err.message());
    c.cancel(v1::CancelRequest {
        id: a.id,
        reason: String::new(),
    })
    .await
    .unwrap();
    c.submit(v1::SubmitRequest {
        spec: Some(spec("system.debug.echo", "{}")),
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn budgets_record_usage_fall_back_near_the_cap_and_refuse_past_it() {
    let cfg = "[budgets]\nfallback_at = 0.5\n\
               [budgets.models.big]\ninput_per_1k = 10.0\noutput_per_1k = 20.0\nfallback = \"small\"\n\
               [budgets.models.small]\ninput_per_1k = 0.1\noutput_per_1k = 0.1\n\
               [budgets.tenants.acme]\ndaily_cost_usd = 1.0\n";
    let node = TestNode::start(cfg).await;
    let acme = issue(&node, "acme", "operator").await;
    let mut c = node.tasks_as(Some(&acme)).await;
    let call = |model: &str, tin: u64, tout: u64| {
        let params = serde_json::json!({
            "model": model, "allow_fallback": true,
            "usage": {"model": model, "tokens_in": tin, "tokens_out": tout},
        });
        spec("system.debug.echo", &params.to_string())
    };
    // 20 + 10 tokens on "big": 0.2 + 0.2 = 0.40 USD; recorded on the task.
    let t = run(&mut c, call("big", 20, 10)).await;
    assert_eq!(t.usage.len(), 1, "{t:?}");
    assert_eq!((t.usage[0].tokens_in, t.usage[0].tokens_out), (20, 10));
    assert!((t.usage[0].cost_usd - 0.4).abs() < 1e-9, "{:?}", t.usage);
    // Now at 40%: still the asked-for model.
    let t = run(&mut c, call("big", 10, 5)).await; // +0.2 -> 0.6 USD, past fallback_at
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&t.spec.unwrap().params_json).unwrap()["model"],
        "big"
    );
    // At 60%: a task that allows it runs on the cheaper model (its params say so).
    let t = submit(&mut c, call("big", 1, 1)).await;
    let params: serde_json::Value = serde_json::from_str(&t.spec.unwrap().params_json).unwrap();
    assert_eq!(
        (params["model"].as_str(), params["fallback_from"].as_str()),
        (Some("small"), Some("big"))
    );
    // Push past the cap (usage is reported under the model the task asked for).
    run(
        &mut c,
        spec(
            "system.debug.echo",
            &serde_json::json!({"usage": {"model": "big", "tokens_in": 50, "tokens_out": 0}}).to_string(),
        ),
    )
    .await;
    let err = c
        .submit(v1::SubmitRequest {
            spec: Some(spec("system.debug.echo", "{}")),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(
        err.message().contains("tenant acme") && err.message().contains("budget"),
        "{}",
        err.message()
    );
    // Other tenants are not held back; usage is reported per tenant and model.
    let other = issue(&node, "other", "operator").await;
    run(
        &mut node.tasks_as(Some(&other)).await,
        spec("system.debug.echo", "{}"),
    )
    .await;
    let mine = node
        .admin_as(Some(&acme))
        .await
        .usage(v1::UsageRequest::default())
        .await
        .unwrap()
        .into_inner();
    let bad_day = v1::UsageRequest {
        tenant: String::new(),
        day: "yesterday".into(),
    };
    assert_eq!(
        node.admin_as(Some(&acme))
            .await
            .usage(bad_day)
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    assert!(
        mine.usage.iter().all(|u| u.tenant == "acme"),
        "tenant-scoped: {mine:?}"
    );
    let big = mine.usage.iter().find(|u| u.model == "big").unwrap();
    assert_eq!(big.tokens_in, 20 + 10 + 1 + 50, "every reported call counts");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cadre"))
        .args(["--endpoint", &node.grpc, "--token", &node.credential(), "usage"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("acme") && text.contains("big"),
        "{text}"
    );
}

/// Every RPC of the contract, found in the descriptor set the server reflects, refuses a caller
/// without a credential: a new RPC that forgets to authorize fails this test.
#[tokio::test]
async fn every_rpc_in_the_contract_requires_a_credential() {
    use prost::Message;
    let fds = prost_types::FileDescriptorSet::decode(cadre_proto::v1::FILE_DESCRIPTOR_SET).unwrap();
    let node = TestNode::start("").await;
    let mut checked = 0;
    for file in fds.file.iter().filter(|f| f.package() == "cadre.v1") {
        for service in &file.service {
            for method in &service.method {
                let path: tonic::codegen::http::uri::PathAndQuery =
                    format!("/cadre.v1.{}/{}", service.name(), method.name())
                        .parse()
                        .unwrap();
                let mut grpc = tonic::client::Grpc::new(node.channel().await);
                grpc.ready().await.unwrap();
                let codec = tonic_prost::ProstCodec::<(), ()>::default();
                // An empty body is a valid encoding of every proto3 request message.
                let status = if method.server_streaming() {
                    grpc.server_streaming(tonic::Request::new(()), path, codec)
                        .await
                        .map(drop)
                } else {
                    grpc.unary(tonic::Request::new(()), path, codec).await.map(drop)
                };
                let code = status.err().map(|s| s.code()).unwrap_or(Code::Ok);
                assert_eq!(
                    code,
                    Code::Unauthenticated,
                    "{}/{} without a credential",
                    service.name(),
                    method.name()
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 16, "walked {checked} RPCs");
}
