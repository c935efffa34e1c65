"""notifyd's job runner: periodic jobs that tick once across every copy, long-running workers,
database fault handling, and a clean stop.

Periodic jobs (partition maintenance, cleanup, collect, detect) run on APScheduler interval
triggers aligned to the Unix epoch, so every notifyd copy ticks at the same instants. Each tick:

1. skips quietly while a database is known to be down (DatabaseHealth probes it with backoff and
   wakes every job when it answers again);
2. takes the job's advisory lock (`pg_try_advisory_lock`, session level) on a notify connection of
   its own that stays outside any transaction while the job runs (`job_lock`): a copy that does
   not get it skips (another copy is running the job right now);
3. skips when notify.job_runs already holds a run for this tick's slot (another copy ran it a
   moment ago; a short transaction of its own): lock + slot together make "once per interval
   across all copies";
4. runs the job, records the run (ok or error, duration, who) in notify.job_runs in a short
   transaction, then releases the lock. A job's exception is logged and recorded; it never stops
   the daemon.

Workers are long-running loops (issue 4's dispatcher) started in their own thread with a stop
event; one that raises is restarted with backoff. `Supervisor.stop(grace)` stops claiming new
ticks, sets the stop event, and waits up to `grace` for in-flight work.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterator, Optional, Sequence

import psycopg
import sqlalchemy.exc
from sqlalchemy import text
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from engine import metrics
from engine.config import Config
from engine.logging import REDACTOR
from engine.queries import query

log = logging.getLogger("notifyd.scheduler")

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
RAN_BY = f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class PeriodicJob:
    """A job notifyd runs every `interval(config)` seconds; 0 turns it off.

    By default the interval is the `jobs.<name>` config key, so registering a job is one line:
    `PeriodicJob("collect", collect_job)`.
    """

    name: str
    run: Callable[..., object]            # run(app)
    interval: Optional[Callable[[Config], float]] = None

    def interval_of(self, config: Config) -> float:
        if self.interval is not None:
            return float(self.interval(config))
        return float(getattr(config.jobs, self.name))


@dataclass(frozen=True)
class Worker:
    """A long-running loop: run(app, stop_event) returns soon after stop_event is set."""

    name: str
    run: Callable[..., object]


def slot_start(now: datetime, interval: float) -> datetime:
    """The start of the interval-aligned tick `now` falls in (the same instant on every copy)."""
    seconds = (now - EPOCH).total_seconds()
    return datetime.fromtimestamp(math.floor(seconds / interval) * interval, timezone.utc)


def one_line(exc: BaseException) -> str:
    """An exception as one redacted line, fit for a log field or a database column."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return REDACTOR.redact(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[:500]


def is_connection_error(exc: BaseException) -> bool:
    """Could this exception mean the database went away (rather than a bug or bad data)?"""
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return True
    cause = exc.orig if isinstance(exc, sqlalchemy.exc.DBAPIError) else exc
    if isinstance(cause, psycopg.errors.QueryCanceled) or isinstance(cause, psycopg.errors.TransactionRollback):
        return False
    return isinstance(cause, (psycopg.OperationalError, psycopg.InterfaceError)) or isinstance(
        exc, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError))


@contextlib.contextmanager
def job_lock(app, job_name: str, *, wait_seconds: Optional[float] = None) -> Iterator[bool]:
    """Holds the job's advisory lock while the block runs; yields whether it was taken (with
    `wait_seconds`, waits that long for it and raises when it is not free by then).

    A session lock on a pooled connection of its own, not a transaction-scoped one: the tick's
    connection would otherwise sit idle in a transaction for the whole job, and a server's
    idle_in_transaction_session_timeout would end it mid-job, the run going unrecorded. A session
    lock outlives the transaction that took it and would leak to the pool's next user (PITFALLS),
    so it is released in `finally`; when that fails the connection is thrown away, and a dead
    session holds no lock."""
    conn = app.databases.engine("notify").connect()
    locked = False
    try:
        params = {"job_name": job_name}
        if wait_seconds is None:
            locked = bool(conn.execute(query("scheduler", "try_job_lock"), params).scalar())
        else:
            # Local to the transaction that waits: the setting does not stay with the pooled connection.
            conn.execute(text("SELECT set_config('lock_timeout', :timeout, true)"),
                         {"timeout": f"{int(wait_seconds * 1000)}ms"})
            conn.execute(query("scheduler", "wait_job_lock"), params)
            locked = True
        conn.commit()   # out of the transaction: the lock stays, nothing sits idle in a transaction
        yield locked
    finally:
        try:
            if locked:
                conn.execute(query("scheduler", "unlock_job"), {"job_name": job_name})
                conn.commit()
        except Exception:  # noqa: BLE001 - never pool a connection that might still hold the lock
            conn.invalidate()
        conn.close()


