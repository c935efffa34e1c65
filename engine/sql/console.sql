-- name: start_session
-- A new console session for a token (engine/api/console/sessions.py); only the id's hash is kept.
INSERT INTO notify.console_sessions (session_sha256, token_name, created_at, expires_at, client_address)
VALUES (:session_sha256, :token_name, :now, :expires_at, :client_address);

-- name: delete_expired_sessions
-- Run at each sign-in: sessions past their end, or of a revoked token, are of no more use.
DELETE FROM notify.console_sessions s
WHERE s.expires_at <= :now
   OR EXISTS (SELECT 1 FROM notify.api_tokens t WHERE t.name = s.token_name AND t.revoked_at IS NOT NULL);

-- name: session_by_hash
-- The live session a request's cookie names: not expired, and its token not revoked (checked on
-- every request, so `notifyctl tokens revoke` ends the token's sessions at once).
SELECT s.token_name, t.scopes, s.expires_at
FROM notify.console_sessions s
JOIN notify.api_tokens t ON t.name = s.token_name
WHERE s.session_sha256 = :session_sha256 AND s.expires_at > :now AND t.revoked_at IS NULL;

-- name: end_session
-- Sign out.
DELETE FROM notify.console_sessions WHERE session_sha256 = :session_sha256;

-- name: alert_audit_events
-- The operators' (and the engine's) actions on one alert from admin_log, oldest first: the
-- timeline's acks, resolves and lapsed acks with who and why. The tenant and the alert's creation
-- bound the scan (the tenant index; partitions before the alert are skipped).
SELECT occurred_at, action, diff->>'actor' AS actor, comment, diff
FROM admin_log.admin_events
WHERE tenant_id = :tenant_id AND occurred_at >= :since AND target_type = 'ALERT' AND target_id = :target_id
ORDER BY occurred_at, id;

-- name: alert_attempts
-- The ledger's attempts of an alert's notifications (one statement for the alert page).
SELECT notification_id, attempt, started_at, duration_ms, outcome, code, error, address
FROM notify.delivery_attempts
WHERE tenant_id = :tenant_id AND notification_id = ANY (CAST(:ids AS uuid[]))
ORDER BY started_at, attempt;
