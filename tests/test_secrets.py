"""Secrets at rest and in output (issue 11, items 5, 6, 7 and 11): one masking rule for every
output, credentials encrypted under rotatable keys, signing secrets that can sign, one redactor."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import signal
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from engine import metrics
from engine.cli import main
from engine.config import Config, EmbeddedConfig, parse_config
from engine.dispatcher import deliver_due
from engine.errors import BadInput, ConfigError
from engine.planner import plan_notifications
from engine import secretbox
from engine.secretbox import SecretBox
from tests.daemon_harness import DEADLINE, start_daemon  # noqa: F401 - start_daemon is a fixture
from tests.delivery_support import TENANT, add_dest, insert_alert, notifications

OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()
SIGNING = "whsec_" + base64.b64encode(b"a-signing-key-of-28-bytes!!!").decode()
HOOK_TOKEN = "hooktokenabcdefghijklmnopqrst"   # the secret part of an incoming-webhook URL


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def hook_url(server) -> str:
    return server.url(f"/hooks/T000/B000/{HOOK_TOKEN}")


def keyed_config(config_file, keys) -> str:
    listed = "[" + ", ".join(keys) + "]" if isinstance(keys, list) else keys
    return str(config_file(f"channels:\n  webhook:\n    allow_private_networks: true\n    secret_key: {listed}\n"))


def stored_destinations(app) -> list[dict]:
    with app.databases.begin("notify") as conn:
        return [dict(r) for r in conn.execute(text(
            "SELECT id::text AS id, channel, target, secret_ciphertext FROM notify.destinations ORDER BY created_at")).mappings()]


def plan(app) -> str:
    now = app.clock.now()
    with app.databases.begin("notify") as conn:
        alert = insert_alert(conn, now, severity="critical")
        plan_notifications(conn, app.config, now)
    return alert


# ------------------------------------------------------------------ item 5: one masking rule


def test_show_masks_recipients_in_the_table_and_in_json_like_notifications(app, config_file, capsys, slack_server):
    now = app.clock.now()
    with app.databases.begin("notify") as conn:
        add_dest(conn, now, "slack", hook_url(slack_server))   # written before URLs were encrypted
    alert = plan(app)
    path = str(config_file())
    code, table, _ = run(capsys, "show", alert, "--config", path)
    assert code == 0 and "/hook****" in table and HOOK_TOKEN not in table
    code, out, _ = run(capsys, "show", alert, "--json", "--config", path)
    shown = json.loads(out)["notifications"][0]["recipient"]
    code, out, _ = run(capsys, "notifications", "--json", "--config", path)
    assert shown == json.loads(out)[0]["recipient"] == f"http://127.0.0.1:{slack_server.port}/hooks/T000/B000/hook****"


# ------------------------------------------------- item 6: credentials at rest, key rotation


def test_a_slack_incoming_webhook_url_is_stored_encrypted_and_still_delivered(app, config_file, capsys, slack_server):
    path = keyed_config(config_file, OLD_KEY)
    assert run(capsys, "destinations", "add", "--tenant", TENANT, "--channel", "slack",
               "--target", hook_url(slack_server), "--config", path)[0] == 0
    (stored,) = stored_destinations(app)
    assert HOOK_TOKEN not in stored["target"] and stored["target"].endswith("/hook****")
    assert Fernet(OLD_KEY).decrypt(stored["secret_ciphertext"].encode()).decode() == hook_url(slack_server)
    plan(app)
    with app.databases.begin("notify") as conn:
        assert HOOK_TOKEN not in notifications(conn)[0]["recipient"]
    app.config.channels.webhook.secret_key = OLD_KEY
    app.config.channels.webhook.allow_private_networks = True
    assert deliver_due(app).sent == 1
    assert slack_server.received[0].path == f"/hooks/T000/B000/{HOOK_TOKEN}"


def test_several_keys_decrypt_and_rekey_moves_every_secret_to_the_first(app, config_file, capsys, receiver):
    old = keyed_config(config_file, OLD_KEY)
    assert run(capsys, "destinations", "add", "--tenant", TENANT, "--channel", "webhook",
               "--target", receiver.url("/ok"), "--secret", SIGNING, "--config", old)[0] == 0
    rotated = keyed_config(config_file, [NEW_KEY, OLD_KEY])
    code, out, _ = run(capsys, "destinations", "rekey", "--config", rotated)
    assert code == 0 and "re-encrypted 1 " in out
    (stored,) = stored_destinations(app)
    assert Fernet(NEW_KEY).decrypt(stored["secret_ciphertext"].encode()).decode() == SIGNING
    code, out, _ = run(capsys, "destinations", "rekey", "--config", rotated)
    assert code == 0 and "re-encrypted 0 " in out   # idempotent
    # The old key can go: the new one alone decrypts and signs.
    app.config.channels.webhook.secret_key = f"{NEW_KEY}"
    app.config.channels.webhook.allow_private_networks = True
    plan(app)
    assert deliver_due(app).sent == 1
    assert receiver.received[0].headers["webhook-signature"].startswith("v1,")


def test_a_comma_separated_string_is_several_keys_too():
    config = parse_config({"channels": {"webhook": {"secret_key": f"{NEW_KEY}, {OLD_KEY}"}}}, environ={})
    token = Fernet(OLD_KEY).encrypt(b"x").decode()
    box = SecretBox(config.channels.webhook.secret_key)
    assert box.key_count == 2 and box.decrypt(token) == "x"
    assert Fernet(NEW_KEY).decrypt(box.encrypt("y").encode()) == b"y"
    with pytest.raises(BadInput, match=r"channels\.webhook\.secret_key\[1\]: expected a Fernet key") as caught:
        SecretBox([NEW_KEY, "not-a-key"])
    assert "not-a-key" not in str(caught.value)


def test_rekey_encrypts_plain_slack_urls_of_older_versions_and_masks_their_notifications(app, config_file, capsys,
                                                                                        slack_server):
    now = app.clock.now()
    with app.databases.begin("notify") as conn:
        add_dest(conn, now, "slack", hook_url(slack_server))   # as stored before this change
    plan(app)
    code, out, _ = run(capsys, "destinations", "rekey", "--config", keyed_config(config_file, OLD_KEY))
    assert code == 0 and "encrypted 1 Slack incoming-webhook URLs" in out
    (stored,) = stored_destinations(app)
    assert HOOK_TOKEN not in stored["target"]
    assert Fernet(OLD_KEY).decrypt(stored["secret_ciphertext"].encode()).decode() == hook_url(slack_server)
    with app.databases.begin("notify") as conn:
        assert HOOK_TOKEN not in notifications(conn)[0]["recipient"]
    app.config.channels.webhook.secret_key = OLD_KEY
    app.config.channels.webhook.allow_private_networks = True
    assert deliver_due(app).sent == 1   # the queued one goes to the real URL, from the ciphertext
    assert slack_server.received[0].path.endswith(HOOK_TOKEN)


def test_rekey_with_no_key_that_decrypts_changes_nothing(app, config_file, capsys, receiver):
    assert run(capsys, "destinations", "add", "--tenant", TENANT, "--channel", "webhook", "--target",
               receiver.url("/ok"), "--secret", SIGNING, "--config", keyed_config(config_file, OLD_KEY))[0] == 0
    before = stored_destinations(app)
    code, _, err = run(capsys, "destinations", "rekey", "--config", keyed_config(config_file, NEW_KEY))
    assert code == 2 and "channels.webhook.secret_key" in err and err.count("\n") == 1
    assert before[0]["secret_ciphertext"] not in err
    assert stored_destinations(app) == before


def test_a_secret_no_key_decrypts_stays_queued_without_using_an_attempt(app, config_file, capsys, receiver):
    assert run(capsys, "destinations", "add", "--tenant", TENANT, "--channel", "webhook", "--target",
               receiver.url("/ok"), "--secret", SIGNING, "--config", keyed_config(config_file, OLD_KEY))[0] == 0
    plan(app)
    app.config.channels.webhook.allow_private_networks = True
    app.config.channels.webhook.secret_key = NEW_KEY       # the old key was dropped by mistake
    def undecryptable() -> float:
        return metrics.REGISTRY.get_sample_value("notify_delivery_undecryptable_total", {"channel": "webhook"}) or 0

    counted = undecryptable()
    for _ in range(app.config.delivery.max_attempts + 1):  # more passes than attempts allowed
        deliver_due(app)
        app.clock.advance(timedelta(hours=11))
    with app.databases.begin("notify") as conn:
        (row,) = notifications(conn)
    (ciphertext,) = [d["secret_ciphertext"] for d in stored_destinations(app)]
    assert (row["status"], row["send_attempts"]) == ("queued", 0)
    assert "channels.webhook.secret_key" in row["error"] and ciphertext not in row["error"]
    assert undecryptable() == counted + app.config.delivery.max_attempts + 1
    assert receiver.received == []
    app.config.channels.webhook.secret_key = [NEW_KEY, OLD_KEY]   # the key is back
    assert deliver_due(app).sent == 1


def test_notifyd_refuses_to_start_naming_the_key_when_no_key_decrypts_the_stored_secrets(
        app, config_file, capsys, receiver, start_daemon, database_urls):
    assert run(capsys, "destinations", "add", "--tenant", TENANT, "--channel", "webhook", "--target",
               receiver.url("/ok"), "--secret", SIGNING, "--config", keyed_config(config_file, OLD_KEY))[0] == 0
    daemon = start_daemon(f"channels:\n  webhook:\n    secret_key: {NEW_KEY}\n")
    assert daemon.process.wait(timeout=DEADLINE) == 2
    (line,) = [l for l in daemon.stderr_path.read_text().splitlines() if not l.startswith("{")]   # not a log record
    assert line.startswith("notifyd: channels.webhook.secret_key: none of the 1 configured key(s) decrypts")
    assert NEW_KEY not in line and OLD_KEY not in line
    # With the key it was encrypted with listed second, it starts.
    daemon = start_daemon(f"channels:\n  webhook:\n    secret_key: [{NEW_KEY}, {OLD_KEY}]\n", name="rotated")
    daemon.wait_healthy()
    assert daemon.stop(signal.SIGTERM) == 0


def test_the_embedded_default_generates_its_key_once_mode_0600_beside_the_data_dir(tmp_path, caplog):
    config = Config(embedded=EmbeddedConfig(data_dir=str(tmp_path / "pg")))
    assert not SecretBox.for_config(config).available           # nothing generated by reading
    with caplog.at_level(logging.WARNING, logger="engine.secretbox"):
        box = SecretBox.for_config(config, create=True)
    path = secretbox.generated_key_path(config.embedded)
    assert path == tmp_path / "pg.secret-key" and (path.stat().st_mode & 0o777) == 0o600
    assert [r for r in caplog.records if str(path) in r.getMessage()]   # one line says where
    ciphertext = box.encrypt("whsec_x")
    assert SecretBox.for_config(config, create=True).decrypt(ciphertext) == "whsec_x"   # reused, not replaced
    config.channels.webhook.secret_key = OLD_KEY   # a configured key wins; the file is not used
    with pytest.raises(secretbox.SecretUnavailable, match="channels.webhook.secret_key"):
        SecretBox.for_config(config).decrypt(ciphertext)


# ------------------------------------------------------- item 7: signing secrets that can sign


@pytest.mark.parametrize("secret, message", [
    ("whsec_", "must hold at least 24 bytes"),
    ("whsec_abc", "must be whsec_ followed by base64"),
    ("whsec_" + base64.b64encode(b"sixteen-byte-key").decode(), "must hold at least 24 bytes"),
    ("whsec_***notbase64***", "must be whsec_ followed by base64"),
])
def test_a_whsec_secret_that_cannot_sign_is_refused_at_add(app, config_file, capsys, secret, message):
    code, _, err = run(capsys, "destinations", "add", "--tenant", TENANT, "--channel", "webhook",
                       "--target", "https://hooks.example.com/x", "--secret", secret,
                       "--config", keyed_config(config_file, OLD_KEY))
    assert code == 2 and f"--secret: a whsec_ secret {message}" in err and err.count("\n") == 1
    assert stored_destinations(app) == []


def test_a_route_secret_that_cannot_sign_is_a_config_error():
    with pytest.raises(ConfigError, match=r"routes\[0\]\.secret: a whsec_ secret must"):
        parse_config({"routes": [{"name": "ops", "channel": "webhook", "target": "https://ops.example/h",
                                  "secret": "whsec_abc"}]}, environ={})


# ---------------------------------------------------- item 11: one redactor, secrets off argv


def test_secret_file_and_stdin_keep_the_secret_off_the_command_line(app, config_file, capsys, tmp_path, monkeypatch):
    path = keyed_config(config_file, OLD_KEY)
    secret_file = tmp_path / "signing.secret"
    secret_file.write_text(SIGNING + "\n")
    assert run(capsys, "destinations", "add", "--tenant", TENANT, "--channel", "webhook",
               "--target", "https://hooks.example.com/a", "--secret-file", str(secret_file), "--config", path)[0] == 0
    monkeypatch.setattr("sys.stdin", io.StringIO(SIGNING + "\n"))
    assert run(capsys, "destinations", "add", "--tenant", TENANT, "--channel", "webhook",
               "--target", "https://hooks.example.com/b", "--secret", "-", "--config", path)[0] == 0
    stored = [Fernet(OLD_KEY).decrypt(d["secret_ciphertext"].encode()).decode() for d in stored_destinations(app)]
    assert stored == [SIGNING, SIGNING]   # the trailing newline is not part of it
    code, _, err = run(capsys, "destinations", "add", "--tenant", TENANT, "--channel", "webhook",
                       "--target", "https://hooks.example.com/c", "--secret-file", str(tmp_path / "missing"),
                       "--config", path)
    assert code == 2 and err.startswith("notifyctl: --secret-file: cannot read") and err.count("\n") == 1


def test_event_context_values_are_redacted_not_only_secret_keys(config_file, capsys):
    path = str(config_file())
    context = {"note": "customer jane.doe@tenant.example, header Bearer abcdefgh12345678",
               "nested": [{"url": "https://user:hunter22@billing.example/x"}], "password": "p4ss", "invoice": "in_42"}
    assert run(capsys, "event", "raise", "--tenant", TENANT, "--kind", "PAYMENT_FAILED",
               "--context", json.dumps(context), "--config", path)[0] == 0
    (alert,) = json.loads(run(capsys, "alerts", "--json", "--config", path)[1])
    shown = json.loads(run(capsys, "show", alert["id"], "--json", "--config", path)[1])["context"]["event"]
    dumped = json.dumps(shown)
    for secret in ("jane.doe@tenant.example", "abcdefgh12345678", "hunter22", "p4ss"):
        assert secret not in dumped
    assert shown["password"] == "[REDACTED]" and shown["invoice"] == "in_42"
    assert shown["note"] == "customer [REDACTED], header Bearer [REDACTED]"


@pytest.fixture
def captured_logs():
    """configure_logging("DEBUG") into a buffer; call it after any notifyctl run (main() installs
    its own handler)."""
    from engine.logging import configure_logging

    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logging.getLogger("slack_sdk").level)
    yield lambda: configure_logging("DEBUG", stream=stream) and stream
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])
    logging.getLogger("slack_sdk").setLevel(saved[2])


def test_every_secret_of_the_config_is_registered_with_the_log_redactor(captured_logs):
    from engine.logging import register_config_secrets

    secrets = {"key": NEW_KEY, "ingest": "ingest-token-Qw7", "route": "route-signing-Zx9",
               "hook": "https://hooks.slack.example/services/T1/B1/routehookQQQ"}
    config = parse_config({"channels": {"webhook": {"secret_key": NEW_KEY}},
                           "logs": {"ingest": {"listen": "127.0.0.1:9999", "token": secrets["ingest"]}},
                           "routes": [{"name": "hook", "channel": "webhook", "target": "https://ops.example/h",
                                       "secret": secrets["route"]},
                                      {"name": "slack", "channel": "slack", "target": secrets["hook"]}]}, environ={})
    stream = captured_logs()
    register_config_secrets(config)
    logging.getLogger("engine.test").error("values: %s", " | ".join(secrets.values()))
    written = stream.getvalue()
    assert "values:" in written
    for value in secrets.values():
        assert value not in written


def test_slack_sdk_debug_logging_never_prints_an_incoming_webhook_url(app, captured_logs, config_file, capsys,
                                                                      slack_server):
    assert run(capsys, "destinations", "add", "--tenant", TENANT, "--channel", "slack",
               "--target", hook_url(slack_server), "--config", keyed_config(config_file, OLD_KEY))[0] == 0
    plan(app)
    app.config.channels.webhook.secret_key = OLD_KEY
    app.config.channels.webhook.allow_private_networks = True
    stream = captured_logs()
    logging.getLogger("engine.test").debug("debug is on")
    assert deliver_due(app).sent == 1
    assert slack_server.received[0].path.endswith(HOOK_TOKEN)
    assert "debug is on" in stream.getvalue() and HOOK_TOKEN not in stream.getvalue()


def test_an_ops_route_to_a_slack_incoming_webhook_leaves_no_plain_url_in_the_notifications(app, slack_server):
    from engine.config import RouteConfig

    # group_wait 0: the ops route's grouping (issue 15) would hold the message 30s.
    app.config.routes = [RouteConfig(name="ops", channel="slack", target=hook_url(slack_server), group_wait=0)]
    app.config.channels.webhook.allow_private_networks = True
    plan(app)
    with app.databases.begin("notify") as conn:
        (row,) = notifications(conn)
    assert row["recipient"].endswith("/hook****")
    assert deliver_due(app).sent == 1
    assert slack_server.received[0].path.endswith(HOOK_TOKEN)   # sent to the URL from config


def test_a_malformed_key_is_refused_at_start_even_before_anything_is_encrypted(app):
    from engine.destinations import check_stored_secrets

    app.config.channels.webhook.secret_key = [NEW_KEY, "not-a-fernet-key"]
    with app.databases.begin("notify") as conn, \
            pytest.raises(BadInput, match=r"^channels\.webhook\.secret_key\[1\]: expected a Fernet key") as caught:
        check_stored_secrets(conn, app.config)
    assert "not-a-fernet-key" not in str(caught.value)
