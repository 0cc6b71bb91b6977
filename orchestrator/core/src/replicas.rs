//! What tier-0 replicas sharing one store keep in step, every [`REFRESH`]: the API key table,
//! token revocations and rotated signing keys (all replicas, one replica too), and, when
//! several replicas may share the store (`shared`), today's budget spend read back from the
//! usage rows and the number of live replicas that share each tenant's submit rate
//! ([`crate::quota`]). No store round trip is added to the submit path: admission reads what
//! the last refresh left in memory.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cadre_proto::clock::{now_ms, utc_day};
use cadre_store::{Store, UsageFilter};
use tokio_util::sync::CancellationToken;

use crate::budget::Spend;
use crate::node::Node;
use crate::quota::LIVE_WINDOW;

/// How often a replica reads the shared state back.
pub const REFRESH: Duration = Duration::from_secs(1);
/// How often expired revocations are pruned.
const PRUNE_EVERY: u32 = 60;

/// Today's spend per tenant, from the store's usage rows.
pub async fn todays_spend(store: &dyn Store, day: &str) -> cadre_store::StoreResult<HashMap<String, Spend>> {
    let filter = UsageFilter {
        day: Some(day.to_string()),
        ..Default::default()
    };
    let mut spent: HashMap<String, Spend> = HashMap::new();
    for u in store.usage(&filter).await? {
        let s = spent.entry(u.tenant).or_default();
        s.tokens += u.tokens_in + u.tokens_out;
        s.cost_usd += u.cost_usd;
    }
    Ok(spent)
}

/// Starts the refresh loop of `node` (replica id `id`) until `shutdown` or the node is dropped.
pub fn spawn(node: &Arc<Node>, id: String, shared: bool, shutdown: CancellationToken) {
    let weak = Arc::downgrade(node);
    tokio::spawn(async move {
        let mut round = 0u32;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(REFRESH) => {}
                _ = shutdown.cancelled() => return,
            }
            let Some(node) = weak.upgrade() else { return };
            if let Err(e) = node.auth.refresh().await {
                tracing::warn!(error = %e, "cannot refresh credentials from the store");
            }
            if shared {
                refresh_shared(&node, &id).await;
            }
            round = round.wrapping_add(1);
            if round.is_multiple_of(PRUNE_EVERY)
                && let Err(e) = node.auth.prune().await
            {
                tracing::warn!(error = %e, "cannot prune revocations");
            }
        }
    });
}

/// Budget spend and the replica count, from the store.
async fn refresh_shared(node: &Node, id: &str) {
    let now = now_ms();
    match node
        .store
        .beat_replica(id, now, now - LIVE_WINDOW.as_millis() as i64)
        .await
    {
        Ok(n) => node.quotas.set_replicas(n),
        Err(e) => tracing::warn!(error = %e, "cannot record this replica's heartbeat"),
    }
    let day = utc_day(now);
    match todays_spend(node.store.as_ref(), &day).await {
        Ok(spent) => node.budgets.merge(&day, spent),
        Err(e) => tracing::warn!(error = %e, "cannot read today's spend"),
    }
}
