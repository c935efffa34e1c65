"""Alert lifecycle outside the detectors: operators' ack and resolve (audited in
admin_log.admin_events), event-driven alerts (raise / clear), and reading alerts.

Transactions that change notify.alerts live in exactly these places: engine.detect.run_detection
(one per pass), and here in ack_alert, resolve_alert, apply_events (raise_event, clear_event, the
API's batches) and expire_acks
(the plan tick: acks whose `--for` ran out). Each calls
engine.planner.plan_transitions_of_this_transaction just before its commit, inside its
transaction, so the new transitions become notification rows atomically with them (DESIGN.md: a
transition is planned once, in the same transaction).
"""

from __future__ import annotations

import getpass
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Optional

import orjson

from engine import metrics
from engine.config import SEVERITIES, Duration, RedactionConfig
from engine.destinations import masked_target
from engine.errors import BadInput, NotFound
from engine.escalation import ack_timeout_for, escalation_view
from engine.logwriter.redaction import Redactor
from engine.planner import plan_transitions_of_this_transaction
from engine.queries import query

ALERT_STATUSES = ("open", "ack", "resolved")

# ------------------------------------------------------------------------------------- reading


def parse_alert_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise BadInput(f"ALERT_ID: not an alert id (a UUID): {value!r}") from None


def _snapshot_kinds() -> list[str]:
    from detectors import SNAPSHOT_DETECTORS

    return sorted({d.kind for d in SNAPSHOT_DETECTORS})


MAX_KIND = 200   # the longest kind an alert may carry (engine.api.routes, POST /api/v2/alerts)


def _alert_filters(status: Optional[str], tenant_id: Optional[str], kind: Optional[str]) -> tuple:
    from detectors import ALL_KINDS

    if status is not None and status not in ALERT_STATUSES:
        raise BadInput(f"--status: expected one of {', '.join(ALERT_STATUSES)}, got {status!r}")
    # Any kind a posted alert may carry (a Prometheus alertname), not only the engine's own: a kind
    # no alert has simply matches none.
    if kind is not None and (not 1 <= len(kind) <= MAX_KIND or not kind.isprintable()):
        raise BadInput(f"--kind: a kind is 1-{MAX_KIND} printable characters (the engine's: {', '.join(ALL_KINDS)}), "
                       f"got {kind[:60]!r}")
    tenant = None
    if tenant_id is not None:
        try:
            tenant = uuid.UUID(tenant_id)
        except ValueError:
            raise BadInput(f"--tenant: a tenant id must be a UUID, got {tenant_id!r}") from None
    return status, tenant, kind


def list_alerts(app, *, status: Optional[str] = None, tenant_id: Optional[str] = None,
                kind: Optional[str] = None, limit: Optional[int] = None, severity: Optional[str] = None) -> list[dict]:
    status, tenant, kind = _alert_filters(status, tenant_id, kind)
    if severity is not None and severity not in SEVERITIES:
        raise BadInput(f"--severity: expected one of {', '.join(SEVERITIES)}, got {severity!r}")
    with app.databases.begin("notify") as conn:
        rows = conn.execute(query("alerts", "list_alerts"), {"id": None, "status": status, "tenant_id": tenant, "kind": kind,
                                                             "severity": severity, "snapshot_kinds": _snapshot_kinds(),
                                                             "limit": limit}).mappings().all()
    return [dict(r) for r in rows]


def list_alerts_page(app, *, status: Optional[str] = None, tenant_id: Optional[str] = None,
                     kind: Optional[str] = None, limit: int,
                     after: Optional[tuple[datetime, uuid.UUID]] = None) -> list[dict]:
    """Alerts newest first by (created_at, id), both immutable, so a walk with `after` (the last
    row's pair) sees every alert that existed when it began exactly once (the HTTP API's pages)."""
    status, tenant, kind = _alert_filters(status, tenant_id, kind)
    with app.databases.begin("notify") as conn:
        rows = conn.execute(query("alerts", "alerts_page"), {
            "status": status, "tenant_id": tenant, "kind": kind, "snapshot_kinds": _snapshot_kinds(),
            "limit": limit, "after_created_at": after[0] if after else None,
            "after_id": after[1] if after else None}).mappings().all()
    return [dict(r) for r in rows]


