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
import functools
import json
import logging
import os
import random
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Optional

import orjson
import psycopg
from psycopg.rows import dict_row

from channels import build_channels
from channels.base import Channel, DeliveryResult, Message
from channels.ssrf import Resolve
from engine import metrics
from engine.app import App
from engine.errors import NotifyError
from engine.queries import query, raw_query
from engine.routing import DESTINATION_PREFIX, route_for_key
from engine.secretbox import SecretBox, SecretUnavailable
from engine.templating import TemplateFailure

log = logging.getLogger(__name__)

WAKE_CHANNEL = "notify_engine_deliveries"
MIN_RETRY_DELAY = 1.0  # a transient failure is never due again within the same instant
# Session settings of the dispatcher's own connections (claims and results only):
#   * synchronous_commit off: claims and results commit without waiting for the WAL flush. Safe
#     here: a claim or a result lost to a server crash only means the notification is sent again
#     after its lease, which at-least-once delivery (with the same idempotency key) already
#     allows; nothing is corrupted and nothing is lost. Waiting for two fsyncs per batch was once
#     the dispatcher's largest cost.
#   * no sequential scans, hash or merge joins: both statements touch at most batch_size rows by
#     primary key, so the right plan is always an index lookup per row. The planner cannot see
#     that: claim_token's statistics say almost no row holds a claim, so it estimates one row for
#     "claim_token = :token" and scans the whole table once per batch (measured: a 20,000-row
#     table scanned for each claim and 250,000 join comparisons for each result). These settings
#     only price such plans out; jit off because a priced-out plan would look worth compiling.
DISPATCHER_SESSION = {"synchronous_commit": "off", "enable_seqscan": "off", "enable_hashjoin": "off",
                      "enable_mergejoin": "off", "jit": "off"}


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


# notify_delivery_attempts_total{outcome}: a notification's status after the attempt, by name.
ATTEMPT_OUTCOMES = {"sent": "sent", "queued": "retry", "failed": "failed", "skipped": "skipped"}


@dataclass
class Outcome:
    status: str                       # queued (retry), sent, failed, skipped
    error: Optional[str] = None
    next_attempt_at: Optional[datetime] = None
    sent_at: Optional[datetime] = None
    disable_destination: bool = False
    refund_attempt: bool = False      # no attempt was made (no key decrypts the secret): give it back


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

    DEFAULT = 16

    def __init__(self, limits: dict[str, int]):
        self._limits = dict(limits)
        self._semaphores = {name: asyncio.Semaphore(limit) for name, limit in limits.items()}
        self._default = asyncio.Semaphore(self.DEFAULT)

    def __call__(self, channel: str) -> asyncio.Semaphore:
        return self._semaphores.get(channel, self._default)

    def limit(self, channel: str) -> int:
        return self._limits.get(channel, self.DEFAULT)


