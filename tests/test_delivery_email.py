"""Email: multipart messages to a real SMTP server (aiosmtpd); 4xx transient, 5xx permanent."""

from __future__ import annotations

import email
import email.policy
from datetime import timedelta

import pytest

from tests.delivery_support import TENANT, SmtpRecorder, add_dest, insert_alert, notifications
from engine.dispatcher import deliver_due
from engine.planner import plan_notifications


@pytest.fixture
def mail_app(app, smtp):
    _, port = smtp
    app.config.channels.email.port = port
    app.config.channels.email.sender = "alerts@notify.example"
    return app


RUNS_CONTEXT = {"metric": "runs_used", "value": 850, "limit": 1000, "percent": 85.0, "level_percent": 80,
                "plan": "default", "period": "2026-11", "captured_at": "2026-11-30T09:12:00+00:00"}


def queue(app, recipients: list[str], *, kind: str = "RUNS_THRESHOLD", context: dict | None = None) -> list[str]:
    now = app.clock.now()
    with app.databases.begin("notify") as conn:
        for recipient in recipients:
            add_dest(conn, now, "email", recipient)
        alert = insert_alert(conn, now, kind=kind, context=context or RUNS_CONTEXT)
        plan_notifications(conn, app.config, now)
    return [alert]


def rows(app) -> list[dict]:
    with app.databases.begin("notify") as conn:
        return notifications(conn)


def test_a_multipart_message_is_delivered_with_a_stable_message_id(mail_app, smtp):
    handler, _ = smtp
    mail_app.config.messages.names = {TENANT: "<b>Acme</b>"}   # alert data: escaped in HTML, as is in text
    (alert,) = queue(mail_app, ["owner@tenant.example"])
    assert deliver_due(mail_app).sent == 1
    (envelope,) = handler.messages
    assert envelope.mail_from == "alerts@notify.example" and envelope.rcpt_tos == ["owner@tenant.example"]
    message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
    (row,) = rows(mail_app)
    assert message["Message-ID"] == f"<{row['idempotency_key']}@notify.example>"
    assert message["Subject"] == "You have used 85 % of your monthly runs"
    assert message["To"] == "owner@tenant.example" and message["X-Notify-Alert-Id"] == alert
    assert message.get_content_type() == "multipart/alternative"
    plain = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "<b>Acme</b> has used 85 % of its monthly runs: 850 of 1,000." in plain and alert in plain
    assert "&lt;b&gt;Acme&lt;/b&gt; has used 85 % of its monthly runs" in html
    assert "<b>Acme</b>" not in html   # autoescaped
    assert row["status"] == "sent" and row["error"] is None


def test_one_connection_is_reused_across_a_batch(mail_app, smtp):
    handler, _ = smtp
    mail_app.config.delivery.concurrency["email"] = 1
    queue(mail_app, [f"user{i}@tenant.example" for i in range(5)])
    assert deliver_due(mail_app).sent == 5
    assert len(handler.messages) == 5 and handler.connections == 1


def test_a_kind_template_overrides_the_default_subject(mail_app, smtp, tmp_path):
    handler, _ = smtp
    (tmp_path / "email").mkdir()
    (tmp_path / "email" / "PAYMENT_FAILED.subject.j2").write_text("[{{ severity | upper }}] Billing: {{ headline }}")
    mail_app.config.delivery.templates_dir = str(tmp_path)
    queue(mail_app, ["billing@tenant.example"], kind="PAYMENT_FAILED", context={"event": {"invoice_number": "INV-7"}})
    queue(mail_app, ["owner@tenant.example"])
    deliver_due(mail_app)
    subjects = {email.message_from_bytes(m.original_content, policy=email.policy.default)["Subject"]
                for m in handler.messages}
    # The override wins for its kind only; other kinds keep the shipped words.
    assert subjects == {"You have used 85 % of your monthly runs", "[WARN] Billing: Payment failed"}


def test_a_4xx_reply_is_transient(mail_app, smtp):
    handler, _ = smtp
    handler.data_reply = "451 4.3.0 try again later"
    queue(mail_app, ["owner@tenant.example"])
    deliver_due(mail_app)
    (row,) = rows(mail_app)
    assert row["status"] == "queued" and row["error"] == "SMTP 451 4.3.0 try again later"
    handler.data_reply = None
    mail_app.clock.advance(timedelta(seconds=10))
    deliver_due(mail_app)
    (row,) = rows(mail_app)
    assert (row["status"], row["send_attempts"]) == ("sent", 2)


