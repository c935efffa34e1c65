-- Destination health (issue 13, item 4): a destination whose last N attempts failed
-- (delivery.pause_after_failures) is paused for a growing interval, then probed with one
-- notification; while paused its notifications wait instead of spending attempts. Updated from
-- the dispatcher's result statement (set-based, one row per destination of a flush), read by the
-- claim, `destinations list` and the notify_destinations_paused gauge.
ALTER TABLE notify.destinations
  ADD COLUMN last_success_at      timestamptz,               -- the last attempt that was sent (to about a second)
  ADD COLUMN last_failure_at      timestamptz,
  ADD COLUMN consecutive_failures integer NOT NULL DEFAULT 0, -- failed attempts since the last success
  ADD COLUMN pause_level          integer NOT NULL DEFAULT 0, -- pauses in a row; 0: healthy
  ADD COLUMN paused_at            timestamptz,               -- when the current pause began (a failure claimed after it re-pauses)
  ADD COLUMN paused_until         timestamptz;               -- no claims before this; past with pause_level > 0: one probe

-- The claim reads the (few) destinations that are paused or waiting for their probe.
CREATE INDEX not_dest_paused ON notify.destinations (paused_until) WHERE pause_level > 0;
