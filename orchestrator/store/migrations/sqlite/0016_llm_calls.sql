-- One row per model call (issue 20): who asked which model, which answered, the fallbacks
-- taken, timings, tokens, cost, and (when the node keeps them) the prompt and reply, redacted
-- and bounded by tier 0. Stored with the call's usage row, deleted with its task (retention).
CREATE TABLE llm_calls (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id         TEXT NOT NULL,
    tenant          TEXT NOT NULL,
    attempt         INTEGER NOT NULL,
    provider        TEXT NOT NULL,
    model_requested TEXT NOT NULL,
    model_used      TEXT NOT NULL,
    fallbacks       TEXT NOT NULL,
    started_at_ms   INTEGER NOT NULL,
    first_token_ms  INTEGER,
    total_ms        INTEGER NOT NULL,
    tokens_in       INTEGER NOT NULL,
    tokens_out      INTEGER NOT NULL,
    cost_usd        REAL NOT NULL,
    finish_reason   TEXT NOT NULL,
    cache_hit       INTEGER NOT NULL,
    trace_id        TEXT NOT NULL,
    prompt          TEXT,
    reply           TEXT
);
-- Listing is newest first (by id) within a tenant, or of one task.
CREATE INDEX llm_calls_tenant ON llm_calls (tenant, id);
CREATE INDEX llm_calls_task ON llm_calls (task_id, id);
