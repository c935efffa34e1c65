-- name: list_alerts
-- Alerts, newest activity first, each filter optional (`notifyctl show` filters by :id alone;
-- the index not_alert_id serves it without a tenant).
-- last_seen_at: for an unresolved snapshot-detected alert, the time of the last detection pass
-- (every pass leaves an alert unresolved only while its latest value still crosses the line), so
-- it moves with each pass without the pass rewriting the row; last_evidence_at is the capture
-- time of the newest snapshot that showed the condition (the stored column).
SELECT a.id, a.tenant_id, a.base_id, a.kind, a.severity::text AS severity, a.status, a.dedupe_key,
       a.first_seen_at,
       CASE WHEN a.status <> 'resolved' AND a.kind = ANY (CAST(:snapshot_kinds AS text[]))
            THEN greatest(a.last_seen_at, ds.updated_at) ELSE a.last_seen_at END AS last_seen_at,
       a.last_seen_at AS last_evidence_at,
       a.created_at, a.transition, a.transition_seq, a.transition_at, a.acked_at, a.acked_by,
       a.ack_expires_at, a.resolved_at, a.context
FROM notify.alerts a
-- With detect.parallelism > 1 each shard keeps its own row: the oldest pass is the honest one.
LEFT JOIN (SELECT min(updated_at) AS updated_at FROM notify.detection_state WHERE name LIKE 'snapshots%') ds ON true
WHERE (CAST(:id AS uuid) IS NULL OR a.id = :id)
  AND (CAST(:status AS text) IS NULL OR a.status = :status)
  AND (CAST(:tenant_id AS uuid) IS NULL OR a.tenant_id = :tenant_id)
  AND (CAST(:kind AS text) IS NULL OR a.kind = :kind)
  AND (CAST(:severity AS text) IS NULL OR a.severity::text = :severity)
ORDER BY 9 DESC, a.id
LIMIT CAST(:limit AS integer);  -- NULL: every row

