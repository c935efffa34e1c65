"""Partition lifecycle: ensure premakes months and rescues rows from DEFAULT, prune decides by bounds."""

from datetime import datetime, timezone

import pytest
from freezegun import freeze_time
from sqlalchemy import text

from engine.clock import SystemClock
from engine.cli import main as notifyctl
from engine.partitions import ensure_partitions, list_partitions, prune_cutoff, prune_partitions

UTC = timezone.utc
PARENTS = 9  # partitioned tables across the four sections


def months_of(databases, parent):
    return sorted(p.lower_bound.strftime("%Y-%m") for p in list_partitions(databases)
                  if p.parent == parent and not p.is_default)


def insert_admin_event(databases, occurred_at):
    with databases.begin("admin_log") as conn:
        conn.execute(text("INSERT INTO admin_log.admin_events (occurred_at, action, target_type) "
                          "VALUES (:at, 'TEST', 'T')"), {"at": occurred_at})


def rows_in(databases, relation):
    with databases.begin("admin_log") as conn:
        return conn.execute(text(f"SELECT count(*) FROM {relation}")).scalar()


def test_ensure_creates_current_and_next_months_for_every_partitioned_table(databases):
    created = ensure_partitions(databases, datetime(2026, 11, 25, tzinfo=UTC), months_ahead=2)
    assert len(created) == PARENTS * 3
    assert months_of(databases, "admin_log.admin_events") == ["2026-11", "2026-12", "2027-01"]
    assert months_of(databases, "notify.quota_snapshots") == ["2026-11", "2026-12", "2027-01"]
    partitions = {p.partition for p in list_partitions(databases)}
    assert "data_activity.api_access_logs_202612" in partitions  # <table>_YYYYMM in the table's schema


def test_ensure_twice_creates_nothing_the_second_time(databases):
    now = datetime(2026, 11, 25, tzinfo=UTC)
    ensure_partitions(databases, now, months_ahead=3)
    assert ensure_partitions(databases, now, months_ahead=3) == []


@pytest.mark.parametrize("instant,first_month", [
    (datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC), "2026-11"),
    (datetime(2026, 12, 1, 0, 0, 0, tzinfo=UTC), "2026-12"),
])
def test_month_boundary_is_decided_in_utc(databases, instant, first_month):
    with freeze_time(instant):
        ensure_partitions(databases, SystemClock().now(), months_ahead=0)
    assert months_of(databases, "admin_log.admin_events") == [first_month]


def test_a_row_at_the_last_instant_of_a_month_lands_in_that_month(databases):
    ensure_partitions(databases, datetime(2026, 11, 1, tzinfo=UTC), months_ahead=1)
    insert_admin_event(databases, datetime(2026, 11, 30, 23, 59, 59, 999999, tzinfo=UTC))
    insert_admin_event(databases, datetime(2026, 12, 1, tzinfo=UTC))
    assert rows_in(databases, "admin_log.admin_events_202611") == 1
    assert rows_in(databases, "admin_log.admin_events_202612") == 1


def test_row_beyond_premade_months_is_kept_then_moved_into_its_month(databases):
    ensure_partitions(databases, datetime(2026, 11, 25, tzinfo=UTC), months_ahead=1)
    far = datetime(2027, 6, 15, 8, tzinfo=UTC)
    insert_admin_event(databases, far)
    assert rows_in(databases, "admin_log.admin_events_default") == 1

    created = ensure_partitions(databases, datetime(2026, 11, 25, tzinfo=UTC), months_ahead=1)

    assert [(c.parent, c.month.isoformat(), c.moved_rows) for c in created] == [
        ("admin_log.admin_events", "2027-06-01", 1)]
    assert rows_in(databases, "admin_log.admin_events_default") == 0
    assert rows_in(databases, "admin_log.admin_events_202706") == 1
    with databases.begin("admin_log") as conn:
        occurred_on = conn.execute(text("SELECT occurred_on FROM admin_log.admin_events")).scalar()
    assert occurred_on.isoformat() == "2027-06-15"  # the generated column survived the move


def test_row_older_than_every_partition_is_kept_in_default_and_rescued(databases):
    insert_admin_event(databases, datetime(2026, 8, 3, tzinfo=UTC))
    ensure_partitions(databases, datetime(2026, 11, 25, tzinfo=UTC), months_ahead=0)
    assert rows_in(databases, "admin_log.admin_events_202608") == 1


