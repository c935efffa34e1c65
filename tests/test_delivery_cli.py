"""notifyctl destinations and notifications, as CONTRACT.md names them."""

from __future__ import annotations

import json

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from tests.delivery_support import TENANT, add_dest, insert_alert
from engine.cli import main
from engine.planner import plan_notifications

KEY = Fernet.generate_key().decode()


@pytest.fixture
def cfg(config_file):
    return str(config_file(f"channels:\n  webhook:\n    secret_key: {KEY}\n"))


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_destinations_add_list_and_remove(cfg, capsys, app):
    code, out, _ = run(capsys, "destinations", "add", "--tenant", TENANT, "--channel", "webhook",
                       "--target", "https://hooks.example.com/x", "--secret", "whsec_c2VjcmV0LXZhbHVlLW9mLTI0LWJ5dGVz",
                       "--kinds", "RUNS_THRESHOLD,WALLET_LOW", "--min-severity", "warn", "--config", cfg)
    assert code == 0
    destination = out.strip()
    code, out, _ = run(capsys, "destinations", "add", "--tenant", TENANT, "--channel", "email",
                       "--target", "ops@tenant.example", "--config", cfg)
    assert code == 0
    code, out, _ = run(capsys, "destinations", "list", "--tenant", TENANT, "--json", "--config", cfg)
    listed = json.loads(out)
    assert [d["channel"] for d in listed] == ["webhook", "email"]
    assert listed[0]["id"] == destination and listed[0]["secret"] == "********"
    assert listed[0]["kinds"] == ["RUNS_THRESHOLD", "WALLET_LOW"] and listed[0]["min_severity"] == "warn"
    assert listed[1]["secret"] is None
    assert "c2VjcmV0LXZhbHVl" not in out
    code, out, _ = run(capsys, "destinations", "list", "--config", cfg)
    assert "********" in out and "c2VjcmV0LXZhbHVl" not in out
    with app.databases.begin("notify") as conn:
        stored = conn.execute(text("SELECT secret_ciphertext FROM notify.destinations WHERE secret_ciphertext IS NOT NULL")).scalar()
    assert "c2VjcmV0LXZhbHVl" not in stored and Fernet(KEY).decrypt(stored.encode()) == b"whsec_c2VjcmV0LXZhbHVlLW9mLTI0LWJ5dGVz"
    assert run(capsys, "destinations", "remove", destination, "--config", cfg)[0] == 0
    code, out, _ = run(capsys, "destinations", "list", "--json", "--config", cfg)
    assert [d["channel"] for d in json.loads(out)] == ["email"]


@pytest.mark.parametrize("argv, message", [
    (["--tenant", "nope", "--channel", "email", "--target", "a@b.example"], "--tenant: a tenant id must be a UUID"),
    (["--tenant", TENANT, "--channel", "email", "--target", "not-an-address"], "--target: not an email address"),
    (["--tenant", TENANT, "--channel", "webhook", "--target", "ftp://x.example/"], "--target: expected an http:// or https:// URL"),
    (["--tenant", TENANT, "--channel", "webhook", "--target", "https://user:pw@x.example/"], "credentials in the URL"),
    (["--tenant", TENANT, "--channel", "email", "--target", "a@b.example", "--secret", "s"], "--secret: only webhook"),
])
def test_bad_destinations_are_refused_with_exit_2_and_nothing_stored(cfg, capsys, app, argv, message):
    code, out, err = run(capsys, "destinations", "add", *argv, "--config", cfg)
    assert code == 2 and message in err and err.count("\n") == 1
    with app.databases.begin("notify") as conn:
        assert conn.execute(text("SELECT count(*) FROM notify.destinations")).scalar() == 0


def test_a_secret_without_an_encryption_key_is_refused(config_file, capsys):
    code, _, err = run(capsys, "destinations", "add", "--tenant", TENANT, "--channel", "webhook",
                       "--target", "https://hooks.example.com/x", "--secret", "hunter2",
                       "--config", str(config_file()))
    assert code == 2 and "channels.webhook.secret_key" in err and "hunter2" not in err


def test_notifications_list_filters_and_retry_requeues_a_failed_one(cfg, capsys, app):
    now = app.clock.now()
    with app.databases.begin("notify") as conn:
        add_dest(conn, now, "webhook", "https://hooks.example.com/x")
        alert = insert_alert(conn, now)
        insert_alert(conn, now)
        plan_notifications(conn, app.config, now)
        failed_id = conn.execute(text(
            "UPDATE notify.notifications SET status = 'failed', error = 'HTTP 400', send_attempts = 1,"
            " last_attempt_at = :now WHERE alert_id = :a RETURNING id"), dict(now=now, a=alert)).scalar()
    code, out, _ = run(capsys, "notifications", "--json", "--config", cfg)
    assert code == 0 and len(json.loads(out)) == 2
    code, out, _ = run(capsys, "notifications", "--status", "failed", "--alert", alert, "--json", "--config", cfg)
    (listed,) = json.loads(out)
    assert {"id", "alert_id", "channel", "recipient", "status", "send_attempts", "last_attempt_at", "error"} <= set(listed)
    assert (listed["id"], listed["status"], listed["error"], listed["send_attempts"]) == (str(failed_id), "failed", "HTTP 400", 1)
    code, out, _ = run(capsys, "notifications", "--config", cfg)
    assert "SEND_ATTEMPTS" in out.splitlines()[0]
    assert run(capsys, "notifications", "retry", str(failed_id), "--config", cfg)[0] == 0
    with app.databases.begin("notify") as conn:
        status, due = conn.execute(text("SELECT status, next_attempt_at FROM notify.notifications WHERE id = :i"),
                                   dict(i=failed_id)).one()
    assert status == "queued" and due is not None
    code, _, err = run(capsys, "notifications", "retry", str(failed_id), "--config", cfg)
    assert code == 2 and "is queued; only failed or skipped ones are retried" in err
    code, _, err = run(capsys, "notifications", "--alert", "x", "--config", cfg)
    assert code == 2 and "--alert: expected a UUID" in err


