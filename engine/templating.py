"""Renders templates/<channel>/<KIND or default>.<part>.j2 for one notification.

The channel templates lay a message out; its sentences come from templates/words/<locale>/:
<KIND>.j2, else the file of the kind's family (engine.messages.WORDS_FAMILY), else default.j2, and
the same in English when the locale has no such file (a missing translation falls back to English,
never to an error). engine.messages builds the context: facts formatted for people, names, links.

Sandboxed (ImmutableSandboxedEnvironment: templates cannot reach Python internals or mutate the
context), StrictUndefined (a misspelt variable is an error, not an empty string), autoescape for
HTML parts only. Alert values are context, never template source. Any failure is a
TemplateFailure, which the dispatcher records as a permanent failure of that one notification.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any, Optional

import jinja2
import markupsafe
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
    "test": "test notification, no action needed",
    "destination_disabled": "a destination of this tenant was disabled",
    "ack_expired": "open again (acknowledgement expired)",
    "escalation": "still open and not acknowledged (escalated to you)",
}


class TemplateFailure(Exception):
    """A template is missing or failed to render; short text, safe to store in `error`."""


def mrkdwn_escape(value: Any) -> str:
    """Slack mrkdwn treats &, < and > as control characters (its docs: "Escaping text")."""
    return _plain(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _plain(value: Any) -> str:
    # str.__str__ gives a plain str even for Markup, whose methods would escape their arguments.
    return str.__str__(value) if isinstance(value, str) else str(value)


def words_to_html(value: Any) -> markupsafe.Markup:
    """The words templates write plain text, yet a macro called from an autoescaped template
    returns Markup (Jinja marks macro output safe there): escape it as the text it is."""
    return markupsafe.escape(_plain(value))


def clip(value: Any, length: int) -> str:
    """At most `length` characters, an ellipsis marking a cut (Jinja's truncate allows 5 more)."""
    text = str(value)
    return text if len(text) <= length else text[: length - 1] + "…"


@functools.cache
def environment(root: str = str(TEMPLATE_ROOT)) -> ImmutableSandboxedEnvironment:
    env = _environment(root)
    from engine.messages import usage_bar  # here: messages imports this module

    env.filters.update(mrkdwn=mrkdwn_escape, clip=clip, usage_bar=usage_bar, html=words_to_html)
    return env


def _environment(root: str) -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(
        # The shipped templates change only with a new install (and a restart): checking each file's
        # mtime on every render was a tenth of a webhook summary's cost. An override folder is
        # edited in place, so its files are still checked.
        auto_reload=root != str(TEMPLATE_ROOT),
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


@functools.lru_cache(maxsize=1024)
def words_names(locale: str, kind: str, name: Optional[str] = None) -> tuple[str, ...]:
    """Where the words of `kind` (or the shared file `name`) are looked for, most specific first."""
    from engine.messages import WORDS_FAMILY

    languages = list(dict.fromkeys([locale] + ([locale.split("_")[0]] if "_" in locale else []) + ["en"]))
    if name:
        return tuple(f"words/{lang}/{name}.j2" for lang in languages)
    # The kind's own words in English beat a translation's generic default.j2.
    specific = list(dict.fromkeys([kind, WORDS_FAMILY.get(kind, "default")]))
    return tuple([f"words/{lang}/{file}.j2" for lang in languages for file in specific if file != "default"]
                 + [f"words/{lang}/default.j2" for lang in languages])


_SELECTED: dict[tuple[str, ...], jinja2.Template] = {}


def select(env: ImmutableSandboxedEnvironment, names: tuple[str, ...]) -> jinja2.Template:
    """env.select_template, remembered for the shipped templates (which do not change while the
    process runs): a kind without a file of its own otherwise costs a failed file lookup a render."""
    if env.auto_reload:
        return env.select_template(names)
    template = _SELECTED.get(names)
    if template is None:
        template = _SELECTED[names] = env.select_template(names)
    return template


def render(channel: str, kind: str, part: str, context: dict[str, Any], *, root: Optional[Path] = None) -> str:
    env = environment(str(root or TEMPLATE_ROOT))
    names = (f"{channel}/{kind}.{part}.j2", f"{channel}/default.{part}.j2")
    try:
        if "locale" in context and "words" not in context:
            locale = context["locale"]
            # Facts of another shape than the kind's (an old alert, a hand-made event): the
            # neutral words, which need none.
            words_kind = (context.get("words_kind") or kind) if context.get("facts") and context.get("variant") != "test" \
                else "default"
            context = dict(context, words=select(env, words_names(locale, words_kind)),
                           common=select(env, words_names(locale, kind, "_common")))
        template = select(env, names)
        text = template.render(context).strip()
        if part == "text":
            text = _BLANK_RUNS.sub("\n\n", _TRAILING_SPACE.sub("", text))  # optional lines left out leave no holes
        return text
    except jinja2.TemplatesNotFound:
        raise TemplateFailure(f"template error: no template {names[-1]}") from None
    except jinja2.TemplateError as exc:
        where = getattr(exc, "name", None) or names[0]
        raise TemplateFailure(f"template error in {where}: {str(exc)[:200]}") from None
    except Exception as exc:  # noqa: BLE001 - a template bug must fail one notification, not the pass
        raise TemplateFailure(f"template error in {names[0]}: {type(exc).__name__}") from None


_TRAILING_SPACE = re.compile(r"(?<!--)[ \t]+$", re.MULTILINE)  # not the "-- " signature separator
_BLANK_RUNS = re.compile(r"\n[ \t]*(?:\n[ \t]*)+\n")


def render_json(channel: str, kind: str, part: str, context: dict[str, Any], *, root: Optional[Path] = None) -> Any:
    text = render(channel, kind, part, context, root=root)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise TemplateFailure(f"template error: {channel}/{kind}.{part}.j2 is not valid JSON ({exc.msg})") from None
