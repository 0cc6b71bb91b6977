-- Keep query plans independent of table size (measured with benches/distbench):
-- the children lookup of every Get (`parent_id = $1 AND tenant = $2 ORDER BY id`) must use
-- this index, never a scan of the tenant's tasks; and statistics on `tasks` are refreshed
-- often, since the table grows fast and the planner's estimates go stale.
DROP INDEX IF EXISTS tasks_parent;
CREATE INDEX tasks_parent ON tasks (parent_id, id) WHERE parent_id IS NOT NULL;
ALTER TABLE tasks SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);
