"""The web console (issue 17) in a real headless Chromium (Debian's package, driven by Playwright)
against the real server on loopback and the real database: what an operator does on call."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from engine.api.server import ApiServer
from engine.config import ApiConfig
from engine.tokens import add_token
from tests.delivery_support import insert_alert

ACME = "7a1c2d3e-0000-4000-8000-000000000001"
GLOBEX = "7a1c2d3e-0000-4000-8000-000000000002"


@pytest.fixture
def server(app):
    app.config.messages.names = {ACME: "Acme Corp", GLOBEX: "Globex"}
    running = ApiServer(app, ApiConfig(listen="127.0.0.1:0")).start()
    yield running
    running.stop()


def sign_in(page, server, token, path: str, landing: str) -> None:
    """Opens `path`, which sends to sign-in, and signs in there; the page lands on `landing`."""
    page.goto(f"{server.url}{path}")
    page.fill("#token", token)
    page.click("button:has-text('Sign in')")
    assert page.url == f"{server.url}{landing}"


def test_an_operator_signs_in_filters_acks_with_a_comment_sees_the_audit_row_and_signs_out(app, clock, server,
                                                                                         chromium):
    with app.databases.begin("notify") as conn:
        critical = insert_alert(conn, clock.now(), tenant_id=ACME, kind="RUNS_THRESHOLD", severity="critical")
        clock.advance(timedelta(minutes=7))
        insert_alert(conn, clock.now(), tenant_id=GLOBEX, kind="STORAGE_THRESHOLD", severity="warn")
    token = add_token(app, "alice", ["operate"])
    context = chromium.new_context()
    try:
        page = context.new_page()
        page.goto(f"{server.url}/ui/alerts")
        assert page.url.startswith(f"{server.url}/ui/login?next=")

        page.fill("#token", token)
        page.click("button:has-text('Sign in')")
        assert page.url == f"{server.url}/ui/alerts"
        (cookie,) = [c for c in context.cookies() if c["name"] == "ne_console"]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui/"
        assert page.locator("table.alerts tbody tr").count() == 2
        assert page.locator("table.alerts").inner_text().count("Acme Corp") == 1

        page.select_option("select[name=severity]", "critical")
        page.click("button:has-text('Filter')")
        assert "severity=critical" in page.url
        rows = page.locator("table.alerts tbody tr")
        assert rows.count() == 1 and "RUNS_THRESHOLD" in rows.inner_text() and "Globex" not in rows.inner_text()

        page.click("a.alert-link")
        assert page.url == f"{server.url}/ui/alerts/{critical}"
        page.fill("#ack-comment", "card updated, retrying")
        page.select_option("#ack-for", "4h")
        page.click("button:has-text('Acknowledge')")
        assert page.url == f"{server.url}/ui/alerts/{critical}?done=ack"
        assert page.locator(".flash.ok").inner_text() == "Acknowledged by alice."
        assert page.locator("h1 .status").inner_text().lower() == "ack"
        timeline = page.locator("table.timeline").inner_text()
        assert "acknowledged" in timeline and "alice" in timeline and "card updated, retrying" in timeline
        assert page.locator("#ack-comment").count() == 0          # nothing left to ack

        with app.databases.begin("admin_log") as conn:
            (audit,) = conn.execute(text("SELECT action, target_id, comment, diff FROM admin_log.admin_events")).all()
        assert (audit.action, audit.target_id, audit.comment) == ("ALERT_ACK", critical, "card updated, retrying")
        assert audit.diff["actor"] == "alice"
        with app.databases.begin("notify") as conn:
            assert conn.execute(text("SELECT status, acked_by, ack_expires_at - acked_at FROM notify.alerts WHERE id = :id"),
                                dict(id=critical)).one() == ("ack", "alice", timedelta(hours=4))

        page.click("button:has-text('Sign out')")
        assert page.url == f"{server.url}/ui/login?signed_out=1"
        assert [c for c in context.cookies() if c["name"] == "ne_console"] == []
        page.goto(f"{server.url}/ui/alerts/{critical}")
        assert page.url.startswith(f"{server.url}/ui/login?next=")
    finally:
        context.close()


def test_a_link_from_another_site_lands_on_the_alert_for_a_signed_in_operator(app, clock, server, chromium):
    """SameSite=Strict withholds the cookie on a cross-site navigation (a link in a mail or a
    chat); the console's self-reload makes it same-site, so the operator lands on the alert."""
    with app.databases.begin("notify") as conn:
        alert = insert_alert(conn, clock.now(), tenant_id=ACME, severity="critical")
    token = add_token(app, "alice", ["operate"])
    context = chromium.new_context()
    try:
        page = context.new_page()
        sign_in(page, server, token, "/ui/login", "/ui/alerts")
        elsewhere = context.new_page()       # about:blank: an opaque origin, another site
        elsewhere.set_content(f'<a id="link" href="{server.url}/ui/alerts/{alert}">the alert</a>')
        elsewhere.click("#link")
        # Two navigations: the cookieless answer, then its same-site reload (else: sign-in).
        elsewhere.wait_for_url(f"{server.url}/ui/alerts/{alert}", timeout=15_000)
        elsewhere.wait_for_selector("h1 .status")
        assert "RUNS_THRESHOLD" in elsewhere.locator("h1").inner_text()
    finally:
        context.close()


