"""What a message says, in the reader's terms: the context that every channel's templates render.

Code turns an alert into facts formatted for people (thousands separators, GB with one decimal,
money from cents in the plan's currency, dates like "1 December 2026", times in the destination's
time zone with the zone named) and into names instead of UUIDs; the templates under
templates/words/<locale>/ turn those facts into sentences, and templates/<channel>/ lay them out.
Formats come from Babel, by the destination's locale. Nothing here compiles a template from alert
data: action links are filled in with str.format_map over a fixed set of values.
"""

from __future__ import annotations

import functools
import logging
import string
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Iterator, Mapping, Optional
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime, format_timedelta
from babel.numbers import format_currency, format_decimal, format_percent, is_currency, parse_pattern

from engine.config import Config
from engine.errors import BadInput
# At the top, not in the function: an import statement on every message was 3 % of the
# dispatcher's CPU (templating imports this module only inside its functions).
from engine.templating import message_context

log = logging.getLogger(__name__)

# The words of each kind: templates/words/<locale>/<KIND>.j2, else the file of its family here.
WORDS_FAMILY = {
    "RUNS_THRESHOLD": "threshold", "STORAGE_THRESHOLD": "threshold", "RECORDS_THRESHOLD": "threshold",
    "API_CALLS_THRESHOLD": "threshold", "WALLET_LOW": "wallet_low", "PAYMENT_FAILED": "payment_failed",
    "RATE_LIMIT": "rate_limit",
}
# Threshold kinds: the metric in the alert's context and whether its amounts are gigabytes.
QUOTA_KINDS = {
    "RUNS_THRESHOLD": ("runs_used", False), "STORAGE_THRESHOLD": ("storage_gb", True),
    "RECORDS_THRESHOLD": ("records_count", False), "API_CALLS_THRESHOLD": ("api_calls", False),
}
# How a transition reads: the variant of the words to use. Transitions this code does not know
# (a newer planner's) read as `update`, a neutral "this alert changed" with its name shown.
VARIANTS = {
    "opened": "opened", "reopened": "opened", "escalated": "opened", "resolved": "resolved",
    "reminder": "reminder", "escalation": "reminder", "ack_expired": "reminder", "silence_ended": "reminder",
    "acked": "acked",
    "test": "test",   # `notifyctl destinations test`: sample numbers, so the neutral words and a note
}
LINK_FIELDS = ("tenant_id", "base_id", "alert_id", "kind")
BAR_CELLS = 20


def check_timezone(name: str, *, where: str = "--timezone") -> ZoneInfo:
    try:
        if not name or name.startswith(("/", ".")) or ".." in name:
            raise ValueError
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadInput(f"{where}: not an IANA time zone name (such as UTC or Europe/Berlin): {name!r}") from None


def check_locale(tag: str, *, where: str = "--locale") -> str:
    try:
        return str(Locale.parse(tag.replace("-", "_")))
    except (UnknownLocaleError, ValueError, TypeError):
        raise BadInput(f"{where}: not a known language tag (such as en or de): {tag!r}") from None


def check_currency(code: str, *, where: str = "currency") -> str:
    if not isinstance(code, str) or not is_currency(code):
        raise BadInput(f"{where}: not an ISO 4217 currency code (such as USD or EUR): {code!r}")
    return code


def check_link_url(url: str, *, where: str) -> str:
    for _, field_name, spec, conversion in string.Formatter().parse(url):
        if field_name is not None and (field_name not in LINK_FIELDS or spec or conversion):
            raise BadInput(f"{where}: only {', '.join('{' + f + '}' for f in LINK_FIELDS)} may be filled in, "
                           f"got {{{field_name}}}")
    return url


