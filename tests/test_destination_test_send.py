"""`notifyctl destinations test ID` (issue 13, item 2): one sample notification through the real
channel path, recorded as a notification row, never retried in the background."""

from __future__ import annotations

import email
import email.policy
import json
import re
import uuid
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from channels.webhook import sign
from engine.cli import main
from engine.dispatcher import deliver_due
from engine.queries import query
from engine.testsend import SAMPLE_ALERT_ID, send_test_notification
from tests.delivery_support import SmtpRecorder, TENANT, add_dest, notifications, start_smtp

KEY = Fernet.generate_key().decode()
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def cli_config(config_file, *, private: bool) -> str:
    return str(config_file(f"channels:\n  webhook:\n    secret_key: {KEY}\n"
                           f"    allow_private_networks: {'true' if private else 'false'}\n"))


def add_webhook(capsys, cfg: str, url: str) -> str:
    code, out, err = run(capsys, "destinations", "add", "--tenant", TENANT, "--channel", "webhook", "--target", url,
                         "--secret", SECRET, "--config", cfg)
    assert code == 0, err
    return out.strip()


def rows(app) -> list[dict]:
    with app.databases.begin("notify") as conn:
        return notifications(conn)


def test_a_test_send_reaches_the_webhook_signed_and_is_recorded_as_sent(config_file, capsys, app, receiver):
    cfg = cli_config(config_file, private=True)
    destination = add_webhook(capsys, cfg, receiver.url("/ok"))
    code, out, err = run(capsys, "destinations", "test", destination, "--config", cfg)
    assert code == 0, err
    assert re.fullmatch(r"sent: webhook test notification \S+ to http://127\.0\.0\.1:\d+/ok in \d+ ms\n", out)
    (request,) = receiver.received
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert headers["webhook-signature"] == sign(SECRET, headers["webhook-id"], int(headers["webhook-timestamp"]),
                                                request.body)
    payload = request.json()
    assert payload["type"] == "destination.test" and payload["data"]["notification"]["transition"] == "test"
    assert payload["data"]["alert"]["id"] == SAMPLE_ALERT_ID and payload["data"]["alert"]["context"]["test"] is True
    (row,) = rows(app)
    assert (row["status"], row["transition"], row["alert_id"], row["send_attempts"], row["error"]) == \
        ("sent", "test", None, 1, None)
    assert str(row["destination_id"]) == destination and row["idempotency_key"] == headers["webhook-id"]
    assert row["claim_token"] is None and row["sent_at"] is not None
    code, out, _ = run(capsys, "notifications", "--json", "--config", cfg)
    (listed,) = json.loads(out)
    assert listed["status"] == "sent" and listed["alert_id"] is None and listed["transition"] == "test"


def test_a_test_send_the_ssrf_guard_refuses_exits_1_with_the_reason_and_connects_nowhere(config_file, capsys, app,
                                                                                         receiver):
    # Added while loopback was allowed (add refuses a blocked literal address since the guard
    # runs there too); the guard at send time refuses it once allow_private_networks is off.
    destination = add_webhook(capsys, cli_config(config_file, private=True), receiver.url("/ok"))
    cfg = cli_config(config_file, private=False)
    code, out, _ = run(capsys, "destinations", "test", destination, "--json", "--config", cfg)
    assert code == 1
    result = json.loads(out)
    assert result["outcome"] == "failed" and result["error"] == "target refused: address is loopback"
    assert isinstance(result["latency_ms"], float) and result["destination_id"] == destination
    assert receiver.received == []
    (row,) = rows(app)
    assert (row["status"], row["error"]) == ("failed", "target refused: address is loopback")


def test_a_failed_test_send_is_not_retried_in_the_background(app, clock, receiver):
    app.config.channels.webhook.allow_private_networks = True
    with app.databases.begin("notify") as conn:
        destination = add_dest(conn, clock.now(), "webhook", receiver.url("/status/503"))
    result = send_test_notification(app, destination)
    assert (result.sent, result.outcome, result.error) == (False, "failed", "HTTP 503")
    (row,) = rows(app)
    assert (row["status"], row["send_attempts"], row["next_attempt_at"], row["claim_token"]) == \
        ("failed", 1, None, None)
    clock.advance(timedelta(days=1))
    assert deliver_due(app).claimed == 0
    assert len(receiver.received) == 1


