-- Workflows: definitions (insert-only: a name and version never change once registered), and
-- each running instance's engine records (waits, timers, refused submissions) and signals.
-- An instance itself is a row of `tasks` (supervisor 'workflow'); its steps are its sub-tasks.
CREATE TABLE workflow_definitions (
    name          TEXT COLLATE "C" NOT NULL,
    version       BIGINT NOT NULL,
    body          TEXT NOT NULL,          -- the definition as registered, JSON
    created_at_ms BIGINT NOT NULL,
    created_by    TEXT NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE workflow_records (
    instance      TEXT COLLATE "C" NOT NULL,
    record        TEXT COLLATE "C" NOT NULL,
    opened_at_ms  BIGINT NOT NULL,
    due_at_ms     BIGINT,
    done          TEXT,                   -- how it ended, JSON; NULL while open
    PRIMARY KEY (instance, record)
);

-- Signal seqs come from a sequence: they only order one instance's inbox, gaps do not matter.
CREATE TABLE workflow_signals (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    instance      TEXT COLLATE "C" NOT NULL,
    name          TEXT NOT NULL,
    payload       TEXT NOT NULL,          -- JSON
    sender        TEXT NOT NULL,
    at_ms         BIGINT NOT NULL,
    consumed_by   TEXT                    -- the record that took it; NULL while in the inbox
);
CREATE INDEX workflow_signals_instance ON workflow_signals (instance, seq);
