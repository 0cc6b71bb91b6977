//! Picking a store from its URL.

use std::sync::Arc;

use crate::backend::Store;
use crate::error::{StoreError, StoreResult};
use crate::{postgres, sqlite};

/// Opens the store a URL names: `sqlite:...` gives a [`sqlite::SqliteStore`] (with
/// `synchronous=FULL` if `sqlite_full_sync`), `postgres://...` or `postgresql://...` a
/// [`postgres::PgStore`] with [`postgres::DEFAULT_MAX_CONNECTIONS`] pooled connections. Both
/// create their schema if it is missing.
pub async fn open(url: &str, sqlite_full_sync: bool) -> StoreResult<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        if !sqlite_full_sync {
            tracing::warn!(
                "store.synchronous = \"normal\": a power loss or OS crash can lose the last commits, \
                 tasks already acknowledged included (a crash of cadre alone loses nothing)"
            );
        }
        Ok(Arc::new(
            sqlite::SqliteStore::open_url(url, sqlite_full_sync).await?,
        ))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(
            postgres::PgStore::connect(url, postgres::DEFAULT_MAX_CONNECTIONS).await?,
        ))
    } else {
        let scheme = url.split_once(':').map_or(url, |(s, _)| s);
        Err(StoreError(format!(
            "unsupported store URL scheme {scheme:?}: expected sqlite:PATH, postgres://... or postgresql://..."
        )))
    }
}
