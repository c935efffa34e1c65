"""Silences (issue 15, item 4): `notifyctl silence add | list | expire`, /v1/silences and
Alertmanager's /api/v2/silences, one implementation.

A silence holds Alertmanager-style matchers ({name, value, isRegex, isEqual}, stored as given) on
the labels tenant, kind, severity and base (any other name is read from the alert's
context.event.labels, as posted to /api/v2/alerts), from starts_at (later than now: a maintenance
window) until ends_at or until it is expired early. While it is in force the planner records the
notifications of the alerts it selects `suppressed` with suppressed_by = 'silence:<id>'
(engine/sql/planner.sql); alerts still open and not acked when it ends are notified once by the
plan tick (notify.silence_notices). Adding and expiring are audited in admin_log.admin_events
(SILENCE_ADD, SILENCE_EXPIRE), as ack is.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Optional

from sqlalchemy.exc import DBAPIError

from engine.alerts import _uuid_or_none, default_actor, parse_ack_for
from engine.config import SEVERITIES
from engine.errors import BadInput, NotFound
from engine.logwriter.redaction import Redactor
from engine.queries import query

LABELS = ("tenant", "kind", "severity", "base")
STATES = ("active", "pending", "expired")
MAX_COMMENT = 2000
MAX_MATCHERS = 32
# `name=value`, `name!=value`, `name=~regex`, `name!~regex` (Alertmanager's operators).
_MATCHER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$")


@dataclass(frozen=True)
class Matcher:
    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True

    def as_json(self) -> dict:
        return {"name": self.name, "value": self.value, "isRegex": self.is_regex, "isEqual": self.is_equal}

    def __str__(self) -> str:
        op = {(False, True): "=", (False, False): "!=", (True, True): "=~", (True, False): "!~"}[(self.is_regex,
                                                                                               self.is_equal)]
        return f"{self.name}{op}{self.value}"


def parse_match(values: list[str], *, where: str = "--match") -> list[Matcher]:
    """`--match tenant=T,kind=K` (the flag may repeat): the engine's four labels, each checked."""
    matchers = []
    for value in values:
        for part in value.split(","):
            if not part.strip():
                continue
            found = _MATCHER.match(part)
            if found is None:
                raise BadInput(f"{where}: expected KEY=VALUE (KEY one of {', '.join(LABELS)}), got {part.strip()!r}")
            name, op, text = found.groups()
            if name not in LABELS:
                raise BadInput(f"{where}: unknown key {name!r} (known: {', '.join(LABELS)})")
            matchers.append(Matcher(name, text, is_regex=op in ("=~", "!~"), is_equal=op in ("=", "=~")))
    if not matchers:
        raise BadInput(f"{where}: give at least one KEY=VALUE (keys: {', '.join(LABELS)})")
    return matchers


def check_matchers(conn, matchers: list[Matcher], *, where: str = "--match") -> None:
    """What a silence's matchers must be: known values for the engine's labels (a typo would
    silence nothing; a kind is known when the engine raises it or an alert has had it, such as a
    Prometheus alertname posted to /api/v2/alerts), regular expressions PostgreSQL compiles, and
    not all matching everything."""
    from detectors import ALL_KINDS

    if len(matchers) > MAX_MATCHERS:
        raise BadInput(f"{where}: at most {MAX_MATCHERS} matchers")
    for m in matchers:
        if m.is_regex or not m.is_equal:
            continue
        if m.name in ("tenant", "base"):
            try:
                uuid.UUID(m.value)
            except ValueError:
                raise BadInput(f"{where}: {m.name}: a {m.name} id must be a UUID, got {m.value!r}") from None
        elif m.name == "kind" and m.value not in ALL_KINDS \
                and not conn.execute(query("silences", "kind_seen"), dict(kind=m.value)).scalar():
            raise BadInput(f"{where}: kind: unknown alert kind {m.value!r}: no alert has had it (the engine's kinds: "
                           f"{', '.join(ALL_KINDS)}; a Prometheus alertname counts once an alert of it was posted)")
        elif m.name == "severity" and m.value not in SEVERITIES:
            raise BadInput(f"{where}: severity: expected one of {', '.join(SEVERITIES)}, got {m.value!r}")
    for m in matchers:
        if "\x00" in m.value or "\x00" in m.name:
            raise BadInput(f"{where}: {m.name}: NUL characters are not allowed")
    params = dict(values=[m.value for m in matchers], regex=[m.is_regex for m in matchers],
                  equal=[m.is_equal for m in matchers])
    try:
        with conn.begin_nested():
            rows = conn.execute(query("silences", "check_matchers"), params).all()
    except DBAPIError as exc:
        # Name the bad one: try each on its own (rare: only when an expression is refused).
        for m in matchers:
            if not m.is_regex:
                continue
            try:
                with conn.begin_nested():
                    conn.execute(query("silences", "check_matchers"), dict(values=[m.value], regex=[True], equal=[True]))
            except DBAPIError as one:
                detail = str(getattr(one.orig, "diag", None) and one.orig.diag.message_primary or one.orig)
                raise BadInput(f"{where}: {m.name}: not a valid regular expression {m.value!r}: {detail}") from None
        raise BadInput(f"{where}: a regular expression was refused: {str(exc.orig).splitlines()[0]}") from None
    if all(r.matches_empty for r in rows):
        raise BadInput(f"{where}: every matcher also matches an empty label, so the silence would hold down "
                       "every alert; add one that names something")


