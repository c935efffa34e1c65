"""What every write to a log table goes through: validate, stamp, sample, redact.

The Python writers (write_rows, BatchedLogWriter), `notifyctl logs import` and the HTTP
ingestion endpoint all admit rows through one LogPipeline, so a row is treated the same whichever
way it arrives. Sampling runs before redaction: a row that is not kept costs no regex scan.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any, Mapping, Optional

from engine.clock import Clock, SystemClock
from engine.config import Config, LogsConfig
from engine.logwriter.records import ApiAccessLog, LogRecord, record_type
from engine.logwriter.redaction import Redactor
from engine.logwriter.sampling import ApiAccessSampler


class LogPipeline:
    def __init__(self, logs: Optional[LogsConfig] = None, clock: Optional[Clock] = None):
        logs = logs or LogsConfig()
        self.clock = clock or SystemClock()
        self.redactor = Redactor(logs.redaction)
        self.api_sampler = ApiAccessSampler(logs.sampling.get(ApiAccessLog.TABLE))
        self._lock = threading.Lock()
        self.sampled_out: Counter[str] = Counter()   # table -> rows not kept by sampling

    @classmethod
    def from_config(cls, config: Config, clock: Optional[Clock] = None) -> "LogPipeline":
        return cls(config.logs, clock)

    def parse(self, table: str, row: Mapping[str, Any]) -> LogRecord:
        """A validated record from a mapping with the seed's column names; raises InvalidRecord."""
        return record_type(table).from_mapping(row)

    def admit(self, record: LogRecord) -> Optional[LogRecord]:
        """The record ready to write (stamped, redacted in place), or None when sampling drops it."""
        if record.occurred_at is None:
            record.occurred_at = self.clock.now()
        if type(record) is ApiAccessLog and not self.api_sampler.keep(record):
            with self._lock:
                self.sampled_out[record.TABLE] += 1
            return None
        return self.redactor.redact(record)
