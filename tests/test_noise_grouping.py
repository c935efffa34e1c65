"""Grouping (issue 15, item 1): transitions that share a group key become one message, a notification
row like any other (claimed, retried, ledgered), and every member links to it."""

from __future__ import annotations

import email
import email.policy
import json
import threading
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import text

from engine.collectors.push import record_snapshots
from engine.config import RouteConfig
from engine.destinations import add_destination
from engine.detect import run_detection
from engine.dispatcher import deliver_due
from engine.noise import release_held, release_job
from engine.planner import plan_notifications
from engine.queries import query
from tests.delivery_support import TENANT, add_dest, insert_alert
from tests.noise_support import mail_app, rows  # noqa: F401  (mail_app: a fixture)

BASES = [str(uuid.UUID(int=0x6F1C0000_0000_4000_8000_000000000100 + i)) for i in range(10)]


def parsed(envelope) -> email.message.EmailMessage:
    return email.message_from_bytes(envelope.original_content, policy=email.policy.default)


def test_ten_bases_crossing_80_percent_in_one_detection_pass_make_one_email_listing_ten(mail_app, smtp):
    handler, _ = smtp
    app = mail_app
    app.config.plans["default"].runs_used = 1000
    with app.databases.begin("notify") as conn:
        add_destination(conn, app.config, app.clock.now(), tenant_id=TENANT, channel="email",
                        target="owner@tenant.example")
    record_snapshots(app, [{"tenant_id": TENANT, "base_id": base, "metric": "runs_used", "value": 850}
                           for base in BASES])
    run_detection(app)

    members = rows(app, "transition = 'opened'")
    (message,) = rows(app, "transition = 'group'")
    assert len(members) == 10
    assert {m["status"] for m in members} == {"grouped"}
    assert {m["message_id"] for m in members} == {message["id"]}
    assert message["alert_id"] is None and message["status"] == "queued"
    assert message["group_key"] == f"tenant={TENANT}|kind=RUNS_THRESHOLD"

    assert deliver_due(app).sent == 1
    (envelope,) = handler.messages
    mail = parsed(envelope)
    assert mail["Subject"] == "10 runs quota alerts"
    body = mail.get_body(("plain",)).get_content()
    listed = [line for line in body.splitlines() if line.startswith("- ")]
    assert len(listed) == 10
    # Each line is its own kind's words (the subject of a single RUNS_THRESHOLD email), per base.
    assert all("You have used 85 % of your monthly runs (base " in line for line in listed)
    assert {base[:8] for base in BASES} == {line.split("(base ")[1][:8] for line in listed}
    html = mail.get_body(("html",)).get_content()
    assert html.count("<li ") == 10
    assert rows(app, "transition = 'group'")[0]["status"] == "sent"


def test_a_single_transition_is_queued_at_once_without_a_wrapper(mail_app, smtp):
    handler, _ = smtp
    app = mail_app
    with app.databases.begin("notify") as conn:
        add_dest(conn, app.clock.now(), "email", "owner@tenant.example")
        insert_alert(conn, app.clock.now())
        plan_notifications(conn, app.config, app.clock.now())
    (row,) = rows(app)
    assert row["status"] == "queued" and row["message_id"] is None
    assert deliver_due(app).sent == 1 and len(handler.messages) == 1


def ops_slack_route(**overrides) -> RouteConfig:
    return RouteConfig(name="ops-slack", channel="slack", target="COPS", **overrides)


