"""Ack and resolve from the message itself (issue 17): signed, expiring, single-use links in a
real email, their confirmation page and POST on the running API, and Slack's Block Kit buttons
with a real local server standing in for Slack's Web API (chat.postMessage, chat.update)."""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import hmac
import json
import re
import time
from datetime import timedelta
from urllib.parse import urlencode

import httpx
import pytest
from aiohttp import web
from cryptography.fernet import Fernet
from sqlalchemy import text

from engine.api.server import ApiServer
from engine.config import ApiConfig, RouteConfig
from engine.dispatcher import deliver_due
from engine.planner import plan_notifications
from tests.delivery_support import HttpServer, TENANT, add_dest, insert_alert, slack_responder

RUNS = {"metric": "runs_used", "value": 850, "limit": 1000, "percent": 85.0, "level_percent": 80,
        "plan": "default", "period": "2026-11", "captured_at": "2026-11-25T11:50:00+00:00"}
OPS = "ops@platform.example"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


@pytest.fixture
def api(app):
    server = ApiServer(app, ApiConfig(listen="127.0.0.1:0")).start()
    yield server
    server.stop()


@pytest.fixture
def client(api):
    with httpx.Client(base_url=api.url, trust_env=False, timeout=10) as c:
        yield c


@pytest.fixture
def ops_app(app, smtp, api):
    app.config.channels.email.port = smtp[1]
    app.config.channels.email.sender = "alerts@notify.example"
    app.config.channels.webhook.secret_key = Fernet.generate_key().decode()
    app.config.messages.public_url = api.url
    app.config.messages.names = {TENANT: "Acme Analytics"}
    # No grouping: the ops route's defaults (issue 15) would hold each email 30s or more.
    app.config.routes = [RouteConfig(name="ops", channel="email", target=OPS, group_wait=0, group_interval=0)]
    return app


def raise_alert(app, *, severity: str = "critical") -> str:
    now = app.clock.now()
    with app.databases.begin("notify") as conn:
        alert = insert_alert(conn, now, severity=severity, context=RUNS)
        plan_notifications(conn, app.config, now)
    deliver_due(app)
    return alert


def email_to(handler, address: str):
    for envelope in reversed(handler.messages):
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        if message["To"] == address:
            return message
    raise AssertionError(f"no email to {address}")


def links_in(message) -> dict[str, str]:
    body = message.get_body(("plain",)).get_content()
    return {action: found.group(1) for action in ("Acknowledge", "Resolve")
            if (found := re.search(rf"^{action}: (\S+)", body, re.MULTILINE))}


def status_of(app, alert: str) -> str:
    with app.databases.begin("notify") as conn:
        return conn.execute(text("SELECT status FROM notify.alerts WHERE id = :id"), {"id": alert}).scalar_one()


def audits(app) -> list[tuple]:
    with app.databases.begin("admin_log") as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT action, target_id, diff->>'actor' FROM admin_log.admin_events ORDER BY occurred_at, action"))]


def used_nonces(app) -> int:
    with app.databases.begin("notify") as conn:
        return conn.execute(text("SELECT count(*) FROM notify.action_link_uses")).scalar_one()


def confirm(client, link: str) -> httpx.Response:
    return client.post(httpx.URL(link).path, data={"confirm": "yes"})


# ------------------------------------------------------------------------------------ email


def test_an_ops_email_carries_ack_and_resolve_links_and_a_tenant_destinations_email_none(ops_app, smtp):
    handler, _ = smtp
    with ops_app.databases.begin("notify") as conn:
        add_dest(conn, ops_app.clock.now(), "email", "owner@tenant.example")
    raise_alert(ops_app)
    ops = email_to(handler, OPS)
    links = links_in(ops)
    assert set(links) == {"Acknowledge", "Resolve"}
    assert all(link.startswith(f"{ops_app.config.messages.public_url}/v1/alert-actions/a1.") for link in links.values())
    html = ops.get_body(("html",)).get_content()
    assert all(f'href="{link}"' in html for link in links.values())
    assert links_in(email_to(handler, "owner@tenant.example")) == {}   # a customer's mailbox cannot ack