# --------------------------------------------------------------------------- database health


@dataclass
class DatabaseState:
    up: bool = True
    error: Optional[str] = None
    down_since: Optional[float] = None    # time.monotonic()
    checked_at: Optional[float] = None


class DatabaseHealth:
    """Knows whether each database answers; logs a change of state once, not once per tick.

    While a database is down it is probed with exponential backoff (1 s doubling up to
    `backoff_max`); when every database answers again, `on_recovered` runs (the supervisor wakes
    every job so nothing waits a whole interval).
    """

    def __init__(self, app, interval: float, backoff_max: float,
                 on_recovered: Callable[[], None] = lambda: None) -> None:
        self.app = app
        self.interval = interval
        self.backoff_max = backoff_max
        self.on_recovered = on_recovered
        self._lock = threading.Lock()
        self.states: dict[str, DatabaseState] = {}

    @staticmethod
    def _name(url: str) -> str:
        return sqlalchemy.engine.make_url(url).database or "?"

    def all_up(self) -> bool:
        with self._lock:
            return all(s.up for s in self.states.values())

    def report(self) -> dict[str, str]:
        with self._lock:
            return {name: "ok" if s.up else f"unreachable: {s.error}" for name, s in self.states.items()}

    def probe(self) -> bool:
        """Probe every database now; returns True when all answer."""
        databases = self.app.databases
        results: dict[str, Optional[str]] = {}
        for url, sections in databases.by_database().items():
            try:
                with databases.begin(sections[0]) as conn:
                    conn.execute(query("scheduler", "probe"))
                results[self._name(url)] = None
            except Exception as exc:  # noqa: BLE001 - any failure to answer is "down"
                results[self._name(url)] = one_line(exc)
        recovered = False
        with self._lock:
            was_all_up = all(s.up for s in self.states.values())
            now = time.monotonic()
            for name, error in results.items():
                state = self.states.setdefault(name, DatabaseState())
                state.checked_at = now
                if error is None and not state.up:
                    log.warning("database %s is reachable again after %.0f s", name, now - (state.down_since or now),
                                extra={"database": name})
                    state.up, state.error, state.down_since = True, None, None
                elif error is not None and state.up:
                    log.error("database %s is unreachable, retrying with backoff: %s", name, error,
                              extra={"database": name})
                    state.up, state.error, state.down_since = False, error, now
                elif error is not None:
                    state.error = error
                metrics.DATABASE_UP.labels(database=name).set(0 if error else 1)
            all_up = all(s.up for s in self.states.values())
            recovered = all_up and not was_all_up
        if recovered:
            self.on_recovered()
        return all_up

    def run(self, stop: threading.Event) -> None:
        """The probe loop: every `interval` while all is well, backing off while something is down."""
        delay, backoff = self.interval, 1.0
        while not stop.wait(delay):
            try:
                healthy = self.probe()
            except Exception:  # noqa: BLE001 - the prober must outlive anything
                log.exception("database health probe failed")
                healthy = False
            if healthy:
                delay, backoff = self.interval, 1.0
            else:
                delay, backoff = backoff, min(backoff * 2, self.backoff_max)


# --------------------------------------------------------------------------- the supervisor


@dataclass
class JobState:
    """What this process knows of a periodic job, for /healthz."""

    interval: float
    scheduled_at: float = field(default_factory=time.monotonic)  # staleness counts from here until a tick
    last_tick: Optional[float] = None       # time.monotonic() of the last finished tick
    last_outcome: Optional[str] = None      # ok | error | skipped
    last_error: Optional[str] = None


