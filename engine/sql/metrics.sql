-- name: set_statement_timeout
-- A /metrics scrape gives up rather than queue behind a busy database (this transaction only).
SET LOCAL statement_timeout = '2s';

-- name: alerts_by_status
-- notify_alerts: alerts by status and kind.
SELECT status, kind, count(*) AS count
FROM notify.alerts
GROUP BY status, kind
ORDER BY status, kind;

-- name: notifications_by_channel_status
-- notify_notifications: delivery rows by channel and status (a scan; cached by the collector).
SELECT channel, status, count(*) AS count
FROM notify.notifications
GROUP BY channel, status
ORDER BY channel, status;

-- name: queue_depth
-- notify_queue_depth and the oldest queued notification's age at :now (partial index on queued).
SELECT count(*) AS depth,
       EXTRACT(EPOCH FROM (CAST(:now AS timestamptz) - min(created_at))) AS oldest_age_seconds
FROM notify.notifications
WHERE status = 'queued';

-- name: destinations_paused
-- notify_destinations_paused: destinations paused right now (ddl/notify/0010; partial index).
SELECT count(*) AS paused
FROM notify.destinations
WHERE pause_level > 0 AND paused_until > CAST(:now AS timestamptz);
