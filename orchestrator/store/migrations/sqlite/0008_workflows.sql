-- Workflows: definitions (insert-only: a name and version never change once registered), and
-- each running instance's engine records (waits, timers, refused submissions) and signals.
-- An instance itself is a row of `tasks` (supervisor 'workflow'); its steps are its sub-tasks.
CREATE TABLE workflow_definitions (
    name          TEXT NOT NULL,
    version       INTEGER NOT NULL,
    body          TEXT NOT NULL,          -- the definition as registered, JSON
    created_at_ms INTEGER NOT NULL,
    created_by    TEXT NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE workflow_records (
    instance      TEXT NOT NULL,
    record        TEXT NOT NULL,
    opened_at_ms  INTEGER NOT NULL,
    due_at_ms     INTEGER,
    done          TEXT,                   -- how it ended, JSON; NULL while open
    PRIMARY KEY (instance, record)
);

CREATE TABLE workflow_signals (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    instance      TEXT NOT NULL,
    name          TEXT NOT NULL,
    payload       TEXT NOT NULL,          -- JSON
    sender        TEXT NOT NULL,
    at_ms         INTEGER NOT NULL,
    consumed_by   TEXT                    -- the record that took it; NULL while in the inbox
);
CREATE INDEX workflow_signals_instance ON workflow_signals (instance, seq);
