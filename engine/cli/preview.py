"""notifyctl preview --kind K --channel C [--transition T] [--locale L] [--timezone TZ] [--html FILE]:
renders one message from fixed sample data, through the same templates and config (names, links,
messages.public_url, templates_dir) as the dispatcher; no database is touched."""

from __future__ import annotations

import dataclasses
import json
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from engine.config import CHANNELS, Config
from engine.errors import BadInput
from engine.messages import WORDS_FAMILY, check_locale, check_timezone

SAMPLE_TENANT = "6f1c2d3e-0000-4000-8000-000000000001"
SAMPLE_BASE = "b45e0c1a-7d2f-4c3b-9a10-000000000002"
SAMPLE_ALERT = "a1e2f3a4-5b6c-4d7e-8f90-000000000003"
SAMPLE_DESTINATION = "d0e1f2a3-b4c5-4d6e-8f70-000000000004"
SAMPLE_NAMES = {SAMPLE_TENANT: "Acme Analytics", SAMPLE_BASE: "Sales CRM"}
SAMPLE_NOW = datetime(2026, 11, 30, 9, 15, tzinfo=timezone.utc)
KINDS = tuple(WORDS_FAMILY)
TRANSITIONS = ("opened", "reopened", "escalated", "reminder", "resolved", "ack_expired")

# What each kind's detector (or event) puts in an alert's context: engine/sql/detect.sql.
SAMPLE_CONTEXT: dict[str, tuple[str, dict]] = {
    "RUNS_THRESHOLD": ("warn", {"metric": "runs_used", "value": 850, "limit": 1000, "percent": 85.0,
                                "level_percent": 80, "plan": "default", "period": "2026-11",
                                "captured_at": "2026-11-30T09:12:00+00:00"}),
    "STORAGE_THRESHOLD": ("warn", {"metric": "storage_gb", "value": 9.46, "limit": 10, "percent": 94.6,
                                   "level_percent": 80, "plan": "default", "period": "2026-11",
                                   "captured_at": "2026-11-30T09:12:00+00:00"}),
    "RECORDS_THRESHOLD": ("critical", {"metric": "records_count", "value": 100412, "limit": 100000,
                                       "percent": 100.4, "level_percent": 100, "plan": "default",
                                       "period": "2026-11", "captured_at": "2026-11-30T09:12:00+00:00"}),
    "API_CALLS_THRESHOLD": ("warn", {"metric": "api_calls", "value": 812345, "limit": 1000000, "percent": 81.2,
                                     "level_percent": 80, "plan": "default", "period": "2026-11",
                                     "captured_at": "2026-11-30T09:12:00+00:00"}),
    "WALLET_LOW": ("warn", {"metric": "wallet_balance_cents", "value": 312, "floor": 500, "plan": "default",
                            "captured_at": "2026-11-30T09:12:00+00:00"}),
    "PAYMENT_FAILED": ("critical", {"event": {"invoice_number": "INV-2026-0117", "amount_cents": 4900,
                                              "currency": "USD", "failure_message": "Your card was declined.",
                                              "next_attempt_at": "2026-12-03T09:00:00+00:00"},
                                    "raised_at": "2026-11-30T08:40:00+00:00"}),
    "RATE_LIMIT": ("warn", {"metric": "http_429_count", "value": 1234, "threshold": 100, "window_seconds": 300,
                            "captured_at": "2026-11-30T09:12:00+00:00"}),
}
# How a resolution changes the context (detect.sql alert_on_conflict; the event's clear).
SAMPLE_RESOLVED = {"RATE_LIMIT": {"resolved_by": "condition_cleared", "cleared_value": 40},
                   "WALLET_LOW": {"resolved_by": "condition_cleared", "cleared_value": 2500}}
SAMPLE_RESOLVED_QUOTA = {"resolved_by": "condition_cleared", "cleared_value": 700}


def sample_alert(kind: str, transition: str = "opened") -> tuple[dict, str]:
    """The alert dict a channel receives (as engine.dispatcher builds it) and its severity."""
    severity, context = SAMPLE_CONTEXT[kind]
    context = dict(context)
    if transition == "resolved":
        if kind in SAMPLE_RESOLVED:
            context.update(SAMPLE_RESOLVED[kind])
        elif kind != "PAYMENT_FAILED":
            context.update(SAMPLE_RESOLVED_QUOTA, cleared_value=context["limit"] * 0.7)
    alert = dict(id=SAMPLE_ALERT, tenant_id=SAMPLE_TENANT, base_id=None if kind in ("PAYMENT_FAILED", "WALLET_LOW")
                 else SAMPLE_BASE, kind=kind, severity=severity, status="resolved" if transition == "resolved" else "open",
                 dedupe_key=f"{kind.lower()}:sample", first_seen_at=datetime(2026, 11, 30, 8, 40, tzinfo=timezone.utc),
                 last_seen_at=datetime(2026, 11, 30, 9, 12, tzinfo=timezone.utc), context=context)
    return alert, severity