def get_alert(app, alert_id: str) -> dict:
    """The alert with its notifications; BadInput when no alert has that id."""
    ident = parse_alert_id(alert_id)
    with app.databases.begin("notify") as conn:
        row = conn.execute(query("alerts", "list_alerts"),
                           {"id": ident, "status": None, "tenant_id": None, "kind": None, "severity": None,
                            "snapshot_kinds": _snapshot_kinds(), "limit": None}).mappings().first()
        if row is None:
            raise NotFound(f"ALERT_ID: no alert with id {ident}")
        alert = dict(row)
        notes = conn.execute(query("alerts", "alert_notifications"),
                             {"tenant_id": alert["tenant_id"], "id": ident}).mappings().all()
        from engine.accounting import describe

        notes = describe(conn, [dict(n) for n in notes])
        taken = conn.execute(query("alerts", "escalation_steps_taken"), {
            "tenant_id": alert["tenant_id"], "id": ident,
            "episode": int((alert["context"] or {}).get("reopen_count") or 0)}).mappings().all()
    alert["escalation"] = escalation_view(app.config, alert, [dict(t) for t in taken], app.clock.now())
    # Recipients as every listing shows them (a Slack incoming-webhook URL is a credential).
    alert["notifications"] = [{**n, "recipient": masked_target(n["recipient"])} if "recipient" in n else dict(n)
                              for n in notes]
    return alert


# --------------------------------------------------------------------------- operator actions


@dataclass
class ActionResult:
    alert_id: uuid.UUID
    changed: bool
    message: str
    before: Optional[str] = None
    after: Optional[str] = None
    transition: Optional[str] = None    # events: opened, reopened, refreshed, resolved, or None (no change)
    dedupe_key: Optional[str] = None


def default_actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers) and no LOGNAME/USER
        return "unknown"


def _operator_action(app, alert_id: str, *, action: str, statement: str, verb: str, actor: Optional[str],
                     comment: Optional[str], ack_for: Optional[float] = None,
                     in_transaction: Optional[Callable[[Any], None]] = None) -> ActionResult:
    ident = parse_alert_id(alert_id)
    actor = actor or default_actor()
    now = app.clock.now()
    with app.databases.begin("notify") as conn:
        before = conn.execute(query("alerts", "lock_alert"), {"id": ident}).first()
        if before is None:
            raise NotFound(f"ALERT_ID: no alert with id {ident}")
        if in_transaction is not None:
            in_transaction(conn)   # e.g. a message link's nonce: used up with the change, or nothing changes
        # An ack lapses after --for, else after escalation.ack_timeout of the alert's severity.
        ack_for = ack_for if ack_for is not None else ack_timeout_for(app.config, before.severity)
        after = conn.execute(query("alerts", statement), {
            "tenant_id": before.tenant_id, "id": ident, "now": now, "actor": actor,
            "ack_expires_at": now + timedelta(seconds=ack_for) if ack_for else None}).first()
        if after is None:
            return ActionResult(ident, False, f"alert {ident} is already {before.status}; nothing to {verb}",
                                before.status, before.status)
        audit = {
            "now": now, "actor_admin_id": _uuid_or_none(actor), "tenant_id": before.tenant_id,
            "base_id": before.base_id, "action": action, "target_id": str(ident),
            # Free text goes through the log tables' redaction like every other admin_log write
            # (an operator pasting a token or a customer's address into --comment).
            "comment": Redactor(app.config.logs.redaction).text(comment) if comment else comment,
            "diff": json.dumps({"before": {"status": before.status},
                                "after": {"status": after.status, **_ack_end(after)}, "actor": actor}),
        }
        # The audit row commits first (in its own section's database when that is separate): an
        # action that is audited but failed to commit is better than one that left no trace.
        if app.databases.urls["admin_log"] == app.databases.urls["notify"]:
            conn.execute(query("alerts", "insert_audit_event"), audit)
        else:
            with app.databases.begin("admin_log") as admin:
                admin.execute(query("alerts", "insert_audit_event"), audit)
        plan_transitions_of_this_transaction(conn, app.config, now)
    metrics.ALERT_TRANSITIONS.labels(kind=before.kind, transition=after.transition).inc()
    until = _ack_end(after).get("ack_expires_at")
    return ActionResult(ident, True, f"alert {ident}: {before.status} -> {after.status}"
                        + (f" until {until}" if until else ""), before.status, after.status)


def _ack_end(row) -> dict:
    expires = getattr(row, "ack_expires_at", None)
    return {"ack_expires_at": expires.isoformat()} if expires else {}


