"""Writers of the log tables of admin_log, portal_log and data_activity.

- records: one typed, validating record class per table (SecurityEvent, ..., RecordEvent).
- pipeline: validate, stamp, sample, redact; shared by every way a row arrives.
- copy: COPY of records; `write_rows(databases, table, rows)` is the synchronous path.
- batched: `BatchedLogWriter`, the asynchronous buffered writer for services.
- jsonl: JSON Lines parsing with line numbers (notifyctl logs import, HTTP ingestion).
- http_ingest: the authenticated HTTP ingestion endpoint.
"""

from engine.logwriter.copy import WriteResult, write_rows
from engine.logwriter.pipeline import LogPipeline
from engine.logwriter.records import (
    RECORD_TYPES,
    AdminEvent,
    ApiAccessLog,
    AuthEvent,
    InvalidRecord,
    LogRecord,
    PortalEvent,
    RecordEvent,
    SecurityEvent,
    TokenEvent,
    record_type,
)

__all__ = [
    "RECORD_TYPES", "AdminEvent", "ApiAccessLog", "AuthEvent", "InvalidRecord", "LogPipeline", "LogRecord",
    "PortalEvent", "RecordEvent", "SecurityEvent", "TokenEvent", "WriteResult", "record_type", "write_rows",
]
