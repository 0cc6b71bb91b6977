-- The node's signature of a verified task's result.
ALTER TABLE tasks ADD COLUMN result_signature TEXT;
