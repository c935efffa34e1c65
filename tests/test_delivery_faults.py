"""Fault paths of delivery against real servers on loopback, seen through the public path (a
dispatcher pass, then the notification's row and its destination): a Slack incoming webhook that
answers 404 no_service, 410, 429 with Retry-After or 5xx; a webhook host whose name does not
resolve; an SMTP server that refuses our credentials, and one that accepts the connection and
never says a word."""

from __future__ import annotations

import re
import socket
from datetime import timedelta

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy import text

from engine.dispatcher import deliver_due
from engine.planner import plan_notifications
from tests.delivery_support import HttpServer, SmtpRecorder, add_dest, free_port, insert_alert, notifications


def queue(app, channel: str, target: str) -> str:
    """One destination, one open alert, its notification planned; returns the destination id."""
    now = app.clock.now()
    with app.databases.begin("notify") as conn:
        destination = add_dest(conn, now, channel, target)
        insert_alert(conn, now, severity="critical")
        plan_notifications(conn, app.config, now)
    return destination


def only_row(app) -> dict:
    with app.databases.begin("notify") as conn:
        (row,) = notifications(conn)
    return row


def destination(app, destination_id: str) -> dict:
    with app.databases.begin("notify") as conn:
        return dict(conn.execute(text("SELECT enabled, disabled_reason FROM notify.destinations WHERE id = :id"),
                                 {"id": destination_id}).mappings().one())


# ------------------------------------------------------------------ Slack incoming webhooks


async def slack_hook_responder(request: web.Request, body: bytes) -> web.StreamResponse:
    """Slack's incoming-webhook answers, by the last path segment."""
    case = request.path.rsplit("/", 1)[1]
    if case == "no_service":     # the app was uninstalled or the webhook revoked
        return web.Response(status=404, text="no_service")
    if case == "gone":
        return web.Response(status=410, text="channel_is_archived")
    if case == "rate_limited":
        return web.Response(status=429, headers={"Retry-After": "30"}, text="rate_limited")
    if case == "broken":
        return web.Response(status=500, text="internal_error")
    return web.Response(status=200, text="ok")


@pytest.fixture
def slack_hooks():
    server = HttpServer(slack_hook_responder).start()
    yield server
    server.stop()


@pytest.fixture
def hook_app(app):
    app.config.channels.webhook.allow_private_networks = True   # the stand-in listens on 127.0.0.1
    return app


@pytest.mark.parametrize("case, status", [("no_service", "404"), ("gone", "410")])
def test_a_slack_webhook_that_is_gone_fails_at_once_and_disables_the_destination(hook_app, slack_hooks, case, status):
    dest = queue(hook_app, "slack", slack_hooks.url(f"/services/T000/B000/{case}"))
    summary = deliver_due(hook_app)
    assert (summary.sent, summary.failed, summary.retrying) == (0, 1, 0)
    row = only_row(hook_app)
    assert row["status"] == "failed" and row["send_attempts"] == 1 and status in row["error"]
    assert destination(hook_app, dest)["enabled"] is False
    assert len(slack_hooks.received) == 1
    # Nothing more goes to a destination that is gone: a new alert plans nothing for it.
    now = hook_app.clock.now()
    with hook_app.databases.begin("notify") as conn:
        insert_alert(conn, now)
        plan_notifications(conn, hook_app.config, now)
    assert deliver_due(hook_app).claimed == 0
    assert len(slack_hooks.received) == 1


def test_a_rate_limited_slack_webhook_is_retried_when_retry_after_says(hook_app, slack_hooks):
    dest = queue(hook_app, "slack", slack_hooks.url("/services/T000/B000/rate_limited"))
    now = hook_app.clock.now()
    assert deliver_due(hook_app).retrying == 1
    row = only_row(hook_app)
    assert row["status"] == "queued" and "429" in row["error"]
    assert row["next_attempt_at"] == now + timedelta(seconds=30)
    assert destination(hook_app, dest)["enabled"] is True
    hook_app.clock.advance(timedelta(seconds=29))
    assert deliver_due(hook_app).claimed == 0            # not before the server said
    hook_app.clock.advance(timedelta(seconds=1))
    assert deliver_due(hook_app).claimed == 1
    assert len(slack_hooks.received) == 2


