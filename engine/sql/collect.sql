-- name: ensure_watermark
-- Creates a collector's watermark row at position 0 the first time it runs.
INSERT INTO notify.collector_watermarks (collector, position, updated_at)
VALUES (:collector, 0, :now)
ON CONFLICT (collector) DO NOTHING;

-- name: lock_watermark
-- The collector's position, locked until its transaction ends: two collectors running at once
-- take turns instead of counting the same rows twice.
SELECT position FROM notify.collector_watermarks WHERE collector = :collector FOR UPDATE;

-- name: store_watermark
-- Moves the watermark; committed together with the snapshots and counters it produced.
UPDATE notify.collector_watermarks SET position = :position, updated_at = :now WHERE collector = :collector;

-- name: read_horizon
-- Every transaction below this id has finished: rows with ingest_seq under it are all visible
-- now (if committed) and no new ones can appear. Run inside the REPEATABLE READ transaction that
-- also reads the rows, so both see the same snapshot.
SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS horizon;

-- name: api_calls_delta
-- New API calls per tenant and base in the billing month [period_start, period_end), among rows
-- committed since the last watermark. Cost follows the new rows (BRIN on ingest_seq).
-- A sampled row stands for sample_rate requests (docs/SCHEMA.md), so requests are summed, not counted.
SELECT tenant_id, base_id, sum(sample_rate) AS delta
FROM data_activity.api_access_logs
WHERE ingest_seq >= :from_position AND ingest_seq < :to_position
  AND occurred_at >= :period_start AND occurred_at < :period_end
GROUP BY tenant_id, base_id;

-- name: record_count_delta
-- Net record count change per tenant and base (INSERT +1, DELETE -1) among rows committed since
-- the last watermark; a failed write (error set) changed nothing.
SELECT tenant_id, base_id, delta FROM (
  SELECT tenant_id, base_id,
         sum(CASE action WHEN 'INSERT' THEN 1 WHEN 'DELETE' THEN -1 ELSE 0 END) AS delta
  FROM data_activity.record_events
  WHERE ingest_seq >= :from_position AND ingest_seq < :to_position AND error IS NULL
  GROUP BY tenant_id, base_id
) d
WHERE delta <> 0;

-- name: add_to_counters
-- Adds deltas to the running totals (one statement for the whole batch) and returns the new
-- totals, which become the snapshots. A running count is floored at 0: rows deleted before the
-- first collection were never counted in. Callers hold the collector's watermark lock, so no
-- other transaction changes these counters meanwhile.
WITH delta AS (
  SELECT tenant_id, base_id, delta
  FROM unnest(CAST(:tenant_ids AS uuid[]), CAST(:base_ids AS uuid[]), CAST(:deltas AS bigint[]))
       AS d (tenant_id, base_id, delta)
)
INSERT INTO notify.usage_counters AS c (collector, tenant_id, base_id, metric, period, value, updated_at)
SELECT :collector, d.tenant_id, d.base_id, :metric, :period,
       greatest(coalesce(old.value, 0) + d.delta, 0), :now
FROM delta d
LEFT JOIN notify.usage_counters old
  ON old.tenant_id = d.tenant_id AND old.collector = :collector AND old.metric = :metric
 AND old.base_id = d.base_id AND old.period = :period
ON CONFLICT (tenant_id, collector, metric, base_id, period)
DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at
RETURNING tenant_id, base_id, value;

-- name: rate_limited_counts
-- HTTP 429 answers per tenant and base in the window (window_start, now]. The cost follows the
-- window, not the month (BRIN on occurred_at).
SELECT tenant_id, base_id, sum(sample_rate) AS value
FROM data_activity.api_access_logs
WHERE occurred_at > :window_start AND occurred_at <= :now AND status = 429
GROUP BY tenant_id, base_id;

-- name: replace_rate_limit_counts
-- Stores this window's 429 counts and returns what to snapshot: every non-zero count, and a 0
-- for each (tenant, base) that had a non-zero count last time (so its RATE_LIMIT alert can clear).
WITH current AS (
  SELECT tenant_id, base_id, value
  FROM unnest(CAST(:tenant_ids AS uuid[]), CAST(:base_ids AS uuid[]), CAST(:counts AS bigint[]))
       AS n (tenant_id, base_id, value)
),
cleared AS (
  UPDATE notify.usage_counters c SET value = 0, updated_at = :now
  WHERE c.collector = :collector AND c.value > 0
    AND NOT EXISTS (SELECT 1 FROM current n WHERE n.tenant_id = c.tenant_id AND n.base_id = c.base_id)
  RETURNING c.tenant_id, c.base_id, c.value
),
stored AS (
  INSERT INTO notify.usage_counters AS c (collector, tenant_id, base_id, metric, period, value, updated_at)
  SELECT :collector, tenant_id, base_id, 'http_429_count', '', value, :now FROM current
  ON CONFLICT (tenant_id, collector, metric, base_id, period)
  DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at
  RETURNING c.tenant_id, c.base_id, c.value
)
SELECT tenant_id, base_id, value FROM stored
UNION ALL
SELECT tenant_id, base_id, value FROM cleared;
