"""The real notifyd process: started as a subprocess on the suite's PostgreSQL with short intervals.

Process-level conditions are polled with a deadline (never a fixed sleep); no test asserts how long
anything took.
"""

from __future__ import annotations

import json
import os
import signal
from datetime import datetime, timezone
from pathlib import Path

import psycopg

from tests.daemon_harness import DEADLINE, Daemon, slots_spanned, start_daemon, wait_for  # noqa: F401 - start_daemon is a fixture

FAST_JOBS = "jobs:\n  cleanup: 1s\n  maintenance: 1d\ndaemon:\n  health_interval: 500ms\n  shutdown_grace: 5s\n"


def job_runs(database_urls, job: str) -> list[tuple]:
    with psycopg.connect(database_urls["notify"]) as conn:
        return conn.execute("SELECT slot_start, status, ran_by, started_at FROM notify.job_runs "
                            "WHERE job_name = %s ORDER BY slot_start", [job]).fetchall()


def test_healthz_metrics_and_sigterm_exit_0(start_daemon, database_urls):
    daemon = start_daemon(FAST_JOBS)
    body = daemon.wait_healthy()
    assert body["status"] == "ok"
    assert set(body["jobs"]) == {"collect", "detect", "maintenance", "cleanup", "plan", "release", "dispatcher",
                                 "detect-on-push"}
    wait_for(lambda: len(job_runs(database_urls, "cleanup")) >= 2, "two cleanup ticks")
    text = daemon.metrics()
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    assert names and all(name.startswith("notify_") for name in names)
    assert 'notify_job_runs_total{job="cleanup",outcome="ok"}' in text
    assert "notify_queue_depth 0.0" in text
    assert "notify_job_duration_seconds_bucket" in text
    assert 'notify_database_up{database=' in text
    assert daemon.stop(signal.SIGTERM) == 0
    lines = daemon.log_lines()          # stderr is not a terminal: JSON lines
    assert any(line["msg"] == "notifyd stopped" for line in lines)
    assert not [line for line in lines if line["level"] == "error"]


def test_sigint_also_stops_cleanly(start_daemon):
    daemon = start_daemon(FAST_JOBS)
    daemon.wait_healthy()
    assert daemon.stop(signal.SIGINT) == 0


def test_a_bad_config_exits_2_with_one_line_before_anything_runs(tmp_path, database_urls, start_daemon):
    daemon = start_daemon("jobs:\n  cleanup: soon\n")
    assert daemon.process.wait(timeout=DEADLINE) == 2
    stderr = daemon.stderr_path.read_text().strip().splitlines()
    assert len(stderr) == 1
    assert "jobs.cleanup" in stderr[0] and "duration" in stderr[0]
    assert job_runs(database_urls, "maintenance") == []
    assert daemon.healthz()[0] == 0     # nothing listened


def test_two_daemons_run_each_tick_once(start_daemon, database_urls):
    started = datetime.now(timezone.utc)
    first = start_daemon(FAST_JOBS, name="first")
    second = start_daemon(FAST_JOBS, name="second")
    first.wait_healthy()
    second.wait_healthy()
    wait_for(lambda: len(job_runs(database_urls, "cleanup")) >= 4, "four cleanup ticks")
    skipped_somewhere = wait_for(
        lambda: any('notify_job_runs_total{job="cleanup",outcome="skipped"}' in d.metrics() for d in (first, second)),
        "a daemon to skip a tick the other ran")
    assert skipped_somewhere
    assert first.stop() == 0 and second.stop() == 0
    # The daily maintenance tick: both daemons ticked it at start, one ran it (two slots, each run
    # once, when the test ran across 00:00 UTC).
    maintenance = [slot for slot, _, _, _ in job_runs(database_urls, "maintenance")]
    assert 1 <= len(maintenance) <= slots_spanned(started, 86400)
    assert len(maintenance) == len(set(maintenance))
    cleanup = job_runs(database_urls, "cleanup")
    assert all(status == "ok" for _, status, _, _ in cleanup)
    slots = [slot for slot, _, _, _ in cleanup]
    assert len(slots) == len(set(slots))
    # Neither daemon ever collided with the other (a duplicate slot would be an error logged).
    for daemon in (first, second):
        assert not [line for line in daemon.log_lines() if line["level"] == "error"], daemon.stderr_path.read_text()


