"""notifyd: runs the engine's periodic jobs in the foreground until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Optional, Sequence

from apscheduler.schedulers.background import BackgroundScheduler

from engine.app import App
from engine.config import load_config
from engine.errors import NotifyError
from engine.jobs import collect_job, detect_job, maintenance_job

log = logging.getLogger("notifyd")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="notifyd", description="Run the notify-engine daemon in the foreground.")
    parser.add_argument("--config", metavar="PATH", help="config file (default: $NOTIFY_CONFIG, then ./config.yaml)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config)  # a bad config stops us before anything runs
    except NotifyError as exc:
        print(f"notifyd: {exc}", file=sys.stderr)
        return exc.exit_code

    stop = threading.Event()

    def request_stop(signum, _frame) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    try:
        app = App(config, application_name="notifyd").open()
    except NotifyError as exc:
        print(f"notifyd: {exc}", file=sys.stderr)
        return exc.exit_code
    scheduler = BackgroundScheduler(timezone="UTC")
    try:
        job_defaults = dict(max_instances=1, coalesce=True, misfire_grace_time=None)
        scheduler.add_job(maintenance_job, "interval", args=[app], seconds=config.jobs.maintenance,
                          id="maintenance", next_run_time=app.clock.now(), **job_defaults)
        scheduler.add_job(collect_job, "interval", args=[app], seconds=config.jobs.collect,
                          id="collect", next_run_time=app.clock.now(), **job_defaults)
        scheduler.add_job(detect_job, "interval", args=[app], seconds=config.jobs.detect,
                          id="detect", next_run_time=app.clock.now(), **job_defaults)
        scheduler.start()
        log.info("notifyd running")
        stop.wait()
    finally:
        scheduler.shutdown(wait=True)
        app.close()
        log.info("notifyd stopped")
    return 0
