"""The attempt ledger (issue 13, item 1): every send that was made is one row of
notify.delivery_attempts, written by the result statement, and `notifyctl notifications show ID`
prints the notification with its attempts."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from aiohttp import web
from sqlalchemy import text

from engine.cli import main
from engine.dispatcher import Dispatcher, Outcome, deliver_due
from engine.planner import plan_notifications
from engine.testsend import send_test_notification
from tests.delivery_support import SmtpRecorder, add_dest, insert_alert, notifications, start_smtp

LEAKY_BODY = "upstream down; retry with Authorization: Bearer sk_live_abcdefghijklmnop1234 or mail ops@example.com"


@pytest.fixture
def hook_app(app):
    app.config.channels.webhook.allow_private_networks = True
    return app


def queue(app, url: str, alerts: int = 1) -> str:
    now = app.clock.now()
    with app.databases.begin("notify") as conn:
        destination = add_dest(conn, now, "webhook", url)
        for _ in range(alerts):
            insert_alert(conn, now)
        plan_notifications(conn, app.config, now)
    return destination


def attempts(app) -> list[dict]:
    with app.databases.begin("notify") as conn:
        return [dict(r) for r in conn.execute(text(
            "SELECT * FROM notify.delivery_attempts ORDER BY started_at, attempt")).mappings()]


def only_notification(app) -> dict:
    with app.databases.begin("notify") as conn:
        (row,) = notifications(conn)
    return row


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def fail_then_ok(receiver, status: int = 503, body: str = LEAKY_BODY) -> None:
    calls = []

    async def respond(request, _body):
        calls.append(request.path)
        if len(calls) == 1:
            return web.Response(status=status, text=body)
        return web.Response(status=200, text="ok")

    receiver.responder = respond


@pytest.mark.parametrize("client", ["http1", "aiohttp"])
def test_each_attempt_is_logged_with_its_code_address_duration_and_a_redacted_excerpt(hook_app, receiver, client):
    hook_app.config.channels.webhook.client = client
    fail_then_ok(receiver)
    destination = queue(hook_app, receiver.url("/hook"))
    start = hook_app.clock.now()
    assert deliver_due(hook_app).retrying == 1
    hook_app.clock.advance(timedelta(hours=1))
    assert deliver_due(hook_app).sent == 1
    note = only_notification(hook_app)
    first, second = attempts(hook_app)
    assert (first["attempt"], first["outcome"], first["code"]) == (1, "transient", "503")
    assert (second["attempt"], second["outcome"], second["code"], second["excerpt"]) == (2, "sent", "200", None)
    for row in (first, second):
        assert row["notification_id"] == note["id"] and row["tenant_id"] == note["tenant_id"]
        assert str(row["destination_id"]) == destination and row["channel"] == "webhook"
        assert row["address"] == f"127.0.0.1:{receiver.port}"
        assert 0 <= row["duration_ms"] < 60_000
    # Started when each batch ran by the engine's clock (plus the moments before the send began).
    assert start <= first["started_at"] < start + timedelta(minutes=1)
    assert start + timedelta(hours=1) <= second["started_at"] < start + timedelta(hours=1, minutes=1)
    assert first["error"] == "HTTP 503"
    assert first["excerpt"].startswith("upstream down; retry with")
    assert "sk_live_abcdefghijklmnop1234" not in first["excerpt"] and "ops@example.com" not in first["excerpt"]


def test_a_permanent_failure_is_logged_as_permanent_with_its_status(hook_app, receiver):
    fail_then_ok(receiver, status=422, body="missing field: data.alert.kind")
    queue(hook_app, receiver.url("/hook"))
    assert deliver_due(hook_app).failed == 1
    (row,) = attempts(hook_app)
    assert (row["outcome"], row["code"], row["excerpt"]) == ("permanent", "422", "missing field: data.alert.kind")


def test_an_excerpt_is_at_most_256_bytes_of_utf8(hook_app, receiver):
    fail_then_ok(receiver, body="é" * 2000)
    queue(hook_app, receiver.url("/hook"))
    deliver_due(hook_app)
    (row,) = attempts(hook_app)
    assert row["excerpt"] == "é" * 128 and len(row["excerpt"].encode()) == 256


def test_an_answer_with_a_nul_byte_is_logged_with_the_byte_replaced(hook_app, receiver):
    # PostgreSQL text cannot hold NUL: kept as is, it failed the whole batch's results.
    fail_then_ok(receiver, body="busy\x00retry later")
    queue(hook_app, receiver.url("/hook"))
    assert deliver_due(hook_app).retrying == 1
    (row,) = attempts(hook_app)
    assert (row["outcome"], row["code"], row["excerpt"]) == ("transient", "503", "busy\ufffdretry later")
    assert only_notification(hook_app)["status"] == "queued"


def test_a_connection_that_never_answers_is_logged_with_no_code(hook_app, receiver):
    from tests.delivery_support import free_port

    queue(hook_app, f"http://127.0.0.1:{free_port()}/nobody")
    deliver_due(hook_app)
    (row,) = attempts(hook_app)
    assert (row["outcome"], row["code"], row["excerpt"]) == ("transient", None, None)
    assert row["error"].startswith("connection failed")


def test_a_notification_settled_without_a_send_logs_no_attempt(hook_app, receiver):
    destination = queue(hook_app, receiver.url("/ok"))
    with hook_app.databases.begin("notify") as conn:
        conn.execute(text("DELETE FROM notify.destinations WHERE id = :id"), dict(id=destination))
    assert deliver_due(hook_app).skipped == 1
    assert attempts(hook_app) == []


def test_a_late_result_of_a_claim_taken_over_is_logged_but_does_not_change_the_notification(hook_app, receiver):
    # The choice documented in docs/ARCHITECTURE.md: the late attempt did happen, so it is on record.
    queue(hook_app, receiver.url("/ok"))
    slow = Dispatcher(hook_app)
    token = uuid.uuid4()
    (claimed,) = slow.claim(hook_app.clock.now(), token)
    late_start = hook_app.clock.now()
    hook_app.clock.advance(timedelta(seconds=hook_app.config.delivery.lease))
    assert deliver_due(hook_app).sent == 1
    from channels.base import DeliveryResult

    slow.record([claimed], [Outcome("failed", error="HTTP 500", result=DeliveryResult.transient("HTTP 500", code="500"),
                                    started_at=late_start, duration_ms=61_000)], token)
    assert only_notification(hook_app)["status"] == "sent"
    assert [(a["attempt"], a["outcome"], a["code"]) for a in attempts(hook_app)] == [
        (1, "transient", "500"), (2, "sent", "200")]


def test_an_attempt_repeating_anothers_number_and_start_is_logged_too(hook_app, receiver):
    # A re-drive restarts the count and this clock does not move, so the second attempt has the
    # first one's number and start: both happened, both are on record (no unique key, notify 0021).
    from channels.base import DeliveryResult
    from engine.notifications import retry_notification

    queue(hook_app, receiver.url("/ok"))
    dispatcher = Dispatcher(hook_app)
    start = hook_app.clock.now()
    for _ in range(2):
        token = uuid.uuid4()
        (claimed,) = dispatcher.claim(start, token)
        dispatcher.record([claimed], [Outcome("failed", error="HTTP 500", started_at=start, duration_ms=5,
                                              result=DeliveryResult.permanent("HTTP 500", code="500"))], token)
        with hook_app.databases.begin("notify") as conn:
            retry_notification(conn, uuid.UUID(claimed["id"]), start)
    assert [(a["attempt"], a["started_at"], a["code"]) for a in attempts(hook_app)] == [(1, start, "500")] * 2


def test_a_test_send_lands_in_the_ledger(hook_app, receiver):
    now = hook_app.clock.now()
    with hook_app.databases.begin("notify") as conn:
        destination = add_dest(conn, now, "webhook", receiver.url("/status/404"))
    result = send_test_notification(hook_app, destination)
    (row,) = attempts(hook_app)
    assert str(row["notification_id"]) == result.notification_id
    assert (row["attempt"], row["outcome"], row["code"], row["excerpt"]) == (1, "permanent", "404", "status")


def test_an_smtp_reply_code_and_the_servers_address_are_logged(app):
    handler = SmtpRecorder(data_reply="451 4.3.0 try again later")
    controller = start_smtp(handler)
    try:
        app.config.channels.email.port = controller.port
        now = app.clock.now()
        with app.databases.begin("notify") as conn:
            add_dest(conn, now, "email", "ops@tenant.example")
            insert_alert(conn, now)
            plan_notifications(conn, app.config, now)
        deliver_due(app)
        handler.data_reply = None
        app.clock.advance(timedelta(hours=1))
        deliver_due(app)
    finally:
        controller.stop()
    first, second = attempts(app)
    assert (first["outcome"], first["code"], first["excerpt"]) == ("transient", "451", "4.3.0 try again later")
    assert (second["outcome"], second["code"]) == ("sent", "250")
    assert first["address"] == second["address"] == f"127.0.0.1:{controller.port}"


def test_notifications_show_prints_the_notification_and_its_attempts(hook_app, receiver, config_file, capsys):
    fail_then_ok(receiver)
    queue(hook_app, receiver.url("/hook"))
    deliver_due(hook_app)
    hook_app.clock.advance(timedelta(hours=1))
    deliver_due(hook_app)
    note = only_notification(hook_app)
    cfg = str(config_file())
    code, out, err = run(capsys, "notifications", "show", str(note["id"]), "--json", "--config", cfg)
    assert code == 0, err
    shown = json.loads(out)
    assert shown["id"] == str(note["id"]) and shown["status"] == "sent"
    assert [{k: a[k] for k in ("attempt", "outcome", "code", "error")} for a in shown["attempts"]] == [
        {"attempt": 1, "outcome": "transient", "code": "503", "error": "HTTP 503"},
        {"attempt": 2, "outcome": "sent", "code": "200", "error": None}]
    assert all(isinstance(a["duration_ms"], int) and a["started_at"] for a in shown["attempts"])
    code, out, err = run(capsys, "notifications", "show", str(note["id"]), "--config", cfg)
    assert code == 0, err
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("ATTEMPT"))
    assert lines[header].split()[:5] == ["ATTEMPT", "STARTED_AT", "DURATION_MS", "OUTCOME", "CODE"]
    assert [line.split()[0] for line in lines[header + 1:]] == ["1", "2"]


def test_notifications_show_names_a_bad_or_unknown_id(config_file, capsys, app):
    cfg = str(config_file())
    code, _, err = run(capsys, "notifications", "show", "nope", "--config", cfg)
    assert code == 2 and "ID" in err and "nope" in err
    missing = str(uuid.uuid4())
    code, _, err = run(capsys, "notifications", "show", missing, "--config", cfg)
    assert code == 2 and f"no notification {missing}" in err


def test_the_ledger_is_partitioned_by_month_and_pruned_like_the_log_tables(app):
    from engine.partitions import ensure_partitions, list_partitions, prune_partitions

    now = app.clock.now()
    ensure_partitions(app.databases, now - timedelta(days=400), 0)   # a month long past
    ensure_partitions(app.databases, now, 1)
    ledger = [p for p in list_partitions(app.databases) if p.parent == "notify.delivery_attempts"]
    assert any(p.is_default for p in ledger) and len([p for p in ledger if not p.is_default]) >= 3
    pruned = prune_partitions(app.databases, now, 6)
    assert any(p.partition.parent == "notify.delivery_attempts" and p.dropped for p in pruned)
