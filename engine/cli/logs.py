"""notifyctl logs import TABLE FILE: JSON Lines into a log table."""

from __future__ import annotations

import sys
from pathlib import Path

import psycopg

from engine.errors import BadInput, NotifyError
from engine.logwriter.copy import copy_records
from engine.logwriter.imports import AlreadyImported, FileIdentity
from engine.logwriter.jsonl import RejectedLine, parse_json_lines
from engine.logwriter.pipeline import LogPipeline
from engine.logwriter.records import record_type

# Rows per COPY: each chunk commits, so a failure later in a large file keeps what went in, and
# running the command again writes only the rest (engine/logwriter/imports.py).
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
    last_line = committed_through = 0   # line numbers: read so far / done and committed
    chunk = []
    progress = Progress(name) if sys.stderr.isatty() else None   # a person watching, not a pipe or a test

    def commit_chunk(conn, already_imported) -> None:
        nonlocal written, committed_through, chunk
        with conn.transaction():
            written += copy_records(conn, cls, already_imported.new_records(conn, chunk))
        committed_through, chunk = last_line, []
        if progress:
            progress.show(last_line, written)

    with stream, app.databases.connect_raw(cls.SECTION) as conn:
        identity, lines = FileIdentity.read(args.table, stream)
        already_imported = AlreadyImported(conn, cls)
        try:
            for item in parse_json_lines(pipeline, args.table, lines, line_id=identity.line_id):
                if isinstance(item, RejectedLine):
                    last_line = item.line
                    rejected += 1
                    if rejected <= MAX_REPORTED_LINES:
                        if progress:
                            progress.end()   # the message on a line of its own, not after the counts
                        print(f"{name}:{item.line}: {item.error}", file=sys.stderr)
                    continue
                last_line = item[0]
                accepted += 1
                record = pipeline.admit(item[1])
                if record is None:
                    sampled_out += 1
                else:
                    admitted += 1
                    chunk.append(record)
                if len(chunk) >= IMPORT_CHUNK_ROWS:
                    commit_chunk(conn, already_imported)
            if chunk:
                commit_chunk(conn, already_imported)
        except (Exception, KeyboardInterrupt) as exc:
            if progress:
                progress.end()
            done = (f"lines 1-{committed_through} are committed ({written} rows written)" if committed_through
                    else "nothing was committed")
            message = (f"logs import {name}: failed in lines {committed_through + 1}-{max(last_line, committed_through + 1)}: "
                       f"{pipeline.redactor.text(_one_line(exc))}; {done}; run the same command again to "
                       "continue (lines already committed are not written twice)")
            if isinstance(exc, KeyboardInterrupt):
                print(f"notifyctl: {message}", file=sys.stderr)
                raise
            raise NotifyError(message) from exc
    if progress:
        progress.end()
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


def _one_line(exc: BaseException) -> str:
    # The server's primary message only: its DETAIL quotes the row.
    if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
        return exc.diag.message_primary
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Progress:
    """One self-overwriting line on a terminal, updated at each committed chunk."""

    def __init__(self, name: str):
        self.name = name
        self.shown = False

    def show(self, line: int, written: int) -> None:
        sys.stderr.write(f"\r{self.name}: {line} lines read, {written} rows written")
        sys.stderr.flush()
        self.shown = True

    def end(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
            self.shown = False
