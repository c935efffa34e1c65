-- name: add_destination
-- Stores one tenant destination; the signing secret arrives already encrypted.
INSERT INTO notify.destinations (tenant_id, created_at, channel, target, secret_ciphertext, kinds, min_severity,
                                 timezone, locale, fallback_id, tags)
VALUES (:tenant_id, :now, :channel, :target, :secret_ciphertext, :kinds, CAST(:min_severity AS public.sev_level),
        :timezone, :locale, CAST(:fallback_id AS uuid), CAST(:tags AS text[]))
RETURNING id;

-- name: fallback_candidate
-- The destination --fallback names, if it belongs to :tenant_id (any other tenant's is not found).
SELECT id, enabled FROM notify.destinations WHERE tenant_id = :tenant_id AND id = :id;

-- name: list_destinations
-- Destinations for listing; the ciphertext itself never leaves this query, only whether there is one.
SELECT id, tenant_id, channel, target, (secret_ciphertext IS NOT NULL) AS has_secret,
       kinds, min_severity::text AS min_severity, tags, enabled, disabled_reason, created_at,
       timezone, locale, opted_out_kinds, last_success_at, consecutive_failures,
       CASE WHEN pause_level > 0 THEN paused_until END AS paused_until, fallback_id,
       digest, CASE WHEN digest <> 'immediate' THEN to_char(digest_at, 'HH24:MI') END AS digest_at,
       CASE WHEN quiet_start IS NOT NULL THEN to_char(quiet_start, 'HH24:MI') || '-' || to_char(quiet_end, 'HH24:MI') END
         AS quiet_hours,
       rate_limit_messages, rate_limit_window, grouped_payload
FROM notify.destinations
WHERE CAST(:tenant_id AS uuid) IS NULL OR tenant_id = CAST(:tenant_id AS uuid)
ORDER BY tenant_id, created_at, id;

-- name: remove_destination
-- Deletes a destination by id (any tenant); the tenant comes back for the follow-up update.
DELETE FROM notify.destinations WHERE id = :id RETURNING tenant_id, id;

-- name: skip_queued_for_destination
-- Queued notifications of a removed destination end `skipped` (sent and failed rows stay as history).
UPDATE notify.notifications
SET status = 'skipped', error = :reason, claim_token = NULL, lease_until = NULL
WHERE tenant_id = :tenant_id AND destination_id = :destination_id AND status = 'queued';

-- name: disable_destination
-- The endpoint is gone for good (HTTP 410): stop planning to it and skip what is queued for it.
-- The first time (it was enabled), the tenant's other enabled destinations and every ops route
-- get one notice (transition 'destination_disabled', ddl/notify/0011) about the alert whose
-- notification (:origin_id) met the 410, unless that was a test send (no alert).
WITH disabled AS (
  UPDATE notify.destinations
  SET enabled = false, disabled_reason = :reason
  WHERE tenant_id = :tenant_id AND id = :destination_id AND enabled
  RETURNING tenant_id, id
),
noticed AS (
  INSERT INTO notify.notifications
    (tenant_id, alert_id, created_at, channel, recipient, status, transition, reminder_no, severity, route_key,
     destination_id, next_attempt_at, note, origin_id)
  SELECT t.tenant_id, CAST(:alert_id AS uuid), :now, t.channel, t.recipient, 'queued', 'destination_disabled', 0,
         CAST(:severity AS public.sev_level), t.route_key, t.destination_id, :now, :note, CAST(:origin_id AS uuid)
  FROM (
    SELECT d.tenant_id, d.channel, d.target AS recipient, 'dest:' || d.id::text AS route_key, d.id AS destination_id
    FROM disabled x JOIN notify.destinations d ON d.tenant_id = x.tenant_id AND d.id <> x.id AND d.enabled
    UNION ALL
    SELECT x.tenant_id, r.channel, r.target, 'route:' || r.name, NULL
    FROM disabled x
    CROSS JOIN unnest(CAST(:route_names AS text[]), CAST(:route_channels AS text[]), CAST(:route_targets AS text[]))
      AS r(name, channel, target)
  ) AS t
  WHERE CAST(:alert_id AS uuid) IS NOT NULL
  ON CONFLICT DO NOTHING
),
skipped AS (
  UPDATE notify.notifications n
  SET status = 'skipped', error = 'destination disabled: ' || :reason, claim_token = NULL, lease_until = NULL
  FROM disabled
  WHERE n.tenant_id = disabled.tenant_id AND n.destination_id = disabled.id
    AND n.status = 'queued' AND n.claim_token IS NULL
  RETURNING n.tenant_id, n.id, n.alert_id, n.transition, n.reminder_no, n.severity, n.origin_id, n.destination_id
)
-- The skipped rows go once to the destination's fallback (ddl/notify/0012), as in record_results.
INSERT INTO notify.notifications
  (tenant_id, alert_id, created_at, channel, recipient, status, transition, reminder_no, severity, route_key,
   destination_id, next_attempt_at, note, origin_id)
SELECT o.tenant_id, o.alert_id, :now, f.channel, f.target, 'queued', o.transition, o.reminder_no, o.severity,
       'dest:' || f.id::text, f.id, :now,
       'Sent to this fallback destination because the ' || d.channel || ' destination ' || d.id::text
         || ' is disabled: ' || :reason,
       o.id
FROM skipped o
JOIN notify.destinations d ON d.tenant_id = o.tenant_id AND d.id = o.destination_id AND d.fallback_id IS NOT NULL
JOIN notify.destinations f ON f.tenant_id = d.tenant_id AND f.id = d.fallback_id AND f.enabled
WHERE o.origin_id IS NULL AND o.transition <> 'test'
ON CONFLICT DO NOTHING;

-- name: lock_destination_credentials
-- Every destination that holds a credential (encrypted, or a Slack incoming-webhook URL still in
-- plain text), locked for `destinations rekey`'s one transaction.
SELECT tenant_id, id, channel, target, secret_ciphertext
FROM notify.destinations
WHERE secret_ciphertext IS NOT NULL OR (channel = 'slack' AND target ~ '^https?://')
ORDER BY tenant_id, id
FOR UPDATE;

-- name: set_destination_credential
-- rekey: a credential re-encrypted (or encrypted for the first time) and the target shown for it.
UPDATE notify.destinations SET target = :target, secret_ciphertext = :secret_ciphertext
WHERE tenant_id = :tenant_id AND id = :id;

-- name: mask_notification_recipients
-- rekey: a Slack incoming-webhook URL now encrypted leaves no plain copy in its notifications
-- (the dispatcher takes the URL from the destination's ciphertext).
UPDATE notify.notifications SET recipient = :masked
WHERE tenant_id = :tenant_id AND destination_id = :destination_id AND recipient = :recipient;

-- name: sample_credentials
-- notifyd's start: the oldest and the newest encrypted credential, to check that a configured key
-- decrypts them.
(SELECT id, secret_ciphertext FROM notify.destinations WHERE secret_ciphertext IS NOT NULL
 ORDER BY created_at, id LIMIT 1)
UNION
(SELECT id, secret_ciphertext FROM notify.destinations WHERE secret_ciphertext IS NOT NULL
 ORDER BY created_at DESC, id DESC LIMIT 1);

-- name: opt_out_kind
-- One-click unsubscribe (engine/unsubscribe.py): adds :kind to the destination's opted_out_kinds
-- once. Returns the destination's tenant and whether anything changed; no row: no such destination.
WITH target AS (
  SELECT tenant_id, id, NOT (CAST(:kind AS text) = ANY (opted_out_kinds)) AS changed
  FROM notify.destinations WHERE id = :id
  FOR UPDATE
), updated AS (
  UPDATE notify.destinations d
  SET opted_out_kinds = array_append(d.opted_out_kinds, CAST(:kind AS text))
  FROM target t
  WHERE d.tenant_id = t.tenant_id AND d.id = t.id AND t.changed
)
SELECT tenant_id, changed FROM target;

-- name: insert_unsubscribe_audit
-- The admin_log.admin_events row of a one-click unsubscribe.
INSERT INTO admin_log.admin_events (occurred_at, actor_admin_id, tenant_id, base_id, action, target_type,
                                    target_id, severity, diff, comment)
VALUES (:now, NULL, :tenant_id, NULL, 'DESTINATION_UNSUBSCRIBE', 'DESTINATION', :target_id, 'info',
        CAST(:diff AS jsonb), 'unsubscribed by the recipient (RFC 8058 one-click)');


-- name: insert_test_notification
-- `destinations test`: the test send's notification row (transition 'test', no alert), written
-- already holding its claim (:token) and as failed with a note, so no dispatcher claims it and a
-- test killed mid-send leaves that trace; the dispatcher's record_results writes the outcome.
-- Returned shaped like claim_due's rows (ids as text), with the destination's fields.
WITH dest AS (
  SELECT tenant_id, id, channel, target, secret_ciphertext, kinds, min_severity, enabled, disabled_reason
  FROM notify.destinations
  WHERE id = :id
),
inserted AS (
  INSERT INTO notify.notifications
    (tenant_id, alert_id, created_at, channel, recipient, status, send_attempts, last_attempt_at, error,
     transition, reminder_no, severity, route_key, destination_id, claim_token)
  SELECT tenant_id, NULL, :now, channel, target, 'failed', 1, :now,
         'test send interrupted before its outcome was recorded', 'test', 0, min_severity,
         'dest:' || id::text, id, :token
  FROM dest
  RETURNING tenant_id, id, destination_id, route_key, channel, recipient, transition, reminder_no, severity,
            send_attempts, idempotency_key, created_at
)
SELECT i.tenant_id::text AS tenant_id, i.id::text AS id, i.destination_id::text AS destination_id, i.route_key,
       i.channel, i.recipient, false AS lease_expired, i.transition, i.reminder_no, i.severity::text AS severity,
       i.send_attempts, i.idempotency_key, i.created_at,
       true AS destination_exists, d.enabled AS destination_enabled, d.disabled_reason, d.secret_ciphertext,
       d.kinds
FROM inserted i
JOIN dest d ON d.tenant_id = i.tenant_id AND d.id = i.destination_id;
