"""Webhooks: signed delivery to a real receiver, each failure mode, backoff, SSRF refusals."""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet

from channels.ssrf import blocked_reason
from channels.webhook import sign
from tests.delivery_support import TENANT, add_dest, insert_alert, notifications
from engine.dispatcher import deliver_due, retry_delay
from engine.planner import plan_notifications
from engine.secretbox import SecretBox

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture(params=["http1", "aiohttp"])
def any_client_app(app, request):
    """Every webhook test runs on both HTTP clients the webhook channel offers."""
    app.config.channels.webhook.client = request.param
    return app


@pytest.fixture
def webhook_app(any_client_app):
    app = any_client_app
    app.config.channels.webhook.allow_private_networks = True   # the receiver is on 127.0.0.1
    app.config.channels.webhook.read_timeout = 10     # success paths must not race a busy machine
    app.config.channels.webhook.secret_key = Fernet.generate_key().decode()
    return app


def queue_one(app, url: str, *, secret: str | None = None, kind: str = "RUNS_THRESHOLD") -> str:
    now = app.clock.now()
    with app.databases.begin("notify") as conn:
        cipher = SecretBox(app.config.channels.webhook.secret_key).encrypt(secret) if secret else None
        add_dest(conn, now, "webhook", url, secret_ciphertext=cipher)
        alert = insert_alert(conn, now, kind=kind)
        plan_notifications(conn, app.config, now)
    return alert


def only_row(app) -> dict:
    with app.databases.begin("notify") as conn:
        (row,) = notifications(conn)
    return row


def test_signing_matches_the_standard_webhooks_test_vector():
    assert sign(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}') == \
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_a_webhook_is_delivered_signed_with_the_documented_payload(webhook_app, receiver):
    alert = queue_one(webhook_app, receiver.url("/ok"), secret=SECRET)
    summary = deliver_due(webhook_app)
    assert (summary.sent, summary.failed, summary.retrying) == (1, 0, 0)
    (request,) = receiver.received
    row = only_row(webhook_app)
    assert row["status"] == "sent" and row["send_attempts"] == 1 and row["sent_at"] == webhook_app.clock.now()
    # Verified independently of channels.webhook: HMAC-SHA256 over "id.timestamp.body".
    msg_id, stamp = request.headers["webhook-id"], request.headers["webhook-timestamp"]
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{stamp}.".encode() + request.body, hashlib.sha256).digest())
    assert request.headers["webhook-signature"] == "v1," + expected.decode()
    assert msg_id == row["idempotency_key"]
    assert int(stamp) == int(webhook_app.clock.now().timestamp())
    payload = request.json()
    assert payload["version"] == 1 and payload["type"] == "alert.opened" and payload["id"] == msg_id
    assert payload["data"]["alert"]["id"] == alert and payload["data"]["alert"]["tenant_id"] == TENANT
    assert payload["data"]["alert"]["kind"] == "RUNS_THRESHOLD" and payload["data"]["alert"]["context"] == {"percent": 80}
    assert payload["summary"] == "Runs quota threshold reached"   # a context of another shape: the neutral words


def test_the_summary_is_on_by_default_and_can_be_turned_off(webhook_app, receiver):
    assert webhook_app.config.channels.webhook.summary is True
    webhook_app.config.channels.webhook.summary = False
    queue_one(webhook_app, receiver.url("/ok"), secret=SECRET)
    deliver_due(webhook_app)
    (request,) = receiver.received
    assert request.json()["summary"] is None


def test_payloads_orjson_cannot_encode_fall_back_to_json():
    from channels.webhook import encode_payload

    assert encode_payload({"big": 2 ** 70, "text": "é"}) == b'{"big":1180591620717411303424,"text":"\\u00e9"}'
    assert encode_payload({"text": "é"}) == '{"text":"é"}'.encode()


def test_a_destination_without_a_secret_is_sent_unsigned(webhook_app, receiver):
    queue_one(webhook_app, receiver.url("/ok"))
    deliver_due(webhook_app)
    assert "webhook-signature" not in receiver.received[0].headers


@pytest.mark.parametrize("path, error", [("/status/500", "HTTP 500"), ("/status/503", "HTTP 503"),
                                         ("/hang", "timed out")])
