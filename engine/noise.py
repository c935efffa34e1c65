"""Noise control (issue 15, docs/NOISE.md): grouping, digests, rate limits and quiet hours.

The planner decides how each new notification row starts (engine/sql/planner.sql, `shaped` and
`started`): queued at once, or `held` with a held_reason and a release_at. This module's release
step (`release_held`, engine/sql/noise.sql) turns every group with a due member into one message:
a group of one is queued itself, a larger group becomes one notification row of transition
'group' (no alert) whose members are marked `grouped` with message_id = its id. Nothing is
dropped: every row ends queued (then sent, failed or skipped), grouped into a message, or still
held with its reason.

It runs in the planner's transaction right after planning (so the transitions of one planning
pass, such as ten bases crossing 80 % in one detection pass, become one message even with
group_wait 0) and as notifyd's `release` job (jobs.release) for rows whose time came later.
Both hold the planner's transaction-level advisory lock, so several notifyd copies release a
group once.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, time
from typing import Optional

from sqlalchemy import Connection

from engine import metrics
from engine.config import Config, Duration
from engine.errors import BadInput, NotFound
from engine.queries import query

log = logging.getLogger(__name__)

ROUTE_PREFIX = "route:"
# group_key of rows held for a whole destination (one message each), not for their labels.
DESTINATION_GROUPS = ("digest", "quiet_hours", "rate_limit")


@dataclass
class ReleaseSummary:
    queued: int = 0        # held rows released alone, queued themselves
    messages: int = 0      # group messages made
    grouped: int = 0       # held rows carried by those messages
    rate_limited: int = 0  # held rows kept back by a rate limit


def planner_parameters(config: Config) -> dict:
    """The planner's noise-control parameters: per ops route its group settings, the tenant
    destinations' defaults, the rate limits (whether any applies) and the default time zone."""
    grouping = config.grouping
    routes = config.routes
    return dict(
        noise_route_keys=[ROUTE_PREFIX + r.name for r in routes],
        noise_group_waits=[float(grouping.group_wait if r.group_wait is None else r.group_wait) for r in routes],
        noise_group_intervals=[float(grouping.group_interval if r.group_interval is None else r.group_interval)
                               for r in routes],
        noise_group_bys=[",".join(grouping.group_by if r.group_by is None else r.group_by) for r in routes],
        noise_groupable=[r.channel != "webhook" or r.grouped_payload for r in routes],
        noise_dest_group_wait=float(grouping.destinations.group_wait),
        noise_dest_group_interval=float(grouping.destinations.group_interval),
        noise_dest_group_by=",".join(grouping.destinations.group_by),
        noise_dest_limit=config.rate_limits.destination.messages,
        noise_tenant_limit=config.rate_limits.tenant.messages,
        noise_timezone=config.messages.timezone,
    )


def release_held(conn: Connection, config: Config, now: datetime) -> ReleaseSummary:
    """Releases every group with a held member due at `now` (see the module doc). The caller's
    transaction must hold the planner's lock (engine.planner) or take it here first."""
    limits = config.rate_limits
    silenced = len(conn.execute(query("noise", "suppress_silenced_held"), dict(now=now)).all())
    if silenced:
        metrics.NOTIFICATIONS_SUPPRESSED.labels(reason="silence").inc(silenced)
    row = conn.execute(query("noise", "release_held"), dict(
        now=now, dest_limit=limits.destination.messages, dest_window=float(limits.destination.window),
        tenant_limit=limits.tenant.messages, tenant_window=float(limits.tenant.window))).one()
    summary = ReleaseSummary(queued=row.queued, messages=row.messages, grouped=row.grouped,
                             rate_limited=row.rate_limited)
    if summary.rate_limited:
        metrics.NOTIFICATIONS_HELD.labels(reason="rate_limit").inc(summary.rate_limited)
    if summary.queued or summary.messages:
        conn.execute(query("planner", "wake_dispatchers"))
    return summary


def release_job(app) -> ReleaseSummary:
    """notifyd's `release` job: one release step in its own transaction."""
    now = app.clock.now()
    with app.databases.begin("notify") as conn:
        conn.execute(query("planner", "lock_planner"))
        summary = release_held(conn, app.config, now)
    if summary.messages or summary.queued or summary.rate_limited:
        log.info("release: %d queued alone, %d group messages carrying %d, %d held back by rate limits",
                 summary.queued, summary.messages, summary.grouped, summary.rate_limited)
    return summary


# ---------------------------------------------------------------------- destination settings

DIGESTS = ("immediate", "hourly", "daily")
_CLOCK_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def parse_clock_time(value: str, *, where: str) -> time:
    match = _CLOCK_TIME.match(value.strip())
    if not match:
        raise BadInput(f"{where}: expected a local time HH:MM (such as 08:30), got {value!r}")
    return time(int(match.group(1)), int(match.group(2)))


def parse_quiet_hours(value: str, *, where: str = "--quiet-hours") -> Optional[tuple[time, time]]:
    """`22:00-07:00` (may span midnight), or `off`."""
    if value.strip().lower() == "off":
        return None
    start, sep, end = value.partition("-")
    if not sep:
        raise BadInput(f"{where}: expected START-END in local time (such as 22:00-07:00) or off, got {value!r}")
    window = parse_clock_time(start, where=where), parse_clock_time(end, where=where)
    if window[0] == window[1]:
        raise BadInput(f"{where}: the window starts and ends at the same time: {value!r}")
    return window


def parse_rate_limit(value: str, *, where: str = "--rate-limit") -> tuple[Optional[int], Optional[float]]:
    """`N/WINDOW` (10/1h): at most N messages per window; `off` (0 messages: no limit here);
    `default` (rate_limits.destination from config)."""
    text = value.strip().lower()
    if text == "default":
        return None, None
    if text == "off":
        return 0, None
    count, sep, window = text.partition("/")
    try:
        messages = int(count)
        seconds = float(Duration.parse(window)) if sep else None
    except ValueError:
        messages, seconds = -1, None
    if messages < 0 or not sep or not seconds:
        raise BadInput(f"{where}: expected N/WINDOW (such as 10/1h), off or default, got {value!r}")
    return messages, seconds


def set_destination_noise(conn: Connection, destination_id: str, *, digest: Optional[str] = None,
                          digest_at: Optional[str] = None, quiet_hours: Optional[str] = None,
                          rate_limit: Optional[str] = None, grouped_payload: Optional[bool] = None) -> None:
    """Sets a destination's noise control (`destinations add/update` flags); None leaves a setting
    as it is."""
    try:
        ident = uuid.UUID(destination_id)
    except ValueError:
        raise BadInput(f"ID: a destination id must be a UUID, got {destination_id!r}") from None
    if digest is not None and digest not in DIGESTS:
        raise BadInput(f"--digest: expected one of {', '.join(DIGESTS)}, got {digest!r}")
    at = parse_clock_time(digest_at, where="--digest-at") if digest_at is not None else None
    window = parse_quiet_hours(quiet_hours) if quiet_hours is not None else None
    limit = parse_rate_limit(rate_limit) if rate_limit is not None else (None, None)
    found = conn.execute(query("noise", "set_destination_noise"), dict(
        id=ident, digest=digest, digest_at=at, set_quiet=quiet_hours is not None,
        quiet_start=window[0] if window else None, quiet_end=window[1] if window else None,
        set_rate=rate_limit is not None, rate_limit_messages=limit[0], rate_limit_window=limit[1],
        grouped_payload=grouped_payload)).first()
    if found is None:
        raise NotFound(f"ID: no destination {destination_id}")