def test_a_test_send_is_never_claimed_while_it_is_in_flight(app, clock, receiver):
    """A test killed mid-send leaves its row failed with a note, not queued for a dispatcher."""
    app.config.channels.webhook.allow_private_networks = True
    with app.databases.begin("notify") as conn:
        destination = add_dest(conn, clock.now(), "webhook", receiver.url("/ok"))
        # The row as a test send writes it before sending; the process then dies.
        conn.execute(query("destinations", "insert_test_notification"),
                     dict(id=destination, now=clock.now(), token=uuid.uuid4()))
    clock.advance(timedelta(days=1))
    assert deliver_due(app).claimed == 0
    (row,) = rows(app)
    assert (row["status"], row["error"]) == ("failed", "test send interrupted before its outcome was recorded")
    assert receiver.received == []


def test_a_test_send_to_email_is_marked_as_a_test(app, clock):
    handler = SmtpRecorder()
    controller = start_smtp(handler)
    try:
        app.config.channels.email.port = controller.port
        app.config.channels.email.sender = "alerts@notify.example"
        with app.databases.begin("notify") as conn:
            destination = add_dest(conn, clock.now(), "email", "ops@tenant.example", kinds=["WALLET_LOW"])
        result = send_test_notification(app, destination)
    finally:
        controller.stop()
    assert result.sent and result.recipient == "ops@tenant.example"
    (envelope,) = handler.messages
    message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
    assert message["Subject"].startswith("[TEST] ") and "Wallet balance is low" in message["Subject"]
    assert "no action is needed" in message.get_body(("plain",)).get_content()


def test_a_disabled_destination_is_not_sent_to_and_exits_1(config_file, capsys, app, receiver):
    cfg = cli_config(config_file, private=True)
    destination = add_webhook(capsys, cfg, receiver.url("/ok"))
    with app.databases.begin("notify") as conn:
        conn.execute(text("UPDATE notify.destinations SET enabled = false, disabled_reason = 'HTTP 410 Gone'"))
    code, out, _ = run(capsys, "destinations", "test", destination, "--config", cfg)
    assert code == 1 and out.startswith("skipped: ") and out.rstrip().endswith("destination disabled: HTTP 410 Gone")
    assert receiver.received == []
    assert [r["status"] for r in rows(app)] == ["skipped"]


def test_a_410_on_a_test_send_disables_the_destination_like_any_delivery(app, clock, receiver):
    app.config.channels.webhook.allow_private_networks = True
    with app.databases.begin("notify") as conn:
        destination = add_dest(conn, clock.now(), "webhook", receiver.url("/status/410"))
    assert send_test_notification(app, destination).outcome == "failed"
    with app.databases.begin("notify") as conn:
        assert conn.execute(text("SELECT enabled FROM notify.destinations")).scalar() is False


@pytest.mark.parametrize("ident, message", [
    ("nope", "ID: a destination id must be a UUID, got 'nope'"),
    ("6f1c2d3e-0000-4000-8000-0000000000ff", "ID: no destination 6f1c2d3e-0000-4000-8000-0000000000ff"),
])
def test_an_unknown_or_malformed_destination_id_exits_2_with_one_line(config_file, capsys, app, ident, message):
    code, out, err = run(capsys, "destinations", "test", ident, "--config", cli_config(config_file, private=True))
    assert code == 2 and out == "" and err == f"notifyctl: {message}\n"
    assert rows(app) == []


def test_an_alert_row_still_needs_its_alert(app, clock):
    """0007 lets only test rows go without an alert."""
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError, match="not_note_alert_unless_test"):
        with app.databases.begin("notify") as conn:
            conn.execute(text("INSERT INTO notify.notifications (tenant_id, channel, transition) "
                              "VALUES (:t, 'webhook', 'opened')"), dict(t=TENANT))