def test_server_errors_and_timeouts_are_retried_later_with_the_same_webhook_id(webhook_app, receiver, path, error):
    if path == "/hang":
        webhook_app.config.channels.webhook.read_timeout = 0.3    # the timeout is what this case expects
    queue_one(webhook_app, receiver.url(path))
    now = webhook_app.clock.now()
    assert deliver_due(webhook_app).retrying == 1
    row = only_row(webhook_app)
    assert row["status"] == "queued" and row["error"] == error and row["send_attempts"] == 1
    assert now + timedelta(seconds=2.5) <= row["next_attempt_at"] <= now + timedelta(seconds=5)
    assert deliver_due(webhook_app).claimed == 0        # not due yet: nothing is sent again
    webhook_app.clock.advance(timedelta(seconds=5))
    deliver_due(webhook_app)
    assert only_row(webhook_app)["send_attempts"] == 2
    assert receiver.received[0].headers["webhook-id"] == receiver.received[1].headers["webhook-id"]


def test_chunked_responses_and_closed_connections_are_handled(webhook_app, receiver):
    now = webhook_app.clock.now()
    with webhook_app.databases.begin("notify") as conn:
        add_dest(conn, now, "webhook", receiver.url("/chunked-close"))
        for _ in range(3):
            insert_alert(conn, now)
        plan_notifications(conn, webhook_app.config, now)
    webhook_app.config.delivery.concurrency["webhook"] = 1   # one connection, closed after each reply
    assert deliver_due(webhook_app).sent == 3
    assert len(receiver.received) == 3


def test_a_connection_refused_is_transient(webhook_app):
    queue_one(webhook_app, "http://127.0.0.1:9/unreachable")
    deliver_due(webhook_app)
    row = only_row(webhook_app)
    assert row["status"] == "queued" and row["error"].startswith("connection failed")


def test_429_retry_after_decides_the_next_attempt(webhook_app, receiver):
    queue_one(webhook_app, receiver.url("/retry-after/120"))
    deliver_due(webhook_app)
    row = only_row(webhook_app)
    assert row["status"] == "queued" and row["error"] == "HTTP 429"
    assert row["next_attempt_at"] == webhook_app.clock.now() + timedelta(seconds=120)


@pytest.mark.parametrize("path, error", [("/status/400", "HTTP 400"), ("/status/404", "HTTP 404"),
                                         ("/status/302", "HTTP 302: redirects are not followed")])
def test_other_4xx_and_redirects_fail_at_once(webhook_app, receiver, path, error):
    queue_one(webhook_app, receiver.url(path))
    assert deliver_due(webhook_app).failed == 1
    row = only_row(webhook_app)
    assert (row["status"], row["error"], row["send_attempts"]) == ("failed", error, 1)
    assert len(receiver.received) == 1   # the redirect's Location was not followed


def test_410_gone_fails_and_disables_the_destination(webhook_app, receiver):
    from sqlalchemy import text

    queue_one(webhook_app, receiver.url("/status/410"))
    deliver_due(webhook_app)
    assert only_row(webhook_app)["status"] == "failed"
    with webhook_app.databases.begin("notify") as conn:
        enabled, reason = conn.execute(text("SELECT enabled, disabled_reason FROM notify.destinations")).one()
        insert_alert(conn, webhook_app.clock.now())
        assert plan_notifications(conn, webhook_app.config, webhook_app.clock.now()) == 0
    assert enabled is False and "410" in reason


def test_backoff_grows_exponentially_with_jitter_and_gives_up_after_max_attempts(webhook_app, receiver):
    delivery = webhook_app.config.delivery
    delivery.max_attempts, delivery.backoff_base, delivery.backoff_max = 5, 10, 60
    queue_one(webhook_app, receiver.url("/status/500"))
    delays = []
    for attempt in range(1, 5):
        deliver_due(webhook_app)
        row = only_row(webhook_app)
        assert row["status"] == "queued" and row["send_attempts"] == attempt
        delays.append((row["next_attempt_at"] - webhook_app.clock.now()).total_seconds())
        webhook_app.clock.current = row["next_attempt_at"]
    schedule = [10, 20, 40, 60]     # base * 2^(n-1), capped at backoff_max
    assert all(s / 2 <= d <= s for d, s in zip(delays, schedule)), delays
    deliver_due(webhook_app)
    row = only_row(webhook_app)
    assert (row["status"], row["send_attempts"]) == ("failed", 5)
    assert row["error"] == "gave up after 5 attempts: HTTP 500"
    assert len(receiver.received) == 5


def test_retry_delay_is_jittered_within_half_to_full_schedule():
    rng = random.Random(7)
    samples = [retry_delay(3, 5, 3600, rng) for _ in range(200)]
    assert min(samples) >= 10 and max(samples) <= 20 and len(set(samples)) > 100
    assert retry_delay(30, 5, 3600, rng) <= 3600
    assert retry_delay(1, 5, 3600, rng, retry_after=90) == 90


