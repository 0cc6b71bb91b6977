-- Events carry their task's parent, so watchers can follow one task's sub-tasks
-- (WatchRequest.parent_id, the WebSocket and SSE `parent_id` filter) without a join.
ALTER TABLE events ADD COLUMN parent_id TEXT;
UPDATE events SET parent_id = (SELECT t.parent_id FROM tasks t WHERE t.id = events.task_id)
  WHERE task_id IN (SELECT id FROM tasks WHERE parent_id IS NOT NULL);
CREATE INDEX events_parent ON events (parent_id, cursor) WHERE parent_id IS NOT NULL;
