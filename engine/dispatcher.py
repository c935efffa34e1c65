"""Deliver: claim due notifications in batches, send them concurrently, record every outcome.

One batch is three steps: `claim_due` (one statement: FOR UPDATE SKIP LOCKED, attempt counted,
lease taken), concurrent sends within per-channel limits, `record_results` (one UPDATE ... FROM
unnest for the whole batch). Each dispatcher runs `delivery.workers` such loops so the database
round trips of one overlap the sends of another.

At-least-once: a process killed mid-send leaves its claims to run out (delivery.lease) and be
claimed again; the idempotency key (webhook-id, Message-ID) is the same on every attempt so a
receiver can drop the repeat.

Entry points:
  * `deliver_due(app)`: one pass until nothing is due now (notifyctl run-once, tests).
  * `run_dispatcher(app, stop_event)`: blocks until `stop_event` (a threading.Event) is set;
    wakes on NOTIFY notify_engine_deliveries, polls every delivery.poll_interval as the fallback.
    notifyd runs it in a thread: `threading.Thread(target=run_dispatcher, args=(app, stop))`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Optional

import psycopg

from channels import build_channels
from channels.base import Channel, DeliveryResult, Message
from channels.ssrf import Resolve
from engine.app import App
from engine.errors import NotifyError
from engine.queries import query
from engine.routing import DESTINATION_PREFIX, route_for_key
from engine.secretbox import SecretBox
from engine.templating import TemplateFailure

log = logging.getLogger(__name__)

WAKE_CHANNEL = "notify_engine_deliveries"
MIN_RETRY_DELAY = 1.0  # a transient failure is never due again within the same instant


@dataclass
class DeliverySummary:
    claimed: int = 0
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    skipped: int = 0

    def add(self, other: "DeliverySummary") -> None:
        for name in ("claimed", "sent", "retrying", "failed", "skipped"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class Outcome:
    status: str                       # queued (retry), sent, failed, skipped
    error: Optional[str] = None
    next_attempt_at: Optional[datetime] = None
    sent_at: Optional[datetime] = None
    disable_destination: bool = False


def retry_delay(attempt: int, base: float, maximum: float, rng: random.Random,
                retry_after: Optional[float] = None) -> float:
    """Exponential backoff with "equal jitter": between half and all of base * 2^(attempt-1),
    capped at `maximum`. A server's Retry-After replaces the schedule (also capped at `maximum`)."""
    if retry_after is not None:
        delay = min(retry_after, maximum)  # the server said when; capped so a typo cannot park a row for years
    else:
        schedule = min(maximum, base * (2 ** max(0, attempt - 1)))
        delay = schedule / 2 + rng.uniform(0, schedule / 2)
    return max(MIN_RETRY_DELAY, delay)


class ChannelLimits:
    """The one place per-channel concurrency is enforced (delivery.concurrency)."""

    def __init__(self, limits: dict[str, int]):
        self._semaphores = {name: asyncio.Semaphore(limit) for name, limit in limits.items()}
        self._default = asyncio.Semaphore(16)

    def __call__(self, channel: str) -> asyncio.Semaphore:
        return self._semaphores.get(channel, self._default)


