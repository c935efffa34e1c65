"""Fallback destinations (issue 13, item 5): a notification that fails for good, whose destination
is disabled, or that waits on a paused destination past delivery.fallback_after goes once to the
destination's fallback, saying why; a fallback's own fallback is not followed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from engine.cli import main
from engine.dispatcher import deliver_due
from engine.planner import plan_notifications
from tests.delivery_support import OTHER_TENANT, TENANT, add_dest, insert_alert, notifications


@pytest.fixture
def hook_app(app):
    app.config.channels.webhook.allow_private_networks = True
    return app


def set_fallback(app, destination: str, fallback: str) -> None:
    with app.databases.begin("notify") as conn:
        conn.execute(text("UPDATE notify.destinations SET fallback_id = :f WHERE id = :id"),
                     dict(f=fallback, id=destination))


def posts(receiver, path: str) -> list[dict]:
    return [r.json() for r in receiver.received if r.path == path]


def rows(app) -> list[dict]:
    with app.databases.begin("notify") as conn:
        return notifications(conn)


def test_a_permanent_failure_goes_to_the_fallback_once_and_no_further(hook_app, receiver):
    app, now = hook_app, hook_app.clock.now()
    with app.databases.begin("notify") as conn:
        primary = add_dest(conn, now, "webhook", receiver.url("/status/422"))
        fallback = add_dest(conn, now, "webhook", receiver.url("/status/400"), kinds=["NONE"])
        last = add_dest(conn, now, "webhook", receiver.url("/last"), kinds=["NONE"])
    set_fallback(app, primary, fallback)
    set_fallback(app, fallback, last)          # not followed: a fallback's fallback
    with app.databases.begin("notify") as conn:
        insert_alert(conn, now)
        plan_notifications(conn, app.config, now)
    deliver_due(app)
    deliver_due(app)
    (copy,) = posts(receiver, "/status/400")
    notice = copy["data"]["alert"]["context"]["notice"]
    assert primary in notice and "failed for good: HTTP 422" in notice
    assert copy["type"] == "alert.opened"
    assert posts(receiver, "/last") == []
    (original,) = [r for r in rows(app) if str(r["destination_id"]) == primary]
    (fell_back,) = [r for r in rows(app) if str(r["destination_id"]) == fallback]
    assert fell_back["origin_id"] == original["id"] and fell_back["status"] == "failed"


def test_a_destination_disabled_by_410_hands_its_notifications_to_the_fallback(hook_app, receiver):
    app, now = hook_app, hook_app.clock.now()
    # One row meets the 410; the other is still queued then (one claim of one row at a time).
    app.config.delivery.batch_size, app.config.delivery.workers = 1, 1
    with app.databases.begin("notify") as conn:
        primary = add_dest(conn, now, "webhook", receiver.url("/status/410"))
        fallback = add_dest(conn, now, "webhook", receiver.url("/fallback"), kinds=["NONE"])
    set_fallback(app, primary, fallback)
    with app.databases.begin("notify") as conn:
        for _ in range(2):
            insert_alert(conn, now)
        plan_notifications(conn, app.config, now)
    deliver_due(app)
    copies = posts(receiver, "/fallback")
    assert len(copies) == 2
    notices = sorted(c["data"]["alert"]["context"]["notice"] for c in copies)
    assert "failed for good: HTTP 410" in notices[0] and "is disabled: HTTP 410" in notices[1]
    assert len(posts(receiver, "/status/410")) == 1


def test_a_notification_waiting_on_a_paused_destination_past_fallback_after_goes_to_the_fallback_once(
        hook_app, receiver):
    app, now = hook_app, hook_app.clock.now()
    delivery = app.config.delivery
    delivery.pause_after_failures, delivery.pause_base, delivery.pause_max = 1, 3600, 3600
    delivery.fallback_after = 600
    with app.databases.begin("notify") as conn:
        primary = add_dest(conn, now, "webhook", receiver.url("/status/503"))
        fallback = add_dest(conn, now, "webhook", receiver.url("/fallback"), kinds=["NONE"])
        insert_alert(conn, now)
        plan_notifications(conn, app.config, now)
    set_fallback(app, primary, fallback)
    deliver_due(app)                           # fails once: paused for an hour
    app.clock.advance(timedelta(seconds=599))
    deliver_due(app)
    assert posts(receiver, "/fallback") == []
    app.clock.advance(timedelta(seconds=2))
    deliver_due(app)
    deliver_due(app)
    (copy,) = posts(receiver, "/fallback")
    assert "is paused after 1 failed attempts in a row" in copy["data"]["alert"]["context"]["notice"]
    (original,) = [r for r in rows(app) if str(r["destination_id"]) == primary]
    assert original["status"] == "queued" and original["send_attempts"] == 1   # still waits for its own


def test_destinations_add_takes_a_fallback_of_the_same_tenant_only(config_file, capsys, app):
    cfg = str(config_file())
    now = app.clock.now()
    with app.databases.begin("notify") as conn:
        mine = add_dest(conn, now, "email", "ops@tenant.example")
        theirs = add_dest(conn, now, "email", "ops@other.example", tenant_id=OTHER_TENANT)
    base = ["destinations", "add", "--tenant", TENANT, "--channel", "email", "--target", "a@tenant.example",
            "--config", cfg]
    assert main(base + ["--fallback", theirs]) == 2
    assert f"has no destination {theirs}" in capsys.readouterr().err
    assert main(base + ["--fallback", "x"]) == 2
    assert "--fallback" in capsys.readouterr().err
    assert main(base + ["--fallback", mine]) == 0
    added = capsys.readouterr().out.strip()
    assert main(["destinations", "list", "--json", "--config", cfg, "--tenant", TENANT]) == 0
    import json

    listed = {d["id"]: d for d in json.loads(capsys.readouterr().out)}
    assert listed[added]["fallback_id"] == mine
