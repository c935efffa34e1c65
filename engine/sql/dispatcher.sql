-- name: claim_due
-- Claims up to :batch_size due notifications: SKIP LOCKED lets dispatchers share the queue; the
-- attempt is counted now and the claim takes a lease (lease_until), so a claim that is never
-- finished (crash) is due again once the lease runs out (`lease_expired`: the dispatcher then
-- fails it without sending when that was its last allowed attempt). Only unindexed columns
-- change, so the update can be HOT (ddl/notify/0006). Returns each row with its alert and
-- destination, one statement per batch; ids as text and the context as JSON text, which is what
-- the channels use (no UUID objects, no JSON parse for webhooks).
-- Destination health (ddl/notify/0010): rows of a paused destination (pause_level > 0) are not
-- claimed; once its pause has ended, one claim takes one of its rows as the probe and holds the
-- destination's pause until that claim's lease ends, so racing claims never both probe (the
-- second waits for the first's row lock, then sees the pause held). The paused set is read once
-- per claim through a partial index that holds only paused destinations (usually none).
WITH probed AS (
  UPDATE notify.destinations d
  SET paused_until = :lease_until
  WHERE d.pause_level > 0 AND d.paused_until <= :now
    AND EXISTS (SELECT 1 FROM notify.notifications n
                WHERE n.tenant_id = d.tenant_id AND n.destination_id = d.id AND n.status = 'queued'
                  AND n.next_attempt_at <= :now AND (n.lease_until IS NULL OR n.lease_until <= :now))
  RETURNING d.tenant_id, d.id
),
due AS (
  SELECT tenant_id, id, claim_token
  FROM notify.notifications
  WHERE status = 'queued' AND next_attempt_at <= :now AND (lease_until IS NULL OR lease_until <= :now)
    AND (destination_id IS NULL
         OR destination_id <> ALL (ARRAY(SELECT id FROM notify.destinations WHERE pause_level > 0)))
  ORDER BY next_attempt_at
  LIMIT :batch_size
  FOR UPDATE SKIP LOCKED
),
probe AS (
  SELECT q.tenant_id, q.id, q.claim_token
  FROM probed p
  CROSS JOIN LATERAL (
    SELECT n.tenant_id, n.id, n.claim_token
    FROM notify.notifications n
    WHERE n.tenant_id = p.tenant_id AND n.destination_id = p.id AND n.status = 'queued'
      AND n.next_attempt_at <= :now AND (n.lease_until IS NULL OR n.lease_until <= :now)
    ORDER BY n.next_attempt_at
    LIMIT 1
    FOR UPDATE SKIP LOCKED
  ) q
),
claimed AS (
  UPDATE notify.notifications n
  -- A lease that ran out on the last allowed attempt is no new attempt: the row is failed unsent.
  SET send_attempts = n.send_attempts
                      + CASE WHEN due.claim_token IS NOT NULL AND n.send_attempts >= :max_attempts THEN 0 ELSE 1 END,
      last_attempt_at = :now,
      lease_until = :lease_until, claim_token = :token
  FROM (SELECT * FROM due UNION ALL SELECT * FROM probe) AS due
  WHERE n.tenant_id = due.tenant_id AND n.id = due.id
  RETURNING n.tenant_id, n.id, n.alert_id, n.destination_id, n.route_key, n.channel, n.recipient,
            (due.claim_token IS NOT NULL) AS lease_expired,
            n.transition, n.reminder_no, n.severity, n.send_attempts, n.idempotency_key, n.created_at, n.note,
            n.group_key, n.origin_id
)
SELECT c.tenant_id::text AS tenant_id, c.id::text AS id, c.alert_id::text AS alert_id,
       c.destination_id::text AS destination_id, c.route_key, c.channel, c.recipient, c.lease_expired,
       c.transition, c.reminder_no, c.severity::text AS severity, c.send_attempts, c.idempotency_key, c.created_at,
       c.note,
       a.kind, a.severity::text AS alert_severity, a.status AS alert_status, a.base_id::text AS base_id,
       a.dedupe_key, a.first_seen_at, a.last_seen_at, a.context::text AS context,
       (d.id IS NOT NULL) AS destination_exists, d.enabled AS destination_enabled, d.secret_ciphertext,
       d.timezone AS destination_timezone, d.locale AS destination_locale,
       coalesce(a.kind = ANY (d.opted_out_kinds), false) AS destination_opted_out,
       -- A group message (issue 15) names no alert: its members and their alerts come with it as
       -- one JSON array (the first :list_max, through not_note_members), and how many there are.
       -- CASE: the subqueries run for group rows only. A fallback copy of a group message
       -- (origin_id) carries the members of the message it was copied from.
       c.group_key, coalesce(d.grouped_payload, false) AS grouped_payload,
       CASE WHEN c.transition = 'group' THEN
         (SELECT count(*) FROM notify.notifications m WHERE m.message_id = coalesce(c.origin_id, c.id)) END
         AS member_count,
       CASE WHEN c.transition = 'group' THEN
         (SELECT json_agg(json_build_object(
                    'notification_id', m.id, 'transition', m.transition, 'reminder_no', m.reminder_no,
                    'severity', m.severity, 'held_reason', m.held_reason, 'created_at', m.created_at,
                    'alert', json_build_object('id', ma.id, 'tenant_id', ma.tenant_id, 'base_id', ma.base_id,
                                               'kind', ma.kind, 'severity', ma.severity, 'status', ma.status,
                                               'dedupe_key', ma.dedupe_key, 'first_seen_at', ma.first_seen_at,
                                               'last_seen_at', ma.last_seen_at, 'context', ma.context))
                  ORDER BY m.created_at, m.id)::text
          FROM (SELECT * FROM notify.notifications m0 WHERE m0.message_id = coalesce(c.origin_id, c.id)
                ORDER BY m0.created_at, m0.id LIMIT :list_max) m
          LEFT JOIN notify.alerts ma ON ma.tenant_id = m.tenant_id AND ma.id = m.alert_id) END AS members
FROM claimed c
LEFT JOIN notify.alerts a ON a.tenant_id = c.tenant_id AND a.id = c.alert_id
LEFT JOIN notify.destinations d ON d.tenant_id = c.tenant_id AND d.id = c.destination_id;

-- name: record_results
-- Writes a batch's outcomes in one statement (the whole batch; while a slow send holds it up, the
-- outcomes finished so far). The common outcome, sent at the batch's time with no note, comes as
-- two comma-joined id lists (cheap to build and to send); every other outcome as parallel arrays.
-- Only rows still held by this claim are written: a claim whose lease ran out and was taken over
-- must not be overwritten (its late result never counts; the new holder's does).
-- The same statement appends the batch's attempts to the ledger (notify.delivery_attempts), one
-- row per send that was made (:attempts, one JSON text, which also feeds destination health), so
-- the ledger costs no round trip of its own. Not fenced by the
-- claim: a late attempt did happen (the receiver may have got it), so it is logged under its own
-- attempt number; only the notification's status ignores it. No unique key (ddl/notify/0021): an
-- attempt that repeats another's number and start (a re-drive restarts the count; a clock that
-- does not move) is logged too, and no insert pays for a conflict check.
-- It also keeps each destination's health (ddl/notify/0010), one row per destination of the flush:
-- a success resets it; failures in a row count up, and :pause_after of them (0: never) pause it
-- for :pause_base doubling per pause in a row up to :pause_max, pushing its queued rows past the
-- pause. Only a failure claimed after the current pause began (the probe's; :claimed_at is the
-- flush's batch claim time) pauses again: sends in flight when it paused do not stack pauses. A healthy destination's row is written at
-- most once a second (last_success_at), not once per flush.
WITH attempted AS (
  -- :attempts is a JSON array with one array per send: [tenant_id, destination_id, started_at,
  -- outcome, notification_id, attempt, duration_ms, code, excerpt, address, error, channel].
  SELECT CAST(a->>0 AS uuid) AS tenant_id, CAST(a->>1 AS uuid) AS destination_id,
         CAST(a->>2 AS timestamptz) AS started_at, a->>3 AS outcome, CAST(a->>4 AS uuid) AS notification_id,
         CAST(a->>5 AS integer) AS attempt, CAST(a->>6 AS integer) AS duration_ms, a->>7 AS code,
         a->>8 AS excerpt, a->>9 AS address, a->>10 AS error, a->>11 AS channel
  FROM jsonb_array_elements(CAST(:attempts AS jsonb)) AS a
),
logged AS (
  INSERT INTO notify.delivery_attempts (tenant_id, notification_id, destination_id, attempt, started_at, duration_ms,
                                        outcome, code, excerpt, address, error, channel)
  SELECT tenant_id, notification_id, destination_id, attempt, started_at, duration_ms, outcome, code, excerpt,
         address, error, channel
  FROM attempted
  -- Only bench/delivery_bench.py's switch (Dispatcher(log_attempts=False)) sends health's four fields alone.
  WHERE notification_id IS NOT NULL
),
flushed AS (
  SELECT tenant_id, destination_id,
         max(started_at) FILTER (WHERE outcome = 'sent') AS last_success_at,
         max(started_at) FILTER (WHERE outcome <> 'sent') AS last_failure_at,
         -- failures after the flush's last success (all of them when none succeeded)
         count(*) FILTER (WHERE outcome <> 'sent' AND after_success IS NOT FALSE) AS trailing_failures
  FROM (SELECT tenant_id, destination_id, outcome, started_at,
               started_at > max(started_at) FILTER (WHERE outcome = 'sent')
                            OVER (PARTITION BY tenant_id, destination_id) AS after_success
        FROM attempted WHERE destination_id IS NOT NULL) AS a
  GROUP BY tenant_id, destination_id
),
health AS (
  -- The pause condition is written out in each column it decides (an UPDATE's FROM cannot see the
  -- row being updated, and only that row is current when two flushes race for one destination).
  UPDATE notify.destinations d
  SET last_success_at = coalesce(h.last_success_at, d.last_success_at),
      last_failure_at = coalesce(h.last_failure_at, d.last_failure_at),
      consecutive_failures = CASE WHEN h.last_success_at IS NULL THEN d.consecutive_failures + h.trailing_failures
                                  ELSE h.trailing_failures END,
      pause_level = CASE WHEN (CAST(:pause_after AS integer) > 0
                   AND h.trailing_failures + CASE WHEN h.last_success_at IS NULL THEN d.consecutive_failures ELSE 0 END
                       >= CAST(:pause_after AS integer)
                   AND (d.pause_level = 0 OR d.paused_until <= CAST(:now AS timestamptz)
                        OR CAST(:claimed_at AS timestamptz) > d.paused_at)) THEN d.pause_level + 1
                         WHEN h.last_success_at IS NOT NULL THEN 0 ELSE d.pause_level END,
      paused_at = CASE WHEN (CAST(:pause_after AS integer) > 0
                   AND h.trailing_failures + CASE WHEN h.last_success_at IS NULL THEN d.consecutive_failures ELSE 0 END
                       >= CAST(:pause_after AS integer)
                   AND (d.pause_level = 0 OR d.paused_until <= CAST(:now AS timestamptz)
                        OR CAST(:claimed_at AS timestamptz) > d.paused_at)) THEN CAST(:now AS timestamptz)
                       WHEN h.last_success_at IS NOT NULL THEN NULL ELSE d.paused_at END,
      paused_until = CASE WHEN (CAST(:pause_after AS integer) > 0
                   AND h.trailing_failures + CASE WHEN h.last_success_at IS NULL THEN d.consecutive_failures ELSE 0 END
                       >= CAST(:pause_after AS integer)
                   AND (d.pause_level = 0 OR d.paused_until <= CAST(:now AS timestamptz)
                        OR CAST(:claimed_at AS timestamptz) > d.paused_at))
                          THEN CAST(:now AS timestamptz)
                               + least(CAST(:pause_max AS float8),
                                       CAST(:pause_base AS float8) * 2 ^ least(d.pause_level, 30))
                                 * interval '1 second'
                          WHEN h.last_success_at IS NOT NULL THEN NULL ELSE d.paused_until END
  FROM flushed h
  WHERE d.tenant_id = h.tenant_id AND d.id = h.destination_id
    AND (h.last_failure_at IS NOT NULL OR d.consecutive_failures <> 0 OR d.pause_level <> 0
         OR d.last_success_at IS NULL OR d.last_success_at < h.last_success_at - interval '1 second')
  -- paused_at is :now only on a row paused by this statement (the push below needs those).
  RETURNING d.tenant_id, d.id, d.paused_until, d.pause_level > 0 AND d.paused_at = CAST(:now AS timestamptz) AS pause
),
pushed AS (
  -- A destination paused now: its queued rows that no claim holds wait for the pause to end.
  UPDATE notify.notifications n
  SET next_attempt_at = h.paused_until
  FROM health h
  WHERE h.pause AND n.tenant_id = h.tenant_id AND n.destination_id = h.id AND n.status = 'queued'
    AND n.claim_token IS NULL AND n.next_attempt_at < h.paused_until
),
fell_back AS (
  -- Fallback (ddl/notify/0012): a row of this flush that failed for good, or was skipped because
  -- its destination is disabled, goes once to its destination's fallback, if it has one and is
  -- no copy itself (origin_id set: a fallback's fallback is not followed). Only the flush's
  -- non-sent rows are read, so a batch of successes pays nothing here.
  INSERT INTO notify.notifications
    (tenant_id, alert_id, created_at, channel, recipient, status, transition, reminder_no, severity, route_key,
     destination_id, next_attempt_at, note, origin_id)
  SELECT o.tenant_id, o.alert_id, CAST(:now AS timestamptz), f.channel, f.target, 'queued', o.transition,
         o.reminder_no, o.severity, 'dest:' || f.id::text, f.id, CAST(:now AS timestamptz),
         'Sent to this fallback destination because the ' || d.channel || ' destination ' || d.id::text
           || CASE WHEN r.status = 'failed' THEN ' failed for good: ' || coalesce(r.error, 'no reason given')
                   ELSE ' is disabled: ' || coalesce(d.disabled_reason, 'no reason given') END,
         o.id
  FROM unnest(CAST(:tenant_ids AS uuid[]), CAST(:ids AS uuid[]), CAST(:statuses AS text[]), CAST(:errors AS text[]))
    AS r(tenant_id, id, status, error)
  JOIN notify.notifications o ON o.tenant_id = r.tenant_id AND o.id = r.id AND o.claim_token = :token
  JOIN notify.destinations d ON d.tenant_id = o.tenant_id AND d.id = o.destination_id AND d.fallback_id IS NOT NULL
  JOIN notify.destinations f ON f.tenant_id = d.tenant_id AND f.id = d.fallback_id AND f.enabled
  WHERE (r.status = 'failed' OR (r.status = 'skipped' AND NOT d.enabled))
    AND o.origin_id IS NULL AND o.transition <> 'test'
  ON CONFLICT DO NOTHING
)
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
WHERE n.tenant_id = r.tenant_id AND n.id = r.id AND n.claim_token = :token
  -- The batch's ids once more, as a condition an index can take: the statement is prepared, and a
  -- generic plan made while the queue was small (a young table autovacuum had not analysed yet)
  -- scanned all of not_note_id for the claim token on every flush (seqscan is off for the
  -- dispatcher), 30-45 ms a flush at 60,000 rows (bench/api_events_bench.py). The array is built
  -- once (an InitPlan): as a per-row filter the string would be parsed again for every row.
  AND n.id = ANY (CAST((SELECT CAST(string_to_array(:sent_ids, ',') AS uuid[]) || CAST(:ids AS uuid[])) AS uuid[]));

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
-- A paused destination's rows fall due when its pause ends.
SELECT min(greatest(n.next_attempt_at, n.lease_until, d.paused_until))
FROM notify.notifications n
LEFT JOIN notify.destinations d ON d.tenant_id = n.tenant_id AND d.id = n.destination_id AND d.pause_level > 0
WHERE n.status = 'queued';

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

-- name: show_notification
-- One notification by id for `notifyctl notifications show` (ids are unique; not_note_id finds it).
SELECT id, tenant_id, alert_id, destination_id, route_key, channel, recipient, status, transition, reminder_no,
       send_attempts, last_attempt_at, next_attempt_at, sent_at, created_at, error,
       held_reason, release_at, message_id, suppressed_by
FROM notify.notifications
WHERE id = :id;

-- name: notification_attempts
-- A notification's attempts from the ledger, oldest first (index not_attempt_notification).
SELECT attempt, started_at, duration_ms, outcome, code, error, excerpt, address, channel, destination_id
FROM notify.delivery_attempts
WHERE tenant_id = :tenant_id AND notification_id = :id
ORDER BY started_at, attempt;

-- name: plan_paused_fallbacks
-- Fallback for waiting (ddl/notify/0012): a queued row that has waited longer than
-- :fallback_after on a paused destination with a fallback goes to the fallback once (the row
-- itself stays queued for its own destination). Read through the partial index of paused
-- destinations, so this costs nothing while none is paused.
INSERT INTO notify.notifications
  (tenant_id, alert_id, created_at, channel, recipient, status, transition, reminder_no, severity, route_key,
   destination_id, next_attempt_at, note, origin_id)
SELECT o.tenant_id, o.alert_id, :now, f.channel, f.target, 'queued', o.transition, o.reminder_no, o.severity,
       'dest:' || f.id::text, f.id, :now,
       'Sent to this fallback destination because the ' || d.channel || ' destination ' || d.id::text
         || ' is paused after ' || d.consecutive_failures || ' failed attempts in a row and this notification'
         || ' has waited since ' || to_char(o.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') || ' UTC',
       o.id
FROM notify.destinations d
JOIN notify.destinations f ON f.tenant_id = d.tenant_id AND f.id = d.fallback_id AND f.enabled
JOIN notify.notifications o ON o.tenant_id = d.tenant_id AND o.destination_id = d.id
WHERE d.pause_level > 0 AND d.fallback_id IS NOT NULL
  AND o.status = 'queued' AND o.created_at <= CAST(:now AS timestamptz) - CAST(:fallback_after AS float8) * interval '1 second'
  AND o.origin_id IS NULL AND o.transition <> 'test'
ON CONFLICT DO NOTHING;