class Formats:
    """Numbers, money, dates and durations as a reader of `locale` in `zone` writes them.

    Babel's formatting is most of a message's CPU (tens of µs a call), and the same few values come
    back message after message (plan limits, reset dates, today's date): each format is cached by
    its exact input (the value's text, so 850 and 850.0 stay apart)."""

    DATE_PATTERNS = {"en": "d MMMM y"}   # "1 December 2026"; other languages: their long form

    def __init__(self, locale: str, zone: ZoneInfo):
        self.locale = Locale.parse(locale)
        self.zone = zone
        self.zone_name = zone.key

    def number(self, value: Any, decimals: int = 0) -> str:
        pattern = "#,##0" + ("." + "#" * decimals if decimals else "")
        return _format_decimal(self.locale, str(_decimal(value)), pattern)

    def gigabytes(self, value: Any) -> str:
        return _format_decimal(self.locale, str(_decimal(value)), "#,##0.0") + " GB"

    def quantity(self, value: Any, gigabytes: bool) -> str:
        return self.gigabytes(value) if gigabytes else self.number(value)

    def money(self, cents: Any, currency: str) -> str:
        return _format_money(self.locale, str(_decimal(cents)), currency)

    def percent(self, value: Any) -> str:
        return _format_percent(self.locale, str(_decimal(value)))

    def local(self, moment: datetime) -> datetime:
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.astimezone(self.zone)

    def date(self, moment: datetime) -> str:
        return _format_day(self.locale, self.local(moment).date())

    def time(self, moment: datetime) -> str:
        # Babel's "HH:mm" writes ASCII digits in every locale: the same as this, a hundred times cheaper.
        local = self.local(moment)
        return f"{local.hour:02d}:{local.minute:02d}"

    def datetime(self, moment: datetime) -> str:
        # Cached whole: an alert's first_seen recurs in its reminders, a detection pass's time in
        # every alert of the pass, a period's reset in every quota alert of the month.
        return _format_datetime(self, moment)

    def month(self, moment: datetime) -> str:
        return _format_month(self.locale, moment.date())

    def duration(self, seconds: Any) -> str:
        return _format_duration(self.locale, float(_decimal(seconds)))


_FORMAT_CACHE = 4096


@functools.lru_cache(maxsize=_FORMAT_CACHE)
def _format_decimal(locale: Locale, value: str, pattern: str) -> str:
    return format_decimal(Decimal(value), format=_number_pattern(pattern), locale=locale)


@functools.lru_cache(maxsize=64)
def _number_pattern(pattern: str) -> Any:
    """Babel's parsed pattern (immutable): parsing it again was two thirds of a format_decimal call."""
    return parse_pattern(pattern)


@functools.lru_cache(maxsize=256)
def _is_currency(code: str) -> bool:
    return is_currency(code)   # Babel builds the set of every currency on each call


@functools.lru_cache(maxsize=_FORMAT_CACHE)
def _format_money(locale: Locale, cents: str, currency: str) -> str:
    return format_currency(Decimal(cents) / 100, currency, locale=locale)


@functools.lru_cache(maxsize=_FORMAT_CACHE)
def _format_percent(locale: Locale, value: str) -> str:
    amount = Decimal(value)
    amount = amount.quantize(Decimal("1")) if abs(amount) >= 10 else amount
    if locale.language == "en":
        # As the issue writes it ("85 %"); Babel's English form would be "85%".
        return format_decimal(amount, format=_number_pattern("#,##0.#"), locale=locale) + " %"
    return format_percent(amount / 100, locale=locale)   # the language's own pattern ("85 %" in German)


@functools.lru_cache(maxsize=_FORMAT_CACHE)
def _format_day(locale: Locale, day: Any) -> str:
    pattern = Formats.DATE_PATTERNS.get(locale.language, "long")
    return format_date(day, format=pattern, locale=locale)


@functools.lru_cache(maxsize=_FORMAT_CACHE)
def _format_datetime(formats: Formats, moment: datetime) -> str:
    local = formats.local(moment)
    return f"{_format_day(formats.locale, local.date())}, {local.hour:02d}:{local.minute:02d} ({formats.zone_name})"