def test_a_burst_to_an_ops_slack_route_becomes_a_handful_of_messages_with_every_member_linked(slack_app, slack_server):
    app = slack_app
    app.config.routes = [ops_slack_route()]
    start = app.clock.now()
    # 300 tenants' payments fail within 10 seconds, 30 a second, 2 of each 30 critical.
    for second in range(10):
        with app.databases.begin("notify") as conn:
            for i in range(30):
                insert_alert(conn, app.clock.now(), tenant_id=str(uuid.uuid4()), kind="PAYMENT_FAILED",
                             severity="critical" if i < 2 else "warn")
            plan_notifications(conn, app.config, app.clock.now())
        app.clock.advance(timedelta(seconds=1))
    assert {r["status"] for r in rows(app)} == {"held"}
    assert deliver_due(app).sent == 0          # nothing goes before group_wait (30s)
    app.clock.current = start + timedelta(seconds=30)
    release_job(app)
    assert deliver_due(app).sent == 2          # kind+severity: warn and critical
    members = rows(app, "transition = 'opened'")
    messages = {r["id"]: r for r in rows(app, "transition = 'group'")}
    assert len(members) == 300 and {m["status"] for m in members} == {"grouped"}
    assert {m["message_id"] for m in members} == set(messages)
    assert sorted(m["group_key"] for m in messages.values()) == ["kind=PAYMENT_FAILED|severity=critical",
                                                                  "kind=PAYMENT_FAILED|severity=warn"]
    posts = [json.loads(r.body) for r in slack_server.received]
    warn = next(p for p in posts if p["text"].startswith("280"))
    assert warn["text"] == "280 failed payment alerts" and warn["channel"] == "COPS"
    lines = [line for b in warn["blocks"] if b["type"] == "section" and "•" in b["text"]["text"]
             for line in b["text"]["text"].splitlines()]
    assert len(lines) == 50                                         # grouping.list_max
    assert all(line.startswith("• Your payment failed · workspace ") for line in lines)   # tenants named
    assert "230 more are not listed here" in json.dumps(warn["blocks"])

    # A later transition of the same group joins the next message after group_interval (5m).
    with app.databases.begin("notify") as conn:
        insert_alert(conn, app.clock.now(), tenant_id=str(uuid.uuid4()), kind="PAYMENT_FAILED")
        plan_notifications(conn, app.config, app.clock.now())
    (late,) = rows(app, "status = 'held'")
    assert late["release_at"] == start + timedelta(seconds=30) + timedelta(minutes=5)
    app.clock.current = late["release_at"] - timedelta(seconds=1)
    release_job(app)
    assert rows(app, "status = 'held'")
    app.clock.current = late["release_at"]
    release_job(app)
    assert deliver_due(app).sent == 1
    assert len(slack_server.received) == 3


def test_a_group_message_is_retried_and_ledgered_like_any_other(mail_app, smtp):
    handler, _ = smtp
    app = mail_app
    with app.databases.begin("notify") as conn:
        add_dest(conn, app.clock.now(), "email", "owner@tenant.example")
        for _ in range(3):
            insert_alert(conn, app.clock.now())
        plan_notifications(conn, app.config, app.clock.now())
    handler.data_reply = "451 4.3.0 try again later"
    assert deliver_due(app).retrying == 1
    (message,) = rows(app, "transition = 'group'")
    assert message["status"] == "queued" and message["send_attempts"] == 1 and "451" in message["error"]
    handler.data_reply = None
    app.clock.current = message["next_attempt_at"]
    assert deliver_due(app).sent == 1
    (message,) = rows(app, "transition = 'group'")
    assert message["status"] == "sent" and message["send_attempts"] == 2
    with app.databases.begin("notify") as conn:
        attempts = conn.execute(text("SELECT attempt, outcome, code FROM notify.delivery_attempts "
                                     "WHERE notification_id = :id ORDER BY attempt"), dict(id=message["id"])).all()
    assert [tuple(a) for a in attempts] == [(1, "transient", "451"), (2, "sent", "250")]
    (envelope,) = handler.messages
    assert parsed(envelope)["Message-ID"] == f"<{message['idempotency_key']}@notify.example>"


