"""Typed records for every table of admin_log, portal_log and data_activity, validated on the way in.

One dataclass per table, with the seed's columns (plus `sample_rate` on api_access_logs, see
ddl/data_activity/0002). Constructing a record validates and normalises every field, so a bad
value fails where it enters, with an error naming the table and the field, instead of failing a
whole COPY later. Generated columns (occurred_on) are not fields: PostgreSQL computes them.

`id` and `occurred_at` may be left out: the id is generated here (COPY names its columns, so the
table's DEFAULT cannot fill a column for some rows only), and occurred_at is stamped from the
engine's clock when the record is admitted (engine.logwriter.pipeline).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, ClassVar, Mapping, Optional

from engine.errors import BadInput

INT4_MAX = 2**31 - 1


class InvalidRecord(BadInput):
    """A log row that cannot be written as given; says which table and which field."""

    def __init__(self, table: str, column: Optional[str], problem: str):
        self.table = table
        self.column = column
        self.problem = problem
        super().__init__(f"{table}: {column}: {problem}" if column else f"{table}: {problem}")


# --------------------------------------------------------------------------- field kinds
# Each converter takes the raw value (a Python object or what json.loads produced) and returns the
# normalised value, or raises ValueError with a message that names the problem, never the field
# (the caller adds table and field).


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _to_uuid(value: Any) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a UUID string, got {type(value).__name__}")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ValueError(f"not a UUID: {_shown(value)}") from None


def _to_ip(value: Any):
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected an IP address string, got {type(value).__name__}")
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        raise ValueError(f"not an IP address: {_shown(value)}") from None


def _to_timestamp(value: Any) -> datetime:
    if isinstance(value, str):
        try:
            # Python 3.11 parses "Z" and offsets.
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"not an ISO 8601 timestamp: {_shown(value)}") from None
    if not isinstance(value, datetime):
        raise ValueError(f"expected an ISO 8601 timestamp, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        # A naive time would be read in the server's time zone: refuse rather than guess.
        raise ValueError(f"a timestamp needs a UTC offset (e.g. 2026-11-25T12:00:00Z), got {_shown(value.isoformat())}")
    return value


def _int_between(low: int, high: int) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ValueError(f"expected a whole number, got {_shown(value)}")
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}, got {value}")
        return value

    return convert


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    if "\x00" in value:
        raise ValueError("contains a NUL character, which PostgreSQL text cannot hold")
    return value


def _label(value: Any) -> str:
    value = _text(value).strip()
    if not value:
        raise ValueError("must not be empty")
    return value


def _one_of(*allowed: str, upper: bool = False) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        value = _label(value)
        if upper:
            value = value.upper()
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}, got {_shown(value)}")
        return value

    return convert


def _method(value: Any) -> str:
    value = _label(value).upper()
    if not value.isalpha() or len(value) > 16:
        raise ValueError(f"not an HTTP method: {_shown(value)}")
    return value


def _json_object(value: Any) -> dict:
    if isinstance(value, str):
        # A service may send the payload as a JSON string; the seed wants structure, not text.
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError("expected a JSON object, got a string that is not JSON") from None
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not representable as JSON: {exc}") from None
    return value


# --------------------------------------------------------------------------- field declarations
# metadata: convert (the converter), required (NOT NULL without default), free_text (redacted),
# json (redacted recursively, written as JSON text).


def _field(convert: Callable[[Any], Any], *, required: bool = False, default: Any = None,
           free_text: bool = False, json_payload: bool = False) -> Any:
    meta = {"convert": convert, "required": required, "free_text": free_text, "json": json_payload,
            "default": default}
    if isinstance(default, dict):
        return field(default_factory=dict, metadata=meta)
    return field(default=default, metadata=meta)


def _uuid(required: bool = False) -> Any:
    return _field(_to_uuid, required=required)


_STATUS = _int_between(100, 599)
_NON_NEGATIVE_INT4 = _int_between(0, INT4_MAX)
_SAMPLE_RATE = _int_between(1, INT4_MAX)


@dataclass(slots=True, kw_only=True)
class LogRecord:
    """Base of every table's record: validates and normalises each field on construction."""

    TABLE: ClassVar[str] = ""
    SECTION: ClassVar[str] = ""
    # Filled per subclass by _finish(): (name, converter, required, default) in column order.
    _SPEC: ClassVar[tuple] = ()
    COLUMNS: ClassVar[tuple[str, ...]] = ()
    FREE_TEXT: ClassVar[tuple[str, ...]] = ()
    JSON_FIELDS: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        for name, convert, required, default in self._SPEC:
            value = getattr(self, name)
            if value is None:
                if default is not None:
                    # An explicit null for a column with a default means the default, as in SQL.
                    setattr(self, name, {} if isinstance(default, dict) else default)
                elif required:
                    raise InvalidRecord(self.TABLE, name, "is required")
                continue
            try:
                setattr(self, name, convert(value))
            except ValueError as exc:
                raise InvalidRecord(self.TABLE, name, str(exc)) from None
        if self.id is None:
            self.id = uuid.uuid4()

    @classmethod
    def from_mapping(cls, row: Mapping[str, Any]) -> "LogRecord":
        """A record from a mapping with the seed's column names (a JSON Lines row, a dict)."""
        if not isinstance(row, Mapping):
            raise InvalidRecord(cls.TABLE, None, f"a row must be a JSON object, got {type(row).__name__}")
        for key in row:
            if key not in cls.COLUMNS:
                if key == "occurred_on":
                    raise InvalidRecord(cls.TABLE, key, "is generated from occurred_at and cannot be written")
                raise InvalidRecord(cls.TABLE, str(key), f"unknown column (known: {', '.join(cls.COLUMNS)})")
        try:
            return cls(**row)
        except TypeError as exc:  # a positional/keyword mix-up cannot come from a mapping; keep it readable
            raise InvalidRecord(cls.TABLE, None, str(exc)) from None

    def copy_row(self) -> tuple:
        """Values in COLUMNS order, as COPY takes them (JSON payloads as JSON text)."""
        values = [getattr(self, name) for name in self.COLUMNS]
        for index in self._JSON_INDEXES:
            if values[index] is not None:
                values[index] = json.dumps(values[index], separators=(",", ":"))
        return tuple(values)

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.COLUMNS}


