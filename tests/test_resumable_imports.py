"""A failure half-way through `logs import` or `partitions prune --archive` says what was done, and
running the same import again writes each line once."""

import json
import os
import pty
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from engine.cli import main
from tests.test_archive import exists, seed_old_rows

TENANT = str(uuid.uuid4())
BASE = str(uuid.uuid4())
TABLE = "data_activity.api_access_logs"


def line(route="/v1/records", **extra):
    # No id and no occurred_at: both are filled in by the import, the case a re-run used to double.
    return json.dumps({"tenant_id": TENANT, "base_id": BASE, "route": route, "method": "GET", "status": 200, **extra})


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def rows(databases):
    with databases.begin("data_activity") as conn:
        return conn.exec_driver_sql(
            f"SELECT count(*), count(DISTINCT id), count(DISTINCT route) FROM {TABLE}").one()


REFUSE_BOOM = """
CREATE FUNCTION data_activity.refuse_boom() RETURNS trigger LANGUAGE plpgsql AS
$$BEGIN IF NEW.route = '/boom' THEN RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END$$;
CREATE TRIGGER refuse_boom BEFORE INSERT ON data_activity.api_access_logs
  FOR EACH ROW EXECUTE FUNCTION data_activity.refuse_boom();
"""


@pytest.mark.fresh_database
def test_a_rerun_after_a_failure_half_way_writes_each_line_once(tmp_path, config_file, databases, capsys,
                                                               monkeypatch):
    monkeypatch.setattr("engine.cli.logs.IMPORT_CHUNK_ROWS", 3)
    data = tmp_path / "access.jsonl"
    routes = [f"/r{i}" for i in range(1, 11)]
    routes[7] = "/boom"     # line 8: in the third chunk (lines 7-9)
    data.write_text("\n".join(line(r) for r in routes) + "\n")
    with databases.begin("data_activity") as conn:
        conn.exec_driver_sql(REFUSE_BOOM)
    config = str(config_file())

    code, out, err = run(capsys, "logs", "import", TABLE, str(data), "--config", config)
    assert code == 1
    [message] = err.strip().splitlines()
    assert "failed in lines 7-9" in message and "refused by the test" in message
    assert "lines 1-6 are committed (6 rows written)" in message and "run the same command again" in message
    assert "\r" not in err   # no progress line when stderr is not a terminal
    assert rows(databases) == (6, 6, 6)

    with databases.begin("data_activity") as conn:
        conn.exec_driver_sql("DROP TRIGGER refuse_boom ON data_activity.api_access_logs")
    code, out, err = run(capsys, "logs", "import", TABLE, str(data), "--config", config)
    assert code == 0, err
    assert "accepted 10, rejected 0" in out and "already present (same id), skipped: 6" in out
    assert rows(databases) == (10, 10, 10)

    # Once more, all of it already there: nothing new.
    assert run(capsys, "logs", "import", TABLE, str(data), "--config", config)[0] == 0
    assert rows(databases) == (10, 10, 10)


def test_another_file_with_an_identical_line_is_not_taken_for_a_repeat(tmp_path, config_file, databases, capsys):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text(line("/same") + "\n" + line("/a") + "\n")
    second.write_text(line("/same") + "\n" + line("/b") + "\n")   # line 1 identical to the first file's
    config = str(config_file())
    assert run(capsys, "logs", "import", TABLE, str(first), "--config", config)[0] == 0
    assert run(capsys, "logs", "import", TABLE, str(second), "--config", config)[0] == 0
    assert rows(databases) == (4, 4, 3)


def test_a_line_with_its_own_id_keeps_it(tmp_path, config_file, databases, capsys):
    own = str(uuid.uuid4())
    data = tmp_path / "a.jsonl"
    data.write_text(line("/x", id=own) + "\n")
    assert run(capsys, "logs", "import", TABLE, str(data), "--config", str(config_file()))[0] == 0
    with databases.begin("data_activity") as conn:
        assert str(conn.exec_driver_sql(f"SELECT id FROM {TABLE}").scalar()) == own


def test_progress_is_shown_on_a_terminal(tmp_path, config_file, databases):
    data = tmp_path / "big.jsonl"
    data.write_text("\n".join(line(f"/r{i % 50}") for i in range(5200)) + "\n")   # over one chunk of 5,000
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_CONFIG"}
    primary, terminal = pty.openpty()
    try:
        proc = subprocess.run([str(Path(sys.executable).parent / "notifyctl"), "logs", "import", TABLE, str(data),
                               "--config", str(config_file())], stdout=subprocess.PIPE, stderr=terminal,
                              env=env, text=True, timeout=300)
    finally:
        os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:   # EIO: the terminal's other end is closed and everything was read
            break
        if not chunk:
            break
        shown += chunk
    os.close(primary)
    assert proc.returncode == 0 and "accepted 5200, rejected 0" in proc.stdout
    assert b"\r" + str(data).encode() + b": 5000 lines read, 5000 rows written" in shown
    assert b"5200 lines read, 5200 rows written" in shown


def test_prune_failing_part_way_lists_what_was_archived_and_dropped(tmp_path, databases, clock, config_file, capsys):
    seed_old_rows(databases, clock)
    archive = tmp_path / "archive"
    archive.mkdir()
    # Partitions go in name order: admin_log's, data_activity's, then notify's (the attempt
    # ledger's first), whose archive folder cannot be made (a file is in the way).
    (archive / "notify").write_text("in the way")
    code, out, err = run(capsys, "partitions", "prune", "--keep-months", "6", "--archive", str(archive),
                         "--config", str(config_file()))
    assert code == 1
    assert "dropped admin_log.admin_events_202603" in out and "1 rows archived" in out
    assert "dropped data_activity.api_access_logs_202603" in out and "250 rows archived" in out
    [message] = err.strip().splitlines()
    assert "stopped at notify.delivery_attempts_202603" in message
    done = message.split("archived and dropped before it: ")[1]
    assert "admin_log.admin_events_202603" in done and "data_activity.api_access_logs_202603" in done
    assert "notify." not in done
    assert not exists(databases, "data_activity.api_access_logs_202603")
    assert exists(databases, "notify.quota_snapshots_202603")
    assert (archive / "data_activity" / "api_access_logs" / "api_access_logs_202603.parquet").exists()
