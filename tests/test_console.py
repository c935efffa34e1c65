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
    for _ in range(3):                                  # in use: the idle timeout never comes
        clock.advance(timedelta(seconds=(TTL - 1) / 3))
        assert client.get("/ui/alerts").status_code == 200
    clock.advance(timedelta(seconds=1))
    assert client.get("/ui/alerts").status_code == 303


def test_a_session_idle_for_the_idle_timeout_ends_and_activity_keeps_it(app, client, clock, operator):
    idle = ApiConfig().console_idle_timeout           # 30 minutes, the default
    assert 2 * idle < TTL + 61
    sign_in(client, operator)
    clock.advance(timedelta(seconds=idle - 61))        # requests less than the timeout apart keep it,
    assert client.get("/ui/alerts").status_code == 200
    clock.advance(timedelta(seconds=idle - 61))        # past the timeout counted from sign-in
    assert client.get("/ui/alerts").status_code == 200
    sign_in(client, operator)                          # a fresh session, left alone for the timeout,
    clock.advance(timedelta(seconds=idle))             # well inside its TTL
    assert client.get("/ui/alerts").status_code == 303
    assert client.post("/ui/logout", data={"csrf_token": "x"}).status_code == 401
    # The cleanup job deletes both idle sessions (sign-in does too).
    from engine.retention import delete_stale_state

    assert delete_stale_state(app.databases, app.config, clock.now()) == 2
    assert scalar(app, "SELECT count(*) FROM notify.console_sessions") == 0


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


def test_an_ack_from_the_console_may_lapse_after_a_chosen_time_as_ack_for_does(app, client, clock, operator):
    from engine.config import Duration
    from engine.alerts import expire_acks

    alert = open_alert(app, clock, severity="warn")
    sign_in(client, operator)
    page = client.get(f"/ui/alerts/{alert}").text
    assert "never: until it resolves" in page and '<option value="4h">4h</option>' in page
    token = csrf_of(client, f"/ui/alerts/{alert}")
    refused = client.post(f"/ui/alerts/{alert}/ack", data={"csrf_token": token, "for": "soon"})
    assert refused.status_code == 400 and "Lapses after: expected a duration" in html.unescape(refused.text)
    assert scalar(app, f"SELECT status FROM notify.alerts WHERE id = '{alert}'") == "open" and audit_rows(app) == 0

    response = client.post(f"/ui/alerts/{alert}/ack", data={"csrf_token": token, "for": "4h"})
    assert response.headers["Location"].endswith("?done=ack")
    lapses = scalar(app, f"SELECT ack_expires_at - acked_at FROM notify.alerts WHERE id = '{alert}'")
    assert lapses == timedelta(hours=4)
    clock.advance(timedelta(hours=4, seconds=1))
    expire_acks(app)
    assert scalar(app, f"SELECT status FROM notify.alerts WHERE id = '{alert}'") == "open"

    # With escalation.ack_timeout for the severity, the form's default says so.
    app.config.escalation.ack_timeout = {"warn": Duration(8 * 3600)}
    sign_in(client, operator)                           # four idle hours ended the session
    assert "8h (the default for warn)" in client.get(f"/ui/alerts/{alert}").text


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


# ------------------------------------------------------------------------------ silences


def silence_form(client, **fields) -> httpx.Response:
    token = csrf_of(client, "/ui/silences/new")
    return client.post("/ui/silences", data={"csrf_token": token, **fields})


def silences(app) -> list:
    with app.databases.begin("notify") as conn:
        return conn.execute(text("SELECT id, matchers, starts_at, ends_at, created_by, comment, expired_by "
                                 "FROM notify.silences ORDER BY created_at")).all()


def test_a_silence_added_from_the_console_is_notifyctls_audited_with_the_tokens_name(app, client, clock, operator):
    open_alert(app, clock)                                        # the tenant is known
    sign_in(client, operator)
    response = silence_form(client, tenant="Acme Corp", kind="PAYMENT_FAILED", duration="2h",
                            comment="card processor maintenance")
    assert response.status_code == 303
    ((ident, matchers, starts, ends, created_by, comment, _),) = silences(app)
    assert response.headers["Location"] == f"/ui/silences?added={ident}"
    assert matchers == [{"name": "tenant", "value": TENANT, "isRegex": False, "isEqual": True},
                        {"name": "kind", "value": "PAYMENT_FAILED", "isRegex": False, "isEqual": True}]
    assert starts == clock.now() and ends - starts == timedelta(hours=2)
    assert (created_by, comment) == ("alice", "card processor maintenance")
    with app.databases.begin("admin_log") as conn:
        (row,) = conn.execute(text("SELECT action, target_type, target_id, tenant_id, comment, diff "
                                   "FROM admin_log.admin_events")).all()
    assert (row.action, row.target_type, row.target_id, str(row.tenant_id), row.comment) == (
        "SILENCE_ADD", "SILENCE", str(ident), TENANT, "card processor maintenance")
    assert row.diff["actor"] == "alice"
    page = html.unescape(client.get(response.headers["Location"]).text)
    assert "Silence added by alice" in page