def parse_ack_for(value: Optional[str]) -> Optional[float]:
    """`ack --for DURATION`: how long the ack lasts (None: the configured default, if any)."""
    if value is None:
        return None
    try:
        seconds = float(Duration.parse(value))
    except ValueError as exc:
        raise BadInput(f"--for: {exc}") from None
    if seconds <= 0:
        raise BadInput("--for: must be longer than 0s")
    return seconds


def ack_alert(app, alert_id: str, *, actor: Optional[str] = None, comment: Optional[str] = None,
              ack_for: Optional[float] = None, in_transaction: Optional[Callable[[Any], None]] = None) -> ActionResult:
    """`ack_for` seconds: the ack lapses then (expire_acks); None: escalation.ack_timeout's default.
    `in_transaction(conn)` runs in the action's transaction, after the alert is locked; what it
    raises rolls the action back (engine.action_links uses a link's nonce so)."""
    result = _operator_action(app, alert_id, action="ALERT_ACK", statement="ack_alert", verb="ack",
                              actor=actor, comment=comment, ack_for=ack_for, in_transaction=in_transaction)
    if not result.changed and result.before == "resolved":
        result.message = f"alert {result.alert_id} is resolved; nothing to ack"
    return result


def resolve_alert(app, alert_id: str, *, actor: Optional[str] = None, comment: Optional[str] = None,
                  in_transaction: Optional[Callable[[Any], None]] = None) -> ActionResult:
    return _operator_action(app, alert_id, action="ALERT_RESOLVE", statement="resolve_alert", verb="resolve",
                            actor=actor, comment=comment, in_transaction=in_transaction)


ENGINE_ACTOR = "notify-engine"


def expire_acks(app, now: Optional[datetime] = None) -> int:
    """The plan tick's first step: every ack whose time ran out on an alert still acked (its
    condition holds) is re-opened as `ack_expired`, audited (ALERT_ACK_EXPIRED, actor
    notify-engine) and its notifications planned, in one transaction. Returns how many."""
    now = now or app.clock.now()
    with app.databases.begin("notify") as conn:
        rows = conn.execute(query("alerts", "expire_acks"), {"now": now}).all()
        if not rows:
            return 0
        audits = [{
            "now": now, "actor_admin_id": None, "tenant_id": r.tenant_id, "base_id": r.base_id,
            "action": "ALERT_ACK_EXPIRED", "target_id": str(r.id), "comment": None,
            "diff": json.dumps({"before": {"status": "ack", "acked_by": r.acked_by,
                                           "ack_expires_at": r.ack_expires_at.isoformat()},
                                "after": {"status": "open"}, "actor": ENGINE_ACTOR}),
        } for r in rows]
        # As for operators' actions: the audit rows commit first when admin_log is elsewhere.
        if app.databases.urls["admin_log"] == app.databases.urls["notify"]:
            conn.execute(query("alerts", "insert_audit_event"), audits)
        else:
            with app.databases.begin("admin_log") as admin:
                admin.execute(query("alerts", "insert_audit_event"), audits)
        plan_transitions_of_this_transaction(conn, app.config, now, tenants=sorted({r.tenant_id for r in rows}))
    for r in rows:
        metrics.ALERT_TRANSITIONS.labels(kind=r.kind, transition="ack_expired").inc()
    return len(rows)


def _uuid_or_none(value: str) -> Optional[uuid.UUID]:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


# ------------------------------------------------------------------------------ event alerts

def redact_context(value: Any, rules: Optional[RedactionConfig] = None) -> Any:
    """An event's context as stored (it is shown to operators and sent in webhooks): the log
    tables' redaction (`logs.redaction`), keys and values alike."""
    return Redactor(rules).payload(value)


def _event_target(kind: str, tenant_id: str, base_id: Optional[str]):
    from detectors import EVENT_KINDS

    event_kind = EVENT_KINDS.get(kind)
    if event_kind is None:
        raise BadInput(f"--kind: {kind!r} is not an event kind (known: {', '.join(EVENT_KINDS)})")
    try:
        tenant = uuid.UUID(str(tenant_id))
    except ValueError:
        raise BadInput(f"--tenant: a tenant id must be a UUID, got {tenant_id!r}") from None
    base = None
    if base_id is not None:
        try:
            base = uuid.UUID(str(base_id))
        except ValueError:
            raise BadInput(f"--base: a base id must be a UUID, got {base_id!r}") from None
    return event_kind, tenant, base


MAX_DEDUP_KEY = 255


