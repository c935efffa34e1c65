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
