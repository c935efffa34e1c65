"""Plan: turn alert transitions (and due reminders) into notify.notifications rows.

A transition is planned in the transaction that makes it: every statement that changes an alert's
transition_seq sets planned_seq to the new value and stamps transition_at with its transaction's
`now`, and its caller runs `plan_transitions_of_this_transaction(conn, config, now)` before
committing, so the rows commit with the transition or not at all. The periodic tick
(`plan_notifications`) plans the due reminders, and the transitions of any row whose planned_seq
was left behind by a writer that did not plan (hand-written SQL, an older version). Two callers
racing plan each (alert, transition, destination) once: they serialise on a transaction-level
advisory lock, and the unique key not_note_plan_once backs that up.

Reminders and escalation steps (the periodic tick only): while an alert is open and not acked,
its policy (engine.escalation: the first of escalation.policies that matches, else the fixed
delivery.reminder_interval) says when. The n-th reminder is due at transition_at + the sum of the
schedule's first n intervals, the last repeating (with the fixed interval: n * reminder_interval).
Only the latest due reminder is planned: a daemon that was down for three intervals sends one
reminder, not three. Every due escalation step not yet taken is taken once (notify.alert_escalations).

Noise control (docs/NOISE.md): a row whose alert a silence in force selects, or an inhibit rule's
source alert holds down, is inserted `suppressed` with its reason instead of `queued`; the tick
also notifies once (notify.silence_notices) the still-open alerts of silences that ended.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from engine import metrics
from engine.config import Config, default_inhibit_rules
from engine.escalation import policy_parameters
from engine.noise import planner_parameters, release_held
from engine.queries import query
from engine.routing import route_parameters


def plan_notifications(conn: Connection, config: Config, now: datetime) -> int:
    """Inserts the notifications of every unplanned transition and due reminder (the periodic
    tick); returns how many rows were planned."""
    return _plan(conn, config, now, changed_since=None, periodic=True)


def plan_transitions_of_this_transaction(conn: Connection, config: Config, now: datetime, *,
                                         shard: tuple[int, int] | None = None,
                                         tenants: list | None = None) -> int:
    """For a transaction that just changed alerts at `now`: plans the transitions stamped `now`
    (every transition statement sets transition_at = :now). `shard` (index, count) limits it to a
    detection shard's tenants, `tenants` to those tenants (every tenant whose alerts changed).
    Reminders are the periodic tick's."""
    return _plan(conn, config, now, changed_since=now, periodic=False, shard=shard, tenants=tenants)


def _plan(conn: Connection, config: Config, now: datetime, *, changed_since: datetime | None,
          periodic: bool, shard: tuple[int, int] | None = None, tenants: list | None = None) -> int:
    conn.execute(query("planner", "lock_planner"))
    policies = policy_parameters(config)
    # The tick (only) notifies the alerts of silences that ended (engine.silences).
    notice_silences = periodic
    # Without any reminder or step configured, the tick does not read open alerts at all.
    periodic = periodic and policies["earliest_due"] is not None
    params = dict(route_parameters(config), **policies, **planner_parameters(config), **inhibit_parameters(config),
                  now=now, periodic=periodic, notice_silences=notice_silences, changed_since=changed_since,
                  shard=shard[0] if shard else None, shards=shard[1] if shard else None, tenants=tenants,
                  guarded=False)
    if changed_since is None:
        result = conn.execute(query("planner", "plan_notifications"), params).one()
    else:
        result = _plan_transitions(conn, params)
    planned = result.planned
    # Counted when planned; a caller's transaction that rolls back afterwards over-counts (rare).
    if result.silenced:
        metrics.NOTIFICATIONS_SUPPRESSED.labels(reason="silence").inc(result.silenced)
    if result.inhibited:
        metrics.NOTIFICATIONS_SUPPRESSED.labels(reason="inhibition").inc(result.inhibited)
    # (The statement itself woke the dispatchers when it planned anything.)
    for reason in ("group_wait", "digest", "quiet_hours"):
        if getattr(result, f"held_{reason}"):
            metrics.NOTIFICATIONS_HELD.labels(reason=reason).inc(getattr(result, f"held_{reason}"))
    if (planned or changed_since is None) and result.release_due:
        # Rows held for their group (issue 15) that are due now, those of this pass included.
        release_held(conn, config, now)
    return planned


# Whether the last transitions planned could be suppressed (a silence in force, an inhibition
# rule's targets): the next ones then go straight to plan_transitions. Only a guess of which
# statement is cheaper: plan_transitions_unsuppressed checks for itself.
_suppressible_last = False


def _plan_transitions(conn: Connection, params: dict):
    """A transaction's own transitions: without the tick's parts (cheaper to plan), and without
    the suppression's when nothing can be suppressed (plan_transitions_unsuppressed writes nothing
    and says so otherwise)."""
    global _suppressible_last
    if not _suppressible_last:
        # guarded: it writes nothing when something could be suppressed (engine/sql/planner.sql).
        result = conn.execute(query("planner", "plan_transitions_unsuppressed"), dict(params, guarded=True)).one()
        if not result.suppressible:
            return result
    result = conn.execute(query("planner", "plan_transitions"), params).one()
    _suppressible_last = result.suppressible
    return result


def inhibit_parameters(config: Config) -> dict[str, list]:
    """config.inhibit_rules as parallel arrays for unnest() (lists comma-joined, '' = any)."""
    rules = default_inhibit_rules() if config.inhibit_rules is None else config.inhibit_rules
    return dict(
        inhibit_names=[r.name for r in rules],
        inhibit_source_kinds=[",".join(r.source_matchers.get("kind", [])) for r in rules],
        inhibit_source_severities=[",".join(r.source_matchers.get("severity", [])) for r in rules],
        inhibit_target_kinds=[",".join(r.target_matchers.get("kind", [])) for r in rules],
        inhibit_target_severities=[",".join(r.target_matchers.get("severity", [])) for r in rules],
        inhibit_equal=[",".join(r.equal) for r in rules],
    )