def event_dedupe_key(event_kind, base: Optional[uuid.UUID], dedup_key: Optional[str]) -> str:
    """The alert's dedupe_key for an event. Without a caller's dedup key (or with the kind's own
    key, as an earlier answer returned it) it is the kind's key for the base, the alert that
    `notifyctl event raise` names; a caller's key names an alert of its own (as PagerDuty's
    dedup_key does), kept apart by the `:dedup=` suffix."""
    natural = event_kind.dedupe_key(base)
    if dedup_key is None or dedup_key == natural:
        return natural
    if not isinstance(dedup_key, str) or not 0 < len(dedup_key) <= MAX_DEDUP_KEY \
            or any(ord(c) < 32 or ord(c) == 127 for c in dedup_key):
        raise BadInput(f"--dedup-key: 1-{MAX_DEDUP_KEY} printable characters, got {dedup_key!r:.60}")
    return f"{natural}:dedup={dedup_key}"


def raise_event(app, tenant_id: str, kind: str, *, base_id: Optional[str] = None,
                context: Optional[dict] = None, dedup_key: Optional[str] = None,
                actor: Optional[str] = None, severity: Optional[str] = None) -> ActionResult:
    """Records an event-driven condition as an open alert (or re-opens / refreshes it). Idempotent
    on the dedupe key: raising it again while it is open or acked changes only last_seen_at and
    the context (`transition` is then `refreshed`). `severity` replaces the kind's for a new
    alert (a sender that grades its own alerts, as Prometheus rules do)."""
    change = event_change(tenant_id, kind, base_id=base_id, context=context, dedup_key=dedup_key, actor=actor,
                          severity=severity)
    return event_result(change, apply_events(app, [change])[0])


def clear_event(app, tenant_id: str, kind: str, *, base_id: Optional[str] = None,
                dedup_key: Optional[str] = None, actor: Optional[str] = None) -> ActionResult:
    """The event-driven condition is over: its alert resolves (a no-op that says so if none is open)."""
    change = event_change(tenant_id, kind, base_id=base_id, dedup_key=dedup_key, actor=actor, resolve=True)
    return event_result(change, apply_events(app, [change])[0])


def event_change(tenant_id: str, kind: str, *, base_id: Optional[str] = None, context: Optional[dict] = None,
                 dedup_key: Optional[str] = None, actor: Optional[str] = None, severity: Optional[str] = None,
                 resolve: bool = False) -> "EventChange":
    """A raise (or, with `resolve`, a clear) of an event alert, checked (BadInput naming the bad
    argument), for apply_events."""
    event_kind, tenant, base = _event_target(kind, tenant_id, base_id)
    if severity is not None and severity not in SEVERITIES:
        raise BadInput(f"--severity: expected one of {', '.join(SEVERITIES)}, got {severity!r}")
    if context is not None and not isinstance(context, dict):
        raise BadInput("--context: expected a JSON object")
    dedupe_key = event_dedupe_key(event_kind, base, dedup_key)
    if resolve:
        return EventChange(tenant, event_kind.kind, dedupe_key, resolve=True, actor=actor)
    return EventChange(tenant, event_kind.kind, dedupe_key, base_id=base, severity=severity or event_kind.severity,
                       context=context, actor=actor)


def event_result(change: "EventChange", outcome: "EventOutcome") -> ActionResult:
    """What raise_event and clear_event answer for a change apply_events applied."""
    if not change.resolve:
        return ActionResult(outcome.alert_id, True, f"{change.kind} alert {outcome.alert_id} is {outcome.status} "
                            f"({outcome.stored_transition})", after=outcome.status, transition=outcome.transition,
                            dedupe_key=change.dedupe_key)
    if outcome.transition is None:
        # before=None: no such alert was ever raised (a mistyped id?), not merely already resolved.
        return ActionResult(outcome.alert_id or uuid.UUID(int=0), False,
                            f"no unresolved {change.kind} alert for tenant {change.tenant_id}; nothing to clear",
                            outcome.status, outcome.status, dedupe_key=change.dedupe_key)
    return ActionResult(outcome.alert_id, True, f"{change.kind} alert {outcome.alert_id} resolved", "open",
                        "resolved", transition="resolved", dedupe_key=change.dedupe_key)


@dataclass
class EventChange:
    """One event alert to raise (or, with `resolve`, to clear) in a batch (apply_events). The
    caller has checked it: tenant and base are UUIDs, severity one of SEVERITIES."""

    tenant_id: uuid.UUID
    kind: str
    dedupe_key: str
    resolve: bool = False
    base_id: Optional[uuid.UUID] = None
    severity: Optional[str] = None
    context: Optional[dict] = None      # the sender's; stored redacted under context.event
    actor: Optional[str] = None         # raised_by / cleared_by; None: apply_events' actor