def sample_message(kind: str, channel: str, transition: str = "opened", *, locale: Optional[str] = None,
                   tz: Optional[str] = None):
    from channels.base import Message

    alert, severity = sample_alert(kind, transition)
    recipient = {"email": "owner@acme.example", "slack": "C0123ACME", "webhook": "https://hooks.acme.example/notify"}
    return Message(notification_id=str(uuid.UUID(int=5)), tenant_id=SAMPLE_TENANT, alert_id=SAMPLE_ALERT,
                   channel=channel, recipient=recipient[channel], idempotency_key=f"sample-{transition}-{SAMPLE_ALERT}",
                   transition=transition, reminder_no=1 if transition == "reminder" else 0, severity=severity,
                   attempt=1, now=SAMPLE_NOW, alert=alert, destination_id=SAMPLE_DESTINATION, timezone=tz,
                   locale=locale)


def preview_config(config: Config) -> Config:
    """The config with the sample workspace and base named (names the config sets win)."""
    messages = dataclasses.replace(config.messages, names={**SAMPLE_NAMES, **config.messages.names})
    return dataclasses.replace(config, messages=messages)


def render_preview(config: Config, kind: str, channel: str, transition: str = "opened", *,
                   locale: Optional[str] = None, tz: Optional[str] = None) -> dict[str, Any]:
    """{subject, text, html} for email, {text, blocks} for Slack, {payload} for webhooks."""
    from channels import build_channels

    config = preview_config(config)
    templates = Path(config.delivery.templates_dir) if config.delivery.templates_dir else None
    channels = build_channels(config, templates_root=templates)
    message = sample_message(kind, channel, transition, locale=locale, tz=tz)
    if channel == "email":
        email = channels["email"].build(message)
        text = email.get_body(("plain",)).get_content().rstrip("\n")
        html = email.get_body(("html",)).get_content()
        return {"subject": str(email["Subject"]), "text": text, "html": html,
                "headers": {k: str(v) for k, v in email.items()}}
    if channel == "slack":
        text, blocks = channels["slack"].build(message)
        return {"text": text, "blocks": blocks}
    from channels.webhook import build_payload

    return {"payload": build_payload(message, channels["webhook"].summary(message))}


def register(subparsers, common) -> None:
    preview = subparsers.add_parser("preview", parents=[common],
                                    help="render a message from sample data (subject and text on stdout)")
    preview.add_argument("--kind", required=True, choices=KINDS, metavar="K", help=", ".join(KINDS))
    preview.add_argument("--channel", required=True, choices=CHANNELS)
    preview.add_argument("--transition", default="opened", metavar="T",
                         help=f"{', '.join(TRANSITIONS)} or any other name (default: opened)")
    preview.add_argument("--locale", metavar="L", help="language (default: messages.locale)")
    preview.add_argument("--timezone", metavar="TZ", help="IANA time zone (default: messages.timezone)")
    preview.add_argument("--html", metavar="FILE", help="write the email's HTML part to FILE")
    preview.set_defaults(handler=preview_command, needs_database=False)


def preview_command(app, args) -> int:
    if args.locale is not None:
        check_locale(args.locale)
    if args.timezone is not None:
        check_timezone(args.timezone)
    if args.html and args.channel != "email":
        raise BadInput("--html: only email messages have an HTML part")
    rendered = render_preview(app.config, args.kind, args.channel, args.transition,
                              locale=args.locale, tz=args.timezone)
    out = sys.stdout
    if args.channel == "email":
        out.write(f"Subject: {rendered['subject']}\n\n{rendered['text']}\n")
        if args.html:
            try:
                Path(args.html).write_text(rendered["html"])
            except OSError as exc:
                raise BadInput(f"--html: cannot write {args.html}: {exc.strerror}") from None
    elif args.channel == "slack":
        out.write(f"{rendered['text']}\n\n{json.dumps(rendered['blocks'], indent=2, ensure_ascii=False)}\n")
    else:
        out.write(json.dumps(rendered["payload"], indent=2, ensure_ascii=False, default=str) + "\n")
    return 0
