"""A transition and its notifications commit together: detection, events, ack and resolve plan
their notifications inside their own transaction, with no separate planning tick."""

from sqlalchemy import text

from engine.alerts import ack_alert, clear_event, raise_event, resolve_alert
from engine.collectors.push import record_snapshots
from engine.destinations import add_destination
from engine.detect import run_detection

TENANT = "6f1c2d3e-0000-4000-8000-000000000001"


def planned(app) -> list[tuple[str, str]]:
    with app.databases.begin("notify") as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT a.kind, n.transition FROM notify.notifications n JOIN notify.alerts a "
            "ON a.tenant_id = n.tenant_id AND a.id = n.alert_id ORDER BY n.created_at, a.kind, n.transition"))]


def with_destination(app) -> None:
    with app.databases.begin("notify") as conn:
        add_destination(conn, app.config, app.clock.now(), tenant_id=TENANT, channel="email",
                        target="ops@example.com")


def test_detection_plans_the_opened_alerts_notifications_in_its_transaction(app):
    app.config.plans["default"].runs_used = 1000
    with_destination(app)
    record_snapshots(app, [{"tenant_id": TENANT, "metric": "runs_used", "value": 850}])
    run_detection(app)
    assert planned(app) == [("RUNS_THRESHOLD", "opened")]


def test_event_raise_ack_and_resolve_plan_what_they_notify(app):
    with_destination(app)
    opened = raise_event(app, TENANT, "PAYMENT_FAILED", context={"invoice": "in_42"})
    assert planned(app) == [("PAYMENT_FAILED", "opened")]
    ack_alert(app, str(opened.alert_id), actor="ops")
    assert planned(app) == [("PAYMENT_FAILED", "opened")]  # an ack notifies nobody
    resolve_alert(app, str(opened.alert_id), actor="ops")
    assert planned(app) == [("PAYMENT_FAILED", "opened"), ("PAYMENT_FAILED", "resolved")]


def test_clearing_an_event_plans_its_resolved_notice(app):
    with_destination(app)
    raise_event(app, TENANT, "PAYMENT_FAILED")
    clear_event(app, TENANT, "PAYMENT_FAILED")
    assert [t for _, t in planned(app)] == ["opened", "resolved"]


def test_the_in_transaction_planner_takes_only_this_transactions_transitions_and_the_tick_takes_the_rest(app):
    from datetime import timedelta

    from engine.planner import plan_notifications, plan_transitions_of_this_transaction

    with_destination(app)
    earlier = app.clock.now() - timedelta(minutes=5)
    with app.databases.begin("notify") as conn:  # a transition left unplanned by some older writer
        conn.execute(text("INSERT INTO notify.alerts (tenant_id, kind, dedupe_key, transition_at, created_at) "
                          "VALUES (:tenant, 'WALLET_LOW', 'wallet:low:base=-', :at, :at)"),
                     {"tenant": TENANT, "at": earlier})
        assert plan_transitions_of_this_transaction(conn, app.config, app.clock.now()) == 0
    with app.databases.begin("notify") as conn:
        assert plan_notifications(conn, app.config, app.clock.now()) == 1
    assert planned(app) == [("WALLET_LOW", "opened")]