def _finish(cls: type) -> type:
    spec, free_text, json_fields = [], [], []
    for f in dataclasses.fields(cls):
        if "convert" not in f.metadata:
            continue
        spec.append((f.name, f.metadata["convert"], f.metadata["required"], f.metadata["default"]))
        if f.metadata["free_text"]:
            free_text.append(f.name)
        if f.metadata["json"]:
            json_fields.append(f.name)
    cls._SPEC = tuple(spec)
    cls.COLUMNS = tuple(entry[0] for entry in spec)
    cls.FREE_TEXT = tuple(free_text)
    cls.JSON_FIELDS = tuple(json_fields)
    cls._JSON_INDEXES = tuple(cls.COLUMNS.index(name) for name in json_fields)
    return cls


LogRecord._JSON_INDEXES = ()  # type: ignore[attr-defined]

# Field order below is the column order of each table (id and occurred_at first).


@_finish
@dataclass(slots=True, kw_only=True)
class SecurityEvent(LogRecord):
    TABLE: ClassVar[str] = "admin_log.security_events"
    SECTION: ClassVar[str] = "admin_log"
    type: str = _field(_label, required=True)     # ADMIN_LOGIN, MFA_FAIL, FAILED_LOGIN, ...
    id: Optional[uuid.UUID] = _uuid()
    occurred_at: Optional[datetime] = _field(_to_timestamp)
    admin_id: Optional[uuid.UUID] = _uuid()
    ip: Any = _field(_to_ip)
    user_agent: Optional[str] = _field(_text, free_text=True)
    details: dict = _field(_json_object, required=True, default={}, json_payload=True)


@_finish
@dataclass(slots=True, kw_only=True)
class AdminEvent(LogRecord):
    TABLE: ClassVar[str] = "admin_log.admin_events"
    SECTION: ClassVar[str] = "admin_log"
    action: str = _field(_label, required=True)   # TENANT_SUSPEND, WALLET_ADJUST, ALERT_ACK, ...
    target_type: str = _field(_label, required=True)
    id: Optional[uuid.UUID] = _uuid()
    occurred_at: Optional[datetime] = _field(_to_timestamp)
    actor_admin_id: Optional[uuid.UUID] = _uuid()
    tenant_id: Optional[uuid.UUID] = _uuid()
    workspace_id: Optional[uuid.UUID] = _uuid()
    base_id: Optional[uuid.UUID] = _uuid()
    ip: Any = _field(_to_ip)
    target_id: Optional[str] = _field(_text, free_text=True)   # may be a user's email address
    severity: str = _field(_one_of("info", "warn", "critical"), required=True, default="info")
    diff: dict = _field(_json_object, required=True, default={}, json_payload=True)
    comment: Optional[str] = _field(_text, free_text=True)


@_finish
@dataclass(slots=True, kw_only=True)
class AuthEvent(LogRecord):
    TABLE: ClassVar[str] = "portal_log.auth_events"
    SECTION: ClassVar[str] = "portal_log"
    type: str = _field(_label, required=True)     # USER_LOGIN, PASSWORD_RESET, SSO_ASSERTION, ...
    id: Optional[uuid.UUID] = _uuid()
    occurred_at: Optional[datetime] = _field(_to_timestamp)
    tenant_id: Optional[uuid.UUID] = _uuid()
    user_id: Optional[uuid.UUID] = _uuid()
    ip: Any = _field(_to_ip)
    user_agent: Optional[str] = _field(_text, free_text=True)
    details: dict = _field(_json_object, required=True, default={}, json_payload=True)


