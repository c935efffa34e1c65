-- Noise control settings (issue 15: grouping, digests, rate limits, quiet hours; docs/NOISE.md).
--
-- Per destination, all opt-in (NULL / defaults change nothing):
--   digest          immediate (default) | hourly | daily: non-critical transitions wait, held with
--                   held_reason 'digest', for the next digest time in the destination's time zone;
--   digest_at       daily: the local time of the digest; hourly: its minute past each local hour;
--   quiet_start/end a local time window (may span midnight): non-critical transitions that arrive
--                   in it wait for its end (held_reason 'quiet_hours');
--   rate_limit_messages/_window  override rate_limits.destination (0 messages: no limit here);
--   grouped_payload webhooks: grouped transitions as one payload (version 2, docs/WEBHOOKS.md)
--                   instead of one payload per alert.
ALTER TABLE notify.destinations
  ADD COLUMN digest              text NOT NULL DEFAULT 'immediate' CHECK (digest IN ('immediate', 'hourly', 'daily')),
  ADD COLUMN digest_at           time NOT NULL DEFAULT '09:00',
  ADD COLUMN quiet_start         time,
  ADD COLUMN quiet_end           time,
  ADD COLUMN rate_limit_messages integer CHECK (rate_limit_messages >= 0),
  ADD COLUMN rate_limit_window   float8 CHECK (rate_limit_window > 0),   -- seconds
  ADD COLUMN grouped_payload     boolean NOT NULL DEFAULT false,
  ADD CONSTRAINT not_dest_quiet_both CHECK ((quiet_start IS NULL) = (quiet_end IS NULL) AND (quiet_start IS NULL OR quiet_start <> quiet_end));

-- When each group last got a message: a later transition of the group waits until
-- last_message_at + group_interval (Alertmanager's group_interval). One row per (route, group).
CREATE TABLE notify.group_state (
  route_key        text NOT NULL,
  group_key        text NOT NULL,
  last_message_at  timestamptz NOT NULL,
  PRIMARY KEY (route_key, group_key)
);

-- The next digest time strictly after :now, in zone: hourly at at_time's minute past each local
-- hour, daily at at_time local. NULL for 'immediate'.
CREATE FUNCTION notify.next_digest_at(now timestamptz, every text, at_time time, zone text) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
  SELECT CASE every
    WHEN 'hourly' THEN
      (SELECT (CASE WHEN c > l THEN c ELSE c + interval '1 hour' END) AT TIME ZONE zone
       FROM (SELECT now AT TIME ZONE zone AS l) x,
            LATERAL (SELECT date_trunc('hour', x.l) + make_interval(mins => extract(minute FROM at_time)::int) AS c) y)
    WHEN 'daily' THEN
      (SELECT (CASE WHEN c > l THEN c ELSE c + interval '1 day' END) AT TIME ZONE zone
       FROM (SELECT now AT TIME ZONE zone AS l) x,
            LATERAL (SELECT date_trunc('day', x.l) + at_time AS c) y)
  END
$$;

-- While :now is inside the local window [quiet_start, quiet_end) (spanning midnight when
-- quiet_start > quiet_end): the window's end; NULL outside it or without a window.
CREATE FUNCTION notify.quiet_hours_end(now timestamptz, quiet_start time, quiet_end time, zone text) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
  SELECT CASE
    WHEN quiet_start IS NULL OR quiet_end IS NULL THEN NULL
    WHEN quiet_start < quiet_end THEN
      CASE WHEN l::time >= quiet_start AND l::time < quiet_end THEN (date_trunc('day', l) + quiet_end) AT TIME ZONE zone END
    WHEN l::time >= quiet_start THEN (date_trunc('day', l) + interval '1 day' + quiet_end) AT TIME ZONE zone
    WHEN l::time < quiet_end THEN (date_trunc('day', l) + quiet_end) AT TIME ZONE zone
  END
  FROM (SELECT now AT TIME ZONE zone AS l) x
$$;
