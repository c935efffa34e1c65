"""Concurrent POST /v1/events requests applied as one transaction (engine.alerts.apply_events).

Each event's transaction serialises on the planner's lock and waits for its commit's fsync, so
applied one by one they cap the API at a few hundred events a second. Here the first request
goes at once, as before; the requests that arrive while a transaction is in flight wait for it
and then go together, in one transaction (group commit), each answered after that commit with
its own outcome. An alert named by two requests goes in two successive transactions, so the
second sees the first (a duplicate trigger answers `refreshed`, as it does one at a time).

A transaction's cost is mostly fixed (the planner's statement, the commit), so a batch of 16
costs little more than a batch of 1. Callers that each wait for their answer before sending the
next event would otherwise split into two alternating halves: the callers answered by one commit
send again only after the next batch has started without them. So, like PostgreSQL's
commit_delay with commit_siblings, a batch that follows one of at least `siblings` requests
waits for as many requests as that batch answered (they are likely to come back), but at most
`linger` and at most as long as the last transaction took (waiting longer costs more than the
transaction it saves). After a smaller batch (a lone or paced caller) nothing waits, and after a
wait that ran out with fewer than half of them back (independent senders, not callers waiting
for their answers) the next batch does not wait either.
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Awaitable, Callable

from engine.alerts import EventChange, EventOutcome, apply_events

MAX_BATCH = 500
LINGER = 0.010    # seconds a batch may wait for the callers of the last one
SIBLINGS = 4      # a batch of this many shows concurrent callers worth waiting for


class EventBatches:
    def __init__(self, engine_app, run_blocking: Callable[[Callable], Awaitable], *, max_batch: int = MAX_BATCH,
                 linger: float = LINGER, siblings: int = SIBLINGS, monotonic: Callable[[], float] = time.monotonic):
        self._app = engine_app
        self._run = run_blocking
        self.max_batch = max_batch
        self.linger = linger
        self.siblings = siblings
        self._monotonic = monotonic
        self._queue: list[tuple[EventChange, asyncio.Future]] = []
        self._drainer: asyncio.Task | None = None
        self._last_size = 0          # requests in the last batch (0: none since the queue ran dry)
        self._last_seconds = 0.0     # how long its transaction took
        self._wanted = 0             # while lingering: the queue length that ends the wait
        self._lingered_in_vain = False
        self._enough: asyncio.Future | None = None

    async def apply(self, change: EventChange) -> EventOutcome:
        """The change's outcome, once the transaction that applied it committed."""
        future = asyncio.get_running_loop().create_future()
        self._queue.append((change, future))
        if self._enough is not None and len(self._queue) >= self._wanted and not self._enough.done():
            self._enough.set_result(None)
        if self._drainer is None or self._drainer.done():
            # Its own task: a client that goes away cancels its request, never the batch.
            self._drainer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while True:
            await self._linger()
            if not self._queue:
                self._last_size, self._lingered_in_vain = 0, False
                return
            batch, later, keys = [], [], set()
            for item in self._queue:
                key = (item[0].tenant_id, item[0].dedupe_key)
                if key in keys or len(batch) >= self.max_batch:
                    later.append(item)
                else:
                    keys.add(key)
                    batch.append(item)
            self._queue = later
            started = self._monotonic()
            try:
                outcomes = await self._run(functools.partial(apply_events, self._app, [c for c, _ in batch]))
            except Exception as exc:  # noqa: BLE001 - each request answers it (a 500, logged there)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                self._last_size = 0   # callers answered with an error are not waited for
            else:
                for (_, future), outcome in zip(batch, outcomes):
                    if not future.done():
                        future.set_result(outcome)
                self._last_size, self._last_seconds = len(batch), self._monotonic() - started

    async def _linger(self) -> None:
        """After a batch of `siblings` or more: waits until as many requests as it held are queued
        (beyond those already waiting), at most min(linger, the last transaction's time)."""
        if self._last_size < self.siblings or self.linger <= 0:
            return
        if self._lingered_in_vain:
            self._lingered_in_vain = False   # this batch goes at once; the next may wait again
            return
        waiting = len(self._queue)
        self._wanted = min(waiting + self._last_size, self.max_batch)
        if waiting >= self._wanted:
            return
        self._enough = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait([self._enough], timeout=min(self.linger, self._last_seconds))
            self._lingered_in_vain = len(self._queue) - waiting < (self._wanted - waiting) / 2
        finally:
            self._enough = None
