//! What the authenticator shares with the other tier-0 replicas through the store: the API key
//! table, the revocation list and the rotated signing keys. Each replica writes through the
//! store and reads all three back every second ([`Authenticator::refresh`]), so a key revoked,
//! a token revoked or a key rotated on one replica holds on every replica within a second.

use std::collections::HashMap;
use std::time::Duration;

use cadre_proto::clock::now_ms;
use cadre_store::revocations::MAX_STORED_REVOCATIONS;
use cadre_store::{ApiKeyRecord, Revocation};

use super::keyring::{KeyRing, Revoked};
use super::{Authenticator, validate_name};
use crate::error::Error;

/// What a revocation names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevokeKind {
    /// One token, by its `jti`.
    TokenId,
    /// Every token of a subject issued until now.
    Subject,
}

impl Authenticator {
    /// Reads the shared state once (at open).
    pub(super) async fn loaded(self) -> Result<Self, Error> {
        if self.store.is_some() {
            self.refresh().await?;
        }
        Ok(self)
    }

    /// Replaces the API keys, revocations and rotated signing keys with the store's (nothing on
    /// a node without a store).
    pub async fn refresh(&self) -> Result<(), Error> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let started = now_ms();
        let keys = store.api_keys().await?;
        let revocations = store.revocations().await?;
        let signing = store.signing_keys().await?;
        merge_keys(&mut self.keys.write().unwrap_or_else(|e| e.into_inner()), keys);
        let mut revoked = self.revoked.write().unwrap_or_else(|e| e.into_inner());
        // What this replica revoked while the store was read stays (the next read has it).
        *revoked = Revoked::merged(&revocations, &revoked, started - LOCAL_GRACE_MS);
        drop(revoked);
        self.ring
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .load(&signing);
        let mut shared = self.shared.write().unwrap_or_else(|e| e.into_inner());
        let recent: Vec<Revocation> = shared
            .revocations
            .iter()
            .filter(|r| r.revoked_at_ms >= started - LOCAL_GRACE_MS)
            .cloned()
            .collect();
        shared.revocations = revocations;
        for r in recent {
            if !shared.revocations.contains(&r) {
                shared.add_revocation(&r);
            }
        }
        signing.iter().for_each(|k| shared.add_key(k));
        Ok(())
    }

    /// Forgets revocations no token can outlive any more.
    pub async fn prune(&self) -> Result<u64, Error> {
        match &self.store {
            Some(store) => Ok(store.prune_revocations(now_ms()).await?),
            None => Ok(0),
        }
    }

    /// Revokes a token by id or every token of a subject issued until now, on this replica at
    /// once and on the others at their next refresh. Kept until the longest token issued now
    /// would have expired.
    pub async fn revoke(&self, kind: RevokeKind, value: &str, by: &str) -> Result<Revocation, Error> {
        let (kind, field) = match kind {
            RevokeKind::TokenId => ("jti", "id"),
            RevokeKind::Subject => ("subject", "subject"),
        };
        validate_name(field, value)?;
        let held = {
            let r = self.revoked.read().unwrap_or_else(|e| e.into_inner());
            r.jtis.len() + r.subjects.len()
        };
        if held as i64 >= MAX_STORED_REVOCATIONS {
            return Err(Error::Exhausted(format!(
                "{held} revocations are in force, the most kept; rotate the signing key instead \
                 (cadre token rotate) or wait for old ones to expire"
            )));
        }
        let at = now_ms();
        let keep = Duration::from_secs(self.leeway_secs).saturating_add(self.max_ttl);
        let row = Revocation {
            kind: kind.into(),
            value: value.into(),
            revoked_at_ms: at,
            expires_at_ms: at.saturating_add(keep.as_millis().min(i64::MAX as u128) as i64),
            revoked_by: by.into(),
        };
        self.key_store()?.add_revocation(&row).await?;
        self.revoked.write().unwrap_or_else(|e| e.into_inner()).add(&row);
        self.shared
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .add_revocation(&row);
        Ok(row)
    }

    /// Makes a new signing key (the configured algorithm), stored for every replica; new tokens
    /// are signed with it, the previous key keeps verifying for `auth.key_overlap_secs`.
    /// Returns its id and when the previous key stops verifying (Unix ms).
    pub async fn rotate(&self) -> Result<(String, i64), Error> {
        let store = self.key_store()?;
        let at = now_ms();
        let (stored, key) = {
            let ring = self.ring.read().unwrap_or_else(|e| e.into_inner());
            ring.generate(at)?
        };
        store.add_signing_key(&stored).await?;
        self.shared
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .add_key(&stored);
        let mut ring = self.ring.write().unwrap_or_else(|e| e.into_inner());
        let retire_at = at.saturating_add(ring.overlap_ms);
        push_newest(&mut ring, key);
        Ok((stored.kid, retire_at))
    }

    /// The id of the key that signs new tokens.
    pub fn signing_kid(&self) -> String {
        self.ring
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .signer()
            .kid
            .clone()
    }
}

/// Local revocations younger than this survive a refresh that may have read the store before
/// they were written.
const LOCAL_GRACE_MS: i64 = 10_000;

/// Takes the store's API keys into `keys`. Keys are never deleted, so one created here after
/// the read stays; a revocation made here after the read stays too.
fn merge_keys(keys: &mut HashMap<String, ApiKeyRecord>, stored: Vec<ApiKeyRecord>) {
    for k in stored {
        match keys.get_mut(&k.id) {
            Some(mine) if mine.revoked_at_ms.is_some() && k.revoked_at_ms.is_none() => {}
            Some(mine) => *mine = k,
            None => {
                keys.insert(k.id.clone(), k);
            }
        }
    }
}

/// Adds a key just made unless a refresh loaded it already.
fn push_newest(ring: &mut KeyRing, key: super::keyring::SigningKey) {
    if !ring.rotated.iter().any(|k| k.kid == key.kid) {
        ring.rotated.push(key);
    }
}
