"""Slack: chat.postMessage through slack-sdk against a server speaking Slack's Web API."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tests.delivery_support import add_dest, insert_alert, notifications
from engine.dispatcher import deliver_due
from engine.planner import plan_notifications


def queue(app, target: str) -> str:
    now = app.clock.now()
    with app.databases.begin("notify") as conn:
        add_dest(conn, now, "slack", target)
        alert = insert_alert(conn, now, severity="critical", context={
            "metric": "runs_used", "value": 1000, "limit": 1000, "percent": 100.0, "level_percent": 100,
            "plan": "default", "period": "2026-11", "captured_at": "2026-11-30T09:12:00+00:00"})
        plan_notifications(conn, app.config, now)
    return alert


def row(app) -> dict:
    with app.databases.begin("notify") as conn:
        (only,) = notifications(conn)
    return only


def test_a_message_is_posted_with_block_kit_blocks_and_fallback_text(slack_app, slack_server):
    alert = queue(slack_app, "C0ALERTS")
    assert deliver_due(slack_app).sent == 1
    (request,) = slack_server.received
    assert request.path == "/api/chat.postMessage"
    payload = request.json()
    assert payload["channel"] == "C0ALERTS"
    assert payload["text"] == "You have reached your monthly runs limit"
    blocks = payload["blocks"]
    assert blocks[0]["type"] == "header" and blocks[0]["text"]["text"] == "You have reached your monthly runs limit"
    assert "1,000 of 1,000" in blocks[1]["text"]["text"]
    assert alert in blocks[-1]["elements"][0]["text"]
    assert row(slack_app)["status"] == "sent"


def test_rate_limiting_honours_retry_after(slack_app):
    queue(slack_app, "CRATELIMIT")
    deliver_due(slack_app)
    only = row(slack_app)
    assert only["status"] == "queued" and only["error"] == "Slack rate limited (429)"
    assert only["next_attempt_at"] == slack_app.clock.now() + timedelta(seconds=30)


@pytest.mark.parametrize("channel, token, error", [("CMISSING", "xoxb-test-token", "Slack error channel_not_found"),
                                                   ("C0ALERTS", "xoxb-revoked", "Slack error invalid_auth")])
def test_errors_that_do_not_heal_fail_at_once(slack_app, channel, token, error):
    slack_app.config.channels.slack.token = token
    queue(slack_app, channel)
    deliver_due(slack_app)
    only = row(slack_app)
    assert (only["status"], only["error"]) == ("failed", error)
    assert token not in only["error"]


def test_internal_error_is_retried(slack_app):
    queue(slack_app, "CINTERNAL")
    deliver_due(slack_app)
    only = row(slack_app)
    assert only["status"] == "queued" and only["error"] == "Slack error internal_error"


def test_an_unreachable_api_is_transient(app):
    app.config.channels.slack.token = "xoxb-test-token"
    app.config.channels.slack.base_url = "http://127.0.0.1:9/api/"
    queue(app, "C0ALERTS")
    deliver_due(app)
    only = row(app)
    assert only["status"] == "queued" and only["error"].startswith("Slack connection failed")


def test_an_incoming_webhook_url_is_posted_to_directly(app, slack_server):
    app.config.channels.webhook.allow_private_networks = True
    queue(app, slack_server.url("/hooks/T000/B000/XXXX"))
    deliver_due(app)
    assert row(app)["status"] == "sent"
    body = json.loads(slack_server.received[0].body)
    assert body["text"] == "You have reached your monthly runs limit" and body["blocks"][0]["type"] == "header"


def test_an_incoming_webhook_on_a_private_address_is_refused(app, slack_server):
    queue(app, slack_server.url("/hooks/T000/B000/XXXX"))
    deliver_due(app)
    only = row(app)
    assert only["status"] == "failed" and only["error"].startswith("target refused")
    assert slack_server.received == []
