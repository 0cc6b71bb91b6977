-- Tokens and cost per model call, for budgets and `cadre usage`. day is the UTC date.
CREATE TABLE usage (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id    TEXT NOT NULL,
    tenant     TEXT NOT NULL,
    model      TEXT NOT NULL,
    tokens_in  INTEGER NOT NULL,
    tokens_out INTEGER NOT NULL,
    cost_usd   REAL NOT NULL,
    day        TEXT NOT NULL,
    at_ms      INTEGER NOT NULL
);
CREATE INDEX usage_day_tenant ON usage (day, tenant);
CREATE INDEX usage_task ON usage (task_id);