def test_an_operator_silences_similar_alerts_from_an_alert_sees_it_listed_and_expires_it(app, clock, server,
                                                                                        chromium):
    base = "7a1c2d3e-0000-4000-8000-00000000b001"
    app.config.messages.names[base] = "Orders"        # the console's name book holds this dict
    with app.databases.begin("notify") as conn:
        alert = insert_alert(conn, clock.now(), tenant_id=ACME, kind="PAYMENT_FAILED", severity="critical")
        conn.execute(text("UPDATE notify.alerts SET base_id = :base WHERE id = :id"), dict(base=base, id=alert))
    token = add_token(app, "alice", ["operate"])
    context = chromium.new_context()
    try:
        page = context.new_page()
        sign_in(page, server, token, f"/ui/login?next=/ui/alerts/{alert}", f"/ui/alerts/{alert}")

        page.click("a:has-text('Silence similar')")
        assert page.url.startswith(f"{server.url}/ui/silences/new?")
        assert page.input_value("#s-tenant") == ACME and page.input_value("#s-base") == base
        assert page.input_value("#s-kind") == "PAYMENT_FAILED" and page.input_value("#s-severity") == ""
        page.fill("#s-duration", "4h")
        page.fill("#s-comment", "processor outage, they retry on their own")
        page.click("button:has-text('Add silence')")
        assert page.url.startswith(f"{server.url}/ui/silences?added=")
        assert page.locator(".flash.ok").inner_text().startswith("Silence added by alice")
        active = page.locator("table.silences.active tbody tr")
        assert active.count() == 1
        row = active.inner_text()
        assert "Acme Corp" in row and "PAYMENT_FAILED" in row and "Orders" in row and "in 4h" in row
        assert "alice" in row and "processor outage" in row

        page.click("table.silences.active button:has-text('Expire')")
        assert page.url.startswith(f"{server.url}/ui/silences?expired=")
        assert page.locator(".flash.ok").inner_text().startswith("Silence expired by alice")
        assert page.locator("table.silences.active").count() == 0
        assert "processor outage" in page.locator("details.expired table.silences.expired").inner_text()

        with app.databases.begin("notify") as conn:
            (silence,) = conn.execute(text("SELECT created_by, expired_by, ends_at - starts_at AS span, comment "
                                           "FROM notify.silences")).all()
        assert (silence.created_by, silence.expired_by, silence.span) == ("alice", "alice", timedelta(hours=4))
        with app.databases.begin("admin_log") as conn:
            actions = sorted(conn.execute(text("SELECT action FROM admin_log.admin_events")).scalars())
        assert actions == ["SILENCE_ADD", "SILENCE_EXPIRE"]
    finally:
        context.close()
