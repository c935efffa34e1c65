-- name: check_matchers
-- Each matcher's regular expression compiles in PostgreSQL (it is evaluated there, anchored),
-- and whether the matcher accepts the empty string (a silence whose every matcher does would
-- silence every alert). Raises on a bad expression: the caller names the matcher.
SELECT m.ord,
       CASE WHEN m.is_regex THEN '' ~ ('^(?:' || m.value || ')$') ELSE m.value = '' END = m.is_equal AS matches_empty
FROM unnest(CAST(:values AS text[]), CAST(:regex AS boolean[]), CAST(:equal AS boolean[]))
     WITH ORDINALITY AS m(value, is_regex, is_equal, ord)
ORDER BY m.ord;

-- name: kind_seen
-- A kind some alert has had (a Prometheus alertname is a kind once an alert of it was posted).
-- No index on kind: a known kind stops at its first row; only a typo reads the whole table, once
-- per `silence add`, which costs less than an index every alert insert would keep up.
SELECT EXISTS (SELECT 1 FROM notify.alerts WHERE kind = :kind) AS seen;

-- name: known_tenant
-- A tenant notify-engine has seen: an alert, a destination or a snapshot of it.
SELECT EXISTS (SELECT 1 FROM notify.alerts WHERE tenant_id = :tenant_id)
    OR EXISTS (SELECT 1 FROM notify.destinations WHERE tenant_id = :tenant_id)
    OR EXISTS (SELECT 1 FROM notify.quota_snapshots WHERE tenant_id = :tenant_id) AS known;

-- name: insert_silence
INSERT INTO notify.silences (matchers, starts_at, ends_at, created_at, created_by, comment)
VALUES (CAST(:matchers AS jsonb), :starts_at, :ends_at, :now, :created_by, :comment)
RETURNING id;

-- name: suppress_queued
-- A silence in force from now: rows already queued (not being sent: no live lease) or held (waiting
-- for their group, digest, quiet hours or rate limit) of the alerts it selects are suppressed too,
-- as Alertmanager checks silences when it sends.
UPDATE notify.notifications n
SET status = 'suppressed', suppressed_by = 'silence:' || s.id::text, claim_token = NULL, lease_until = NULL
FROM notify.silences s, notify.alerts a
WHERE s.id = :id AND n.status IN ('queued', 'held') AND (n.lease_until IS NULL OR n.lease_until <= CAST(:now AS timestamptz))
  AND a.tenant_id = n.tenant_id AND a.id = n.alert_id
  AND notify.silence_matches(s.matchers, a.tenant_id, a.kind, a.severity::text, a.base_id, a.context #> '{event,labels}')
RETURNING n.id;

-- name: silences_page
-- Silences newest first by (created_at, id), both immutable, so a keyset walk sees each once.
-- :states filters by state at :now (active, pending, expired).
SELECT * FROM (
  SELECT s.*, coalesce(s.expired_at, s.ends_at) AS ended_at,
         CASE WHEN coalesce(s.expired_at, s.ends_at) <= CAST(:now AS timestamptz) THEN 'expired'
              WHEN s.starts_at > CAST(:now AS timestamptz) THEN 'pending' ELSE 'active' END AS state,
         (SELECT count(*) FROM notify.notifications n
          WHERE n.status = 'suppressed' AND n.suppressed_by = 'silence:' || s.id::text) AS suppressed
  FROM notify.silences s
  WHERE (CAST(:id AS uuid) IS NULL OR s.id = CAST(:id AS uuid))
    AND (CAST(:after_created_at AS timestamptz) IS NULL
         OR (s.created_at, s.id) < (CAST(:after_created_at AS timestamptz), CAST(:after_id AS uuid)))
) x
WHERE x.state = ANY (CAST(:states AS text[]))
ORDER BY x.created_at DESC, x.id DESC
LIMIT CAST(:limit AS integer);

-- name: lock_silence
SELECT id, matchers, starts_at, ends_at, expired_at, expired_by, comment FROM notify.silences WHERE id = :id FOR UPDATE;

-- name: expire_silence
-- Ends a silence now (one not yet ended); the plan tick then notifies what it held down.
UPDATE notify.silences SET expired_at = :now, expired_by = :actor
WHERE id = :id AND coalesce(expired_at, ends_at) > CAST(:now AS timestamptz)
RETURNING id;

-- name: insert_audit_event
-- One admin_log.admin_events row per silence added or expired (as ack's ALERT_ACK).
INSERT INTO admin_log.admin_events (occurred_at, actor_admin_id, tenant_id, action, target_type, target_id,
                                    severity, diff, comment)
VALUES (:now, :actor_admin_id, :tenant_id, :action, 'SILENCE', :target_id, 'info', CAST(:diff AS jsonb), :comment);
