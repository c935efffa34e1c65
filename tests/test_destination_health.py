"""Destination health (issue 13, item 4): failed attempts in a row pause a destination for a
growing interval; its notifications wait without spending attempts, one probes when the pause
ends, and racing dispatchers neither probe twice nor stack pauses."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import timedelta

import psycopg
import pytest
from aiohttp import web
from psycopg.rows import dict_row
from sqlalchemy import text

from channels.base import DeliveryResult
from engine import metrics
from engine.cli import main
from engine.dispatcher import DISPATCHER_SESSION, Dispatcher, Outcome, deliver_due
from engine.planner import plan_notifications
from engine.queries import query, raw_query
from tests.daemon_harness import wait_for
from tests.delivery_support import OTHER_TENANT, add_dest, insert_alert, notifications


@pytest.fixture
def hook_app(app):
    app.config.channels.webhook.allow_private_networks = True
    delivery = app.config.delivery
    delivery.pause_after_failures, delivery.pause_base, delivery.pause_max = 3, 60, 100
    return app


@pytest.fixture
def answer(receiver):
    """The receiver answers this status (mutable) on every path."""
    state = {"status": 503}

    async def respond(request, _body):
        return web.Response(status=state["status"], text="down" if state["status"] >= 300 else "ok")

    receiver.responder = respond
    return state


def queue(app, url: str, alerts: int, *, tenant_id=None) -> str:
    now = app.clock.now()
    kwargs = {"tenant_id": tenant_id} if tenant_id else {}
    with app.databases.begin("notify") as conn:
        destination = add_dest(conn, now, "webhook", url, **kwargs)
        for _ in range(alerts):
            insert_alert(conn, now, **kwargs)
        plan_notifications(conn, app.config, now)
    return destination


def health(app, destination: str) -> dict:
    with app.databases.begin("notify") as conn:
        return dict(conn.execute(text(
            "SELECT last_success_at, last_failure_at, consecutive_failures, pause_level, paused_at, paused_until"
            " FROM notify.destinations WHERE id = :id"), dict(id=destination)).mappings().one())


def rows_of(app, destination: str) -> list[dict]:
    with app.databases.begin("notify") as conn:
        return [r for r in notifications(conn) if str(r["destination_id"]) == destination]


def test_failures_in_a_row_pause_the_destination_and_its_notifications_wait_without_spending_attempts(
        hook_app, receiver, answer):
    app, start = hook_app, hook_app.clock.now()
    down = queue(app, receiver.url("/down"), 5)
    assert deliver_due(app).retrying == 5
    state = health(app, down)
    assert (state["consecutive_failures"], state["pause_level"]) == (5, 1)
    assert state["paused_until"] == start + timedelta(seconds=60)
    assert len(receiver.received) == 5

    # Past every row's own retry time but within the pause: nothing is claimed, no attempt spent.
    app.clock.advance(timedelta(seconds=30))
    assert deliver_due(app).claimed == 0
    assert [r["send_attempts"] for r in rows_of(app, down)] == [1] * 5
    with app.databases.begin("notify") as conn:   # the dispatcher sleeps until the pause ends
        assert conn.execute(query("dispatcher", "next_due")).scalar() == start + timedelta(seconds=60)

    # The pause ends: one probe, which fails, and the next pause is twice as long (capped at 100 s).
    app.clock.advance(timedelta(seconds=31))
    assert deliver_due(app).claimed == 1
    state = health(app, down)
    assert (state["consecutive_failures"], state["pause_level"]) == (6, 2)
    assert state["paused_until"] == app.clock.now() + timedelta(seconds=100)
    assert deliver_due(app).claimed == 0

    # The receiver is back: the next probe succeeds and the rest follow in the same pass.
    answer["status"] = 200
    app.clock.advance(timedelta(seconds=100))
    summary = deliver_due(app)
    assert (summary.claimed, summary.sent) == (5, 5)
    state = health(app, down)
    assert (state["consecutive_failures"], state["pause_level"], state["paused_until"]) == (0, 0, None)
    assert state["last_success_at"] >= app.clock.now()
    assert sum(r["send_attempts"] for r in rows_of(app, down)) == 5 + 1 + 1 + 4
    assert len(receiver.received) == 5 + 1 + 5


def test_a_success_resets_the_count_and_fewer_failures_than_the_limit_pause_nothing(hook_app, receiver, answer):
    app = hook_app
    destination = queue(app, receiver.url("/x"), 2)
    deliver_due(app)
    assert (health(app, destination)["consecutive_failures"], health(app, destination)["pause_level"]) == (2, 0)
    answer["status"] = 200
    app.clock.advance(timedelta(minutes=5))
    assert deliver_due(app).sent == 2
    state = health(app, destination)
    assert (state["consecutive_failures"], state["pause_level"]) == (0, 0)
    assert state["last_success_at"] is not None and state["last_failure_at"] is not None


def test_a_healthy_destinations_row_is_rewritten_at_most_once_a_second(hook_app, receiver, answer):
    # A sent after a sent within the second changes nothing worth a new row version (xmin stays).
    app = hook_app
    answer["status"] = 200

    def one_more_alert():
        with app.databases.begin("notify") as conn:
            insert_alert(conn, app.clock.now())
            plan_notifications(conn, app.config, app.clock.now())

    def version() -> tuple:
        with app.databases.begin("notify") as conn:
            return tuple(conn.execute(text("SELECT xmin::text, last_success_at FROM notify.destinations"
                                           " WHERE id = :id"), dict(id=destination)).one())

    destination = queue(app, receiver.url("/up"), 1)
    assert deliver_due(app).sent == 1
    first = version()
    one_more_alert()
    assert deliver_due(app).sent == 1
    assert version() == first
    app.clock.advance(timedelta(seconds=2))
    one_more_alert()
    assert deliver_due(app).sent == 1
    xmin, last_success_at = version()
    assert xmin != first[0] and last_success_at > first[1] + timedelta(seconds=1)


def test_a_paused_destination_holds_up_only_its_own_notifications(hook_app, receiver, answer):
    app = hook_app
    down = queue(app, receiver.url("/down"), 3)
    deliver_due(app)
    assert health(app, down)["pause_level"] == 1
    answer["status"] = 200
    healthy = queue(app, receiver.url("/up"), 2, tenant_id=OTHER_TENANT)
    assert deliver_due(app).sent == 2
    assert {r["status"] for r in rows_of(app, healthy)} == {"sent"}
    assert {r["status"] for r in rows_of(app, down)} == {"queued"}


def test_pausing_off_never_pauses(hook_app, receiver, answer):
    hook_app.config.delivery.pause_after_failures = 0
    destination = queue(hook_app, receiver.url("/down"), 4)
    deliver_due(hook_app)
    state = health(hook_app, destination)
    assert (state["consecutive_failures"], state["pause_level"], state["paused_until"]) == (4, 0, None)


def _record_in_open_transaction(app, dispatcher: Dispatcher, rows, outcomes, token) -> psycopg.Connection:
    """Runs record_results in a transaction left open (its row locks held) on a connection of its own."""
    conn = app.databases.connect_raw("notify", settings=DISPATCHER_SESSION)
    conn.execute(raw_query("dispatcher", "record_results"), dispatcher._record_params(rows, outcomes, token))
    return conn


def _wait_until_blocked(app, what: str) -> None:
    def blocked() -> bool:
        with app.databases.begin("notify") as conn:
            return bool(conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database()")).scalar())

    wait_for(blocked, what, timeout=20)


def test_two_dispatchers_recording_failures_at_once_pause_the_destination_once(hook_app, receiver, answer):
    app = hook_app
    app.config.delivery.batch_size = 3
    destination = queue(app, receiver.url("/down"), 6)
    start = app.clock.now()
    first, second = Dispatcher(app), Dispatcher(app)
    first_token, second_token = uuid.uuid4(), uuid.uuid4()
    first_rows = first.claim(start, first_token)
    second_rows = second.claim(start, second_token)
    assert len(first_rows) == len(second_rows) == 3
    failed = DeliveryResult.transient("HTTP 503", code="503")

    def outcomes(rows):
        return [Outcome("queued", error="HTTP 503", next_attempt_at=start + timedelta(seconds=5), result=failed,
                        started_at=start, duration_ms=3, claimed_at=start) for _ in rows]

    app.clock.advance(timedelta(seconds=1))    # both batches' sends started before either recorded
    held = _record_in_open_transaction(app, first, first_rows, outcomes(first_rows), first_token)
    try:
        racing = threading.Thread(target=second.record, args=(second_rows, outcomes(second_rows), second_token))
        racing.start()
        _wait_until_blocked(app, "the second result statement waiting for the destination's row")
        held.commit()
        racing.join(20)
    finally:
        held.close()
    state = health(app, destination)
    assert (state["consecutive_failures"], state["pause_level"]) == (6, 1)
    assert state["paused_until"] == start + timedelta(seconds=1 + 60)


def test_two_dispatchers_racing_for_the_end_of_a_pause_send_one_probe(hook_app, receiver, answer):
    app = hook_app
    destination = queue(app, receiver.url("/down"), 4)
    deliver_due(app)
    app.clock.advance(timedelta(seconds=61))
    now = app.clock.now()
    first, second = Dispatcher(app), Dispatcher(app)
    params = first._claim_params(now, uuid.uuid4())
    held = app.databases.connect_raw("notify", settings=DISPATCHER_SESSION, row_factory=dict_row)
    try:
        probe = held.execute(raw_query("dispatcher", "claim_due"), params).fetchall()
        claimed_by_second: list = []
        racing = threading.Thread(target=lambda: claimed_by_second.extend(second.claim(now, uuid.uuid4())))
        racing.start()
        _wait_until_blocked(app, "the second claim waiting for the destination's row")
        held.commit()
        racing.join(20)
    finally:
        held.close()
    assert len(probe) == 1 and str(probe[0]["destination_id"]) == destination
    assert claimed_by_second == []
    assert health(app, destination)["paused_until"] == now + timedelta(seconds=app.config.delivery.lease)


def test_destinations_list_shows_health_and_the_gauge_counts_paused_destinations(
        hook_app, receiver, answer, config_file, capsys):
    app = hook_app
    down = queue(app, receiver.url("/down"), 3)
    deliver_due(app)
    cfg = str(config_file())
    assert main(["destinations", "list", "--json", "--config", cfg]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["id"] == down and listed["consecutive_failures"] == 3 and listed["last_success_at"] is None
    assert listed["paused_until"] == (app.clock.now() + timedelta(seconds=60)).isoformat()
    assert main(["destinations", "list", "--config", cfg]) == 0
    header = capsys.readouterr().out.splitlines()[0].split()
    assert header[-3:] == ["LAST_SUCCESS_AT", "CONSECUTIVE_FAILURES", "PAUSED_UNTIL"]

    collector = metrics.DatabaseStateCollector(lambda: app.databases, app.clock.now, cache_seconds=0)
    gauges = {family.name: family for family in collector.collect()}
    assert gauges["notify_destinations_paused"].samples[0].value == 1
    app.clock.advance(timedelta(seconds=61))
    gauges = {family.name: family for family in collector.collect()}
    assert gauges["notify_destinations_paused"].samples[0].value == 0


def test_a_destination_disabled_by_410_tells_the_tenants_other_destinations_and_the_ops_routes_once(app, receiver):
    from engine.config import RouteConfig

    app.config.channels.webhook.allow_private_networks = True
    app.config.routes = [RouteConfig(name="ops", channel="webhook", target=receiver.url("/ops"))]
    now = app.clock.now()
    with app.databases.begin("notify") as conn:
        gone = add_dest(conn, now, "webhook", receiver.url("/status/410"))
        add_dest(conn, now, "webhook", receiver.url("/ok"))
        add_dest(conn, now, "webhook", receiver.url("/other-tenant"), tenant_id=OTHER_TENANT)
        for _ in range(2):   # two notifications meet the 410 in one batch: still one notice each
            insert_alert(conn, now)
        plan_notifications(conn, app.config, now)
    deliver_due(app)

    def posts(path: str) -> list[dict]:
        return [r.json() for r in receiver.received if r.path == path]

    for path in ("/ok", "/ops"):
        notices = [p for p in posts(path) if p["type"] == "alert.destination_disabled"]
        assert len(notices) == 1, path
        notice = notices[0]["data"]["alert"]["context"]["notice"]
        assert gone in notice and "HTTP 410" in notice
        assert len([p for p in posts(path) if p["type"] == "alert.opened"]) == 2
    assert [p["type"] for p in posts("/other-tenant")] == []
    with app.databases.begin("notify") as conn:
        disabled = conn.execute(text("SELECT enabled FROM notify.destinations WHERE id = :id"), dict(id=gone)).scalar()
        statuses = {r["status"] for r in notifications(conn) if r["transition"] == "destination_disabled"}
    assert disabled is False and statuses == {"sent"}
