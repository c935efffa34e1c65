-- name: notification_state
-- One notification's status and transition by id (for `notifications retry ID`).
SELECT status, transition FROM notify.notifications WHERE id = :id;

-- name: retry_matching
-- `notifications retry` with filters: every matching notification back in the queue, due now,
-- with a fresh attempt budget and its idempotency key unchanged (what a single retry does).
-- Rows of a removed or disabled destination stay as they are and are counted as skipped; test
-- sends (transition 'test') are never re-queued. :since compares the last attempt, or the
-- creation of a row never attempted. With :dry_run it only counts, through the same WHERE.
WITH matching AS (
  SELECT n.tenant_id, n.id, (n.destination_id IS NULL OR coalesce(d.enabled, false)) AS deliverable
  FROM notify.notifications n
  LEFT JOIN notify.destinations d ON d.tenant_id = n.tenant_id AND d.id = n.destination_id
  WHERE n.status = :status
    AND n.transition IS DISTINCT FROM 'test'
    AND (CAST(:since AS timestamptz) IS NULL
         OR coalesce(n.last_attempt_at, n.created_at) >= CAST(:since AS timestamptz))
    AND (CAST(:tenant_id AS uuid) IS NULL OR n.tenant_id = CAST(:tenant_id AS uuid))
    AND (CAST(:destination_id AS uuid) IS NULL OR n.destination_id = CAST(:destination_id AS uuid))
    AND (CAST(:channel AS text) IS NULL OR n.channel = CAST(:channel AS text))
),
requeued AS (
  UPDATE notify.notifications n
  SET status = 'queued', next_attempt_at = :now, send_attempts = 0, claim_token = NULL, lease_until = NULL,
      error = NULL
  FROM matching m
  WHERE NOT CAST(:dry_run AS boolean) AND m.deliverable AND n.tenant_id = m.tenant_id AND n.id = m.id
    -- Re-checked on the row's newest version: a row re-queued meanwhile by another retry is not
    -- counted (or reset) twice.
    AND n.status = :status
  RETURNING 1
)
SELECT (SELECT count(*) FROM matching WHERE deliverable) AS matched,
       (SELECT count(*) FROM matching WHERE NOT deliverable) AS skipped,
       (SELECT count(*) FROM requeued) AS requeued;

-- name: insert_retry_audit
-- One admin_log.admin_events row per bulk re-drive that re-queued something: the filters and
-- the counts in `diff`.
INSERT INTO admin_log.admin_events (occurred_at, actor_admin_id, tenant_id, action, target_type, target_id,
                                    severity, diff)
VALUES (:now, :actor_admin_id, :tenant_id, 'NOTIFICATIONS_RETRY', 'NOTIFICATION', NULL, 'info',
        CAST(:diff AS jsonb));

-- name: notifications_page
-- Delivery records newest first by (created_at, id), both immutable, so a keyset walk
-- (:after_created_at, :after_id = the previous page's last row) sees each row once
-- (`notifyctl notifications`, GET /v1/notifications).
SELECT id, tenant_id, alert_id, channel, recipient, status, send_attempts, last_attempt_at, error,
       transition, reminder_no, route_key, next_attempt_at, sent_at, created_at,
       held_reason, release_at, message_id, suppressed_by
FROM notify.notifications
WHERE (CAST(:status AS text) IS NULL OR status = CAST(:status AS text))
  AND (CAST(:alert_id AS uuid) IS NULL OR alert_id = CAST(:alert_id AS uuid))
  AND (CAST(:after_created_at AS timestamptz) IS NULL
       OR (created_at, id) < (CAST(:after_created_at AS timestamptz), CAST(:after_id AS uuid)))
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: retry_notification
-- Puts a failed (or skipped) notification back in the queue, due now, with a fresh attempt budget.
UPDATE notify.notifications
SET status = 'queued', next_attempt_at = :now, send_attempts = 0, claim_token = NULL, lease_until = NULL,
    error = NULL
WHERE id = :id AND status IN ('failed', 'skipped')
RETURNING tenant_id, id;
