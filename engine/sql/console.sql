-- name: start_session
-- A new console session for a token (engine/api/console/sessions.py); only the id's hash is kept.
INSERT INTO notify.console_sessions (session_sha256, token_name, created_at, expires_at, client_address,
                                     last_seen_at)
VALUES (:session_sha256, :token_name, :now, :expires_at, :client_address, :now);

-- name: delete_expired_sessions
-- Run at each sign-in and by the cleanup job: sessions past their end, idle past
-- :idle_seconds, or of a revoked token, are of no more use.
DELETE FROM notify.console_sessions s
WHERE s.expires_at <= :now
   OR s.last_seen_at <= CAST(:now AS timestamptz) - CAST(:idle_seconds AS float8) * interval '1 second'
   OR EXISTS (SELECT 1 FROM notify.api_tokens t WHERE t.name = s.token_name AND t.revoked_at IS NOT NULL);

-- name: session_by_hash
-- The live session a request's cookie names: not expired, not idle for :idle_seconds, and its
-- token not revoked (checked on every request, so `notifyctl tokens revoke` ends the token's
-- sessions at once). The request counts as activity: last_seen_at moves, at most once a minute
-- (a minute's less precision in the idle timeout, against a write per page).
WITH live AS (
  SELECT s.session_sha256, s.token_name, t.scopes, s.expires_at, s.last_seen_at
  FROM notify.console_sessions s
  JOIN notify.api_tokens t ON t.name = s.token_name
  WHERE s.session_sha256 = :session_sha256 AND s.expires_at > :now AND t.revoked_at IS NULL
    AND s.last_seen_at > CAST(:now AS timestamptz) - CAST(:idle_seconds AS float8) * interval '1 second'
),
touched AS (
  UPDATE notify.console_sessions s SET last_seen_at = :now
  FROM live
  WHERE s.session_sha256 = live.session_sha256
    AND live.last_seen_at <= CAST(:now AS timestamptz) - interval '1 minute'
)
SELECT token_name, scopes, expires_at FROM live;

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
