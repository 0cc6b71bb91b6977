//! A throwaway PostgreSQL database per test, so PostgreSQL tests run in parallel and leave
//! nothing behind.
//!
//! The server is `CADRE_TEST_PG_URL` (an admin URL: a role that may create databases, and an
//! existing database to connect to), default `postgres://root@127.0.0.1:5432/test`, the
//! server `scripts/services.sh` starts. If it cannot be reached the test fails and says so:
//! distributed-mode tests are never skipped silently.

use sqlx::{Connection, Executor, PgConnection};

/// The admin URL when `CADRE_TEST_PG_URL` is not set.
const DEFAULT_ADMIN_URL: &str = "postgres://root@127.0.0.1:5432/test";

/// The server's admin URL.
pub fn admin_url() -> String {
    std::env::var("CADRE_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_string())
}

/// An admin connection (to the admin URL's database, not to a test database).
pub async fn admin() -> PgConnection {
    let url = admin_url();
    PgConnection::connect(&url).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is not reachable at {url}: {e}\n\
             Start it with scripts/services.sh, or point CADRE_TEST_PG_URL at a server \
             (a role that may create databases)."
        )
    })
}

/// `url` with its database replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, format!("?{q}")),
        None => (rest, String::new()),
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    format!("{scheme}://{authority}/{db}{query}")
}

/// A database `cadre_t_<random>` created for one test and dropped (with its connections
/// forced off) when this value drops, also when the test panics.
pub struct TestDb {
    name: String,
    url: String,
}

impl TestDb {
    /// Creates a fresh, empty database.
    pub async fn create() -> TestDb {
        // A UUIDv7's last 16 hex digits are random.
        let id = cadre_proto::TaskId::new().to_string().replace('-', "");
        let name = format!("cadre_t_{}", &id[id.len() - 16..]);
        let mut conn = admin().await;
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        let _ = conn.close().await;
        TestDb {
            url: with_database(&admin_url(), &name),
            name,
        }
    }

    /// The URL of the database, for `store::open` or `store.url` in a node's config.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot be blocked on: use a small runtime
        // on a thread of its own and wait for it.
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let mut conn = PgConnection::connect(&admin_url()).await?;
                conn.execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .await?;
                conn.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}: {dropped:?}", self.name);
        }
    }
}
