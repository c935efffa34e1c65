"""Structured, redacted logs for notifyd and notifyctl.

JSON lines when stderr is not a terminal (journald, Kubernetes, a log shipper), readable text on a
terminal. Either way every record passes `RedactionFilter` first: the seed asks for tokens and
email addresses to be redacted, and a secret must never reach a log line through an exception
message, a URL or an `extra` field. The rules are the project's one redactor
(engine.logwriter.redaction, `logs.redaction`) plus every secret value of the config. Ids
(tenant_id, alert_id, notification_id) are kept: they are what an operator searches by, and they
are not personal data.

Callers pass context as `extra`: `log.info("sent", extra={"tenant_id": t, "notification_id": n})`.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import datetime, timezone
from typing import IO, Any, Iterable, Optional

from engine.config import RedactionConfig
from engine.logwriter.redaction import Redactor

# Fields a record may carry through `extra`, shown first and by name in both formats.
CONTEXT_FIELDS = ("job", "tenant_id", "alert_id", "notification_id", "channel", "database", "worker")

# Attributes every LogRecord has; anything else on a record came from `extra`.
_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}

class LogRedactor:
    """The redactor of log lines: engine.logwriter.redaction's rules (`logs.redaction`, the same
    keys, patterns and mask as the log tables and events' context) plus the literal secret values
    of the config. Until a config is registered, the default rules."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._core = Redactor()

    def configure(self, rules: RedactionConfig) -> None:
        with self._lock:
            core = Redactor(rules)
            core.add_secrets(self._core.secrets)
            self._core = core

    def add_secrets(self, values: Iterable[Optional[str]]) -> None:
        with self._lock:
            self._core.add_secrets(values)

    def redact(self, text: str) -> str:
        return self._core.text(text)


REDACTOR = LogRedactor()

# slack-sdk logs each request's URL at DEBUG, and an incoming-webhook URL is a credential.
QUIET_LOGGERS = ("apscheduler", "slack_sdk")


def config_secrets(config: Any) -> list[Optional[str]]:
    """Every secret value a config holds."""
    from engine.secretbox import parse_keys

    channels = config.channels
    # Not the SMTP username: it is often a plain word ("alerts") that would vanish from every
    # line; when it is an address, the email pattern covers it.
    values: list[Optional[str]] = [channels.email.password, channels.slack.token, channels.slack.signing_secret,
                                   config.logs.ingest.token]
    values += parse_keys(channels.webhook.secret_key)
    for route in config.routes:
        values.append(route.secret)
        if route.channel == "slack" and route.target.startswith(("https://", "http://")):
            values.append(route.target)  # an incoming-webhook URL is its own credential
    if config.databases is not None:
        from urllib.parse import urlsplit

        for section in ("admin_log", "portal_log", "data_activity", "notify"):
            values.append(urlsplit(config.databases.url(section)).password)
    return values


def register_config_secrets(config: Any) -> None:
    """Apply the config's redaction rules to log lines and teach the redactor the secret values
    the config holds (they are then never logged verbatim)."""
    REDACTOR.configure(config.logs.redaction)
    REDACTOR.add_secrets(config_secrets(config))


class RedactionFilter(logging.Filter):
    """Redacts the message, its arguments, string `extra` fields and the exception text."""

    def __init__(self, redactor: LogRedactor = REDACTOR) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redactor.redact(record.getMessage())
        record.args = None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, key, self.redactor.redact(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redactor.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redactor.redact(record.stack_info)
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    found = {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS and not k.startswith("_")}
    ordered = {k: found.pop(k) for k in CONTEXT_FIELDS if k in found}
    ordered.update(sorted(found.items()))
    return ordered


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts, level, logger, msg, the context fields, then exc."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _extras(record).items():
            entry.setdefault(key, _jsonable(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """For a terminal: time, level, logger, message, then key=value context."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        if context:
            head, sep, tail = line.partition("\n")
            line = f"{head}  {context}{sep}{tail}"
        return line


def configure_logging(level: str | int = "INFO", stream: Optional[IO[str]] = None,
                      json_lines: Optional[bool] = None) -> logging.Handler:
    """Route the root logger to `stream` (stderr) through the redaction filter; returns the handler."""
    stream = stream or sys.stderr
    if json_lines is None:
        json_lines = not (hasattr(stream, "isatty") and stream.isatty())
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactionFilter())
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    handler._notify_engine = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    # Replace only what an earlier call installed: a host's own handlers (pytest's) stay.
    for old in [h for h in root.handlers if getattr(h, "_notify_engine", False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # APScheduler logs every tick at INFO and a job's exception with its own traceback; our
    # runner logs outcomes itself, once. slack-sdk: see QUIET_LOGGERS.
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    return handler
