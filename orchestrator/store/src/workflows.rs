//! What workflows keep beyond tasks: registered definitions (insert-only), and each instance's
//! engine records (waits, timers, refused submissions) and signal inbox. An instance itself is
//! a task row and its steps are its sub-tasks, written by the group-commit writer like any
//! other; these tables are written directly, each call its own short transaction, because the
//! engine's writes are idempotent and need no event.
//!
//! Both SQL stores implement [`WorkflowStore`] with the same statements (`impl_workflow_store!`);
//! only leadership ([`WorkflowStore::lead`]) differs: SQLite's single process always leads,
//! PostgreSQL replicas contend for a session advisory lock.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use async_trait::async_trait;
use cadre_proto::{TaskId, TaskRecord};
use cadre_workflow::{Record, Signal};
use serde_json::Value;
use sqlx::{Database, Encode, QueryBuilder, Type};

use crate::error::StoreResult;

/// A registered workflow definition, as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredDefinition {
    /// Its name (`workflow.<name>.run` starts an instance).
    pub name: String,
    /// Its version (1, 2, ...; immutable once stored).
    pub version: u32,
    /// The definition as registered, JSON text.
    pub body: String,
    /// When it was registered, Unix milliseconds.
    pub created_at_ms: i64,
    /// Who registered it (a subject, or `config` for files loaded at start).
    pub created_by: String,
}

/// A signal to store in an instance's inbox.
#[derive(Clone, Debug, PartialEq)]
pub struct NewSignal {
    /// Its name.
    pub name: String,
    /// What it carries.
    pub payload: Value,
    /// Who sent it.
    pub sender: String,
    /// When, Unix milliseconds.
    pub at_ms: i64,
}

/// Everything stored about one instance besides its own row.
#[derive(Clone, Debug, Default)]
pub struct InstanceState {
    /// Its sub-tasks in the instance's tenant, oldest first (each with its idempotency key in
    /// its spec).
    pub children: Vec<TaskRecord>,
    /// Its engine records by id.
    pub records: BTreeMap<String, Record>,
    /// Its signals, oldest first.
    pub signals: Vec<Signal>,
}

/// Leadership of the workflow engine: held while this value lives (and, on PostgreSQL, while
/// its connection does).
pub struct Lease {
    inner: LeaseInner,
}

enum LeaseInner {
    /// The only process on its database.
    Sole,
    /// A PostgreSQL session advisory lock, held by this connection.
    Session(tokio::sync::Mutex<sqlx::PgConnection>),
}

impl Lease {
    /// A lease in a store only one process uses.
    pub(crate) fn sole() -> Lease {
        Lease {
            inner: LeaseInner::Sole,
        }
    }

    /// A lease held by a PostgreSQL session.
    pub(crate) fn session(conn: sqlx::PgConnection) -> Lease {
        Lease {
            inner: LeaseInner::Session(tokio::sync::Mutex::new(conn)),
        }
    }

    /// Whether it is still held: false once the session that holds the lock is gone (the
    /// database restarted, the connection broke), when another replica may take over.
    pub async fn held(&self) -> bool {
        match &self.inner {
            LeaseInner::Sole => true,
            LeaseInner::Session(conn) => {
                let mut conn = conn.lock().await;
                sqlx::query("SELECT 1").execute(&mut *conn).await.is_ok()
            }
        }
    }
}

#[async_trait]
/// Durable storage of workflow definitions, engine records and signals.
pub trait WorkflowStore: Send + Sync {
    /// Stores a definition; false (nothing written) if that name and version exist.
    async fn insert_definition(&self, d: &StoredDefinition) -> StoreResult<bool>;
    /// One version of a definition, or its newest (`version` None).
    async fn definition(&self, name: &str, version: Option<u32>) -> StoreResult<Option<StoredDefinition>>;
    /// The newest version of every definition by name, or every version of `name`, oldest
    /// first.
    async fn definitions(&self, name: Option<&str>) -> StoreResult<Vec<StoredDefinition>>;
    /// An instance's sub-tasks (in `tenant`), records and signals.
    async fn instance_state(&self, instance: TaskId, tenant: &str) -> StoreResult<InstanceState>;
    /// Opens a record unless it exists.
    async fn open_record(
        &self,
        instance: TaskId,
        record: &str,
        opened_at_ms: i64,
        due_at_ms: Option<i64>,
    ) -> StoreResult<()>;
    /// Settles a record (creating it if it was never opened) and takes signal `consume` from
    /// the inbox, both or neither: false, nothing written, when the record was settled
    /// already or the signal was taken by another record.
    async fn close_record(
        &self,
        instance: TaskId,
        record: &str,
        done: &cadre_workflow::Done,
        consume: Option<i64>,
    ) -> StoreResult<bool>;
    /// Puts a signal in an instance's inbox; returns its seq.
    async fn add_signal(&self, instance: TaskId, signal: &NewSignal) -> StoreResult<i64>;
    /// Tries to become the one replica that drives workflow instances: Some while this
    /// process leads (always, on SQLite), None when another replica does.
    async fn lead(&self) -> StoreResult<Option<Lease>>;
}

