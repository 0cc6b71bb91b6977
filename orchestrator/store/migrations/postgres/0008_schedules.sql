-- Schedules: cron expressions and intervals that submit a task (docs/SCHEDULES.md). A tier-0
-- replica claims a tick by moving next_fire_at with a compare-and-set UPDATE; the fire in
-- flight is kept in inflight_tick until intake answered, so a replica that dies between the
-- claim and the submit leaves it to another (the idempotency key makes a repeat harmless).
CREATE TABLE schedules (
    id              TEXT COLLATE "C" PRIMARY KEY,
    tenant          TEXT COLLATE "C" NOT NULL,
    name            TEXT NOT NULL,
    cron            TEXT NOT NULL,          -- '' for an interval
    time_zone       TEXT NOT NULL,
    every_ms        BIGINT NOT NULL,       -- 0 for a cron expression
    anchor_ms       BIGINT NOT NULL,       -- intervals count from here
    spec            BYTEA NOT NULL,          -- the task to submit, cadre.v1.TaskSpec (protobuf)
    missed          TEXT NOT NULL,          -- skip | run_once
    overlap         TEXT NOT NULL,          -- allow | skip | cancel_previous
    paused          BIGINT NOT NULL,       -- 0 | 1
    next_fire_at    BIGINT NOT NULL,       -- the next tick, Unix ms
    inflight_tick   BIGINT NOT NULL DEFAULT 0,  -- a claimed tick not yet answered by intake
    inflight_until  BIGINT NOT NULL DEFAULT 0,  -- after this another replica may fire it again
    created_at_ms   BIGINT NOT NULL,
    created_by      TEXT NOT NULL,
    creator_role    TEXT NOT NULL,          -- the role fires are submitted with
    last_fire_at_ms BIGINT NOT NULL DEFAULT 0,
    last_task_id    TEXT NOT NULL DEFAULT '',
    last_error      TEXT NOT NULL DEFAULT '',
    fires           BIGINT NOT NULL DEFAULT 0,
    skipped         BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX schedules_due ON schedules (next_fire_at);
CREATE INDEX schedules_tenant ON schedules (tenant, id);
