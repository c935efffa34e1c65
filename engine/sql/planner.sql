-- name: lock_planner
-- Serialises planners (a tick and the tail of a detector transaction) until commit, so racing
-- callers never interleave their inserts; the unique key would keep rows single anyway.
SELECT pg_advisory_xact_lock(7165421001);

-- name: plan_notifications
-- One statement: the transitions to plan, the reminders and escalation steps that are due, crossed
-- with matching tenant destinations and ops routes, inserted once per
-- (alert, transition_seq, reminder_no, route).
--   transitions, in the transaction that made them (:changed_since set): those stamped at or after
--     it (every transition statement sets transition_at = :now, and planned_seq with it);
--   transitions, on the periodic tick (:changed_since NULL): those whose planned_seq is behind,
--     i.e. written by something that did not plan them; planned_seq then catches up;
--   reminders and steps (:periodic only) run on the clock of an alert that is open and not acked
--     (`waiting`: elapsed since transition_at), by its policy: the first of escalation.policies
--     that matches, else the last, the fixed delivery.reminder_interval (the map_* arrays say which, per
--     kind and severity, kind '' for kinds not listed: engine.escalation.policy_parameters);
--   reminders: the latest due one, if no later one was planned for this transition (cursor:
--     notify.alert_delivery_plans). The n-th is due at the sum of the first n intervals (offsets
--     are cumulative), the last interval repeating;
--   steps: each due step not yet taken in this episode (notify.alert_escalations, inserted here
--     ON CONFLICT DO NOTHING: only a step this statement took gets notifications; the cursor
--     alert_delivery_plans.steps_taken spares probing it for steps long taken), to its route by
--     name or to the tenant's enabled destinations with its tag, as transition 'escalation',
--     reminder_no = -step.
-- :shards/:shard (optional) limit the transitions to one detection shard's tenants, :tenants
-- (optional) to the given tenants: a small detection pass knows which ones it changed.
-- The CTEs it shares with plan_transitions and plan_transitions_unsuppressed are the `_` blocks at
-- the end of this file, spliced in where `-- include:` names them (engine/queries.py).
WITH transitions AS (
  SELECT a.tenant_id, a.id AS alert_id, a.kind, a.severity, a.transition_seq, a.transition,
         0 AS reminder_no, a.planned_seq, a.base_id
  FROM notify.alerts a
  WHERE CASE WHEN CAST(:changed_since AS timestamptz) IS NULL THEN a.planned_seq <> a.transition_seq
             ELSE a.transition_at >= CAST(:changed_since AS timestamptz) END
    AND (CAST(:shards AS integer) IS NULL OR notify.tenant_shard(a.tenant_id, :shards) = :shard)
    AND (CAST(:tenants AS uuid[]) IS NULL OR a.tenant_id = ANY (CAST(:tenants AS uuid[])))
),
policy_map AS (
  SELECT m.kind, m.severity, m.policy_no, CAST(m.offsets AS float8[]) AS offsets
  FROM unnest(CAST(:map_kinds AS text[]), CAST(:map_severities AS public.sev_level[]),
              CAST(:map_policies AS integer[]), CAST(:map_offsets AS text[])) AS m(kind, severity, policy_no, offsets)
),
-- With the alert's cursors (notify.alert_delivery_plans): the last reminder planned for this
-- transition and the last step taken in this episode; one index probe serves both.
waiting AS (
  SELECT a.tenant_id, a.id AS alert_id, a.kind, a.severity, a.base_id, a.transition_seq, e.episode,
         CASE WHEN p.planned_seq = a.transition_seq THEN p.planned_reminder ELSE 0 END AS planned_reminder,
         CASE WHEN p.step_episode = e.episode THEN p.steps_taken ELSE 0 END AS steps_taken,
         extract(epoch FROM (CAST(:now AS timestamptz) - a.transition_at))::float8 AS elapsed,
         -- A kind not in the map (rare) takes the entry of kind '': coalesce evaluates it only then.
         coalesce(known.policy_no, (SELECT o.policy_no FROM policy_map o WHERE o.kind = '' AND o.severity = a.severity))
           AS policy_no,
         coalesce(known.offsets, (SELECT o.offsets FROM policy_map o WHERE o.kind = '' AND o.severity = a.severity))
           AS offsets
  FROM notify.alerts a
  CROSS JOIN LATERAL (SELECT coalesce((a.context ->> 'reopen_count')::int, 0) AS episode) e
  LEFT JOIN policy_map known ON known.kind = a.kind AND known.severity = a.severity
  LEFT JOIN notify.alert_delivery_plans p ON p.tenant_id = a.tenant_id AND p.alert_id = a.id
  WHERE CAST(:periodic AS boolean)
    -- Nothing is due before the earliest first reminder or step of any policy.
    AND a.transition_at <= CAST(:now AS timestamptz) - make_interval(secs => CAST(:earliest_due AS float8))
    AND a.status = 'open' AND a.acked_at IS NULL AND a.planned_seq = a.transition_seq
    AND a.transition IN ('opened', 'reopened', 'escalated', 'reminder', 'ack_expired')
),
reminders_due AS (
  SELECT w.tenant_id, w.alert_id, w.kind, w.severity, w.base_id, w.transition_seq, w.planned_reminder,
         CASE WHEN w.elapsed >= w.offsets[cardinality(w.offsets)]
              THEN cardinality(w.offsets) + floor((w.elapsed - w.offsets[cardinality(w.offsets)])
                   / (w.offsets[cardinality(w.offsets)] - coalesce(w.offsets[cardinality(w.offsets) - 1], 0)))::int
              ELSE (SELECT count(*)::int FROM unnest(w.offsets) o WHERE o <= w.elapsed) END AS reminder_no
  FROM waiting w
  WHERE w.elapsed >= w.offsets[1]    -- NULL (never) for an empty schedule
),
reminders AS (
  SELECT r.tenant_id, r.alert_id, r.kind, r.severity, r.transition_seq, 'reminder' AS transition, r.reminder_no,
         r.base_id
  FROM reminders_due r
  WHERE r.reminder_no > r.planned_reminder
),
steps AS (
  SELECT * FROM unnest(CAST(:step_policies AS integer[]), CAST(:step_nos AS integer[]),
                       CAST(:step_afters AS float8[]), CAST(:step_routes AS text[]), CAST(:step_tags AS text[]))
         AS s(policy_no, step_no, after_s, route_name, tag)
),
-- Steps due past the alert's cursor (steps fall due in order, so those taken are 1..steps_taken);
-- alert_escalations, the guarantee, is probed only for these.
steps_candidates AS (
  SELECT w.tenant_id, w.alert_id, w.kind, w.severity, w.transition_seq, w.episode, s.step_no, s.route_name, s.tag
  FROM waiting w
  JOIN steps s ON s.policy_no = w.policy_no AND w.elapsed >= s.after_s AND s.step_no > w.steps_taken
),
steps_due AS (
  SELECT w.* FROM steps_candidates w
  WHERE NOT EXISTS (SELECT 1 FROM notify.alert_escalations x
                    WHERE x.tenant_id = w.tenant_id AND x.alert_id = w.alert_id
                      AND x.episode = w.episode AND x.step_no = w.step_no)
),
steps_taken AS (
  -- A planner racing this one (or one that committed meanwhile) took the step: nothing here.
  INSERT INTO notify.alert_escalations (tenant_id, alert_id, episode, step_no, taken_at, target)
  SELECT tenant_id, alert_id, episode, step_no, :now, coalesce('route:' || route_name, 'tag:' || tag)
  FROM steps_due
  ORDER BY tenant_id, alert_id, step_no
  ON CONFLICT DO NOTHING
  RETURNING tenant_id, alert_id, step_no, target
),
-- From what the insert returned, not by joining it back to steps_due: a CTE's RETURNING has no
-- row estimate, and a nested loop over two of them is quadratic (100 s for 20,000 steps).
steps_pending AS (
  SELECT t.tenant_id, t.alert_id, a.kind, a.severity, a.base_id, a.transition_seq, t.step_no,
         CASE WHEN t.target LIKE 'route:%' THEN substr(t.target, 7) END AS route_name,
         CASE WHEN t.target LIKE 'tag:%' THEN substr(t.target, 5) END AS tag
  FROM steps_taken t
  JOIN notify.alerts a ON a.tenant_id = t.tenant_id AND a.id = t.alert_id
),
-- Silences that ended (run out or expired early) and were not handled yet (:notice_silences:
-- the periodic tick): each alert they suppressed that is still open and not acked, and whose
-- current transition nobody was told about since, is notified once, as transition
-- 'silence_ended' (docs/NOISE.md). notify.silence_notices is the guarantee, as alert_escalations
-- is for steps: only a notice this statement took gets notifications.
silences_ended AS (
  SELECT s.id FROM notify.silences s
  WHERE CAST(:notice_silences AS boolean) AND s.ended_noticed_at IS NULL
    AND coalesce(s.expired_at, s.ends_at) <= CAST(:now AS timestamptz)
),
notices_due AS (
  SELECT DISTINCT n.tenant_id, n.alert_id, se.id AS silence_id
  FROM silences_ended se
  JOIN notify.notifications n ON n.status = 'suppressed' AND n.suppressed_by = 'silence:' || se.id::text
  JOIN notify.alerts a ON a.tenant_id = n.tenant_id AND a.id = n.alert_id
  WHERE a.status = 'open' AND a.acked_at IS NULL AND a.planned_seq = a.transition_seq
    AND NOT EXISTS (SELECT 1 FROM notify.notifications c
                    WHERE c.tenant_id = a.tenant_id AND c.alert_id = a.id AND c.transition_seq = a.transition_seq
                      AND c.status IN ('queued', 'sent', 'held', 'grouped'))
),
notices_taken AS (
  -- Numbered per alert under the planner's lock; the primary key stops a second notice anyway.
  INSERT INTO notify.silence_notices (tenant_id, alert_id, silence_id, notice_no, noticed_at)
  SELECT d.tenant_id, d.alert_id, d.silence_id,
         coalesce((SELECT max(x.notice_no) FROM notify.silence_notices x
                   WHERE x.tenant_id = d.tenant_id AND x.alert_id = d.alert_id), 0)
           + row_number() OVER (PARTITION BY d.tenant_id, d.alert_id ORDER BY d.silence_id),
         :now
  FROM notices_due d
  ORDER BY d.tenant_id, d.alert_id
  ON CONFLICT DO NOTHING
  RETURNING tenant_id, alert_id, notice_no
),
silences_noticed AS (
  UPDATE notify.silences s SET ended_noticed_at = :now FROM silences_ended se WHERE s.id = se.id
  RETURNING 1
),
notices AS (
  SELECT t.tenant_id, t.alert_id, a.kind, a.severity, a.transition_seq, 'silence_ended' AS transition,
         -(1000000 + t.notice_no) AS reminder_no, a.base_id
  FROM notices_taken t
  JOIN notify.alerts a ON a.tenant_id = t.tenant_id AND a.id = t.alert_id
),
pending AS (
  SELECT tenant_id, alert_id, kind, severity, transition_seq, transition, reminder_no, base_id FROM transitions
  UNION ALL
  SELECT tenant_id, alert_id, kind, severity, transition_seq, transition, reminder_no, base_id FROM reminders
  UNION ALL
  SELECT tenant_id, alert_id, kind, severity, transition_seq, transition, reminder_no, base_id FROM notices
),
-- include: _routes_and_transition_targets
targets AS (
  SELECT * FROM transition_targets
  -- A step names its target: its route whatever the route's kinds and min_severity, or the
  -- tenant's enabled destinations with its tag whatever theirs (the policy already matched).
  UNION ALL
  SELECT sp.tenant_id, sp.alert_id, sp.kind, sp.severity, sp.transition_seq, 'escalation', -sp.step_no, sp.base_id,
         d.id, 'dest:' || d.id::text, d.channel, d.target
  FROM steps_pending sp
  JOIN notify.destinations d ON d.tenant_id = sp.tenant_id AND d.enabled AND sp.tag = ANY (d.tags)
  UNION ALL
  SELECT sp.tenant_id, sp.alert_id, sp.kind, sp.severity, sp.transition_seq, 'escalation', -sp.step_no, sp.base_id,
         NULL, 'route:' || r.name, r.channel, r.target
  FROM steps_pending sp
  JOIN routes r ON r.name = sp.route_name
),
-- include: _suppression_candidates
-- include: _suppressed_by
-- include: _shape_and_insert
caught_up AS (
  UPDATE notify.alerts a SET planned_seq = t.transition_seq
  FROM transitions t
  WHERE t.planned_seq <> t.transition_seq AND a.tenant_id = t.tenant_id AND a.id = t.alert_id
  RETURNING 1
),
step_cursor AS (
  SELECT tenant_id, alert_id, max(episode) AS episode, max(step_no) AS step_no
  FROM steps_candidates GROUP BY tenant_id, alert_id
),
-- One upsert for both cursors (a row may be changed once per statement). planned_reminder 0 in
-- the new row means "no reminder this time", step_episode NULL "no step": keep the stored one.
reminded AS (
  INSERT INTO notify.alert_delivery_plans AS p (tenant_id, alert_id, planned_seq, planned_reminder, step_episode,
                                                steps_taken)
  SELECT coalesce(r.tenant_id, c.tenant_id), coalesce(r.alert_id, c.alert_id), coalesce(r.transition_seq, 0),
         coalesce(r.reminder_no, 0), c.episode, coalesce(c.step_no, 0)
  FROM reminders r
  FULL JOIN step_cursor c ON c.tenant_id = r.tenant_id AND c.alert_id = r.alert_id
  ON CONFLICT (tenant_id, alert_id) DO UPDATE
    SET planned_seq = CASE WHEN excluded.planned_reminder > 0 THEN excluded.planned_seq ELSE p.planned_seq END,
        planned_reminder = CASE WHEN excluded.planned_reminder > 0 THEN excluded.planned_reminder
                                ELSE p.planned_reminder END,
        step_episode = coalesce(excluded.step_episode, p.step_episode),
        steps_taken = CASE WHEN excluded.step_episode IS NULL THEN p.steps_taken ELSE excluded.steps_taken END
  RETURNING 1
)
SELECT (SELECT count(*) FROM inserted) AS planned,
       (SELECT count(*) FROM inserted WHERE suppressed_by LIKE 'silence:%') AS silenced,
       (SELECT count(*) FROM inserted WHERE suppressed_by LIKE 'inhibition:%') AS inhibited,
       (SELECT count(*) FROM silences_noticed) AS silences_ended,
       (SELECT count(*) FROM caught_up) + (SELECT count(*) FROM reminded) AS alerts,
       (SELECT count(*) FROM steps_taken) AS steps,
       -- include: _held_release_woken

