"""The web console (issue 17) over plain HTTP: sessions, cookies, CSRF and Origin checks, revoked
tokens, and what each page shows. A real server on loopback, the real database. The browser
walk-through is tests/test_console_browser.py."""

from __future__ import annotations

import hashlib
import html
import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import text

from engine.alerts import raise_event
from engine.api.server import ApiServer
from engine.config import ApiConfig
from engine.dispatcher import deliver_due
from engine.tokens import add_token, revoke_token
from tests.delivery_support import add_dest, insert_alert

TENANT = "7a1c2d3e-0000-4000-8000-000000000001"
OTHER_TENANT = "7a1c2d3e-0000-4000-8000-000000000002"
BASE = "7a1c2d3e-0000-4000-8000-00000000b001"
TTL = 3600


@pytest.fixture
def server(app):
    app.config.messages.names = {TENANT: "Acme Corp", OTHER_TENANT: "Globex", BASE: "Billing base"}
    running = ApiServer(app, ApiConfig(listen="127.0.0.1:0", auth_failure_burst=3, auth_failure_interval=3600,
                                       console_session_ttl=TTL)).start()
    yield running
    running.stop()


@pytest.fixture
def client(server):
    # Origin: the forms' own site, as a browser sends it on every POST.
    with httpx.Client(base_url=server.url, trust_env=False, timeout=20, headers={"Origin": server.url}) as c:
        yield c


@pytest.fixture
def operator(app):
    return add_token(app, "alice", ["operate"])


def sign_in(client, token, next_page=None) -> httpx.Response:
    form = {"token": token, **({"next": next_page} if next_page else {})}
    return client.post("/ui/login", data=form)


def csrf_of(client, path) -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def scalar(app, sql, section="notify", **params):
    with app.databases.begin(section) as conn:
        return conn.execute(text(sql), params).scalar()


def open_alert(app, clock, **kwargs) -> str:
    with app.databases.begin("notify") as conn:
        return insert_alert(conn, clock.now(), tenant_id=kwargs.pop("tenant_id", TENANT), **kwargs)


def audit_rows(app) -> int:
    return scalar(app, "SELECT count(*) FROM admin_log.admin_events", "admin_log")


# ------------------------------------------------------------------------------ sign-in


def test_an_operate_token_signs_in_to_an_httponly_samesite_strict_cookie_stored_hashed(app, client, operator):
    response = sign_in(client, operator)
    assert response.status_code == 303 and response.headers["Location"] == "/ui/alerts"
    cookie = response.headers["Set-Cookie"]
    attributes = [part.strip() for part in cookie.split(";")]
    assert "HttpOnly" in attributes and "SameSite=Strict" in attributes and "Path=/ui/" in attributes
    assert "Secure" not in attributes            # plain http on loopback, no https public_url
    assert f"Max-Age={TTL}" in attributes
    session_id = attributes[0].split("=", 1)[1]
    assert len(session_id) >= 43 and session_id != operator
    stored = scalar(app, "SELECT session_sha256 FROM notify.console_sessions WHERE token_name = 'alice'")
    assert bytes(stored) == hashlib.sha256(session_id.encode()).digest()
    page = client.get("/ui/alerts")
    assert page.status_code == 200 and "alice" in page.text


def test_the_cookie_is_secure_when_the_public_url_is_https(app, client, operator):
    app.config.messages.public_url = "https://notify.example.com"
    response = sign_in(client, operator)
    assert "Secure" in [part.strip() for part in response.headers["Set-Cookie"].split(";")]


def test_a_read_only_token_cannot_sign_in(app, client):
    reader = add_token(app, "dashboards", ["read"])
    response = sign_in(client, reader)
    assert response.status_code == 403
    assert "set-cookie" not in response.headers
    assert "lacks the scope 'operate'" in html.unescape(response.text)
    assert scalar(app, "SELECT count(*) FROM notify.console_sessions") == 0
    assert client.get("/ui/alerts").status_code == 303


def test_an_admin_token_signs_in(client, app):
    assert sign_in(client, add_token(app, "root", ["admin"])).status_code == 303


def test_failed_sign_ins_spend_the_apis_failed_authentication_limit(app, client, operator):
    for _ in range(3):
        refused = sign_in(client, "ne_not-a-token")
        assert refused.status_code == 401 and "unknown or revoked" in refused.text
    blocked = sign_in(client, operator)              # right token, but the address is out of tries
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0
    assert "set-cookie" not in blocked.headers
    # One limiter for the address: the API refuses it too.
    api = client.get("/v1/alerts", headers={"Authorization": f"Bearer {operator}"})
    assert api.status_code == 429


