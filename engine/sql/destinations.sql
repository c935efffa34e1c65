-- name: add_destination
-- Stores one tenant destination; the signing secret arrives already encrypted.
INSERT INTO notify.destinations (tenant_id, created_at, channel, target, secret_ciphertext, kinds, min_severity, tags)
VALUES (:tenant_id, :now, :channel, :target, :secret_ciphertext, :kinds, CAST(:min_severity AS public.sev_level),
        CAST(:tags AS text[]))
RETURNING id;

-- name: list_destinations
-- Destinations for listing; the ciphertext itself never leaves this query, only whether there is one.
SELECT id, tenant_id, channel, target, (secret_ciphertext IS NOT NULL) AS has_secret,
       kinds, min_severity::text AS min_severity, tags, enabled, disabled_reason, created_at
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
WITH disabled AS (
  UPDATE notify.destinations
  SET enabled = false, disabled_reason = :reason
  WHERE tenant_id = :tenant_id AND id = :destination_id
  RETURNING tenant_id, id
)
UPDATE notify.notifications n
SET status = 'skipped', error = 'destination disabled: ' || :reason, claim_token = NULL, lease_until = NULL
FROM disabled
WHERE n.tenant_id = disabled.tenant_id AND n.destination_id = disabled.id
  AND n.status = 'queued' AND n.claim_token IS NULL;

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
