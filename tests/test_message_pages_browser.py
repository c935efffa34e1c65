"""The pages a message's links open, in a real headless Chromium (Debian's, tests/browser_support.py):
the one-click unsubscribe confirmation (issue 14) and the ack link's confirmation (issue 17), each
opened from the link in a real email the test SMTP server received."""

from __future__ import annotations

import email
import email.policy
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from engine.api.server import ApiServer
from engine.config import ApiConfig, RouteConfig
from engine.dispatcher import deliver_due
from engine.planner import plan_notifications
from tests.delivery_support import TENANT, add_dest, insert_alert, notifications

RUNS = {"metric": "runs_used", "value": 850, "limit": 1000, "percent": 85.0, "level_percent": 80,
        "plan": "default", "period": "2026-11", "captured_at": "2026-11-25T11:50:00+00:00"}
OPS = "ops@platform.example"


@pytest.fixture
def served_app(app, smtp):
    server = ApiServer(app, ApiConfig(listen="127.0.0.1:0")).start()
    app.config.channels.email.port = smtp[1]
    app.config.channels.email.sender = "alerts@notify.example"
    app.config.channels.webhook.secret_key = Fernet.generate_key().decode()
    app.config.messages.public_url = server.url
    app.config.messages.names = {TENANT: "Acme Analytics"}
    yield app
    server.stop()


def send_alert(app) -> str:
    now = app.clock.now()
    with app.databases.begin("notify") as conn:
        alert = insert_alert(conn, now, severity="critical", context=RUNS)
        plan_notifications(conn, app.config, now)
    # Playwright's sync API keeps an event loop on this thread; deliver_due runs its own elsewhere.
    with ThreadPoolExecutor(1) as thread:
        thread.submit(deliver_due, app).result(60)
    return alert


def last_email(handler):
    return email.message_from_bytes(handler.messages[-1].original_content, policy=email.policy.default)


def admin_events(app) -> list[tuple]:
    with app.databases.begin("admin_log") as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT action, target_type, target_id, diff->>'actor' FROM admin_log.admin_events ORDER BY occurred_at"))]


def test_unsubscribe_from_a_real_email_in_a_browser(served_app, smtp, chromium):
    with served_app.databases.begin("notify") as conn:
        destination = add_dest(conn, served_app.clock.now(), "email", "owner@tenant.example")
    send_alert(served_app)
    message = last_email(smtp[0])
    link = message["List-Unsubscribe"].strip("<>")
    assert link in message.get_body(("plain",)).get_content()

    context = chromium.new_context()
    try:
        page = context.new_page()
        response = page.goto(link)
        assert response is not None and response.status == 200
        assert page.locator("h1").inner_text() == "Unsubscribe from these notifications?"
        with page.expect_navigation():
            page.get_by_role("button", name="Unsubscribe").click()
        assert "You are unsubscribed." in page.content()
    finally:
        context.close()

    with served_app.databases.begin("notify") as conn:
        opted = conn.execute(text("SELECT opted_out_kinds FROM notify.destinations WHERE id = :id"),
                             {"id": destination}).scalar_one()
    assert opted == ["RUNS_THRESHOLD"]
    assert admin_events(served_app) == [("DESTINATION_UNSUBSCRIBE", "DESTINATION", destination,
                                         "recipient (one-click unsubscribe)")]
    send_alert(served_app)   # the next one of that kind is skipped, with the reason
    with served_app.databases.begin("notify") as conn:
        assert [n["error"] for n in notifications(conn) if n["status"] == "skipped"] == \
            ["destination unsubscribed from RUNS_THRESHOLD"]


def test_ack_from_a_real_email_in_a_browser(served_app, smtp, chromium):
    # No grouping: the ops route's defaults (issue 15) would hold the email 30s.
    served_app.config.routes = [RouteConfig(name="ops", channel="email", target=OPS, group_wait=0, group_interval=0)]
    alert = send_alert(served_app)
    body = last_email(smtp[0]).get_body(("plain",)).get_content()
    link = re.search(r"^Acknowledge: (\S+)", body, re.MULTILINE).group(1)

    context = chromium.new_context()
    try:
        page = context.new_page()
        response = page.goto(link)
        assert response is not None and response.status == 200
        assert page.locator("h1").inner_text() == "Acknowledge this alert?"
        assert page.locator("#kind").inner_text() == "Runs quota threshold reached (RUNS_THRESHOLD)"
        assert page.locator("#tenant").inner_text() == f"Acme Analytics ({TENANT})"
        assert page.locator("#severity").inner_text() == "Critical"
        assert page.locator("#since").inner_text() == "25 November 2026, 12:00 (UTC)"
        with page.expect_navigation():
            page.get_by_role("button", name="Acknowledge").click()
        assert page.locator("h1").inner_text() == "Alert acknowledged"
        assert page.locator("#status").inner_text() == f"acknowledged by email {OPS} (link in the message)"
        # Back to the confirmation page (no-store: fetched again): the link is used up, no button.
        page.go_back()
        assert page.locator("h1").inner_text() == "This link cannot be used"
        assert page.get_by_role("button").count() == 0
        assert "already used" in page.locator("#reason").inner_text()
    finally:
        context.close()

    with served_app.databases.begin("notify") as conn:
        assert conn.execute(text("SELECT status FROM notify.alerts WHERE id = :id"), {"id": alert}).scalar_one() == "ack"
    assert admin_events(served_app) == [("ALERT_ACK", "ALERT", alert, f"email {OPS} (link in the message)")]
