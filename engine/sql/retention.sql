-- name: delete_resolved_alerts
-- One batch of resolved alerts whose resolution is older than :cutoff; their notifications go
-- with them (ON DELETE CASCADE). SKIP LOCKED: a row someone is working on waits for the next run.
WITH doomed AS (
  SELECT tenant_id, id
  FROM notify.alerts
  -- resolved_at is set by every resolve; last_seen_at covers a row resolved without it.
  WHERE status = 'resolved' AND COALESCE(resolved_at, last_seen_at) < :cutoff
  LIMIT :batch_size
  FOR UPDATE SKIP LOCKED
)
DELETE FROM notify.alerts a
USING doomed d
WHERE a.tenant_id = d.tenant_id AND a.id = d.id;

-- name: delete_alertless_notifications
-- One batch of notification rows that belong to no alert (test sends, group messages) created
-- before :cutoff and finished: no alert's deletion cascades to them. A group message goes only
-- once none of its members (rows of alerts still kept) names it, so `notifications show` of a
-- member never loses the message it was sent in.
WITH doomed AS (
  SELECT n.tenant_id, n.id
  FROM notify.notifications n
  WHERE n.alert_id IS NULL AND n.created_at < :cutoff AND n.status IN ('sent', 'failed', 'skipped')
    AND NOT EXISTS (SELECT 1 FROM notify.notifications m WHERE m.message_id = n.id)
  LIMIT :batch_size
  FOR UPDATE SKIP LOCKED
)
DELETE FROM notify.notifications n
USING doomed d
WHERE n.tenant_id = d.tenant_id AND n.id = d.id;

-- name: delete_stale_group_state
-- Groups whose last message is older than every configured group_interval: their row no longer
-- delays anything (a new transition of the group waits group_wait only), so it goes.
DELETE FROM notify.group_state WHERE last_message_at < :cutoff;

-- name: delete_old_job_runs
-- One batch of job_runs history older than :cutoff.
DELETE FROM notify.job_runs
WHERE id IN (
  SELECT id FROM notify.job_runs WHERE started_at < :cutoff ORDER BY id LIMIT :batch_size
);
