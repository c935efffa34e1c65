-- Runtime SQL of the detect step (engine/detect.py, detectors/). Dedupe keys are built as
-- `... || ':' || 'base=' ...`: SQLAlchemy's text() would read `:base` inside one literal as a bind.

-- name: lock_detection
-- Held by a pass from before its shards start until they have all finished: passes never overlap
-- (notifyd also runs them under the detect job's lock; this covers run-once and direct callers).
-- A session lock, on a connection that is not inside a transaction meanwhile, so a server's
-- idle_in_transaction_session_timeout cannot end it during a long pass.
SELECT pg_advisory_lock(7165421002);

-- name: unlock_detection
SELECT pg_advisory_unlock(7165421002);

-- name: load_states
-- Each shard's detection watermark (an ingest_seq of quota_snapshots) and the fingerprint of the
-- plans and levels of its last pass: 'snapshots' for one shard, 'snapshots:<i>/<n>' for n.
SELECT name, position, fingerprint, updated_at FROM notify.detection_state
WHERE name = 'snapshots' OR name LIKE 'snapshots:%';

-- name: reset_states
-- latest_snapshots was lost: every shard folds from the start and evaluates everything once.
UPDATE notify.detection_state SET position = 0, fingerprint = ''
WHERE name = 'snapshots' OR name LIKE 'snapshots:%';

-- name: delete_other_states
-- The rows of an earlier number of shards, once the current shards have stored theirs.
DELETE FROM notify.detection_state
WHERE (name = 'snapshots' OR name LIKE 'snapshots:%') AND name <> ALL (CAST(:names AS text[]));

-- name: latest_is_empty
-- latest_snapshots is UNLOGGED: empty after a crash while the watermark says otherwise.
SELECT NOT EXISTS (SELECT 1 FROM notify.latest_snapshots) AS empty;

-- name: store_state
-- Never moves the watermark back: two passes may finish in either order.
INSERT INTO notify.detection_state AS s (name, position, fingerprint, updated_at)
VALUES (:name, :position, :fingerprint, :now)
ON CONFLICT (name) DO UPDATE
SET position = greatest(s.position, EXCLUDED.position), fingerprint = EXCLUDED.fingerprint,
    updated_at = EXCLUDED.updated_at;

-- name: sync_tenant_plans
-- Makes notify.tenant_plans hold exactly the given tenant -> plan pairs; rewrites only rows whose
-- plan changed. Returns how many rows were written.
WITH wanted AS (
  SELECT DISTINCT ON (tenant_id) tenant_id, plan
  FROM unnest(CAST(:tenant_ids AS uuid[]), CAST(:plans AS text[])) AS w (tenant_id, plan)
),
removed AS (
  DELETE FROM notify.tenant_plans t
  WHERE NOT EXISTS (SELECT 1 FROM wanted w WHERE w.tenant_id = t.tenant_id)
  RETURNING 1
),
written AS (
  INSERT INTO notify.tenant_plans AS t (tenant_id, plan, synced_at)
  SELECT tenant_id, plan, :now FROM wanted
  ON CONFLICT (tenant_id) DO UPDATE SET plan = EXCLUDED.plan, synced_at = EXCLUDED.synced_at
  WHERE t.plan <> EXCLUDED.plan
  RETURNING 1
)
SELECT (SELECT count(*) FROM removed) + (SELECT count(*) FROM written) AS changed;

-- name: fold_newest
-- The fold, in two parts (engine.detect puts them together): this part picks, of the snapshots of
-- this shard's tenants committed since the watermark, the newest per tenant, base and metric; the
-- next (fold_upsert, or fold_insert into an empty table) writes them into latest_snapshots and
-- stamps the rows it changed with this transaction's id, which tells the detectors of this pass
-- what to evaluate. Returns the new watermark (the xmin of this statement's snapshot: every
-- snapshot below it is finished), the number of rows folded, and the tenants of the first
-- :tenants_limit of them (engine.detect: when that is all of them, the detectors and the planner
-- look those tenants up by key instead of scanning every latest value and every alert).
WITH horizon AS (
  SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS position
),
newest AS (
  SELECT DISTINCT ON (tenant_id, metric, coalesce(base_id, '00000000-0000-0000-0000-000000000000'::uuid))
         tenant_id, coalesce(base_id, '00000000-0000-0000-0000-000000000000'::uuid) AS base_id, metric,
         coalesce(value_int::numeric, value_numeric) AS value, captured_at
  FROM notify.quota_snapshots
  WHERE ingest_seq >= :from_position AND ingest_seq < (SELECT position FROM horizon)
    AND notify.tenant_shard(tenant_id, :shards) = :shard
  ORDER BY tenant_id, metric, coalesce(base_id, '00000000-0000-0000-0000-000000000000'::uuid),
           captured_at DESC, ingest_seq DESC
),

-- name: fold_upsert
folded AS (
  INSERT INTO notify.latest_snapshots AS l (tenant_id, base_id, metric, value, captured_at, folded_seq)
  SELECT tenant_id, base_id, metric, value, captured_at, pg_current_xact_id()::text::bigint FROM newest
  ON CONFLICT (tenant_id, metric, base_id) DO UPDATE
  SET value = EXCLUDED.value, captured_at = EXCLUDED.captured_at, folded_seq = EXCLUDED.folded_seq
  -- an older snapshot that committed late never overwrites a newer one
  WHERE EXCLUDED.captured_at > l.captured_at OR (EXCLUDED.captured_at = l.captured_at AND EXCLUDED.value <> l.value)
  RETURNING l.tenant_id
)
SELECT (SELECT position FROM horizon) AS position, (SELECT count(*) FROM folded) AS folded,
       (SELECT array_agg(DISTINCT tenant_id) FROM (SELECT tenant_id FROM folded LIMIT :tenants_limit) t) AS tenants;

-- name: fold_insert
-- When latest_snapshots was empty as the pass began (the first pass, or a rebuild after a crash):
-- a plain INSERT, about twice as fast as the upsert's speculative insertion. Safe because passes
-- hold lock_detection and the shards of a pass own disjoint tenants: no one else inserts a key.
folded AS (
  INSERT INTO notify.latest_snapshots (tenant_id, base_id, metric, value, captured_at, folded_seq)
  SELECT tenant_id, base_id, metric, value, captured_at, pg_current_xact_id()::text::bigint FROM newest
  RETURNING tenant_id
)
SELECT (SELECT position FROM horizon) AS position, (SELECT count(*) FROM folded) AS folded,
       (SELECT array_agg(DISTINCT tenant_id) FROM (SELECT tenant_id FROM folded LIMIT :tenants_limit) t) AS tenants;

-- name: resolve_past_periods
-- Billing-month rollover: quota alerts of an earlier month resolve (the new month's alerts open
-- under new keys when the new month's snapshots cross a level).
WITH resolved AS (
  UPDATE notify.alerts
  SET status = 'resolved', transition = 'resolved', transition_seq = transition_seq + 1,
      planned_seq = transition_seq + 1, transition_at = :now, resolved_at = :now,
      context = context || jsonb_build_object('resolved_by', 'period_end')
  WHERE kind = ANY (CAST(:kinds AS text[])) AND status <> 'resolved' AND context ->> 'period' < :period
    AND notify.tenant_shard(tenant_id, :shards) = :shard
  RETURNING kind
)
SELECT kind, count(*) AS resolved FROM resolved GROUP BY kind;

-- name: threshold_candidates
-- Quota levels (RUNS/STORAGE/RECORDS/API_CALLS_THRESHOLD): each latest value of :metric in the
-- current billing month against each level of its tenant's plan limit. fires: at or above the
-- level; clears: below the level minus the hysteresis. Rows in between change nothing.
-- :thresholds has one row per (plan, level) with the lines and the dedupe key's prefix worked out
-- (detectors.base.ThresholdDetector): no arithmetic per value but the comparisons.
WITH candidates AS (
  SELECT l.tenant_id,
         nullif(l.base_id, '00000000-0000-0000-0000-000000000000'::uuid) AS base_id,
         CAST(:kind AS text) AS kind,
         th.severity,
         th.key_prefix || coalesce(nullif(l.base_id, '00000000-0000-0000-0000-000000000000'::uuid)::text, '-')
           AS dedupe_key,
         l.value >= th.fire_at AS fires,
         l.value < th.clear_below AS clears,
         l.captured_at,
         jsonb_build_object('metric', l.metric, 'value', l.value, 'limit', th.limit_value,
                            'percent', round(l.value * 100 / nullif(th.limit_value, 0), 1),
                            'level_percent', th.level_percent, 'plan', th.plan,
                            'period', CAST(:period AS text), 'captured_at', l.captured_at) AS context
  FROM notify.latest_snapshots l
  LEFT JOIN notify.tenant_plans tp ON tp.tenant_id = l.tenant_id
  JOIN jsonb_to_recordset(CAST(:thresholds AS jsonb))
         AS th (plan text, severity text, limit_value numeric, level_percent numeric, fire_at numeric,
                clear_below numeric, key_prefix text)
    ON th.plan = coalesce(tp.plan, 'default')
  WHERE l.metric = :metric AND l.captured_at >= :period_start
    AND (l.folded_seq = pg_current_xact_id()::text::bigint
         OR (:full_pass AND notify.tenant_shard(l.tenant_id, :shards) = :shard))
    AND (CAST(:changed_tenants AS uuid[]) IS NULL OR l.tenant_id = ANY (CAST(:changed_tenants AS uuid[])))
),

-- name: wallet_low_candidates
-- WALLET_LOW: the latest wallet balance below the plan's wallet_floor_cents (critical once it is
-- at or below zero); clears at the floor plus the hysteresis. Not tied to a billing month.
WITH candidates AS (
  SELECT l.tenant_id,
         nullif(l.base_id, '00000000-0000-0000-0000-000000000000'::uuid) AS base_id,
         'WALLET_LOW' AS kind,
         CASE WHEN l.value <= 0 THEN 'critical' ELSE 'warn' END AS severity,
         'wallet:low:' || 'base=' || coalesce(nullif(l.base_id, '00000000-0000-0000-0000-000000000000'::uuid)::text, '-')
           AS dedupe_key,
         l.value < lim.limit_value AS fires,
         l.value >= lim.limit_value * (100 + CAST(:hysteresis AS numeric)) / 100 AS clears,
         l.captured_at,
         jsonb_build_object('metric', l.metric, 'value', l.value, 'floor', lim.limit_value,
                            'plan', coalesce(tp.plan, 'default'), 'captured_at', l.captured_at) AS context
  FROM notify.latest_snapshots l
  LEFT JOIN notify.tenant_plans tp ON tp.tenant_id = l.tenant_id
  JOIN jsonb_to_recordset(CAST(:limits AS jsonb)) AS lim (plan text, limit_value numeric)
    ON lim.plan = coalesce(tp.plan, 'default')
  WHERE l.metric = 'wallet_balance_cents'
    AND (l.folded_seq = pg_current_xact_id()::text::bigint
         OR (:full_pass AND notify.tenant_shard(l.tenant_id, :shards) = :shard))
    AND (CAST(:changed_tenants AS uuid[]) IS NULL OR l.tenant_id = ANY (CAST(:changed_tenants AS uuid[])))
),

-- name: wallet_runway_candidates
-- WALLET_LOW by forecast: the balance falls by burn_per_day (its drop since the oldest snapshot
-- within :burn_window_seconds before the latest one) and runs out within :runway_days. Clears once
-- the runway is the hysteresis past the line, or the balance stops falling.
WITH burn AS (
  SELECT l.tenant_id, l.base_id, l.value, l.captured_at, coalesce(tp.plan, 'default') AS plan,
         (first.value - l.value) * 86400
           / nullif(extract(epoch FROM l.captured_at - first.captured_at), 0) AS burn_per_day
  FROM notify.latest_snapshots l
  LEFT JOIN notify.tenant_plans tp ON tp.tenant_id = l.tenant_id
  CROSS JOIN LATERAL (
    SELECT coalesce(q.value_int::numeric, q.value_numeric) AS value, q.captured_at
    FROM notify.quota_snapshots q
    WHERE q.tenant_id = l.tenant_id AND q.metric = 'wallet_balance_cents'
      AND q.base_id IS NOT DISTINCT FROM nullif(l.base_id, '00000000-0000-0000-0000-000000000000'::uuid)
      AND q.captured_at >= l.captured_at - make_interval(secs => :burn_window_seconds)
      AND q.captured_at < l.captured_at
    ORDER BY q.captured_at
    LIMIT 1
  ) first
  WHERE l.metric = 'wallet_balance_cents'
    AND (l.folded_seq = pg_current_xact_id()::text::bigint
         OR (:full_pass AND notify.tenant_shard(l.tenant_id, :shards) = :shard))
    AND (CAST(:changed_tenants AS uuid[]) IS NULL OR l.tenant_id = ANY (CAST(:changed_tenants AS uuid[])))
),
candidates AS (
  SELECT b.tenant_id,
         nullif(b.base_id, '00000000-0000-0000-0000-000000000000'::uuid) AS base_id,
         'WALLET_LOW' AS kind,
         'warn' AS severity,
         'wallet:runway:' || 'base=' || coalesce(nullif(b.base_id, '00000000-0000-0000-0000-000000000000'::uuid)::text, '-')
           AS dedupe_key,
         b.burn_per_day > 0 AND b.value / b.burn_per_day < :runway_days AS fires,
         coalesce(b.burn_per_day, 0) <= 0
           OR b.value / b.burn_per_day >= :runway_days * (100 + CAST(:hysteresis AS numeric)) / 100 AS clears,
         b.captured_at,
         jsonb_build_object('metric', 'wallet_balance_cents', 'value', b.value,
                            'burn_per_day', round(b.burn_per_day, 2),
                            'runway_days', round(b.value / nullif(b.burn_per_day, 0), 1),
                            'runway_limit_days', :runway_days, 'plan', b.plan,
                            'captured_at', b.captured_at) AS context
  FROM burn b
),

-- name: rate_limit_candidates
-- RATE_LIMIT: HTTP 429 answers in the window at or above :threshold; clears below the threshold
-- minus the hysteresis.
WITH candidates AS (
  SELECT l.tenant_id,
         nullif(l.base_id, '00000000-0000-0000-0000-000000000000'::uuid) AS base_id,
         'RATE_LIMIT' AS kind,
         'warn' AS severity,
         'rate_limit:429:' || 'base=' || coalesce(nullif(l.base_id, '00000000-0000-0000-0000-000000000000'::uuid)::text, '-')
           AS dedupe_key,
         l.value >= :threshold AS fires,
         l.value < :threshold * (100 - CAST(:hysteresis AS numeric)) / 100 AS clears,
         l.captured_at,
         jsonb_build_object('metric', l.metric, 'value', l.value, 'threshold', :threshold,
                            'window_seconds', :window_seconds, 'captured_at', l.captured_at) AS context
  FROM notify.latest_snapshots l
  WHERE l.metric = 'http_429_count'
    AND (l.folded_seq = pg_current_xact_id()::text::bigint
         OR (:full_pass AND notify.tenant_shard(l.tenant_id, :shards) = :shard))
    AND (CAST(:changed_tenants AS uuid[]) IS NULL OR l.tenant_id = ANY (CAST(:changed_tenants AS uuid[])))
),

-- name: alert_insert
-- The lifecycle, shared by every snapshot detector: appended to a detector's `candidates` CTE,
-- then alert_on_conflict and alert_returning (detectors.base.detector_statement): one statement
-- per detector per tick. Rows that fire open or refresh their alert; rows that
-- clear resolve an unresolved alert; nothing else is touched. The DO UPDATE's WHERE skips
-- alerts with nothing new, so a steady state writes no row (an unconditional DO UPDATE would
-- rewrite every open alert every tick).
-- last_seen_at is the capture time of the newest snapshot that showed the condition.
-- :may_clear is false when no alert of this kind is unresolved (query may_clear): the plan then
-- has no probe at all. That saves a probe per value below the line on a first pass, and it avoids
-- a trap: a plan made while notify.alerts has no page at all probes it with a seq scan per row,
-- and the table grows while this pass (and the other shards) fill it: quadratic, 71 s instead of
-- 0.7 s at 60,000 alerts. With any page, the planner hashes the probes or uses the unique index.
-- The ORDER BY makes concurrent passes take row locks in one order (no deadlocks) and inserts
-- the unique index's keys in order.
-- planned_seq moves with transition_seq: the caller plans this transaction's transitions before
-- it commits (engine.planner.plan_transitions_of_this_transaction).
upserted AS (
  INSERT INTO notify.alerts AS a (tenant_id, base_id, kind, severity, dedupe_key, status, first_seen_at,
                                  last_seen_at, context, transition, transition_seq, planned_seq,
                                  transition_at, created_at, resolved_at)
  SELECT c.tenant_id, c.base_id, c.kind, CAST(c.severity AS public.sev_level), c.dedupe_key,
         CASE WHEN c.fires THEN 'open' ELSE 'resolved' END, c.captured_at, c.captured_at, c.context,
         CASE WHEN c.fires THEN 'opened' ELSE 'resolved' END, 1, 1, :now, :now,
         CASE WHEN c.fires THEN NULL ELSE CAST(:now AS timestamptz) END
  FROM candidates c
  WHERE c.fires
     OR (:may_clear AND c.clears AND EXISTS (SELECT 1 FROM notify.alerts x
                                          WHERE x.tenant_id = c.tenant_id AND x.dedupe_key = c.dedupe_key
                                            AND x.kind = c.kind AND x.status <> 'resolved'))
  ORDER BY c.tenant_id, c.dedupe_key

-- name: alert_on_conflict
-- The lifecycle's update half (engine: left out, the INSERT becomes plain, when no alert of the
-- kind exists at all: its keys cannot be taken, since only detection passes write them and passes
-- hold lock_detection; a plain INSERT costs about 15 % less than the speculative insertion).
  ON CONFLICT (tenant_id, dedupe_key) DO UPDATE
  SET status = CASE WHEN EXCLUDED.status = 'resolved' THEN 'resolved'
                    WHEN a.status = 'resolved' THEN 'open'
                    ELSE a.status END,                       -- an acked alert stays acked
      severity = CASE WHEN EXCLUDED.status = 'open' THEN EXCLUDED.severity ELSE a.severity END,
      last_seen_at = CASE WHEN EXCLUDED.status = 'open' THEN greatest(a.last_seen_at, EXCLUDED.last_seen_at)
                          ELSE a.last_seen_at END,
      context = CASE WHEN EXCLUDED.status = 'open'
                     THEN EXCLUDED.context || jsonb_build_object('reopen_count',
                            coalesce((a.context ->> 'reopen_count')::int, 0)
                            + CASE WHEN a.status = 'resolved' THEN 1 ELSE 0 END)
                     ELSE a.context || jsonb_build_object('resolved_by', 'condition_cleared',
                            'cleared_value', EXCLUDED.context -> 'value',
                            'cleared_at', EXCLUDED.context -> 'captured_at') END,
      transition = CASE WHEN EXCLUDED.status = 'resolved' THEN 'resolved'
                        WHEN a.status = 'resolved' THEN 'reopened'
                        WHEN EXCLUDED.severity > a.severity THEN 'escalated'
                        ELSE a.transition END,
      transition_seq = a.transition_seq
                       + CASE WHEN EXCLUDED.status = 'resolved' OR a.status = 'resolved'
                                   OR EXCLUDED.severity > a.severity THEN 1 ELSE 0 END,
      planned_seq = CASE WHEN EXCLUDED.status = 'resolved' OR a.status = 'resolved'
                              OR EXCLUDED.severity > a.severity THEN a.transition_seq + 1
                         ELSE a.planned_seq END,
      transition_at = CASE WHEN EXCLUDED.status = 'resolved' OR a.status = 'resolved'
                                OR EXCLUDED.severity > a.severity THEN EXCLUDED.transition_at
                           ELSE a.transition_at END,
      resolved_at = CASE WHEN EXCLUDED.status = 'resolved' THEN EXCLUDED.transition_at
                         WHEN a.status = 'resolved' THEN NULL ELSE a.resolved_at END,
      acked_at = CASE WHEN EXCLUDED.status = 'open' AND a.status = 'resolved' THEN NULL ELSE a.acked_at END,
      acked_by = CASE WHEN EXCLUDED.status = 'open' AND a.status = 'resolved' THEN NULL ELSE a.acked_by END
  WHERE (EXCLUDED.status = 'resolved' AND a.status <> 'resolved')
     OR (EXCLUDED.status = 'open'
         AND (a.status = 'resolved' OR EXCLUDED.last_seen_at > a.last_seen_at
              OR EXCLUDED.severity <> a.severity
              OR (a.context - 'reopen_count') IS DISTINCT FROM EXCLUDED.context))

-- name: alert_returning
  RETURNING a.transition, a.transition_at = CAST(:now AS timestamptz) AND a.transition_seq >= 1 AS transitioned
)
SELECT transition, transitioned, count(*) AS alerts FROM upserted GROUP BY transition, transitioned;

-- name: may_clear
-- See alert_insert (may_clear): is there any unresolved alert of this kind to clear? Checked
-- after this transaction's fold: an alert another pass opened for one of the values it folds had
-- committed by then (the fold waits for that pass's row lock on the value).
-- A small pass asks only about the tenants it folded (the index on (tenant_id, status)): asking
-- about every tenant would read every unresolved alert when none is of this kind.
-- kind_seen: is there any alert of this kind (see alert_on_conflict).
SELECT pg_relation_size('notify.alerts') > 0
       AND EXISTS (SELECT 1 FROM notify.alerts
                   WHERE status IN ('open', 'ack') AND kind = :kind
                     AND (CAST(:changed_tenants AS uuid[]) IS NULL
                          OR tenant_id = ANY (CAST(:changed_tenants AS uuid[])))) AS may_clear,
       CAST(:changed_tenants AS uuid[]) IS NOT NULL
       OR EXISTS (SELECT 1 FROM notify.alerts WHERE kind = :kind) AS kind_seen;

-- name: wake_detection
-- Sent by a push of snapshots; delivered only if and when its transaction commits.
SELECT pg_notify('notify_engine_snapshots', '');
