"""One-click unsubscribe (RFC 8058) end to end: the header in a real email, opt_out with its token,
and the next notification of that kind to that destination skipped with the reason recorded."""

from __future__ import annotations

import email
import email.policy
import uuid
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from engine.dispatcher import deliver_due
from engine.errors import BadInput
from engine.planner import plan_notifications
from engine.unsubscribe import make_unsubscribe_token, opt_out, unsubscribe_url
from tests.delivery_support import add_dest, insert_alert, notifications

RUNS = {"metric": "runs_used", "value": 850, "limit": 1000, "percent": 85.0, "level_percent": 80,
        "plan": "default", "period": "2026-11", "captured_at": "2026-11-30T09:12:00+00:00"}


@pytest.fixture
def mail_app(app, smtp):
    app.config.channels.email.port = smtp[1]
    app.config.channels.email.sender = "alerts@notify.example"
    app.config.channels.webhook.secret_key = Fernet.generate_key().decode()
    app.config.messages.public_url = "https://notify.example.com"
    return app


def send_alert(app, kind: str = "RUNS_THRESHOLD", context: dict = RUNS) -> None:
    now = app.clock.now()
    with app.databases.begin("notify") as conn:
        insert_alert(conn, now, kind=kind, context=context)
        plan_notifications(conn, app.config, now)
    deliver_due(app)


def received(handler, index: int = -1):
    return email.message_from_bytes(handler.messages[index].original_content, policy=email.policy.default)


def test_one_click_unsubscribe_from_the_email_stops_that_kind_with_the_reason_recorded(mail_app, smtp):
    handler, _ = smtp
    now = mail_app.clock.now()
    with mail_app.databases.begin("notify") as conn:
        destination = add_dest(conn, now, "email", "owner@tenant.example")
    send_alert(mail_app)
    message = received(handler)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = message["List-Unsubscribe"].strip("<>")
    assert link.startswith("https://notify.example.com/v1/unsubscribe/")
    assert link in message.get_body(("plain",)).get_content()   # also readable for a person
    token = link.rsplit("/", 1)[1]

    result = opt_out(mail_app, token, now=now)
    assert result == {"destination_id": destination, "tenant_id": result["tenant_id"], "kind": "RUNS_THRESHOLD",
                      "changed": True}
    assert opt_out(mail_app, token, now=now)["changed"] is False       # idempotent: one audit row
    with mail_app.databases.begin("admin_log") as conn:
        audits = conn.execute(text("SELECT action, target_type, target_id FROM admin_log.admin_events "
                                   "WHERE action = 'DESTINATION_UNSUBSCRIBE'")).all()
    assert [tuple(a) for a in audits] == [("DESTINATION_UNSUBSCRIBE", "DESTINATION", destination)]

    sent_before = len(handler.messages)
    send_alert(mail_app)   # the same kind again: planned, then skipped with the reason
    send_alert(mail_app, "WALLET_LOW", {"value": 100, "floor": 500, "plan": "default"})  # another kind still arrives
    assert len(handler.messages) == sent_before + 1
    assert received(handler)["Subject"].startswith("Your wallet balance is low")
    with mail_app.databases.begin("notify") as conn:
        skipped = [n for n in notifications(conn) if n["status"] == "skipped"]
    assert [n["error"] for n in skipped] == ["destination unsubscribed from RUNS_THRESHOLD"]


def test_a_forged_malformed_or_expired_token_is_refused_with_a_clear_message(mail_app):
    now = mail_app.clock.now()
    destination = uuid.uuid4()
    token = make_unsubscribe_token(mail_app.config, destination, "WALLET_LOW", now)
    version, body, signature = token.split(".")
    other_body = make_unsubscribe_token(mail_app.config, destination, "RUNS_THRESHOLD", now).split(".")[1]
    with pytest.raises(BadInput, match="signature does not match"):
        opt_out(mail_app, f"{version}.{other_body}.{signature}", now=now)
    with pytest.raises(BadInput, match="malformed"):
        opt_out(mail_app, "not-a-token", now=now)
    with pytest.raises(BadInput, match="expired"):
        opt_out(mail_app, token, now=now + timedelta(seconds=float(mail_app.config.messages.unsubscribe_ttl) + 1))
    with pytest.raises(BadInput, match="no longer exists"):
        opt_out(mail_app, token, now=now)
    # A token signed with another key (another installation) is forged here.
    mail_app.config.channels.webhook.secret_key = Fernet.generate_key().decode()
    with pytest.raises(BadInput, match="signature does not match"):
        opt_out(mail_app, token, now=now)


def test_ops_routes_and_a_missing_public_url_get_no_unsubscribe_header(mail_app, smtp):
    from engine.config import RouteConfig

    handler, _ = smtp
    # group_wait 0: the ops route's grouping (issue 15) would hold the email 30s.
    mail_app.config.routes = [RouteConfig(name="ops", channel="email", target="ops@platform.example", group_wait=0)]
    send_alert(mail_app)
    assert "List-Unsubscribe" not in received(handler)          # ops routes cannot unsubscribe
    mail_app.config.messages.public_url = None
    assert unsubscribe_url(mail_app.config, "t") is None


def test_display_names_come_from_a_sql_source_which_wins_over_config(mail_app, smtp):
    from engine.config import NamesSourceConfig
    from tests.delivery_support import TENANT

    handler, _ = smtp
    mail_app.config.messages.names = {TENANT: "Name from config.yaml"}
    mail_app.config.messages.names_sql = NamesSourceConfig(
        database="notify", query=f"SELECT '{TENANT}'::uuid, 'Acme  from SQL' UNION ALL SELECT NULL, 'skipped'")
    with mail_app.databases.begin("notify") as conn:
        add_dest(conn, mail_app.clock.now(), "email", "owner@tenant.example")
    send_alert(mail_app)
    assert "Acme from SQL has used 85 % of its monthly runs" in received(handler).get_body(("plain",)).get_content()


def test_a_failing_names_query_leaves_the_static_names_and_the_message_goes_out(mail_app, smtp):
    from engine.config import NamesSourceConfig
    from tests.delivery_support import TENANT

    handler, _ = smtp
    mail_app.config.messages.names = {TENANT: "Acme from config"}
    mail_app.config.messages.names_sql = NamesSourceConfig(database="notify", query="SELECT * FROM no_such_table")
    with mail_app.databases.begin("notify") as conn:
        add_dest(conn, mail_app.clock.now(), "email", "owner@tenant.example")
    send_alert(mail_app)
    assert "Acme from config has used 85 %" in received(handler).get_body(("plain",)).get_content()
