-- Retention ([retention] in the config, docs/RETENTION.md): the sweeper reads finished tasks of
-- one state, oldest finish first (`updated_at_ms` is when a task reached its terminal state,
-- which never changes again), a page at a time. Only finished tasks are indexed, so the
-- index does not grow with the queue; the sweeper's query repeats this predicate word for
-- word (and names its state as a literal) so the planner can use it with any plan.
CREATE INDEX tasks_finished ON tasks (state, updated_at_ms, id)
  WHERE state IN ('SUCCEEDED', 'FAILED', 'CANCELLED', 'TIMED_OUT');
