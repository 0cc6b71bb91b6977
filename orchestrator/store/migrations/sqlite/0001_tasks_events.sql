-- Tasks and their event log. Ids are UUIDv7 text, so ordering by id is ordering by creation.
CREATE TABLE tasks (
    id              TEXT PRIMARY KEY NOT NULL,
    tenant          TEXT NOT NULL,
    task_type       TEXT NOT NULL,
    supervisor      TEXT NOT NULL,
    worker_kind     TEXT NOT NULL,
    spec            TEXT NOT NULL,          -- TaskSpec as JSON
    state           TEXT NOT NULL,
    attempt         INTEGER NOT NULL DEFAULT 0,
    seq             INTEGER NOT NULL DEFAULT 0,
    result          TEXT,
    error           TEXT,
    parent_id       TEXT,
    idempotency_key TEXT,
    created_at_ms   INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL
);
CREATE UNIQUE INDEX tasks_idempotency ON tasks (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX tasks_unfinished ON tasks (supervisor, state) WHERE state IN ('QUEUED', 'RUNNING', 'RETRYING');
CREATE INDEX tasks_parent ON tasks (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX tasks_type ON tasks (task_type, id);

CREATE TABLE events (
    cursor      INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id     TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    state       TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    message     TEXT NOT NULL,
    progress    REAL NOT NULL,
    result      TEXT,
    at_ms       INTEGER NOT NULL,
    task_type   TEXT NOT NULL,
    tenant      TEXT NOT NULL,
    is_progress INTEGER NOT NULL
);
CREATE INDEX events_task ON events (task_id, cursor);
