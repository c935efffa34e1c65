"""A reload (SIGHUP's `reload_config`) reaches the running dispatcher: the SSRF guard, the secret
key and the routes of the new config.yaml apply to the next batch, without a restart.

notifyd's own parts run here: the Supervisor with the dispatcher worker in its thread, and the
daemon's reload function, against the suite's PostgreSQL and a webhook receiver on loopback. Each
step waits on the notification's recorded status (bounded poll), never on a fixed sleep.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from channels.webhook import sign
from engine.app import App
from engine.config import load_config
from engine.daemon import reload_config
from engine.jobs import dispatcher_worker
from engine.planner import plan_notifications
from engine.scheduler import Supervisor, Worker
from engine.secretbox import SecretBox
from tests.daemon_harness import start_daemon, wait_for  # noqa: F401 - start_daemon is a fixture
from tests.delivery_support import OTHER_TENANT, HttpServer, add_dest, insert_alert, webhook_responder

SSRF_REFUSAL = "target refused: address is loopback"
SIGNING_SECRET = "whsec_c2VjcmV0LXZhbHVlLWZvci1yZWxvYWQ="


def settings(*, allow_private: bool = True, key: str | None = None, routes: str = "", batch_size: int = 500,
             read_timeout: str = "10s") -> str:
    return (f"channels:\n  webhook:\n    allow_private_networks: {str(allow_private).lower()}\n"
            f"    read_timeout: {read_timeout}\n"
            + (f"    secret_key: {key}\n" if key else "")
            + f"delivery:\n  poll_interval: 200ms\n  batch_size: {batch_size}\n  workers: 1\n  max_attempts: 1\n"
            + routes)


class Notifyd:
    """The daemon's delivery side in this process: App, Supervisor, dispatcher worker, reload."""

    def __init__(self, config_file, clock, yaml: str):
        self.config_file = config_file
        self.path = config_file(yaml)
        self.app = App(load_config(self.path), clock).open()
        self.supervisor = Supervisor(self.app, [], [Worker("dispatcher", dispatcher_worker)])
        self.supervisor.start()

    def warm_up(self, receiver) -> None:
        """One delivery (another tenant, its own destination): the dispatcher is running with
        the config it started with, so a reload after this must reach a live dispatcher."""
        with self.app.databases.begin("notify") as conn:
            add_dest(conn, self.app.clock.now(), "webhook", receiver.url("/warm-up"), tenant_id=OTHER_TENANT)
        assert self.settled(self.queue_alert(tenant_id=OTHER_TENANT))["status"] == "sent"

    def reload(self, yaml: str) -> None:
        self.config_file(yaml)   # rewrites the same config.yaml
        assert reload_config(self.app, self.supervisor, str(self.path))

    def queue_alert(self, **alert) -> str:
        """One open alert, planned with the running config; returns the alert id."""
        now: datetime = self.app.clock.now()
        with self.app.databases.begin("notify") as conn:
            alert_id = insert_alert(conn, now, **alert)
            plan_notifications(conn, self.app.config, now)
        return alert_id

    def settled(self, alert_id: str) -> dict:
        """The alert's one notification once the dispatcher has recorded an outcome."""
        def outcome():
            with self.app.databases.begin("notify") as conn:
                row = conn.execute(text("SELECT * FROM notify.notifications WHERE alert_id = :a"),
                                   dict(a=alert_id)).mappings().one_or_none()
            return dict(row) if row is not None and row["status"] != "queued" else None
        return wait_for(outcome, f"the notification of alert {alert_id} to be settled")

    def stop(self) -> None:
        assert self.supervisor.stop(10)
        self.app.close()


@pytest.fixture
def start_notifyd(config_file, clock):
    started: list[Notifyd] = []

    def start(yaml: str) -> Notifyd:
        daemon = Notifyd(config_file, clock, yaml)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


def add_destination(daemon: Notifyd, url: str, *, secret_ciphertext: str | None = None) -> None:
    with daemon.app.databases.begin("notify") as conn:
        add_dest(conn, daemon.app.clock.now(), "webhook", url, secret_ciphertext=secret_ciphertext)


def test_turning_allow_private_networks_off_refuses_the_next_loopback_delivery(start_notifyd, receiver):
    daemon = start_notifyd(settings(allow_private=True))
    add_destination(daemon, receiver.url("/ok"))
    assert daemon.settled(daemon.queue_alert())["status"] == "sent"

    daemon.reload(settings(allow_private=False))
    refused = daemon.settled(daemon.queue_alert())
    assert (refused["status"], refused["error"]) == ("failed", SSRF_REFUSAL)
    assert len(receiver.received) == 1     # nothing reached the receiver after the reload