def test_a_slack_webhook_server_error_is_retried_with_backoff_and_keeps_the_destination(hook_app, slack_hooks):
    dest = queue(hook_app, "slack", slack_hooks.url("/services/T000/B000/broken"))
    now = hook_app.clock.now()
    assert deliver_due(hook_app).retrying == 1
    row = only_row(hook_app)
    assert row["status"] == "queued" and "500" in row["error"] and row["send_attempts"] == 1
    backoff = hook_app.config.delivery.backoff_base       # first retry: between half and all of it
    assert now + timedelta(seconds=backoff / 2) <= row["next_attempt_at"] <= now + timedelta(seconds=backoff)
    assert destination(hook_app, dest)["enabled"] is True


# ------------------------------------------------------------------ names that do not resolve


async def no_such_name(host: str, port: int) -> list[str]:
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


@pytest.mark.parametrize("client", ["http1", "aiohttp"])
def test_a_webhook_host_that_does_not_resolve_is_a_transient_failure_naming_the_lookup(app, client):
    # The injected resolver answers as the system's does for a name with no record; nothing connects.
    app.config.channels.webhook.client = client
    dest = queue(app, "webhook", "https://hooks.tenant.invalid/notify")
    now = app.clock.now()
    assert deliver_due(app, resolve=no_such_name).retrying == 1
    row = only_row(app)
    assert row["status"] == "queued" and row["send_attempts"] == 1 and row["next_attempt_at"] > now
    assert re.search(r"gaierror|resolv|dns", row["error"], re.IGNORECASE), row["error"]
    assert destination(app, dest)["enabled"] is True     # DNS may come back: nothing is disabled


# A lookup that hangs: tests/test_outbound_security.py::test_name_resolution_is_under_the_send_deadline
# (both clients; the send deadline covers resolution).


# ------------------------------------------------------------------ SMTP


PASSWORD = "correct horse battery staple"


def authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data.password == PASSWORD.encode()
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp_with_auth():
    handler = SmtpRecorder()
    # AUTH over a plain connection: loopback only, and what is tested is the refusal.
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), authenticator=authenticator,
                            auth_required=True, auth_require_tls=False)
    controller.start()
    yield handler, controller.port
    controller.stop()


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
@pytest.mark.parametrize("password, status", [(PASSWORD, "sent"), ("wrong password", "failed")],
                         ids=["right-password", "wrong-password"])
def test_smtp_credentials_the_server_refuses_fail_the_notification_without_disabling_the_address(
        app, smtp_with_auth, password, status):
    handler, port = smtp_with_auth
    email = app.config.channels.email
    email.port, email.username, email.password = port, "notify", password
    dest = queue(app, "email", "owner@tenant.example")
    deliver_due(app)
    row = only_row(app)
    assert row["status"] == status
    if status == "failed":
        # 535: a 5xx reply is permanent (RFC 5321); the address is fine, our credentials are not.
        assert row["error"].startswith("SMTP 535") and password not in row["error"]
        assert handler.messages == []
        assert destination(app, dest)["enabled"] is True
    else:
        assert len(handler.messages) == 1


def test_an_smtp_server_that_accepts_and_never_greets_is_a_transient_failure_after_the_timeout(app):
    # A listening socket nobody accepts from: the kernel completes the handshake, no greeting ever
    # comes. The configured timeout ends the attempt.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        app.config.channels.email.port = silent.getsockname()[1]
        app.config.channels.email.timeout = 1
        queue(app, "email", "owner@tenant.example")
        now = app.clock.now()
        assert deliver_due(app).retrying == 1
    row = only_row(app)
    assert row["status"] == "queued" and row["send_attempts"] == 1 and row["next_attempt_at"] > now
    assert row["error"].startswith("SMTP") and re.search(r"time", row["error"], re.IGNORECASE), row["error"]
