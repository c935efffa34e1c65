"""notifyd: runs the engine's periodic jobs and workers in the foreground until SIGTERM or SIGINT.

Start: a bad config is one line on stderr and exit 2 before anything runs; the HTTP endpoint's
address is bound next (a taken port is one line and exit 1), then the databases are opened
(starting the embedded cluster when no databases are configured).

Signals: SIGTERM and SIGINT stop claiming new work and give in-flight work `daemon.shutdown_grace`
to finish, then stop the embedded cluster if this process started it, and exit 0. SIGHUP re-reads
the config file: a bad file is logged and the running config kept; a good one takes effect
(job intervals, plans, tenants, channels, delivery, routes, retention, partitions; the dispatcher
rebuilds its channels, key and limits before its next batch), except the keys that say where
things are (databases, embedded, http, api, and logs, which holds the ingestion listener): those need
a restart and are logged as such (docs/OPERATIONS.md lists every key).
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import signal
import sys
import threading
from typing import Optional, Sequence

from engine import metrics
from engine.app import App
from engine.cli import OneLineUsageParser
from engine.config import Config, load_config
from engine.destinations import check_stored_secrets
from engine.errors import NotifyError
from engine.api.server import start_api_if_configured
from engine.http_server import HttpEndpoint
from engine.jobs import PERIODIC_JOBS, WORKERS
from engine.logging import configure_logging, register_config_secrets
from engine.logwriter.http_ingest import start_ingest_if_configured
from engine.scheduler import Supervisor, one_line

log = logging.getLogger("notifyd")

# Keys that say where things are: changing them means reconnecting everything, so a reload keeps
# the running values and says a restart is needed.
RESTART_ONLY_KEYS = ("databases", "embedded", "http", "logs", "api")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = OneLineUsageParser(prog="notifyd", description="Run the notify-engine daemon in the foreground.")
    parser.add_argument("--config", metavar="PATH", help="config file (default: $NOTIFY_CONFIG, then ./config.yaml)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)  # a bad config stops us before anything runs
    except NotifyError as exc:
        print(f"notifyd: {exc}", file=sys.stderr)
        return exc.exit_code
    configure_logging(os.environ.get("NOTIFY_LOG_LEVEL", "INFO"))
    register_config_secrets(config)

    endpoint = None
    if config.http.listen:
        try:
            # Serving from the start: a probe during a long first start (initdb of the embedded
            # cluster) gets a 503 "starting" rather than a hung connection.
            endpoint = HttpEndpoint(config.http.listen, health=lambda: (False, {"status": "starting"})).start()
        except OSError as exc:
            print(f"notifyd: http.listen {config.http.listen}: cannot listen: {exc.strerror}", file=sys.stderr)
            return 1

    wake = threading.Event()
    stop_requested = threading.Event()
    reload_requested = threading.Event()

    def on_stop(signum, _frame) -> None:
        stop_requested.set()
        wake.set()

    def on_reload(_signum, _frame) -> None:
        reload_requested.set()
        wake.set()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_reload)

    try:
        app = App(config, application_name="notifyd").open()
    except Exception as exc:  # noqa: BLE001 - one line, exit 1 (2 for bad input)
        if endpoint is not None:
            endpoint.stop()
        reason = str(exc) if isinstance(exc, NotifyError) else f"cannot open the databases: {one_line(exc)}"
        print(f"notifyd: {reason}", file=sys.stderr)
        return exc.exit_code if isinstance(exc, NotifyError) else 1
    try:
        # Encrypted destination secrets no configured key decrypts would hold every such
        # notification: refuse to start, naming the key, rather than run without delivering.
        with app.databases.begin("notify") as conn:
            warning = check_stored_secrets(conn, app.config)
        if warning:
            log.warning("%s", warning)
    except NotifyError as exc:
        app.close()
        if endpoint is not None:
            endpoint.stop()
        print(f"notifyd: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - a database down at start is survived like later
        log.warning("destination secrets not checked at start: %s", one_line(exc))

    supervisor = Supervisor(app, PERIODIC_JOBS, WORKERS)
    state_collector = metrics.DatabaseStateCollector(lambda: app._databases, app.clock.now)
    metrics.REGISTRY.register(state_collector)
    finished = True
    ingest = api = None
    try:
        ingest = start_ingest_if_configured(app)  # log ingestion, its own listener (logs.ingest)
        api = start_api_if_configured(app)        # the HTTP API, its own listener (api.listen)
        supervisor.start()
        if endpoint is not None:
            endpoint.set_health(supervisor.health_report)
        log.info("notifyd running: jobs %s, workers %s", ", ".join(supervisor.jobs) or "none",
                 ", ".join(w.name for w in supervisor.workers) or "none")
        # What start-up built (modules, the API's routes, compiled queries) lives as long as the
        # process: frozen, the collector's full passes stop walking it again and again (they
        # cost several ms a 1,000-alert POST /api/v2/alerts batch).
        gc.collect()
        gc.freeze()
        while not stop_requested.is_set():
            wake.wait(1.0)
            wake.clear()
            if reload_requested.is_set() and not stop_requested.is_set():
                reload_requested.clear()
                reload_config(app, supervisor, args.config)
        grace = app.config.daemon.shutdown_grace
        log.info("stopping: no new work; in-flight work has %.0f s to finish", grace)
        finished = supervisor.stop(grace)
    finally:
        if api is not None:
            api.stop()
        if ingest is not None:
            ingest.stop()  # writes what it buffered before the databases close
        if endpoint is not None:
            endpoint.stop()
        metrics.REGISTRY.unregister(state_collector)
        app.close()   # stops the embedded cluster if this process started it
        log.info("notifyd stopped")
    if not finished:
        # Work still running past the grace period belongs to threads that cannot be interrupted;
        # its open transactions roll back when the process ends, so nothing committed is lost.
        logging.shutdown()
        os._exit(0)
    return 0


def reload_config(app: App, supervisor: Supervisor, path: Optional[str]) -> bool:
    """SIGHUP: validate the file again and apply it; a bad file changes nothing."""
    try:
        fresh = load_config(path)
    except NotifyError as exc:
        log.error("config reload refused, keeping the running config: %s", exc)
        return False
    running: Config = app.config
    kept = {key: getattr(running, key) for key in RESTART_ONLY_KEYS}
    changed = [key for key, value in kept.items() if getattr(fresh, key) != value]
    if changed:
        log.warning("config reload: %s changed; restart notifyd for that to take effect", ", ".join(changed))
    merged = dataclasses.replace(fresh, **kept)
    register_config_secrets(merged)
    app.config = merged
    supervisor.apply_config(merged)
    log.info("config reloaded from %s", merged.source)
    return True
