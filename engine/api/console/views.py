"""What each console page shows, gathered through the engine functions the CLI and the API call
(engine.alerts, engine.destinations, engine.testsend, engine.status, engine.silences). Blocking: the routes run
these in the API's thread pool."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any, Optional

from engine import alerts as engine_alerts
from engine import silences as engine_silences
from engine.config import SEVERITIES
from engine.destinations import list_destinations
from engine.errors import BadInput, NotFound
from engine.messages import NameBook
from engine.queries import query
from engine.status import collect_status

# At most this many alerts on one page (the newest activity first); the page says when more match.
ALERTS_SHOWN = 200
# Status filter words: the engine's three, plus "active" (open and acked: the default, as
# Alertmanager and PagerDuty open on what still needs someone) and "any".
STATUS_FILTERS = ("active", "open", "ack", "resolved", "any")

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

AUDIT_WORDS = {"ALERT_ACK": "acknowledged", "ALERT_RESOLVE": "resolved by hand", "ALERT_ACK_EXPIRED": "ack lapsed"}


def list_alert_rows(app, names: NameBook, *, status: str, severity: Optional[str], kind: Optional[str],
                    tenant_id: Optional[str]) -> tuple[list[dict], bool]:
    """Alerts matching the filters, newest activity first, with display names; and whether more
    matched than are shown."""
    names.refresh_if_stale()
    common = dict(severity=severity, kind=kind, tenant_id=tenant_id, limit=ALERTS_SHOWN + 1)
    if status == "active":
        rows = (engine_alerts.list_alerts(app, status="open", **common)
                + engine_alerts.list_alerts(app, status="ack", **common))
        rows.sort(key=lambda r: (r["last_seen_at"], str(r["id"])), reverse=True)
    else:
        rows = engine_alerts.list_alerts(app, status=None if status == "any" else status, **common)
    more = len(rows) > ALERTS_SHOWN
    return [with_names(names, r) for r in rows[:ALERTS_SHOWN]], more


def with_names(names: NameBook, row: dict) -> dict:
    tenant = str(row["tenant_id"]) if row.get("tenant_id") else None
    base = str(row["base_id"]) if row.get("base_id") else None
    named = {**row, "tenant_name": names.get(tenant), "base_name": names.get(base)}
    if row.get("dedupe_key"):
        # The key as people read it: ids by their names (or their first 8 characters).
        named["key_label"] = _UUID.sub(lambda m: names.get(m.group(0)) or m.group(0)[:8], row["dedupe_key"])
    return named


def context_rows(context: Optional[dict]) -> list[tuple[str, Any]]:
    """The alert's context as key/value rows, objects opened one level (`event.invoice`)."""
    rows: list[tuple[str, Any]] = []
    for key, value in (context or {}).items():
        if isinstance(value, dict) and value:
            rows.extend((f"{key}.{inner}", item) for inner, item in value.items())
        else:
            rows.append((key, value))
    return rows


def alert_page(app, names: NameBook, alert_id: str) -> dict:
    """One alert, its notifications with their attempts, and its timeline (oldest first)."""
    names.refresh_if_stale()
    alert = with_names(names, engine_alerts.get_alert(app, alert_id))
    notes = alert["notifications"]
    with app.databases.begin("notify") as conn:
        attempts = [dict(r) for r in conn.execute(query("console", "alert_attempts"), dict(
            tenant_id=alert["tenant_id"], ids=[n["id"] for n in notes])).mappings()] if notes else []
    with app.databases.begin("admin_log") as conn:
        audits = [dict(r) for r in conn.execute(query("console", "alert_audit_events"), dict(
            tenant_id=alert["tenant_id"], since=alert["created_at"], target_id=str(alert["id"]))).mappings()]
    by_note: dict[Any, list[dict]] = {}
    for attempt in attempts:
        by_note.setdefault(attempt["notification_id"], []).append(attempt)
    for note in notes:
        note["attempts"] = by_note.get(note["id"], [])
    alert["audit"] = audits
    alert["context_rows"] = context_rows(alert.get("context"))
    alert["timeline"] = timeline(alert, notes, audits)
    return alert