class Dispatcher:
    def __init__(self, app: App, *, resolve: Optional[Resolve] = None,
                 channels: Optional[dict[str, Channel]] = None, rng: Optional[random.Random] = None):
        self.app = app
        self.config = app.config
        templates_dir = self.config.delivery.templates_dir
        self.channels = channels or build_channels(self.config, resolve=resolve,
                                                   templates_root=Path(templates_dir) if templates_dir else None)
        self.secrets = SecretBox(self.config.channels.webhook.secret_key)
        self.rng = rng or random.Random()
        self.limits: Optional[ChannelLimits] = None

    async def open(self) -> None:
        self.limits = ChannelLimits(self.config.delivery.concurrency)
        for channel in self.channels.values():
            await channel.open()

    async def close(self) -> None:
        for channel in self.channels.values():
            try:
                await channel.close()
            except Exception:  # noqa: BLE001 - closing one channel must not leak the others
                log.warning("closing channel %s failed", channel.name, exc_info=True)

    async def __aenter__(self) -> "Dispatcher":
        await self.open()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # ------------------------------------------------------------------ database steps

    def claim(self, now: datetime, token: uuid.UUID) -> list[dict]:
        delivery = self.config.delivery
        with self.app.databases.begin("notify") as conn:
            conn.execute(query("dispatcher", "relaxed_commit"))
            rows = conn.execute(query("dispatcher", "claim_due"), dict(
                now=now, lease_until=now + timedelta(seconds=delivery.lease), token=token,
                batch_size=delivery.batch_size)).mappings().all()
        return [dict(r) for r in rows]

    def record(self, rows: list[dict], outcomes: list[Outcome], token: uuid.UUID) -> None:
        with self.app.databases.begin("notify") as conn:
            conn.execute(query("dispatcher", "relaxed_commit"))
            conn.execute(query("dispatcher", "record_results"), dict(
                token=token,
                tenant_ids=[r["tenant_id"] for r in rows], ids=[r["id"] for r in rows],
                statuses=[o.status for o in outcomes], errors=[o.error for o in outcomes],
                next_attempt_ats=[o.next_attempt_at for o in outcomes],
                sent_ats=[o.sent_at for o in outcomes]))
            for row, outcome in zip(rows, outcomes):
                if outcome.disable_destination and row["destination_id"] is not None:
                    conn.execute(query("destinations", "disable_destination"), dict(
                        tenant_id=row["tenant_id"], destination_id=row["destination_id"],
                        reason=(outcome.error or "gone")[:200]))

    # ------------------------------------------------------------------ one batch

    async def deliver_batch(self) -> DeliverySummary:
        now = self.app.clock.now()
        token = uuid.uuid4()
        rows = await asyncio.to_thread(self.claim, now, token)
        summary = DeliverySummary(claimed=len(rows))
        if not rows:
            return summary
        outcomes = await asyncio.gather(*(self._deliver_one(row, now) for row in rows))
        await asyncio.to_thread(self.record, rows, outcomes, token)
        for outcome in outcomes:
            if outcome.status == "sent":
                summary.sent += 1
            elif outcome.status == "queued":
                summary.retrying += 1
            elif outcome.status == "failed":
                summary.failed += 1
            else:
                summary.skipped += 1
        return summary

    async def deliver_until_idle(self, stop_event: Optional[threading.Event] = None) -> DeliverySummary:
        """Runs delivery.workers loops until a claim comes back empty (or stop_event is set: the
        batches in flight finish and are recorded, no new one is claimed)."""
        total = DeliverySummary()

        async def worker() -> None:
            while stop_event is None or not stop_event.is_set():
                summary = await self.deliver_batch()
                total.add(summary)
                if summary.claimed == 0:
                    return

        await asyncio.gather(*(worker() for _ in range(self.config.delivery.workers)))
        return total

    async def _deliver_one(self, row: dict, now: datetime) -> Outcome:
        if row["lease_expired"] and row["send_attempts"] > self.config.delivery.max_attempts:
            # The claim before this one ran out on the last allowed attempt (the process died
            # mid-send); it may have been delivered, and no attempt is left to find out.
            return Outcome("failed", error="lease expired during the last attempt")
        skip = self._skip_reason(row)
        if skip:
            return Outcome("skipped", error=skip)
        channel = self.channels.get(row["channel"])
        if channel is None:
            return Outcome("failed", error=f"no channel {row['channel']!r}")
        try:
            message = self._message(row, now)
            assert self.limits is not None
            async with self.limits(row["channel"]):
                result = await channel.send(message)
        except TemplateFailure as exc:
            result = DeliveryResult.permanent(str(exc)[:300])
        except NotifyError as exc:  # e.g. a secret that cannot be decrypted: retrying will not help
            result = DeliveryResult.permanent(str(exc)[:300])
        except Exception as exc:  # noqa: BLE001 - one bad notification never stops the batch
            log.warning("notification %s: unexpected %s", row["id"], type(exc).__name__)
            result = DeliveryResult.transient(f"internal error: {type(exc).__name__}")
        return self._outcome(row, result, now)

    def _skip_reason(self, row: dict) -> Optional[str]:
        if row["transition"] == "reminder" and row["alert_status"] != "open":
            # A reminder queued just before an ack (or a resolve) is not sent after it: reminders
            # are for alerts still open and unacknowledged (the status is read at claim time).
            return f"alert is {row['alert_status']}; reminder dropped"
        if row["route_key"] and row["route_key"].startswith(DESTINATION_PREFIX):
            if not row["destination_exists"]:
                return "destination removed"
            if not row["destination_enabled"]:
                return "destination disabled"
        elif route_for_key(self.config, row["route_key"] or "") is None:
            return "route no longer configured"
        return None

    def _message(self, row: dict, now: datetime) -> Message:
        secret = None
        if row["route_key"] and row["route_key"].startswith(DESTINATION_PREFIX):
            if row["secret_ciphertext"]:
                secret = self.secrets.decrypt(row["secret_ciphertext"])
        else:
            route = route_for_key(self.config, row["route_key"] or "")
            secret = route.secret if route else None
        alert = dict(id=str(row["alert_id"]), tenant_id=str(row["tenant_id"]),
                     base_id=str(row["base_id"]) if row["base_id"] else None, kind=row["kind"],
                     severity=row["alert_severity"], status=row["alert_status"], dedupe_key=row["dedupe_key"],
                     first_seen_at=row["first_seen_at"], last_seen_at=row["last_seen_at"],
                     context=row["context"] or {})
        return Message(notification_id=str(row["id"]), tenant_id=str(row["tenant_id"]),
                       alert_id=str(row["alert_id"]), channel=row["channel"], recipient=row["recipient"] or "",
                       idempotency_key=row["idempotency_key"], transition=row["transition"] or "opened",
                       reminder_no=row["reminder_no"], severity=row["severity"] or row["alert_severity"],
                       attempt=row["send_attempts"], now=now, alert=alert, secret=secret)

    def _outcome(self, row: dict, result: DeliveryResult, now: datetime) -> Outcome:
        if result.kind == "sent":
            return Outcome("sent", error=result.error, sent_at=now)
        if result.kind == "permanent":
            return Outcome("failed", error=result.error, disable_destination=result.disable_destination)
        delivery = self.config.delivery
        attempts = row["send_attempts"]
        if attempts >= delivery.max_attempts:
            return Outcome("failed", error=f"gave up after {attempts} attempts: {result.error}")
        delay = retry_delay(attempts, delivery.backoff_base, delivery.backoff_max, self.rng, result.retry_after)
        return Outcome("queued", error=result.error, next_attempt_at=now + timedelta(seconds=delay))


