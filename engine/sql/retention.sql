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

-- name: delete_old_job_runs
-- One batch of job_runs history older than :cutoff.
DELETE FROM notify.job_runs
WHERE id IN (
  SELECT id FROM notify.job_runs WHERE started_at < :cutoff ORDER BY id LIMIT :batch_size
);