def test_the_confirmation_page_describes_the_alert_in_words_and_changes_nothing(ops_app, smtp, client):
    alert = raise_alert(ops_app)
    link = links_in(email_to(smtp[0], OPS))["Acknowledge"]
    for _ in range(2):   # a mail scanner's GET, then the person's
        page = client.get(httpx.URL(link).path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Acknowledge this alert?" in page.text
    assert "Runs quota threshold reached (RUNS_THRESHOLD)" in page.text
    assert f"Acme Analytics ({TENANT})" in page.text and "Critical" in page.text
    assert "25 November 2026, 12:00 (UTC)" in page.text
    assert 'method="post"' in page.text and "<script" not in page.text
    assert status_of(ops_app, alert) == "open" and audits(ops_app) == [] and used_nonces(ops_app) == 0


def test_the_links_post_acks_audits_the_recipient_as_actor_and_uses_the_link_up(ops_app, smtp, client):
    alert = raise_alert(ops_app)
    link = links_in(email_to(smtp[0], OPS))["Acknowledge"]
    done = confirm(client, link)
    assert done.status_code == 200 and "Alert acknowledged" in done.text
    actor = f"email {OPS} (link in the message)"
    assert status_of(ops_app, alert) == "ack"
    assert audits(ops_app) == [("ALERT_ACK", alert, actor)]
    with ops_app.databases.begin("notify") as conn:
        assert conn.execute(text("SELECT acked_by FROM notify.alerts WHERE id = :id"), {"id": alert}).scalar_one() == actor
    assert used_nonces(ops_app) == 1


def test_the_resolve_link_resolves(ops_app, smtp, client):
    alert = raise_alert(ops_app)
    assert confirm(client, links_in(email_to(smtp[0], OPS))["Resolve"]).status_code == 200
    assert status_of(ops_app, alert) == "resolved"
    assert [a[0] for a in audits(ops_app)] == ["ALERT_RESOLVE"]


def test_a_reused_link_is_refused_with_409_and_changes_nothing(ops_app, smtp, client):
    alert = raise_alert(ops_app)
    link = links_in(email_to(smtp[0], OPS))["Acknowledge"]
    assert confirm(client, link).status_code == 200
    with ops_app.databases.begin("notify") as conn:   # the ack lapsed: open again, so a replay would act
        conn.execute(text("UPDATE notify.alerts SET status = 'open' WHERE id = :id"), {"id": alert})
    again = confirm(client, link)
    assert again.status_code == 409 and "already used" in again.text and "Nothing was changed" in again.text
    assert client.get(httpx.URL(link).path).status_code == 409
    assert status_of(ops_app, alert) == "open" and len(audits(ops_app)) == 1 and used_nonces(ops_app) == 1


def test_an_expired_link_is_refused_with_410_and_changes_nothing(ops_app, smtp, client):
    alert = raise_alert(ops_app)
    link = links_in(email_to(smtp[0], OPS))["Acknowledge"]
    ops_app.clock.advance(timedelta(seconds=float(ops_app.config.messages.action_link_ttl) + 1))
    for response in (client.get(httpx.URL(link).path), confirm(client, link)):
        assert response.status_code == 410 and "expired" in response.text
    assert status_of(ops_app, alert) == "open" and audits(ops_app) == [] and used_nonces(ops_app) == 0


def test_a_forged_link_is_refused_with_400_and_changes_nothing(ops_app, smtp, client):
    alert = raise_alert(ops_app)
    link = links_in(email_to(smtp[0], OPS))["Acknowledge"]
    prefix, token = link.rsplit("/", 1)
    version, body, signature = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["x"] = "resolve"   # the ack link's signature on a resolve
    altered = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    forged = [f"{prefix}/{version}.{altered}.{signature}", f"{prefix}/{version}.{body}.{signature[:-4]}AAAA",
              f"{prefix}/not-a-token"]
    for bad in forged:
        assert confirm(client, bad).status_code == 400
        assert client.get(httpx.URL(bad).path).status_code == 400
    # Signed with another installation's key.
    ops_app.config.channels.webhook.secret_key = Fernet.generate_key().decode()
    response = confirm(client, link)
    assert response.status_code == 400 and "signature does not match" in response.text
    assert status_of(ops_app, alert) == "open" and audits(ops_app) == [] and used_nonces(ops_app) == 0


def test_a_post_without_the_forms_field_is_refused(ops_app, smtp, client):
    alert = raise_alert(ops_app)
    link = links_in(email_to(smtp[0], OPS))["Acknowledge"]
    assert client.post(httpx.URL(link).path).status_code == 400
    assert status_of(ops_app, alert) == "open" and used_nonces(ops_app) == 0


def test_no_links_without_a_public_url_or_once_resolved(ops_app, smtp):
    handler, _ = smtp
    ops_app.config.messages.public_url = None
    raise_alert(ops_app)
    assert links_in(email_to(handler, OPS)) == {}
    from engine.action_links import links_for

    ops_app.config.messages.public_url = "https://notify.example.com"
    common = dict(alert_id="x", ops_route=True, channel="email", recipient=OPS, now=ops_app.clock.now())
    assert set(links_for(ops_app.config, transition="reminder", status="open", **common)) == {"ack", "resolve"}
    assert set(links_for(ops_app.config, transition="reminder", status="ack", **common)) == {"resolve"}
    assert links_for(ops_app.config, transition="resolved", status="resolved", **common) is None
    assert links_for(ops_app.config, transition="opened", status="open", **{**common, "ops_route": False}) is None


# ------------------------------------------------------------------------------------ Slack


class FakeSlack:
    """Slack's Web API on loopback: chat.postMessage as slack_responder answers it, and chat.update."""

    def __init__(self):
        self.server = HttpServer(self.respond)

    async def respond(self, request: web.Request, body: bytes) -> web.StreamResponse:
        if request.path.endswith("/chat.update"):
            if request.headers.get("Authorization") != "Bearer xoxb-test-token":
                return web.json_response({"ok": False, "error": "invalid_auth"})
            payload = json.loads(body)
            return web.json_response({"ok": True, "channel": payload["channel"], "ts": payload["ts"]})
        return await slack_responder(request, body)

    def calls(self, method: str) -> list[dict]:
        return [r.json() for r in self.server.received if r.path.endswith(f"/{method}")]


@pytest.fixture
def slack():
    fake = FakeSlack()
    fake.server.start()
    yield fake
    fake.server.stop()


@pytest.fixture
def slack_app(ops_app, slack):
    ops_app.config.channels.slack.token = "xoxb-test-token"
    ops_app.config.channels.slack.base_url = slack.server.url("/api/")
    ops_app.config.channels.slack.signing_secret = SIGNING_SECRET
    ops_app.config.routes = [RouteConfig(name="ops-slack", channel="slack", target="C0OPS", group_wait=0,
                                              group_interval=0)]
    return ops_app


def block_actions(posted: dict, action_id: str, *, user: str = "U0ALICE") -> str:
    """The form body Slack sends when `user` presses the button `action_id` of the posted message."""
    pressed = next(e for b in posted["blocks"] if b["type"] == "actions" for e in b["elements"]
                   if e.get("action_id") == action_id)
    payload = {"type": "block_actions", "user": {"id": user, "username": "alice", "name": "alice"},
               "container": {"type": "message", "message_ts": "1700000000.000100", "channel_id": posted["channel"]},
               "channel": {"id": posted["channel"]},
               "message": {"ts": "1700000000.000100", "text": posted["text"], "blocks": posted["blocks"]},
               "actions": [{"action_id": action_id, "value": pressed["value"], "type": "button",
                            "block_id": "b1", "action_ts": "1700000001.0001"}]}
    return urlencode({"payload": json.dumps(payload)})


def signed(body: str, stamp: int, secret: str = SIGNING_SECRET) -> dict:
    digest = hmac.new(secret.encode(), f"v0:{stamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(stamp), "X-Slack-Signature": f"v0={digest}",
            "Content-Type": "application/x-www-form-urlencoded"}


def test_slack_buttons_ack_with_the_slack_user_as_actor_and_the_message_shows_who(slack_app, slack, client):
    alert = raise_alert(slack_app)
    (posted,) = slack.calls("chat.postMessage")
    buttons = {e["action_id"]: e["value"] for b in posted["blocks"] if b["type"] == "actions" for e in b["elements"]
               if "action_id" in e}
    assert buttons == {"notify_ack": alert, "notify_resolve": alert}
    body = block_actions(posted, "notify_ack")
    answer = client.post("/slack/actions", content=body, headers=signed(body, int(slack_app.clock.now().timestamp())))
    assert answer.status_code == 200 and answer.json() == {"ok": True, "alert_id": alert, "changed": True,
                                                           "status": "ack"}
    assert status_of(slack_app, alert) == "ack"
    assert audits(slack_app) == [("ALERT_ACK", alert, "slack:U0ALICE (alice)")]
    (update,) = slack.calls("chat.update")
    assert (update["channel"], update["ts"]) == ("C0OPS", "1700000000.000100")
    remaining = [e.get("action_id") for b in update["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert "notify_ack" not in remaining and "notify_resolve" in remaining
    assert "Acknowledged by <@U0ALICE>" in update["blocks"][-1]["elements"][0]["text"]


def test_a_forged_slack_signature_is_refused_401_and_changes_nothing(slack_app, slack, client):
    alert = raise_alert(slack_app)
    (posted,) = slack.calls("chat.postMessage")
    body = block_actions(posted, "notify_resolve")
    stamp = int(slack_app.clock.now().timestamp())
    for headers in (signed(body, stamp, secret="another app's secret"),
                    signed(body.replace("U0ALICE", "U0MALLORY"), stamp),    # signature of another body
                    {"Content-Type": "application/x-www-form-urlencoded"}):  # none at all
        answer = client.post("/slack/actions", content=body, headers=headers)
        assert answer.status_code == 401 and answer.headers["content-type"].startswith("application/problem+json")
    assert status_of(slack_app, alert) == "open" and audits(slack_app) == [] and slack.calls("chat.update") == []


def test_a_stale_slack_timestamp_is_refused_401_and_changes_nothing(slack_app, slack, client):
    alert = raise_alert(slack_app)
    (posted,) = slack.calls("chat.postMessage")
    body = block_actions(posted, "notify_ack")
    stamp = int(slack_app.clock.now().timestamp())
    headers = signed(body, stamp)   # correctly signed, then replayed 5 minutes and 1 second later
    slack_app.clock.advance(timedelta(seconds=301))
    answer = client.post("/slack/actions", content=body, headers=headers)
    assert answer.status_code == 401 and "X-Slack-Request-Timestamp" in answer.json()["detail"]
    assert status_of(slack_app, alert) == "open" and audits(slack_app) == [] and slack.calls("chat.update") == []
    slack_app.clock.advance(timedelta(seconds=-2))   # within the window the same request acts
    assert client.post("/slack/actions", content=body, headers=headers).status_code == 200
    assert status_of(slack_app, alert) == "ack"


def test_without_a_signing_secret_slack_gets_link_buttons_and_callbacks_are_refused(slack_app, slack, client):
    slack_app.config.channels.slack.signing_secret = None
    alert = raise_alert(slack_app)
    (posted,) = slack.calls("chat.postMessage")
    elements = [e for b in posted["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert not any("action_id" in e for e in elements)
    urls = [e["url"] for e in elements if "/v1/alert-actions/" in e.get("url", "")]
    assert len(urls) == 2
    body = block_actions({**posted, "blocks": [{"type": "actions", "elements": [
        {"type": "button", "action_id": "notify_ack", "value": alert}]}]}, "notify_ack")
    answer = client.post("/slack/actions", content=body, headers=signed(body, int(slack_app.clock.now().timestamp())))
    assert answer.status_code == 403 and status_of(slack_app, alert) == "open"


def test_the_signing_secret_never_reaches_the_logs(slack_app, slack, client, caplog):
    raise_alert(slack_app)
    (posted,) = slack.calls("chat.postMessage")
    body = block_actions(posted, "notify_ack")
    client.post("/slack/actions", content=body, headers=signed(body, int(time.time()) - 10_000))
    from engine.logging import config_secrets

    assert SIGNING_SECRET in config_secrets(slack_app.config)   # registered with the log redactor
    assert SIGNING_SECRET not in caplog.text


def test_interactive_buttons_need_no_public_url_and_never_reach_a_tenant_channel(slack_app, slack):
    slack_app.config.messages.public_url = None
    with slack_app.databases.begin("notify") as conn:
        add_dest(conn, slack_app.clock.now(), "slack", "C0TENANT")
    alert = raise_alert(slack_app)
    posted = {p["channel"]: p for p in slack.calls("chat.postMessage")}
    ids = {channel: [e.get("action_id") for b in p["blocks"] if b["type"] == "actions" for e in b["elements"]]
           for channel, p in posted.items()}
    assert ids["C0OPS"] == ["notify_ack", "notify_resolve"] and alert
    assert not any(ids["C0TENANT"])
