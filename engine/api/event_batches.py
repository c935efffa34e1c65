"""Concurrent POST /v1/events requests applied as one transaction (engine.alerts.apply_events).

Each event's transaction serialises on the planner's lock and waits for its commit's fsync, so
applied one by one they cap the API at a few hundred events a second. Here the first request
goes at once, as before; the requests that arrive while a transaction is in flight wait for it
and then go together, in one transaction (group commit), each answered after that commit with
its own outcome. An alert named by two requests goes in two successive transactions, so the
second sees the first (a duplicate trigger answers `refreshed`, as it does one at a time).
"""

from __future__ import annotations

import asyncio
import functools
from typing import Awaitable, Callable

from engine.alerts import EventChange, EventOutcome, apply_events

MAX_BATCH = 500


class EventBatches:
    def __init__(self, engine_app, run_blocking: Callable[[Callable], Awaitable], *, max_batch: int = MAX_BATCH):
        self._app = engine_app
        self._run = run_blocking
        self.max_batch = max_batch
        self._queue: list[tuple[EventChange, asyncio.Future]] = []
        self._drainer: asyncio.Task | None = None

    async def apply(self, change: EventChange) -> EventOutcome:
        """The change's outcome, once the transaction that applied it committed."""
        future = asyncio.get_running_loop().create_future()
        self._queue.append((change, future))
        if self._drainer is None or self._drainer.done():
            # Its own task: a client that goes away cancels its request, never the batch.
            self._drainer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._queue:
            batch, later, keys = [], [], set()
            for item in self._queue:
                key = (item[0].tenant_id, item[0].dedupe_key)
                if key in keys or len(batch) >= self.max_batch:
                    later.append(item)
                else:
                    keys.add(key)
                    batch.append(item)
            self._queue = later
            try:
                outcomes = await self._run(functools.partial(apply_events, self._app, [c for c, _ in batch]))
            except Exception as exc:  # noqa: BLE001 - each request answers it (a 500, logged there)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for (_, future), outcome in zip(batch, outcomes):
                    if not future.done():
                        future.set_result(outcome)