def test_terminated_database_backends_are_survived(start_daemon, database_urls):
    daemon = start_daemon(FAST_JOBS)
    daemon.wait_healthy()
    wait_for(lambda: job_runs(database_urls, "cleanup"), "a cleanup tick")
    with psycopg.connect(database_urls["notify"], autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = 'notifyd'").fetchone()[0]
        assert killed >= 1
        after = admin.execute("SELECT now()").fetchone()[0]
    wait_for(lambda: [r for r in job_runs(database_urls, "cleanup") if r[3] > after and r[1] == "ok"],
             "an ok cleanup tick after the backends were terminated")
    assert daemon.wait_healthy()["status"] == "ok"
    assert daemon.stop() == 0


def test_sighup_keeps_the_running_config_when_the_new_one_is_bad(start_daemon, database_urls):
    daemon = start_daemon(FAST_JOBS)
    daemon.wait_healthy()
    daemon.write_config(database_urls, "jobs:\n  cleanup: never\n")
    daemon.process.send_signal(signal.SIGHUP)
    wait_for(lambda: any("reload refused" in line["msg"] for line in daemon.log_lines()), "the refusal to be logged")
    daemon.write_config(database_urls, FAST_JOBS.replace("cleanup: 1s", "cleanup: 0"))
    daemon.process.send_signal(signal.SIGHUP)
    wait_for(lambda: any(line["msg"].startswith("config reloaded") for line in daemon.log_lines()), "the reload")
    body = daemon.wait_healthy()
    assert "cleanup" not in body["jobs"]      # interval 0: the job is off
    assert daemon.stop() == 0



def test_a_postgresql_restart_is_logged_once_survived_and_sigterm_stops_the_cluster_notifyd_started(tmp_path):
    import shutil
    import tempfile

    from engine.embedded import EmbeddedCluster, find_bin_dir

    # No databases configured: notifyd starts the embedded cluster under data_dir itself. The
    # directory must be enterable by the cluster's unprivileged user.
    root = Path(tempfile.mkdtemp(prefix="ne-d5-"))
    root.chmod(0o755)
    data_dir = root / "pg"
    cluster = EmbeddedCluster(data_dir, find_bin_dir(os.environ.get("NOTIFY_PG_BIN")),
                              "postgres" if os.geteuid() == 0 else None)
    daemon = Daemon(tmp_path, data_dir, "jobs:\n  cleanup: 1s\n"
                    "daemon:\n  health_interval: 200ms\n  reconnect_backoff_max: 1s\n", name="embedded")
    try:
        daemon.wait_healthy()
        url = cluster.url("notify")
        wait_for(lambda: job_runs({"notify": url}, "cleanup"), "a cleanup tick")

        cluster.stop()                                             # the server goes away
        status, body = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(daemon.healthz()), "/healthz 503")
        assert "unreachable" in json.loads(body)["databases"]["notify"]
        cluster._start()                                           # and comes back
        restarted = datetime.now(timezone.utc)
        wait_for(lambda: [r for r in job_runs({"notify": url}, "cleanup") if r[3] > restarted and r[1] == "ok"],
                 "an ok cleanup tick after the restart")
        assert daemon.wait_healthy()["status"] == "ok"

        assert daemon.stop() == 0
        assert not cluster.is_running()                            # notifyd started it, notifyd stopped it
        messages = [line["msg"] for line in daemon.log_lines()]
        # Each database's outage is logged once, not once per tick or probe.
        assert len([m for m in messages if m.startswith("database notify is unreachable")]) == 1
        assert len([m for m in messages if m.startswith("database notify is reachable again")]) == 1
    finally:
        daemon.kill()
        if cluster.is_running():
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_notifyd_serves_log_ingestion_when_configured_and_writes_before_it_stops(start_daemon, database_urls):
    import httpx

    from tests.daemon_harness import free_port

    port = free_port()
    daemon = start_daemon(FAST_JOBS + f"logs:\n  ingest: {{listen: '127.0.0.1:{port}', token: s3cret-token}}\n")
    daemon.wait_healthy()
    line = json.dumps({"tenant_id": "6f1c2d3e-0000-4000-8000-000000000001", "action": "PLAN_CHANGE",
                       "occurred_at": "2026-11-25T10:00:00+00:00"})
    url = f"http://127.0.0.1:{port}/v1/logs/portal_log.portal_events"
    refused = httpx.post(url, content=line, headers={"Authorization": "Bearer wrong"}, trust_env=False)
    assert refused.status_code == 401
    accepted = httpx.post(url, content=line, headers={"Authorization": "Bearer s3cret-token"}, trust_env=False)
    assert accepted.status_code == 200 and accepted.json()["accepted"] == 1
    assert daemon.stop(signal.SIGTERM) == 0
    with psycopg.connect(database_urls["portal_log"]) as conn:
        assert conn.execute("SELECT count(*) FROM portal_log.portal_events").fetchone()[0] == 1
    assert "s3cret-token" not in daemon.stderr_path.read_text()


def test_notifyd_serves_the_api_on_api_listen_with_tokens_from_notifyctl(start_daemon, database_urls):
    import contextlib
    import io

    import httpx

    from engine.cli import main as notifyctl
    from tests.daemon_harness import free_port

    port = free_port()
    daemon = start_daemon(FAST_JOBS + f"api:\n  listen: '127.0.0.1:{port}'\n")
    daemon.wait_healthy()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert notifyctl(["tokens", "add", "--name", "billing", "--scope", "events",
                          "--config", str(daemon.config_path)]) == 0
    token = out.getvalue().strip()
    event = {"action": "trigger", "tenant_id": "6f1c2d3e-0000-4000-8000-000000000001", "kind": "PAYMENT_FAILED"}
    answer = httpx.post(f"http://127.0.0.1:{port}/v1/events", json=event,
                        headers={"Authorization": f"Bearer {token}"}, trust_env=False, timeout=10)
    assert answer.status_code == 202, answer.text
    assert daemon.stop(signal.SIGTERM) == 0
    with psycopg.connect(database_urls["notify"]) as conn:
        assert conn.execute("SELECT context->>'raised_by' FROM notify.alerts").fetchone()[0] == "billing"
    assert token not in daemon.stderr_path.read_text()
