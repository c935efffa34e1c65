-- The attempt ledger's unique key becomes a plain index (issue 13, item 1: recording every attempt
-- may cost at most 10 % of the delivery rate). With the unique key every ledger row was a
-- speculative insert (ON CONFLICT DO NOTHING), about 1.5 us of the server's 21-23 us per delivery
-- in record_results (BENCHMARKS.md, 2026-11-30, second session), and an attempt whose key repeated
-- (a re-drive restarts the attempt number; under a clock that does not move, started_at repeats)
-- was dropped although it did happen. Nothing needs the uniqueness: the ledger is append-only and
-- pruned by partition, and `notifyctl notifications show` finds a notification's few attempts by
-- (tenant_id, notification_id), then sorts them.
ALTER TABLE notify.delivery_attempts DROP CONSTRAINT delivery_attempts_pkey;
CREATE INDEX not_attempt_notification ON notify.delivery_attempts (tenant_id, notification_id);
