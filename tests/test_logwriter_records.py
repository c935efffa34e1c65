"""Typed log records: validation on the way in, with errors naming table and field."""

import uuid
from datetime import datetime, timezone

import pytest

from engine.logwriter import (
    RECORD_TYPES,
    AdminEvent,
    ApiAccessLog,
    InvalidRecord,
    RecordEvent,
    SecurityEvent,
    TokenEvent,
    record_type,
)
from engine.errors import BadInput

TENANT = str(uuid.uuid4())
BASE = str(uuid.uuid4())


def api_row(**overrides):
    row = {"tenant_id": TENANT, "base_id": BASE, "route": "/v1/records", "method": "GET", "status": 200}
    row.update(overrides)
    return row


def rejected(cls, row):
    with pytest.raises(InvalidRecord) as info:
        cls.from_mapping(row)
    return str(info.value)


def test_every_log_table_of_the_three_databases_has_a_record_type():
    assert set(RECORD_TYPES) == {
        "admin_log.security_events", "admin_log.admin_events", "portal_log.auth_events",
        "portal_log.portal_events", "portal_log.token_events", "data_activity.api_access_logs",
        "data_activity.record_events",
    }


@pytest.mark.parametrize("overrides, field, problem", [
    ({"status": 700}, "status", "between 100 and 599"),
    ({"status": 99}, "status", "between 100 and 599"),
    ({"status": "200"}, "status", "whole number"),
    ({"tenant_id": "not-a-uuid"}, "tenant_id", "not a UUID"),
    ({"ip": "300.1.1.1"}, "ip", "not an IP address"),
    ({"bytes_out": -5}, "bytes_out", "between 0 and"),
    ({"latency_ms": 2**31}, "latency_ms", "between 0 and"),
    ({"occurred_at": "2026-11-25T12:00:00"}, "occurred_at", "UTC offset"),
    ({"occurred_at": "yesterday"}, "occurred_at", "ISO 8601"),
    ({"route": ""}, "route", "must not be empty"),
    ({"method": "G E T"}, "method", "not an HTTP method"),
    ({"base_id": None}, "base_id", "is required"),
])
def test_bad_api_access_values_are_refused_naming_table_and_field(overrides, field, problem):
    message = rejected(ApiAccessLog, api_row(**overrides))
    assert message.startswith(f"data_activity.api_access_logs: {field}: ")
    assert problem in message


def test_unknown_record_events_action_is_refused():
    row = {"tenant_id": TENANT, "base_id": BASE, "table_id": str(uuid.uuid4()), "action": "MERGE"}
    assert rejected(RecordEvent, row) == (
        "data_activity.record_events: action: must be one of INSERT, UPDATE, DELETE, got 'MERGE'")


def test_generated_and_unknown_columns_are_refused():
    assert "occurred_on: is generated" in rejected(ApiAccessLog, api_row(occurred_on="2026-11-25"))
    assert "statuz: unknown column" in rejected(ApiAccessLog, api_row(statuz=200))


def test_payloads_must_be_json_objects():
    assert "details: expected a JSON object" in rejected(SecurityEvent, {"type": "ADMIN_LOGIN", "details": [1, 2]})
    assert "diff: not representable as JSON" in rejected(
        AdminEvent, {"action": "X", "target_type": "T", "diff": {"when": datetime.now()}})


def test_values_are_normalised_and_defaults_filled():
    record = ApiAccessLog.from_mapping(api_row(method="patch", ip=" 2001:db8::1 ", occurred_at="2026-11-25T13:00:00+01:00"))
    assert record.method == "PATCH"
    assert str(record.ip) == "2001:db8::1"
    assert record.occurred_at == datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
    assert record.source == "api" and record.sample_rate == 1
    assert isinstance(record.id, uuid.UUID)
    event = AdminEvent(action="ALERT_ACK", target_type="ALERT", severity=None, diff=None)
    assert event.severity == "info" and event.diff == {}
    assert TokenEvent(tenant_id=TENANT, base_id=BASE, action="rotate").action == "ROTATE"


def test_typed_construction_validates_too():
    with pytest.raises(InvalidRecord, match="admin_log.admin_events: severity: must be one of info, warn, critical"):
        AdminEvent(action="X", target_type="T", severity="fatal")


def test_unknown_table_is_bad_input():
    with pytest.raises(BadInput, match="unknown log table 'data_activity.nope'"):
        record_type("data_activity.nope")
