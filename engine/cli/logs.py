"""notifyctl logs import TABLE FILE: JSON Lines into a log table."""

from __future__ import annotations

import sys
from pathlib import Path

from engine.errors import BadInput
from engine.logwriter.copy import copy_records
from engine.logwriter.jsonl import RejectedLine, parse_json_lines
from engine.logwriter.pipeline import LogPipeline
from engine.logwriter.records import record_type

# Rows per COPY: each chunk commits, so a failure later in a large file keeps what went in.
IMPORT_CHUNK_ROWS = 5000
# A file of garbage should not flood the terminal; the counts still cover every line.
MAX_REPORTED_LINES = 100


def register(subparsers, common) -> None:
    group = subparsers.add_parser("logs", parents=[common], help="the log tables of admin_log, portal_log, data_activity")
    actions = group.add_subparsers(dest="logs_command", metavar="ACTION", required=True)
    imp = actions.add_parser("import", parents=[common],
                             help="load JSON Lines (the seed's column names) into TABLE; validated, redacted, sampled")
    imp.add_argument("table", metavar="TABLE", help="e.g. data_activity.api_access_logs")
    imp.add_argument("file", metavar="FILE", help="JSON Lines file, one row a line ('-' reads stdin)")
    imp.set_defaults(handler=import_command)


def import_command(app, args) -> int:
    cls = record_type(args.table)   # BadInput (exit 2) for an unknown table
    pipeline = LogPipeline.from_config(app.config, app.clock)
    if args.file == "-":
        stream, name = sys.stdin.buffer, "<stdin>"
    else:
        path = Path(args.file)
        try:
            stream = path.open("rb")
        except OSError as exc:
            raise BadInput(f"FILE {args.file}: cannot read: {exc.strerror}") from None
        name = args.file
    accepted = rejected = written = sampled_out = admitted = 0
    chunk = []
    with stream, app.databases.connect_raw(cls.SECTION) as conn:
        for item in parse_json_lines(pipeline, args.table, stream):
            if isinstance(item, RejectedLine):
                rejected += 1
                if rejected <= MAX_REPORTED_LINES:
                    print(f"{name}:{item.line}: {item.error}", file=sys.stderr)
                continue
            accepted += 1
            record = pipeline.admit(item[1])
            if record is None:
                sampled_out += 1
            else:
                admitted += 1
                chunk.append(record)
            if len(chunk) >= IMPORT_CHUNK_ROWS:
                with conn.transaction():
                    written += copy_records(conn, cls, chunk)
                chunk = []
        if chunk:
            with conn.transaction():
                written += copy_records(conn, cls, chunk)
    if rejected > MAX_REPORTED_LINES:
        print(f"{name}: ... and {rejected - MAX_REPORTED_LINES} more rejected lines", file=sys.stderr)
    print(f"accepted {accepted}, rejected {rejected}")
    if sampled_out:
        print(f"written {written}, not kept by sampling {sampled_out}")
    if admitted > written:
        # Lines whose id is already in the table: an import run again after a failure.
        print(f"already present (same id), skipped: {admitted - written}")
    if rejected:
        print(f"notifyctl: {rejected} of {accepted + rejected} lines rejected", file=sys.stderr)
        return 2
    return 0
