"""Deliver: claim due notifications in batches, send them concurrently, record every outcome.

One batch is three steps: `claim_due` (one statement: FOR UPDATE SKIP LOCKED, attempt counted,
lease taken), concurrent sends within per-channel limits, `record_results` (one UPDATE ... FROM
unnest for the whole batch; while a slow send holds the batch up, one for the outcomes finished so
far every RESULT_FLUSH_INTERVAL, and the rows still in flight renew their lease every lease/3;
sends still running STRAGGLER_AFTER after the batch's last one started finish on their own, and
the worker claims its next batch). Each dispatcher runs `delivery.workers` such loops so the
database round trips of one overlap the sends of another. The same result statement appends every
send to the attempt ledger (notify.delivery_attempts), keeps each destination's health (failures
in a row pause it; the claim skips a paused destination's rows but one probe) and hands what
failed for good to a fallback destination (docs/ARCHITECTURE.md "Deliver").

At-least-once: a process killed mid-send leaves its claims to run out (delivery.lease) and be
claimed again; the idempotency key (webhook-id, Message-ID) is the same on every attempt so a
receiver can drop the repeat.

Entry points:
  * `deliver_due(app)`: one pass until nothing is due now (notifyctl run-once, tests).
  * `run_dispatcher(app, stop_event)`: blocks until `stop_event` (a threading.Event) is set;
    wakes on NOTIFY notify_engine_deliveries, polls every delivery.poll_interval as the fallback.
    A reload (a new `app.config`) reaches it between batches: it builds a new Dispatcher.
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
from typing import Any, Optional

import orjson
import psycopg
from psycopg.rows import dict_row

from channels import build_channels
from channels.base import EXCERPT_BYTES, Channel, DeliveryResult, Message
from channels.ssrf import Resolve
from engine import metrics
from engine.app import App
from engine.errors import NotifyError
from engine.logging import REDACTOR
from engine.queries import query, raw_query
from engine.routing import DESTINATION_PREFIX, route_for_key, route_parameters
from engine.secretbox import SecretBox, SecretUnavailable
from engine.templating import TemplateFailure

log = logging.getLogger(__name__)

WAKE_CHANNEL = "notify_engine_deliveries"
MIN_RETRY_DELAY = 1.0  # a transient failure is never due again within the same instant
# While a batch still sends, the outcomes finished so far are recorded this often (seconds): a
# batch of healthy receivers ends before the first flush and is still one statement.
RESULT_FLUSH_INTERVAL = 0.1
# A batch whose rows have all started and that still waits for some this long after (seconds)
# leaves them to finish on their own: its worker claims the next batch meanwhile.
STRAGGLER_AFTER = 1.0
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
    # The attempt for the ledger (notify.delivery_attempts); None when nothing was sent.
    result: Optional[DeliveryResult] = None
    started_at: Optional[datetime] = None
    duration_ms: int = 0
    claimed_at: Optional[datetime] = None  # the engine clock when its batch was claimed


def retry_delay(attempt: int, base: float, maximum: float, rng: random.Random,
                retry_after: Optional[float] = None, retry_after_max: float = 86400.0) -> float:
    """Exponential backoff with "equal jitter": between half and all of base * 2^(attempt-1),
    capped at `maximum`. A server's Retry-After replaces the schedule, capped at `retry_after_max`
    (delivery.retry_after_max), not at `maximum`: the server knows when it can take more."""
    if retry_after is not None:
        delay = min(retry_after, retry_after_max)  # the server said when; capped so a typo cannot park a row for years
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


class BatchInFlight:
    """A claimed batch while it sends: each row's outcome as it becomes known, and which of them
    are recorded (row indexes)."""

    def __init__(self, rows: list[dict], token: uuid.UUID, lease: float):
        self.rows = rows
        self.token = token
        self.outcomes: list[Optional[Outcome]] = [None] * len(rows)
        self.started = 0                  # rows whose send has begun (or that need none)
        self.finished: list[int] = []     # outcome known, not yet recorded
        self.recorded: list[int] = []     # in the order recorded
        self.counted = 0                  # how many of `recorded` are in a summary and the metrics
        self.sending: asyncio.Future = None  # type: ignore[assignment]  # set by deliver_batch
        self.all_started_at: Optional[float] = None    # loop time
        self.renew_every = lease / 3      # the lease of rows still unrecorded is renewed this often
        self.renew_at = asyncio.get_running_loop().time() + self.renew_every


class Dispatcher:
    def __init__(self, app: App, *, resolve: Optional[Resolve] = None,
                 channels: Optional[dict[str, Channel]] = None, rng: Optional[random.Random] = None,
                 log_attempts: bool = True):
        """`log_attempts=False` is for bench/delivery_bench.py only: it measures what the attempt
        ledger costs by leaving it out (destination health is still kept). Never a config key."""
        self.app = app
        self.log_attempts = log_attempts
        self.config = app.config
        templates_dir = self.config.delivery.templates_dir
        self.channels = channels or build_channels(self.config, resolve=resolve,
                                                   templates_root=Path(templates_dir) if templates_dir else None,
                                                   app=app)
        self.secrets = SecretBox.for_config(self.config)
        self.rng = rng or random.Random()
        self.limits: Optional[ChannelLimits] = None
        self._connections: list[psycopg.AsyncConnection] = []
        self._stragglers: set[asyncio.Future] = set()      # sends left to finish (deliver_batch)
        self._stragglers_summary = DeliverySummary()
        # A destination's secret is decrypted once per dispatcher, not once per notification
        # (Fernet's HMAC and AES per message). Held in memory only, like the key itself.
        self._decrypt = functools.lru_cache(maxsize=1024)(self.secrets.decrypt)
        self._warned_undecryptable = False

    async def open(self) -> None:
        self.limits = ChannelLimits(self.config.delivery.concurrency)
        for channel in self.channels.values():
            await channel.open()

    async def close(self) -> None:
        await self.finish_stragglers()
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

    @property
    def _health_params(self) -> dict:
        """Destination health's part of record_results: the engine clock now and the pause settings."""
        delivery = self.config.delivery
        return dict(now=self.app.clock.now(), pause_after=delivery.pause_after_failures,
                    pause_base=float(delivery.pause_base), pause_max=float(delivery.pause_max))

    def _claim_params(self, now: datetime, token: uuid.UUID) -> dict:
        delivery = self.config.delivery
        return dict(now=now, lease_until=now + timedelta(seconds=delivery.lease), token=token,
                    batch_size=delivery.batch_size, max_attempts=delivery.max_attempts,
                    list_max=self.config.grouping.list_max)

    def _record_params(self, rows: list[dict], outcomes: list[Outcome], token: uuid.UUID) -> dict:
        sent_tenant_ids, sent_ids = [], []
        tenant_ids, ids, statuses, errors, next_attempt_ats, sent_ats = [], [], [], [], [], []
        sent_at = None
        # One JSON array per send made, for the attempt ledger and destination health (record_results):
        # orjson writes the batch in one C call, where psycopg dumped a dozen Python lists element by
        # element (about 9 us a row, more than the ledger's INSERT; BENCHMARKS.md, 2026-11-30).
        attempts = []
        log_attempts = self.log_attempts
        for row, outcome in zip(rows, outcomes):
            result = outcome.result
            if result is not None:
                if log_attempts:
                    attempts.append((row["tenant_id"], row["destination_id"], outcome.started_at, result.kind,
                                     row["id"], row["send_attempts"], outcome.duration_ms, result.code,
                                     _excerpt(result.excerpt) if result.excerpt else None, result.address,
                                     result.error, row["channel"]))
                else:  # what destination health reads, nothing for the ledger
                    attempts.append((row["tenant_id"], row["destination_id"], outcome.started_at, result.kind))
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
                    errors=errors, next_attempt_ats=next_attempt_ats, sent_ats=sent_ats,
                    attempts=orjson.dumps(attempts).decode(),
                    claimed_at=max((o.claimed_at for o in outcomes if o.claimed_at is not None), default=None),
                    **self._health_params)

    def _disable_params(self, rows: list[dict], outcomes: list[Outcome]) -> list[dict]:
        disabled = [(row, outcome) for row, outcome in zip(rows, outcomes)
                    if outcome.disable_destination and row["destination_id"] is not None]
        if not disabled:
            return []
        routes = route_parameters(self.config)
        now = self.app.clock.now()
        return [dict(tenant_id=row["tenant_id"], destination_id=row["destination_id"],
                     reason=(outcome.error or "gone")[:200], alert_id=row["alert_id"], origin_id=row["id"],
                     severity=row["severity"] or row.get("alert_severity") or "warn", now=now,
                     note=_disabled_note(row, outcome), route_names=routes["route_names"],
                     route_channels=routes["route_channels"], route_targets=routes["route_targets"])
                for row, outcome in disabled]

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
        now_at = asyncio.get_running_loop().time()
        token = uuid.uuid4()
        rows = await self._claim_async(conn, now, token)
        summary = DeliverySummary(claimed=len(rows))
        if not rows:
            return summary
        batch = BatchInFlight(rows, token, float(self.config.delivery.lease))
        batch.sending = asyncio.ensure_future(self._send_batch(batch, now, now_at))
        if not await self._record_while_sending(conn, batch, leave_stragglers_after=STRAGGLER_AFTER):
            # Every row has started and some are still sending after STRAGGLER_AFTER: they finish
            # (recorded, lease renewed) on their own, and this worker claims its next batch.
            straggling = asyncio.ensure_future(self._finish_stragglers(batch))
            self._stragglers.add(straggling)
            straggling.add_done_callback(self._stragglers.discard)
        self._count_recorded(batch, summary)
        return summary

    def _count_recorded(self, batch: BatchInFlight, summary: DeliverySummary) -> None:
        """Counts the outcomes recorded since the last count (summary and metrics)."""
        attempts: dict[tuple[str, str], int] = {}
        latency: dict[str, Any] = {}   # each channel's histogram, looked up once a batch (labels() is not free)
        for index in batch.recorded[batch.counted:]:
            row, outcome = batch.rows[index], batch.outcomes[index]
            assert outcome is not None
            if outcome.status == "sent":
                summary.sent += 1
                channel = row["channel"]
                histogram = latency.get(channel)
                if histogram is None:
                    histogram = latency[channel] = metrics.DELIVERY_LATENCY.labels(channel=channel)
                # Planned in the transition's own transaction: created_at is the transition's time.
                histogram.observe((outcome.sent_at - row["created_at"]).total_seconds())
            elif outcome.status == "queued":
                summary.retrying += 1
            elif outcome.status == "failed":
                summary.failed += 1
            else:
                summary.skipped += 1
            key = (row["channel"], ATTEMPT_OUTCOMES[outcome.status])
            attempts[key] = attempts.get(key, 0) + 1
        batch.counted = len(batch.recorded)
        for (channel, outcome), count in attempts.items():  # recorded: count them
            metrics.DELIVERY_ATTEMPTS.labels(channel=channel, outcome=outcome).inc(count)

    async def deliver_until_idle(self, stop_event: Optional[threading.Event] = None, *,
                                 wait_for_stragglers: bool = True) -> DeliverySummary:
        """Runs delivery.workers loops until a claim comes back empty (or stop_event is set: the
        batches in flight finish and are recorded, no new one is claimed). Sends left straggling
        (see deliver_batch) are waited for unless `wait_for_stragglers` is False (the long-running
        loop: they finish while it waits for work, and `close` waits for them)."""
        total = DeliverySummary()
        await self._plan_paused_fallbacks()

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
                    if summary.claimed == 0 or self.app.config is not self.config:
                        return   # idle, or a reload: run_dispatcher builds a new dispatcher first
            finally:
                self._give_back(conn)

        await asyncio.gather(*(worker() for _ in range(self.config.delivery.workers)))
        if wait_for_stragglers:
            await self.finish_stragglers()
        total.add(self._stragglers_summary)
        self._stragglers_summary = DeliverySummary()
        return total

    async def _plan_paused_fallbacks(self) -> None:
        """Rows waiting past delivery.fallback_after on a paused destination go to its fallback
        once (one statement per pass; nothing to read while no destination is paused)."""
        fallback_after = float(self.config.delivery.fallback_after)
        if fallback_after <= 0:
            return
        params = dict(now=self.app.clock.now(), fallback_after=fallback_after)
        conn, kept = await self._connection()
        try:
            try:
                await conn.execute(raw_query("dispatcher", "plan_paused_fallbacks"), params)
            except psycopg.OperationalError:
                if not (kept and conn.broken):
                    raise
                await conn.close()   # a kept connection died meanwhile (see deliver_until_idle): one fresh try
                conn, _ = await self._connection(kept=False)
                await conn.execute(raw_query("dispatcher", "plan_paused_fallbacks"), params)
        finally:
            self._give_back(conn)

    async def finish_stragglers(self) -> None:
        """Waits until every send left straggling has ended and been recorded."""
        while self._stragglers:
            await asyncio.gather(*list(self._stragglers), return_exceptions=True)

    async def _finish_stragglers(self, batch: BatchInFlight) -> None:
        try:
            conn, _ = await self._connection()
            try:
                await self._record_while_sending(conn, batch)
            finally:
                if len(self._connections) < self.config.delivery.workers:
                    self._give_back(conn)
                else:
                    await conn.close()
        except Exception as exc:  # noqa: BLE001 - nothing awaits this task; the rows' claims run out
            from engine.scheduler import is_connection_error, one_line

            log.log(logging.DEBUG if is_connection_error(exc) else logging.WARNING,
                    "results of slow sends not recorded (sent again once their lease runs out): %s", one_line(exc))
            await asyncio.wait((batch.sending,))
        self._count_recorded(batch, self._stragglers_summary)

    async def _record_while_sending(self, conn: psycopg.AsyncConnection, batch: BatchInFlight, *,
                                    leave_stragglers_after: Optional[float] = None) -> bool:
        """Records the batch's outcomes under its claim token; True once every send has ended and
        been recorded. A batch that finishes within RESULT_FLUSH_INTERVAL (the common case) is
        recorded in one statement. While one still sends, every RESULT_FLUSH_INTERVAL the outcomes
        finished so far are recorded together, and every lease/3 the rows still unrecorded get a
        fresh lease: a slow receiver holds up only its own rows, and the others are neither left
        unrecorded past their lease nor claimed and sent again by another dispatcher (issue 12).
        Returns False, sends still running, once every row has started and some are still sending
        `leave_stragglers_after` seconds later."""
        loop = asyncio.get_running_loop()
        sending = batch.sending
        try:
            while not sending.done():
                wait = min(RESULT_FLUSH_INTERVAL, max(0.0, batch.renew_at - loop.time()))
                await asyncio.wait((sending,), timeout=wait)
                if sending.done():
                    break
                await self._record_finished(conn, batch)
                if loop.time() >= batch.renew_at:
                    await self._renew_lease_async(conn, batch)
                    batch.renew_at = loop.time() + batch.renew_every
                if leave_stragglers_after is not None and batch.started == len(batch.rows):
                    # Timed from when the last row started (seen at a flush): a batch merely slow
                    # under load ends within one send of that; a slow receiver does not.
                    batch.all_started_at = batch.all_started_at or loop.time()
                    if loop.time() - batch.all_started_at >= leave_stragglers_after:
                        return False
        except asyncio.CancelledError:
            sending.cancel()
            raise
        except Exception:
            # A failed write (the database went away): the sends in flight still finish; their
            # rows keep the claim until the lease runs out and are then sent again (at-least-once).
            await asyncio.wait((sending,))
            raise
        sending.result()
        await self._record_finished(conn, batch)
        return True

    async def _record_finished(self, conn: psycopg.AsyncConnection, batch: BatchInFlight) -> None:
        """Records the outcomes finished and not yet recorded (one statement)."""
        if not batch.finished:
            return
        indexes = batch.finished[:]
        del batch.finished[:len(indexes)]
        await self._record_async(conn, [batch.rows[i] for i in indexes],
                                 [batch.outcomes[i] for i in indexes], batch.token)  # type: ignore[misc]
        batch.recorded += indexes

    async def _renew_lease_async(self, conn: psycopg.AsyncConnection, batch: BatchInFlight) -> None:
        recorded = set(batch.recorded)
        unrecorded = [row for index, row in enumerate(batch.rows) if index not in recorded]
        if not unrecorded:
            return
        lease_until = self.app.clock.now() + timedelta(seconds=self.config.delivery.lease)
        await conn.execute(raw_query("dispatcher", "renew_lease"), dict(
            token=batch.token, lease_until=lease_until, tenant_ids=[row["tenant_id"] for row in unrecorded],
            ids=[row["id"] for row in unrecorded]))

    async def _send_batch(self, batch: BatchInFlight, now: datetime, now_at: float) -> None:
        """Fills in every row's outcome, appending its index to `batch.finished` as it is known.
        Rows that need no send (skipped, out of attempts) are settled first; the rest are sent per
        channel by at most `delivery.concurrency[channel]` lanes, each a coroutine that holds one
        of the channel's slots and sends row after row (not one task per row: task, semaphore
        and timer churn per row was a tenth of the dispatcher's CPU)."""
        by_channel: dict[str, list[int]] = {}
        for index, row in enumerate(batch.rows):
            settled = self._settle_without_sending(row)
            if settled is not None:
                batch.outcomes[index] = settled
                batch.finished.append(index)
                batch.started += 1
            else:
                by_channel.setdefault(row["channel"], []).append(index)
        if by_channel:
            await asyncio.gather(*(self._send_channel(name, indexes, batch, now, now_at)
                                   for name, indexes in by_channel.items()))

    async def _send_channel(self, name: str, indexes: list[int], batch: BatchInFlight, now: datetime,
                            now_at: float) -> None:
        assert self.limits is not None
        channel = self.channels[name]
        slots = self.limits(name)
        pending = iter(indexes)
        rows, outcomes, finished = batch.rows, batch.outcomes, batch.finished

        async def lane() -> None:
            async with slots:
                for index in pending:
                    batch.started += 1
                    outcomes[index] = await self._deliver_one(channel, rows[index], now, now_at)
                    finished.append(index)

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

    async def _deliver_one(self, channel: Channel, row: dict, now: datetime, now_at: float) -> Outcome:
        """`now_at`: the loop's time when `now` was read (the attempt's start is `now` plus the
        loop time since, so its order and duration need no second read of the engine clock)."""
        try:
            message = self._message(row, now)
        except SecretUnavailable as exc:
            return self._held_for_key(row, exc, now)
        loop_time = asyncio.get_running_loop().time
        started = loop_time()
        try:
            result = await channel.send(message)
        except TemplateFailure as exc:
            result = DeliveryResult.permanent(str(exc)[:300])
        except NotifyError as exc:  # retrying will not help
            result = DeliveryResult.permanent(str(exc)[:300])
        except Exception as exc:  # noqa: BLE001 - one bad notification never stops the batch
            log.warning("notification %s: unexpected %s", row["id"], type(exc).__name__)
            result = DeliveryResult.transient(f"internal error: {type(exc).__name__}")
        outcome = self._outcome(row, result, now)
        outcome.result = result
        outcome.started_at = now + timedelta(seconds=started - now_at)
        outcome.duration_ms = round((loop_time() - started) * 1000)
        outcome.claimed_at = now
        return outcome

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
        delay = max(MIN_RETRY_DELAY, min(delivery.backoff_max,
                                         max(delivery.backoff_base, (now - row["created_at"]).total_seconds())))
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
            if row.get("destination_opted_out"):
                return f"destination unsubscribed from {row['kind']}"  # one-click (engine/unsubscribe.py)
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
        if row.get("note"):
            # A notice (a disabled destination): why this message exists, shown with the context.
            alert["context"] = {**alert["context"], "notice": row["note"]}
        group = None
        if row["transition"] == "group":
            # A group message (issue 15, engine.noise): no alert of its own; its members came
            # with the claim (the first grouping.list_max of them) and how many there are.
            group = dict(key=row.get("group_key"), size=row.get("member_count") or 0,
                         members=_load_context(row.get("members")) or [],
                         grouped_payload=bool(row.get("grouped_payload")))
            alert = dict(alert, id=None, tenant_id=row["tenant_id"])
        return Message(notification_id=row["id"], tenant_id=row["tenant_id"],
                       alert_id=row["alert_id"], channel=row["channel"], recipient=recipient,
                       idempotency_key=row["idempotency_key"], transition=row["transition"] or "opened",
                       reminder_no=row["reminder_no"], severity=row["severity"] or row["alert_severity"],
                       attempt=row["send_attempts"], now=now, alert=alert, secret=secret,
                       destination_id=row["destination_id"], timezone=row.get("destination_timezone"),
                       locale=row.get("destination_locale"), group=group)

    def _outcome(self, row: dict, result: DeliveryResult, now: datetime) -> Outcome:
        if result.kind == "sent":
            return Outcome("sent", error=result.error, sent_at=now)
        if result.kind == "permanent":
            return Outcome("failed", error=result.error, disable_destination=result.disable_destination)
        delivery = self.config.delivery
        attempts = row["send_attempts"]
        if attempts >= delivery.max_attempts:
            return Outcome("failed", error=f"gave up after {attempts} attempts: {result.error}")
        delay = retry_delay(attempts, delivery.backoff_base, delivery.backoff_max, self.rng, result.retry_after,
                            delivery.retry_after_max)
        return Outcome("queued", error=result.error, next_attempt_at=now + timedelta(seconds=delay))

    # ------------------------------------------------------------------ one row, outside a batch

    async def attempt_one(self, row: dict, now: datetime) -> Outcome:
        """One claimed row (claim_due's shape) through a batch's own per-row path: settled without
        sending, or message, send and outcome. For `destinations test` (engine.testsend), which
        then writes the outcome with `record`, the statement of every batch."""
        settled = self._settle_without_sending(row)
        if settled is not None:
            return settled
        return await self._deliver_one(self.channels[row["channel"]], row, now, asyncio.get_running_loop().time())