class Supervisor:
    def __init__(self, app, jobs: Sequence[PeriodicJob], workers: Sequence[Worker] = ()) -> None:
        names = [j.name for j in jobs] + [w.name for w in workers]
        if len(set(names)) != len(names):
            raise ValueError(f"job and worker names must be unique: {names}")
        self.app = app
        self.jobs = {j.name: j for j in jobs}
        self.workers = list(workers)
        daemon = app.config.daemon
        self.health = DatabaseHealth(app, daemon.health_interval, daemon.reconnect_backoff_max,
                                     on_recovered=self.wake_jobs)
        self.stop_event = threading.Event()
        self.job_states: dict[str, JobState] = {}
        self._inflight = 0
        self._inflight_changed = threading.Condition()
        self._threads: dict[str, threading.Thread] = {}
        self._scheduler = BackgroundScheduler(
            timezone="UTC", executors={"default": ThreadPoolExecutor(max(4, len(jobs) * 2))},
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None})

    # ------------------------------------------------------------------ one tick

    def run_tick(self, job: PeriodicJob) -> str:
        """One tick of `job`: ok, error or skipped. Never raises."""
        with self._inflight_changed:
            if self.stop_event.is_set():
                return "skipped"
            self._inflight += 1
        state = self.job_states.setdefault(job.name, JobState(job.interval_of(self.app.config)))
        try:
            outcome, error = self._tick(job, state)
        except Exception as exc:  # noqa: BLE001 - a job failure never kills the daemon
            outcome, error = "error", one_line(exc)
            # e.g. notify.job_runs missing because `notifyctl db init` was not run: the traceback
            # once, then one line a tick while the error stays the same.
            log.error("job %s: the runner failed: %s", job.name, error, exc_info=error != state.last_error,
                      extra={"job": job.name})
        finally:
            with self._inflight_changed:
                self._inflight -= 1
                self._inflight_changed.notify_all()
        metrics.JOB_RUNS.labels(job=job.name, outcome=outcome).inc()
        state.last_tick, state.last_outcome = time.monotonic(), outcome
        if outcome != "skipped":
            state.last_error = error
        return outcome

    def _tick(self, job: PeriodicJob, state: JobState) -> tuple[str, Optional[str]]:
        if not self.health.all_up():
            return "skipped", None   # quiet while down: the health probe said so once
        app = self.app
        interval = job.interval_of(app.config)
        if interval <= 0:
            return "skipped", None
        started_at = app.clock.now()
        slot = slot_start(started_at, interval)
        try:
            # No transaction stays open while the job runs: the lock is a session's, the slot check
            # and the record are short transactions of their own.
            with job_lock(app, job.name) as locked:
                if not locked:
                    return "skipped", None
                with app.databases.begin("notify") as conn:
                    if conn.execute(query("scheduler", "slot_taken"),
                                    {"job_name": job.name, "slot_start": slot}).scalar():
                        return "skipped", None
                began = time.monotonic()
                error: Optional[str] = None
                try:
                    job.run(app)
                except Exception as exc:  # noqa: BLE001 - recorded, logged, and the daemon goes on
                    error = one_line(exc)
                    if is_connection_error(exc) and not self.health.probe():
                        raise  # the database went away: DatabaseHealth has said so once
                    # The traceback when the error is new; a repeat of the last run's is one line.
                    log.error("job %s failed: %s", job.name, error, exc_info=error != state.last_error,
                              extra={"job": job.name})
                duration = time.monotonic() - began
                with app.databases.begin("notify") as conn:
                    conn.execute(query("scheduler", "record_run"), {
                        "job_name": job.name, "slot_start": slot, "started_at": started_at,
                        "finished_at": app.clock.now(), "status": "error" if error else "ok",
                        "duration_seconds": duration, "error": error, "ran_by": RAN_BY})
        except Exception as exc:
            if is_connection_error(exc):
                self.health.probe()
                log.debug("job %s: database unavailable: %s", job.name, one_line(exc), extra={"job": job.name})
                return "skipped", None
            raise
        metrics.JOB_DURATION.labels(job=job.name).observe(duration)
        if error:
            metrics.JOB_FAILURES.labels(job=job.name).inc()
            return "error", error
        metrics.JOB_LAST_SUCCESS.labels(job=job.name).set(time.time())
        # Debug: a minute's ticks of every job at INFO would drown what matters.
        log.debug("job %s ran in %.3f s", job.name, duration, extra={"job": job.name})
        return "ok", None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.health.probe()
        self._start_thread("health", lambda: self.health.run(self.stop_event))
        for worker in self.workers:
            self._start_thread(worker.name, lambda w=worker: self._run_worker(w))
        self._schedule(self.app.config)
        self._scheduler.start()
        self.wake_jobs()  # the first tick now, not one interval after start

    def _schedule(self, config: Config) -> None:
        for job in self.jobs.values():
            interval = job.interval_of(config)
            state = self.job_states.get(job.name)
            if state is not None and state.interval == interval and (
                    interval <= 0 or self._scheduler.get_job(job.name) is not None):
                continue   # unchanged by a reload: keep its trigger and its health history
            existing = self._scheduler.get_job(job.name)
            if existing is not None:
                existing.remove()
            self.job_states[job.name] = JobState(interval)
            if interval <= 0:
                log.info("job %s is off (interval 0)", job.name, extra={"job": job.name})
                continue
            # Aligned to the epoch: every copy ticks at the same instants, one tick per slot.
            self._scheduler.add_job(self.run_tick, IntervalTrigger(seconds=interval, start_date=EPOCH),
                                    args=[job], id=job.name, name=job.name)

    def wake_jobs(self) -> None:
        """Tick every job now (at start, and when the databases answer again after an outage)."""
        if self.stop_event.is_set() or not self._scheduler.running:
            return
        for job in self.jobs.values():
            if job.interval_of(self.app.config) > 0:
                # Its own id: the periodic job's max_instances must not swallow this tick. Two
                # overlapping ticks of one job meet at the advisory lock and the slot.
                self._scheduler.add_job(self.run_tick, "date", args=[job], id=f"{job.name}:now",
                                        replace_existing=True)

    def apply_config(self, config: Config) -> None:
        """After a reload: new intervals take effect (the jobs read the rest from app.config)."""
        self._schedule(config)

    def _start_thread(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=f"notifyd-{name}", daemon=True)
        self._threads[name] = thread
        thread.start()

    def _run_worker(self, worker: Worker) -> None:
        backoff = 1.0
        while not self.stop_event.is_set():
            began = time.monotonic()
            try:
                worker.run(self.app, self.stop_event)
                if self.stop_event.is_set():
                    return
                log.warning("worker %s returned before stop; restarting", worker.name, extra={"worker": worker.name})
            except Exception as exc:  # noqa: BLE001 - restarted with backoff
                if is_connection_error(exc):
                    self.health.probe()
                    log.debug("worker %s: database unavailable: %s", worker.name, one_line(exc))
                else:
                    log.error("worker %s failed, restarting: %s", worker.name, one_line(exc), exc_info=True,
                              extra={"worker": worker.name})
            metrics.WORKER_RESTARTS.labels(worker=worker.name).inc()
            if time.monotonic() - began > 60:
                backoff = 1.0   # it ran a good while: this is a new failure, not a crash loop
            self.stop_event.wait(backoff)
            backoff = min(backoff * 2, self.app.config.daemon.reconnect_backoff_max)

    def stop(self, grace: float) -> bool:
        """Stop claiming, let in-flight work finish within `grace` seconds; True if it all did."""
        deadline = time.monotonic() + grace
        with self._inflight_changed:
            self.stop_event.set()   # no tick starts after this
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        with self._inflight_changed:
            while self._inflight and time.monotonic() < deadline:
                self._inflight_changed.wait(deadline - time.monotonic())
            finished = self._inflight == 0
        for name, thread in self._threads.items():
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("%s did not stop within the grace period", name, extra={"worker": name})
                finished = False
        if not finished:
            log.warning("in-flight work did not finish within %.0f s", grace)
        return finished

    # ------------------------------------------------------------------ health

    def health_report(self) -> tuple[bool, dict]:
        """(healthy, body) for /healthz: databases answer, the scheduler and workers run, ticks are fresh."""
        databases = self.health.report()
        jobs: dict[str, str] = {}
        now = time.monotonic()
        for name, state in self.job_states.items():
            if state.interval <= 0:
                continue
            since = state.last_tick if state.last_tick is not None else state.scheduled_at
            # Stale: no tick finished for two intervals (and a minute for a slow one).
            if now - since > 2 * state.interval + 60:
                jobs[name] = "stale"
            elif state.last_outcome == "error":
                jobs[name] = f"failing: {state.last_error}"
            else:
                jobs[name] = "ok"
        if not self._scheduler.running and not self.stop_event.is_set():
            jobs["scheduler"] = "stopped"
        for worker in self.workers:
            thread = self._threads.get(worker.name)
            jobs[worker.name] = "ok" if thread is not None and thread.is_alive() else "stopped"
        healthy = (all(v == "ok" for v in databases.values())
                   and all(v == "ok" or v.startswith("failing") for v in jobs.values()))
        return healthy, {"status": "ok" if healthy else "unavailable", "databases": databases, "jobs": jobs}