@functools.lru_cache(maxsize=_FORMAT_CACHE)
def _format_month(locale: Locale, day: Any) -> str:
    return format_date(day, format="LLLL y", locale=locale)


@functools.lru_cache(maxsize=_FORMAT_CACHE)
def _format_duration(locale: Locale, seconds: float) -> str:
    return format_timedelta(timedelta(seconds=seconds), threshold=1.1, locale=locale)


@functools.lru_cache(maxsize=256)
def _formats(locale: str, zone: ZoneInfo) -> Formats:
    return Formats(locale, zone)


class Later:
    """A fact whose formatting waits until a template reads it (LazyFacts)."""

    __slots__ = ("fn", "args")

    def __init__(self, fn: Callable[..., Any], *args: Any):
        self.fn, self.args = fn, args


class LazyFacts(Mapping):
    """The facts of a message, each formatted the first time a template reads it: the webhook's
    one-line summary reads two or three of a dozen. Inputs are checked when the facts are built
    (a context of another shape still falls back to the neutral words), so reading one cannot fail."""

    __slots__ = ("_values",)

    def __init__(self, values: dict[str, Any]):
        self._values = values

    def __getitem__(self, key: str) -> Any:
        value = self._values[key]
        if isinstance(value, Later):
            value = self._values[key] = value.fn(*value.args)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"LazyFacts({dict(self)!r})"


@dataclass
class Recipient:
    """Who the message is for: what the channel knows of its destination."""

    destination_id: Optional[str] = None   # None for ops routes (config), which cannot unsubscribe
    timezone: Optional[str] = None
    locale: Optional[str] = None
    address: Optional[str] = None


class NameBook:
    """Display names of tenants and bases: messages.names, and messages.names_sql (which wins),
    loaded when a dispatcher opens its channels and reloaded in a background thread once
    messages.names_refresh has passed, so a send never waits for the query. Without an app (preview,
    tests of rendering) only the static names are used."""

    def __init__(self, config: Config, app: Any = None):
        self.static = config.messages.names
        self.source = config.messages.names_sql
        self.refresh_every = float(config.messages.names_refresh)
        self.app = app
        self._loaded: dict[str, str] = {}
        self._loaded_at: Optional[float] = None
        self._refreshing = threading.Lock()
        self._warned = False

    def get(self, key: Optional[str]) -> Optional[str]:
        if not key:
            return None
        if self._stale() and self._refreshing.acquire(blocking=False):
            threading.Thread(target=self._refresh_holding_lock, name="names-refresh", daemon=True).start()
        return self._loaded.get(key) or self.static.get(key)

    def ids_named(self, name: str) -> list[str]:
        """The ids shown by this name (case-insensitive), for forms that take a name for an id."""
        wanted = " ".join(name.split()).casefold()
        known = {**self.static, **self._loaded}
        return sorted(key for key, shown in known.items() if shown and " ".join(str(shown).split()).casefold() == wanted)

    def _stale(self) -> bool:
        return (self.source is not None and self.app is not None
                and (self._loaded_at is None or time.monotonic() - self._loaded_at >= self.refresh_every))

    def refresh_if_stale(self) -> None:
        if self._stale():
            with self._refreshing:
                self.refresh()

    def _refresh_holding_lock(self) -> None:
        try:
            self.refresh()
        finally:
            self._refreshing.release()

    def refresh(self) -> None:
        from engine.errors import NotifyError
        from engine.plans import query_source  # here: plans imports engine.db, which this module need not

        try:
            rows = query_source(self.app, self.source, "messages.names_sql")
        except NotifyError as exc:
            if not self._warned:
                self._warned = True
                log.warning("%s; messages keep the names they had", exc)
            self._loaded_at = time.monotonic()  # try again after names_refresh, not on every message
            return
        names = {}
        for row in rows:
            if row[0] is not None and row[1] is not None and is_uuid(row[0]):
                names[str(uuid.UUID(str(row[0])))] = " ".join(str(row[1]).split())[:200]
        self._loaded, self._loaded_at = names, time.monotonic()


