-- Debounce (TaskSpec.debounce): the task that holds a tenant's debounce key, not yet
-- dispatched, and when its window ends. Both are NULL for every other task, and are cleared
-- when the hold ends (the task is released to run, or replaced and CANCELLED), in the same
-- transaction. The unique index makes one holder per (tenant, key) a property of the store.
ALTER TABLE tasks ADD COLUMN debounce_key TEXT;
ALTER TABLE tasks ADD COLUMN debounce_until_ms INTEGER;
CREATE UNIQUE INDEX tasks_debounce_held ON tasks (tenant, debounce_key) WHERE debounce_key IS NOT NULL;
CREATE INDEX tasks_debounce_due ON tasks (debounce_until_ms) WHERE debounce_key IS NOT NULL;