-- name: alerts_page
-- One page of alerts for the HTTP API, newest first by (created_at, id): both never change, so a
-- keyset walk (:after_created_at, :after_id = the previous page's last row) sees each alert once.
-- Columns as list_alerts.
SELECT a.id, a.tenant_id, a.base_id, a.kind, a.severity::text AS severity, a.status, a.dedupe_key,
       a.first_seen_at,
       CASE WHEN a.status <> 'resolved' AND a.kind = ANY (CAST(:snapshot_kinds AS text[]))
            THEN greatest(a.last_seen_at, ds.updated_at) ELSE a.last_seen_at END AS last_seen_at,
       a.last_seen_at AS last_evidence_at,
       a.created_at, a.transition, a.transition_seq, a.transition_at, a.acked_at, a.acked_by,
       a.resolved_at, a.context
FROM notify.alerts a
LEFT JOIN (SELECT min(updated_at) AS updated_at FROM notify.detection_state WHERE name LIKE 'snapshots%') ds ON true
WHERE (CAST(:status AS text) IS NULL OR a.status = :status)
  AND (CAST(:tenant_id AS uuid) IS NULL OR a.tenant_id = :tenant_id)
  AND (CAST(:kind AS text) IS NULL OR a.kind = :kind)
  AND (CAST(:after_created_at AS timestamptz) IS NULL
       OR (a.created_at, a.id) < (CAST(:after_created_at AS timestamptz), CAST(:after_id AS uuid)))
ORDER BY a.created_at DESC, a.id DESC
LIMIT CAST(:limit AS integer);

-- name: lock_alert
-- The alert's state before an operator's change, locked until the change commits.
SELECT id, tenant_id, base_id, kind, severity::text AS severity, status, transition, transition_seq
FROM notify.alerts WHERE id = :id FOR UPDATE;

-- name: alert_notifications
-- The alert's delivery records, oldest first.
SELECT * FROM notify.notifications WHERE tenant_id = :tenant_id AND alert_id = :id ORDER BY created_at, id;

-- name: escalation_steps_taken
-- The escalation steps taken in the alert's current episode (`notifyctl show`), with how many
-- notifications each planned.
SELECT x.step_no, x.taken_at, x.target,
       (SELECT count(*) FROM notify.notifications n
        WHERE n.tenant_id = x.tenant_id AND n.alert_id = x.alert_id AND n.transition = 'escalation'
          AND n.reminder_no = -x.step_no AND n.created_at = x.taken_at) AS notifications
FROM notify.alert_escalations x
WHERE x.tenant_id = :tenant_id AND x.alert_id = :id AND x.episode = :episode
ORDER BY x.step_no;

-- name: ack_alert
-- An operator acknowledges an open alert: it stays acked while the condition holds (until
-- :ack_expires_at when set: then the plan tick re-opens it, expire_acks) and still resolves by
-- itself when the condition clears.
UPDATE notify.alerts
SET status = 'ack', acked_at = :now, acked_by = :actor, ack_expires_at = CAST(:ack_expires_at AS timestamptz),
    transition = 'acked', transition_seq = transition_seq + 1, planned_seq = transition_seq + 1,
    transition_at = :now
WHERE tenant_id = :tenant_id AND id = :id AND status = 'open'
RETURNING status, transition, transition_seq, ack_expires_at;

-- name: resolve_alert
-- An operator resolves an alert by hand; if the condition still holds, the next snapshot that
-- shows it re-opens the alert (counted in context.reopen_count).
UPDATE notify.alerts
SET status = 'resolved', resolved_at = :now,
    transition = 'resolved', transition_seq = transition_seq + 1, planned_seq = transition_seq + 1,
    transition_at = :now,
    context = context || jsonb_build_object('resolved_by', 'operator')
WHERE tenant_id = :tenant_id AND id = :id AND status <> 'resolved'
RETURNING status, transition, transition_seq;

-- name: expire_acks
-- Acks whose time ran out (`ack --for`, escalation.ack_timeout) on alerts still acked, i.e. whose
-- condition still holds (a cleared condition resolved the alert): open again, as the transition
-- `ack_expired`, notified like a re-open; reminders and escalation steps run from now. One
-- statement for all of them; the row lock makes a racing tick find nothing left.
UPDATE notify.alerts a
SET status = 'open', acked_at = NULL, acked_by = NULL, ack_expires_at = NULL,
    transition = 'ack_expired', transition_seq = a.transition_seq + 1, planned_seq = a.transition_seq + 1,
    transition_at = :now
FROM (SELECT tenant_id, id, acked_by, ack_expires_at FROM notify.alerts
      WHERE status = 'ack' AND ack_expires_at <= :now
      -- NO KEY UPDATE: the lock the UPDATE takes anyway; it does not block foreign-key checks.
      ORDER BY tenant_id, id FOR NO KEY UPDATE) lapsed
WHERE a.tenant_id = lapsed.tenant_id AND a.id = lapsed.id AND a.status = 'ack'
RETURNING a.id, a.tenant_id, a.base_id, a.kind, lapsed.acked_by, lapsed.ack_expires_at;

-- name: insert_audit_event
-- One admin_log.admin_events row per operator action on an alert (the seed's audit trail).
INSERT INTO admin_log.admin_events (occurred_at, actor_admin_id, tenant_id, base_id, action, target_type,
                                    target_id, severity, diff, comment)
VALUES (:now, :actor_admin_id, :tenant_id, :base_id, :action, 'ALERT', :target_id, 'info',
        CAST(:diff AS jsonb), :comment);

-- name: raise_events
-- Event-driven conditions (PAYMENT_FAILED, a Prometheus alert, ...) are present, one row per
-- alert, in one statement for a whole batch (each (tenant_id, dedupe_key) at most once): opens
-- each alert, re-opens a resolved one (counted in context.reopen_count), or refreshes
-- last_seen_at and the event's context on an open or acked one. Rows go in key order, so
-- batches racing over the same alerts lock them in the same order. :events is one JSON array of
-- {tenant_id, base_id, kind, severity, dedupe_key, context} (one parameter: binding arrays of a
-- thousand values cost the API more than encoding one document).
INSERT INTO notify.alerts AS a (tenant_id, base_id, kind, severity, dedupe_key, status, first_seen_at,
                                last_seen_at, context, transition, transition_seq, planned_seq, transition_at,
                                created_at)
SELECT e.tenant_id, e.base_id, e.kind, e.severity, e.dedupe_key, 'open', :now, :now, e.context,
       'opened', 1, 1, :now, :now
FROM jsonb_to_recordset(CAST(:events AS jsonb))
     AS e(tenant_id uuid, base_id uuid, kind text, severity public.sev_level, dedupe_key text, context jsonb)
ORDER BY e.tenant_id, e.dedupe_key
ON CONFLICT (tenant_id, dedupe_key) DO UPDATE
SET status = CASE WHEN a.status = 'resolved' THEN 'open' ELSE a.status END,
    last_seen_at = greatest(a.last_seen_at, EXCLUDED.last_seen_at),
    context = EXCLUDED.context || jsonb_build_object('reopen_count',
                coalesce((a.context ->> 'reopen_count')::int, 0) + CASE WHEN a.status = 'resolved' THEN 1 ELSE 0 END),
    transition = CASE WHEN a.status = 'resolved' THEN 'reopened' ELSE a.transition END,
    transition_seq = a.transition_seq + CASE WHEN a.status = 'resolved' THEN 1 ELSE 0 END,
    planned_seq = CASE WHEN a.status = 'resolved' THEN a.transition_seq + 1 ELSE a.planned_seq END,
    transition_at = CASE WHEN a.status = 'resolved' THEN EXCLUDED.transition_at ELSE a.transition_at END,
    resolved_at = CASE WHEN a.status = 'resolved' THEN NULL ELSE a.resolved_at END,
    acked_at = CASE WHEN a.status = 'resolved' THEN NULL ELSE a.acked_at END,
    acked_by = CASE WHEN a.status = 'resolved' THEN NULL ELSE a.acked_by END
RETURNING tenant_id, dedupe_key, id, status, transition, transition_seq,
          transition_at = CAST(:now AS timestamptz) AS transitioned;

-- name: clear_events
-- Event-driven conditions are over, a batch in one statement: each unresolved alert named by
-- (tenant_id, dedupe_key) in the JSON array :events (with its actor, kept as cleared_by)
-- resolves; keys with nothing unresolved return nothing.
UPDATE notify.alerts a
SET status = 'resolved', resolved_at = :now,
    transition = 'resolved', transition_seq = a.transition_seq + 1, planned_seq = a.transition_seq + 1,
    transition_at = :now,
    context = a.context || jsonb_build_object('resolved_by', 'event_cleared')
              || jsonb_strip_nulls(jsonb_build_object('cleared_by', e.actor))
FROM jsonb_to_recordset(CAST(:events AS jsonb)) AS e(tenant_id uuid, dedupe_key text, actor text)
WHERE a.tenant_id = e.tenant_id AND a.dedupe_key = e.dedupe_key AND a.status <> 'resolved'
RETURNING a.tenant_id, a.dedupe_key, a.id, a.status, a.transition, a.transition_seq;

-- name: event_alerts_status
-- The status of each named event alert that was ever raised (a clear that changed nothing says which).
SELECT a.tenant_id, a.dedupe_key, a.id, a.status
FROM notify.alerts a
JOIN jsonb_to_recordset(CAST(:events AS jsonb)) AS e(tenant_id uuid, dedupe_key text)
  ON a.tenant_id = e.tenant_id AND a.dedupe_key = e.dedupe_key;
