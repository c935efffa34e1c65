-- name: lock_planner
-- Serialises planners (a tick and the tail of a detector transaction) until commit, so racing
-- callers never interleave their inserts; the unique key would keep rows single anyway.
SELECT pg_advisory_xact_lock(7165421001);

-- name: plan_notifications
-- One statement: the transitions to plan, and the reminders that are due, crossed with matching
-- tenant destinations and ops routes, inserted once per (alert, transition_seq, reminder_no, route).
--   transitions, in the transaction that made them (:changed_since set): those stamped at or after
--     it (every transition statement sets transition_at = :now, and planned_seq with it);
--   transitions, on the periodic tick (:changed_since NULL): those whose planned_seq is behind,
--     i.e. written by something that did not plan them; planned_seq then catches up;
--   reminders (:reminder_interval > 0): while an alert is open and not acked, the latest due one,
--     if no later one was planned for this transition (cursor: notify.alert_delivery_plans).
-- :shards/:shard (optional) limit the transitions to one detection shard's tenants, :tenants
-- (optional) to the given tenants: a small detection pass knows which ones it changed.
WITH transitions AS (
  SELECT a.tenant_id, a.id AS alert_id, a.kind, a.severity, a.transition_seq, a.transition,
         0 AS reminder_no, a.planned_seq
  FROM notify.alerts a
  WHERE CASE WHEN CAST(:changed_since AS timestamptz) IS NULL THEN a.planned_seq <> a.transition_seq
             ELSE a.transition_at >= CAST(:changed_since AS timestamptz) END
    AND (CAST(:shards AS integer) IS NULL OR notify.tenant_shard(a.tenant_id, :shards) = :shard)
    AND (CAST(:tenants AS uuid[]) IS NULL OR a.tenant_id = ANY (CAST(:tenants AS uuid[])))
),
reminders AS (
  SELECT a.tenant_id, a.id AS alert_id, a.kind, a.severity, a.transition_seq, 'reminder' AS transition,
         floor(extract(epoch FROM (CAST(:now AS timestamptz) - a.transition_at))
               / NULLIF(CAST(:reminder_interval AS float8), 0))::int AS reminder_no
  FROM notify.alerts a
  LEFT JOIN notify.alert_delivery_plans p
    ON p.tenant_id = a.tenant_id AND p.alert_id = a.id AND p.planned_seq = a.transition_seq
  WHERE CAST(:reminder_interval AS float8) > 0
    AND a.status = 'open' AND a.acked_at IS NULL AND a.planned_seq = a.transition_seq
    AND a.transition IN ('opened', 'reopened', 'escalated', 'reminder')
    AND floor(extract(epoch FROM (CAST(:now AS timestamptz) - a.transition_at))
              / NULLIF(CAST(:reminder_interval AS float8), 0)) > coalesce(p.planned_reminder, 0)
),
pending AS (
  SELECT tenant_id, alert_id, kind, severity, transition_seq, transition, reminder_no FROM transitions
  UNION ALL
  SELECT tenant_id, alert_id, kind, severity, transition_seq, transition, reminder_no FROM reminders
),
routes AS (
  SELECT * FROM unnest(CAST(:route_names AS text[]), CAST(:route_channels AS text[]),
                       CAST(:route_targets AS text[]), CAST(:route_kinds AS text[]),
                       CAST(:route_min_severities AS public.sev_level[]))
         AS r(name, channel, target, kinds, min_severity)
),
targets AS (
  SELECT pe.*, d.id AS destination_id, 'dest:' || d.id::text AS route_key, d.channel, d.target AS recipient
  FROM pending pe
  JOIN notify.destinations d
    ON d.tenant_id = pe.tenant_id AND d.enabled
   AND (d.kinds IS NULL OR pe.kind = ANY (d.kinds))
   AND pe.severity >= d.min_severity
  WHERE pe.transition = ANY (CAST(:notifying_transitions AS text[]))
  UNION ALL
  SELECT pe.*, NULL, 'route:' || r.name, r.channel, r.target
  FROM pending pe
  JOIN routes r
    ON (r.kinds = '' OR pe.kind = ANY (string_to_array(r.kinds, ',')))
   AND pe.severity >= r.min_severity
  WHERE pe.transition = ANY (CAST(:notifying_transitions AS text[]))
),
inserted AS (
  INSERT INTO notify.notifications
    (tenant_id, alert_id, created_at, channel, recipient, status, transition, transition_seq, reminder_no,
     severity, route_key, destination_id, next_attempt_at)
  SELECT tenant_id, alert_id, :now, channel, recipient, 'queued', transition, transition_seq, reminder_no,
         severity, route_key, destination_id, :now
  FROM targets
  ORDER BY tenant_id, alert_id, route_key
  ON CONFLICT (tenant_id, alert_id, transition_seq, reminder_no, route_key) DO NOTHING
  RETURNING 1
),
caught_up AS (
  UPDATE notify.alerts a SET planned_seq = t.transition_seq
  FROM transitions t
  WHERE t.planned_seq <> t.transition_seq AND a.tenant_id = t.tenant_id AND a.id = t.alert_id
  RETURNING 1
),
reminded AS (
  INSERT INTO notify.alert_delivery_plans AS p (tenant_id, alert_id, planned_seq, planned_reminder)
  SELECT tenant_id, alert_id, transition_seq, reminder_no FROM reminders
  ON CONFLICT (tenant_id, alert_id) DO UPDATE
    SET planned_seq = excluded.planned_seq, planned_reminder = excluded.planned_reminder
  RETURNING 1
)
SELECT (SELECT count(*) FROM inserted) AS planned,
       (SELECT count(*) FROM caught_up) + (SELECT count(*) FROM reminded) AS alerts;

-- name: wake_dispatchers
-- NOTIFY is delivered at commit: dispatchers listening wake up once the rows are visible.
SELECT pg_notify('notify_engine_deliveries', '');
