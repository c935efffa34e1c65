-- Noise control (issue 15): what happened to each transition, on the row that records it.
--
-- A notification row stays one (alert, transition, reminder, route): a transition for one
-- destination or ops route. Noise control gives it three more ends besides queued -> sent/failed/
-- skipped, so nothing a planner made is ever silently dropped:
--   suppressed  never sent, and why: suppressed_by = 'silence:<silence id>' or
--               'inhibition:<rule name>:<inhibiting alert id>';
--   held        waiting, and why: held_reason (group_wait, digest, quiet_hours, rate_limit) until
--               release_at; then it is queued itself or grouped;
--   grouped     carried by another row's message: message_id is the id of the notification row
--               (same tenant_id, or any tenant for an ops route's group) that was sent for it.
-- A grouped message is itself a notification row (transition 'group'), planned once, claimed,
-- retried and ledgered like any other; it notifies about several alerts, so it names none.
ALTER TABLE notify.notifications DROP CONSTRAINT notifications_status_check;
ALTER TABLE notify.notifications ADD CONSTRAINT notifications_status_check
  CHECK (status IN ('queued', 'sent', 'failed', 'skipped', 'held', 'grouped', 'suppressed'));

ALTER TABLE notify.notifications
  ADD COLUMN held_reason   text CHECK (held_reason IN ('group_wait', 'digest', 'quiet_hours', 'rate_limit')),
  ADD COLUMN release_at    timestamptz,   -- while held: when it is released
  ADD COLUMN group_key     text,          -- the group it is delivered with (route/destination + configured labels)
  ADD COLUMN message_id    uuid,          -- while grouped: the notification row that carried it
  ADD COLUMN suppressed_by text;          -- while suppressed: silence:<id> or inhibition:<rule>:<alert id>

ALTER TABLE notify.notifications DROP CONSTRAINT not_note_alert_unless_test;
ALTER TABLE notify.notifications
  ADD CONSTRAINT not_note_alert_unless_test CHECK (alert_id IS NOT NULL OR transition IN ('test', 'group'));

-- The release tick reads only held rows that are due.
CREATE INDEX not_note_held ON notify.notifications (release_at) WHERE status = 'held';
-- A group message's members, for `notifications show` and the message's own rendering.
CREATE INDEX not_note_members ON notify.notifications (message_id) WHERE message_id IS NOT NULL;