def test_a_route_added_by_a_reload_is_delivered_not_skipped(start_notifyd, receiver):
    daemon = start_notifyd(settings())
    daemon.warm_up(receiver)
    daemon.reload(settings(routes=f"routes:\n  - {{name: ops, channel: webhook, target: '{receiver.url('/ops')}'}}\n"))
    row = daemon.settled(daemon.queue_alert())
    assert (row["route_key"], row["status"], row["error"]) == ("route:ops", "sent", None)
    assert [r.path for r in receiver.received] == ["/warm-up", "/ops"]


def test_a_new_secret_key_decrypts_destination_secrets_after_a_reload(start_notifyd, receiver):
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    daemon = start_notifyd(settings(key=old_key))
    daemon.warm_up(receiver)
    daemon.reload(settings(key=new_key))
    add_destination(daemon, receiver.url("/ok"), secret_ciphertext=SecretBox(new_key).encrypt(SIGNING_SECRET))
    row = daemon.settled(daemon.queue_alert())
    assert (row["status"], row["error"]) == ("sent", None)
    request = receiver.received[-1]
    headers = request.headers
    assert headers["webhook-signature"] == sign(SIGNING_SECRET, headers["webhook-id"],
                                                int(headers["webhook-timestamp"]), request.body)


def test_a_shorter_read_timeout_applies_after_a_reload(start_notifyd, receiver):
    daemon = start_notifyd(settings(read_timeout="1h"))
    daemon.warm_up(receiver)
    daemon.reload(settings(read_timeout="300ms"))
    add_destination(daemon, receiver.url("/hang"))   # answers only when the receiver stops
    row = daemon.settled(daemon.queue_alert())
    assert (row["status"], row["error"]) == ("failed", "gave up after 1 attempts: timed out")


def test_a_reload_during_a_pass_applies_from_the_next_batch(start_notifyd):
    """Under a steady backlog the pass never goes idle: the reload must still reach the next batch."""
    daemon: Notifyd

    async def reload_on_first_request(request, body):
        if len(receiver.received) == 1:
            daemon.reload(settings(allow_private=False, batch_size=1))
        return await webhook_responder(request, body)

    receiver = HttpServer(reload_on_first_request).start()
    try:
        daemon = start_notifyd(settings(allow_private=True, batch_size=1))
        add_destination(daemon, receiver.url("/ok"))
        now = daemon.app.clock.now()
        with daemon.app.databases.begin("notify") as conn:   # both due at once: two batches of one
            alerts = [insert_alert(conn, now), insert_alert(conn, now)]
            plan_notifications(conn, daemon.app.config, now)
        outcomes = sorted((daemon.settled(a)["status"], daemon.settled(a)["error"]) for a in alerts)
        assert outcomes == [("failed", SSRF_REFUSAL), ("sent", None)]
        assert len(receiver.received) == 1
    finally:
        receiver.stop()


def test_sighup_to_a_running_notifyd_turns_the_ssrf_guard_back_on(start_daemon, database_urls, databases, receiver):
    """The same through the real process and signal: notifyd as a subprocess, SIGHUP, next send."""
    import signal
    from datetime import timezone

    quiet_jobs = "jobs:\n  collect: 0\n  detect: 0\n  maintenance: 0\n  cleanup: 0\n  plan: 0\n"
    daemon = start_daemon(settings(allow_private=True) + quiet_jobs)
    daemon.wait_healthy()

    def queue_and_settle() -> dict:
        now = datetime.now(timezone.utc)
        with databases.begin("notify") as conn:
            alert_id = insert_alert(conn, now)
            plan_notifications(conn, load_config(daemon.config_path), now)

        def settled():
            with databases.begin("notify") as conn:
                row = conn.execute(text("SELECT status, error FROM notify.notifications WHERE alert_id = :a"),
                                   dict(a=alert_id)).mappings().one()
            return dict(row) if row["status"] != "queued" else None
        return wait_for(settled, "the notification to be settled")

    with databases.begin("notify") as conn:
        add_dest(conn, datetime.now(timezone.utc), "webhook", receiver.url("/ok"))
    assert queue_and_settle() == {"status": "sent", "error": None}

    daemon.write_config(database_urls, settings(allow_private=False) + quiet_jobs)
    daemon.process.send_signal(signal.SIGHUP)
    wait_for(lambda: any(line["msg"].startswith("config reloaded") for line in daemon.log_lines()), "the reload")
    assert queue_and_settle() == {"status": "failed", "error": SSRF_REFUSAL}
    assert len(receiver.received) == 1
    assert daemon.stop() == 0
