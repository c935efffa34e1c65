-- Quota snapshots and detectors (issue 3). docs/SCHEMA.md, section "Detect", has the reasons.

-- The same commit-safe position as data_activity's ingest_seq (see ddl/data_activity/0002): the
-- detection pass folds snapshots with ingest_seq in [last watermark, its snapshot's xmin) into
-- notify.latest_snapshots, so it reads each snapshot once, never the whole month.
ALTER TABLE notify.quota_snapshots
  ADD COLUMN ingest_seq bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint);
CREATE INDEX not_qs_ingest_brin ON notify.quota_snapshots USING BRIN (ingest_seq);

-- The newest value per (tenant, base, metric): what detectors compare with plan limits.
-- base_id uses the nil UUID for tenant-wide metrics so it can be part of the primary key.
-- folded_seq is the id of the detection transaction that last changed the row: a pass evaluates
-- only the rows it changed itself (or all of them when the plans or levels changed); a pass
-- finds them by a scan, because an index on it would cost every fold more than it saves.
-- UNLOGGED: it is derived from quota_snapshots and rewritten by every pass, so WAL for it is
-- pure cost (it halves the fold). After a crash (or on a standby) PostgreSQL leaves it empty;
-- engine.detect then folds every stored snapshot again and evaluates all of them once.
CREATE UNLOGGED TABLE notify.latest_snapshots (
  tenant_id    uuid NOT NULL,
  base_id      uuid NOT NULL,
  metric       text NOT NULL,
  value        numeric NOT NULL,
  captured_at  timestamptz NOT NULL,
  folded_seq   bigint NOT NULL,
  PRIMARY KEY (tenant_id, metric, base_id)
);

-- Tenant -> plan, synced from config.yaml `tenants` and the optional SQL source, so detectors
-- join it set-based instead of receiving 100,000 tenants as parameters. A tenant absent here is
-- on the `default` plan.
CREATE TABLE notify.tenant_plans (
  tenant_id    uuid PRIMARY KEY,
  plan         text NOT NULL,
  synced_at    timestamptz NOT NULL
);

-- Where each incremental collector stopped (an ingest_seq of its source table). Written in the
-- same transaction as the snapshots and counters it produced: a crash loses both or neither.
CREATE TABLE notify.collector_watermarks (
  collector    text PRIMARY KEY,
  position     bigint NOT NULL,
  updated_at   timestamptz NOT NULL
);

-- Running totals of the log collectors (api_calls per billing month, records_count deltas).
-- period is 'YYYY-MM' for per-month metrics and '' for running counts. base_id: nil UUID = none.
CREATE TABLE notify.usage_counters (
  collector    text NOT NULL,
  tenant_id    uuid NOT NULL,
  base_id      uuid NOT NULL,
  metric       text NOT NULL,
  period       text NOT NULL,
  value        bigint NOT NULL,
  updated_at   timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, collector, metric, base_id, period)
);

-- One row per detection pass owner: the snapshot watermark and a fingerprint of the plans and
-- levels it evaluated with (a change forces one full re-evaluation).
CREATE TABLE notify.detection_state (
  name         text PRIMARY KEY,
  position     bigint NOT NULL,
  fingerprint  text NOT NULL,
  updated_at   timestamptz NOT NULL
);
