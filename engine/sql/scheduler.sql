-- name: try_job_lock
-- The job's advisory lock, keyed by a hash of the job's name. Session level, held while the job
-- runs on a connection outside any transaction (engine/scheduler.py, job_lock), so a server's
-- idle_in_transaction_session_timeout cannot end it; job_lock releases it (unlock_job) or, when
-- that fails, closes the connection, so it never leaks to the pool's next user.
SELECT pg_try_advisory_lock(hashtextextended('notifyd.job:' || :job_name, 0)) AS locked;

-- name: wait_job_lock
-- The same lock, waited for (bounded by the caller's lock_timeout): the detection pass a pushed
-- snapshot wakes must run after a pass already in progress, which may have started before that
-- snapshot committed, rather than be skipped.
SELECT pg_advisory_lock(hashtextextended('notifyd.job:' || :job_name, 0));

-- name: unlock_job
SELECT pg_advisory_unlock(hashtextextended('notifyd.job:' || :job_name, 0));

-- name: slot_taken
-- Has any notifyd copy already run this job for this tick (or a later one)?
SELECT EXISTS (
  SELECT 1 FROM notify.job_runs
  WHERE job_name = :job_name AND slot_start >= :slot_start
) AS taken;

-- name: record_run
-- One row per run; the unique (job_name, slot_start) backs up the lock.
INSERT INTO notify.job_runs (job_name, slot_start, started_at, finished_at, status, duration_seconds, error, ran_by)
VALUES (:job_name, :slot_start, :started_at, :finished_at, :status, :duration_seconds, :error, :ran_by);

-- name: probe
-- Health probe: the database answers.
SELECT 1;
