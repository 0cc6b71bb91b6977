//! API keys as stored.

use cadre_proto::Role;

/// An API key as stored: the secret itself is never kept, only a salted SHA-256 of it.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiKeyRecord {
    /// Public id (the part of the key after `cadre_` and before the secret).
    pub id: String,
    /// What it is for.
    pub name: String,
    /// The tenant it works on.
    pub tenant: String,
    /// Its ring.
    pub role: Role,
    /// Random salt, hex.
    pub salt: String,
    /// SHA-256 of salt and secret, hex.
    pub hash: String,
    /// Unix milliseconds.
    pub created_at_ms: i64,
    /// Set once revoked.
    pub revoked_at_ms: Option<i64>,
    /// When it stops working, Unix milliseconds; None = never.
    pub expires_at_ms: Option<i64>,
}