@_finish
@dataclass(slots=True, kw_only=True)
class PortalEvent(LogRecord):
    TABLE: ClassVar[str] = "portal_log.portal_events"
    SECTION: ClassVar[str] = "portal_log"
    tenant_id: uuid.UUID = _uuid(required=True)
    action: str = _field(_label, required=True)   # WORKSPACE_CREATE, MEMBER_INVITE, PLAN_CHANGE, ...
    id: Optional[uuid.UUID] = _uuid()
    occurred_at: Optional[datetime] = _field(_to_timestamp)
    user_id: Optional[uuid.UUID] = _uuid()
    workspace_id: Optional[uuid.UUID] = _uuid()
    base_id: Optional[uuid.UUID] = _uuid()
    route: Optional[str] = _field(_text, free_text=True)
    result: str = _field(_one_of("ok", "error"), required=True, default="ok")
    context: dict = _field(_json_object, required=True, default={}, json_payload=True)


@_finish
@dataclass(slots=True, kw_only=True)
class TokenEvent(LogRecord):
    TABLE: ClassVar[str] = "portal_log.token_events"
    SECTION: ClassVar[str] = "portal_log"
    tenant_id: uuid.UUID = _uuid(required=True)
    base_id: uuid.UUID = _uuid(required=True)
    action: str = _field(_one_of("ISSUE", "REVOKE", "ROTATE", upper=True), required=True)
    id: Optional[uuid.UUID] = _uuid()
    occurred_at: Optional[datetime] = _field(_to_timestamp)
    user_id: Optional[uuid.UUID] = _uuid()
    token_id: Optional[uuid.UUID] = _uuid()
    reason: Optional[str] = _field(_text, free_text=True)
    context: dict = _field(_json_object, required=True, default={}, json_payload=True)


@_finish
@dataclass(slots=True, kw_only=True)
class ApiAccessLog(LogRecord):
    TABLE: ClassVar[str] = "data_activity.api_access_logs"
    SECTION: ClassVar[str] = "data_activity"
    tenant_id: uuid.UUID = _uuid(required=True)
    base_id: uuid.UUID = _uuid(required=True)
    route: str = _field(_label, required=True, free_text=True)   # a query string may carry secrets
    method: str = _field(_method, required=True)
    status: int = _field(_STATUS, required=True)
    id: Optional[uuid.UUID] = _uuid()
    occurred_at: Optional[datetime] = _field(_to_timestamp)
    token_id: Optional[uuid.UUID] = _uuid()
    latency_ms: Optional[int] = _field(_NON_NEGATIVE_INT4)
    bytes_in: Optional[int] = _field(_NON_NEGATIVE_INT4)
    bytes_out: Optional[int] = _field(_NON_NEGATIVE_INT4)
    ip: Any = _field(_to_ip)
    user_agent: Optional[str] = _field(_text, free_text=True)
    source: str = _field(_label, required=True, default="api")   # api|ui|automation (if known)
    # This row stands for sample_rate requests (1 in N 2xx kept); set by the sampler.
    sample_rate: int = _field(_SAMPLE_RATE, required=True, default=1)


@_finish
@dataclass(slots=True, kw_only=True)
class RecordEvent(LogRecord):
    TABLE: ClassVar[str] = "data_activity.record_events"
    SECTION: ClassVar[str] = "data_activity"
    tenant_id: uuid.UUID = _uuid(required=True)
    base_id: uuid.UUID = _uuid(required=True)
    table_id: uuid.UUID = _uuid(required=True)
    action: str = _field(_one_of("INSERT", "UPDATE", "DELETE", upper=True), required=True)
    id: Optional[uuid.UUID] = _uuid()
    occurred_at: Optional[datetime] = _field(_to_timestamp)
    record_id: Optional[uuid.UUID] = _uuid()
    actor_user_id: Optional[uuid.UUID] = _uuid()
    token_id: Optional[uuid.UUID] = _uuid()
    source: str = _field(_label, required=True, default="api")   # api|ui|automation|import
    diff: Optional[dict] = _field(_json_object, json_payload=True)   # nullable in the seed
    error: Optional[str] = _field(_text, free_text=True)


RECORD_TYPES: dict[str, type[LogRecord]] = {
    cls.TABLE: cls
    for cls in (SecurityEvent, AdminEvent, AuthEvent, PortalEvent, TokenEvent, ApiAccessLog, RecordEvent)
}


def record_type(table: str) -> type[LogRecord]:
    """The record class of a table named as in the seed (data_activity.api_access_logs)."""
    try:
        return RECORD_TYPES[table]
    except KeyError:
        raise BadInput(f"unknown log table {table!r} (known: {', '.join(RECORD_TYPES)})") from None
