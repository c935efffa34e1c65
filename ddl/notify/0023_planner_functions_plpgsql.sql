-- The three functions the planning statements call (issue 16, item 3) become PL/pgSQL, with the
-- same bodies. As SQL functions, the planner tried to inline each at every call site of every
-- planning (fetching, parsing and analysing its body, then giving up: a FROM clause or a
-- subquery is not inlinable), about 0.5 ms of CPU per planning of a transaction's transitions
-- (tests/test_planner_fast_paths.py; BENCHMARKS.md has the runs). PostgreSQL never tries to
-- inline PL/pgSQL; its statements' plans are cached per session.
CREATE OR REPLACE FUNCTION notify.next_digest_at(now timestamptz, every text, at_time time, zone text)
RETURNS timestamptz
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
DECLARE
  l timestamp := now AT TIME ZONE zone;
  c timestamp;
BEGIN
  IF every = 'hourly' THEN
    c := date_trunc('hour', l) + make_interval(mins => extract(minute FROM at_time)::int);
    RETURN (CASE WHEN c > l THEN c ELSE c + interval '1 hour' END) AT TIME ZONE zone;
  ELSIF every = 'daily' THEN
    c := date_trunc('day', l) + at_time;
    RETURN (CASE WHEN c > l THEN c ELSE c + interval '1 day' END) AT TIME ZONE zone;
  END IF;
  RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION notify.quiet_hours_end(now timestamptz, quiet_start time, quiet_end time, zone text)
RETURNS timestamptz
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
DECLARE
  l timestamp;
BEGIN
  IF quiet_start IS NULL OR quiet_end IS NULL THEN
    RETURN NULL;
  END IF;
  l := now AT TIME ZONE zone;
  RETURN CASE
    WHEN quiet_start < quiet_end THEN
      CASE WHEN l::time >= quiet_start AND l::time < quiet_end THEN (date_trunc('day', l) + quiet_end) AT TIME ZONE zone END
    WHEN l::time >= quiet_start THEN (date_trunc('day', l) + interval '1 day' + quiet_end) AT TIME ZONE zone
    WHEN l::time < quiet_end THEN (date_trunc('day', l) + quiet_end) AT TIME ZONE zone
  END;
END
$$;

CREATE OR REPLACE FUNCTION notify.silence_matches(matchers jsonb, tenant_id uuid, kind text, severity text, base_id uuid,
                                                  labels jsonb) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
  RETURN NOT EXISTS (
    SELECT 1
    FROM jsonb_to_recordset(matchers) AS m(name text, value text, "isRegex" boolean, "isEqual" boolean),
         LATERAL (SELECT CASE m.name WHEN 'tenant' THEN tenant_id::text WHEN 'kind' THEN kind
                                     WHEN 'severity' THEN severity WHEN 'base' THEN coalesce(base_id::text, '')
                                     ELSE coalesce(labels ->> m.name, '') END AS label) l
    WHERE (CASE WHEN coalesce(m."isRegex", false) THEN l.label ~ ('^(?:' || m.value || ')$')
                ELSE l.label = m.value END) = NOT coalesce(m."isEqual", true));
END
$$;
