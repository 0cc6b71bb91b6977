-- The distributed-mode schema: the same tables and columns as migrations/sqlite (so one set
-- of row decoders reads both), typed for PostgreSQL. Ids are UUIDv7 text in the "C" collation,
-- so ordering by id is byte order, which is creation order, exactly as in SQLite.

CREATE TABLE tasks (
    id               TEXT COLLATE "C" PRIMARY KEY,
    tenant           TEXT NOT NULL,
    task_type        TEXT COLLATE "C" NOT NULL,
    supervisor       TEXT NOT NULL,
    worker_kind      TEXT NOT NULL,
    spec             TEXT NOT NULL,          -- TaskSpec as JSON
    state            TEXT NOT NULL,
    attempt          BIGINT NOT NULL DEFAULT 0,
    seq              BIGINT NOT NULL DEFAULT 0,
    result           TEXT,                   -- JSON
    error            TEXT,
    parent_id        TEXT COLLATE "C",
    idempotency_key  TEXT,
    created_at_ms    BIGINT NOT NULL,
    updated_at_ms    BIGINT NOT NULL,
    result_signature TEXT
);
-- One task per (tenant, key), across every replica: a racing second insert conflicts here.
CREATE UNIQUE INDEX tasks_idempotency ON tasks (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX tasks_unfinished ON tasks (supervisor, id) WHERE state IN ('QUEUED', 'RUNNING', 'RETRYING');
CREATE INDEX tasks_parent ON tasks (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX tasks_tenant ON tasks (tenant, id);

-- The event log. Cursors are allocated by the writing transaction (MAX + 1 under an advisory
-- lock, see store/postgres.rs), not by a sequence, so they have no gaps and commit in order.
CREATE TABLE events (
    cursor      BIGINT PRIMARY KEY,
    task_id     TEXT COLLATE "C" NOT NULL,
    seq         BIGINT NOT NULL,
    state       TEXT NOT NULL,
    attempt     BIGINT NOT NULL,
    message     TEXT NOT NULL,
    progress    DOUBLE PRECISION NOT NULL,
    result      TEXT,
    at_ms       BIGINT NOT NULL,
    task_type   TEXT COLLATE "C" NOT NULL,
    tenant      TEXT NOT NULL,
    is_progress BOOLEAN NOT NULL
);
CREATE INDEX events_task ON events (task_id, cursor);

-- API keys: only a salted SHA-256 of the secret is kept; the key itself is shown once.
CREATE TABLE api_keys (
    id            TEXT COLLATE "C" PRIMARY KEY,
    name          TEXT NOT NULL,
    tenant        TEXT NOT NULL,
    role          TEXT NOT NULL,
    salt          TEXT NOT NULL,
    hash          TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    revoked_at_ms BIGINT
);

-- The audit chain: append-only; each record holds the previous record's hash and is signed.
CREATE TABLE audit (
    seq        BIGINT PRIMARY KEY,
    at_ms      BIGINT NOT NULL,
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

-- Tokens and cost per model call, for budgets and `cadre usage`. day is the UTC date.
CREATE TABLE usage (
    id         BIGSERIAL PRIMARY KEY,
    task_id    TEXT COLLATE "C" NOT NULL,
    tenant     TEXT NOT NULL,
    model      TEXT NOT NULL,
    tokens_in  BIGINT NOT NULL,
    tokens_out BIGINT NOT NULL,
    cost_usd   DOUBLE PRECISION NOT NULL,
    day        TEXT NOT NULL,
    at_ms      BIGINT NOT NULL
);
CREATE INDEX usage_day_tenant ON usage (day, tenant);
CREATE INDEX usage_task ON usage (task_id);
