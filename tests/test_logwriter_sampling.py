"""Sampling of api_access_logs: 1 in N 2xx per route, errors always kept, rate recorded."""

import uuid

from engine.config import LogsConfig, SamplingConfig
from engine.logwriter import ApiAccessLog, LogPipeline, write_rows

TENANT = str(uuid.uuid4())
BASE = str(uuid.uuid4())


def request(route, status):
    return ApiAccessLog(tenant_id=TENANT, base_id=BASE, route=route, method="GET", status=status)


def pipeline_with(clock, **sampling):
    return LogPipeline(LogsConfig(sampling={"data_activity.api_access_logs": SamplingConfig(**sampling)}), clock)


def test_without_sampling_configured_every_row_is_written(databases, clock):
    result = write_rows(databases, "data_activity.api_access_logs", [request("/v1/records", 200) for _ in range(25)])
    assert (result.written, result.sampled_out) == (25, 0)


def test_one_in_n_successes_per_route_and_every_error_kept_and_counts_scale_back(databases, clock):
    pipeline = pipeline_with(clock, default_rate=1, routes={"/v1/records": 10, "/v1/records/*": 4})
    rows = ([request("/v1/records?page=2", 200) for _ in range(100)]
            + [request("/v1/records/abc", 204) for _ in range(40)]
            + [request("/v1/records", 500) for _ in range(7)]
            + [request("/v1/records", 429) for _ in range(3)]
            + [request("/v1/bases", 200) for _ in range(5)])
    result = write_rows(databases, "data_activity.api_access_logs", rows, pipeline=pipeline)
    assert result.written == 10 + 10 + 7 + 3 + 5
    with databases.begin("data_activity") as conn:
        counted = {
            (route, status): (rows_, requests)
            for route, status, rows_, requests in conn.exec_driver_sql(
                "SELECT split_part(route, '?', 1), status, count(*), sum(sample_rate) "
                "FROM data_activity.api_access_logs GROUP BY 1, 2")
        }
    assert counted == {
        ("/v1/records", 200): (10, 100),
        ("/v1/records/abc", 204): (10, 40),
        ("/v1/records", 500): (7, 7),
        ("/v1/records", 429): (3, 3),
        ("/v1/bases", 200): (5, 5),
    }


def test_default_rate_applies_to_routes_without_a_rule_and_upstream_rates_multiply(clock):
    pipeline = pipeline_with(clock, default_rate=3)
    upstream = ApiAccessLog(tenant_id=TENANT, base_id=BASE, route="/v1/x", method="GET", status=200, sample_rate=5)
    assert pipeline.admit(upstream).sample_rate == 15
    assert pipeline.admit(request("/v1/x", 200)) is None
    assert pipeline.admit(request("/v1/x", 200)) is None
    assert pipeline.sampled_out["data_activity.api_access_logs"] == 2


def test_write_rows_with_a_bad_row_writes_nothing(databases, clock):
    import pytest

    from engine.logwriter import InvalidRecord

    rows = [{"tenant_id": TENANT, "base_id": BASE, "route": "/v1/x", "method": "GET", "status": 200},
            {"tenant_id": TENANT, "base_id": BASE, "route": "/v1/x", "method": "GET", "status": 1000}]
    with pytest.raises(InvalidRecord, match="status"):
        write_rows(databases, "data_activity.api_access_logs", rows)
    with databases.begin("data_activity") as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM data_activity.api_access_logs").scalar() == 0


def test_shipped_config_yaml_parses_with_its_logs_section():
    from pathlib import Path

    from engine.config import load_config

    config = load_config(Path(__file__).resolve().parents[1] / "config.yaml")
    assert config.logs.writer.api_access_logs_when_full == "block"
    assert "email" in config.logs.redaction.patterns and config.logs.ingest.listen is None
