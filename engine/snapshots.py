"""Quota snapshots: validation and the bulk write into notify.quota_snapshots.

Every source (log collectors, SQL, HTTP, push) hands rows to `validate_snapshots`, which keeps
the good rows and names each bad one by its source and position; `copy_snapshots` then writes the
good ones with one COPY. A bad row never costs the batch: the rest goes in.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from collections.abc import Mapping
from typing import Any, Iterable, Iterator, NamedTuple, Optional

import psycopg

from engine.config import METRICS
from engine.errors import BadInput

# Counted by the built-in collector over data_activity.api_access_logs for RATE_LIMIT.
RATE_LIMIT_METRIC = "http_429_count"
KNOWN_METRICS = METRICS + (RATE_LIMIT_METRIC,)
# Metrics that are counts: whole numbers, stored in value_int. storage_gb is fractional.
INTEGER_METRICS = frozenset(("runs_used", "records_count", "api_calls", "wallet_balance_cents", RATE_LIMIT_METRIC))
# A wallet can be overdrawn; every other metric is a count or a size.
SIGNED_METRICS = frozenset(("wallet_balance_cents",))
WINDOWS = ("minute", "hour", "day", "monthly")
_BIGINT_MAX = 2**63 - 1
_NUMERIC_MAX = Decimal("1e14")  # numeric(20,6) holds 14 digits before the point

NIL_UUID = uuid.UUID(int=0)  # latest_snapshots / usage_counters: "no base" inside a primary key


class Snapshot(NamedTuple):  # a tuple: bulk input builds hundreds of thousands of them
    tenant_id: uuid.UUID | str  # a str only in its canonical form (what COPY writes anyway)
    base_id: Optional[uuid.UUID]
    metric: str
    value: int | Decimal
    captured_at: datetime
    window: str = "monthly"


@dataclass(frozen=True)
class Rejection:
    source: str
    row: str  # where: "row 3", "line 12", "tenant=... metric=..."
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.row}: {self.reason}"


@dataclass
class ValidatedBatch:
    accepted: list[Snapshot] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


class InvalidSnapshot(BadInput):
    pass


def parse_uuid(value: Any, what: str) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if not isinstance(value, str):
        raise InvalidSnapshot(f"{what} must be a UUID, got {_shown(value)}")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidSnapshot(f"{what} must be a UUID, got {_shown(value)}") from None


def parse_value(metric: str, value: Any) -> int | Decimal:
    """The metric's value as int (counts) or Decimal (storage_gb); InvalidSnapshot when it is not
    a finite number in range."""
    if type(value) is int and metric in INTEGER_METRICS:  # the common case, kept cheap for bulk input
        if (value < 0 and metric not in SIGNED_METRICS) or abs(value) > _BIGINT_MAX:
            pass  # fall through to the general path for its message
        else:
            return value
    if isinstance(value, bool) or value is None:
        raise InvalidSnapshot(f"value of {metric} must be a number, got {_shown(value)}")
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise InvalidSnapshot(f"value of {metric} must be a finite number, got {value}")
        number = Decimal(repr(value))
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, Decimal):
        number = value
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise InvalidSnapshot(f"value of {metric} must be a number, got {_shown(value)}") from None
    else:
        raise InvalidSnapshot(f"value of {metric} must be a number, got {_shown(value)}")
    if not number.is_finite():
        raise InvalidSnapshot(f"value of {metric} must be a finite number, got {_shown(value)}")
    if number < 0 and metric not in SIGNED_METRICS:
        raise InvalidSnapshot(f"value of {metric} cannot be negative, got {_shown(value)}")
    if metric in INTEGER_METRICS:
        if number != number.to_integral_value():
            raise InvalidSnapshot(f"value of {metric} must be a whole number, got {_shown(value)}")
        integer = int(number)
        if abs(integer) > _BIGINT_MAX:
            raise InvalidSnapshot(f"value of {metric} is out of range, got {_shown(value)}")
        return integer
    if abs(number) >= _NUMERIC_MAX:
        raise InvalidSnapshot(f"value of {metric} is out of range, got {_shown(value)}")
    return number


def validate_snapshot(row: Mapping[str, Any], captured_at: datetime, uuids: Optional[dict] = None) -> Snapshot:
    """One row (tenant_id, base_id, metric, value[, window]) as a Snapshot, or InvalidSnapshot.
    `uuids` caches parsed ids across a batch (a tenant usually reports several metrics)."""
    metric = row.get("metric")
    if metric not in KNOWN_METRICS:
        raise InvalidSnapshot(f"unknown metric {_shown(metric)} (known: {', '.join(KNOWN_METRICS)})")
    tenant = row.get("tenant_id")
    tenant_id = uuids.get(tenant) if uuids is not None and type(tenant) is str else None
    if tenant_id is None:
        tenant_id = parse_uuid(tenant, "tenant_id")
        if uuids is not None and type(tenant) is str:
            # Cached as canonical text: parsed once per tenant, and COPY needs no conversion.
            tenant_id = uuids[tenant] = str(tenant_id)
    base = row.get("base_id")
    base_id = None if base is None or base == "" else parse_uuid(base, "base_id")
    window = row.get("window") or "monthly"
    if window != "monthly" and window not in WINDOWS:
        raise InvalidSnapshot(f"unknown window {_shown(window)} (known: {', '.join(WINDOWS)})")
    return Snapshot(tenant_id, base_id, metric, parse_value(metric, row.get("value")), captured_at, window)


def iter_valid_snapshots(source: str, rows: Iterable[Any], captured_at: datetime,
                         rejected: list[Rejection]) -> Iterator[Snapshot]:
    """Yields each valid row as a Snapshot and appends a Rejection (naming the source and the row)
    for each invalid one. A generator, so a COPY can stream rows while later ones are checked."""
    uuids: dict = {}
    for index, row in enumerate(rows, 1):
        if type(row) is not dict and not isinstance(row, Mapping):
            rejected.append(Rejection(source, f"row {index}", f"expected an object, got {_shown(row)}"))
            continue
        try:
            yield validate_snapshot(row, captured_at, uuids)
        except InvalidSnapshot as exc:
            rejected.append(Rejection(source, f"row {index}", str(exc)))


def validate_snapshots(source: str, rows: Iterable[Any], captured_at: datetime) -> ValidatedBatch:
    """Keeps every valid row; each invalid one becomes a Rejection naming the source and row."""
    batch = ValidatedBatch()
    batch.accepted = list(iter_valid_snapshots(source, rows, captured_at, batch.rejected))
    return batch


_COPY = ('COPY notify.quota_snapshots (captured_at, tenant_id, base_id, metric, value_int, value_numeric, "window") '
         "FROM STDIN")


def copy_snapshots(conn: psycopg.Connection, snapshots: Iterable[Snapshot]) -> int:
    """Writes snapshots with one COPY inside the caller's transaction (so a collector commits its
    watermark with them). Returns the number of rows written."""
    count = 0
    with conn.cursor() as cur:
        with cur.copy(_COPY) as copy:
            write = copy.write_row
            for s in snapshots:
                if type(s.value) is int:
                    write((s.captured_at, s.tenant_id, s.base_id, s.metric, s.value, None, s.window))
                else:
                    write((s.captured_at, s.tenant_id, s.base_id, s.metric, None, s.value, s.window))
                count += 1
    return count


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
