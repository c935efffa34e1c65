"""Alert lifecycle under frozen time: open, refresh, hysteresis, reopen, ack, month rollover,
escalation, and two detector passes at once."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from engine.alerts import ack_alert, list_alerts, resolve_alert
from engine.collectors.push import record_snapshots
from engine.detect import run_detection

from engine.config import PlanConfig


@pytest.fixture
def config(config):
    # The limits of the shipped config.yaml's default plan.
    config.plans = {"default": PlanConfig(runs_used=1000, storage_gb=10, records_count=100000,
                                          api_calls=1000000, wallet_floor_cents=500)}
    return config


TENANT = "6f1c2d3e-0000-4000-8000-000000000001"
BASE = "6f1c2d3e-0000-4000-8000-00000000b001"


def record(app, value, metric="runs_used", base=BASE, tenant=TENANT):
    result = record_snapshots(app, [{"tenant_id": tenant, "base_id": base, "metric": metric, "value": value}])
    assert result.written == 1, result.rejected


def alerts_by_key(app):
    return {a["dedupe_key"]: a for a in list_alerts(app)}


def test_first_crossing_opens_one_alert_per_level_with_contract_keys(app, clock):
    record(app, 850)  # default plan: runs_used 1000 -> 85 %
    summary = run_detection(app)
    alerts = alerts_by_key(app)
    assert list(alerts) == [f"runs:80pct:2026-11:base={BASE}"]
    alert = alerts[f"runs:80pct:2026-11:base={BASE}"]
    assert (alert["kind"], alert["severity"], alert["status"]) == ("RUNS_THRESHOLD", "warn", "open")
    assert (alert["transition"], alert["transition_seq"]) == ("opened", 1)
    assert alert["context"]["value"] == 850 and alert["context"]["limit"] == 1000
    assert alert["context"]["percent"] == 85.0 and alert["context"]["plan"] == "default"
    assert alert["context"]["period"] == "2026-11"
    assert summary.count("opened") == 1

    clock.advance(timedelta(minutes=1))
    record(app, 1200)
    run_detection(app)
    alerts = alerts_by_key(app)
    assert set(alerts) == {f"runs:80pct:2026-11:base={BASE}", f"runs:100pct:2026-11:base={BASE}"}
    assert alerts[f"runs:100pct:2026-11:base={BASE}"]["severity"] == "critical"


def test_condition_holding_moves_last_seen_and_creates_nothing(app, clock):
    record(app, 900)
    run_detection(app)
    first = list_alerts(app)[0]
    clock.advance(timedelta(minutes=5))
    record(app, 910)
    run_detection(app)
    [again] = list_alerts(app)
    assert again["id"] == first["id"]
    assert again["last_seen_at"] == clock.now() and again["first_seen_at"] == first["first_seen_at"]
    assert again["transition_seq"] == 1 and again["context"]["value"] == 910


def test_steady_state_pass_rewrites_no_alert(app, databases, clock):
    record(app, 900)
    run_detection(app)
    with databases.begin("notify") as conn:
        xmin_before = conn.exec_driver_sql("SELECT xmin::text FROM notify.alerts").scalar_one()
    clock.advance(timedelta(minutes=1))
    summary = run_detection(app)
    run_detection(app, full_pass=True)
    with databases.begin("notify") as conn:
        xmin_after = conn.exec_driver_sql("SELECT xmin::text FROM notify.alerts").scalar_one()
    assert summary.folded == 0
    assert xmin_after == xmin_before  # the row was not rewritten


def test_each_pass_while_the_condition_holds_moves_last_seen_without_new_snapshots(app, clock):
    record(app, 900)
    captured = clock.now()
    run_detection(app)
    clock.advance(timedelta(minutes=3))
    run_detection(app)
    [alert] = list_alerts(app)
    assert alert["last_seen_at"] == clock.now()  # seen holding at the latest pass
    assert alert["last_evidence_at"] == captured  # the newest snapshot that showed it
    assert alert["first_seen_at"] == captured


def test_resolved_alert_keeps_its_last_seen(app, clock):
    record(app, 900)
    run_detection(app)
    clock.advance(timedelta(minutes=1))
    record(app, 10)
    run_detection(app)
    clock.advance(timedelta(minutes=5))
    run_detection(app)
    [alert] = list_alerts(app)
    assert alert["status"] == "resolved" and alert["last_seen_at"] == clock.now() - timedelta(minutes=6)


def test_clearing_waits_for_hysteresis_then_resolves(app, clock):
    record(app, 820)
    run_detection(app)
    clock.advance(timedelta(minutes=1))
    record(app, 770)  # below 80 % but above 75 % (80 - 5 points of hysteresis): still open
    run_detection(app)
    assert list_alerts(app)[0]["status"] == "open"
    clock.advance(timedelta(minutes=1))
    record(app, 740)
    run_detection(app)
    [alert] = list_alerts(app)
    assert (alert["status"], alert["transition"], alert["transition_seq"]) == ("resolved", "resolved", 2)
    assert alert["resolved_at"] == clock.now()
    assert alert["context"]["resolved_by"] == "condition_cleared"


def test_returning_condition_reopens_and_counts_it(app, clock):
    record(app, 820)
    run_detection(app)
    for value in (100, 830, 100, 840):
        clock.advance(timedelta(minutes=1))
        record(app, value)
        run_detection(app)
    [alert] = list_alerts(app)
    assert (alert["status"], alert["transition"]) == ("open", "reopened")
    assert alert["context"]["reopen_count"] == 2
    assert alert["transition_seq"] == 5  # opened, resolved, reopened, resolved, reopened


def test_acked_alert_stays_acked_while_condition_holds_and_still_auto_resolves(app, clock):
    record(app, 850)
    run_detection(app)
    [alert] = list_alerts(app)
    ack_alert(app, str(alert["id"]), actor="ops")
    clock.advance(timedelta(minutes=1))
    record(app, 990)
    run_detection(app)
    [held] = list_alerts(app)
    assert (held["status"], held["transition"], held["transition_seq"]) == ("ack", "acked", 2)
    assert held["last_seen_at"] == clock.now()
    clock.advance(timedelta(minutes=1))
    record(app, 10)
    run_detection(app)
    [cleared] = list_alerts(app)
    assert (cleared["status"], cleared["transition"], cleared["transition_seq"]) == ("resolved", "resolved", 3)


def test_new_billing_month_resolves_old_alerts_and_opens_under_new_key(app, clock):
    clock.current = datetime(2026, 11, 30, 23, 59, tzinfo=timezone.utc)
    record(app, 950)
    run_detection(app)
    clock.current = datetime(2026, 12, 1, 0, 0, 30, tzinfo=timezone.utc)
    summary = run_detection(app)
    assert summary.period_resolved == 1
    [old] = list_alerts(app)
    assert old["status"] == "resolved" and old["context"]["resolved_by"] == "period_end"
    # November's snapshot does not count against December.
    assert list_alerts(app, status="open") == []
    record(app, 960)
    run_detection(app)
    [new] = list_alerts(app, status="open")
    assert new["dedupe_key"] == f"runs:80pct:2026-12:base={BASE}"
    assert new["id"] != old["id"]


def test_wallet_low_opens_below_floor_and_escalates_at_zero(app, clock):
    record(app, 400, metric="wallet_balance_cents", base=None)  # floor 500
    run_detection(app)
    [alert] = list_alerts(app, kind="WALLET_LOW")
    assert (alert["severity"], alert["dedupe_key"]) == ("warn", "wallet:low:base=-")
    clock.advance(timedelta(minutes=1))
    record(app, -20, metric="wallet_balance_cents", base=None)
    run_detection(app)
    [alert] = list_alerts(app, kind="WALLET_LOW")
    assert (alert["severity"], alert["transition"], alert["transition_seq"]) == ("critical", "escalated", 2)
    clock.advance(timedelta(minutes=1))
    record(app, 510, metric="wallet_balance_cents", base=None)  # above floor, within 5 % hysteresis
    run_detection(app)
    assert list_alerts(app, kind="WALLET_LOW")[0]["status"] == "open"
    clock.advance(timedelta(minutes=1))
    record(app, 600, metric="wallet_balance_cents", base=None)
    run_detection(app)
    assert list_alerts(app, kind="WALLET_LOW")[0]["status"] == "resolved"


def test_plan_from_config_and_plan_change_reevaluates(database_urls, clock):
    from engine.app import App
    from engine.config import parse_config

    raw = {"databases": database_urls, "plans": {"default": {"storage_gb": 10}, "pro": {"storage_gb": 200}},
           "tenants": {TENANT: {"plan": "pro"}}}
    with App(parse_config(raw), clock) as app:
        record(app, "15.5", metric="storage_gb")
        run_detection(app)
        assert list_alerts(app) == []  # 15.5 of 200 GB
    raw["tenants"] = {}
    with App(parse_config(raw), clock) as app:
        summary = run_detection(app)  # the plan changed: every latest value is evaluated again
        assert summary.full_pass
        alerts = alerts_by_key(app)
        assert set(alerts) == {f"storage:80pct:2026-11:base={BASE}", f"storage:100pct:2026-11:base={BASE}"}
        alert = alerts[f"storage:100pct:2026-11:base={BASE}"]
        assert alert["kind"] == "STORAGE_THRESHOLD" and alert["severity"] == "critical"
        assert alert["context"]["value"] == 15.5 and alert["context"]["plan"] == "default"


def test_metric_left_out_of_plan_has_no_threshold_alerts(database_urls, clock):
    from engine.app import App
    from engine.config import parse_config

    raw = {"databases": database_urls, "plans": {"default": {"storage_gb": 10}}}
    with App(parse_config(raw), clock) as app:
        record(app, 10**9, metric="runs_used")
        run_detection(app)
        assert list_alerts(app) == []


def test_manual_resolve_of_a_still_firing_alert_reopens_on_next_evidence(app, clock):
    record(app, 850)
    run_detection(app)
    [alert] = list_alerts(app)
    resolve_alert(app, str(alert["id"]), actor="ops")
    clock.advance(timedelta(minutes=1))
    record(app, 860)
    run_detection(app)
    [again] = list_alerts(app)
    assert (again["status"], again["transition"], again["context"]["reopen_count"]) == ("open", "reopened", 1)


def test_two_concurrent_detection_passes_produce_one_alert(app, config, databases, clock):
    from engine.app import App

    tenants = [str(uuid.uuid4()) for _ in range(200)]
    record_snapshots(app, [{"tenant_id": t, "metric": "api_calls", "value": 2_000_000} for t in tenants])
    # Bounded waits: a pass that never reaches the barrier breaks it for the other thread, and a
    # pass that never ends fails the test here instead of stalling the run.
    barrier = threading.Barrier(2, timeout=60)
    errors = []

    def pass_in_own_app():
        try:
            with App(config, clock) as other:
                barrier.wait()
                run_detection(other)
        except Exception as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=pass_in_own_app, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a detection pass did not finish within 60 s"
    assert errors == []
    alerts = list_alerts(app)
    assert len(alerts) == 400  # 80 % and 100 % per tenant, each exactly once
    assert {a["transition_seq"] for a in alerts} == {1}
