-- Each task's delegation depth (0 for a task submitted on its own, its parent's + 1 for a
-- sub-task), so intake bounds delegation chains (limits.max_delegation_depth) with one read
-- of the parent. Tasks stored before are given theirs from their parent chain.
ALTER TABLE tasks ADD COLUMN depth INTEGER NOT NULL DEFAULT 0;
WITH RECURSIVE chain(id, depth) AS (
    SELECT id, 0 FROM tasks WHERE parent_id IS NULL
    UNION ALL
    SELECT t.id, chain.depth + 1 FROM tasks t JOIN chain ON t.parent_id = chain.id
)
UPDATE tasks SET depth = (SELECT chain.depth FROM chain WHERE chain.id = tasks.id)
  WHERE parent_id IS NOT NULL AND id IN (SELECT id FROM chain);

-- API keys may expire (CreateApiKeyRequest.ttl_secs); NULL = never.
ALTER TABLE api_keys ADD COLUMN expires_at_ms INTEGER;
