-- Events carry their task's parent, so watchers can follow one task's sub-tasks
-- (WatchRequest.parent_id, the WebSocket and SSE `parent_id` filter) without a join.
ALTER TABLE events ADD COLUMN parent_id TEXT COLLATE "C";
UPDATE events e SET parent_id = t.parent_id FROM tasks t
  WHERE t.id = e.task_id AND t.parent_id IS NOT NULL;
CREATE INDEX events_parent ON events (parent_id, cursor) WHERE parent_id IS NOT NULL;