/// The columns [`DefinitionRow`] reads.
pub(crate) const DEFINITION_COLUMNS: &str = "name, version, body, created_at_ms, created_by";

/// A stored definition row.
#[derive(sqlx::FromRow)]
pub(crate) struct DefinitionRow {
    name: String,
    version: i64,
    body: String,
    created_at_ms: i64,
    created_by: String,
}

impl From<DefinitionRow> for StoredDefinition {
    fn from(r: DefinitionRow) -> Self {
        StoredDefinition {
            name: r.name,
            version: r.version.clamp(0, u32::MAX as i64) as u32,
            body: r.body,
            created_at_ms: r.created_at_ms,
            created_by: r.created_by,
        }
    }
}

/// A stored record row: (record, opened_at_ms, due_at_ms, done).
pub(crate) type RecordRow = (String, i64, Option<i64>, Option<String>);
/// A stored signal row: (seq, name, payload, sender, at_ms, consumed_by).
pub(crate) type SignalRow = (i64, String, String, String, i64, Option<String>);

/// The records of an instance from their rows.
pub(crate) fn records(rows: Vec<RecordRow>) -> StoreResult<BTreeMap<String, Record>> {
    rows.into_iter()
        .map(|(id, opened_at_ms, due_at_ms, done)| {
            let done = done
                .map(|d| serde_json::from_str(&d).map_err(|e| crate::rows::corrupt("workflow record", e)))
                .transpose()?;
            Ok((
                id,
                Record {
                    opened_at_ms,
                    due_at_ms,
                    done,
                },
            ))
        })
        .collect()
}

/// The signals of an instance from their rows.
pub(crate) fn signals(rows: Vec<SignalRow>) -> StoreResult<Vec<Signal>> {
    rows.into_iter()
        .map(|(seq, name, payload, sender, at_ms, consumed_by)| {
            Ok(Signal {
                seq,
                name,
                payload: serde_json::from_str(&payload)
                    .map_err(|e| crate::rows::corrupt("workflow signal", e))?,
                sender,
                at_ms,
                consumed: consumed_by.is_some(),
            })
        })
        .collect()
}

/// Query builders for database `DB` (only used as `WfSql::<DB>::...`).
pub(crate) struct WfSql<DB>(PhantomData<DB>);