def timeline(alert: dict, notes: list[dict], audits: list[dict]) -> list[dict]:
    """What happened to the alert, in order: opened, operators' actions (admin_log), the engine's
    notifications (each with its attempts), escalation steps, the resolve."""
    entries: list[dict] = [{"at": alert["first_seen_at"], "kind": "opened",
                            "text": f"opened ({alert['severity']})", "who": None, "detail": None}]
    for audit in audits:
        entries.append({"at": audit["occurred_at"], "kind": audit["action"].lower(),
                        "text": AUDIT_WORDS.get(audit["action"], audit["action"]), "who": audit["actor"],
                        "detail": audit["comment"]})
    for note in notes:
        entries.append({"at": note["created_at"], "kind": "notification", "note": note,
                        "text": f"{note['transition']} notification", "who": None, "detail": None})
    for step in alert.get("escalation", {}).get("steps_taken", []):
        entries.append({"at": step["taken_at"], "kind": "escalation",
                        "text": f"escalation step {step['step_no']}: {step['target']}", "who": None,
                        "detail": f"{step['notifications']} notifications"})
    manual = any(a["action"] == "ALERT_RESOLVE" for a in audits)
    if alert.get("resolved_at") and not manual:
        cleared_by = (alert.get("context") or {}).get("cleared_by")
        entries.append({"at": alert["resolved_at"], "kind": "alert_resolve",
                        "text": "resolved (the condition cleared)", "who": cleared_by, "detail": None})
    entries.sort(key=lambda e: e["at"])
    return entries


def destinations_page(app, names: NameBook, tested: Optional[str]) -> dict:
    """Every destination with its health; `tested`: a test send's notification id to report."""
    from engine.notifications import show_notification

    names.refresh_if_stale()
    with app.databases.begin("notify") as conn:
        rows = [with_names(names, d) for d in list_destinations(conn)]
    test = None
    if tested:
        try:
            test = show_notification(app, uuid.UUID(tested))
        except (ValueError, BadInput):
            test = None
        if test is not None and test.get("transition") != "test":
            test = None
    return {"destinations": rows, "test": test}


def send_test(app, destination_id: str) -> str:
    """A test send as `notifyctl destinations test` makes it; returns its notification id."""
    from engine.testsend import send_test_notification

    return str(send_test_notification(app, destination_id).notification_id)


def status_page(app) -> dict:
    return collect_status(app)


# ------------------------------------------------------------------------------- silences

# Expired silences shown (collapsed) under the current ones: those that ended this recently.
RECENTLY_EXPIRED = timedelta(days=7)
EXPIRED_SHOWN = 50
# The duration field's suggestions; any duration `notifyctl silence add --for` takes is accepted.
SILENCE_DURATIONS = ("30m", "1h", "2h", "4h", "1d")
SILENCE_FORM_FIELDS = ("tenant", "kind", "severity", "base", "duration", "starts_at", "comment")
SILENCE_FIELD_LABELS = {"tenant": "Tenant", "kind": "Kind", "severity": "Severity", "base": "Base",
                        "matchers": "Matchers", "duration": "Duration", "starts_at": "Starts at",
                        "comment": "Comment"}
# The CLI's flags in engine.silences' messages, as the form's fields.
_SILENCE_FLAGS = {"--match": "matchers", "--for": "duration", "--until": "duration", "--starts-at": "starts_at",
                  "--comment": "comment"}
_MATCH_WORDS = {(False, True): "is", (False, False): "is not", (True, True): "matches",
                (True, False): "does not match"}


