"""POST /v1/events group commit (engine/api/event_batches.py), driven directly on a real database:
callers answered by a large batch are waited for and go together in the next one, a lone or
independent caller never waits, a caller that goes away never cancels its batch, and a failing
batch answers every request in it."""

from __future__ import annotations

import asyncio
import functools
import itertools
from datetime import timedelta

from engine.alerts import event_change
from engine.api.event_batches import EventBatches

TENANT = "7a1c2d3e-0000-4000-8000-0000000000{:02d}"
NEVER = 3600.0   # a linger that would hang the test if the wait did not end on its count


def change(n: int):
    return event_change(TENANT.format(n), "PAYMENT_FAILED", context={"invoice": f"inv-{n}"}, actor="billing")


class Runner:
    """The API's run_blocking (the call in a thread), recording each batch's size; the batch
    numbered i waits for `gates[i]` if there is one, and `begun` gets i as it starts."""

    def __init__(self, fail: bool = False):
        self.sizes: list[int] = []
        self.fail = fail
        self.gates: dict[int, asyncio.Event] = {}
        self.begun: asyncio.Queue[int] = asyncio.Queue()

    async def __call__(self, call: functools.partial):
        index = len(self.sizes)
        self.sizes.append(len(call.args[1]))
        self.begun.put_nowait(index)
        if index in self.gates:
            await self.gates[index].wait()
        if self.fail:
            raise RuntimeError("the database went away")
        return await asyncio.to_thread(call)

    async def until_begun(self, index: int) -> None:
        while await self.begun.get() != index:
            pass


def slow_transactions():
    """An injected monotonic clock on which every transaction takes 100 s, so the wait is bounded
    by `linger` alone."""
    return functools.partial(next, itertools.count(0.0, 100.0))


async def settle():
    for _ in range(20):   # let every ready task run (no wall-clock wait)
        await asyncio.sleep(0)


def alerts(app) -> int:
    with app.databases.begin("notify") as conn:
        return conn.exec_driver_sql("SELECT count(*) FROM notify.alerts").scalar()


async def one_then_four(batches, runner) -> list:
    """A batch of one, and four requests that came meanwhile: a batch of four."""
    runner.gates[0] = asyncio.Event()
    first = asyncio.create_task(batches.apply(change(0)))
    await runner.until_begun(0)
    four = [asyncio.create_task(batches.apply(change(n))) for n in range(1, 5)]
    await settle()
    runner.gates[0].set()
    return await asyncio.gather(first, *four)


def test_callers_answered_by_a_large_batch_are_waited_for_and_go_together(app):
    runner = Runner()

    async def scenario():
        batches = EventBatches(app, runner, linger=NEVER, siblings=4, monotonic=slow_transactions())
        first = await one_then_four(batches, runner)
        # Those four callers come back one after another: the next batch waits for all four.
        again = []
        for n in range(5, 9):
            again.append(asyncio.create_task(batches.apply(change(n))))
            await settle()
        return first + await asyncio.gather(*again)

    outcomes = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert runner.sizes == [1, 4, 4]
    assert [o.transition for o in outcomes] == ["opened"] * 9
    assert alerts(app) == 9


def test_a_lone_caller_never_waits(app):
    runner = Runner()

    async def scenario():
        batches = EventBatches(app, runner, linger=NEVER, siblings=4, monotonic=slow_transactions())
        return [await batches.apply(change(n)) for n in range(3)]

    outcomes = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert runner.sizes == [1, 1, 1]
    assert [o.transition for o in outcomes] == ["opened"] * 3


def test_after_a_wait_the_callers_did_not_repay_the_next_batch_goes_at_once(app):
    runner = Runner()
    runner.gates = {2: asyncio.Event(), 3: asyncio.Event()}

    async def scenario():
        batches = EventBatches(app, runner, linger=0.05, siblings=4, monotonic=slow_transactions())
        await one_then_four(batches, runner)
        # The next batch waits for those four callers; one sender comes (independent senders, as
        # a paced feed is): the linger (0.05 s) runs out and it goes alone.
        lone = asyncio.create_task(batches.apply(change(5)))
        await runner.until_begun(2)
        rest = [asyncio.create_task(batches.apply(change(n))) for n in range(6, 10)]
        await settle()
        runner.gates[2].set()
        await runner.until_begun(3)   # those four together, right after
        last = asyncio.create_task(batches.apply(change(10)))
        await settle()
        # That wait was in vain, so the batch after these four does not wait (it would, forever).
        batches.linger = NEVER
        runner.gates[3].set()
        return await asyncio.gather(lone, *rest, last)

    outcomes = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert runner.sizes == [1, 4, 1, 4, 1]
    assert [o.transition for o in outcomes] == ["opened"] * 6
    assert alerts(app) == 11


def test_a_caller_that_goes_away_never_cancels_its_batch(app):
    runner = Runner()
    runner.gates = {0: asyncio.Event()}

    async def scenario():
        batches = EventBatches(app, runner, linger=NEVER, siblings=4, monotonic=slow_transactions())
        gone = asyncio.create_task(batches.apply(change(0)))
        stays = asyncio.create_task(batches.apply(change(1)))
        await runner.until_begun(0)
        gone.cancel()   # the client hung up while its transaction waited
        await settle()
        runner.gates[0].set()
        return await stays

    assert asyncio.run(asyncio.wait_for(scenario(), 60)).transition == "opened"
    assert alerts(app) == 2


def test_a_failing_batch_answers_each_of_its_requests_and_the_next_batch_goes(app):
    runner = Runner(fail=True)

    async def scenario():
        batches = EventBatches(app, runner, linger=NEVER, siblings=4, monotonic=slow_transactions())
        answers = await asyncio.gather(*(batches.apply(change(n)) for n in range(6)), return_exceptions=True)
        runner.fail = False
        # Its callers got errors and are not waited for: the next request goes at once.
        return answers, await batches.apply(change(6))

    answers, after = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert runner.sizes == [6, 1]
    assert [type(a) for a in answers] == [RuntimeError] * 6
    assert after.transition == "opened"
    assert alerts(app) == 1


def test_a_key_repeated_while_waiting_goes_in_the_next_batch_and_answers_refreshed(app):
    from engine.clock import ManualClock

    class TickingClock(ManualClock):   # each transaction its own instant, as on a real clock
        def now(self):
            self.advance(timedelta(milliseconds=1))
            return super().now()

    app.clock = TickingClock(app.clock.now())
    runner = Runner()

    async def scenario():
        batches = EventBatches(app, runner, linger=NEVER, siblings=4, monotonic=slow_transactions())
        await one_then_four(batches, runner)
        # The callers come back, one of them twice with the same key: it cannot share a batch
        # with itself, so the wait still ends and the repeat goes next, seeing the first.
        tasks = [asyncio.create_task(batches.apply(change(n))) for n in (5, 6, 7, 5)]
        return await asyncio.gather(*tasks)

    outcomes = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert [o.transition for o in outcomes] == ["opened", "opened", "opened", "refreshed"]
    assert runner.sizes == [1, 4, 3, 1]


def test_a_batch_counts_each_transition_it_made(app):
    from engine import metrics
    from engine.alerts import apply_events

    def opened() -> float:
        return metrics.REGISTRY.get_sample_value(
            "notify_alert_transitions_total", {"kind": "PAYMENT_FAILED", "transition": "opened"}) or 0

    before = opened()
    apply_events(app, [change(n) for n in range(3)])
    assert opened() - before == 3
