-- The dashboard's charts (GET /v1/stats/tasks, store/src/stats.rs) read one tenant's finished
-- tasks of the last hour: finish time, state and creation time. Only finished tasks are
-- indexed (the predicate is tasks_finished's, word for word, and the query repeats it), and
-- the index covers every column the query reads, so a tenant's window is one range scan
-- however many other tenants' tasks finished in it.
CREATE INDEX tasks_finished_tenant ON tasks (tenant, updated_at_ms, state, created_at_ms)
  WHERE state IN ('SUCCEEDED', 'FAILED', 'CANCELLED', 'TIMED_OUT');
