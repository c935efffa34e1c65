"""Escalation policies (config `escalation`): which reminder schedule and which escalation steps
apply to an alert, as parameters of the planner's single statement and as the schedule
`notifyctl show` prints. The planning itself runs in SQL (engine/sql/planner.sql).

The clock of reminders and steps starts at the alert's latest transition that left it open and
unacknowledged (opened, reopened, escalated, ack_expired): `transition_at`. The n-th reminder is
due at transition_at + the sum of the schedule's first n intervals, the last interval repeating.
Step k is due at transition_at + its `after`, while the alert is open and unacked, and is taken
once per episode (context.reopen_count: a resolved alert that re-opens escalates again).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Optional

from engine.config import SEVERITIES, Config, EscalationPolicyConfig

# The transitions that leave an alert open and unacknowledged: the clock of its reminders and steps.
UNACKED_OPEN_TRANSITIONS = ("opened", "reopened", "escalated", "reminder", "ack_expired")
ESCALATION_TRANSITION = "escalation"   # notifications.transition of a step's rows


@dataclass(frozen=True)
class Schedule:
    """What applies to one alert: reminder offsets from transition_at (cumulative seconds, the last
    interval repeating) and steps as (step_no, after seconds, target)."""

    policy_no: Optional[int]             # 1-based index in escalation.policies; None: no policy matched
    reminder_offsets: tuple[float, ...]
    steps: tuple[tuple[int, float, str], ...]

    def reminder_no_at(self, elapsed: float) -> int:
        """How many reminders are due after `elapsed` seconds (the SQL does the same)."""
        offsets = self.reminder_offsets
        if not offsets or elapsed < offsets[0]:
            return 0
        if elapsed >= offsets[-1]:
            last = offsets[-1] - (offsets[-2] if len(offsets) > 1 else 0.0)
            return len(offsets) + math.floor((elapsed - offsets[-1]) / last)
        return sum(1 for o in offsets if o <= elapsed)

    def reminder_offset(self, n: int) -> float:
        offsets = self.reminder_offsets
        if n <= len(offsets):
            return offsets[n - 1]
        last = offsets[-1] - (offsets[-2] if len(offsets) > 1 else 0.0)
        return offsets[-1] + (n - len(offsets)) * last


def _offsets(intervals: list[float]) -> tuple[float, ...]:
    total, offsets = 0.0, []
    for interval in intervals:
        total += float(interval)
        offsets.append(total)
    return tuple(offsets)


def _listed(value: Optional[str | list[str]]) -> list[str]:
    """A match key as a list (config may say `severity: critical` or `severity: [warn, critical]`)."""
    return [value] if isinstance(value, str) else list(value or [])


def _matches(policy: EscalationPolicyConfig, kind: str, severity: str) -> bool:
    kinds, severities = _listed(policy.match.kind), _listed(policy.match.severity)
    return (not kinds or kind in kinds) and (not severities or severity in severities)


def step_target(policy: EscalationPolicyConfig, index: int) -> str:
    target = policy.steps[index].notify
    return f"route:{target.route}" if target.route is not None else f"tag:{target.tag}"


def schedule_for(config: Config, kind: str, severity: str) -> Schedule:
    """The first policy matching the alert's kind and severity; else the fixed reminder interval."""
    fixed = _offsets([config.delivery.reminder_interval]) if config.delivery.reminder_interval > 0 else ()
    for number, policy in enumerate(config.escalation.policies, start=1):
        if _matches(policy, kind, severity):
            offsets = fixed if policy.reminders is None else _offsets(policy.reminders)
            steps = tuple((i + 1, float(s.after), step_target(policy, i)) for i, s in enumerate(policy.steps))
            return Schedule(number, offsets, steps)
    return Schedule(None, fixed, ())


def policy_parameters(config: Config) -> dict[str, Any]:
    """The policies as parallel arrays for unnest() (PostgreSQL arrays cannot be ragged). Policy
    numbers are 1-based in config order; the fixed `delivery.reminder_interval` is one more policy,
    last, for every alert no policy matched. Which policy an alert gets is decided here, per
    (kind, severity), so the statement finds it by a hash join instead of testing every policy
    against every open alert; kind '' stands for kinds not known here (only policies that name no
    kind match them)."""
    from detectors import ALL_KINDS  # here: detectors import engine modules that import config

    policies = config.escalation.policies
    params: dict[str, list] = dict(map_kinds=[], map_severities=[], map_policies=[], map_offsets=[],
                                   step_policies=[], step_nos=[], step_afters=[], step_routes=[], step_tags=[])
    fixed = [config.delivery.reminder_interval] if config.delivery.reminder_interval > 0 else []
    offsets = [_offsets(fixed if p is None or p.reminders is None else p.reminders) for p in [*policies, None]]
    for kind in [*ALL_KINDS, ""]:
        for severity in SEVERITIES:
            # kind '': only a policy that names no kind matches (no kind is '').
            number = next((n for n, p in enumerate(policies, start=1) if _matches(p, kind, severity)),
                          len(policies) + 1)
            params["map_kinds"].append(kind)
            params["map_severities"].append(severity)
            params["map_policies"].append(number)
            # The reminder offsets as an array literal: each alert gets its schedule from the same join.
            params["map_offsets"].append("{" + ",".join(repr(o) for o in offsets[number - 1]) + "}")
    for number, policy in enumerate(policies, start=1):
        for i, step in enumerate(policy.steps):
            params["step_policies"].append(number)
            params["step_nos"].append(i + 1)
            params["step_afters"].append(float(step.after))
            params["step_routes"].append(step.notify.route)
            params["step_tags"].append(step.notify.tag)
    # The soonest anything can fall due after a transition (None: no reminder or step at all).
    firsts = [o[0] for o in offsets if o] + params["step_afters"]
    params["earliest_due"] = min(firsts) if firsts else None
    return params


def ack_timeout_for(config: Config, severity: str) -> Optional[float]:
    """escalation.ack_timeout's default for this severity (None: an ack lasts until resolved)."""
    timeout = config.escalation.ack_timeout.get(severity)
    return float(timeout) if timeout else None


def escalation_view(config: Config, alert: dict, taken: list[dict], now: datetime) -> dict:
    """For `notifyctl show`: the steps taken in this episode, the next step due and the next
    reminder (each None when nothing is due: the alert is acked, resolved, or the schedule is done)."""
    schedule = schedule_for(config, alert["kind"], alert["severity"])
    waiting = alert["status"] == "open" and alert["transition"] in UNACKED_OPEN_TRANSITIONS
    since: datetime = alert["transition_at"]
    taken_nos = {t["step_no"] for t in taken}
    next_step = None
    next_reminder = None
    if waiting:
        for step_no, after, target in schedule.steps:
            if step_no not in taken_nos:
                next_step = {"step": step_no, "due_at": since + timedelta(seconds=after), "target": target}
                break
        if schedule.reminder_offsets:
            elapsed = (now - since).total_seconds()
            n = schedule.reminder_no_at(elapsed) + 1
            next_reminder = {"reminder_no": n, "due_at": since + timedelta(seconds=schedule.reminder_offset(n))}
    return {"policy": schedule.policy_no, "steps_taken": taken, "next_step": next_step,
            "next_reminder": next_reminder}