def check_tenants(conn, matchers: list[Matcher], *, where: str = "--match") -> None:
    for m in matchers:
        if m.name == "tenant" and m.is_equal and not m.is_regex:
            if not conn.execute(query("silences", "known_tenant"), dict(tenant_id=m.value)).scalar():
                raise BadInput(f"{where}: tenant: unknown tenant {m.value} (no alert, destination or snapshot of it)")


def parse_time(value: str, *, where: str) -> datetime:
    """An ISO 8601 / RFC 3339 time; without a zone it is UTC."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadInput(f"{where}: expected a time such as 2026-12-01T02:00:00Z, got {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def parse_for(value: str) -> float:
    """`silence add --for DURATION`, read as `ack --for` is."""
    return parse_ack_for(value)


@dataclass
class SilenceWindow:
    starts_at: datetime
    ends_at: datetime


def window(now: datetime, *, starts_at: Optional[datetime], ends_at: Optional[datetime],
           duration: Optional[float], where_end: str = "--until") -> SilenceWindow:
    start = starts_at or now
    if duration is not None:
        try:
            end = start + timedelta(seconds=duration)
        except OverflowError:
            raise BadInput("--for: too long") from None
    elif ends_at is not None:
        end = ends_at
    else:
        raise BadInput("--for: give --for DURATION or --until TIME")
    if end <= start:
        raise BadInput(f"{where_end}: the silence must end after it starts ({start.isoformat()})")
    if end <= now:
        raise BadInput(f"{where_end}: the silence would end in the past ({end.isoformat()})")
    return SilenceWindow(start, end)


def add_silence(app, matchers: list[Matcher], *, starts_at: Optional[datetime] = None,
                ends_at: Optional[datetime] = None, duration: Optional[float] = None, comment: Optional[str],
                actor: Optional[str] = None, created_by: Optional[str] = None, where: str = "--match",
                check_tenant: bool = True) -> uuid.UUID:
    """Creates a silence (audited: SILENCE_ADD, by `actor`) and returns its id. `created_by`
    (default: the actor) is the silence's author as Alertmanager's createdBy says it. One in
    force at once also suppresses the rows of its alerts already queued."""
    # Optional, as CONTRACT.md has it (Alertmanager's own API requires one: engine.api.silences).
    comment = comment if comment and comment.strip() else ""
    if "\x00" in comment:
        raise BadInput("--comment: NUL characters are not allowed")
    if len(comment) > MAX_COMMENT:
        raise BadInput(f"--comment: at most {MAX_COMMENT} characters")
    now = app.clock.now()
    span = window(now, starts_at=starts_at, ends_at=ends_at, duration=duration)
    actor = actor or default_actor()
    comment = Redactor(app.config.logs.redaction).text(comment) if comment else ""
    with app.databases.begin("notify") as conn:
        check_matchers(conn, matchers, where=where)
        if check_tenant:
            check_tenants(conn, matchers, where=where)
        ident = conn.execute(query("silences", "insert_silence"), dict(
            matchers=json.dumps([m.as_json() for m in matchers]), starts_at=span.starts_at, ends_at=span.ends_at,
            now=now, created_by=created_by or actor, comment=comment)).scalar_one()
        suppressed = 0
        if span.starts_at <= now:
            suppressed = len(conn.execute(query("silences", "suppress_queued"), dict(id=ident, now=now)).all())
        _audit(app, conn, now=now, actor=actor, action="SILENCE_ADD", silence_id=ident, matchers=matchers,
               comment=comment or None, diff={"after": {"matchers": [m.as_json() for m in matchers],
                                                "starts_at": span.starts_at.isoformat(),
                                                "ends_at": span.ends_at.isoformat()},
                                      "queued_suppressed": suppressed})
    return ident


def expire_silence(app, silence_id: str, *, actor: Optional[str] = None, where: str = "ID") -> bool:
    """Ends a silence now (audited: SILENCE_EXPIRE); False when it had already ended. NotFound
    when there is none."""
    ident = parse_silence_id(silence_id, where=where)
    now = app.clock.now()
    actor = actor or default_actor()
    with app.databases.begin("notify") as conn:
        before = conn.execute(query("silences", "lock_silence"), dict(id=ident)).first()
        if before is None:
            raise NotFound(f"{where}: no silence with id {ident}")
        if conn.execute(query("silences", "expire_silence"), dict(id=ident, now=now, actor=actor)).first() is None:
            return False
        matchers = [Matcher(m["name"], m["value"], m.get("isRegex", False), m.get("isEqual", True))
                    for m in before.matchers]
        _audit(app, conn, now=now, actor=actor, action="SILENCE_EXPIRE", silence_id=ident, matchers=matchers,
               comment=None, diff={"before": {"ends_at": before.ends_at.isoformat(),
                                              "starts_at": before.starts_at.isoformat()},
                                   "after": {"expired_at": now.isoformat()}})
    return True


def parse_silence_id(value: str, *, where: str = "ID") -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise BadInput(f"{where}: not a silence id (a UUID): {value!r}") from None


def _audit(app, conn, *, now, actor, action, silence_id, matchers, comment, diff) -> None:
    tenants = [m.value for m in matchers if m.name == "tenant" and m.is_equal and not m.is_regex]
    audit = dict(now=now, actor_admin_id=_uuid_or_none(actor), tenant_id=tenants[0] if len(tenants) == 1 else None,
                 action=action, target_id=str(silence_id), comment=comment,
                 diff=json.dumps({**diff, "actor": actor}))
    # As for ack: the audit row commits first when admin_log is its own database.
    if app.databases.urls["admin_log"] == app.databases.urls["notify"]:
        conn.execute(query("silences", "insert_audit_event"), audit)
    else:
        with app.databases.begin("admin_log") as admin:
            admin.execute(query("silences", "insert_audit_event"), audit)


def list_silences(app, *, states: tuple[str, ...] = STATES, limit: Optional[int] = None,
                  after: Optional[tuple[datetime, uuid.UUID]] = None, silence_id: Optional[uuid.UUID] = None
                  ) -> list[dict]:
    """Newest first; `after` (the last row's created_at and id) continues a walk."""
    with app.databases.begin("notify") as conn:
        rows = conn.execute(query("silences", "silences_page"), dict(
            now=app.clock.now(), states=list(states), limit=limit, id=silence_id,
            after_created_at=after[0] if after else None, after_id=after[1] if after else None)).mappings().all()
    return [_shown(dict(r)) for r in rows]


def get_silence(app, silence_id: str, *, where: str = "ID") -> dict:
    ident = parse_silence_id(silence_id, where=where)
    found = list_silences(app, silence_id=ident)
    if not found:
        raise NotFound(f"{where}: no silence with id {ident}")
    return found[0]


def _shown(row: dict) -> dict:
    row.pop("ended_noticed_at", None)
    row["match"] = ",".join(str(Matcher(m["name"], m["value"], m.get("isRegex", False), m.get("isEqual", True)))
                            for m in row["matchers"])
    return row
