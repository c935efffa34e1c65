-- The attempt ledger (issue 13, item 1): one row per delivery attempt that reached a channel's
-- send, whatever came of it, so `notifyctl notifications show ID` can say what each attempt met
-- (the answer's code, a short redacted excerpt of the answer, the address connected to) the way
-- Svix's and Stripe's attempt logs do. A log table like the others: monthly partitions on
-- started_at (UTC), a DEFAULT partition so no attempt is ever refused, pruned by `partitions
-- prune` with the other log tables. The key leads with tenant_id (Citus) and carries the
-- partition column.
--
-- No foreign key to notifications: a log outlives what it logs only until its partition is
-- pruned, and a foreign key into a partitioned table per attempt would cost the hot path a lookup.
-- Not written: claims settled without a send (skipped, out of attempts after a lost lease, held
-- for a missing key); written: test sends (`destinations test`) and late results of a claim that
-- was taken over (they did happen: see docs/ARCHITECTURE.md "Attempt ledger").
CREATE TABLE notify.delivery_attempts (
  tenant_id        uuid NOT NULL,
  notification_id  uuid NOT NULL,
  attempt          integer NOT NULL,            -- the notification's send_attempts when it was claimed
  started_at       timestamptz NOT NULL,        -- the engine clock at the claim plus the wait before the send began
  duration_ms      integer NOT NULL,
  outcome          text NOT NULL CHECK (outcome IN ('sent', 'transient', 'permanent')),
  code             text,                        -- HTTP status, SMTP reply code, Slack error name; NULL when nothing answered
  excerpt          text,                        -- at most 256 bytes of the answer, redacted; failures only
  address          text,                        -- the address connected to (ip:port, or the SMTP host:port)
  error            text,                        -- what the channel said, as the notification's error column
  destination_id   uuid,                        -- NULL for an ops route
  channel          text NOT NULL,
  PRIMARY KEY (tenant_id, notification_id, started_at, attempt)
) PARTITION BY RANGE (started_at);

CREATE TABLE notify.delivery_attempts_default PARTITION OF notify.delivery_attempts DEFAULT;