def test_prune_drops_months_that_ended_more_than_n_months_ago(databases):
    ensure_partitions(databases, datetime(2026, 1, 10, tzinfo=UTC), months_ahead=11)  # 2026-01..2026-12
    insert_admin_event(databases, datetime(2026, 4, 30, 23, tzinfo=UTC))

    pruned = prune_partitions(databases, datetime(2026, 11, 25, tzinfo=UTC), keep_months=6)

    dropped = {p.partition.partition for p in pruned}
    assert "admin_log.admin_events_202604" in dropped and "admin_log.admin_events_202605" not in dropped
    assert months_of(databases, "admin_log.admin_events")[0] == "2026-05"
    assert len(pruned) == PARENTS * 4  # January to April
    assert rows_in(databases, "admin_log.admin_events") == 0


def test_prune_never_drops_the_current_month_even_keeping_zero(databases):
    ensure_partitions(databases, datetime(2026, 10, 1, tzinfo=UTC), months_ahead=2)
    prune_partitions(databases, datetime(2026, 11, 25, tzinfo=UTC), keep_months=0)
    assert months_of(databases, "admin_log.admin_events") == ["2026-11", "2026-12"]


def test_prune_decides_by_bounds_not_by_name(databases):
    ensure_partitions(databases, datetime(2026, 1, 10, tzinfo=UTC), months_ahead=0)
    ensure_partitions(databases, datetime(2026, 11, 10, tzinfo=UTC), months_ahead=0)
    with databases.begin("admin_log") as conn:  # names that lie about their months
        conn.execute(text("ALTER TABLE admin_log.admin_events_202601 RENAME TO admin_events_209912"))
        conn.execute(text("ALTER TABLE admin_log.admin_events_202611 RENAME TO admin_events_200001"))
    pruned = prune_partitions(databases, datetime(2026, 11, 25, tzinfo=UTC), keep_months=6)
    dropped = {p.partition.partition for p in pruned}
    assert "admin_log.admin_events_209912" in dropped
    assert "admin_log.admin_events_200001" not in dropped


def test_prune_dry_run_drops_nothing(databases):
    ensure_partitions(databases, datetime(2026, 1, 10, tzinfo=UTC), months_ahead=0)
    pruned = prune_partitions(databases, datetime(2026, 11, 25, tzinfo=UTC), keep_months=6, dry_run=True)
    assert len(pruned) == PARENTS and not any(p.dropped for p in pruned)
    assert months_of(databases, "admin_log.admin_events") == ["2026-01"]


def test_prune_cutoff_is_the_first_instant_of_the_kept_window():
    assert prune_cutoff(datetime(2026, 11, 25, tzinfo=UTC), 6) == datetime(2026, 5, 1, tzinfo=UTC)
    assert prune_cutoff(datetime(2026, 3, 1, tzinfo=UTC), 3) == datetime(2025, 12, 1, tzinfo=UTC)


def test_cli_ensure_then_prune_under_frozen_time(config_file, databases, capsys):
    path = str(config_file("partitions: {months_ahead: 2, keep_months: 6}\n"))
    with freeze_time("2026-03-15 10:00:00"):
        assert notifyctl(["partitions", "ensure", "--config", path]) == 0
    with freeze_time("2026-11-02 10:00:00"):
        assert notifyctl(["partitions", "ensure", "--config", path]) == 0
        capsys.readouterr()
        assert notifyctl(["partitions", "prune", "--keep-months", "6", "--dry-run", "--config", path]) == 0
        dry = capsys.readouterr().out
        assert "would drop admin_log.admin_events_202604" in dry
        assert months_of(databases, "admin_log.admin_events")[0] == "2026-03"
        assert notifyctl(["partitions", "prune", "--keep-months", "6", "--config", path]) == 0
    assert months_of(databases, "admin_log.admin_events") == ["2026-05", "2026-11", "2026-12", "2027-01"]


def test_cli_rejects_a_negative_month_count(config_file, capsys):
    path = str(config_file())
    with pytest.raises(SystemExit) as exit_info:
        notifyctl(["partitions", "ensure", "--months-ahead", "-1", "--config", path])
    assert exit_info.value.code == 2
    assert "cannot be negative" in capsys.readouterr().err
