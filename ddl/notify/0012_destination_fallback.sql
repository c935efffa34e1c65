-- Fallback destinations (issue 13, item 5): a destination may name another destination of the same
-- tenant. A notification that fails for good, or whose destination is disabled, or that has waited
-- on a paused destination longer than delivery.fallback_after, goes to the fallback once, as a new
-- notification (origin_id: the original; note: why). A row with an origin (a fallback copy, a
-- notice) never falls back again, so a fallback's own fallback is not followed and no loop exists.
ALTER TABLE notify.destinations
  ADD COLUMN fallback_id uuid;   -- a destination of the same tenant (no FK: removing it just ends the fallback)

ALTER TABLE notify.destinations
  ADD CONSTRAINT not_dest_fallback_not_itself CHECK (fallback_id IS DISTINCT FROM id);
