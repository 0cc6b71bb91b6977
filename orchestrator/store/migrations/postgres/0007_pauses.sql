-- What an operator paused (AdminService.Pause): one row per paused scope. Unused name columns
-- are empty, so the primary key makes a pause of one scope unique.
CREATE TABLE pauses (
    scope         TEXT COLLATE "C" NOT NULL,   -- supervisor | pool | task_type_prefix | tenant
    supervisor    TEXT COLLATE "C" NOT NULL DEFAULT '',
    worker_kind   TEXT COLLATE "C" NOT NULL DEFAULT '',
    prefix        TEXT COLLATE "C" NOT NULL DEFAULT '',
    tenant        TEXT COLLATE "C" NOT NULL DEFAULT '',
    paused_at_ms  BIGINT NOT NULL,
    paused_by     TEXT NOT NULL,
    reason        TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (scope, supervisor, worker_kind, prefix, tenant)
);