def test_the_silences_page_lists_active_and_pending_in_words_with_their_suppressed_counts(app, client, clock,
                                                                                         operator):
    from engine.silences import Matcher, add_silence, expire_silence

    open_alert(app, clock)
    active = add_silence(app, [Matcher("tenant", TENANT), Matcher("severity", "warn")], duration=3600,
                         comment="noisy tenant", actor="bob")
    pending = add_silence(app, [Matcher("base", BASE)], starts_at=clock.now() + timedelta(hours=5), duration=7200,
                          comment="database upgrade window", actor="carol")
    gone = add_silence(app, [Matcher("kind", "WALLET_LOW")], duration=600, comment="old one", actor="bob")
    expire_silence(app, str(gone), actor="bob")
    with app.databases.begin("notify") as conn:           # one notification this silence held down
        add_dest(conn, clock.now(), "email", "ops@example.com", tenant_id=TENANT)
    raise_event(app, TENANT, "PAYMENT_FAILED", severity="warn")
    sign_in(client, operator)
    page = html.unescape(client.get("/ui/silences").text)
    active_part = page[page.index("<h2>Active"):page.index("<h2>Pending")]
    pending_part = page[page.index("<h2>Pending"):page.index("<details")]
    expired_part = page[page.index("<details"):]
    assert f"silence-{active}" in active_part and f"silence-{pending}" in pending_part
    assert f"silence-{gone}" in expired_part and f"silence-{gone}" not in page[:page.index("<details")]
    assert re.search(r'<span class="label">tenant</span> <span class="op">is</span>\s*'
                     rf'<span class="value" title="{TENANT}">Acme Corp</span>', active_part)
    assert "Billing base" in pending_part and "database upgrade window" in pending_part and "carol" in pending_part
    assert "in 5h" in pending_part and "in 1h" in active_part     # starts / ends, relative
    assert (clock.now() + timedelta(hours=5)).strftime("%Y-%m-%d %H:%M:%S") + " UTC" in pending_part
    assert f'action="/ui/silences/{active}/expire"' in active_part
    assert f'action="/ui/silences/{gone}/expire"' not in page
    held = scalar(app, f"SELECT count(*) FROM notify.notifications WHERE suppressed_by = 'silence:{active}'")
    assert held >= 1
    assert re.search(rf'<td class="num">{held}</td>\s*<td>\s*<form method="post" action="/ui/silences/{active}', page)


def test_expire_from_the_console_ends_the_silence_audited_and_says_so_once(app, client, clock, operator):
    from engine.silences import Matcher, add_silence

    ident = add_silence(app, [Matcher("kind", "PAYMENT_FAILED")], duration=3600, comment="deploy", actor="bob")
    sign_in(client, operator)
    token = csrf_of(client, "/ui/silences")
    response = client.post(f"/ui/silences/{ident}/expire", data={"csrf_token": token})
    assert response.status_code == 303 and response.headers["Location"] == f"/ui/silences?expired={ident}"
    ((_, _, _, _, _, _, expired_by),) = silences(app)
    assert expired_by == "alice"
    with app.databases.begin("admin_log") as conn:
        actions = conn.execute(text("SELECT action, diff->>'actor', target_id FROM admin_log.admin_events")).all()
    assert sorted(actions) == [("SILENCE_ADD", "bob", str(ident)), ("SILENCE_EXPIRE", "alice", str(ident))]
    page = html.unescape(client.get(response.headers["Location"]).text)
    assert "Silence expired by alice" in page and "0 active, 0 pending" in page
    again = client.post(f"/ui/silences/{ident}/expire", data={"csrf_token": token})
    assert again.headers["Location"] == f"/ui/silences?unchanged={ident}"
    assert audit_rows(app) == 2
    assert client.post("/ui/silences/not-a-uuid/expire", data={"csrf_token": token}).status_code == 404