def _disabled_note(row: dict, outcome: Outcome) -> str:
    """The notice the tenant's other destinations and the ops routes get when one is disabled."""
    from engine.destinations import masked_target

    return (f"The {row['channel']} destination {masked_target(row['recipient'])} ({row['destination_id']}) was "
            f"disabled: {outcome.error or 'gone'}. Nothing more is sent to it until it is added again.")


def _excerpt(text: str) -> str:
    """An answer's start as the ledger keeps it: redacted like every log line (a receiver may echo
    a token or an address), then cut to EXCERPT_BYTES of UTF-8. A NUL becomes U+FFFD: PostgreSQL's
    text (and jsonb) cannot hold it, and it would fail the batch's results."""
    redacted = REDACTOR.redact(text.replace("\x00", "\ufffd"))
    cut = redacted.encode()[:EXCERPT_BYTES]
    return cut.decode("utf-8", "ignore")


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
    try:
        while not stop_event.is_set():
            if app.config.delivery.workers == 0:
                # A copy that does not deliver (an API-only notifyd, say): nothing to claim; a
                # reload that gives it workers starts delivering at the next poll.
                await asyncio.to_thread(stop_event.wait, float(app.config.delivery.poll_interval))
                continue
            # One dispatcher per config. A reload (SIGHUP replaces app.config) ends the pass after
            # the batches in flight; the old dispatcher closes its channels and a new one is built
            # from the new config (channels, SSRF guard, timeouts, key, limits, routes) before the
            # next claim.
            async with Dispatcher(app, resolve=resolve) as dispatcher:
                while not stop_event.is_set() and dispatcher.config is app.config:
                    if listener is None or listener.closed:
                        # Said once per outage, not once per poll.
                        listener = _listen(app, quiet=listen_failed)
                        listen_failed = listener is None
                    try:
                        # Sends left straggling finish while this loop waits for work (close waits for them).
                        summary = await dispatcher.deliver_until_idle(stop_event, wait_for_stragglers=False)
                        if summary.claimed:
                            log.info("delivered: %s", summary)
                    except Exception as exc:  # noqa: BLE001 - the loop survives a database hiccup
                        if is_connection_error(exc):
                            # The health probe logs the outage once; claims left unrecorded run out
                            # (delivery.lease) and are sent again once the database is back.
                            log.debug("delivery pass: database unavailable: %s", one_line(exc))
                        else:
                            log.exception("delivery pass failed")
                    if dispatcher.config is app.config:
                        await asyncio.to_thread(_wait_for_work, app, listener, stop_event)
            if not stop_event.is_set():
                log.info("dispatcher: config reloaded; rebuilding channels, key and limits")
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
