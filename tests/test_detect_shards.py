"""Detection split over shards of tenants (detect.parallelism): each shard's pass is its own
transaction, and changing the number of shards neither skips nor repeats a snapshot."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import text

from engine.alerts import list_alerts
from engine.collectors.push import record_snapshots
from engine.config import PlanConfig
from engine.detect import run_detection, state_names
from engine.planner import plan_notifications
from engine.queries import load
from tests.delivery_support import add_dest


@pytest.fixture
def config(config):
    config.plans = {"default": PlanConfig(runs_used=1000)}
    config.detect.thresholds = config.detect.thresholds[:1]  # 80 % only: one alert per firing tenant
    return config


def tenants(n: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(n)]


def record(app, values: dict[str, int]) -> None:
    result = record_snapshots(app, [{"tenant_id": t, "metric": "runs_used", "value": v} for t, v in values.items()])
    assert result.written == len(values), result.rejected


def open_tenants(app) -> set[str]:
    return {str(a["tenant_id"]) for a in list_alerts(app, status="open")}


def state_rows(databases) -> list[str]:
    with databases.begin("notify") as conn:
        return sorted(conn.execute(text("SELECT name FROM notify.detection_state")).scalars())


def test_tenants_spread_over_the_shards_and_stay_in_theirs(databases):
    ids = tenants(2000)
    with databases.begin("notify") as conn:
        shards = dict(conn.execute(text(
            "SELECT t::text, notify.tenant_shard(t, 2) FROM unnest(CAST(:ids AS uuid[])) AS t"), {"ids": ids}).all())
        again = dict(conn.execute(text(
            "SELECT t::text, notify.tenant_shard(t, 2) FROM unnest(CAST(:ids AS uuid[])) AS t"), {"ids": ids}).all())
    assert shards == again
    counts = [list(shards.values()).count(s) for s in (0, 1)]
    assert sum(counts) == 2000 and min(counts) > 800, counts  # about even (a hash, not a modulo of bytes)


def test_a_parallel_pass_finds_every_tenant_once_and_keeps_a_watermark_per_shard(app, databases, clock):
    firing, quiet = tenants(40), tenants(40)
    record(app, {**{t: 900 for t in firing}, **{t: 100 for t in quiet}})
    summary = run_detection(app)
    assert summary.count("opened") == 40 and summary.folded == 80
    assert open_tenants(app) == set(firing)
    assert state_rows(databases) == sorted(state_names(2)) == ["snapshots:0/2", "snapshots:1/2"]
    clock.advance(timedelta(minutes=1))
    again = run_detection(app)
    assert again.folded == 0 and again.count("opened") == 0


def test_changing_the_number_of_shards_skips_and_repeats_nothing(app, databases, clock):
    first, second, third = tenants(30), tenants(30), tenants(30)
    record(app, {t: 900 for t in first})
    run_detection(app)

    # Three shards now: new snapshots for new tenants, and the first ten tenants back under the line.
    app.config.detect.parallelism = 3
    clock.advance(timedelta(minutes=1))
    record(app, {**{t: 900 for t in second}, **{t: 100 for t in first[:10]}})
    summary = run_detection(app)
    assert (summary.count("opened"), summary.count("resolved")) == (30, 10)
    assert open_tenants(app) == set(first[10:]) | set(second)
    assert state_rows(databases) == ["snapshots:0/3", "snapshots:1/3", "snapshots:2/3"]

    app.config.detect.parallelism = 1
    clock.advance(timedelta(minutes=1))
    record(app, {t: 900 for t in third})
    summary = run_detection(app)
    assert (summary.count("opened"), summary.count("resolved"), summary.count("reopened")) == (30, 0, 0)
    assert open_tenants(app) == set(first[10:]) | set(second) | set(third)
    assert state_rows(databases) == ["snapshots"]
    assert {a["transition_seq"] for a in list_alerts(app, status="open")} == {1}  # none evaluated twice


def test_a_failing_shard_rolls_back_alone_and_the_next_pass_does_its_work(app, databases, clock, monkeypatch):
    import engine.detect

    ids = tenants(40)
    record(app, {t: 900 for t in ids})
    real = engine.detect.run_snapshot_detector

    def failing_in_shard_1(conn, detector, ctx):
        if ctx.shard == 1:
            raise RuntimeError("shard 1 failed")
        return real(conn, detector, ctx)

    monkeypatch.setattr(engine.detect, "run_snapshot_detector", failing_in_shard_1)
    with pytest.raises(RuntimeError, match="shard 1 failed"):
        run_detection(app)
    with databases.begin("notify") as conn:
        shard_0 = set(conn.execute(text("SELECT t::text FROM unnest(CAST(:ids AS uuid[])) AS t "
                                        "WHERE notify.tenant_shard(t, 2) = 0"), {"ids": ids}).scalars())
    assert open_tenants(app) == shard_0 and 0 < len(shard_0) < 40  # shard 0 committed, shard 1 did not
    assert state_rows(databases) == ["snapshots:0/2"]

    monkeypatch.setattr(engine.detect, "run_snapshot_detector", real)
    clock.advance(timedelta(minutes=1))
    summary = run_detection(app)
    assert summary.count("opened") == 40 - len(shard_0)
    assert open_tenants(app) == set(ids)


def test_transitions_are_planned_in_the_shard_transaction_and_not_again_by_the_tick(app, databases, clock):
    ids = tenants(20)
    with databases.begin("notify") as conn:
        for t in ids:
            add_dest(conn, clock.now(), "webhook", "https://hooks.example.com/a", tenant_id=t)
    record(app, {t: 900 for t in ids})
    run_detection(app)
    with databases.begin("notify") as conn:
        planned = conn.execute(text("SELECT count(*) FROM notify.notifications")).scalar_one()
        behind = conn.execute(text(
            "SELECT count(*) FROM notify.alerts WHERE planned_seq <> transition_seq")).scalar_one()
        assert (planned, behind) == (20, 0)
        assert plan_notifications(conn, app.config, clock.now()) == 0


def test_an_alerts_table_without_pages_is_not_probed_for_alerts_to_clear(app, databases, clock):
    # VACUUM truncates an emptied table to no pages; a plan made then would scan it once per
    # candidate row while the pass fills it (quadratic). The pass passes may_clear = false instead.
    with databases.engine("notify").connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE notify.alerts")
    from detectors import SNAPSHOT_DETECTORS
    from detectors.base import detector_statement

    queries = load("detect")
    runs = next(d for d in SNAPSHOT_DETECTORS if d.kind == "RUNS_THRESHOLD")
    statement = detector_statement(runs).text
    params = {"kind": "RUNS_THRESHOLD", "metric": "runs_used", "thresholds": "[]",
              "period": "2026-11", "period_start": clock.now(),
              "now": clock.now(), "full_pass": True, "shard": 0, "shards": 1, "changed_tenants": None}
    with databases.begin("notify") as conn:
        check = conn.execute(text(queries["may_clear"].text), {"kind": "RUNS_THRESHOLD", "changed_tenants": None}).one()
        assert (check.may_clear, check.kind_seen) == (False, False)
        plan = "\n".join(conn.execute(text("EXPLAIN " + statement), {**params, "may_clear": False}).scalars())
        assert "alerts x" not in plan and "SubPlan" not in plan
        plan = "\n".join(conn.execute(text("EXPLAIN " + statement), {**params, "may_clear": True}).scalars())
        assert "alerts x" in plan  # the probe is there when the table may hold alerts to clear
    record(app, {t: 900 for t in tenants(10)})
    assert run_detection(app).count("opened") == 10


def test_a_fold_too_large_to_name_its_tenants_is_evaluated_by_scan_alike(app, clock, monkeypatch):
    import engine.detect

    first, second = tenants(6), tenants(6)
    record(app, {t: 900 for t in first})
    run_detection(app)
    monkeypatch.setattr(engine.detect, "CHANGED_TENANTS_LIMIT", 3)  # the next fold (12 values) is "large"
    clock.advance(timedelta(minutes=1))
    record(app, {**{t: 100 for t in first[:2]}, **{t: 900 for t in second}})
    summary = run_detection(app)
    assert (summary.count("opened"), summary.count("resolved")) == (6, 2)
    assert open_tenants(app) == set(first[2:]) | set(second)


def test_the_month_rollover_in_a_small_pass_plans_the_notices_of_tenants_it_did_not_fold(app, databases, clock):
    from datetime import datetime, timezone

    quiet, active = tenants(1)[0], tenants(1)[0]
    clock.current = datetime(2026, 10, 30, 12, 0, tzinfo=timezone.utc)
    with databases.begin("notify") as conn:
        add_dest(conn, clock.now(), "webhook", "https://hooks.example.com/a", tenant_id=quiet)
    record(app, {quiet: 900})
    run_detection(app)
    clock.current = datetime(2026, 11, 2, 12, 0, tzinfo=timezone.utc)
    record(app, {active: 100})  # the only value folded in November's first pass
    summary = run_detection(app)
    assert summary.period_resolved == 1
    with databases.begin("notify") as conn:
        planned = conn.execute(text("SELECT transition FROM notify.notifications WHERE tenant_id = :t "
                                    "ORDER BY created_at"), {"t": quiet}).scalars().all()
    assert planned == ["opened", "resolved"]
