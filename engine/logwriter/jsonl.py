"""JSON Lines in, validated records out, with the line number of every bad line.

Shared by `notifyctl logs import` and the HTTP ingestion endpoint. A line is one JSON object with
the seed's column names; blank lines are skipped. Error messages pass through the redactor: a
rejected value is quoted in the message, and it may be the very secret the rules exist for.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Optional, Union

from engine.logwriter.pipeline import LogPipeline
from engine.logwriter.records import InvalidRecord, LogRecord, record_type


@dataclass(frozen=True)
class RejectedLine:
    line: int
    error: str


def parse_json_lines(pipeline: LogPipeline, table: str, lines: Iterable[Union[bytes, str]],
                     line_id: Optional[Callable[[int, bytes], uuid.UUID]] = None,
                     ) -> Iterator[Union[tuple[int, LogRecord], RejectedLine]]:
    """Yields (line number, record) for each good line and RejectedLine for each bad one.
    `line_id(number, raw line)` gives the id of a line that has none (default: a random one)."""
    cls = record_type(table)
    for number, raw in enumerate(lines, 1):
        original = raw
        if isinstance(raw, bytes):
            try:
                raw = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield RejectedLine(number, f"not UTF-8 (byte {exc.start + 1})")
                continue
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except ValueError as exc:
            yield RejectedLine(number, f"not valid JSON: {getattr(exc, 'msg', str(exc))} at column {getattr(exc, 'colno', '?')}")
            continue
        try:
            record = cls.from_mapping(row)
        except InvalidRecord as exc:
            yield RejectedLine(number, pipeline.redactor.text(str(exc)))
            continue
        if line_id is not None and row.get("id") is None:
            record.id = line_id(number, original if isinstance(original, bytes) else original.encode("utf-8"))
        yield number, record
