-- Incremental collection (issue 3): a commit-safe position for every log row.
--
-- Collectors read "rows newer than the last watermark". occurred_at cannot be that watermark:
-- the seed forwards record events asynchronously through a queue, so a row can commit long after
-- rows with later occurred_at values were already counted, and a time watermark would skip it.
-- ingest_seq is the inserting transaction's id (64-bit, never wraps). A collector reads
--   ingest_seq >= <last watermark> AND ingest_seq < xmin of its own snapshot
-- and stores that xmin as the next watermark: every transaction below xmin has finished, so each
-- committed row is read exactly once, whenever it commits. The partition helper copies the
-- column when it moves rows out of the DEFAULT partition, so a move does not re-stamp rows.
-- bigint (not xid8) so a BRIN index can hold it: rows arrive in roughly increasing order.
ALTER TABLE data_activity.api_access_logs
  ADD COLUMN ingest_seq bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint);
ALTER TABLE data_activity.record_events
  ADD COLUMN ingest_seq bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint);

CREATE INDEX daa_api_ingest_brin ON data_activity.api_access_logs USING BRIN (ingest_seq);
CREATE INDEX daa_rec_ingest_brin ON data_activity.record_events USING BRIN (ingest_seq);
