"""Plan: each alert transition reaches each matching destination once."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import text

from tests.delivery_support import OTHER_TENANT, add_dest, insert_alert, notifications, transition_alert
from engine.config import RouteConfig
from engine.planner import plan_notifications


def plan(app) -> int:
    with app.databases.begin("notify") as conn:
        return plan_notifications(conn, app.config, app.clock.now())


def test_an_opened_alert_reaches_matching_destinations_and_routes_once(app):
    app.config.routes = [RouteConfig(name="ops-critical", channel="slack", target="COPS", min_severity="critical"),
                         RouteConfig(name="ops-runs", channel="email", target="ops@example.com",
                                     kinds=["RUNS_THRESHOLD"])]
    app.config.grouping.group_wait = 0   # ops routes' grouping (issue 15) would hold the email 30s
    now = app.clock.now()
    with app.databases.begin("notify") as conn:
        wanted = add_dest(conn, now, "webhook", "https://hooks.example.com/a")
        add_dest(conn, now, "email", "only-storage@example.com", kinds=["STORAGE_THRESHOLD"])
        add_dest(conn, now, "email", "only-critical@example.com", min_severity="critical")
        add_dest(conn, now, "email", "other-tenant@example.com", tenant_id=OTHER_TENANT)
        alert = insert_alert(conn, now, kind="RUNS_THRESHOLD", severity="warn")
    assert plan(app) == 2
    assert plan(app) == 0  # planning again changes nothing
    with app.databases.begin("notify") as conn:
        rows = notifications(conn)
    assert sorted(r["route_key"] for r in rows) == sorted([f"dest:{wanted}", "route:ops-runs"])
    assert {r["transition"] for r in rows} == {"opened"}
    assert all(str(r["alert_id"]) == alert and r["status"] == "queued" and r["next_attempt_at"] == now for r in rows)


def test_each_new_transition_is_planned_and_acked_notifies_nobody(app):
    now = app.clock.now()
    with app.databases.begin("notify") as conn:
        add_dest(conn, now, "webhook", "https://hooks.example.com/a")
        alert = insert_alert(conn, now)
    assert plan(app) == 1
    with app.databases.begin("notify") as conn:
        transition_alert(conn, alert, "escalated", now, severity="critical")
    assert plan(app) == 1
    with app.databases.begin("notify") as conn:
        transition_alert(conn, alert, "acked", now, status="ack")
    assert plan(app) == 0
    with app.databases.begin("notify") as conn:
        transition_alert(conn, alert, "resolved", now, status="resolved")
    assert plan(app) == 1
    with app.databases.begin("notify") as conn:
        rows = notifications(conn)
    assert [(r["transition"], r["transition_seq"], r["severity"]) for r in rows] == [
        ("opened", 1, "warn"), ("escalated", 2, "critical"), ("resolved", 4, "critical")]


def test_reminders_follow_the_interval_while_open_and_unacked_and_never_pile_up(app):
    app.config.delivery.reminder_interval = 3600
    now = app.clock.now()
    with app.databases.begin("notify") as conn:
        add_dest(conn, now, "webhook", "https://hooks.example.com/a")
        open_alert = insert_alert(conn, now)
        acked_alert = insert_alert(conn, now)
    assert plan(app) == 2
    with app.databases.begin("notify") as conn:
        transition_alert(conn, acked_alert, "acked", now, status="ack")
    app.clock.advance(timedelta(minutes=59))
    assert plan(app) == 0
    app.clock.advance(timedelta(minutes=1))
    assert plan(app) == 1           # the first reminder, for the open alert only
    assert plan(app) == 0
    app.clock.advance(timedelta(hours=3, minutes=30))
    assert plan(app) == 1           # three intervals later: one reminder (the 4th), not three
    with app.databases.begin("notify") as conn:
        reminders = notifications(conn, transition="reminder")
    assert [(str(r["alert_id"]), r["reminder_no"]) for r in reminders] == [(open_alert, 1), (open_alert, 4)]


def test_reminder_interval_zero_turns_reminders_off(app):
    app.config.delivery.reminder_interval = 0
    now = app.clock.now()
    with app.databases.begin("notify") as conn:
        add_dest(conn, now, "webhook", "https://hooks.example.com/a")
        insert_alert(conn, now)
    assert plan(app) == 1
    app.clock.advance(timedelta(days=3))
    assert plan(app) == 0


def test_planning_inside_a_rolled_back_transition_plans_nothing(app):
    now = app.clock.now()
    with app.databases.begin("notify") as conn:
        add_dest(conn, now, "webhook", "https://hooks.example.com/a")
    conn = app.databases.engine("notify").connect()
    tx = conn.begin()
    insert_alert(conn, now)
    assert plan_notifications(conn, app.config, now) == 1
    tx.rollback()
    conn.close()
    with app.databases.begin("notify") as conn:
        assert notifications(conn) == []


def test_two_racing_planners_plan_each_transition_once(app):
    now = app.clock.now()
    with app.databases.begin("notify") as conn:
        for i in range(3):
            add_dest(conn, now, "webhook", f"https://hooks.example.com/{i}")
        for _ in range(50):
            insert_alert(conn, now)
    first = app.databases.engine("notify").connect()
    tx = first.begin()
    assert plan_notifications(first, app.config, now) == 150
    second_result = []
    racer = threading.Thread(target=lambda: second_result.append(plan(app)))
    racer.start()
    racer.join(0.3)
    assert racer.is_alive()          # waits for the first planner's transaction
    tx.commit()
    first.close()
    racer.join(10)
    assert second_result == [0]
    with app.databases.begin("notify") as conn:
        assert conn.execute(text("SELECT count(*) FROM notify.notifications")).scalar() == 150
