-- Delivery (issue 4): tenant destinations, the planner's cursor per alert, and the columns the
-- dispatcher needs on notify.notifications. Every key carries tenant_id (Citus-ready).

CREATE TABLE notify.destinations (
  tenant_id        uuid NOT NULL,
  id               uuid NOT NULL DEFAULT gen_random_uuid(),
  created_at       timestamptz NOT NULL,
  channel          text NOT NULL CHECK (channel IN ('email', 'slack', 'webhook')),
  target           text NOT NULL,               -- email address(es), Slack channel id or incoming-webhook URL, webhook URL
  -- Webhook signing secret, Fernet-encrypted with channels.webhook.secret_key: the database never
  -- holds it in clear, and nothing reads it back except the webhook channel at send time.
  secret_ciphertext text,
  kinds            text[],                      -- alert kinds wanted; NULL means every kind
  min_severity     public.sev_level NOT NULL DEFAULT 'info',
  enabled          boolean NOT NULL DEFAULT true,
  disabled_reason  text,                        -- why enabled went false (e.g. the endpoint answered 410 Gone)
  PRIMARY KEY (tenant_id, id)
);

CREATE INDEX not_dest_id ON notify.destinations (id);   -- `destinations remove ID` knows no tenant

-- The planner's cursor: the transition (and reminder number) of each alert already turned into
-- notifications, so a tick reads only alerts whose transition_seq moved or whose reminder is due.
CREATE TABLE notify.alert_delivery_plans (
  tenant_id        uuid NOT NULL,
  alert_id         uuid NOT NULL,
  planned_seq      integer NOT NULL,
  planned_reminder integer NOT NULL DEFAULT 0,
  PRIMARY KEY (tenant_id, alert_id),
  FOREIGN KEY (tenant_id, alert_id) REFERENCES notify.alerts (tenant_id, id) ON DELETE CASCADE
);

ALTER TABLE notify.notifications
  ADD COLUMN transition       text,                 -- the alert transition this notifies (opened, ..., reminder)
  ADD COLUMN transition_seq   integer,              -- alerts.transition_seq it was planned from
  ADD COLUMN reminder_no      integer NOT NULL DEFAULT 0,  -- 0 for the transition itself, n for its n-th reminder
  ADD COLUMN severity         public.sev_level,     -- the alert's severity when planned
  ADD COLUMN route_key        text,                 -- 'dest:<destination id>' or 'route:<config route name>'
  ADD COLUMN destination_id   uuid,                 -- tenant destination (NULL for ops routes); no FK: history outlives it
  ADD COLUMN next_attempt_at  timestamptz,          -- due time; while claimed, the end of the lease
  ADD COLUMN claim_token      uuid,                 -- the dispatcher pass holding the claim (NULL when not claimed)
  ADD COLUMN idempotency_key  text NOT NULL DEFAULT ('msg_' || replace(gen_random_uuid()::text, '-', '')),
  ADD COLUMN sent_at          timestamptz;

-- A transition (or one reminder of it) reaches a destination once, however many planners race.
CREATE UNIQUE INDEX not_note_plan_once
  ON notify.notifications (tenant_id, alert_id, transition_seq, reminder_no, route_key);

-- The claim reads only queued rows, oldest due first. (No index for destination_id: every claim
-- and result rewrites each index of the row, and removing a destination is rare; it finds its
-- rows through the primary key's tenant_id prefix.)
CREATE INDEX not_note_due ON notify.notifications (next_attempt_at) WHERE status = 'queued';
