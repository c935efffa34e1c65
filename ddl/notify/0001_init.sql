-- Alarms & Notifications (seed section 4): quota snapshots, alerts, notification deliveries.
-- Departures from the seed (docs/SCHEMA.md has the full list and the reasons):
--   * quota_snapshots: the seed's `window` column keeps its name but is always written quoted
--     ("window"): WINDOW is a reserved word, so the seed's unquoted DDL is a syntax error (defect 4);
--     partitioned by captured_at (UTC months) with captured_at in the key (defects 1-3).
--   * alerts is NOT partitioned: it is state, not a log. The upsert the engine rests on needs a
--     unique index on exactly (tenant_id, dedupe_key), which a partitioned table cannot have
--     without the partition column (defect 5). Retention of alerts is a cleanup job instead.
--   * alerts and notifications key on (tenant_id, id), and notifications reference alerts by
--     (tenant_id, alert_id) (defect 6): every key carries the tenant so the tables can be
--     distributed by tenant_id (Citus) without a schema change.
--   * alerts gain lifecycle columns (transition, transition_seq, ...) that the planner reads.
CREATE SCHEMA IF NOT EXISTS notify;

CREATE TABLE notify.quota_snapshots (
  id               uuid NOT NULL DEFAULT gen_random_uuid(),
  captured_at      timestamptz NOT NULL DEFAULT now(),
  captured_on      date GENERATED ALWAYS AS ((captured_at AT TIME ZONE 'UTC')::date) STORED,
  tenant_id        uuid NOT NULL,
  base_id          uuid,
  metric           text NOT NULL,               -- runs_used, storage_gb, records_count, api_calls, wallet_balance_cents
  value_numeric    numeric(20,6),
  value_int        bigint,
  "window"         text NOT NULL DEFAULT 'monthly', -- minute|hour|day|monthly
  PRIMARY KEY (tenant_id, id, captured_at)
) PARTITION BY RANGE (captured_at);

CREATE TABLE notify.quota_snapshots_default PARTITION OF notify.quota_snapshots DEFAULT;

CREATE TABLE notify.alerts (
  id               uuid NOT NULL DEFAULT gen_random_uuid(),
  created_at       timestamptz NOT NULL DEFAULT now(),
  created_on       date GENERATED ALWAYS AS ((created_at AT TIME ZONE 'UTC')::date) STORED,
  tenant_id        uuid NOT NULL,
  base_id          uuid,
  kind             text NOT NULL,               -- RUNS_THRESHOLD, STORAGE_THRESHOLD, RECORDS_THRESHOLD, API_CALLS_THRESHOLD, RATE_LIMIT, PAYMENT_FAILED, WALLET_LOW
  severity         public.sev_level NOT NULL DEFAULT 'info',
  dedupe_key       text NOT NULL,               -- e.g. runs:80pct:2025-10:base=<id>
  status           text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'ack', 'resolved')),
  first_seen_at    timestamptz NOT NULL DEFAULT now(),
  last_seen_at     timestamptz NOT NULL DEFAULT now(),
  context          jsonb NOT NULL DEFAULT '{}'::jsonb,
  -- Lifecycle (additions). Every state change that may notify bumps transition_seq and names
  -- itself in `transition`; the planner turns (alert, transition_seq) into notifications once.
  transition       text NOT NULL DEFAULT 'opened'
                   CHECK (transition IN ('opened', 'reopened', 'escalated', 'resolved', 'acked', 'reminder')),
  transition_seq   integer NOT NULL DEFAULT 1,
  transition_at    timestamptz NOT NULL DEFAULT now(),
  acked_at         timestamptz,
  acked_by         text,
  resolved_at      timestamptz,
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, dedupe_key)                -- one alert per condition: what the upsert targets
);

CREATE TABLE notify.notifications (
  id               uuid NOT NULL DEFAULT gen_random_uuid(),
  tenant_id        uuid NOT NULL,               -- addition: carries the distribution key (defect 6)
  alert_id         uuid NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  channel          text NOT NULL,               -- email|slack|webhook|inapp
  recipient        text,
  status           text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sent', 'failed', 'skipped')),
  send_attempts    int  NOT NULL DEFAULT 0,
  last_attempt_at  timestamptz,
  error            text,
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, alert_id) REFERENCES notify.alerts (tenant_id, id) ON DELETE CASCADE
);

CREATE INDEX not_qs_time_brin        ON notify.quota_snapshots USING BRIN (captured_at);
CREATE INDEX not_qs_tenant_time      ON notify.quota_snapshots (tenant_id, captured_at DESC);
CREATE INDEX not_qs_base_time        ON notify.quota_snapshots (base_id, captured_at DESC);

-- alerts is not partitioned, so the seed's BRIN on created_on would index one heap in insert
-- order; it is kept for the seed's purpose (time-range scans of old alerts for cleanup).
CREATE INDEX not_alert_time_brin     ON notify.alerts USING BRIN (created_at);
CREATE INDEX not_alert_status_time   ON notify.alerts (status, last_seen_at DESC);
CREATE INDEX not_alert_tenant_status ON notify.alerts (tenant_id, status);
CREATE INDEX not_alert_id            ON notify.alerts (id);   -- `notifyctl show ID` knows no tenant

CREATE INDEX not_note_alert_time     ON notify.notifications (alert_id, created_at DESC);
CREATE INDEX not_note_id             ON notify.notifications (id);
