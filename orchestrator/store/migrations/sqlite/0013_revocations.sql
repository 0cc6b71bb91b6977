-- Revoked JWTs (AdminService.RevokeToken): by token id (`jti`) or every token of a subject
-- issued at or before `revoked_at_ms`. Kept until `expires_at_ms` (the longest token lifetime
-- after the revocation), then pruned: no token it names can still be valid.
CREATE TABLE revocations (
    kind          TEXT NOT NULL,      -- jti | subject
    value         TEXT NOT NULL,
    revoked_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    revoked_by    TEXT NOT NULL,
    PRIMARY KEY (kind, value)
);

-- JWT signing keys made by `cadre token rotate`, newest last; the key material is sealed
-- (ChaCha20-Poly1305) with a key derived from the node's configured signing key.
CREATE TABLE signing_keys (
    kid           TEXT PRIMARY KEY NOT NULL,
    algorithm     TEXT NOT NULL,
    sealed        TEXT NOT NULL,
    public_pem    TEXT NOT NULL DEFAULT '',
    created_at_ms INTEGER NOT NULL
);

-- Live tier-0 replicas (each refreshes its row every second): per-replica shares of the
-- tenants' submit rates.
CREATE TABLE tier0_replicas (
    id           TEXT PRIMARY KEY NOT NULL,
    seen_at_ms   INTEGER NOT NULL
);
