"""What a message says, in the reader's terms: the context that every channel's templates render.

Code turns an alert into facts formatted for people (thousands separators, GB with one decimal,
money from cents in the plan's currency, dates like "1 December 2026", times in the destination's
time zone with the zone named) and into names instead of UUIDs; the templates under
templates/words/<locale>/ turn those facts into sentences, and templates/<channel>/ lay them out.
Formats come from Babel, by the destination's locale. Nothing here compiles a template from alert
data: action links are filled in with str.format_map over a fixed set of values.
"""

from __future__ import annotations

import logging
import string
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Optional
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime, format_timedelta
from babel.numbers import format_currency, format_decimal, format_percent, is_currency

from engine.config import Config
from engine.errors import BadInput

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
    """Numbers, money, dates and durations as a reader of `locale` in `zone` writes them."""

    DATE_PATTERNS = {"en": "d MMMM y"}   # "1 December 2026"; other languages: their long form

    def __init__(self, locale: str, zone: ZoneInfo):
        self.locale = Locale.parse(locale)
        self.zone = zone
        self.zone_name = zone.key

    def number(self, value: Any, decimals: int = 0) -> str:
        amount = _decimal(value)
        pattern = "#,##0" + ("." + "#" * decimals if decimals else "")
        return format_decimal(amount, format=pattern, locale=self.locale)

    def gigabytes(self, value: Any) -> str:
        return format_decimal(_decimal(value), format="#,##0.0", locale=self.locale) + " GB"

    def quantity(self, value: Any, gigabytes: bool) -> str:
        return self.gigabytes(value) if gigabytes else self.number(value)

    def money(self, cents: Any, currency: str) -> str:
        return format_currency(_decimal(cents) / 100, currency, locale=self.locale)

    def percent(self, value: Any) -> str:
        amount = _decimal(value).quantize(Decimal("1")) if abs(_decimal(value)) >= 10 else _decimal(value)
        if self.locale.language == "en":
            # As the issue writes it ("85 %"); Babel's English form would be "85%".
            return format_decimal(amount, format="#,##0.#", locale=self.locale) + " %"
        return format_percent(amount / 100, locale=self.locale)   # the language's own pattern ("85 %" in German)

    def local(self, moment: datetime) -> datetime:
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.astimezone(self.zone)

    def date(self, moment: datetime) -> str:
        pattern = self.DATE_PATTERNS.get(self.locale.language, "long")
        return format_date(self.local(moment).date(), format=pattern, locale=self.locale)

    def time(self, moment: datetime) -> str:
        return format_datetime(self.local(moment), format="HH:mm", locale=self.locale)

    def datetime(self, moment: datetime) -> str:
        return f"{self.date(moment)}, {self.time(moment)} ({self.zone_name})"

    def month(self, moment: datetime) -> str:
        return format_date(moment.date(), format="LLLL y", locale=self.locale)

    def duration(self, seconds: Any) -> str:
        return format_timedelta(timedelta(seconds=float(_decimal(seconds))), threshold=1.1, locale=self.locale)


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
                recipient: Optional[Recipient] = None, *, unsubscribe_url: Optional[str] = None) -> dict[str, Any]:
        from engine.templating import message_context  # here: templating imports this module

        recipient = recipient or Recipient()
        settings = self.config.messages
        zone = _zone(recipient.timezone) or _zone(settings.timezone) or ZoneInfo("UTC")
        locale = _locale(recipient.locale) or _locale(settings.locale) or "en"
        formats = Formats(locale, zone)
        kind = str(alert.get("kind") or "ALERT")
        context = message_context(alert, transition, severity, reminder_no)
        tenant_id, base_id = _text(alert.get("tenant_id")), _text(alert.get("base_id"))
        facts = self._facts(kind, alert, formats)
        context.update(
            kind=kind, locale=locale, zone=formats.zone_name,
            variant=VARIANTS.get(transition, "update"),
            transition_name=transition.replace("_", " "),
            tenant=dict(id=tenant_id, name=self.names.get(tenant_id)),
            base=dict(id=base_id, name=self.names.get(base_id), short=base_id[:8]) if base_id else None,
            facts=facts,
            first_seen=_when(formats, alert.get("first_seen_at")),
            last_seen=_when(formats, alert.get("last_seen_at")),
            action=self._action(kind, alert),
            alert_url=self.alert_url(alert.get("id")),
            unsubscribe_url=unsubscribe_url,
            recipient=recipient.address,
        )
        return context

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

    def _facts(self, kind: str, alert: dict, f: Formats) -> dict[str, Any]:
        ctx = alert.get("context") or {}
        try:
            if kind in QUOTA_KINDS:
                return self._quota_facts(kind, ctx, f)
            if kind == "WALLET_LOW":
                return self._wallet_facts(alert, ctx, f)
            if kind == "PAYMENT_FAILED":
                return self._payment_facts(alert, ctx, f)
            if kind == "RATE_LIMIT":
                return self._rate_limit_facts(alert, ctx, f)
        except (InvalidOperation, ValueError, TypeError, KeyError):
            pass  # a context of another shape: the kind's words fall back to what they can say
        return {}

    @staticmethod
    def _quota_facts(kind: str, ctx: dict, f: Formats) -> dict[str, Any]:
        _, gigabytes = QUOTA_KINDS[kind]
        value, limit = _decimal(ctx["value"]), _decimal(ctx["limit"])
        percent = _decimal(ctx["percent"]) if ctx.get("percent") is not None else (
            value * 100 / limit if limit else Decimal(0))
        facts: dict[str, Any] = dict(
            used=f.quantity(value, gigabytes), limit=f.quantity(limit, gigabytes), percent=f.percent(percent),
            level=f.percent(ctx.get("level_percent", 100)), reached=value >= limit,
            bar=int(min(Decimal(100), max(Decimal(0), percent)).quantize(Decimal("1"))),
            left=f.quantity(limit - value, gigabytes) if limit > value else None,
            over=f.quantity(value - limit, gigabytes) if value > limit else None,
            resolved_by=ctx.get("resolved_by"),
            now_used=f.quantity(ctx["cleared_value"], gigabytes) if ctx.get("cleared_value") is not None else None,
            period=None, reset_date=None, reset_at=None, measured_at=None,
        )
        period = ctx.get("period")
        if period:
            start = datetime.strptime(period, "%Y-%m").replace(tzinfo=timezone.utc)
            reset = (start + timedelta(days=32)).replace(day=1)
            facts.update(period=f.month(start), reset_date=f.date(reset), reset_at=f.datetime(reset))
        if ctx.get("captured_at"):
            facts["measured_at"] = f.datetime(_parse_time(ctx["captured_at"]))
        return facts

    def _wallet_facts(self, alert: dict, ctx: dict, f: Formats) -> dict[str, Any]:
        currency = self._currency(alert)
        value = _decimal(ctx["value"])
        facts: dict[str, Any] = dict(balance=f.money(value, currency), empty=value <= 0, forecast=False, floor=None,
                                     runway_days=None, burn_per_day=None, runs_out_date=None, measured_at=None,
                                     now_balance=f.money(ctx["cleared_value"], currency)
                                     if ctx.get("cleared_value") is not None else None)
        if ctx.get("floor") is not None:
            facts["floor"] = f.money(ctx["floor"], currency)
        if ctx.get("runway_days") is not None:
            days = _decimal(ctx["runway_days"])
            facts.update(forecast=True, runway_days=f.number(days, 1), burn_per_day=f.money(ctx["burn_per_day"], currency),
                         runway_limit_days=f.number(ctx.get("runway_limit_days", 0)))
            if ctx.get("captured_at"):
                runs_out = _parse_time(ctx["captured_at"]) + timedelta(days=float(days))
                facts["runs_out_date"] = f.date(runs_out)
        if ctx.get("captured_at"):
            facts["measured_at"] = f.datetime(_parse_time(ctx["captured_at"]))
        return facts

    def _payment_facts(self, alert: dict, ctx: dict, f: Formats) -> dict[str, Any]:
        event = ctx.get("event") if isinstance(ctx.get("event"), dict) else {}
        currency = event.get("currency") if isinstance(event.get("currency"), str) else None
        if not currency or not is_currency(currency.upper()):
            currency = self._currency(alert)
        amount = _first(event, "amount_cents", "amount_due_cents")
        facts: dict[str, Any] = dict(
            invoice=_short(_first(event, "invoice_number", "invoice_id", "invoice")),
            amount=f.money(amount, currency.upper()) if amount is not None else None,
            reason=_short(_first(event, "failure_message", "failure_reason", "reason", "decline_code")),
            next_attempt=None, since=None,
        )
        retry = _first(event, "next_attempt_at", "next_payment_attempt", "retry_at")
        if retry is not None:
            facts["next_attempt"] = f.datetime(_parse_time(retry))
        since = ctx.get("raised_at") or alert.get("first_seen_at")
        if since:
            facts["since"] = f.datetime(_parse_time(since))
        return facts

    @staticmethod
    def _rate_limit_facts(alert: dict, ctx: dict, f: Formats) -> dict[str, Any]:
        facts: dict[str, Any] = dict(refused=f.number(ctx["value"]), threshold=f.number(ctx["threshold"]),
                                     window=f.duration(ctx["window_seconds"]), since=None, now_refused=None)
        if alert.get("first_seen_at"):
            facts["since"] = f.datetime(_parse_time(alert["first_seen_at"]))
        if ctx.get("cleared_value") is not None:
            facts["now_refused"] = f.number(ctx["cleared_value"])
        return facts


def _decimal(value: Any) -> Decimal:
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


def _zone(name: Optional[str]) -> Optional[ZoneInfo]:
    if not name:
        return None
    try:
        return check_timezone(name)
    except BadInput:
        return None   # a bad stored value is not worth a lost message: the default zone reads fine


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