def test_routes_and_delivery_keys_are_parsed_and_checked():
    from engine.config import parse_config
    from engine.errors import ConfigError

    config = parse_config({"routes": [{"name": "ops", "channel": "slack", "target": "COPS", "min_severity": "critical",
                                       "kinds": ["PAYMENT_FAILED"]}],
                           "delivery": {"batch_size": 100, "concurrency": {"webhook": 32}}})
    assert config.routes[0].kinds == ["PAYMENT_FAILED"] and config.delivery.concurrency == {"webhook": 32}
    with pytest.raises(ConfigError, match=r"routes\[0\]\.channel: expected one of email, slack, webhook"):
        parse_config({"routes": [{"name": "ops", "channel": "pager", "target": "x"}]})
    with pytest.raises(ConfigError, match=r"routes\[0\]\.target: expected an http:// or https:// URL"):
        parse_config({"routes": [{"name": "ops", "channel": "webhook", "target": "ftp://x"}]})
    with pytest.raises(ConfigError, match=r"delivery\.concurrency\.fax: unknown channel"):
        parse_config({"delivery": {"concurrency": {"fax": 1}}})


def test_the_shipped_config_yaml_parses(monkeypatch):
    from pathlib import Path

    from engine.config import load_config

    monkeypatch.delenv("SLACK_TOKEN", raising=False)
    monkeypatch.delenv("NOTIFY_SECRET_KEY", raising=False)
    config = load_config(Path(__file__).parent.parent / "config.yaml")
    assert config.delivery.batch_size == 500 and config.routes == []


def test_listings_shorten_url_parts_that_can_be_credentials(cfg, capsys):
    hook = "https://hooks.slack.com/services/T0000000/B0000000/abcdefghijklmnopqrstuvwx"
    assert run(capsys, "destinations", "add", "--tenant", TENANT, "--channel", "slack", "--target", hook,
               "--config", cfg)[0] == 0
    assert run(capsys, "destinations", "add", "--tenant", TENANT, "--channel", "webhook",
               "--target", "https://example.com/hook?token=abc", "--config", cfg)[0] == 0
    code, out, _ = run(capsys, "destinations", "list", "--json", "--config", cfg)
    targets = [d["target"] for d in json.loads(out)]
    assert targets == ["https://hooks.slack.com/services/T0000000/B0000000/abcd****", "https://example.com/hook?****"]
    assert "abcdefghijklmnopqrstuvwx" not in out and "token=abc" not in out


def test_run_once_plans_and_delivers_an_event_alert_end_to_end(config_file, capsys):
    from tests.delivery_support import HttpServer, webhook_responder

    receiver = HttpServer(webhook_responder).start()
    try:
        path = str(config_file(f"channels:\n  webhook:\n    allow_private_networks: true\n    secret_key: {KEY}\n"))
        assert run(capsys, "destinations", "add", "--tenant", TENANT, "--channel", "webhook",
                   "--target", receiver.url("/ok"), "--secret", "whsec_c2VjcmV0LXZhbHVlLW9mLTI0LWJ5dGVz", "--config", path)[0] == 0
        assert run(capsys, "event", "raise", "--tenant", TENANT, "--kind", "PAYMENT_FAILED", "--config", path)[0] == 0
        code, out, _ = run(capsys, "notifications", "--status", "queued", "--json", "--config", path)
        assert len(json.loads(out)) == 1  # planned with the transition, before any planning tick
        code, out, err = run(capsys, "run-once", "--config", path)
        assert code == 0, err
        assert "plan: 0 notifications planned" in out and "deliver: 1 sent" in out
        (request,) = receiver.received
        assert request.json()["type"] == "alert.opened" and request.json()["data"]["alert"]["kind"] == "PAYMENT_FAILED"
        assert request.headers["webhook-signature"].startswith("v1,")
        code, out, _ = run(capsys, "notifications", "--status", "sent", "--json", "--config", path)
        assert len(json.loads(out)) == 1
    finally:
        receiver.stop()


def test_destinations_add_takes_a_time_zone_and_a_locale_and_refuses_bad_ones(cfg, capsys, app):
    code, out, _ = run(capsys, "destinations", "add", "--tenant", TENANT, "--channel", "email", "--target",
                       "owner@tenant.example", "--timezone", "Europe/Berlin", "--locale", "de", "--config", cfg)
    assert code == 0
    code, out, _ = run(capsys, "destinations", "list", "--json", "--config", cfg)
    (listed,) = json.loads(out)
    assert (listed["timezone"], listed["locale"], listed["opted_out_kinds"]) == ("Europe/Berlin", "de", [])
    code, _, err = run(capsys, "destinations", "add", "--tenant", TENANT, "--channel", "email", "--target",
                       "owner@tenant.example", "--timezone", "Berlin", "--config", cfg)
    assert code == 2 and err.strip() == ("notifyctl: --timezone: not an IANA time zone name "
                                         "(such as UTC or Europe/Berlin): 'Berlin'")
    code, _, err = run(capsys, "destinations", "add", "--tenant", TENANT, "--channel", "email", "--target",
                       "owner@tenant.example", "--locale", "xx-nowhere", "--config", cfg)
    assert code == 2 and err.startswith("notifyctl: --locale: not a known language tag")