impl<DB> WfSql<DB>
where
    DB: Database,
    DB::Arguments: Default,
    String: for<'t> Encode<'t, DB> + Type<DB>,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
    Option<i64>: for<'t> Encode<'t, DB> + Type<DB>,
{
    /// Inserts a definition unless its name and version exist.
    pub fn insert_definition(d: &StoredDefinition) -> QueryBuilder<DB> {
        let mut qb = QueryBuilder::new(format!(
            "INSERT INTO workflow_definitions ({DEFINITION_COLUMNS}) "
        ));
        qb.push_values([d], |mut b, d| {
            b.push_bind(d.name.clone())
                .push_bind(i64::from(d.version))
                .push_bind(d.body.clone())
                .push_bind(d.created_at_ms)
                .push_bind(d.created_by.clone());
        });
        qb.push(" ON CONFLICT (name, version) DO NOTHING");
        qb
    }

    /// One version of a definition, or the newest.
    pub fn definition(name: &str, version: Option<u32>) -> QueryBuilder<DB> {
        let mut qb = QueryBuilder::new(format!(
            "SELECT {DEFINITION_COLUMNS} FROM workflow_definitions WHERE name = "
        ));
        qb.push_bind(name.to_string());
        match version {
            Some(v) => {
                qb.push(" AND version = ").push_bind(i64::from(v));
            }
            None => {
                qb.push(" ORDER BY version DESC LIMIT 1");
            }
        }
        qb
    }

    /// The newest version of each definition, or every version of `name`.
    pub fn definitions(name: Option<&str>) -> QueryBuilder<DB> {
        let mut qb = QueryBuilder::new(format!(
            "SELECT {DEFINITION_COLUMNS} FROM workflow_definitions d WHERE "
        ));
        match name {
            Some(n) => {
                qb.push("name = ")
                    .push_bind(n.to_string())
                    .push(" ORDER BY version");
            }
            None => {
                qb.push(
                    "version = (SELECT MAX(version) FROM workflow_definitions m WHERE m.name = d.name) \
                     ORDER BY name",
                );
            }
        }
        qb
    }

    /// An instance's sub-task rows in its tenant, oldest first.
    pub fn children(instance: TaskId, tenant: &str) -> QueryBuilder<DB> {
        let mut qb = QueryBuilder::new(format!(
            "SELECT {} FROM tasks WHERE parent_id = ",
            crate::rows::TASK_COLUMNS
        ));
        qb.push_bind(instance.to_string())
            .push(" AND tenant = ")
            .push_bind(tenant.to_string())
            .push(" ORDER BY id");
        qb
    }

    /// An instance's record rows.
    pub fn records(instance: TaskId) -> QueryBuilder<DB> {
        let mut qb = QueryBuilder::new(
            "SELECT record, opened_at_ms, due_at_ms, done FROM workflow_records WHERE instance = ",
        );
        qb.push_bind(instance.to_string());
        qb
    }

    /// An instance's signal rows, oldest first.
    pub fn signals(instance: TaskId) -> QueryBuilder<DB> {
        let mut qb = QueryBuilder::new(
            "SELECT seq, name, payload, sender, at_ms, consumed_by FROM workflow_signals WHERE instance = ",
        );
        qb.push_bind(instance.to_string()).push(" ORDER BY seq");
        qb
    }

    /// `INSERT INTO workflow_records ... VALUES (instance, record, opened_at_ms, ` (the
    /// caller adds `due_at_ms, done)` and what a conflict does).
    fn record_insert(instance: TaskId, record: &str, opened_at_ms: i64) -> QueryBuilder<DB> {
        let mut qb = QueryBuilder::new(
            "INSERT INTO workflow_records (instance, record, opened_at_ms, due_at_ms, done) VALUES (",
        );
        qb.push_bind(instance.to_string())
            .push(", ")
            .push_bind(record.to_string())
            .push(", ")
            .push_bind(opened_at_ms)
            .push(", ");
        qb
    }

    /// Opens a record unless it exists.
    pub fn open_record(
        instance: TaskId,
        record: &str,
        opened_at_ms: i64,
        due_at_ms: Option<i64>,
    ) -> QueryBuilder<DB> {
        let mut qb = Self::record_insert(instance, record, opened_at_ms);
        qb.push_bind(due_at_ms)
            .push(", NULL) ON CONFLICT (instance, record) DO NOTHING");
        qb
    }

    /// Settles a record (inserting it settled if it was never opened) unless it is settled.
    pub fn close_record(instance: TaskId, record: &str, done: String, at_ms: i64) -> QueryBuilder<DB> {
        let mut qb = Self::record_insert(instance, record, at_ms);
        qb.push("NULL, ").push_bind(done).push(
            ") ON CONFLICT (instance, record) DO UPDATE SET done = excluded.done \
                 WHERE workflow_records.done IS NULL",
        );
        qb
    }

    /// Marks signal `seq` of `instance` taken by `record`, unless it is taken.
    pub fn consume(instance: TaskId, seq: i64, record: &str) -> QueryBuilder<DB> {
        let mut qb = QueryBuilder::new("UPDATE workflow_signals SET consumed_by = ");
        qb.push_bind(record.to_string())
            .push(" WHERE seq = ")
            .push_bind(seq)
            .push(" AND instance = ")
            .push_bind(instance.to_string())
            .push(" AND consumed_by IS NULL");
        qb
    }

    /// Inserts a signal, returning its seq.
    pub fn add_signal(instance: TaskId, s: &NewSignal, payload: String) -> QueryBuilder<DB> {
        let mut qb = QueryBuilder::new(
            "INSERT INTO workflow_signals (instance, name, payload, sender, at_ms) VALUES (",
        );
        qb.push_bind(instance.to_string())
            .push(", ")
            .push_bind(s.name.clone())
            .push(", ")
            .push_bind(payload)
            .push(", ")
            .push_bind(s.sender.clone())
            .push(", ")
            .push_bind(s.at_ms)
            .push(") RETURNING seq");
        qb
    }
}

