-- Notices the dispatcher makes (issue 13, item 4): when an endpoint answers 410 Gone and its
-- destination is disabled, the tenant's other destinations and the ops routes are told once, by
-- a notification of transition 'destination_disabled' about the alert whose notification met the
-- 410. `note` says why such a row exists (sent in the message as the context's `notice`);
-- `origin_id` names the notification it came from, and one notice per (origin, route) is kept by
-- a unique index (a 410 disables a destination once: later rows of it are skipped unsent).
ALTER TABLE notify.notifications
  ADD COLUMN note      text,   -- why this notification exists, when the planner did not plan it
  ADD COLUMN origin_id uuid;   -- the notification it was made from (no FK: history outlives it)

CREATE UNIQUE INDEX not_note_notice_once ON notify.notifications (tenant_id, origin_id, route_key)
  WHERE origin_id IS NOT NULL;