def test_two_release_steps_racing_make_one_message(app):
    app.config.routes = [ops_slack_route()]
    with app.databases.begin("notify") as conn:
        for _ in range(5):
            insert_alert(conn, app.clock.now(), tenant_id=str(uuid.uuid4()), kind="PAYMENT_FAILED")
        plan_notifications(conn, app.config, app.clock.now())
    app.clock.advance(timedelta(seconds=30))
    barrier = threading.Barrier(2)
    results = []

    def release() -> None:
        with app.databases.begin("notify") as conn:
            barrier.wait(5)
            conn.execute(query("planner", "lock_planner"))
            results.append(release_held(conn, app.config, app.clock.now()))

    threads = [threading.Thread(target=release) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(r.messages for r in results) == [0, 1]
    (message,) = rows(app, "transition = 'group'")
    assert {r["message_id"] for r in rows(app, "transition = 'opened'")} == {message["id"]}


def test_webhooks_stay_one_payload_per_alert_unless_the_destination_asks_for_the_grouped_payload(app, receiver):
    app.config.channels.webhook.allow_private_networks = True
    now = app.clock.now()
    with app.databases.begin("notify") as conn:
        add_dest(conn, now, "webhook", receiver.url("/single"))
        grouped = add_dest(conn, now, "webhook", receiver.url("/grouped"))
        conn.execute(text("UPDATE notify.destinations SET grouped_payload = true WHERE id = :id"), dict(id=grouped))
        for _ in range(3):
            insert_alert(conn, now)
        plan_notifications(conn, app.config, now)
    assert deliver_due(app).sent == 4
    single = [r.json() for r in receiver.received if r.path == "/single"]
    (group,) = [r.json() for r in receiver.received if r.path == "/grouped"]
    assert [p["version"] for p in single] == [1, 1, 1]
    assert group["version"] == 2 and group["type"] == "alert.group"
    assert group["data"]["group"] == {"key": f"tenant={TENANT}|kind=RUNS_THRESHOLD", "reason": "group_wait",
                                      "size": 3, "listed": 3}
    members = rows(app, f"destination_id = '{grouped}' AND transition = 'opened'")
    assert sorted(a["notification"]["id"] for a in group["data"]["alerts"]) == sorted(str(m["id"]) for m in members)
    assert {a["alert"]["kind"] for a in group["data"]["alerts"]} == {"RUNS_THRESHOLD"}


def test_a_group_message_that_fails_for_good_goes_to_the_fallback_with_its_members(app, receiver):
    app.config.channels.webhook.allow_private_networks = True
    now = app.clock.now()
    with app.databases.begin("notify") as conn:
        fallback = add_dest(conn, now, "webhook", receiver.url("/fallback"))
        broken = add_dest(conn, now, "webhook", receiver.url("/status/400"))
        conn.execute(text("UPDATE notify.destinations SET grouped_payload = true, fallback_id = :f WHERE id = :id"),
                     dict(f=fallback, id=broken))
        conn.execute(text("UPDATE notify.destinations SET enabled = false WHERE id = :id"), dict(id=fallback))
        for _ in range(3):
            insert_alert(conn, now)
        plan_notifications(conn, app.config, now)   # the fallback is disabled: it gets none of its own
        conn.execute(text("UPDATE notify.destinations SET enabled = true WHERE id = :id"), dict(id=fallback))
    deliver_due(app)
    (failed,) = rows(app, "transition = 'group' AND origin_id IS NULL")
    assert failed["status"] == "failed"
    (copy,) = rows(app, "transition = 'group' AND origin_id IS NOT NULL")
    assert copy["status"] == "sent" and str(copy["destination_id"]) == fallback
    (payload,) = [r.json() for r in receiver.received if r.path == "/fallback"]
    members = rows(app, f"message_id = '{failed['id']}'")
    assert payload["data"]["group"]["size"] == 3
    assert sorted(a["notification"]["id"] for a in payload["data"]["alerts"]) == sorted(str(m["id"]) for m in members)


def test_grouping_and_rate_limit_keys_are_parsed_and_checked():
    from engine.config import ConfigError, parse_config

    config = parse_config({"grouping": {"group_wait": "10s", "destinations": {"group_by": ["tenant", "base"]}},
                           "routes": [{"name": "ops", "channel": "slack", "target": "COPS", "group_wait": "0s",
                                       "group_by": ["kind"]}],
                           "rate_limits": {"destination": {"messages": 10, "window": "1h"}}})
    assert config.grouping.group_wait == 10 and config.grouping.group_interval == 300
    assert config.grouping.destinations.group_by == ["tenant", "base"] and config.routes[0].group_wait == 0
    assert config.rate_limits.destination.messages == 10 and config.rate_limits.tenant.messages == 0
    with pytest.raises(ConfigError, match=r"routes\[0\]\.group_by: unknown label 'region' \(known: tenant, kind, "
                                          r"severity, base\)"):
        parse_config({"routes": [{"name": "ops", "channel": "slack", "target": "COPS", "group_by": ["region"]}]})
    with pytest.raises(ConfigError, match=r"rate_limits\.tenant\.messages: cannot be negative"):
        parse_config({"rate_limits": {"tenant": {"messages": -1}}})