# ---------------------------------------------------------------------- entry points


def queue_stats(conn, now: datetime) -> dict:
    """Queue depth, claims in flight, the oldest due notification and failures in the last hour
    (for `notifyctl status` and /metrics)."""
    return dict(conn.execute(query("dispatcher", "queue_stats"), dict(now=now)).mappings().one())


def deliver_due(app: App, *, resolve: Optional[Resolve] = None) -> DeliverySummary:
    """One pass: every notification due now gets one delivery attempt. Blocking."""

    async def run() -> DeliverySummary:
        async with Dispatcher(app, resolve=resolve) as dispatcher:
            return await dispatcher.deliver_until_idle()

    return run_event_loop(run())


def run_event_loop(coroutine):
    """asyncio.run on uvloop when installed (the webhook hot path is event-loop bound: see
    BENCHMARKS.md), on the standard loop otherwise or when NOTIFY_ASYNCIO_LOOP=asyncio."""
    loop_factory = None
    if os.environ.get("NOTIFY_ASYNCIO_LOOP", "uvloop") == "uvloop":
        try:
            import uvloop

            loop_factory = uvloop.new_event_loop
        except ImportError:
            pass
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(coroutine)


def run_dispatcher(app: App, stop_event: threading.Event, *, resolve: Optional[Resolve] = None) -> None:
    """Delivers until stop_event is set. Wakes on NOTIFY, polls as the fallback. Blocking."""
    run_event_loop(_run_forever(app, stop_event, resolve))


async def _run_forever(app: App, stop_event: threading.Event, resolve: Optional[Resolve]) -> None:
    from engine.scheduler import is_connection_error, one_line

    listener: Optional[psycopg.Connection] = None
    listen_failed = False
    async with Dispatcher(app, resolve=resolve) as dispatcher:
        try:
            while not stop_event.is_set():
                if listener is None or listener.closed:
                    # Said once per outage, not once per poll.
                    listener = _listen(app, quiet=listen_failed)
                    listen_failed = listener is None
                try:
                    summary = await dispatcher.deliver_until_idle(stop_event)
                    if summary.claimed:
                        log.info("delivered: %s", summary)
                except Exception as exc:  # noqa: BLE001 - the loop survives a database hiccup
                    if is_connection_error(exc):
                        # The health probe logs the outage once; claims left unrecorded run out
                        # (delivery.lease) and are sent again once the database is back.
                        log.debug("delivery pass: database unavailable: %s", one_line(exc))
                    else:
                        log.exception("delivery pass failed")
                await asyncio.to_thread(_wait_for_work, app, listener, stop_event)
        finally:
            if listener is not None:
                listener.close()


def _listen(app: App, *, quiet: bool = False) -> Optional[psycopg.Connection]:
    try:
        conn = app.databases.connect_raw("notify", autocommit=True)
        conn.execute(f"LISTEN {WAKE_CHANNEL}")
        return conn
    except psycopg.Error:
        log.log(logging.DEBUG if quiet else logging.WARNING, "LISTEN failed; polling every %ss",
                app.config.delivery.poll_interval)
        return None


def _wait_for_work(app: App, listener: Optional[psycopg.Connection], stop_event: threading.Event) -> None:
    """Sleeps until a NOTIFY, the next due notification, the poll interval or a stop, whichever first."""
    timeout = float(app.config.delivery.poll_interval)
    try:
        with app.databases.begin("notify") as conn:
            next_due = conn.execute(query("dispatcher", "next_due")).scalar()
        if next_due is not None:
            timeout = min(timeout, max(0.0, (next_due - app.clock.now()).total_seconds()))
    except Exception:  # noqa: BLE001 - fall back to the poll interval
        pass
    deadline_slices = max(1, int(timeout / 0.5) + 1)
    for _ in range(deadline_slices):
        if stop_event.is_set() or timeout <= 0:
            return
        slice_ = min(0.5, timeout)
        timeout -= slice_
        if listener is None or listener.closed:
            stop_event.wait(slice_)
            continue
        try:
            for _notify in listener.notifies(timeout=slice_, stop_after=1):
                return
        except psycopg.Error:
            listener.close()  # reconnected by the loop; polling meanwhile
            stop_event.wait(slice_)
