-- notifyd's scheduled jobs (issue 5): one row per run of a periodic job, across every notifyd copy.
--
-- A run claims its tick's slot (the interval-aligned instant `slot_start`) inside the job's
-- advisory transaction lock; UNIQUE (job_name, slot_start) makes "a tick runs once across all
-- copies" hold even if two copies were to disagree about the lock. The latest row per job is what
-- `notifyctl status` and /healthz read; the cleanup job trims old rows (retention.job_runs).
-- Not tenant data: it stays on the coordinator when the notify DB is distributed (docs/SCALING.md).
CREATE TABLE notify.job_runs (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  job_name         text NOT NULL,
  slot_start       timestamptz NOT NULL,         -- the tick this run belongs to (interval-aligned)
  started_at       timestamptz NOT NULL,
  finished_at      timestamptz NOT NULL,
  status           text NOT NULL CHECK (status IN ('ok', 'error')),
  duration_seconds double precision NOT NULL,
  error            text,                         -- one line, redacted; never a secret
  ran_by           text NOT NULL,                -- host:pid of the notifyd copy that ran it
  UNIQUE (job_name, slot_start)
);

CREATE INDEX not_job_runs_latest ON notify.job_runs (job_name, started_at DESC);

-- The queue's depth and its oldest entry (notifyctl status, /metrics) without a scan of every
-- delivery ever recorded: queued rows are few, delivered ones are many.
CREATE INDEX not_note_queued_created ON notify.notifications (created_at) WHERE status = 'queued';