class SilenceFormError(BadInput):
    """Bad input in the add-silence form: `field` names the form field it is about."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{SILENCE_FIELD_LABELS[field]}: {message}")
        self.field = field


def silence_rows(app, names: NameBook) -> dict:
    """Active silences (ending soonest first), pending ones (starting soonest first), and those
    that ended within RECENTLY_EXPIRED (latest first), each with its matchers in words."""
    names.refresh_if_stale()
    now = app.clock.now()
    current = engine_silences.list_silences(app, states=("active", "pending"))
    ended = [s for s in engine_silences.list_silences(app, states=("expired",), limit=EXPIRED_SHOWN * 4)
             if s["ended_at"] >= now - RECENTLY_EXPIRED]
    ended.sort(key=lambda s: s["ended_at"], reverse=True)
    shown = lambda rows: [{**s, "matcher_words": matcher_words(names, s["matchers"])} for s in rows]  # noqa: E731
    return {"active": shown(sorted((s for s in current if s["state"] == "active"), key=lambda s: s["ended_at"])),
            "pending": shown(sorted((s for s in current if s["state"] == "pending"), key=lambda s: s["starts_at"])),
            "expired": shown(ended[:EXPIRED_SHOWN]), "recent_days": RECENTLY_EXPIRED.days}


def matcher_words(names: NameBook, matchers: list[dict]) -> list[dict]:
    """`tenant is Acme Corp`: each matcher's label, operator in words, and value (a tenant's or
    base's name where the name book knows it; the id stays in `value`)."""
    words = []
    for m in matchers:
        regex, equal = m.get("isRegex", False), m.get("isEqual", True)
        shown = names.get(m["value"]) if m["name"] in ("tenant", "base") and not regex else None
        words.append({"label": m["name"], "op": _MATCH_WORDS[(regex, equal)], "value": m["value"], "name": shown})
    return words


def _id_field(names: NameBook, field: str, value: str) -> str:
    """A tenant or base: its id, or a name the console shows for exactly one id."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        pass
    found = names.ids_named(value)
    if len(found) == 1:
        return found[0]
    if found:
        raise SilenceFormError(field, f"the name {value!r} is shown for {len(found)} ids; give the {field} id")
    raise SilenceFormError(field, f"not a {field} id (a UUID) nor a {field} name the console knows: {value[:80]!r}")


def add_silence_from_form(app, names: NameBook, form: dict[str, str], *, actor: str) -> uuid.UUID:
    """The add-silence form, checked field by field, then `notifyctl silence add` (engine.silences:
    the same checks, audit row and suppression of what is queued). Nothing is written on bad input."""
    from detectors import ALL_KINDS

    names.refresh_if_stale()
    matchers: list[engine_silences.Matcher] = []
    for field in ("tenant", "kind", "severity", "base"):
        value = form.get(field, "")
        if not value:
            continue
        if field in ("tenant", "base"):
            value = _id_field(names, field, value)
        elif field == "kind" and value not in ALL_KINDS:
            raise SilenceFormError(field, f"unknown alert kind {value[:80]!r}")
        elif field == "severity" and value not in SEVERITIES:
            raise SilenceFormError(field, f"expected one of {', '.join(SEVERITIES)}, got {value[:80]!r}")
        matchers.append(engine_silences.Matcher(field, value))
    if not matchers:
        raise SilenceFormError("matchers", "give at least one of tenant, kind, severity or base "
                                           "(a silence of everything is not allowed)")
    if not form.get("duration"):
        raise SilenceFormError("duration", "say how long, such as 2h, 30m or 1d")
    if not form.get("comment"):
        raise SilenceFormError("comment", "say why (kept with the silence and in the audit row)")
    try:
        duration = engine_silences.parse_for(form["duration"])
        starts_at = (engine_silences.parse_time(form["starts_at"], where="--starts-at")
                     if form.get("starts_at") else None)
        return engine_silences.add_silence(app, matchers, starts_at=starts_at, duration=duration,
                                           comment=form["comment"], actor=actor)
    except SilenceFormError:
        raise
    except BadInput as exc:
        raise _form_error(exc) from None


def _form_error(exc: BadInput) -> BadInput:
    """engine.silences' message (`--match: tenant: unknown tenant ...`) as the form's field."""
    if isinstance(exc, NotFound):
        return exc
    head, sep, rest = str(exc).partition(": ")
    field = _SILENCE_FLAGS.get(head) if sep else None
    if field is None:
        return SilenceFormError("matchers", str(exc))
    if field == "matchers":
        label, sep, detail = rest.partition(": ")
        if sep and label in ("tenant", "kind", "severity", "base"):
            return SilenceFormError(label, detail)
    return SilenceFormError(field, rest)
