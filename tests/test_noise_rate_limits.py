"""Rate limits (issue 15, item 3): at most N messages per destination and per tenant per window;
what is held back is never dropped, and goes as one message that says how many and lists them."""

from __future__ import annotations

import email
import email.policy
from datetime import timedelta

from sqlalchemy import text

from engine import metrics
from engine.cli import main as cli_main
from engine.config import RateLimitConfig
from engine.dispatcher import deliver_due
from engine.noise import release_job
from engine.planner import plan_notifications
from tests.delivery_support import add_dest, insert_alert
from tests.noise_support import mail_app, rows, subjects  # noqa: F401  (mail_app: a fixture)


def one_transition(app, kind: str = "RUNS_THRESHOLD", severity: str = "warn") -> None:
    with app.databases.begin("notify") as conn:
        insert_alert(conn, app.clock.now(), kind=kind, severity=severity)
        plan_notifications(conn, app.config, app.clock.now())


def test_a_flood_to_a_rate_limited_destination_loses_nothing(mail_app, smtp):
    handler, _ = smtp
    app = mail_app
    app.config.rate_limits.destination = RateLimitConfig(messages=3, window=3600)
    with app.databases.begin("notify") as conn:
        add_dest(conn, app.clock.now(), "email", "owner@tenant.example")
    start = app.clock.now()
    held_before = metrics.NOTIFICATIONS_HELD.labels(reason="rate_limit")._value.get()
    # 200 transitions, one planning pass each, one a second.
    for i in range(200):
        one_transition(app, kind=("RUNS_THRESHOLD", "STORAGE_THRESHOLD")[i % 2])
        app.clock.advance(timedelta(seconds=1))
    deliver_due(app)
    assert len(handler.messages) == 3                    # the first three went one by one
    held = rows(app, "status = 'held'")
    assert len(held) == 197 and {r["held_reason"] for r in held} == {"rate_limit"}
    assert {r["release_at"] for r in held} == {start + timedelta(hours=1)}   # the oldest leaves the window
    assert metrics.NOTIFICATIONS_HELD.labels(reason="rate_limit")._value.get() - held_before == 197

    app.clock.current = start + timedelta(hours=1)
    release_job(app)
    assert deliver_due(app).sent == 1
    assert subjects(handler)[-1] == "197 alert updates held back by the message limit"
    body = email.message_from_bytes(handler.messages[-1].original_content,
                                    policy=email.policy.default).get_body(("plain",)).get_content()
    assert "197 alert updates were held back" in body
    assert sum(line.startswith("- ") for line in body.splitlines()) == 50      # grouping.list_max
    assert "147 more are not listed here: `notifyctl notifications --status grouped --json`" in body

    # Every transition is accounted for: sent alone, or grouped into a message that was sent.
    transitions = rows(app, "alert_id IS NOT NULL")
    messages = {r["id"]: r for r in rows(app, "transition = 'group'")}
    assert len(transitions) == 200
    alone = [r for r in transitions if r["status"] == "sent"]
    grouped = [r for r in transitions if r["status"] == "grouped"]
    assert len(alone) == 3 and len(grouped) == 197
    assert all(messages[r["message_id"]]["status"] == "sent" for r in grouped)


def test_what_arrives_while_limited_waits_and_nothing_is_unaccounted(mail_app, smtp):
    handler, _ = smtp
    app = mail_app
    app.config.rate_limits.destination = RateLimitConfig(messages=2, window=600)
    with app.databases.begin("notify") as conn:
        add_dest(conn, app.clock.now(), "email", "owner@tenant.example")
    for minute in range(30):          # one transition a minute for half an hour
        one_transition(app)
        release_job(app)
        deliver_due(app)
        app.clock.advance(timedelta(minutes=1))
    # Per 10 minutes at most 2 messages: 30 minutes, at most 6 (and at least 3: nothing starves).
    sent = rows(app, "alert_id IS NULL OR message_id IS NULL")
    sent = [r for r in sent if r["status"] == "sent"]
    assert 3 <= len(sent) <= 6 and len(handler.messages) == len(sent)
    times = sorted(r["sent_at"] for r in sent)
    assert all(times[i + 2] - times[i] >= timedelta(minutes=10) for i in range(len(times) - 2)), times
    counts = {}
    for r in rows(app, "alert_id IS NOT NULL"):
        key = r["status"] if r["status"] != "held" else f"held:{r['held_reason']}"
        counts[key] = counts.get(key, 0) + 1
    assert sum(counts.values()) == 30 and set(counts) <= {"sent", "grouped", "held:rate_limit"}


def test_the_tenant_limit_spans_its_destinations_and_a_destination_may_override_its_own(mail_app, smtp, config_file,
                                                                                         capsys):
    handler, _ = smtp
    app = mail_app
    app.config.rate_limits.tenant = RateLimitConfig(messages=3, window=3600)
    with app.databases.begin("notify") as conn:
        first = add_dest(conn, app.clock.now(), "email", "a@tenant.example")
        add_dest(conn, app.clock.now(), "email", "b@tenant.example")
    for _ in range(3):
        one_transition(app)
        deliver_due(app)
        app.clock.advance(timedelta(seconds=1))
    assert len(handler.messages) == 3          # 6 rows, the tenant's limit is 3 messages
    assert len(rows(app, "status = 'held'")) == 3

    path = config_file()
    assert cli_main(["--config", str(path), "destinations", "update", first, "--rate-limit", "1/1h"]) == 0
    assert cli_main(["--config", str(path), "destinations", "update", first, "--rate-limit", "lots"]) == 2
    assert "--rate-limit: expected N/WINDOW (such as 10/1h), off or default, got 'lots'" in capsys.readouterr().err
    with app.databases.begin("notify") as conn:
        limit = conn.execute(text("SELECT rate_limit_messages, rate_limit_window FROM notify.destinations "
                                  "WHERE id = :id"), dict(id=first)).one()
    assert tuple(limit) == (1, 3600.0)
