-- name: claim_due
-- Claims up to :batch_size due notifications: SKIP LOCKED lets dispatchers share the queue; the
-- attempt is counted now and the claim takes a lease (lease_until), so a claim that is never
-- finished (crash) is due again once the lease runs out (`lease_expired`: the dispatcher then
-- fails it without sending when that was its last allowed attempt). Only unindexed columns
-- change, so the update can be HOT (ddl/notify/0006). Returns each row with its alert and
-- destination, one statement per batch; ids as text and the context as JSON text, which is what
-- the channels use (no UUID objects, no JSON parse for webhooks).
WITH due AS (
  SELECT tenant_id, id, claim_token
  FROM notify.notifications
  WHERE status = 'queued' AND next_attempt_at <= :now AND (lease_until IS NULL OR lease_until <= :now)
  ORDER BY next_attempt_at
  LIMIT :batch_size
  FOR UPDATE SKIP LOCKED
),
claimed AS (
  UPDATE notify.notifications n
  -- A lease that ran out on the last allowed attempt is no new attempt: the row is failed unsent.
  SET send_attempts = n.send_attempts
                      + CASE WHEN due.claim_token IS NOT NULL AND n.send_attempts >= :max_attempts THEN 0 ELSE 1 END,
      last_attempt_at = :now,
      lease_until = :lease_until, claim_token = :token
  FROM due
  WHERE n.tenant_id = due.tenant_id AND n.id = due.id
  RETURNING n.tenant_id, n.id, n.alert_id, n.destination_id, n.route_key, n.channel, n.recipient,
            (due.claim_token IS NOT NULL) AS lease_expired,
            n.transition, n.reminder_no, n.severity, n.send_attempts, n.idempotency_key, n.created_at
)
SELECT c.tenant_id::text AS tenant_id, c.id::text AS id, c.alert_id::text AS alert_id,
       c.destination_id::text AS destination_id, c.route_key, c.channel, c.recipient, c.lease_expired,
       c.transition, c.reminder_no, c.severity::text AS severity, c.send_attempts, c.idempotency_key, c.created_at,
       a.kind, a.severity::text AS alert_severity, a.status AS alert_status, a.base_id::text AS base_id,
       a.dedupe_key, a.first_seen_at, a.last_seen_at, a.context::text AS context,
       (d.id IS NOT NULL) AS destination_exists, d.enabled AS destination_enabled, d.secret_ciphertext,
       d.timezone AS destination_timezone, d.locale AS destination_locale,
       coalesce(a.kind = ANY (d.opted_out_kinds), false) AS destination_opted_out
FROM claimed c
JOIN notify.alerts a ON a.tenant_id = c.tenant_id AND a.id = c.alert_id
LEFT JOIN notify.destinations d ON d.tenant_id = c.tenant_id AND d.id = c.destination_id;

-- name: record_results
-- Writes a batch's outcomes in one statement (the whole batch; while a slow send holds it up, the
-- outcomes finished so far). The common outcome, sent at the batch's time with no note, comes as
-- two comma-joined id lists (cheap to build and to send); every other outcome as parallel arrays.
-- Only rows still held by this claim are written: a claim whose lease ran out and was taken over
-- must not be overwritten (its late result never counts; the new holder's does).
UPDATE notify.notifications n
SET status = r.status, error = r.error, next_attempt_at = r.next_attempt_at,
    sent_at = r.sent_at, claim_token = NULL, lease_until = NULL
FROM (
  SELECT s.tenant_id, s.id, 'sent' AS status, NULL::text AS error, NULL::timestamptz AS next_attempt_at,
         CAST(:sent_at AS timestamptz) AS sent_at
  FROM unnest(CAST(string_to_array(:sent_tenant_ids, ',') AS uuid[]),
              CAST(string_to_array(:sent_ids, ',') AS uuid[])) AS s(tenant_id, id)
  UNION ALL
  SELECT * FROM unnest(CAST(:tenant_ids AS uuid[]), CAST(:ids AS uuid[]), CAST(:statuses AS text[]),
                       CAST(:errors AS text[]), CAST(:next_attempt_ats AS timestamptz[]),
                       CAST(:sent_ats AS timestamptz[]))
) AS r(tenant_id, id, status, error, next_attempt_at, sent_at)
WHERE n.tenant_id = r.tenant_id AND n.id = r.id AND n.claim_token = :token;

-- name: refund_attempts
-- Claims that were not sent because no configured key decrypts their destination's secret: the
-- claim counted an attempt that was never made, so it is given back (they stay queued, and must
-- not run out of attempts while an operator fixes channels.webhook.secret_key).
UPDATE notify.notifications n
SET send_attempts = greatest(n.send_attempts - 1, 0)
FROM unnest(CAST(:tenant_ids AS uuid[]), CAST(:ids AS uuid[])) AS h(tenant_id, id)
WHERE n.tenant_id = h.tenant_id AND n.id = h.id AND n.claim_token = :token;

-- name: renew_lease
-- A batch still sending (a slow receiver) extends the lease of its rows not yet recorded, every
-- lease/3, so they are not claimed and sent again meanwhile. Only rows still held by this claim: a
-- claim already taken over stays with its new holder. lease_until is unindexed, so this is HOT.
UPDATE notify.notifications n
SET lease_until = :lease_until
FROM unnest(CAST(:tenant_ids AS uuid[]), CAST(:ids AS uuid[])) AS r(tenant_id, id)
WHERE n.tenant_id = r.tenant_id AND n.id = r.id AND n.claim_token = :token;

-- name: next_due
-- When the earliest queued notification falls due (the dispatcher sleeps until then at most); a
-- claimed one falls due again when its lease runs out.
SELECT min(greatest(next_attempt_at, lease_until)) FROM notify.notifications WHERE status = 'queued';

-- name: list_notifications
-- Delivery records for `notifyctl notifications`, newest first.
SELECT id, tenant_id, alert_id, channel, recipient, status, send_attempts, last_attempt_at, error,
       transition, reminder_no, route_key, next_attempt_at, sent_at, created_at
FROM notify.notifications
WHERE (CAST(:status AS text) IS NULL OR status = CAST(:status AS text))
  AND (CAST(:alert_id AS uuid) IS NULL OR alert_id = CAST(:alert_id AS uuid))
ORDER BY created_at DESC, id
LIMIT :limit;

-- name: retry_notification
-- Puts a failed (or skipped) notification back in the queue, due now, with a fresh attempt budget.
UPDATE notify.notifications
SET status = 'queued', next_attempt_at = :now, send_attempts = 0, claim_token = NULL, lease_until = NULL,
    error = NULL
WHERE id = :id AND status IN ('failed', 'skipped')
RETURNING tenant_id, id;

-- name: notification_status
-- The status of one notification by id (for retry's error message).
SELECT status FROM notify.notifications WHERE id = :id;

-- name: queue_stats
-- For `notifyctl status` and /metrics: queue depth, the oldest due notification, failures in the
-- last hour, and how many are claimed right now.
SELECT count(*) FILTER (WHERE status = 'queued') AS queued,
       count(*) FILTER (WHERE status = 'queued' AND claim_token IS NOT NULL) AS in_flight,
       min(next_attempt_at) FILTER (WHERE status = 'queued' AND claim_token IS NULL) AS oldest_due,
       count(*) FILTER (WHERE status = 'failed' AND last_attempt_at >= CAST(:now AS timestamptz) - interval '1 hour')
         AS failed_last_hour
FROM notify.notifications
WHERE status = 'queued' OR (status = 'failed' AND last_attempt_at >= CAST(:now AS timestamptz) - interval '1 hour');
