-- What stands for the pruned start of the audit chain: the last record removed (its seq, hash and
-- sealing time), signed by the node that pruned it. One row at most (id 1), replaced by each
-- prune in the transaction that deletes the records; `cadre audit verify` checks from it.
CREATE TABLE audit_checkpoint (
    id         INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    seq        INTEGER NOT NULL,
    hash       TEXT NOT NULL,
    at_ms      INTEGER NOT NULL,
    signature  TEXT NOT NULL,
    signer     TEXT NOT NULL
);
