-- Acks that lapse and escalation policies (issue 13, items 6 and 7). docs/ARCHITECTURE.md,
-- section "Plan", has the reasons.
--
-- An ack may carry an end (`notifyctl ack ID --for 4h`, or escalation.ack_timeout): the plan tick
-- re-opens an alert whose ack lapsed while its condition still holds, as the transition
-- `ack_expired` (notified like a re-open; reminders and escalation resume from then).
ALTER TABLE notify.alerts ADD COLUMN ack_expires_at timestamptz;   -- NULL: the ack lasts until resolved
ALTER TABLE notify.alerts DROP CONSTRAINT alerts_transition_check;
ALTER TABLE notify.alerts ADD CONSTRAINT alerts_transition_check
  CHECK (transition IN ('opened', 'reopened', 'escalated', 'resolved', 'acked', 'reminder', 'ack_expired'));
-- The tick's lookup of lapsed acks reads only acked alerts that have an end.
CREATE INDEX not_alert_ack_expiry ON notify.alerts (ack_expires_at) WHERE status = 'ack' AND ack_expires_at IS NOT NULL;

-- Escalation steps taken: one row per (alert, episode, step), so a step is taken once however many
-- planners race or restart. An episode is one stretch of the alert being unresolved (its
-- context.reopen_count): a resolved alert that re-opens escalates again. The step's notifications
-- are ordinary rows (transition 'escalation', reminder_no = -step) inserted by the same statement.
CREATE TABLE notify.alert_escalations (
  tenant_id        uuid NOT NULL,
  alert_id         uuid NOT NULL,
  episode          integer NOT NULL,
  step_no          integer NOT NULL,            -- 1-based, the order of the policy's steps
  taken_at         timestamptz NOT NULL,
  target           text NOT NULL,               -- 'route:<name>' or 'tag:<tag>', as the policy said
  PRIMARY KEY (tenant_id, alert_id, episode, step_no),
  FOREIGN KEY (tenant_id, alert_id) REFERENCES notify.alerts (tenant_id, id) ON DELETE CASCADE
);

-- The steps' cursor beside the reminders' (one index probe per alert per tick serves both): the
-- episode and the last step taken in it. Only a shortcut: alert_escalations is the guarantee.
ALTER TABLE notify.alert_delivery_plans
  ADD COLUMN step_episode integer,
  ADD COLUMN steps_taken integer NOT NULL DEFAULT 0;

-- Destination tags: an escalation step may notify the tenant's destinations with a given tag.
ALTER TABLE notify.destinations ADD COLUMN tags text[] NOT NULL DEFAULT '{}';
