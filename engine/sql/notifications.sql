-- name: notifications_page
-- Delivery records newest first by (created_at, id), both immutable, so a keyset walk
-- (:after_created_at, :after_id = the previous page's last row) sees each row once.
SELECT id, tenant_id, alert_id, channel, recipient, status, send_attempts, last_attempt_at, error,
       transition, reminder_no, route_key, next_attempt_at, sent_at, created_at
FROM notify.notifications
WHERE (CAST(:status AS text) IS NULL OR status = CAST(:status AS text))
  AND (CAST(:alert_id AS uuid) IS NULL OR alert_id = CAST(:alert_id AS uuid))
  AND (CAST(:after_created_at AS timestamptz) IS NULL
       OR (created_at, id) < (CAST(:after_created_at AS timestamptz), CAST(:after_id AS uuid)))
ORDER BY created_at DESC, id DESC
LIMIT :limit;
