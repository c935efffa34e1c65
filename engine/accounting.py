"""What happened to each notification (issue 15, item 7), for `notifyctl show`, `notifyctl
notifications` (and `show ID`) and the API's listings: one place that reads a row's status and
its noise-control columns (ddl/notify/0015) and says it in a word a script keys on
(`disposition`), the ids it involves (`message_id`, `reason`) and a sentence a person reads
(`what_happened`).

disposition  when                                     reason
sent         sent (message_id: the row itself)        -
grouped      carried by another row's message         -  (message_id: that row)
queued       waiting for its (next) attempt           -
held         held back by a rate limit                rate_limit
waiting      waiting for group_wait, a digest or      group_wait, digest, quiet_hours
             the end of quiet hours
suppressed   a silence or an inhibition rule          the silence id, or `inhibited`
failed       every attempt failed                     -
skipped      dropped unsent (error says why)          -
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Iterable, Optional

from engine.queries import query

HELD_WORDS = {
    "group_wait": "waiting to be grouped with other alerts",
    "digest": "waiting for the destination's digest",
    "quiet_hours": "waiting for the destination's quiet hours to end",
    "rate_limit": "held back by the rate limit",
}


def _time(value: Optional[datetime]) -> str:
    from engine.cli.output import format_time

    return format_time(value) if value else "-"


def describe(conn, notes: Iterable[dict]) -> list[dict]:
    """Adds disposition, message_id, reason and what_happened to each row (dicts with the
    notification's columns), with two small lookups: the silences named and the messages that
    carried grouped rows."""
    notes = list(notes)
    silence_ids, message_ids = set(), set()
    for n in notes:
        by = n.get("suppressed_by") or ""
        if by.startswith("silence:"):
            silence_ids.add(_uuid(by.split(":", 1)[1]))
        if n.get("status") == "grouped" and n.get("message_id"):
            message_ids.add(n["message_id"])
    silence_ids.discard(None)
    silences = {}
    if silence_ids:
        silences = {str(r.id): r for r in conn.execute(query("accounting", "silence_comments"),
                                                       dict(ids=sorted(silence_ids)))}
    messages = {}
    if message_ids:
        messages = {r.id: r for r in conn.execute(query("accounting", "message_states"), dict(ids=sorted(message_ids)))}
    for n in notes:
        n.update(_disposition(n, silences, messages))
    return notes


def _uuid(value: str) -> Optional[uuid.UUID]:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _disposition(n: dict, silences: dict, messages: dict) -> dict:
    status = n.get("status")
    if status == "sent":
        return dict(disposition="sent", message_id=n.get("id"), reason=None,
                    what_happened=f"sent {_time(n.get('sent_at') or n.get('last_attempt_at'))}")
    if status == "grouped":
        message = messages.get(n.get("message_id"))
        state = ""
        if message is not None:
            state = (f", sent {_time(message.sent_at)}" if message.status == "sent"
                     else f", which is {message.status}")
        return dict(disposition="grouped", message_id=n.get("message_id"), reason=None,
                    what_happened=f"grouped into message {n.get('message_id')}{state}")
    if status == "held":
        reason = n.get("held_reason")
        words = HELD_WORDS.get(reason, f"held ({reason})")
        return dict(disposition="held" if reason == "rate_limit" else "waiting", message_id=None, reason=reason,
                    what_happened=f"{words} until {_time(n.get('release_at'))}")
    if status == "suppressed":
        by = n.get("suppressed_by") or ""
        kind, _, rest = by.partition(":")
        if kind == "silence":
            found = silences.get(rest)
            said = f" (\"{found.comment}\", by {found.created_by})" if found is not None else ""
            return dict(disposition="suppressed", message_id=None, reason=rest, silence_id=rest,
                        what_happened=f"suppressed by silence {rest}{said}")
        if kind == "inhibition":
            rule, _, alert_id = rest.rpartition(":")
            return dict(disposition="suppressed", message_id=None, reason="inhibited", inhibit_rule=rule,
                        inhibited_by=alert_id,
                        what_happened=f"suppressed by inhibition rule {rule}: alert {alert_id} was open")
        return dict(disposition="suppressed", message_id=None, reason=by or None,
                    what_happened=f"suppressed ({by or 'no reason recorded'})")
    if status == "failed":
        return dict(disposition="failed", message_id=None, reason=None,
                    what_happened=f"failed after {n.get('send_attempts')} attempts: {n.get('error') or '-'}")
    if status == "skipped":
        return dict(disposition="skipped", message_id=None, reason=None,
                    what_happened=f"skipped: {n.get('error') or 'no reason recorded'}")
    if status == "queued":
        attempts = n.get("send_attempts") or 0
        due = n.get("next_attempt_at")
        text = (f"queued, attempt {attempts + 1} due {_time(due)}" + (f" (last error: {n['error']})" if n.get("error") else "")
                if attempts else f"queued, due {_time(due)}")
        return dict(disposition="queued", message_id=None, reason=None, what_happened=text)
    return dict(disposition=status, message_id=None, reason=None, what_happened=str(status))
