//! What tier 0 shares with supervisor nodes about credentials. Supervisor nodes keep no store,
//! so they cannot read revocations or rotated signing keys themselves: tier 0 sends them the
//! set it holds ([`Authenticator::credentials_to_share`], with the pause set, at once after a
//! revocation or rotation and every few seconds), and a node replaces its own with it
//! ([`Authenticator::take_shared`]). So a token revoked at tier 0 is refused by supervisor
//! nodes too (a remote worker attached there loses its stream), and a token signed with a
//! rotated key is accepted there.
//!
//! Signing keys travel sealed, as the store keeps them: a node opens them with the configured
//! key it already has; nothing readable without that key crosses the wire.

use cadre_proto::v1;
use cadre_store::{Revocation, StoredSigningKey};

use super::Authenticator;
use super::keyring::Revoked;
use crate::error::Error;

/// Most revocations sent to a node (the newest); at about 100 bytes each they fit well in the
/// default 4 MiB gRPC message. More than that in force is logged at each send.
pub const MAX_SHARED_REVOCATIONS: usize = 10_000;
/// Most rotated signing keys sent to, or taken by, a node.
pub const MAX_SHARED_KEYS: usize = 1_000;

impl Authenticator {
    /// What supervisor nodes should check tokens against now: the newest
    /// [`MAX_SHARED_REVOCATIONS`] revocations and the rotated signing keys.
    pub fn credentials_to_share(&self) -> v1::SetCredentialsRequest {
        let rows = self.shared.read().unwrap_or_else(|e| e.into_inner());
        let skip = rows.revocations.len().saturating_sub(MAX_SHARED_REVOCATIONS);
        if skip > 0 {
            tracing::warn!(
                in_force = rows.revocations.len(),
                sent = MAX_SHARED_REVOCATIONS,
                "more revocations in force than supervisor nodes are sent; the oldest are left out \
                 (rotate the signing key instead of revoking so many tokens)"
            );
        }
        v1::SetCredentialsRequest {
            revocations: rows.revocations[skip..].iter().map(revocation_to_wire).collect(),
            signing_keys: rows
                .keys
                .iter()
                .rev()
                .take(MAX_SHARED_KEYS)
                .rev()
                .map(key_to_wire)
                .collect(),
        }
    }

    /// Replaces this node's revocations with tier 0's and adds the rotated keys it can open
    /// (a supervisor node; a node with a store reads both from it and ignores this). A
    /// malformed set is refused whole and changes nothing.
    pub fn take_shared(&self, wire: &v1::SetCredentialsRequest) -> Result<(), Error> {
        if self.store.is_some() {
            return Ok(());
        }
        if wire.revocations.len() > MAX_SHARED_REVOCATIONS || wire.signing_keys.len() > MAX_SHARED_KEYS {
            return Err(Error::Exhausted(format!(
                "at most {MAX_SHARED_REVOCATIONS} revocations and {MAX_SHARED_KEYS} signing keys are taken"
            )));
        }
        let mut rows = Vec::with_capacity(wire.revocations.len());
        for r in &wire.revocations {
            if r.kind != "jti" && r.kind != "subject" {
                return Err(cadre_proto::SpecError::invalid(
                    "revocations.kind",
                    format!("{:?} is not jti or subject", r.kind),
                )
                .into());
            }
            rows.push(Revocation {
                kind: r.kind.clone(),
                value: r.value.clone(),
                revoked_at_ms: r.revoked_at_ms,
                expires_at_ms: r.expires_at_ms,
                revoked_by: String::new(),
            });
        }
        let keys: Vec<StoredSigningKey> = wire.signing_keys.iter().map(key_from_wire).collect();
        *self.revoked.write().unwrap_or_else(|e| e.into_inner()) = Revoked::from_stored(&rows);
        self.ring.write().unwrap_or_else(|e| e.into_inner()).load(&keys);
        Ok(())
    }
}

fn revocation_to_wire(r: &Revocation) -> v1::PeerRevocation {
    v1::PeerRevocation {
        kind: r.kind.clone(),
        value: r.value.clone(),
        revoked_at_ms: r.revoked_at_ms,
        expires_at_ms: r.expires_at_ms,
    }
}

fn key_to_wire(k: &StoredSigningKey) -> v1::PeerSigningKey {
    v1::PeerSigningKey {
        kid: k.kid.clone(),
        algorithm: k.algorithm.clone(),
        sealed: k.sealed.clone(),
        public_pem: k.public_pem.clone(),
        created_at_ms: k.created_at_ms,
    }
}

fn key_from_wire(k: &v1::PeerSigningKey) -> StoredSigningKey {
    StoredSigningKey {
        kid: k.kid.clone(),
        algorithm: k.algorithm.clone(),
        sealed: k.sealed.clone(),
        public_pem: k.public_pem.clone(),
        created_at_ms: k.created_at_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_keys_round_trip() {
        let k = StoredSigningKey {
            kid: "k1".into(),
            algorithm: "HS256".into(),
            sealed: "sealed".into(),
            public_pem: String::new(),
            created_at_ms: 7,
        };
        assert_eq!(key_from_wire(&key_to_wire(&k)), k);
    }
}
