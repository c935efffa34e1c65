-- Sampling of api_access_logs (the seed: "enable sampling on api_access_logs, e.g. only 1 in N
-- 200-OKs"). A kept row stands for sample_rate requests, so request counts stay exact in
-- expectation: count requests with sum(sample_rate), never count(*) (docs/SCHEMA.md).
-- A constant default is stored in the catalog: adding it rewrites no partition.
ALTER TABLE data_activity.api_access_logs
  ADD COLUMN sample_rate integer NOT NULL DEFAULT 1 CONSTRAINT api_access_logs_sample_rate_positive CHECK (sample_rate >= 1);
