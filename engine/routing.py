"""Routing: which destinations an alert transition reaches. Sending is elsewhere (dispatcher).

A transition reaches
  * every enabled destination of the alert's tenant whose `kinds` is NULL or holds the alert's
    kind, and whose `min_severity` is at or below the alert's severity;
  * every ops route of config.yaml (`routes:`) whose kinds and min_severity match the same way.
Which transitions notify at all: opened, reopened, escalated, resolved, reminder and ack_expired
(an ack lapsed while the condition holds). A route with `escalation_only` is reached only by the
escalation steps that name it (engine.escalation). `acked`
notifies nobody: the person who acked already knows, and the tenant is not told about ops'
bookkeeping. The matching itself runs in SQL (engine/sql/planner.sql); this module turns the
config's routes into that query's parameters and resolves a route's secret at send time.
"""

from __future__ import annotations

from typing import Optional

from engine.config import Config, RouteConfig
from engine.destinations import masked_target

# silence_ended: a silence over the alert ended while it is still open (engine/silences.py).
NOTIFYING_TRANSITIONS = ("opened", "reopened", "escalated", "resolved", "reminder", "ack_expired", "silence_ended")
DESTINATION_PREFIX = "dest:"
ROUTE_PREFIX = "route:"


def route_parameters(config: Config) -> dict[str, list]:
    """The ops routes as parallel arrays for unnest() in the planner's single statement."""
    routes = config.routes
    return dict(
        route_names=[r.name for r in routes],
        route_channels=[r.channel for r in routes],
        # Stored masked for notifications' `recipient` (one masking rule); the dispatcher sends to
        # a Slack route's target from config, so an incoming-webhook URL never lands in the table.
        route_targets=[masked_target(r.target) if r.channel == "slack" else r.target for r in routes],
        # Comma-joined because PostgreSQL arrays cannot be ragged; '' means every kind.
        route_kinds=[",".join(r.kinds or []) for r in routes],
        route_min_severities=[r.min_severity for r in routes],
        route_escalation_only=[r.escalation_only for r in routes],
        notifying_transitions=list(NOTIFYING_TRANSITIONS),
    )


def route_for_key(config: Config, route_key: str) -> Optional[RouteConfig]:
    if not route_key.startswith(ROUTE_PREFIX):
        return None
    name = route_key[len(ROUTE_PREFIX):]
    return next((r for r in config.routes if r.name == name), None)
