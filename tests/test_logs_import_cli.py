"""notifyctl logs import TABLE FILE: JSON Lines, bad lines named by number, the rest goes in."""

import json
import uuid

from engine.cli import main

TENANT = str(uuid.uuid4())
BASE = str(uuid.uuid4())


def line(**overrides):
    row = {"tenant_id": TENANT, "base_id": BASE, "route": "/v1/records", "method": "GET", "status": 200,
           "occurred_at": "2026-11-25T10:00:00Z"}
    row.update(overrides)
    return json.dumps(row)


def count(databases, sql):
    with databases.begin("data_activity") as conn:
        return conn.exec_driver_sql(sql).scalar()


def test_good_file_goes_in_redacted_and_exits_0(tmp_path, config_file, databases, capsys):
    data = tmp_path / "access.jsonl"
    data.write_text("\n".join([line(), "", line(user_agent="bot (admin@tenant.example)"), line(status=404)]) + "\n")
    code = main(["logs", "import", "data_activity.api_access_logs", str(data), "--config", str(config_file())])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "accepted 3, rejected 0" in out
    assert count(databases, "SELECT count(*) FROM data_activity.api_access_logs") == 3
    assert count(databases, "SELECT user_agent FROM data_activity.api_access_logs WHERE user_agent IS NOT NULL") \
        == "bot ([REDACTED])"


def test_bad_lines_are_named_and_the_rest_goes_in_exit_2(tmp_path, config_file, databases, capsys):
    data = tmp_path / "access.jsonl"
    data.write_text("\n".join([
        line(),                                  # 1
        line(status=700),                        # 2
        "{not json",                             # 3
        line(ip="10.0.0.300"),                   # 4
        line(),                                  # 5
        json.dumps([1, 2]),                      # 6
        line(tenant_id="Bearer abcdefghijklmnop"),   # 7: the bad value is itself a secret
    ]) + "\n")
    code = main(["logs", "import", "data_activity.api_access_logs", str(data), "--config", str(config_file())])
    out, err = capsys.readouterr()
    assert code == 2
    assert "accepted 2, rejected 5" in out
    assert f"{data}:2: data_activity.api_access_logs: status: must be between 100 and 599, got 700" in err
    assert f"{data}:3: not valid JSON" in err
    assert f"{data}:4: data_activity.api_access_logs: ip: not an IP address" in err
    assert f"{data}:6: data_activity.api_access_logs: a row must be a JSON object" in err
    assert f"{data}:7: data_activity.api_access_logs: tenant_id: not a UUID" in err
    assert "abcdefghijklmnop" not in err
    assert count(databases, "SELECT count(*) FROM data_activity.api_access_logs") == 2


def test_sampling_from_config_applies_to_imports(tmp_path, config_file, databases, capsys):
    config = config_file("logs:\n  sampling:\n    data_activity.api_access_logs:\n      routes: {/v1/records: 5}\n")
    data = tmp_path / "access.jsonl"
    data.write_text("\n".join([line() for _ in range(20)] + [line(status=503)]) + "\n")
    code = main(["logs", "import", "data_activity.api_access_logs", str(data), "--config", str(config)])
    out, _ = capsys.readouterr()
    assert code == 0
    assert "accepted 21, rejected 0" in out and "written 5, not kept by sampling 16" in out
    assert count(databases, "SELECT sum(sample_rate) FROM data_activity.api_access_logs") == 21


def test_record_events_import_refuses_unknown_action(tmp_path, config_file, databases, capsys):
    data = tmp_path / "rec.jsonl"
    rows = [{"tenant_id": TENANT, "base_id": BASE, "table_id": str(uuid.uuid4()), "action": a,
             "diff": {"after": {"email": "x@y.example"}}} for a in ("INSERT", "UPSERT")]
    data.write_text("\n".join(json.dumps(r) for r in rows))
    code = main(["logs", "import", "data_activity.record_events", str(data), "--config", str(config_file())])
    out, err = capsys.readouterr()
    assert code == 2 and "accepted 1, rejected 1" in out and ":2: data_activity.record_events: action:" in err
    assert count(databases, "SELECT diff->'after'->>'email' FROM data_activity.record_events") == "[REDACTED]"


def test_unknown_table_and_missing_file_are_bad_input(tmp_path, config_file, capsys):
    config = str(config_file())
    assert main(["logs", "import", "data_activity.nope", str(tmp_path / "x"), "--config", config]) == 2
    assert "unknown log table 'data_activity.nope'" in capsys.readouterr().err
    assert main(["logs", "import", "admin_log.admin_events", str(tmp_path / "missing.jsonl"), "--config", config]) == 2
    assert "missing.jsonl: cannot read" in capsys.readouterr().err


def test_bad_sampling_config_names_the_key(tmp_path, config_file, capsys):
    config = config_file("logs:\n  sampling:\n    data_activity.api_access_logs:\n      routes: {/v1/x: 0}\n")
    assert main(["logs", "import", "data_activity.api_access_logs", str(tmp_path / "x"), "--config", str(config)]) == 2
    assert "logs.sampling.data_activity.api_access_logs.routes./v1/x: a rate is 1 in N" in capsys.readouterr().err


def test_importing_the_same_file_again_skips_rows_already_present(tmp_path, config_file, databases, capsys):
    data = tmp_path / "access.jsonl"
    data.write_text("\n".join(line(id=str(uuid.uuid4())) for _ in range(4)) + "\n")
    config = str(config_file())
    assert main(["logs", "import", "data_activity.api_access_logs", str(data), "--config", config]) == 0
    capsys.readouterr()
    assert main(["logs", "import", "data_activity.api_access_logs", str(data), "--config", config]) == 0
    assert "already present (same id), skipped: 4" in capsys.readouterr().out
    assert count(databases, "SELECT count(*) FROM data_activity.api_access_logs") == 4