class Composer:
    """Builds the template context of one message from the alert, its transition and recipient."""

    def __init__(self, config: Optional[Config] = None, app: Any = None):
        self.config = config or Config()
        self.names = NameBook(self.config, app)

    async def prepare(self) -> None:
        """Loads the names from messages.names_sql (in a thread) when they are due."""
        import asyncio

        if self.names._stale():   # cheap: channels open before every send
            await asyncio.to_thread(self.names.refresh_if_stale)

    def context(self, alert: dict, transition: str, severity: Optional[str], reminder_no: int,
                recipient: Optional[Recipient] = None, *, unsubscribe_url: Optional[str] = None,
                action_links: Optional[dict[str, str]] = None,
                slack_buttons: Optional[list[dict]] = None) -> dict[str, Any]:
        context, formats = self._subject_context(alert, transition, severity, reminder_no, recipient)
        tenant_id = _text(alert.get("tenant_id"))
        context.update(
            tenant=dict(id=tenant_id, name=self.names.get(tenant_id)),
            first_seen=_when(formats, alert.get("first_seen_at")),
            last_seen=_when(formats, alert.get("last_seen_at")),
            action=self._action(context["kind"], alert),
            alert_url=self.alert_url(alert.get("id")),
            unsubscribe_url=unsubscribe_url,
            action_links=action_links,     # {"ack": url, "resolve": url}: engine.action_links
            slack_buttons=slack_buttons,   # interactive Ack/Resolve buttons (POST /slack/actions)
            recipient=(recipient or Recipient()).address,
        )
        return context

    def subject_context(self, alert: dict, transition: str, severity: Optional[str], reminder_no: int,
                        recipient: Optional[Recipient] = None) -> dict[str, Any]:
        """The part of context() that a subject line reads (and that picks its words): for the
        webhook's summary, which engine.templating.subject_line makes from this alone when the
        shipped templates are in use. Leaves out the dates, names of the tenant, links."""
        return self._subject_context(alert, transition, severity, reminder_no, recipient)[0]

    def _subject_context(self, alert: dict, transition: str, severity: Optional[str], reminder_no: int,
                         recipient: Optional[Recipient]) -> tuple[dict[str, Any], Formats]:
        recipient = recipient or Recipient()
        settings = self.config.messages
        zone = _zone(recipient.timezone) or _zone(settings.timezone) or ZoneInfo("UTC")
        locale = _locale(recipient.locale) or _locale(settings.locale) or "en"
        formats = _formats(locale, zone)
        kind = str(alert.get("kind") or "ALERT")
        context = message_context(alert, transition, severity, reminder_no)
        base_id = _text(alert.get("base_id"))
        facts = self._facts(kind, alert, formats)
        if kind not in WORDS_FAMILY and facts:
            # A posted alert of a kind the engine has no words for (any Prometheus alertname):
            # the generic words, never a words file that happens to share the alert's name.
            context["words_kind"] = "prometheus"
        context.update(
            kind=kind, locale=locale, zone=formats.zone_name,
            variant=VARIANTS.get(transition, "update"),
            transition_name=transition.replace("_", " "),
            base=dict(id=base_id, name=self.names.get(base_id), short=base_id[:8]) if base_id else None,
            facts=facts,
        )
        return context, formats

    def group_context(self, group: dict, severity: Optional[str], recipient: Optional[Recipient],
                      member_line: Any, *, message_id: Optional[str] = None) -> dict[str, Any]:
        """The context of a group message (issue 15, engine.noise): its members as a list, each
        with the one line its own kind's words give it (`member_line(kind, member_context)`,
        the channel's subject), plus what the group's words need: how many, why they were held,
        and how to list those the message leaves out."""
        from engine.noise import DESTINATION_GROUPS  # here: noise imports engine.config only

        recipient = recipient or Recipient()
        settings = self.config.messages
        zone = _zone(recipient.timezone) or _zone(settings.timezone) or ZoneInfo("UTC")
        locale = _locale(recipient.locale) or _locale(settings.locale) or "en"
        members = []
        for member in group.get("members") or []:
            alert = member.get("alert") or {}
            context = self.context(alert, member.get("transition") or "opened", member.get("severity"),
                                   member.get("reminder_no") or 0, recipient)
            members.append(dict(line=" ".join(member_line(context["kind"], context).split()), kind=context["kind"],
                                severity=context["severity"], variant=context["variant"],
                                transition_text=context["transition_text"], tenant=context["tenant"],
                                base=context["base"], alert_url=context["alert_url"],
                                notification_id=member.get("notification_id"), alert_id=alert.get("id")))
        kinds = sorted({m["kind"] for m in members})
        tenants = {m["tenant"]["id"] for m in members}
        tenant_id = next(iter(tenants)) if len(tenants) == 1 else None
        size = int(group.get("size") or len(members))
        key = group.get("key") or ""
        return dict(
            kind=kinds[0] if len(kinds) == 1 else "ALERT", kinds=kinds, locale=locale, zone=zone.key,
            variant="group", transition="group", transition_name="group", severity=severity or "info",
            reason=key if key in DESTINATION_GROUPS else "group_wait", group_key=key,
            size=size, members=members, more=max(0, size - len(members)), message_id=message_id,
            facts=dict(size=size),
            tenant=dict(id=tenant_id, name=self.names.get(tenant_id)), tenants=len(tenants),
            recipient=recipient.address, unsubscribe_url=None, action=None, alert_url=None,
        )

    def alert_url(self, alert_id: Any) -> Optional[str]:
        base = self.config.messages.public_url
        return f"{base.rstrip('/')}/ui/alerts/{alert_id}" if base and alert_id else None

    def _action(self, kind: str, alert: dict) -> Optional[dict]:
        link = self.config.messages.links.get(kind)
        if link is None:
            return None
        values = {"tenant_id": _text(alert.get("tenant_id")) or "", "base_id": _text(alert.get("base_id")) or "",
                  "alert_id": _text(alert.get("id")) or "", "kind": kind}
        return dict(url=link.url.format_map(values), label=link.label)

    def _currency(self, alert: dict) -> str:
        plan_name = (alert.get("context") or {}).get("plan")
        plan = self.config.plans.get(plan_name) if plan_name else None
        if plan is None:
            plan = self.config.plan_for(_text(alert.get("tenant_id")) or "")[1]
        return plan.currency

    def _facts(self, kind: str, alert: dict, f: Formats) -> Mapping[str, Any]:
        ctx = alert.get("context") or {}
        try:
            if kind in QUOTA_KINDS:
                return LazyFacts(self._quota_facts(kind, ctx, f))
            if kind == "WALLET_LOW":
                return LazyFacts(self._wallet_facts(alert, ctx, f))
            if kind == "PAYMENT_FAILED":
                return LazyFacts(self._payment_facts(alert, ctx, f))
            if kind == "RATE_LIMIT":
                return LazyFacts(self._rate_limit_facts(alert, ctx, f))
            if kind not in WORDS_FAMILY and isinstance((ctx.get("event") or {}).get("labels"), dict):
                return LazyFacts(self._posted_alert_facts(kind, ctx["event"]))
        except (InvalidOperation, ValueError, TypeError, KeyError, OverflowError):
            pass  # a context of another shape: the kind's words fall back to what they can say
        return {}

    # The builders check and convert every input now (a bad one raises here) and leave only the
    # formatting of checked values for later (Later), which LazyFacts does when a template reads it.

    @staticmethod
    def _quota_facts(kind: str, ctx: dict, f: Formats) -> dict[str, Any]:
        _, gigabytes = QUOTA_KINDS[kind]
        value, limit = _decimal(ctx["value"]), _decimal(ctx["limit"])
        percent = _decimal(ctx["percent"]) if ctx.get("percent") is not None else (
            value * 100 / limit if limit else Decimal(0))
        cleared = _decimal(ctx["cleared_value"]) if ctx.get("cleared_value") is not None else None
        facts: dict[str, Any] = dict(
            used=Later(f.quantity, value, gigabytes), limit=Later(f.quantity, limit, gigabytes),
            # Formatted now: the subject reads them, and an absurd value fails here, not in a template.
            percent=f.percent(percent), level=f.percent(ctx.get("level_percent", 100)),
            reached=value >= limit,
            bar=int(min(_HUNDRED, max(_ZERO, percent)).quantize(_ONE)),
            left=Later(f.quantity, limit - value, gigabytes) if limit > value else None,
            over=Later(f.quantity, value - limit, gigabytes) if value > limit else None,
            resolved_by=ctx.get("resolved_by"),
            now_used=Later(f.quantity, cleared, gigabytes) if cleared is not None else None,
            period=None, reset_date=None, reset_at=None, measured_at=None,
        )
        period = ctx.get("period")
        if period:
            start, reset = _period_bounds(period)
            facts.update(period=Later(f.month, start), reset_date=Later(f.date, reset),
                         reset_at=Later(f.datetime, reset))
        if ctx.get("captured_at"):
            facts["measured_at"] = Later(f.datetime, _parse_time(ctx["captured_at"]))
        return facts

    def _wallet_facts(self, alert: dict, ctx: dict, f: Formats) -> dict[str, Any]:
        currency = self._currency(alert)
        value = _decimal(ctx["value"])
        cleared = _decimal(ctx["cleared_value"]) if ctx.get("cleared_value") is not None else None
        facts: dict[str, Any] = dict(balance=Later(f.money, value, currency), empty=value <= 0, forecast=False,
                                     floor=None, runway_days=None, burn_per_day=None, runs_out_date=None,
                                     measured_at=None,
                                     now_balance=Later(f.money, cleared, currency) if cleared is not None else None)
        if ctx.get("floor") is not None:
            facts["floor"] = Later(f.money, _decimal(ctx["floor"]), currency)
        if ctx.get("runway_days") is not None:
            days = _decimal(ctx["runway_days"])
            facts.update(forecast=True, runway_days=Later(f.number, days, 1),
                         burn_per_day=Later(f.money, _decimal(ctx["burn_per_day"]), currency),
                         runway_limit_days=Later(f.number, _decimal(ctx.get("runway_limit_days", 0))))
            if ctx.get("captured_at"):
                runs_out = _parse_time(ctx["captured_at"]) + timedelta(days=float(days))
                facts["runs_out_date"] = Later(f.date, runs_out)
        if ctx.get("captured_at"):
            facts["measured_at"] = Later(f.datetime, _parse_time(ctx["captured_at"]))
        return facts

    def _payment_facts(self, alert: dict, ctx: dict, f: Formats) -> dict[str, Any]:
        event = ctx.get("event") if isinstance(ctx.get("event"), dict) else {}
        currency = event.get("currency") if isinstance(event.get("currency"), str) else None
        if not currency or not _is_currency(currency.upper()):
            currency = self._currency(alert)
        amount = _first(event, "amount_cents", "amount_due_cents")
        facts: dict[str, Any] = dict(
            invoice=_short(_first(event, "invoice_number", "invoice_id", "invoice")),
            amount=Later(f.money, _decimal(amount), currency.upper()) if amount is not None else None,
            reason=_short(_first(event, "failure_message", "failure_reason", "reason", "decline_code")),
            next_attempt=None, since=None,
        )
        retry = _first(event, "next_attempt_at", "next_payment_attempt", "retry_at")
        if retry is not None:
            facts["next_attempt"] = Later(f.datetime, _parse_time(retry))
        since = ctx.get("raised_at") or alert.get("first_seen_at")
        if since:
            facts["since"] = Later(f.datetime, _parse_time(since))
        return facts

    @staticmethod
    def _posted_alert_facts(kind: str, event: dict) -> dict[str, Any]:
        """A Prometheus alert (POST /api/v2/alerts): the rule's summary and description
        annotations, its labels."""
        labels = {str(k): str(v) for k, v in event["labels"].items()}
        annotations = event.get("annotations") if isinstance(event.get("annotations"), dict) else {}
        alertname = labels.get("alertname") or kind
        return dict(title=_short(annotations.get("summary")) or alertname, alertname=alertname,
                    description=_short(annotations.get("description"), 2000),
                    labels=[(name, _short(value)) for name, value in sorted(labels.items()) if name != "alertname"],
                    source=_short(event.get("generator_url"), 2000))

    @staticmethod
    def _rate_limit_facts(alert: dict, ctx: dict, f: Formats) -> dict[str, Any]:
        window = float(_decimal(ctx["window_seconds"]))
        timedelta(seconds=window)   # an out-of-range window raises here, not when a template reads it
        facts: dict[str, Any] = dict(refused=Later(f.number, _decimal(ctx["value"])),
                                     threshold=Later(f.number, _decimal(ctx["threshold"])),
                                     window=Later(f.duration, window), since=None, now_refused=None)
        if alert.get("first_seen_at"):
            facts["since"] = Later(f.datetime, _parse_time(alert["first_seen_at"]))
        if ctx.get("cleared_value") is not None:
            facts["now_refused"] = Later(f.number, _decimal(ctx["cleared_value"]))
        return facts


