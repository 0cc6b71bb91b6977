//! The core's side of the audit chain: the node's sealing key, and drafts of acts by
//! principals. The chain itself (hashing, sealing, verification) is the store's
//! ([`cadre_store::chain`]); the writer hands drafts to the store, which seals them in commit
//! order.

use std::path::Path;

use cadre_store::chain::{AuditDraft, NODE_KEY_FILE, NODE_PUBLIC_KEY_FILE};
use ed25519_dalek::SigningKey;

use crate::auth::{self, Principal};
use crate::error::Error;

/// A draft of `action` on `target` by `p` (None: a caller whose credential was refused).
pub fn draft(p: Option<&Principal>, action: &str, target: &str, outcome: &str, detail: &str) -> AuditDraft {
    let d = AuditDraft::new(action, target, outcome, detail);
    match p {
        Some(p) => d.by(&p.subject, &p.tenant, p.role),
        None => d,
    }
}

/// Loads the node's signing key, creating it (0600) on first start.
pub fn node_key(data_dir: &Path) -> Result<SigningKey, Error> {
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
    let bad = |e: &dyn std::fmt::Display| Error::FailedPrecondition(format!("node key: {e}"));
    let path = data_dir.join(NODE_KEY_FILE);
    let pem = auth::read_or_create(&path, || {
        let key = SigningKey::from_bytes(&auth::random_bytes::<32>()?);
        let public = key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| bad(&e))?;
        auth::write_private(&data_dir.join(NODE_PUBLIC_KEY_FILE), public.as_bytes()).map_err(|e| bad(&e))?;
        Ok(key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| bad(&e))?
            .as_bytes()
            .to_vec())
    })?;
    SigningKey::from_pkcs8_pem(&String::from_utf8_lossy(&pem)).map_err(|e| bad(&e))
}

/// Reads a public key PEM (a node's `node-ed25519.pub.pem`).
pub fn public_key(pem: &str) -> Result<ed25519_dalek::VerifyingKey, Error> {
    cadre_store::chain::public_key(pem).map_err(Error::FailedPrecondition)
}
