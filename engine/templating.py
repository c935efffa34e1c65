"""Renders templates/<channel>/<KIND or default>.<part>.j2 for one notification.

Sandboxed (ImmutableSandboxedEnvironment: templates cannot reach Python internals or mutate the
context), StrictUndefined (a misspelt variable is an error, not an empty string), autoescape for
HTML parts only. Alert values are context, never template source. Any failure is a
TemplateFailure, which the dispatcher records as a permanent failure of that one notification.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Optional

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

import templates as _templates_package

TEMPLATE_ROOT = Path(_templates_package.__file__).parent

HEADLINES = {
    "RUNS_THRESHOLD": "Runs quota threshold reached",
    "STORAGE_THRESHOLD": "Storage quota threshold reached",
    "RECORDS_THRESHOLD": "Records quota threshold reached",
    "API_CALLS_THRESHOLD": "API calls quota threshold reached",
    "RATE_LIMIT": "Requests are being rate limited",
    "PAYMENT_FAILED": "Payment failed",
    "WALLET_LOW": "Wallet balance is low",
}
TRANSITION_TEXT = {
    "opened": "opened", "reopened": "re-opened", "escalated": "escalated",
    "resolved": "resolved", "reminder": "still open (reminder)", "acked": "acknowledged",
    "ack_expired": "open again (acknowledgement expired)",
    "escalation": "still open and not acknowledged (escalated to you)",
}


class TemplateFailure(Exception):
    """A template is missing or failed to render; short text, safe to store in `error`."""


@functools.cache
def environment(root: str = str(TEMPLATE_ROOT)) -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(
        # An override folder (delivery.templates_dir) is searched first, the shipped templates after.
        loader=jinja2.FileSystemLoader([root, str(TEMPLATE_ROOT)] if root != str(TEMPLATE_ROOT) else [root]),
        undefined=jinja2.StrictUndefined,
        autoescape=lambda name: bool(name) and name.endswith(".html.j2"),
        keep_trailing_newline=False,
        trim_blocks=True,
    )


def message_context(alert: dict, transition: str, severity: Optional[str], reminder_no: int) -> dict[str, Any]:
    severity = severity or alert.get("severity") or "info"
    return dict(
        alert=alert,
        transition=transition,
        transition_text=TRANSITION_TEXT.get(transition, transition),
        severity=severity,
        reminder_no=reminder_no,
        # An escalation step's rows carry reminder_no = -step (the plan-once key keeps them apart).
        escalation_step=-reminder_no if transition == "escalation" else None,
        headline=HEADLINES.get(alert.get("kind"), str(alert.get("kind", "Alert")).replace("_", " ").capitalize()),
    )


def render(channel: str, kind: str, part: str, context: dict[str, Any], *, root: Optional[Path] = None) -> str:
    env = environment(str(root or TEMPLATE_ROOT))
    names = [f"{channel}/{kind}.{part}.j2", f"{channel}/default.{part}.j2"]
    try:
        template = env.select_template(names)
        return template.render(context).strip()
    except jinja2.TemplatesNotFound:
        raise TemplateFailure(f"template error: no template {names[-1]}") from None
    except jinja2.TemplateError as exc:
        where = getattr(exc, "name", None) or names[0]
        raise TemplateFailure(f"template error in {where}: {str(exc)[:200]}") from None
    except Exception as exc:  # noqa: BLE001 - a template bug must fail one notification, not the pass
        raise TemplateFailure(f"template error in {names[0]}: {type(exc).__name__}") from None


def render_json(channel: str, kind: str, part: str, context: dict[str, Any], *, root: Optional[Path] = None) -> Any:
    text = render(channel, kind, part, context, root=root)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise TemplateFailure(f"template error: {channel}/{kind}.{part}.j2 is not valid JSON ({exc.msg})") from None
