-- Silences (issue 15, item 4; Alertmanager's /api/v2/silences, issue 16). A silence mutes the
-- notifications of the alerts its matchers select from starts_at until ends_at (or until it is
-- expired early): the planner records them `suppressed` with suppressed_by = 'silence:<id>'
-- (ddl/notify/0015). Alerts still open and not acked when it ends are notified once
-- (notify.silence_notices). docs/NOISE.md has the reasons.
CREATE TABLE notify.silences (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  -- Alertmanager's matchers as given, so its API round-trips: [{name, value, isRegex, isEqual}].
  -- Names: tenant, kind, severity, base; any other name is read from the alert's
  -- context.event.labels (alerts posted to /api/v2/alerts), else '' (Alertmanager: a missing label is '').
  matchers     jsonb NOT NULL CHECK (jsonb_typeof(matchers) = 'array' AND jsonb_array_length(matchers) > 0),
  starts_at    timestamptz NOT NULL,
  ends_at      timestamptz NOT NULL,
  created_at   timestamptz NOT NULL,
  created_by   text NOT NULL,
  comment      text NOT NULL,
  expired_at   timestamptz,            -- ended early (`silence expire`, DELETE); NULL: runs to ends_at
  expired_by   text,
  ended_noticed_at timestamptz,        -- the plan tick planned its end notices (a shortcut; silence_notices is the guarantee)
  CHECK (ends_at > starts_at)
);
-- The planner reads the silences in force at :now; the end tick those that ended.
CREATE INDEX not_silence_end ON notify.silences ((coalesce(expired_at, ends_at)));

-- Does an alert's label set satisfy every matcher? Regular expressions are anchored, as in
-- Alertmanager (`^(?:re)$`, POSIX ARE here); isEqual false negates the matcher.
CREATE FUNCTION notify.silence_matches(matchers jsonb, tenant_id uuid, kind text, severity text, base_id uuid,
                                       labels jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT NOT EXISTS (
    SELECT 1
    FROM jsonb_to_recordset(matchers) AS m(name text, value text, "isRegex" boolean, "isEqual" boolean),
         LATERAL (SELECT CASE m.name WHEN 'tenant' THEN tenant_id::text WHEN 'kind' THEN kind
                                     WHEN 'severity' THEN severity WHEN 'base' THEN coalesce(base_id::text, '')
                                     ELSE coalesce(labels ->> m.name, '') END AS label) l
    WHERE (CASE WHEN coalesce(m."isRegex", false) THEN l.label ~ ('^(?:' || m.value || ')$')
                ELSE l.label = m.value END) = NOT coalesce(m."isEqual", true))
$$;

-- One notice per (alert, silence): a silence that ended notifies each alert it suppressed that is
-- still open once, however many planners race or restart (as alert_escalations does for steps).
-- The notice's notification rows are ordinary rows of transition 'silence_ended' whose
-- reminder_no is -(1000000 + notice_no): apart from the transition's own rows (0), its
-- reminders (n) and its escalation steps (-k) in the plan-once key.
CREATE TABLE notify.silence_notices (
  tenant_id    uuid NOT NULL,
  alert_id     uuid NOT NULL,
  silence_id   uuid NOT NULL,
  notice_no    integer NOT NULL,
  noticed_at   timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, alert_id, silence_id),
  UNIQUE (tenant_id, alert_id, notice_no),
  FOREIGN KEY (tenant_id, alert_id) REFERENCES notify.alerts (tenant_id, id) ON DELETE CASCADE
);

-- Which ended silences still have suppressed rows to look at: the end tick reads rows by reason.
CREATE INDEX not_note_suppressed_by ON notify.notifications (suppressed_by) WHERE status = 'suppressed';
