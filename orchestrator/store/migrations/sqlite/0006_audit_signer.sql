-- Which node key signed each audit record (the hex Ed25519 public key), so a chain extended by
-- several nodes can be verified; empty on records written before.
ALTER TABLE audit ADD COLUMN signer TEXT NOT NULL DEFAULT '';
