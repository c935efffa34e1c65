-- Delivery throughput (issue 4): a claim that rewrites no index.
--
-- Until now a claim moved next_attempt_at to the end of its lease. next_attempt_at is indexed
-- (not_note_due), so every claim was a non-HOT update that wrote a new entry into each of the
-- table's six indexes, and the result wrote them all again. The lease now lives in its own,
-- unindexed column: a claim changes only send_attempts, last_attempt_at, claim_token and
-- lease_until, none of them indexed, so PostgreSQL can update the row in place on its page (a HOT
-- update: no index entry written) when the page has room. The fillfactor leaves that room in the
-- pages that new notifications fill (pages written before this migration keep theirs).
--
-- A row is claimable when status = 'queued' AND next_attempt_at <= now AND (lease_until IS NULL
-- OR lease_until <= now). While claimed, next_attempt_at keeps the time the row fell due.
ALTER TABLE notify.notifications ADD COLUMN lease_until timestamptz;  -- end of the current claim's lease; NULL when not claimed
ALTER TABLE notify.notifications SET (fillfactor = 45);

-- Claims taken before this migration keep their lease in next_attempt_at (claim_token set,
-- lease_until NULL): they stay held, because next_attempt_at is still in the future until the
-- lease runs out, exactly as before. Nothing to convert.
