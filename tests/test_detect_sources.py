"""Detection fed by the other sources and settings: RATE_LIMIT from logs, tenant plans from SQL,
configurable levels, stale snapshots, a lost latest_snapshots table, config validation."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from engine.alerts import list_alerts
from engine.app import App
from engine.collect import run_collection
from engine.collectors.push import record_snapshots
from engine.config import parse_config
from engine.detect import run_detection
from engine.errors import ConfigError

TENANT = "6f1c2d3e-0000-4000-8000-000000000001"
OTHER = "6f1c2d3e-0000-4000-8000-000000000002"
BASE = "6f1c2d3e-0000-4000-8000-00000000b001"


def app_with(database_urls, clock, **raw):
    raw = {"databases": database_urls, "plans": {"default": {"runs_used": 1000}}, **raw}
    return App(parse_config(raw), clock)


def test_rate_limit_alert_from_429s_in_the_logs_opens_and_clears(database_urls, databases, clock):
    with databases.begin("data_activity") as conn:
        conn.exec_driver_sql(
            "INSERT INTO data_activity.api_access_logs (occurred_at, tenant_id, base_id, route, method, status) "
            "SELECT %(at)s, %(t)s, %(b)s, '/v1/records', 'POST', 429 FROM generate_series(1, 12)",
            {"at": clock.now() - timedelta(seconds=30), "t": TENANT, "b": BASE})
    with app_with(database_urls, clock, detect={"rate_limit_threshold": 10, "rate_limit_window": "1m"}) as app:
        run_collection(app)
        run_detection(app)
        [alert] = list_alerts(app, kind="RATE_LIMIT")
        assert alert["dedupe_key"] == f"rate_limit:429:base={BASE}" and alert["status"] == "open"
        assert alert["context"]["value"] == 12 and alert["context"]["threshold"] == 10
        clock.advance(timedelta(minutes=2))  # the 429s left the window
        run_collection(app)
        run_detection(app)
        assert list_alerts(app, kind="RATE_LIMIT")[0]["status"] == "resolved"


@pytest.mark.fresh_database  # creates a table outside the four sections
def test_tenant_plans_from_a_sql_source(database_urls, databases, clock):
    with databases.begin("notify") as conn:
        conn.exec_driver_sql("CREATE TABLE public.subscriptions (tenant text, plan_name text)")
        conn.exec_driver_sql(f"INSERT INTO public.subscriptions VALUES ('{TENANT}', 'pro'), ('{OTHER}', 'nonesuch')")
    plans = {"default": {"runs_used": 1000}, "pro": {"runs_used": 100000}}
    source = {"database": "notify", "query": "SELECT tenant, plan_name FROM public.subscriptions"}
    with app_with(database_urls, clock, plans=plans, detect={"tenant_plans_sql": source}) as app:
        record_snapshots(app, [{"tenant_id": t, "metric": "runs_used", "value": 5000} for t in (TENANT, OTHER)])
        run_detection(app)
        alerts = list_alerts(app)
        # TENANT is on pro (5 % used); OTHER names an unknown plan and stays on default (500 %).
        assert {a["tenant_id"] for a in alerts} == {uuid.UUID(OTHER)}


def test_a_failing_tenant_plans_source_keeps_the_last_synced_mapping(database_urls, clock):
    plans = {"default": {"runs_used": 1000}, "pro": {"runs_used": 100000}}
    source = {"database": "notify", "query": "SELECT tenant_id, plan FROM public.no_such_table"}
    with app_with(database_urls, clock, plans=plans, tenants={TENANT: {"plan": "pro"}}) as app:
        run_detection(app)
    with app_with(database_urls, clock, plans=plans, tenants={TENANT: {"plan": "pro"}},
                  detect={"tenant_plans_sql": source}) as app:
        record_snapshots(app, [{"tenant_id": TENANT, "metric": "runs_used", "value": 5000}])
        run_detection(app)  # logs the failure, detects with TENANT still on pro
        assert list_alerts(app) == []


def test_configured_levels_replace_the_defaults(database_urls, clock):
    detect = {"thresholds": [{"percent": 50, "severity": "info"}, {"percent": 90, "severity": "critical"}]}
    with app_with(database_urls, clock, detect=detect) as app:
        record_snapshots(app, [{"tenant_id": TENANT, "metric": "runs_used", "value": 600}])
        run_detection(app)
        [alert] = list_alerts(app)
        assert (alert["dedupe_key"], alert["severity"]) == ("runs:50pct:2026-11:base=-", "info")


def test_an_older_snapshot_committed_late_does_not_override_a_newer_one(database_urls, clock):
    with app_with(database_urls, clock) as app:
        record_snapshots(app, [{"tenant_id": TENANT, "metric": "runs_used", "value": 900}])
        run_detection(app)
        clock.current -= timedelta(minutes=10)  # a collector whose clock (or commit) lagged
        record_snapshots(app, [{"tenant_id": TENANT, "metric": "runs_used", "value": 10}])
        clock.current += timedelta(minutes=11)
        run_detection(app)
        [alert] = list_alerts(app)
        assert alert["status"] == "open" and alert["context"]["value"] == 900


def test_lost_latest_snapshots_table_is_rebuilt_without_duplicate_alerts(database_urls, databases, clock):
    with app_with(database_urls, clock) as app:
        record_snapshots(app, [{"tenant_id": TENANT, "metric": "runs_used", "value": 900}])
        run_detection(app)
        before = list_alerts(app)
        with databases.begin("notify") as conn:  # what crash recovery does to an UNLOGGED table
            conn.exec_driver_sql("TRUNCATE notify.latest_snapshots")
        clock.advance(timedelta(minutes=1))
        summary = run_detection(app)
        assert summary.full_pass and summary.folded == 1
        after = list_alerts(app)
        for alert in before + after:
            alert.pop("last_seen_at")  # moves with every pass
        assert after == before


@pytest.mark.parametrize("detect, message", [
    ({"thresholds": [{"percent": 80, "severity": "loud"}]}, "detect.thresholds[0].severity"),
    ({"thresholds": [{"percent": 0, "severity": "warn"}]}, "detect.thresholds[0].percent"),
    ({"thresholds": []}, "detect.thresholds"),
    ({"hysteresis_percent": 150}, "detect.hysteresis_percent"),
    ({"rate_limit_window": "soon"}, "detect.rate_limit_window"),
    ({"parallelism": 0}, "detect.parallelism: expected 1 <= value <= 16"),
    ({"parallelism": "two"}, "detect.parallelism"),
    ({"colour": "red"}, "detect.colour: unknown key"),
])
def test_bad_detect_settings_name_the_key(detect, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_config({"detect": detect})


def test_bad_collect_settings_name_the_key():
    with pytest.raises(ConfigError, match=r"collect.http\[0\].url"):
        parse_config({"collect": {"http": [{"name": "x", "url": "ftp://example"}]}})
    with pytest.raises(ConfigError, match=r"collect.sql\[0\].query: required key is missing"):
        parse_config({"collect": {"sql": [{"name": "x", "database": "notify"}]}})


def test_wallet_runway_forecast_opens_its_own_alert_and_clears_when_burning_stops(database_urls, clock):
    detect = {"wallet_runway_days": 5, "wallet_burn_window": "3d"}
    plans = {"default": {"wallet_floor_cents": 100}}
    with app_with(database_urls, clock, plans=plans, detect=detect) as app:
        def wallet(value):
            record_snapshots(app, [{"tenant_id": TENANT, "metric": "wallet_balance_cents", "value": value}])
            run_detection(app)

        wallet(10_000)
        clock.advance(timedelta(days=1))
        wallet(9_000)  # 1,000 a day: 9 days left
        assert list_alerts(app) == []
        clock.advance(timedelta(days=1))
        wallet(6_000)  # 2,000 a day over the window (10,000 -> 6,000 in 2 days): 3 days left
        [alert] = list_alerts(app)
        assert (alert["kind"], alert["dedupe_key"], alert["severity"]) == ("WALLET_LOW", "wallet:runway:base=-", "warn")
        assert alert["context"]["burn_per_day"] == 2000 and alert["context"]["runway_days"] == 3
        clock.advance(timedelta(days=1))
        wallet(16_000)  # topped up: not falling any more
        [alert] = list_alerts(app)
        assert alert["status"] == "resolved"


def test_wallet_runway_is_off_unless_configured(database_urls, clock):
    with app_with(database_urls, clock, plans={"default": {"wallet_floor_cents": 100}}) as app:
        for value in (10_000, 1_000):
            record_snapshots(app, [{"tenant_id": TENANT, "metric": "wallet_balance_cents", "value": value}])
            clock.advance(timedelta(hours=1))
        run_detection(app)
        assert list_alerts(app) == []