//! For this crate's tests on both databases: a store and a second connection to its
//! database, for what no store call does (moving a task's times into the past).

use std::sync::Arc;

use crate::Store;
use crate::testing::pg::TestDb;

/// A store and a raw connection to the same database.
pub(crate) struct Opened {
    /// The store under test.
    pub store: Arc<dyn Store>,
    raw: Raw,
    /// The SQLite store's directory (removed when dropped).
    pub dir: Option<tempfile::TempDir>,
}

enum Raw {
    Sqlite(sqlx::SqlitePool),
    Pg(sqlx::PgPool),
}

impl Opened {
    /// A SQLite store in a temporary directory.
    pub async fn sqlite() -> Opened {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = crate::sqlite::SqliteStore::open(&path, false).await.unwrap();
        let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}", path.display()))
            .await
            .unwrap();
        Opened {
            store: Arc::new(store),
            raw: Raw::Sqlite(pool),
            dir: Some(dir),
        }
    }

    /// A PostgreSQL store on `db`.
    pub async fn postgres(db: &TestDb) -> Opened {
        let store = crate::postgres::PgStore::connect(db.url(), 4).await.unwrap();
        Opened {
            store: Arc::new(store),
            raw: Raw::Pg(sqlx::PgPool::connect(db.url()).await.unwrap()),
            dir: None,
        }
    }

    /// Runs `sql` (a statement without parameters) on the raw connection; the rows it
    /// changed.
    pub async fn exec(&self, sql: String) -> u64 {
        match &self.raw {
            Raw::Sqlite(p) => sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(p)
                .await
                .unwrap()
                .rows_affected(),
            Raw::Pg(p) => sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(p)
                .await
                .unwrap()
                .rows_affected(),
        }
    }
}
