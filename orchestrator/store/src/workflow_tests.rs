//! [`crate::workflows::WorkflowStore`] on both databases: the same checks against a SQLite
//! file and a fresh PostgreSQL database.

use std::sync::Arc;

use cadre_proto::TaskId;
use cadre_workflow::Done;
use serde_json::json;

use crate::testing::pg::TestDb;
use crate::workflows::{NewSignal, StoredDefinition};
use crate::{Store, WriteOp};

async fn sqlite() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::sqlite::SqliteStore::open(&dir.path().join("s.db"), false)
        .await
        .unwrap();
    (Arc::new(store), dir)
}

async fn postgres(db: &TestDb) -> Arc<dyn Store> {
    Arc::new(crate::postgres::PgStore::connect(db.url(), 4).await.unwrap())
}

fn def(name: &str, version: u32, body: &str) -> StoredDefinition {
    StoredDefinition {
        name: name.into(),
        version,
        body: body.into(),
        created_at_ms: 1000 + i64::from(version),
        created_by: "alice".into(),
    }
}

fn done(ok: bool, at_ms: i64) -> Done {
    Done {
        ok,
        output: json!({"n": at_ms}),
        error: (!ok).then(|| "no".to_string()),
        at_ms,
    }
}

async fn definitions_are_insert_only_and_versioned(s: &dyn Store) {
    assert!(s.insert_definition(&def("flow", 1, "{\"v\":1}")).await.unwrap());
    assert!(s.insert_definition(&def("flow", 2, "{\"v\":2}")).await.unwrap());
    assert!(s.insert_definition(&def("other", 1, "{}")).await.unwrap());
    // The same name and version again writes nothing and changes nothing.
    assert!(
        !s.insert_definition(&def("flow", 1, "{\"v\":\"changed\"}"))
            .await
            .unwrap()
    );
    assert_eq!(
        s.definition("flow", Some(1)).await.unwrap().unwrap().body,
        "{\"v\":1}"
    );
    assert_eq!(s.definition("flow", None).await.unwrap().unwrap().version, 2);
    assert_eq!(s.definition("flow", Some(3)).await.unwrap(), None);
    assert_eq!(s.definition("nope", None).await.unwrap(), None);
    let newest: Vec<(String, u32)> = s
        .definitions(None)
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.name, d.version))
        .collect();
    assert_eq!(newest, [("flow".to_string(), 2), ("other".to_string(), 1)]);
    let all = s.definitions(Some("flow")).await.unwrap();
    assert_eq!(all, [def("flow", 1, "{\"v\":1}"), def("flow", 2, "{\"v\":2}")]);
}

async fn records_and_signals_settle_once(s: &dyn Store) {
    let parent = crate::testing::record(None);
    let instance = parent.id;
    let mut child = crate::testing::record(Some("wf:x:a"));
    child.spec.parent_id = Some(instance);
    let mut foreign = crate::testing::record(Some("wf:x:b"));
    foreign.spec.parent_id = Some(instance);
    foreign.tenant = "other".into();
    s.apply(
        &[
            WriteOp::Insert(Box::new(parent.clone())),
            WriteOp::Insert(Box::new(child.clone())),
            WriteOp::Insert(Box::new(foreign)),
        ],
        None,
    )
    .await
    .unwrap();

    s.open_record(instance, "wait", 10, Some(500)).await.unwrap();
    // Opening again keeps the first opening.
    s.open_record(instance, "wait", 20, Some(900)).await.unwrap();
    let early = s
        .add_signal(
            instance,
            &NewSignal {
                name: "go".into(),
                payload: json!({"decision": "approve", "nul": "a\u{0}b"}),
                sender: "bob".into(),
                at_ms: 30,
            },
        )
        .await
        .unwrap();
    let later = s
        .add_signal(
            instance,
            &NewSignal {
                name: "go".into(),
                payload: json!(2),
                sender: "carol".into(),
                at_ms: 40,
            },
        )
        .await
        .unwrap();
    assert!(later > early, "seqs order the inbox");
    // Another instance's inbox is its own.
    s.add_signal(
        TaskId::new(),
        &NewSignal {
            name: "go".into(),
            payload: json!(null),
            sender: "x".into(),
            at_ms: 1,
        },
    )
    .await
    .unwrap();

    let st = s.instance_state(instance, "t").await.unwrap();
    assert_eq!(st.children.len(), 1, "only the instance tenant's sub-tasks");
    assert_eq!(st.children[0].id, child.id);
    assert_eq!(st.children[0].spec.idempotency_key.as_deref(), Some("wf:x:a"));
    let wait = &st.records["wait"];
    assert_eq!(
        (wait.opened_at_ms, wait.due_at_ms, wait.done.clone()),
        (10, Some(500), None)
    );
    assert_eq!(st.signals.len(), 2);
    assert_eq!(st.signals[0].payload["decision"], "approve");
    assert_eq!(
        (st.signals[0].sender.as_str(), st.signals[0].consumed),
        ("bob", false)
    );

    // Settling takes the signal; a second settle of the record, or another record taking the
    // same signal, writes nothing.
    assert!(
        s.close_record(instance, "wait", &done(true, 50), Some(early))
            .await
            .unwrap()
    );
    assert!(
        !s.close_record(instance, "wait", &done(false, 60), Some(later))
            .await
            .unwrap()
    );
    assert!(
        !s.close_record(instance, "other", &done(true, 70), Some(early))
            .await
            .unwrap()
    );
    // A record never opened is created settled.
    assert!(
        s.close_record(instance, "refused", &done(false, 80), None)
            .await
            .unwrap()
    );
    let st = s.instance_state(instance, "t").await.unwrap();
    assert_eq!(st.records["wait"].done, Some(done(true, 50)));
    assert_eq!(st.records["refused"].done, Some(done(false, 80)));
    assert_eq!(st.records["refused"].opened_at_ms, 80);
    assert!(!st.records.contains_key("other"), "the failed settle rolled back");
    assert_eq!(
        st.signals.iter().map(|s| s.consumed).collect::<Vec<_>>(),
        [true, false]
    );
}

#[tokio::test]
async fn sqlite_keeps_workflows() {
    let (s, _dir) = sqlite().await;
    definitions_are_insert_only_and_versioned(&*s).await;
    records_and_signals_settle_once(&*s).await;
    let lease = s.lead().await.unwrap().expect("the only process leads");
    assert!(lease.held().await);
}

#[tokio::test]
async fn postgres_keeps_workflows_and_one_replica_leads() {
    let db = TestDb::create().await;
    let s = postgres(&db).await;
    definitions_are_insert_only_and_versioned(&*s).await;
    records_and_signals_settle_once(&*s).await;

    let other = postgres(&db).await;
    let lease = s.lead().await.unwrap().expect("the first replica leads");
    assert!(lease.held().await);
    assert!(other.lead().await.unwrap().is_none(), "a second replica does not");
    drop(lease);
    // The lock goes with its session; the other replica takes over.
    let mut taken = None;
    for _ in 0..50 {
        taken = other.lead().await.unwrap();
        if taken.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        taken.is_some(),
        "leadership passes on once the leader's session ends"
    );
}