/// Implements [`WorkflowStore`] for a SQL store type with the [`WfSql`] statements on its
/// `pool` (of database `$db`); leadership comes from the type's own `take_lead`. Text a caller
/// passes goes through the type's `stored_text` first.
macro_rules! impl_workflow_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::workflows::WorkflowStore for $store {
            async fn insert_definition(
                &self,
                d: &$crate::workflows::StoredDefinition,
            ) -> $crate::StoreResult<bool> {
                let d = $crate::workflows::StoredDefinition {
                    name: Self::stored_text(&d.name).into_owned(),
                    body: Self::stored_text(&d.body).into_owned(),
                    created_by: Self::stored_text(&d.created_by).into_owned(),
                    ..d.clone()
                };
                let n = $crate::workflows::WfSql::<$db>::insert_definition(&d)
                    .build()
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                Ok(n == 1)
            }

            async fn definition(
                &self,
                name: &str,
                version: Option<u32>,
            ) -> $crate::StoreResult<Option<$crate::workflows::StoredDefinition>> {
                let row: Option<$crate::workflows::DefinitionRow> =
                    $crate::workflows::WfSql::<$db>::definition(&Self::stored_text(name), version)
                        .build_query_as()
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(row.map(Into::into))
            }

            async fn definitions(
                &self,
                name: Option<&str>,
            ) -> $crate::StoreResult<Vec<$crate::workflows::StoredDefinition>> {
                let name = name.map(Self::stored_text);
                let rows: Vec<$crate::workflows::DefinitionRow> =
                    $crate::workflows::WfSql::<$db>::definitions(name.as_deref())
                        .build_query_as()
                        .fetch_all(&self.pool)
                        .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn instance_state(
                &self,
                instance: cadre_proto::TaskId,
                tenant: &str,
            ) -> $crate::StoreResult<$crate::workflows::InstanceState> {
                use $crate::workflows::{RecordRow, SignalRow, WfSql};
                // Three reads at once (the engine reads this for every drive); each is
                // consistent on its own, and the engine's reconcile is idempotent.
                let mut children = WfSql::<$db>::children(instance, &Self::stored_text(tenant));
                let mut records = WfSql::<$db>::records(instance);
                let mut signals = WfSql::<$db>::signals(instance);
                let (children, records, signals): (
                    Vec<$crate::rows::TaskRow>,
                    Vec<RecordRow>,
                    Vec<SignalRow>,
                ) = futures::try_join!(
                    children.build_query_as().fetch_all(&self.pool),
                    records.build_query_as().fetch_all(&self.pool),
                    signals.build_query_as().fetch_all(&self.pool),
                )?;
                Ok($crate::workflows::InstanceState {
                    children: $crate::rows::TaskRow::records(children)?,
                    records: $crate::workflows::records(records)?,
                    signals: $crate::workflows::signals(signals)?,
                })
            }

            async fn open_record(
                &self,
                instance: cadre_proto::TaskId,
                record: &str,
                opened_at_ms: i64,
                due_at_ms: Option<i64>,
            ) -> $crate::StoreResult<()> {
                $crate::workflows::WfSql::<$db>::open_record(
                    instance,
                    &Self::stored_text(record),
                    opened_at_ms,
                    due_at_ms,
                )
                .build()
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn close_record(
                &self,
                instance: cadre_proto::TaskId,
                record: &str,
                done: &cadre_workflow::Done,
                consume: Option<i64>,
            ) -> $crate::StoreResult<bool> {
                use $crate::workflows::WfSql;
                let record = Self::stored_text(record);
                let text = serde_json::to_string(done)
                    .map_err(|e| $crate::StoreError(format!("cannot encode a record: {e}")))?;
                let mut tx = self.pool.begin().await?;
                let settled = WfSql::<$db>::close_record(
                    instance,
                    &record,
                    Self::stored_text(&text).into_owned(),
                    done.at_ms,
                )
                .build()
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if settled != 1 {
                    return Ok(false);
                }
                if let Some(seq) = consume {
                    let taken = WfSql::<$db>::consume(instance, seq, &record)
                        .build()
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if taken != 1 {
                        return Ok(false);
                    }
                }
                tx.commit().await?;
                Ok(true)
            }

            async fn add_signal(
                &self,
                instance: cadre_proto::TaskId,
                s: &$crate::workflows::NewSignal,
            ) -> $crate::StoreResult<i64> {
                let s = $crate::workflows::NewSignal {
                    name: Self::stored_text(&s.name).into_owned(),
                    sender: Self::stored_text(&s.sender).into_owned(),
                    ..s.clone()
                };
                let payload = Self::stored_text(&s.payload.to_string()).into_owned();
                let seq: i64 = $crate::workflows::WfSql::<$db>::add_signal(instance, &s, payload)
                    .build_query_scalar()
                    .fetch_one(&self.pool)
                    .await?;
                Ok(seq)
            }

            async fn lead(&self) -> $crate::StoreResult<Option<$crate::workflows::Lease>> {
                self.take_lead().await
            }
        }
    };
}
pub(crate) use impl_workflow_store;
