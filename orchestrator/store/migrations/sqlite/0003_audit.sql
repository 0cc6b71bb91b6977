-- The audit chain: append-only; each record holds the previous record's hash and is signed
-- with the node's Ed25519 key. The signed head (last seq and hash) is kept in a file beside
-- the database, so cutting records off the tail is detected too.
CREATE TABLE audit (
    seq        INTEGER PRIMARY KEY NOT NULL,
    at_ms      INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    tenant     TEXT NOT NULL,
    role       TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    detail     TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL,
    signature  TEXT NOT NULL
);
CREATE INDEX audit_target ON audit (target);