class Dispatcher:
    def __init__(self, app: App, *, resolve: Optional[Resolve] = None,
                 channels: Optional[dict[str, Channel]] = None, rng: Optional[random.Random] = None):
        self.app = app
        self.config = app.config
        templates_dir = self.config.delivery.templates_dir
        self.channels = channels or build_channels(self.config, resolve=resolve,
                                                   templates_root=Path(templates_dir) if templates_dir else None)
        self.secrets = SecretBox.for_config(self.config)
        self.rng = rng or random.Random()
        self.limits: Optional[ChannelLimits] = None
        self._connections: list[psycopg.AsyncConnection] = []
        # A destination's secret is decrypted once per dispatcher, not once per notification
        # (Fernet's HMAC and AES per message). Held in memory only, like the key itself.
        self._decrypt = functools.lru_cache(maxsize=1024)(self.secrets.decrypt)
        self._warned_undecryptable = False

    async def open(self) -> None:
        self.limits = ChannelLimits(self.config.delivery.concurrency)
        for channel in self.channels.values():
            await channel.open()

    async def close(self) -> None:
        while self._connections:
            try:
                await self._connections.pop().close()
            except psycopg.Error:
                pass
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
    #
    # The claim and the results go through plain psycopg connections that the dispatcher keeps
    # open (one per worker loop, session setting DISPATCHER_SESSION), one statement each, prepared
    # once: per batch that is two round trips, where SQLAlchemy's pooled path took ten (pool
    # ping, BEGIN, SET LOCAL, statement, COMMIT, twice) and built its own row objects on top of
    # psycopg's. `claim` and `record` are the same steps on a fresh blocking connection (tests
    # and tools use them to play a crashed or slow dispatcher).

    def _claim_params(self, now: datetime, token: uuid.UUID) -> dict:
        delivery = self.config.delivery
        return dict(now=now, lease_until=now + timedelta(seconds=delivery.lease), token=token,
                    batch_size=delivery.batch_size, max_attempts=delivery.max_attempts)

    @staticmethod
    def _record_params(rows: list[dict], outcomes: list[Outcome], token: uuid.UUID) -> dict:
        sent_tenant_ids, sent_ids = [], []
        tenant_ids, ids, statuses, errors, next_attempt_ats, sent_ats = [], [], [], [], [], []
        sent_at = None
        for row, outcome in zip(rows, outcomes):
            if outcome.status == "sent" and outcome.error is None and (sent_at is None or outcome.sent_at == sent_at):
                sent_at = outcome.sent_at
                sent_tenant_ids.append(row["tenant_id"])
                sent_ids.append(row["id"])
            else:
                tenant_ids.append(row["tenant_id"])
                ids.append(row["id"])
                statuses.append(outcome.status)
                errors.append(outcome.error)
                next_attempt_ats.append(outcome.next_attempt_at)
                sent_ats.append(outcome.sent_at)
        return dict(token=token, sent_at=sent_at, sent_tenant_ids=",".join(map(str, sent_tenant_ids)),
                    sent_ids=",".join(map(str, sent_ids)), tenant_ids=tenant_ids, ids=ids, statuses=statuses,
                    errors=errors, next_attempt_ats=next_attempt_ats, sent_ats=sent_ats)

    @staticmethod
    def _disable_params(rows: list[dict], outcomes: list[Outcome]) -> list[dict]:
        return [dict(tenant_id=row["tenant_id"], destination_id=row["destination_id"],
                     reason=(outcome.error or "gone")[:200])
                for row, outcome in zip(rows, outcomes)
                if outcome.disable_destination and row["destination_id"] is not None]

    @staticmethod
    def _refund_params(rows: list[dict], outcomes: list[Outcome], token: uuid.UUID) -> Optional[dict]:
        held = [row for row, outcome in zip(rows, outcomes) if outcome.refund_attempt]
        if not held:
            return None
        return dict(token=token, tenant_ids=[r["tenant_id"] for r in held], ids=[r["id"] for r in held])

    def claim(self, now: datetime, token: uuid.UUID) -> list[dict]:
        with self.app.databases.connect_raw("notify", settings=DISPATCHER_SESSION, autocommit=True,
                                            row_factory=dict_row) as conn:
            return conn.execute(raw_query("dispatcher", "claim_due"), self._claim_params(now, token),
                                binary=True).fetchall()

    def record(self, rows: list[dict], outcomes: list[Outcome], token: uuid.UUID) -> None:
        with self.app.databases.connect_raw("notify", settings=DISPATCHER_SESSION, autocommit=True) as conn:
            with conn.transaction():
                refunds = self._refund_params(rows, outcomes, token)
                if refunds:  # while the claim is still held: record_results releases it
                    conn.execute(raw_query("dispatcher", "refund_attempts"), refunds)
                conn.execute(raw_query("dispatcher", "record_results"), self._record_params(rows, outcomes, token))
                for params in self._disable_params(rows, outcomes):
                    conn.execute(raw_query("destinations", "disable_destination"), params)

    async def _connection(self, *, kept: bool = True) -> tuple[psycopg.AsyncConnection, bool]:
        """A connection for one worker loop and whether it was kept from an earlier pass."""
        while kept and self._connections:
            conn = self._connections.pop()
            if not conn.closed and not conn.broken:
                return conn, True
        conn = await self.app.databases.connect_raw_async("notify", settings=DISPATCHER_SESSION, autocommit=True,
                                                          row_factory=dict_row)
        return conn, False

    def _give_back(self, conn: psycopg.AsyncConnection) -> None:
        if not conn.closed and not conn.broken and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            self._connections.append(conn)

    async def _claim_async(self, conn: psycopg.AsyncConnection, now: datetime, token: uuid.UUID) -> list[dict]:
        cursor = await conn.execute(raw_query("dispatcher", "claim_due"), self._claim_params(now, token),
                                    prepare=True, binary=True)
        return await cursor.fetchall()

    async def _record_async(self, conn: psycopg.AsyncConnection, rows: list[dict], outcomes: list[Outcome],
                            token: uuid.UUID) -> None:
        params = self._record_params(rows, outcomes, token)
        disable = self._disable_params(rows, outcomes)
        refunds = self._refund_params(rows, outcomes, token)
        if not disable and not refunds:
            await conn.execute(raw_query("dispatcher", "record_results"), params, prepare=True)
            return
        async with conn.transaction():
            if refunds:  # while the claim is still held: record_results releases it
                await conn.execute(raw_query("dispatcher", "refund_attempts"), refunds)
            await conn.execute(raw_query("dispatcher", "record_results"), params, prepare=True)
            for one in disable:
                await conn.execute(raw_query("destinations", "disable_destination"), one)

    # ------------------------------------------------------------------ one batch

    async def deliver_batch(self, conn: psycopg.AsyncConnection) -> DeliverySummary:
        now = self.app.clock.now()
        token = uuid.uuid4()
        rows = await self._claim_async(conn, now, token)
        summary = DeliverySummary(claimed=len(rows))
        if not rows:
            return summary
        outcomes = await self._send_batch(rows, now)
        await self._record_async(conn, rows, outcomes, token)
        attempts: dict[tuple[str, str], int] = {}
        for row, outcome in zip(rows, outcomes):
            if outcome.status == "sent":
                summary.sent += 1
                # Planned in the transition's own transaction: created_at is the transition's time.
                metrics.DELIVERY_LATENCY.labels(channel=row["channel"]).observe(
                    (outcome.sent_at - row["created_at"]).total_seconds())
            elif outcome.status == "queued":
                summary.retrying += 1
            elif outcome.status == "failed":
                summary.failed += 1
            else:
                summary.skipped += 1
            key = (row["channel"], ATTEMPT_OUTCOMES[outcome.status])
            attempts[key] = attempts.get(key, 0) + 1
        for (channel, outcome), count in attempts.items():  # recorded: count them
            metrics.DELIVERY_ATTEMPTS.labels(channel=channel, outcome=outcome).inc(count)
        return summary

    async def deliver_until_idle(self, stop_event: Optional[threading.Event] = None) -> DeliverySummary:
        """Runs delivery.workers loops until a claim comes back empty (or stop_event is set: the
        batches in flight finish and are recorded, no new one is claimed)."""
        total = DeliverySummary()

        async def worker() -> None:
            conn, kept = await self._connection()
            try:
                while stop_event is None or not stop_event.is_set():
                    try:
                        summary = await self.deliver_batch(conn)
                    except psycopg.OperationalError:
                        if not (kept and conn.broken):
                            raise
                        # A connection kept from an earlier pass died meanwhile (e.g. the server
                        # restarted): one fresh try now rather than a lost poll interval. Safe:
                        # rows claimed through the dead connection stay leased until they expire.
                        await conn.close()
                        conn, kept = await self._connection(kept=False)
                        continue
                    kept = False
                    total.add(summary)
                    if summary.claimed == 0:
                        return
            finally:
                self._give_back(conn)

        await asyncio.gather(*(worker() for _ in range(self.config.delivery.workers)))
        return total

    async def _send_batch(self, rows: list[dict], now: datetime) -> list[Outcome]:
        """Every row's outcome, in row order. Rows that need no send (skipped, out of attempts)
        are settled first; the rest are sent per channel by at most `delivery.concurrency[channel]`
        lanes, each a coroutine that holds one of the channel's slots and sends row after row
        (not one task per row: task, semaphore and timer churn per row was a tenth of the
        dispatcher's CPU)."""
        outcomes: list[Optional[Outcome]] = [None] * len(rows)
        by_channel: dict[str, list[int]] = {}
        for index, row in enumerate(rows):
            settled = self._settle_without_sending(row)
            if settled is not None:
                outcomes[index] = settled
            else:
                by_channel.setdefault(row["channel"], []).append(index)
        if by_channel:
            await asyncio.gather(*(self._send_channel(name, indexes, rows, outcomes, now)
                                   for name, indexes in by_channel.items()))
        return outcomes  # type: ignore[return-value]

    async def _send_channel(self, name: str, indexes: list[int], rows: list[dict],
                            outcomes: list[Optional[Outcome]], now: datetime) -> None:
        assert self.limits is not None
        channel = self.channels[name]
        slots = self.limits(name)
        pending = iter(indexes)

        async def lane() -> None:
            async with slots:
                for index in pending:
                    outcomes[index] = await self._deliver_one(channel, rows[index], now)

        lanes = min(self.limits.limit(name), len(indexes))
        if lanes == 1:
            await lane()
        else:
            await asyncio.gather(*(lane() for _ in range(lanes)))

    def _settle_without_sending(self, row: dict) -> Optional[Outcome]:
        if row["lease_expired"] and row["send_attempts"] >= self.config.delivery.max_attempts:
            # The claim before this one ran out on the last allowed attempt (the process died
            # mid-send); it may have been delivered, and no attempt is left to find out.
            return Outcome("failed", error="lease expired during the last attempt")
        skip = self._skip_reason(row)
        if skip:
            return Outcome("skipped", error=skip)
        if row["channel"] not in self.channels:
            return Outcome("failed", error=f"no channel {row['channel']!r}")
        return None

    async def _deliver_one(self, channel: Channel, row: dict, now: datetime) -> Outcome:
        try:
            message = self._message(row, now)
        except SecretUnavailable as exc:
            return self._held_for_key(row, exc, now)
        try:
            result = await channel.send(message)
        except TemplateFailure as exc:
            result = DeliveryResult.permanent(str(exc)[:300])
        except NotifyError as exc:  # retrying will not help
            result = DeliveryResult.permanent(str(exc)[:300])
        except Exception as exc:  # noqa: BLE001 - one bad notification never stops the batch
            log.warning("notification %s: unexpected %s", row["id"], type(exc).__name__)
            result = DeliveryResult.transient(f"internal error: {type(exc).__name__}")
        return self._outcome(row, result, now)

    def _held_for_key(self, row: dict, exc: SecretUnavailable, now: datetime) -> Outcome:
        """No configured key decrypts the destination's secret: an operator's config mistake that
        heals when the key comes back, so the row stays queued with its attempt given back, due
        again after a wait that grows with its age (capped at delivery.backoff_max)."""
        metrics.DELIVERY_UNDECRYPTABLE.labels(channel=row["channel"]).inc()
        if not self._warned_undecryptable:
            self._warned_undecryptable = True
            log.warning("notification %s: %s; such notifications stay queued (notify_delivery_undecryptable_total)",
                        row["id"], exc)
        delivery = self.config.delivery
        wait = max(delivery.backoff_base, (now - row["created_at"]).total_seconds())
        delay = retry_delay(row["send_attempts"], delivery.backoff_base, delivery.backoff_max, self.rng, wait)
        return Outcome("queued", error=str(exc)[:300], next_attempt_at=now + timedelta(seconds=delay),
                       refund_attempt=True)

    def _skip_reason(self, row: dict) -> Optional[str]:
        if row["transition"] in ("reminder", "escalation") and row["alert_status"] != "open":
            # A reminder queued just before an ack (or a resolve) is not sent after it: reminders
            # are for alerts still open and unacknowledged (the status is read at claim time).
            return f"alert is {row['alert_status']}; {row['transition']} dropped"
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
        recipient = row["recipient"] or ""
        route_key = row["route_key"]
        if route_key and route_key.startswith(DESTINATION_PREFIX):
            if row["secret_ciphertext"]:
                if row["channel"] == "slack":
                    # A Slack incoming-webhook URL is stored encrypted; `recipient` holds its masked form.
                    recipient = self._decrypt(row["secret_ciphertext"])
                else:
                    secret = self._decrypt(row["secret_ciphertext"])
        else:
            route = route_for_key(self.config, route_key or "")
            secret = route.secret if route else None
            if route is not None and route.channel == "slack":
                recipient = route.target  # planned masked (engine.routing): the URL comes from config
        # Ids come as text from claim_due and the context as JSON text (orjson parses it several
        # times faster than the driver's json loader).
        alert = dict(id=row["alert_id"], tenant_id=row["tenant_id"], base_id=row["base_id"], kind=row["kind"],
                     severity=row["alert_severity"], status=row["alert_status"], dedupe_key=row["dedupe_key"],
                     first_seen_at=row["first_seen_at"], last_seen_at=row["last_seen_at"],
                     context=_load_context(row["context"]))
        return Message(notification_id=row["id"], tenant_id=row["tenant_id"],
                       alert_id=row["alert_id"], channel=row["channel"], recipient=recipient,
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


def _load_context(text: Optional[str]) -> dict:
    if not text:
        return {}
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # e.g. an integer past 64 bits, which orjson refuses
        return json.loads(text)


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