def test_a_page_without_a_session_sends_to_sign_in_and_back(app, client, clock, operator):
    alert = open_alert(app, clock)
    response = client.get(f"/ui/alerts/{alert}")
    assert response.status_code == 303
    location = urlsplit(response.headers["Location"])
    assert location.path == "/ui/login" and parse_qs(location.query) == {"next": [f"/ui/alerts/{alert}"]}
    signed_in = sign_in(client, operator, next_page=f"/ui/alerts/{alert}")
    assert signed_in.headers["Location"] == f"/ui/alerts/{alert}"


def test_sign_in_never_redirects_to_another_site(client, operator):
    for target in ("https://evil.example/", "//evil.example/ui/", "/v1/alerts", "/ui/login"):
        assert sign_in(client, operator, next_page=target).headers["Location"] == "/ui/alerts"


def test_a_link_from_a_mail_without_the_strict_cookie_reloads_itself_same_site(client):
    response = client.get("/ui/alerts", headers={"Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 200
    assert '<meta http-equiv="refresh" content="0">' in response.text


def test_sign_out_ends_the_session(app, client, operator):
    sign_in(client, operator)
    session_id = client.cookies["ne_console"]
    response = client.post("/ui/logout", data={"csrf_token": csrf_of(client, "/ui/alerts")})
    assert response.status_code == 303 and response.headers["Location"] == "/ui/login?signed_out=1"
    assert "Max-Age=0" in response.headers["Set-Cookie"]
    assert scalar(app, "SELECT count(*) FROM notify.console_sessions") == 0
    client.cookies.set("ne_console", session_id)      # the old cookie, replayed
    assert client.get("/ui/alerts").status_code == 303


def test_a_session_ends_after_its_ttl(client, clock, operator):
    sign_in(client, operator)
    clock.advance(timedelta(seconds=TTL - 1))
    assert client.get("/ui/alerts").status_code == 200
    clock.advance(timedelta(seconds=1))
    assert client.get("/ui/alerts").status_code == 303


# -------------------------------------------------------------------------- bad input (item 3)


def test_a_form_without_its_csrf_token_is_refused_403_and_changes_nothing(app, client, clock, operator):
    alert = open_alert(app, clock)
    sign_in(client, operator)
    good = csrf_of(client, f"/ui/alerts/{alert}")
    for form in ({"comment": "on it"}, {"comment": "on it", "csrf_token": ""},
                 {"comment": "on it", "csrf_token": good[:-2] + "xx"}):
        response = client.post(f"/ui/alerts/{alert}/ack", data=form)
        assert response.status_code == 403, form
        assert response.headers["Content-Type"].startswith("text/html")
        assert "security token is missing or does not match" in response.text and "nothing was changed" in response.text
    assert scalar(app, f"SELECT status FROM notify.alerts WHERE id = '{alert}'") == "open"
    assert audit_rows(app) == 0


def test_a_form_from_another_site_is_refused_even_with_its_token(app, server, clock, operator):
    alert = open_alert(app, clock)
    with httpx.Client(base_url=server.url, trust_env=False, timeout=20) as bare:
        bare.headers["Origin"] = server.url
        sign_in(bare, operator)
        token = csrf_of(bare, f"/ui/alerts/{alert}")
        for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"},
                        {"Referer": "https://evil.example/page"}, {}):
            bare.headers.pop("Origin", None)
            response = bare.post(f"/ui/alerts/{alert}/resolve", data={"csrf_token": token}, headers=headers)
            assert response.status_code == 403, headers
            assert "not sent from a page of this console" in response.text
        # Referer alone, of this site, is enough when a browser sends no Origin.
        ok = bare.post(f"/ui/alerts/{alert}/ack", data={"csrf_token": token},
                       headers={"Referer": f"{server.url}/ui/alerts/{alert}"})
        assert ok.status_code == 303
    assert scalar(app, f"SELECT status FROM notify.alerts WHERE id = '{alert}'") == "ack"
    assert audit_rows(app) == 1


def test_a_session_cookie_after_its_token_was_revoked_is_refused_and_changes_nothing(app, client, clock, operator):
    alert = open_alert(app, clock)
    sign_in(client, operator)
    session_id = client.cookies["ne_console"]
    token = csrf_of(client, f"/ui/alerts/{alert}")
    revoke_token(app, "alice")
    response = client.post(f"/ui/alerts/{alert}/ack", data={"csrf_token": token, "comment": "too late"})
    assert response.status_code == 401 and "Sign in again" in response.text
    assert "Max-Age=0" in response.headers["Set-Cookie"]           # the dead cookie is cleared
    assert scalar(app, f"SELECT status FROM notify.alerts WHERE id = '{alert}'") == "open"
    assert audit_rows(app) == 0
    client.cookies.set("ne_console", session_id)                   # replayed anyway
    page = client.get(f"/ui/alerts/{alert}")
    assert page.status_code == 303 and page.headers["Location"].startswith("/ui/login?next=")


def test_a_comment_longer_than_the_apis_limit_is_refused_and_changes_nothing(app, client, clock, operator):
    alert = open_alert(app, clock)
    sign_in(client, operator)
    token = csrf_of(client, f"/ui/alerts/{alert}")
    response = client.post(f"/ui/alerts/{alert}/ack", data={"csrf_token": token, "comment": "x" * 2001})
    assert response.status_code == 400 and "at most 2000 characters" in response.text
    assert scalar(app, f"SELECT status FROM notify.alerts WHERE id = '{alert}'") == "open"


def test_errors_are_html_pages_not_api_problems(client, operator):
    sign_in(client, operator)
    for path, status in (("/ui/alerts/not-a-uuid", 404), ("/ui/alerts/7a1c2d3e-0000-4000-8000-0000000000ff", 404),
                         ("/ui/no-such-page", 404), ("/ui/alerts?severity=loud", 400)):
        response = client.get(path)
        assert response.status_code == status, path
        assert response.headers["Content-Type"].startswith("text/html"), path


# ------------------------------------------------------------------------------ the pages


def test_an_ack_from_the_console_is_the_apis_ack_audited_with_the_tokens_name(app, client, clock, operator):
    alert = open_alert(app, clock)
    sign_in(client, operator)
    token = csrf_of(client, f"/ui/alerts/{alert}")
    response = client.post(f"/ui/alerts/{alert}/ack", data={"csrf_token": token, "comment": "card updated"})
    assert response.status_code == 303 and response.headers["Location"] == f"/ui/alerts/{alert}?done=ack"
    assert scalar(app, f"SELECT acked_by FROM notify.alerts WHERE id = '{alert}'") == "alice"
    with app.databases.begin("admin_log") as conn:
        (row,) = conn.execute(text("SELECT action, target_type, target_id, comment, diff FROM admin_log.admin_events")).all()
    assert (row.action, row.target_type, row.target_id, row.comment) == ("ALERT_ACK", "ALERT", alert, "card updated")
    assert row.diff["actor"] == "alice"
    page = client.get(f"/ui/alerts/{alert}?done=ack").text
    assert "Acknowledged by alice" in page and "card updated" in page
    again = client.post(f"/ui/alerts/{alert}/ack", data={"csrf_token": token})
    assert again.headers["Location"].endswith("?done=nothing")
    assert audit_rows(app) == 1


def test_the_alerts_page_filters_as_the_cli_and_shows_names_not_uuids(app, client, clock, operator):
    critical = open_alert(app, clock, kind="RUNS_THRESHOLD", severity="critical")
    clock.advance(timedelta(minutes=5))
    warn = open_alert(app, clock, kind="STORAGE_THRESHOLD", severity="warn", tenant_id=OTHER_TENANT)
    resolved = open_alert(app, clock, kind="WALLET_LOW", severity="warn", status="resolved")
    sign_in(client, operator)

    page = client.get("/ui/alerts").text                       # default: open and acked
    assert critical in page and warn in page and resolved not in page
    assert page.index(warn) < page.index(critical)             # newest activity first
    assert "Acme Corp" in page and "Globex" in page and f">{TENANT[:8]}<" not in page
    only = client.get("/ui/alerts", params={"severity": "critical"}).text
    assert critical in only and warn not in only
    assert warn in client.get("/ui/alerts", params={"kind": "STORAGE_THRESHOLD"}).text
    assert critical not in client.get("/ui/alerts", params={"kind": "STORAGE_THRESHOLD"}).text
    by_tenant = client.get("/ui/alerts", params={"tenant": OTHER_TENANT}).text
    assert warn in by_tenant and critical not in by_tenant
    everything = client.get("/ui/alerts", params={"status": "any"}).text
    assert resolved in everything
    assert client.get("/ui/alerts", params={"tenant": "acme"}).status_code == 400


def test_the_alert_page_shows_its_timeline_notifications_and_their_attempts(app, client, clock, operator, receiver):
    app.config.channels.webhook.allow_private_networks = True
    with app.databases.begin("notify") as conn:
        add_dest(conn, clock.now(), "webhook", receiver.url("/status/503"), tenant_id=TENANT)
    alert = str(raise_event(app, TENANT, "PAYMENT_FAILED", base_id=BASE, context={"invoice": "in_42"}).alert_id)
    clock.advance(timedelta(seconds=30))
    deliver_due(app)
    clock.advance(timedelta(minutes=3))
    sign_in(client, operator)
    token = csrf_of(client, f"/ui/alerts/{alert}")
    client.post(f"/ui/alerts/{alert}/ack", data={"csrf_token": token, "comment": "looking"})
    page = html.unescape(client.get(f"/ui/alerts/{alert}").text)
    assert "Billing base" in page and "Acme Corp" in page and "in_42" in page
    timeline = page[page.index("Timeline"):]
    assert timeline.index("opened (") < timeline.index("opened notification") < timeline.index("acknowledged")
    assert "webhook" in timeline and "#1" in timeline and "transient" in timeline and "503" in timeline
    assert "alice" in timeline and "looking" in timeline
    assert 'action="/ui/alerts/' + alert + '/ack"' not in page           # acked: no ack form any more
    assert 'action="/ui/alerts/' + alert + '/resolve"' in page


def test_the_destinations_page_shows_health_and_sends_a_test(app, client, clock, operator, receiver):
    app.config.channels.webhook.allow_private_networks = True
    with app.databases.begin("notify") as conn:
        healthy = add_dest(conn, clock.now(), "webhook", receiver.url("/ok"), tenant_id=TENANT)
        paused = add_dest(conn, clock.now(), "webhook", receiver.url("/status/500"), tenant_id=OTHER_TENANT)
        conn.execute(text("UPDATE notify.destinations SET consecutive_failures = 5, pause_level = 1, "
                          "paused_until = :until WHERE id = :id"), dict(until=clock.now() + timedelta(minutes=2), id=paused))
    sign_in(client, operator)
    page = client.get("/ui/destinations").text
    assert 'class="health paused"' in page and 'class="health unused"' in page and "Globex" in page
    token = csrf_of(client, "/ui/destinations")
    response = client.post(f"/ui/destinations/{healthy}/test", data={"csrf_token": token})
    assert response.status_code == 303 and response.headers["Location"].startswith("/ui/destinations?test=")
    assert len(receiver.received) == 1
    shown = client.get(response.headers["Location"]).text
    assert "Test send to webhook" in shown and "<strong>sent</strong>" in shown
    assert 'class="health ok"' in shown
    refused = client.post(f"/ui/destinations/{healthy}/test", data={})
    assert refused.status_code == 403 and len(receiver.received) == 1


def test_the_status_page_shows_the_queue_failures_jobs_and_partitions(app, client, clock, operator):
    with app.databases.begin("notify") as conn:
        add_dest(conn, clock.now(), "email", "ops@example.com", tenant_id=TENANT)
    raise_event(app, TENANT, "PAYMENT_FAILED")
    sign_in(client, operator)
    page = client.get("/ui/status").text
    assert re.search(r'<div class="big">1</div><div>queued</div>', page)
    assert "failed notifications, last hour" in page and "Partitions" in page and "notify.quota_snapshots" in page


def test_the_console_is_not_part_of_the_api_document(client):
    document = client.get("/v1/openapi.json").json()
    assert document["paths"] and not [p for p in document["paths"] if p.startswith("/ui")]


@pytest.mark.four_databases
def test_the_timeline_reads_the_audit_rows_from_admin_logs_own_database(app, client, clock, operator):
    alert = open_alert(app, clock)
    sign_in(client, operator)
    clock.advance(timedelta(minutes=1))
    client.post(f"/ui/alerts/{alert}/resolve", data={"csrf_token": csrf_of(client, f"/ui/alerts/{alert}"),
                                                     "comment": "fixed upstream"})
    timeline = client.get(f"/ui/alerts/{alert}").text.split("Timeline", 1)[1]
    assert "resolved by hand" in timeline and "fixed upstream" in timeline and "alice" in timeline


def test_a_multipart_form_with_a_file_for_its_csrf_token_is_refused_not_a_failure(app, client, clock, operator):
    alert = open_alert(app, clock)
    sign_in(client, operator)
    response = client.post(f"/ui/alerts/{alert}/ack", files={"csrf_token": ("x.txt", b"abc")})
    assert response.status_code == 403
    assert scalar(app, f"SELECT status FROM notify.alerts WHERE id = '{alert}'") == "open"
