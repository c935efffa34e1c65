-- Admin Operations Log (seed section 1): admin portal actions and security events.
-- Departures from the seed are listed in docs/SCHEMA.md; in short:
--   * occurred_on is (occurred_at AT TIME ZONE 'UTC')::date: the seed's occurred_at::date is not
--     immutable (defect 1);
--   * tables are partitioned by occurred_at with UTC month bounds, not by the generated column
--     (defect 2), and the primary key carries occurred_at (defect 3);
--   * each table has a DEFAULT partition so no row is refused for want of its month.
CREATE SCHEMA IF NOT EXISTS admin_log;

CREATE TABLE admin_log.security_events (
  id               uuid NOT NULL DEFAULT gen_random_uuid(),
  occurred_at      timestamptz NOT NULL DEFAULT now(),
  occurred_on      date GENERATED ALWAYS AS ((occurred_at AT TIME ZONE 'UTC')::date) STORED,
  admin_id         uuid,
  ip               inet,
  user_agent       text,
  type             text NOT NULL,               -- ADMIN_LOGIN, ADMIN_LOGOUT, MFA_SUCCESS, MFA_FAIL, FAILED_LOGIN, ...
  details          jsonb NOT NULL DEFAULT '{}'::jsonb,
  PRIMARY KEY (id, occurred_at)
) PARTITION BY RANGE (occurred_at);

CREATE TABLE admin_log.admin_events (
  id               uuid NOT NULL DEFAULT gen_random_uuid(),
  occurred_at      timestamptz NOT NULL DEFAULT now(),
  occurred_on      date GENERATED ALWAYS AS ((occurred_at AT TIME ZONE 'UTC')::date) STORED,
  actor_admin_id   uuid,
  tenant_id        uuid,
  workspace_id     uuid,
  base_id          uuid,
  ip               inet,
  action           text NOT NULL,               -- TENANT_SUSPEND, WALLET_ADJUST, ..., ALERT_ACK, ALERT_RESOLVE
  target_type      text NOT NULL,               -- TENANT, USER, SUBSCRIPTION, BASE, PLAN, INVOICE, ALERT, ...
  target_id        text,
  severity         public.sev_level NOT NULL DEFAULT 'info',
  diff             jsonb NOT NULL DEFAULT '{}'::jsonb,
  comment          text,
  PRIMARY KEY (id, occurred_at)
) PARTITION BY RANGE (occurred_at);

CREATE TABLE admin_log.security_events_default PARTITION OF admin_log.security_events DEFAULT;
CREATE TABLE admin_log.admin_events_default PARTITION OF admin_log.admin_events DEFAULT;

-- Indexes on the parents propagate to every partition, present and future.
CREATE INDEX admin_log_sec_time_brin   ON admin_log.security_events USING BRIN (occurred_at);
CREATE INDEX admin_log_sec_type_time   ON admin_log.security_events (type, occurred_at DESC);

CREATE INDEX admin_log_evt_time_brin   ON admin_log.admin_events USING BRIN (occurred_at);
CREATE INDEX admin_log_evt_tenant_time ON admin_log.admin_events (tenant_id, occurred_at DESC);
CREATE INDEX admin_log_evt_action_time ON admin_log.admin_events (action, occurred_at DESC);
CREATE INDEX admin_log_evt_sev_time    ON admin_log.admin_events (severity, occurred_at DESC);

-- The seed's helper under its own name and signature, fixed: the partition lands in the
-- table's own schema as <table>_YYYYMM, and _yyyymm is a UTC month.
CREATE OR REPLACE FUNCTION admin_log.create_month_partition(_table regclass, _yyyymm text)
RETURNS void LANGUAGE sql AS $$
  SELECT partitions.create_month(_table, to_date(_yyyymm, 'YYYYMM'));
$$;
