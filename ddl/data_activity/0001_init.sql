-- Data-Plane Activity Log (seed section 3): API gateway access logs and record-level CRUD events.
-- Same departures as admin_log (docs/SCHEMA.md); tenant_id leads the primary key (Citus-ready).
CREATE SCHEMA IF NOT EXISTS data_activity;

CREATE TABLE data_activity.api_access_logs (
  id               uuid NOT NULL DEFAULT gen_random_uuid(),
  occurred_at      timestamptz NOT NULL DEFAULT now(),
  occurred_on      date GENERATED ALWAYS AS ((occurred_at AT TIME ZONE 'UTC')::date) STORED,
  tenant_id        uuid NOT NULL,
  base_id          uuid NOT NULL,
  token_id         uuid,
  route            text NOT NULL,               -- /v1/records, /v1/records/{id}
  method           text NOT NULL,               -- GET, POST, PATCH, DELETE
  status           int NOT NULL,
  latency_ms       int,
  bytes_in         int,
  bytes_out        int,
  ip               inet,
  user_agent       text,
  source           text NOT NULL DEFAULT 'api', -- api|ui|automation (if known)
  PRIMARY KEY (tenant_id, id, occurred_at)
) PARTITION BY RANGE (occurred_at);

CREATE TABLE data_activity.record_events (
  id               uuid NOT NULL DEFAULT gen_random_uuid(),
  occurred_at      timestamptz NOT NULL DEFAULT now(),
  occurred_on      date GENERATED ALWAYS AS ((occurred_at AT TIME ZONE 'UTC')::date) STORED,
  tenant_id        uuid NOT NULL,
  base_id          uuid NOT NULL,
  table_id         uuid NOT NULL,               -- runtime_meta.tables.id
  record_id        uuid,
  action           text NOT NULL CHECK (action IN ('INSERT', 'UPDATE', 'DELETE')),
  actor_user_id    uuid,
  token_id         uuid,
  source           text NOT NULL DEFAULT 'api', -- api|ui|automation|import
  diff             jsonb,
  error            text,
  PRIMARY KEY (tenant_id, id, occurred_at)
) PARTITION BY RANGE (occurred_at);

CREATE TABLE data_activity.api_access_logs_default PARTITION OF data_activity.api_access_logs DEFAULT;
CREATE TABLE data_activity.record_events_default   PARTITION OF data_activity.record_events DEFAULT;

CREATE INDEX daa_api_time_brin   ON data_activity.api_access_logs USING BRIN (occurred_at);
CREATE INDEX daa_api_tenant_time ON data_activity.api_access_logs (tenant_id, occurred_at DESC);
CREATE INDEX daa_api_base_time   ON data_activity.api_access_logs (base_id, occurred_at DESC);
CREATE INDEX daa_api_route_time  ON data_activity.api_access_logs (route, occurred_at DESC);

CREATE INDEX daa_rec_time_brin   ON data_activity.record_events USING BRIN (occurred_at);
CREATE INDEX daa_rec_tenant_time ON data_activity.record_events (tenant_id, occurred_at DESC);
CREATE INDEX daa_rec_base_time   ON data_activity.record_events (base_id, occurred_at DESC);
CREATE INDEX daa_rec_table_time  ON data_activity.record_events (table_id, occurred_at DESC);
CREATE INDEX daa_rec_action_time ON data_activity.record_events (action, occurred_at DESC);