-- name: plan_transitions
-- plan_notifications for the transaction that made the transitions (:changed_since set, no
-- reminders, steps or silence notices: those are the tick's): the same statement without the
-- tick's parts, which a single transition's transaction would pay to plan every time (about half
-- of its planning). Its CTEs from `routes` on are plan_notifications' (the `_` blocks below).
-- include: _transitions_head
-- include: _routes_and_transition_targets
targets AS (SELECT * FROM transition_targets),
-- include: _suppression_candidates
-- include: _suppressed_by
-- include: _shape_and_insert
-- include: _transitions_result

-- name: plan_transitions_unsuppressed
-- plan_transitions for transitions nothing can suppress (no silence in force, no inhibition
-- rule's target matchers take them: the events of most senders), without the CTEs that read
-- silences' matches and inhibiting alerts, which a one-transition transaction pays to plan every
-- time (about a quarter of its planning). It guards itself: when a silence is in force or a
-- rule's targets take a transition (suppression_candidates, as in plan_transitions), it writes
-- nothing and says so (`suppressible`), and the caller runs plan_transitions in the same
-- transaction. So a silence added a moment ago, by any process, is never missed.
-- include: _transitions_head
-- include: _routes_and_transition_targets
targets AS (SELECT * FROM transition_targets),
-- include: _suppression_candidates
-- Nothing here can be suppressed (the guard below): no reasons.
suppression_map AS (
  SELECT CAST('{}' AS jsonb) AS reasons
),
-- include: _shape_and_insert
-- include: _transitions_result

-- name: wake_dispatchers
-- NOTIFY is delivered at commit: dispatchers listening wake up once the rows are visible.
SELECT pg_notify('notify_engine_deliveries', '');

-- name: _transitions_head
-- Fragments (this one and the `_` blocks after it): parts of the statements above, each written
-- once. A block whose name starts with `_` is not a query of its own; engine/queries.py splices it
-- in where a line `-- include: <name>` names it.
-- plan_transitions' and plan_transitions_unsuppressed's transitions: those stamped at or after
-- :changed_since (the transaction's own), and nothing else.
WITH transitions AS (
  SELECT a.tenant_id, a.id AS alert_id, a.kind, a.severity, a.transition_seq, a.transition,
         0 AS reminder_no, a.planned_seq, a.base_id
  FROM notify.alerts a
  WHERE a.transition_at >= CAST(:changed_since AS timestamptz)
    AND (CAST(:shards AS integer) IS NULL OR notify.tenant_shard(a.tenant_id, :shards) = :shard)
    AND (CAST(:tenants AS uuid[]) IS NULL OR a.tenant_id = ANY (CAST(:tenants AS uuid[])))
),
-- Only transitions here (reminders, steps and notices are the tick's).
pending AS (
  SELECT tenant_id, alert_id, kind, severity, transition_seq, transition, reminder_no, base_id FROM transitions
),

-- name: _routes_and_transition_targets
-- The ops routes, and each pending transition crossed with the tenant's matching destinations
-- and the matching routes (plan_notifications adds the escalation steps' targets to these).
routes AS (
  SELECT * FROM unnest(CAST(:route_names AS text[]), CAST(:route_channels AS text[]),
                       CAST(:route_targets AS text[]), CAST(:route_kinds AS text[]),
                       CAST(:route_min_severities AS public.sev_level[]), CAST(:route_escalation_only AS boolean[]))
         AS r(name, channel, target, kinds, min_severity, escalation_only)
),
transition_targets AS (
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
   AND pe.severity >= r.min_severity AND NOT r.escalation_only
  WHERE pe.transition = ANY (CAST(:notifying_transitions AS text[]))
),

-- name: _suppression_candidates
-- Noise control (docs/NOISE.md): a row whose alert a silence in force selects is recorded
-- `suppressed` by it (the earliest such silence), else one an inhibition rule's source alert holds
-- down (an unresolved alert of the same tenant matching the rule's source, equal on its `equal`
-- labels); never dropped. Silences are few: the matcher function runs only while one is in force.
active_silences AS MATERIALIZED (
  SELECT s.id, s.matchers, s.starts_at FROM notify.silences s
  WHERE s.starts_at <= CAST(:now AS timestamptz) AND coalesce(s.expired_at, s.ends_at) > CAST(:now AS timestamptz)
),
inhibit_rules AS (
  SELECT * FROM unnest(CAST(:inhibit_names AS text[]), CAST(:inhibit_source_kinds AS text[]),
                       CAST(:inhibit_source_severities AS text[]), CAST(:inhibit_target_kinds AS text[]),
                       CAST(:inhibit_target_severities AS text[]), CAST(:inhibit_equal AS text[]))
         WITH ORDINALITY AS r(name, source_kinds, source_severities, target_kinds, target_severities, equal, rule_no)
),
-- Only alerts something could suppress are looked at: a silence is in force, or a rule's target
-- matchers take the row's kind and severity.
suppression_candidates AS (
  SELECT DISTINCT t.tenant_id, t.alert_id, t.kind, t.severity, t.base_id
  FROM targets t
  WHERE EXISTS (SELECT 1 FROM active_silences)
     OR EXISTS (SELECT 1 FROM inhibit_rules r
                WHERE (r.target_kinds = '' OR t.kind = ANY (string_to_array(r.target_kinds, ',')))
                  AND (r.target_severities = '' OR t.severity::text = ANY (string_to_array(r.target_severities, ','))))
),

-- name: _suppressed_by
-- The alerts that hold others down: unresolved, matching a rule's source, of a tenant with
-- candidates. Read once for the statement, tenant by tenant through not_alert_unresolved_tenant
-- (ddl/notify/0024; the OFFSET 0 keeps it so), not looked up per candidate: 50,000 warn rows
-- probing their tenants' alerts one by one took 5-13 s. A plain join was planned from the row
-- estimates of a transaction's fresh transitions (1: the statistics never saw them) as a nested
-- loop comparing every open alert with every candidate tenant: 0.1-0.4 s for a batch of 1,000.
candidate_tenants AS MATERIALIZED (
  SELECT DISTINCT tenant_id FROM suppression_candidates
),
inhibitors AS MATERIALIZED (
  SELECT r.rule_no, r.name, r.equal, r.target_kinds, r.target_severities,
         src.tenant_id, src.id, src.kind, src.severity, src.base_id, src.first_seen_at
  FROM candidate_tenants ct
  CROSS JOIN LATERAL (
    SELECT a.tenant_id, a.id, a.kind, a.severity, a.base_id, a.first_seen_at
    FROM notify.alerts a WHERE a.tenant_id = ct.tenant_id AND a.status IN ('open', 'ack') OFFSET 0
  ) src
  JOIN inhibit_rules r
    ON (r.source_kinds = '' OR src.kind = ANY (string_to_array(r.source_kinds, ',')))
   AND (r.source_severities = '' OR src.severity::text = ANY (string_to_array(r.source_severities, ',')))
),
inhibited AS (
  SELECT DISTINCT ON (c.tenant_id, c.alert_id) c.tenant_id, c.alert_id,
         'inhibition:' || i.name || ':' || i.id::text AS reason
  FROM suppression_candidates c
  JOIN inhibitors i
    ON i.tenant_id = c.tenant_id AND i.id <> c.alert_id
   AND (i.target_kinds = '' OR c.kind = ANY (string_to_array(i.target_kinds, ',')))
   AND (i.target_severities = '' OR c.severity::text = ANY (string_to_array(i.target_severities, ',')))
   AND (NOT 'kind' = ANY (string_to_array(i.equal, ',')) OR i.kind = c.kind)
   AND (NOT 'severity' = ANY (string_to_array(i.equal, ',')) OR i.severity = c.severity)
   AND (NOT 'base' = ANY (string_to_array(i.equal, ',')) OR i.base_id IS NOT DISTINCT FROM c.base_id)
  ORDER BY c.tenant_id, c.alert_id, i.rule_no, i.first_seen_at, i.id
),
-- The silence that holds each candidate down (the earliest in force that selects it); the alert
-- is read again (its posted labels) only while a silence is in force.
silenced AS (
  SELECT c.tenant_id, c.alert_id,
         (SELECT 'silence:' || s.id::text FROM active_silences s
          WHERE notify.silence_matches(s.matchers, a.tenant_id, a.kind, a.severity::text, a.base_id,
                                       a.context #> '{event,labels}')
          ORDER BY s.starts_at, s.id LIMIT 1) AS reason
  FROM suppression_candidates c
  JOIN notify.alerts a ON a.tenant_id = c.tenant_id AND a.id = c.alert_id
  WHERE EXISTS (SELECT 1 FROM active_silences)
),
-- A silence before an inhibition. One jsonb object alert id -> reason, read per row by key: a
-- join to the CTE would be planned from a row estimate of 1 as a nested loop, quadratic in the
-- transitions (20 s for 10,000).
suppression_map AS (
  SELECT coalesce(jsonb_object_agg(alert_id::text, reason), '{}') AS reasons
  FROM (SELECT DISTINCT ON (alert_id) alert_id, reason
        FROM (SELECT alert_id, reason, 0 AS rank FROM silenced WHERE reason IS NOT NULL
              UNION ALL
              SELECT alert_id, reason, 1 FROM inhibited) r
        ORDER BY alert_id, rank) s
),

-- name: _shape_and_insert
-- Noise control (issue 15, docs/NOISE.md): how a new row starts. A non-critical row waits as
-- `held` for its destination's digest ('digest') or the end of its quiet hours ('quiet_hours'); a
-- row of a grouping route or destination (email, Slack; webhooks that ask for the grouped payload)
-- is held ('group_wait') until group_wait from now, or group_interval after its group's last
-- message, whichever is later, and so is every row of a rate-limited destination or tenant. A row
-- alone in its group with nothing to wait for is queued at once, as before. engine.noise's release
-- step (in the same transaction, and the `release` job) turns due held rows into messages.
noise_routes AS (
  SELECT * FROM unnest(CAST(:noise_route_keys AS text[]), CAST(:noise_group_waits AS float8[]),
                       CAST(:noise_group_intervals AS float8[]), CAST(:noise_group_bys AS text[]),
                       CAST(:noise_groupable AS boolean[]))
         AS r(route_key, group_wait, group_interval, group_by, groupable)
),
shaped AS (
  SELECT t.*, k.group_key,
         CASE WHEN t.severity < 'critical' AND d.digest <> 'immediate' THEN notify.next_digest_at(CAST(:now AS timestamptz), d.digest, d.digest_at,
                                                                      coalesce(d.timezone, :noise_timezone)) END AS digest_due,
         CASE WHEN t.severity < 'critical' AND d.quiet_start IS NOT NULL THEN notify.quiet_hours_end(CAST(:now AS timestamptz), d.quiet_start, d.quiet_end,
                                                                       coalesce(d.timezone, :noise_timezone)) END AS quiet_until,
         coalesce(r.groupable, t.channel <> 'webhook' OR coalesce(d.grouped_payload, false)) AS groupable,
         coalesce(r.group_interval, CAST(:noise_dest_group_interval AS float8)) AS group_interval,
         greatest(CAST(:now AS timestamptz) + make_interval(secs => coalesce(r.group_wait, CAST(:noise_dest_group_wait AS float8))),
                  g.last_message_at + make_interval(secs => coalesce(r.group_interval, CAST(:noise_dest_group_interval AS float8))))
           AS group_due,
         t.destination_id IS NOT NULL AND (coalesce(d.rate_limit_messages, CAST(:noise_dest_limit AS integer)) > 0
                                           OR CAST(:noise_tenant_limit AS integer) > 0) AS limited
  FROM (SELECT t.*, sm.reasons ->> t.alert_id::text AS suppressed_by FROM targets t CROSS JOIN suppression_map sm) t
  LEFT JOIN notify.destinations d ON d.tenant_id = t.tenant_id AND d.id = t.destination_id
  LEFT JOIN noise_routes r ON r.route_key = t.route_key
  CROSS JOIN LATERAL (
    SELECT concat_ws('|',
             CASE WHEN 'tenant' = ANY (k.labels) THEN 'tenant=' || t.tenant_id END,
             CASE WHEN 'kind' = ANY (k.labels) THEN 'kind=' || t.kind END,
             CASE WHEN 'severity' = ANY (k.labels) THEN 'severity=' || t.severity END,
             CASE WHEN 'base' = ANY (k.labels)
                  THEN 'base=' || coalesce(t.base_id::text, '-') END) AS group_key
    FROM (SELECT string_to_array(coalesce(r.group_by, :noise_dest_group_by), ',') AS labels) k
  ) k
  LEFT JOIN notify.group_state g ON g.route_key = t.route_key AND g.group_key = k.group_key
),
started AS (
  -- A suppressed row (a silence, an inhibition) is never held and counts in no group.
  SELECT s.*,
         CASE WHEN s.suppressed_by IS NOT NULL THEN NULL
              WHEN s.digest_due IS NOT NULL THEN 'digest'
              WHEN s.quiet_until IS NOT NULL THEN 'quiet_hours'
              WHEN s.limited OR (s.groupable AND (s.group_due > CAST(:now AS timestamptz) OR s.group_interval > 0
                                                 OR count(*) FILTER (WHERE s.suppressed_by IS NULL)
                                                      OVER (PARTITION BY s.route_key, s.group_key) > 1))
                THEN 'group_wait' END AS held_reason
  FROM shaped s
),
inserted AS (
  INSERT INTO notify.notifications
    (tenant_id, alert_id, created_at, channel, recipient, status, transition, transition_seq, reminder_no,
     severity, route_key, destination_id, next_attempt_at, held_reason, release_at, group_key, suppressed_by)
  SELECT tenant_id, alert_id, :now, channel, recipient,
         CASE WHEN suppressed_by IS NOT NULL THEN 'suppressed' WHEN held_reason IS NULL THEN 'queued' ELSE 'held' END,
         transition, transition_seq, reminder_no, severity, route_key, destination_id, :now, held_reason,
         CASE held_reason WHEN 'digest' THEN digest_due WHEN 'quiet_hours' THEN quiet_until
                          WHEN 'group_wait' THEN group_due END,
         CASE held_reason WHEN 'digest' THEN 'digest' WHEN 'quiet_hours' THEN 'quiet_hours' ELSE group_key END,
         suppressed_by
  FROM started
  -- plan_transitions_unsuppressed's guard (:guarded): nothing is written when something could be
  -- suppressed, and the caller plans with plan_transitions instead.
  WHERE NOT (CAST(:guarded AS boolean) AND EXISTS (SELECT 1 FROM suppression_candidates))
  ORDER BY tenant_id, alert_id, route_key
  ON CONFLICT (tenant_id, alert_id, transition_seq, reminder_no, route_key) DO NOTHING
  RETURNING held_reason, suppressed_by, release_at
),

-- name: _transitions_result
-- The transition statements' planned_seq catch-up (under plan_transitions_unsuppressed's guard)
-- and their answer: what was planned, and whether anything was suppressible.
caught_up AS (
  UPDATE notify.alerts a SET planned_seq = t.transition_seq
  FROM transitions t
  WHERE t.planned_seq <> t.transition_seq AND a.tenant_id = t.tenant_id AND a.id = t.alert_id
    AND NOT (CAST(:guarded AS boolean) AND EXISTS (SELECT 1 FROM suppression_candidates))
  RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM suppression_candidates) AS suppressible,
       (SELECT count(*) FROM inserted) AS planned,
       (SELECT count(*) FROM inserted WHERE suppressed_by LIKE 'silence:%') AS silenced,
       (SELECT count(*) FROM inserted WHERE suppressed_by LIKE 'inhibition:%') AS inhibited,
       (SELECT count(*) FROM caught_up) AS alerts,
       -- include: _held_release_woken

-- name: _held_release_woken
-- The end of every planning statement's answer: rows held by reason, whether a release step has
-- anything to do now (a held row due, this pass's included, which this statement's snapshot does
-- not see: spares the release's statements), and the dispatchers' wake-up (NOTIFY is delivered at
-- commit: dispatchers listening wake up once the rows are visible).
(SELECT count(*) FROM inserted WHERE held_reason = 'group_wait') AS held_group_wait,
(SELECT count(*) FROM inserted WHERE held_reason = 'digest') AS held_digest,
(SELECT count(*) FROM inserted WHERE held_reason = 'quiet_hours') AS held_quiet_hours,
EXISTS (SELECT 1 FROM notify.notifications WHERE status = 'held' AND release_at <= CAST(:now AS timestamptz))
  OR EXISTS (SELECT 1 FROM inserted WHERE held_reason IS NOT NULL AND release_at <= CAST(:now AS timestamptz))
  AS release_due,
(SELECT count(*) FROM (SELECT pg_notify('notify_engine_deliveries', '') FROM inserted LIMIT 1) w) AS woken
