"""api_access_logs rows/s through the batched writer, beside a plain COPY of the same rows.

    .venv/bin/python bench/logwriter_bench.py [--rows 100000]

Starts a private PostgreSQL (the machine's binaries, default durability settings) in a temporary
directory, or uses NOTIFY_BENCH_DATABASE_URL (a database it may create tables in), applies the
schema, then, on the monthly-partitioned data_activity.api_access_logs with its BRIN and three
B-tree indexes:

1. reference: one psycopg COPY ... FROM STDIN of the rows, tuples prepared beforehand;
2. BatchedLogWriter with redaction rules turned off: the writer's own overhead;
3. BatchedLogWriter with the default redaction rules (what a service gets): the full path;
4. the same full path when every row's user agent and route are distinct (no redaction cache hits,
   and both strings contain characters that make the rules scan them): the worst case;
5. the cost per row of validation (record construction) and of redaction, in microseconds.

The table is truncated before each run; each figure is the best of --repeat runs. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import shutil
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402

from engine.config import LogsConfig, LogWriterConfig, RedactionConfig, SECTIONS  # noqa: E402
from engine.db import Databases  # noqa: E402
from engine.embedded import EmbeddedCluster, find_bin_dir  # noqa: E402
from engine.logwriter import ApiAccessLog, LogPipeline  # noqa: E402
from engine.logwriter.batched import BatchedLogWriter  # noqa: E402
from engine.logwriter.copy import copy_statement  # noqa: E402
from engine.logwriter.redaction import Redactor  # noqa: E402
from engine.migrations import apply_migrations  # noqa: E402
from engine.partitions import ensure_partitions  # noqa: E402

NOW = datetime.now(timezone.utc)
ROUTES = ["/v1/records", "/v1/records/{id}", "/v1/bases/{id}/tables", "/v1/records?view=grid&page=3"]
AGENTS = ["Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 Safari/605.1.15",
          "python-httpx/0.28.1", "acme-sync/2.4 (+https://acme.example/bot)", "curl/8.5.0"]


def make_rows(count: int, seed: int = 7, distinct_text: bool = False) -> list[ApiAccessLog]:
    rnd = random.Random(seed)
    tenants = [str(uuid.UUID(int=rnd.getrandbits(128), version=4)) for _ in range(50)]
    return [
        ApiAccessLog(tenant_id=tenants[i % 50], base_id=tenants[(i * 7) % 50], token_id=tenants[(i * 3) % 50],
                     route=f"/v1/records?view=grid&page={i}" if distinct_text else ROUTES[i % 4],
                     method="GET" if i % 5 else "POST", status=200 if i % 20 else 404,
                     latency_ms=rnd.randint(1, 900), bytes_in=rnd.randint(0, 4000), bytes_out=rnd.randint(0, 90000),
                     ip=f"198.51.{i % 256}.{(i // 256) % 256}",
                     user_agent=f"acme-sync/2.{i} (+https://acme.example/bot)" if distinct_text else AGENTS[i % 4],
                     occurred_at=NOW - timedelta(seconds=i % 3600))
        for i in range(count)
    ]


def truncate(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("TRUNCATE data_activity.api_access_logs")


def plain_copy(url: str, rows: list[ApiAccessLog]) -> float:
    tuples = [r.copy_row() for r in rows]
    statement = copy_statement(ApiAccessLog)
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        with conn.cursor() as cursor, cursor.copy(statement) as copy:
            for row in tuples:
                copy.write_row(row)
        conn.commit()
        return time.perf_counter() - started


def batched(databases: Databases, rows: list[ApiAccessLog], redaction: RedactionConfig) -> float:
    pipeline = LogPipeline(LogsConfig(redaction=redaction))

    async def run() -> float:
        writer = BatchedLogWriter(databases, LogWriterConfig(batch_rows=5000, buffer_rows=50000, flush_interval=1),
                                  pipeline)
        await writer.start()
        started = time.perf_counter()
        for i, row in enumerate(rows):
            await writer.write(row)
            if i % 1000 == 0:
                await asyncio.sleep(0)   # a service's request loop yields between requests
        await writer.close()
        elapsed = time.perf_counter() - started
        assert writer.written[ApiAccessLog.TABLE] == len(rows), writer.written
        return elapsed

    return asyncio.run(run())


def per_row_us(fn, count: int) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) / count * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    root = None
    cluster = None
    url = os.environ.get("NOTIFY_BENCH_DATABASE_URL")
    if not url:
        root = Path(tempfile.mkdtemp(prefix="ne-bench-"))
        root.chmod(0o755)
        cluster = EmbeddedCluster(root / "pg", find_bin_dir(os.environ.get("NOTIFY_PG_BIN")),
                                  "postgres" if os.geteuid() == 0 else None)
        cluster.acquire()
        url = cluster.url("data_activity")
    databases = Databases({s: url for s in SECTIONS})
    try:
        apply_migrations(databases)
        ensure_partitions(databases, NOW, 1)

        build = []
        validation_us = per_row_us(lambda: build.append(make_rows(args.rows)), args.rows)
        samples = build[0]
        redactor = Redactor()
        redaction_us = per_row_us(lambda: [redactor.redact(r) for r in samples], args.rows)
        distinct = make_rows(args.rows, distinct_text=True)
        redaction_distinct_us = per_row_us(lambda: [Redactor().redact(r) for r in distinct[:1]] and
                                           [redactor.redact(r) for r in distinct], args.rows)

        copy_times, raw_times, full_times, distinct_times = [], [], [], []
        for _ in range(args.repeat):
            truncate(url)
            copy_times.append(plain_copy(url, make_rows(args.rows)))
            truncate(url)
            raw_times.append(batched(databases, make_rows(args.rows), RedactionConfig(keys=[], patterns=[])))
            truncate(url)
            full_times.append(batched(databases, make_rows(args.rows), RedactionConfig()))
            truncate(url)
            distinct_times.append(batched(databases, make_rows(args.rows, distinct_text=True), RedactionConfig()))
        copy_rate = args.rows / min(copy_times)
        raw_rate = args.rows / min(raw_times)
        full_rate = args.rows / min(full_times)
        distinct_rate = args.rows / min(distinct_times)

        print(f"api_access_logs, {args.rows} rows, best of {args.repeat}, {platform.node()} "
              f"({os.cpu_count()} cores), {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
        print(f"  reference: plain COPY (tuples prepared)          {copy_rate:>10,.0f} rows/s")
        print(f"  batched writer, redaction off                    {raw_rate:>10,.0f} rows/s   ratio {raw_rate / copy_rate:.2f}")
        print(f"  batched writer, default redaction (full path)    {full_rate:>10,.0f} rows/s   ratio {full_rate / copy_rate:.2f}   goal >= 0.80")
        print(f"  full path, every user agent and route distinct   {distinct_rate:>10,.0f} rows/s   ratio {distinct_rate / copy_rate:.2f}")
        print(f"  validation (record construction) per row         {validation_us:>10.2f} us")
        print(f"  redaction (default rules) per row, repeated text {redaction_us:>10.2f} us")
        print(f"  redaction per row, every string distinct         {redaction_distinct_us:>10.2f} us")
    finally:
        databases.dispose()
        if cluster is not None:
            cluster.release()
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