@pytest.mark.parametrize("fields, field, words", [
    ({"duration": "2h", "comment": "why"}, "Matchers", "give at least one of tenant, kind, severity or base"),
    ({"tenant": "Nobody Inc", "duration": "2h", "comment": "why"}, "Tenant", "nor a tenant name the console knows"),
    ({"tenant": "7a1c2d3e-0000-4000-8000-0000000000ee", "duration": "2h", "comment": "why"}, "Tenant",
     "unknown tenant 7a1c2d3e-0000-4000-8000-0000000000ee"),
    ({"kind": "NOT_A_KIND", "duration": "2h", "comment": "why"}, "Kind", "unknown alert kind 'NOT_A_KIND'"),
    ({"severity": "loud", "duration": "2h", "comment": "why"}, "Severity", "expected one of"),
    ({"base": "not-a-base", "duration": "2h", "comment": "why"}, "Base", "not a base id"),
    ({"kind": "PAYMENT_FAILED", "duration": "soon", "comment": "why"}, "Duration", "expected a duration"),
    ({"kind": "PAYMENT_FAILED", "duration": "0s", "comment": "why"}, "Duration", "longer than 0s"),
    ({"kind": "PAYMENT_FAILED", "duration": "", "comment": "why"}, "Duration", "say how long"),
    ({"kind": "PAYMENT_FAILED", "duration": "1h", "starts_at": "tomorrow", "comment": "why"}, "Starts at",
     "expected a time such as"),
    ({"kind": "PAYMENT_FAILED", "duration": "1h", "starts_at": "2020-01-01 00:00", "comment": "why"}, "Duration",
     "would end in the past"),
    ({"kind": "PAYMENT_FAILED", "duration": "1h", "comment": "  "}, "Comment", "say why"),
    ({"kind": "PAYMENT_FAILED", "duration": "1h", "comment": "x" * 2001}, "Comment", "at most 2000 characters"),
])
def test_bad_input_in_the_silence_form_comes_back_naming_the_field_and_writes_nothing(app, client, clock, operator,
                                                                                     fields, field, words):
    open_alert(app, clock)
    sign_in(client, operator)
    response = silence_form(client, **fields)
    assert response.status_code == 400 and response.headers["Content-Type"].startswith("text/html")
    page = html.unescape(response.text)
    message = re.search(r'<p class="flash error" role="alert">(.*?)</p>', page, re.S).group(1)
    assert message.startswith(f"{field}: ") and words in message and "Nothing was added" in message, message
    assert 'action="/ui/silences"' in page                        # the form again, with what was typed
    if fields.get("comment", "").strip() and len(fields["comment"]) < 100:
        assert f">{fields['comment']}</textarea>" in page
    assert silences(app) == [] and audit_rows(app) == 0


def test_the_silence_forms_refuse_a_missing_csrf_token_or_another_origin_and_change_nothing(app, server, clock,
                                                                                        operator):
    from engine.silences import Matcher, add_silence

    ident = add_silence(app, [Matcher("kind", "PAYMENT_FAILED")], duration=3600, comment="deploy", actor="bob")
    add = {"kind": "WALLET_LOW", "duration": "1h", "comment": "quiet please"}
    with httpx.Client(base_url=server.url, trust_env=False, timeout=20, headers={"Origin": server.url}) as c:
        sign_in(c, operator)
        token = csrf_of(c, "/ui/silences/new")
        for path, form in (("/ui/silences", add), (f"/ui/silences/{ident}/expire", {})):
            assert c.post(path, data=form).status_code == 403, path
            assert c.post(path, data={**form, "csrf_token": token[:-2] + "xx"}).status_code == 403, path
            refused = c.post(path, data={**form, "csrf_token": token}, headers={"Origin": "https://evil.example"})
            assert refused.status_code == 403 and "not sent from a page of this console" in refused.text, path
    ((_, _, _, _, _, _, expired_by),) = silences(app)
    assert expired_by is None and audit_rows(app) == 1          # only the SILENCE_ADD of the setup


def test_silence_similar_on_the_alert_page_prefills_the_form_with_its_tenant_kind_and_base(app, client, clock,
                                                                                          operator):
    alert = str(raise_event(app, TENANT, "PAYMENT_FAILED", base_id=BASE).alert_id)
    sign_in(client, operator)
    page = html.unescape(client.get(f"/ui/alerts/{alert}").text)
    link = re.search(r'<a id="silence-similar" href="([^"]+)"', page).group(1)
    assert parse_qs(urlsplit(link).query) == {"tenant": [TENANT], "kind": ["PAYMENT_FAILED"], "base": [BASE]}
    form = html.unescape(client.get(link).text)
    assert f'name="tenant" value="{TENANT}"' in form and "Acme Corp" in form and "Billing base" in form
    assert '<option value="PAYMENT_FAILED" selected>' in form and f'name="base" value="{BASE}"' in form
    assert 'name="duration" value="2h"' in form


def test_a_later_start_in_the_form_makes_a_pending_maintenance_window(app, client, clock, operator):
    sign_in(client, operator)
    starts = (clock.now() + timedelta(hours=3)).replace(second=0, microsecond=0)
    response = silence_form(client, severity="warn", duration="1d", starts_at=starts.strftime("%Y-%m-%d %H:%M"),
                            comment="database upgrade")
    assert response.status_code == 303
    ((ident, matchers, starts_at, ends_at, *_),) = silences(app)
    assert matchers == [{"name": "severity", "value": "warn", "isRegex": False, "isEqual": True}]
    assert (starts_at, ends_at - starts_at) == (starts, timedelta(days=1))
    page = html.unescape(client.get("/ui/silences").text)
    assert f"silence-{ident}" in page[page.index("<h2>Pending"):page.index("<details")]
    assert "0 active, 1 pending" in page
