"""Start the real notifyd as a subprocess for tests: config on the suite's databases, an HTTP port,
stderr captured as JSON lines. Process-level conditions are polled with a deadline, never slept on.

Used by the daemon's own tests and by the end-to-end tests (`from tests.daemon_harness import ...`).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import pytest

from engine.scheduler import slot_start

NOTIFYD = Path(sys.executable).parent / "notifyd"
DEADLINE = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, what: str, timeout: float = DEADLINE):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def slots_spanned(since: datetime, interval: float) -> int:
    """How many epoch-aligned slots of `interval` seconds the wall clock has touched since `since`
    (1 unless a boundary, such as 00:00 UTC for a daily job, passed meanwhile): what a test of a
    real process may expect of job ticks without depending on the date it runs."""
    now = datetime.now(timezone.utc)
    return int((slot_start(now, interval) - slot_start(since, interval)).total_seconds() // interval) + 1


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


class Daemon:
    def __init__(self, tmp_path: Path, database_urls: dict, extra_yaml: str = "", name: str = "notifyd"):
        self.port = free_port()
        self.config_path = tmp_path / f"{name}.yaml"
        self.write_config(database_urls, extra_yaml)
        self.stderr_path = tmp_path / f"{name}.stderr"
        env = {**os.environ, "NOTIFY_LOG_LEVEL": "INFO"}
        env.pop("NOTIFY_CONFIG", None)
        with open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen([str(NOTIFYD), "--config", str(self.config_path)],
                                            stdout=subprocess.DEVNULL, stderr=stderr, env=env)

    def write_config(self, database_urls: dict | Path, extra_yaml: str) -> None:
        if isinstance(database_urls, Path):   # no databases: the embedded cluster in that directory
            lines = ["embedded:", f"  data_dir: {database_urls}"]
        else:
            lines = ["databases:"] + [f"  {s}: {u}" for s, u in database_urls.items()]
        lines += ["http:", f"  listen: 127.0.0.1:{self.port}"]
        self.config_path.write_text("\n".join(lines) + "\n" + extra_yaml)

    def healthz(self) -> tuple[int, str]:
        return http_get(self.port, "/healthz")

    def metrics(self) -> str:
        status, body = http_get(self.port, "/metrics")
        assert status == 200
        return body

    def wait_healthy(self) -> dict:
        body = wait_for(lambda: self.healthz()[0] == 200 and self.healthz()[1], "/healthz to answer 200")
        return json.loads(body)

    def log_lines(self) -> list[dict]:
        """stderr as JSON records (it is not a terminal); a line still being written is left out."""
        text = self.stderr_path.read_text()
        complete = text if text.endswith("\n") or self.process.poll() is not None else text.rsplit("\n", 1)[0]
        records = []
        for line in complete.splitlines():
            if line.strip():
                try:
                    records.append(json.loads(line))
                except ValueError:
                    raise AssertionError(f"a stderr line of notifyd is not JSON: {line!r}") from None
        return records

    def stop(self, sig=signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=DEADLINE)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def start_daemon(tmp_path, database_urls):
    started: list[Daemon] = []

    def start(extra_yaml: str = "", name: str = "notifyd") -> Daemon:
        daemon = Daemon(tmp_path, database_urls, extra_yaml, name)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.kill()
