"""Structured logs: JSON lines off a terminal, context ids kept, secrets and emails never shown."""

from __future__ import annotations

import io
import json
import logging

import pytest

from engine.config import parse_config
from engine.logging import REDACTOR, configure_logging, register_config_secrets


@pytest.fixture
def captured():
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    configure_logging("DEBUG", stream=stream)
    yield stream
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])


def lines(stream):
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_off_a_terminal_each_record_is_one_json_line_with_its_ids(captured):
    logging.getLogger("engine.dispatch").warning(
        "delivery postponed", extra={"tenant_id": "t-1", "alert_id": "a-1", "notification_id": "n-1"})
    [entry] = lines(captured)
    assert entry["level"] == "warning" and entry["logger"] == "engine.dispatch"
    assert entry["msg"] == "delivery postponed"
    assert (entry["tenant_id"], entry["alert_id"], entry["notification_id"]) == ("t-1", "a-1", "n-1")


def test_email_addresses_tokens_and_url_passwords_are_redacted(captured):
    log = logging.getLogger("engine.test")
    log.error("send to ops@example.com failed with token xoxb-1234-abcd via "
              "postgresql://notify:s3cr3t@db.internal/notify and password=hunter2 and whsec_MfKQ9r8GKYqrTwjU")
    log.info("recipient", extra={"recipient": "jane.doe@tenant.example"})
    text = captured.getvalue()
    for secret in ("ops@example.com", "xoxb-1234-abcd", "s3cr3t", "hunter2", "whsec_MfKQ", "jane.doe@tenant.example"):
        assert secret not in text
    assert text.count("[REDACTED]") == 6  # logs.redaction.mask: one mask for logs, log tables and context


def test_secret_values_from_the_config_are_redacted_wherever_they_appear(captured):
    config = parse_config({"channels": {"email": {"password": "Zq9-very-odd"}, "slack": {"token": "plain-token-value"}}},
                          environ={})
    register_config_secrets(config)
    try:
        raise RuntimeError("SMTP AUTH refused for Zq9-very-odd")
    except RuntimeError:
        logging.getLogger("engine.test").exception("send failed; token was plain-token-value")
    [entry] = lines(captured)
    assert "Zq9-very-odd" not in json.dumps(entry) and "plain-token-value" not in json.dumps(entry)
    assert "RuntimeError" in entry["exc"]


def test_on_a_terminal_the_format_is_readable_text():
    stream = io.StringIO()
    stream.isatty = lambda: True
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging("INFO", stream=stream)
        logging.getLogger("notifyd").info("notifyd running", extra={"job": "cleanup"})
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
    line = stream.getvalue().strip()
    assert not line.startswith("{")
    assert "notifyd: notifyd running" in line and "job=cleanup" in line


def test_short_values_are_not_treated_as_secrets():
    REDACTOR.add_secrets(["ab", None])
    assert REDACTOR.redact("ab cd") == "ab cd"
