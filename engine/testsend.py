"""Test sends: `notifyctl destinations test ID` sends one sample notification to a destination now.

The attempt is a notification row like any other (transition `test`, no alert: ddl/notify/0007)
and goes through the dispatcher's own per-row path (`Dispatcher.attempt_one`: the SSRF guard,
the destination's decrypted secret and signature, the channel's templates), and its outcome is
written by the dispatcher's own result statement (`Dispatcher.record`). It is never retried in
the background: the row is written holding its claim, and a transient failure ends `failed` like
a permanent one, so the operator sees the outcome at once and no dispatcher sends it later.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Optional

import orjson

from channels.ssrf import Resolve
from engine.app import App
from engine.destinations import masked_target
from engine.dispatcher import Dispatcher, Outcome, run_event_loop
from engine.errors import BadInput, NotFound
from engine.queries import query

# The sample alert exists in no table; the nil UUID parses as an id and is plainly not a real one.
SAMPLE_ALERT_ID = "00000000-0000-0000-0000-000000000000"
SAMPLE_KIND = "RUNS_THRESHOLD"
TEST_NOTE = "Test notification sent by `notifyctl destinations test`; no action is needed."


@dataclass
class TestSendResult:
    __test__ = False        # not a pytest test class, whatever its name

    notification_id: str
    destination_id: str
    channel: str
    recipient: str          # masked, as every listing shows it
    outcome: str            # sent | failed | skipped (a disabled destination)
    latency_ms: float
    error: Optional[str]

    @property
    def sent(self) -> bool:
        return self.outcome == "sent"

    def as_dict(self) -> dict:
        return asdict(self)


def sample_alert_fields(row: dict, now: datetime) -> dict:
    """The alert columns claim_due would join in, for an alert that does not exist: the
    destination's first wanted kind (RUNS_THRESHOLD when it takes every kind) with plausible
    numbers, marked as a test in its context (every template prints the context)."""
    kind = row["kinds"][0] if row.get("kinds") else SAMPLE_KIND
    context = {"test": True, "note": TEST_NOTE, "metric": "runs_used", "value": 850, "limit": 1000,
               "percent": 85.0, "level_percent": 80, "period": now.strftime("%Y-%m")}
    return dict(alert_id=SAMPLE_ALERT_ID, kind=kind, alert_severity=row["severity"], alert_status="open",
                base_id=None, dedupe_key=f"test:destination={row['destination_id']}", first_seen_at=now,
                last_seen_at=now, context=orjson.dumps(context).decode())


def send_test_notification(app: App, destination_id: str, *, resolve: Optional[Resolve] = None) -> TestSendResult:
    """Sends one sample notification to the destination now and records it. BadInput for a
    malformed or unknown id. A disabled destination is not sent to: the row ends `skipped`."""
    try:
        ident = uuid.UUID(destination_id)
    except ValueError:
        raise BadInput(f"ID: a destination id must be a UUID, got {destination_id!r}") from None
    now = app.clock.now()
    token = uuid.uuid4()
    with app.databases.begin("notify") as conn:
        found = conn.execute(query("destinations", "insert_test_notification"),
                             dict(id=ident, now=now, token=token)).mappings().first()
    if found is None:
        raise NotFound(f"ID: no destination {destination_id}")
    row = dict(found)
    row.update(sample_alert_fields(row, now))
    dispatcher = Dispatcher(app, resolve=resolve)

    async def attempt() -> tuple[Outcome, float]:
        async with dispatcher:
            started = time.perf_counter()
            outcome = await dispatcher.attempt_one(row, now)
            return outcome, (time.perf_counter() - started) * 1000

    outcome, latency_ms = run_event_loop(attempt())
    if outcome.status == "queued":
        # One attempt, now: a failure that a batch would retry ends here (run the test again).
        outcome = Outcome("failed", error=outcome.error, result=outcome.result, started_at=outcome.started_at,
                          duration_ms=outcome.duration_ms)
    if outcome.status == "skipped" and row["disabled_reason"]:
        outcome.error = f"{outcome.error}: {row['disabled_reason']}"
    dispatcher.record([row], [outcome], token)
    return TestSendResult(notification_id=row["id"], destination_id=row["destination_id"], channel=row["channel"],
                          recipient=masked_target(row["recipient"]) or "", outcome=outcome.status,
                          latency_ms=round(latency_ms, 1), error=outcome.error)
