-- name: queue
-- Queued notifications: how many, and the oldest (seed columns only: status, created_at).
SELECT count(*) AS depth, min(created_at) AS oldest_queued_at
FROM notify.notifications
WHERE status = 'queued';

-- name: failures_since
-- Notifications that ended failed with their last attempt at or after :since.
SELECT count(*) AS failed
FROM notify.notifications
WHERE status = 'failed' AND last_attempt_at >= :since;

-- name: job_errors_since
-- Job runs that raised, started at or after :since.
SELECT count(*) AS errors
FROM notify.job_runs
WHERE status = 'error' AND started_at >= :since;

-- name: last_job_runs
-- The latest run of each job, by any notifyd copy.
SELECT DISTINCT ON (job_name)
       job_name, slot_start, started_at, finished_at, status, duration_seconds, error, ran_by
FROM notify.job_runs
ORDER BY job_name, started_at DESC;
