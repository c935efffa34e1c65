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
from jinja2.runtime import Macro
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


# Shipped templates that are `{% import words as w with context %}{{ w.subject() }}` and nothing else.
# Importing words with context builds the whole words module (every set at its top, which formats
# most of the facts) on every render: for the webhook's one line, most of its CPU. Their line comes
# straight from the family's macro in words/<lang>/_subjects.j2 instead (a module imported without
# context, built once), called with these values of the context, when the template, the words
# file and _common are the shipped ones; with an override among them, the templates render as written.
SUBJECT_ONLY_TEMPLATES = {"webhook/default.summary.j2"}
SUBJECT_ARGUMENTS = ("variant", "kind", "headline", "facts", "base")
_WORDS_FILE = re.compile(r"words/([^/]+)/([a-z_]+)\.j2")
_PREFIX_CACHE = 1024


def render(channel: str, kind: str, part: str, context: dict[str, Any], *, root: Optional[Path] = None) -> str:
    env = environment(str(root or TEMPLATE_ROOT))
    names = (f"{channel}/{kind}.{part}.j2", f"{channel}/default.{part}.j2")
    try:
        if "locale" in context and "words" not in context:
            line = _subject_line(env, names, kind, context)
            if line is not None:
                return line
            words, common = _words(env, kind, context)
            context = dict(context, words=words, common=common)
        template = select(env, names)
        text = template.render(context).strip()
        if part == "text":
            text = _BLANK_RUNS.sub("\n\n", _TRAILING_SPACE.sub("", text))  # optional lines left out leave no holes
        return text
    except Exception as exc:  # noqa: BLE001 - a template bug must fail one notification, not the pass
        raise _failure(exc, names) from None


def subject_line(channel: str, kind: str, part: str, context: dict[str, Any], *,
                 root: Optional[Path] = None) -> Optional[str]:
    """What render() gives for a subject-only part, from the smaller context of
    Composer.subject_context, when the shipped templates make the line; None when an override
    takes part or the part is not subject-only (then render the whole context)."""
    env = environment(str(root or TEMPLATE_ROOT))
    names = (f"{channel}/{kind}.{part}.j2", f"{channel}/default.{part}.j2")
    try:
        return _subject_line(env, names, kind, context)
    except Exception as exc:  # noqa: BLE001
        raise _failure(exc, names) from None


def _words_kind(kind: str, context: dict[str, Any]) -> str:
    # Facts of another shape than the kind's (an old alert, a hand-made event): the neutral
    # words, which need none.
    return (context.get("words_kind") or kind) if context.get("facts") and context.get("variant") != "test" \
        else "default"


def _words(env: ImmutableSandboxedEnvironment, kind: str, context: dict[str, Any]) -> tuple[jinja2.Template, jinja2.Template]:
    """The words file and _common for the context's locale."""
    locale = context["locale"]
    return (select(env, words_names(locale, _words_kind(kind, context))),
            select(env, words_names(locale, kind, "_common")))


def _subject_line(env: ImmutableSandboxedEnvironment, names: tuple[str, str], kind: str,
                  context: dict[str, Any]) -> Optional[str]:
    if names[-1] not in SUBJECT_ONLY_TEMPLATES:
        return None
    macros = _subject_macros(env, names, kind, context)
    if macros is None:
        return None
    prefix, family = macros
    try:
        arguments = [context[name] for name in SUBJECT_ARGUMENTS]
        transition_name = context["transition_name"]
    except KeyError:
        return None   # a context of another shape: the templates say what is missing
    # The prefix depends on the transition alone: made once per transition, not per message.
    key = (prefix, arguments[0], transition_name)
    said = _PREFIXES.get(key)
    if said is None:
        said = prefix(arguments[0], transition_name)
        if len(_PREFIXES) >= _PREFIX_CACHE:
            _PREFIXES.clear()
        _PREFIXES[key] = said
    return family(said, *arguments).strip()


# Found for the shipped folder, whose files do not change while the process runs: (template name,
# kind, locale, words kind) -> the macros, or None.
_SHIPPED_SUBJECTS: dict[tuple[str, ...], Optional[tuple[Macro, Macro]]] = {}
_PREFIXES: dict[tuple[Any, ...], str] = {}


def _subject_macros(env: ImmutableSandboxedEnvironment, names: tuple[str, str], kind: str,
                    context: dict[str, Any]) -> Optional[tuple[Macro, Macro]]:
    """The prefix macro and the family's subject macro, when the template, the words file and
    _common that render() would use are the shipped ones; else None."""
    key = (names[0], kind, context.get("locale"), _words_kind(kind, context))
    if not env.auto_reload and key in _SHIPPED_SUBJECTS:
        return _SHIPPED_SUBJECTS[key]
    found = None
    template, (words, common) = select(env, names), _words(env, kind, context)
    words_file, common_file = _WORDS_FILE.fullmatch(words.name or ""), _WORDS_FILE.fullmatch(common.name or "")
    if (template.name in SUBJECT_ONLY_TEMPLATES and all(_is_shipped(t) for t in (template, words, common))
            and words_file and common_file and common_file.group(2) == "_common"):
        # _common's prefix() and the words file's subject() call their own folder's _subjects.j2
        # (a German reader of an English-only kind gets the German prefix), which may be overridden.
        try:
            prefixes = env.get_template(f"words/{common_file.group(1)}/_subjects.j2").module
            subjects = env.get_template(f"words/{words_file.group(1)}/_subjects.j2").module
        except jinja2.TemplateNotFound:
            prefixes = subjects = None
        prefix, family = getattr(prefixes, "prefix", None), getattr(subjects, words_file.group(2), None)
        if isinstance(prefix, Macro) and isinstance(family, Macro):
            found = (prefix, family)
    if not env.auto_reload:
        _SHIPPED_SUBJECTS[key] = found
    return found


def _is_shipped(template: jinja2.Template) -> bool:
    return bool(template.filename) and Path(template.filename).parent.is_relative_to(TEMPLATE_ROOT)


def _failure(exc: Exception, names: tuple[str, str]) -> TemplateFailure:
    if isinstance(exc, TemplateFailure):
        return exc
    if isinstance(exc, jinja2.TemplatesNotFound):
        return TemplateFailure(f"template error: no template {names[-1]}")
    if isinstance(exc, jinja2.TemplateError):
        where = getattr(exc, "name", None) or names[0]
        return TemplateFailure(f"template error in {where}: {str(exc)[:200]}")
    return TemplateFailure(f"template error in {names[0]}: {type(exc).__name__}")


_TRAILING_SPACE = re.compile(r"(?<!--)[ \t]+$", re.MULTILINE)  # not the "-- " signature separator
_BLANK_RUNS = re.compile(r"\n[ \t]*(?:\n[ \t]*)+\n")


def render_json(channel: str, kind: str, part: str, context: dict[str, Any], *, root: Optional[Path] = None) -> Any:
    text = render(channel, kind, part, context, root=root)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise TemplateFailure(f"template error: {channel}/{kind}.{part}.j2 is not valid JSON ({exc.msg})") from None