@functools.lru_cache(maxsize=256)
def _period_bounds(period: str) -> tuple[datetime, datetime]:
    """A billing period "YYYY-MM": its first instant and the next period's (UTC)."""
    start = datetime.strptime(period, "%Y-%m").replace(tzinfo=timezone.utc)
    return start, (start + timedelta(days=32)).replace(day=1)


_ZERO, _ONE, _HUNDRED = Decimal(0), Decimal(1), Decimal(100)


def _decimal(value: Any) -> Decimal:
    kind = type(value)
    if kind is Decimal:
        return value
    if kind is int:
        return Decimal(value)   # exact, as Decimal(str(value)), without the string
    if isinstance(value, bool) or value is None:
        raise TypeError("not a number")
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _parse_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, timezone.utc)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _when(f: Formats, value: Any) -> Optional[str]:
    try:
        return f.datetime(_parse_time(value)) if value else None
    except (ValueError, TypeError, OverflowError):
        return str(value)


def _first(mapping: dict, *keys: str) -> Any:
    for key in keys:
        if mapping.get(key) not in (None, ""):
            return mapping[key]
    return None


def _short(value: Any, limit: int = 200) -> Optional[str]:
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text(value: Any) -> Optional[str]:
    return str(value) if value else None


@functools.lru_cache(maxsize=256)
def _zone(name: Optional[str]) -> Optional[ZoneInfo]:
    if not name:
        return None
    try:
        return check_timezone(name)
    except BadInput:
        return None   # a bad stored value is not worth a lost message: the default zone reads fine


@functools.lru_cache(maxsize=256)
def _locale(tag: Optional[str]) -> Optional[str]:
    if not tag:
        return None
    try:
        return check_locale(tag)
    except BadInput:
        return None


def usage_bar(percent: int, cells: int = BAR_CELLS) -> str:
    filled = round(max(0, min(100, percent)) * cells / 100)
    return "█" * filled + "░" * (cells - filled)


def is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
        return True
    except ValueError:
        return False