def test_a_5xx_reply_is_permanent(mail_app, smtp):
    handler, _ = smtp
    handler.data_reply = "554 5.7.1 rejected by policy"
    queue(mail_app, ["owner@tenant.example"])
    deliver_due(mail_app)
    (row,) = rows(mail_app)
    assert (row["status"], row["error"]) == ("failed", "SMTP 554 5.7.1 rejected by policy")


def test_all_recipients_refused_permanently_fails_without_naming_them(mail_app):
    queue(mail_app, ["refuse5-a@tenant.example"])
    deliver_due(mail_app)
    (row,) = rows(mail_app)
    assert row["status"] == "failed" and "550" in row["error"] and "@" not in row["error"]


def test_a_busy_mailbox_is_retried(mail_app):
    queue(mail_app, ["refuse4-a@tenant.example"])
    deliver_due(mail_app)
    (row,) = rows(mail_app)
    assert row["status"] == "queued" and "450" in row["error"]


def test_a_partial_refusal_is_sent_to_the_rest_and_noted(mail_app, smtp):
    handler, _ = smtp
    queue(mail_app, ["ok@tenant.example, refuse5-x@tenant.example"])
    deliver_due(mail_app)
    (row,) = rows(mail_app)
    assert row["status"] == "sent" and row["error"] == "1 of 2 recipients refused (550)"
    assert handler.messages[0].rcpt_tos == ["ok@tenant.example"]


def test_an_unreachable_server_is_transient(app):
    app.config.channels.email.port = 9
    queue(app, ["owner@tenant.example"])
    deliver_due(app)
    (row,) = rows(app)
    assert row["status"] == "queued" and row["error"].startswith("SMTP connection failed")


# ------------------------------------------------------------------ TLS


def _self_signed(tmp_path):
    from tests.tls_support import self_signed_certificate

    return self_signed_certificate(tmp_path)


def _server_context(cert_file, key_file):
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


def test_starttls_is_used_when_configured_and_the_certificate_verifies(app, tmp_path):
    from aiosmtpd.controller import Controller

    from tests.delivery_support import free_port

    cert_file, key_file = _self_signed(tmp_path)
    handler = SmtpRecorder()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(),
                            tls_context=_server_context(cert_file, key_file), require_starttls=True)
    controller.start()
    try:
        app.config.channels.email.port = controller.port
        app.config.channels.email.security = "starttls"
        app.config.channels.email.ca_file = str(cert_file)
        queue(app, ["owner@tenant.example"])
        assert deliver_due(app).sent == 1
        assert len(handler.messages) == 1
    finally:
        controller.stop()


def test_starttls_required_but_not_offered_sends_nothing_in_clear(mail_app, smtp):
    handler, _ = smtp
    mail_app.config.channels.email.security = "starttls"
    queue(mail_app, ["owner@tenant.example"])
    deliver_due(mail_app)
    (row,) = rows(mail_app)
    assert row["status"] == "queued" and row["error"].startswith("SMTP connection failed")
    assert handler.messages == []


def test_the_destinations_locale_and_time_zone_reach_its_email(mail_app, smtp):
    from sqlalchemy import text

    handler, _ = smtp
    with mail_app.databases.begin("notify") as conn:
        add_dest(conn, mail_app.clock.now(), "email", "inhaber@tenant.example")
        conn.execute(text("UPDATE notify.destinations SET locale = 'de', timezone = 'America/New_York'"))
        insert_alert(conn, mail_app.clock.now(), context=RUNS_CONTEXT)
        plan_notifications(conn, mail_app.config, mail_app.clock.now())
    assert deliver_due(mail_app).sent == 1
    message = email.message_from_bytes(handler.messages[0].original_content, policy=email.policy.default)
    assert message["Subject"] == "85 % der monatlichen Runs verbraucht"
    plain = message.get_body(("plain",)).get_content()
    assert "850 von 1.000" in plain and "Gemessen: 30. November 2026, 04:12 (America/New_York)" in plain
    assert message["Auto-Submitted"] == "auto-generated" and "List-Unsubscribe" not in message
