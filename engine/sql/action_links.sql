-- name: alert_for_link
-- What the confirmation page of an ack or resolve link shows of its alert.
SELECT id, tenant_id, base_id, kind, severity::text AS severity, status, first_seen_at, acked_by, acked_at
FROM notify.alerts WHERE id = :id;

-- name: use_nonce
-- Marks a link used, in the transaction of its action; no row back: it was used before.
INSERT INTO notify.action_link_uses (nonce, alert_id, action, used_by, used_at, expires_at)
VALUES (:nonce, :alert_id, :action, :used_by, :now, :expires_at)
ON CONFLICT (nonce) DO NOTHING
RETURNING nonce;

-- name: prune_used_nonces
-- Nonces of links past their expiry: the signed expiry refuses those links on its own.
DELETE FROM notify.action_link_uses WHERE expires_at < :now;

-- name: nonce_used
-- Whether a link was used already (its confirmation page says so instead of offering the button).
SELECT 1 FROM notify.action_link_uses WHERE nonce = :nonce;