@dataclass
class EventOutcome:
    alert_id: Optional[uuid.UUID]       # None: a clear of an alert never raised
    status: Optional[str]               # the alert's status after the batch (None: never raised)
    transition: Optional[str]           # opened, reopened, refreshed, resolved; None: nothing changed
    stored_transition: Optional[str] = None   # the alert's transition column (refreshed keeps the last one)


def _json_text(value: Any) -> str:
    """A batch's rows as one JSON text: orjson (a batch of 1,000 alerts' contexts is most of the
    encoding work of an ingest), json for what orjson refuses (an integer past 64 bits)."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value)


_CONTEXT_REDACTOR: tuple[Optional[RedactionConfig], Optional[Redactor]] = (None, None)


def _context_redactor(config: RedactionConfig) -> Redactor:
    """One redactor per redaction config (a reload brings a new one), kept across batches: its
    caches then serve the strings senders repeat (Prometheus resends every firing alert)."""
    global _CONTEXT_REDACTOR
    cached_config, redactor = _CONTEXT_REDACTOR
    if cached_config is not config or redactor is None:
        redactor = Redactor(config)
        _CONTEXT_REDACTOR = (config, redactor)
    return redactor


def apply_events(app, changes: list[EventChange], *, actor: Optional[str] = None) -> list[EventOutcome]:
    """Raises and clears a batch of event alerts in one transaction: one upsert for the raises,
    one update for the clears, then the planner, so the batch's transitions and their
    notifications commit together (or not at all). Returns one outcome per change, in order. An
    alert named twice in the batch takes its last change (as if applied in order, the earlier
    one's own transition is not planned); both get the last one's outcome."""
    if not changes:
        return []
    now = app.clock.now()
    last: dict[tuple, EventChange] = {}
    for change in changes:
        key = (change.tenant_id, change.dedupe_key)
        last.pop(key, None)   # re-insert: dict order is then the order of each alert's last change
        last[key] = change
    raises = [c for c in last.values() if not c.resolve]
    clears = [c for c in last.values() if c.resolve]
    redactor = _context_redactor(app.config.logs.redaction)
    raised_at = now.isoformat()
    outcomes: dict[tuple, EventOutcome] = {}
    with app.databases.begin("notify") as conn:
        if raises:
            events = _json_text([{
                "tenant_id": str(c.tenant_id), "base_id": str(c.base_id) if c.base_id else None, "kind": c.kind,
                "severity": c.severity, "dedupe_key": c.dedupe_key,
                "context": {"event": redactor.payload(c.context or {}), "raised_at": raised_at,
                            **({"raised_by": c.actor or actor} if c.actor or actor else {})}} for c in raises])
            for row in conn.execute(query("alerts", "raise_events"), {"now": now, "events": events}).all():
                outcomes[(row.tenant_id, row.dedupe_key)] = EventOutcome(
                    row.id, row.status, row.transition if row.transitioned else "refreshed", row.transition)
        if clears:
            keys = {"events": json.dumps([{"tenant_id": str(c.tenant_id), "dedupe_key": c.dedupe_key,
                                           "actor": c.actor or actor} for c in clears])}
            rows = conn.execute(query("alerts", "clear_events"), {**keys, "now": now}).all()
            for row in rows:
                outcomes[(row.tenant_id, row.dedupe_key)] = EventOutcome(row.id, row.status, "resolved", "resolved")
            if len(rows) < len(clears):
                for row in conn.execute(query("alerts", "event_alerts_status"), keys).all():
                    outcomes.setdefault((row.tenant_id, row.dedupe_key), EventOutcome(row.id, row.status, None))
        if any(o.transition not in (None, "refreshed") for o in outcomes.values()):
            plan_transitions_of_this_transaction(conn, app.config, now,
                                                 tenants=sorted({c.tenant_id for c in last.values()}))
    for change in last.values():
        outcome = outcomes.get((change.tenant_id, change.dedupe_key))
        if outcome is not None and outcome.transition not in (None, "refreshed"):
            metrics.ALERT_TRANSITIONS.labels(kind=change.kind, transition=outcome.transition).inc()
    never = EventOutcome(None, None, None)
    return [outcomes.get((c.tenant_id, c.dedupe_key), never) for c in changes]
