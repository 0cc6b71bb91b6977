-- Which node key signed each audit record (the hex Ed25519 public key): every tier-0 replica
-- seals with its own key into the one shared chain. Empty on records written before.
ALTER TABLE audit ADD COLUMN signer TEXT NOT NULL DEFAULT '';