def test_the_signing_secret_never_reaches_the_database_errors_or_listings(webhook_app, receiver, config_file, capsys):
    from sqlalchemy import text

    from engine.cli import main

    queue_one(webhook_app, receiver.url("/status/500"), secret=SECRET)
    deliver_due(webhook_app)
    with webhook_app.databases.begin("notify") as conn:
        dumped = conn.execute(text("SELECT row_to_json(d)::text FROM notify.destinations d")).scalar()
        dumped += conn.execute(text("SELECT json_agg(n)::text FROM notify.notifications n")).scalar()
    path = config_file(f"channels:\n  webhook:\n    secret_key: {webhook_app.config.channels.webhook.secret_key}\n")
    assert main(["destinations", "list", "--json", "--config", str(path)]) == 0
    assert main(["notifications", "--json", "--config", str(path)]) == 0
    shown = capsys.readouterr().out
    assert '"secret": "********"' in shown
    for text_ in (dumped, shown):
        assert SECRET not in text_ and SECRET.removeprefix("whsec_") not in text_


# ------------------------------------------------------------------ SSRF


@pytest.mark.parametrize("address, reason", [
    ("127.0.0.1", "loopback"), ("10.1.2.3", "private or reserved"), ("169.254.169.254", "link-local or cloud metadata"),
    ("::1", "loopback"), ("::ffff:127.0.0.1", "loopback"), ("::ffff:10.0.0.1", "private or reserved"),
    ("64:ff9b::a9fe:a9fe", "link-local or cloud metadata"), ("fd00::1", "private or reserved"),
    ("192.168.1.1", "private or reserved"), ("100.64.0.1", "private or reserved"), ("0.0.0.0", "private or reserved"),
    ("93.184.216.34", None), ("2606:2800:220:1::1", None),
])
def test_blocked_ranges_are_decided_per_address(address, reason):
    assert blocked_reason(address) == reason


@pytest.mark.parametrize("url", ["http://127.0.0.1:{port}/ok", "http://10.9.8.7/ok", "http://169.254.169.254/latest/meta-data",
                                 "http://[::ffff:127.0.0.1]:{port}/ok", "http://2130706433:{port}/ok",
                                 "http://rebind.test:{port}/ok"])
def test_private_targets_are_refused_without_connecting(any_client_app, receiver, url):
    app = any_client_app
    resolved = []

    async def resolve(host, port):
        resolved.append(host)
        return ["127.0.0.1"] if host == "rebind.test" else ["127.0.0.1"] if host == "2130706433" else []

    queue_one(app, url.format(port=receiver.port))
    assert app.config.channels.webhook.allow_private_networks is False
    deliver_due(app, resolve=resolve)
    row = only_row(app)
    assert row["status"] == "failed" and row["error"].startswith("target refused")
    assert "127.0.0.1" not in row["error"] and "10.9.8.7" not in row["error"]
    assert receiver.received == []


def test_a_name_is_refused_when_any_of_its_addresses_is_private(any_client_app, receiver):
    app = any_client_app
    async def resolve(host, port):
        return ["93.184.216.34", "127.0.0.1"]   # checked, never connected to

    queue_one(app, f"http://mixed.test:{receiver.port}/ok")
    deliver_due(app, resolve=resolve)
    assert only_row(app)["error"] == "target refused: name resolves to a loopback address"


def test_with_private_networks_allowed_a_name_connects_to_the_address_that_was_checked(webhook_app, receiver):
    calls = []

    async def resolve(host, port):
        calls.append(host)
        return ["127.0.0.1"]

    queue_one(webhook_app, f"http://receiver.test:{receiver.port}/ok")
    deliver_due(webhook_app, resolve=resolve)
    assert only_row(webhook_app)["status"] == "sent"
    assert calls == ["receiver.test"] and receiver.received[0].headers["Host"].startswith("receiver.test")


def test_the_payload_summary_is_the_messages_one_line_and_can_be_turned_off():
    from channels.webhook import WebhookChannel
    from engine.cli.preview import sample_message
    from engine.config import Config
    from engine.messages import Composer

    from channels.webhook import build_payload

    message = sample_message("RUNS_THRESHOLD", "webhook")
    channel = WebhookChannel(allow_private_networks=True, connect_timeout=1, read_timeout=1, composer=Composer(Config()))
    assert channel.summary(message) == "You have used 85 % of your monthly runs (base b45e0c1a)"
    assert build_payload(message, None)["summary"] is None and build_payload(message)["version"] == 1
