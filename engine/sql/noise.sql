-- name: suppress_silenced_held
-- Before a release: held rows now due whose alert a silence in force selects are suppressed by it
-- (a silence that began while they waited: a maintenance window, a digest's night), as a silence
-- in force suppresses what is planned. Nothing to do, and nothing read, without such a silence.
WITH active AS MATERIALIZED (
  SELECT id, matchers, starts_at FROM notify.silences
  WHERE starts_at <= CAST(:now AS timestamptz) AND coalesce(expired_at, ends_at) > CAST(:now AS timestamptz)
)
UPDATE notify.notifications n
SET status = 'suppressed',
    suppressed_by = (SELECT 'silence:' || s.id::text FROM active s
                     WHERE notify.silence_matches(s.matchers, a.tenant_id, a.kind, a.severity::text, a.base_id,
                                                  a.context #> '{event,labels}')
                     ORDER BY s.starts_at, s.id LIMIT 1)
FROM notify.alerts a
WHERE EXISTS (SELECT 1 FROM active)
  AND n.status = 'held' AND n.release_at <= CAST(:now AS timestamptz)
  AND a.tenant_id = n.tenant_id AND a.id = n.alert_id
  AND EXISTS (SELECT 1 FROM active s
              WHERE notify.silence_matches(s.matchers, a.tenant_id, a.kind, a.severity::text, a.base_id,
                                           a.context #> '{event,labels}'))
RETURNING n.id;

-- name: release_held
-- The release step (engine.noise): every group with a held member that is due goes now, whole.
-- A group is (route_key, group_key): a route or destination and the labels it groups by, or for
-- rows held by a digest, quiet hours or a rate limit, the destination's one 'digest',
-- 'quiet_hours' or 'rate_limit' group. Per due group, in this one statement:
--   * a rate-limited destination (or tenant) that has had its N messages in the window keeps the
--     whole group held, now as 'rate_limit' (one group per destination), until the oldest message
--     of the window leaves it;
--   * a group of one becomes `queued` itself (no wrapper message);
--   * a larger group becomes one new notification row (transition 'group', no alert_id, queued
--     now) and its members `grouped` with message_id = that row's id;
--   * group_state remembers when each group got its message (group_interval counts from there).
-- Callers hold lock_planner, so racing release steps (several notifyd copies, the plan tick and
-- the job) run one after the other; the second finds the members no longer held.
WITH due AS (
  SELECT DISTINCT route_key, group_key
  FROM notify.notifications
  WHERE status = 'held' AND release_at <= CAST(:now AS timestamptz)
),
members AS (
  SELECT n.tenant_id, n.id, n.route_key, n.group_key, n.destination_id, n.channel, n.recipient, n.severity
  FROM notify.notifications n
  JOIN due ON due.route_key = n.route_key AND due.group_key = n.group_key
  WHERE n.status = 'held'
  FOR UPDATE OF n
),
groups AS (
  SELECT m.route_key, m.group_key, count(*) AS size,
         (array_agg(m.tenant_id))[1] AS tenant_id, count(DISTINCT m.tenant_id) AS tenants,
         (array_agg(m.destination_id))[1] AS destination_id, (array_agg(m.channel))[1] AS channel,
         (array_agg(m.recipient))[1] AS recipient, max(m.severity) AS severity
  FROM members m
  GROUP BY m.route_key, m.group_key
),
-- Rate limits apply to tenant destinations only (ops routes have group_interval). Groups due
-- together at one destination (or tenant) are ranked: each sends one message.
limits AS (
  SELECT g.*,
         CASE WHEN g.destination_id IS NULL THEN 0
              ELSE coalesce(d.rate_limit_messages, CAST(:dest_limit AS integer)) END AS dest_limit,
         coalesce(d.rate_limit_window, CAST(:dest_window AS float8)) AS dest_window,
         CASE WHEN g.destination_id IS NULL THEN 0 ELSE CAST(:tenant_limit AS integer) END AS tenant_limit,
         row_number() OVER (PARTITION BY g.route_key ORDER BY g.group_key) AS dest_rank,
         row_number() OVER (PARTITION BY g.tenant_id, g.destination_id IS NULL ORDER BY g.route_key, g.group_key) AS tenant_rank
  FROM groups g
  LEFT JOIN notify.destinations d ON d.tenant_id = g.tenant_id AND d.id = g.destination_id
),
-- Messages are rows that were or will be sent: queued, sent, failed (not held, grouped,
-- suppressed or skipped), counted inside the window by when they were queued: a row queued at
-- planning by its creation, a held row released alone by its release (release_at, set then).
usage AS (
  SELECT l.*, du.used AS dest_used, du.oldest AS dest_oldest, tu.used AS tenant_used, tu.oldest AS tenant_oldest
  FROM limits l
  LEFT JOIN LATERAL (
    SELECT count(*) AS used, min(coalesce(m.release_at, m.created_at)) AS oldest FROM notify.notifications m
    WHERE l.dest_limit > 0 AND m.tenant_id = l.tenant_id AND m.route_key = l.route_key
      AND m.status IN ('queued', 'sent', 'failed')
      AND coalesce(m.release_at, m.created_at) > CAST(:now AS timestamptz) - make_interval(secs => l.dest_window)
  ) du ON true
  LEFT JOIN LATERAL (
    SELECT count(*) AS used, min(coalesce(m.release_at, m.created_at)) AS oldest FROM notify.notifications m
    WHERE l.tenant_limit > 0 AND m.tenant_id = l.tenant_id AND m.destination_id IS NOT NULL
      AND m.status IN ('queued', 'sent', 'failed')
      AND coalesce(m.release_at, m.created_at) > CAST(:now AS timestamptz) - make_interval(secs => CAST(:tenant_window AS float8))
  ) tu ON true
),
decided AS (
  SELECT u.route_key, u.group_key, u.size, u.channel, u.recipient, u.severity, u.destination_id,
         CASE WHEN u.tenants = 1 THEN u.tenant_id ELSE CAST('00000000-0000-0000-0000-000000000000' AS uuid) END
           AS message_tenant_id,
         (u.dest_limit = 0 OR u.dest_used + u.dest_rank <= u.dest_limit)
           AND (u.tenant_limit = 0 OR u.tenant_used + u.tenant_rank <= u.tenant_limit) AS allowed,
         -- When the window lets one more message through (at the latest, a full window from now).
         greatest(CASE WHEN u.dest_limit > 0 AND u.dest_used + u.dest_rank > u.dest_limit
                       THEN coalesce(u.dest_oldest, CAST(:now AS timestamptz)) + make_interval(secs => u.dest_window) END,
                  CASE WHEN u.tenant_limit > 0 AND u.tenant_used + u.tenant_rank > u.tenant_limit
                       THEN coalesce(u.tenant_oldest, CAST(:now AS timestamptz))
                            + make_interval(secs => CAST(:tenant_window AS float8)) END) AS window_opens
  FROM usage u
),
held_back AS (
  UPDATE notify.notifications n
  SET held_reason = 'rate_limit', group_key = 'rate_limit', release_at = d.window_opens
  FROM members m
  JOIN decided d ON d.route_key = m.route_key AND d.group_key = m.group_key
  WHERE NOT d.allowed AND n.tenant_id = m.tenant_id AND n.id = m.id
  RETURNING 1
),
singles AS (
  UPDATE notify.notifications n
  SET status = 'queued', next_attempt_at = CAST(:now AS timestamptz), release_at = CAST(:now AS timestamptz)
  FROM members m
  JOIN decided d ON d.route_key = m.route_key AND d.group_key = m.group_key
  WHERE d.allowed AND d.size = 1 AND n.tenant_id = m.tenant_id AND n.id = m.id
  RETURNING 1
),
-- gen_random_uuid() is volatile, so this CTE is computed once: members and message share the id.
messages AS (
  SELECT gen_random_uuid() AS id, d.* FROM decided d WHERE d.allowed AND d.size > 1
),
inserted AS (
  INSERT INTO notify.notifications
    (id, tenant_id, alert_id, created_at, channel, recipient, status, transition, reminder_no, severity, route_key,
     destination_id, next_attempt_at, group_key)
  SELECT m.id, m.message_tenant_id, NULL, :now, m.channel, m.recipient, 'queued', 'group', 0, m.severity, m.route_key,
         m.destination_id, :now, m.group_key
  FROM messages m
  RETURNING 1
),
grouped AS (
  UPDATE notify.notifications n
  SET status = 'grouped', message_id = g.id
  FROM members m
  JOIN messages g ON g.route_key = m.route_key AND g.group_key = m.group_key
  WHERE n.tenant_id = m.tenant_id AND n.id = m.id
  RETURNING 1
),
remembered AS (
  INSERT INTO notify.group_state AS s (route_key, group_key, last_message_at)
  SELECT route_key, group_key, :now FROM decided WHERE allowed
  ON CONFLICT (route_key, group_key) DO UPDATE SET last_message_at = excluded.last_message_at
  RETURNING 1
)
SELECT (SELECT count(*) FROM singles) AS queued,
       (SELECT count(*) FROM inserted) AS messages,
       (SELECT count(*) FROM grouped) AS grouped,
       (SELECT count(*) FROM held_back) AS rate_limited,
       (SELECT count(*) FROM remembered) AS groups;

-- name: next_release
-- When the earliest held notification is due (for `notifyctl status` and tests).
SELECT min(release_at) FROM notify.notifications WHERE status = 'held';

-- name: group_members
-- A group message's members with their alerts, in the order they were planned (the renderer's
-- list; the dispatcher's claim carries the first grouping.list_max of them itself).
SELECT n.id::text AS id, n.tenant_id::text AS tenant_id, n.alert_id::text AS alert_id, n.transition, n.severity::text AS severity,
       n.held_reason, a.kind, a.base_id::text AS base_id, a.dedupe_key
FROM notify.notifications n
LEFT JOIN notify.alerts a ON a.tenant_id = n.tenant_id AND a.id = n.alert_id
WHERE n.message_id = :message_id
ORDER BY n.created_at, n.id;

-- name: held_by_reason
-- notify_notifications_held: rows waiting, by held_reason (partial index on held rows).
SELECT held_reason AS reason, count(*) AS count
FROM notify.notifications
WHERE status = 'held'
GROUP BY held_reason
ORDER BY held_reason;

-- name: set_destination_noise
-- `destinations add/update` noise flags: NULL leaves a setting as it is (quiet hours and the rate
-- limit say with :set_quiet / :set_rate that they are being set, since NULL is also a value there).
UPDATE notify.destinations
SET digest = coalesce(CAST(:digest AS text), digest),
    digest_at = coalesce(CAST(:digest_at AS time), digest_at),
    quiet_start = CASE WHEN :set_quiet THEN CAST(:quiet_start AS time) ELSE quiet_start END,
    quiet_end = CASE WHEN :set_quiet THEN CAST(:quiet_end AS time) ELSE quiet_end END,
    rate_limit_messages = CASE WHEN :set_rate THEN CAST(:rate_limit_messages AS integer) ELSE rate_limit_messages END,
    rate_limit_window = CASE WHEN :set_rate THEN CAST(:rate_limit_window AS float8) ELSE rate_limit_window END,
    grouped_payload = coalesce(CAST(:grouped_payload AS boolean), grouped_payload)
WHERE id = :id
RETURNING id;
