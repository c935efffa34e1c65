"""Alertmanager's API, end to end: the same 50,000 alerts POSTed to each system's
`POST /api/v2/alerts` in batches of 1,000, timed from the first POST to the 50,000th webhook at the
same receiver (bench/receiver.py); notify-engine's clock then also waits until every delivery is
recorded as sent in notify.notifications.

notify-engine runs as notifyd runs: `notifyd` processes on a private PostgreSQL cluster (made with
the embedded cluster's settings, engine.embedded.DEFAULT_SETTINGS, as notifyd ships), the first
serving the API (each batch one transaction: the upsert, the planner, commit, then the 200), each
running its dispatcher (woken by NOTIFY). Alertmanager 0.25 (/usr/bin/prometheus-alertmanager) is
configured as bench/delivery_bench.py configures it (group_wait 0, one group per alert).

Memory, sampled every 0.25 s while each side runs (the peak of the sum is reported):
  * notify-engine: the notifyd processes' memory with the pages they share counted once (each
    one's anonymous memory, plus the file-backed pages of the program and its libraries, which are
    the same pages in every notifyd: counted once, as Alertmanager's binary is; their RSS sum is
    printed beside it), plus the PSS of every process of its PostgreSQL cluster (postmaster, the
    backends of notifyd's connections, background workers). PSS, because each backend's RSS
    counts the shared buffers it touched in full, so an RSS sum counts them once per backend; the
    RSS sum is printed beside it.
  * Alertmanager: the RSS of its one process (and its VmHWM, the kernel's peak).

Run:  .venv/bin/python bench/am_api_bench.py        (about a minute or two; loopback only)
      --alerts N (default 50,000), --notifyd N (processes, default 1: the shipped daemon as one
      process, which on 2 cores used less CPU and memory than 2 or 3 at the same rate; BENCHMARKS.md),
      --workers N (delivery.workers),
      --api-only (the first notifyd serves the API and delivers nothing: delivery.workers 0),
      --skip-alertmanager, --skip-delivery-only
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from delivery_bench import (  # noqa: E402
    TIME_LIMIT, bench_cluster, free_port, peak_rss_mb, post_alert_batches, prepare_database,
    run_engine, running_alertmanager, start_receiver, stop_processes, wait_received,
)
from e2e_latency_bench import start_notifyd  # noqa: E402

GOAL_RATIO = 1.5
GOAL_MEMORY = 0.25


def _status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cpu_seconds(pid: int) -> float:
    """utime + stime of one process so far (the kernel's clock ticks)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cluster_pids(data_dir: Path) -> list[int]:
    """The postmaster (first line of postmaster.pid) and its children."""
    try:
        postmaster = int((data_dir / "postmaster.pid").read_text().split("\n")[0])
    except (OSError, ValueError):
        return []
    pids = [postmaster]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == postmaster:
            pids.append(int(stat.parent.name))
    return pids


class MemorySampler:
    """Samples `measure()` (a dict of MB figures with a 'total') every `interval` seconds in a
    thread; keeps the sample with the largest total. With `pids` (a function naming the processes
    of the side measured), also the CPU seconds those processes spent inside the block: the same
    work's cost on either side, whatever else the machine was doing."""

    def __init__(self, measure, interval: float = 0.25, pids=None):
        self.measure, self.interval, self.pids = measure, interval, pids
        self.peak: dict = {"total": 0.0}
        self._cpu_start: dict[int, float] = {}
        self._cpu_seen: dict[int, float] = {}   # a backend that exits keeps its last reading
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def cpu_seconds(self) -> float:
        return self.cpu_of(self._cpu_seen)

    def cpu_of(self, pids) -> float:
        return sum(self._cpu_seen[pid] - self._cpu_start.get(pid, 0.0) for pid in pids if pid in self._cpu_seen)

    def _sample(self) -> None:
        sample = self.measure()
        if sample["total"] > self.peak["total"]:
            self.peak = sample
        for pid in self.pids() if self.pids else ():
            self._cpu_seen[pid] = max(self._cpu_seen.get(pid, 0.0), _cpu_seconds(pid))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self):
        for pid in self.pids() if self.pids else ():
            self._cpu_start[pid] = self._cpu_seen[pid] = _cpu_seconds(pid)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()


def _status_kbs(pid: int, *fields: str) -> list[int]:
    values = dict.fromkeys(fields, 0)
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name = line.split(":", 1)[0]
            if name in values:
                values[name] = int(line.split()[1])
    except OSError:
        pass
    return [values[f] for f in fields]


def notifyd_kb(pids: list[int]) -> tuple[int, int]:
    """The notifyd processes' memory counting what they share once, and their RSS sum. Each is
    the same program (libpython, libcrypto, psycopg's libpq...): its file-backed pages are the
    same pages in every process, as Alertmanager's binary is in its one process, so they count
    once (the largest RssFile); their own memory (RssAnon, RssShmem) counts per process."""
    rows = [_status_kbs(p, "RssAnon", "RssFile", "RssShmem", "VmRSS") for p in pids]
    own = sum(anon + shmem for anon, _, shmem, _ in rows)
    return own + max((file for _, file, _, _ in rows), default=0), sum(rss for *_, rss in rows)


def engine_memory(notifyd_pids: list[int], data_dir: Path):
    def measure() -> dict:
        notifyd, notifyd_rss = (kb / 1024 for kb in notifyd_kb(notifyd_pids))
        pg = cluster_pids(data_dir)
        pg_pss = sum(_pss_kb(p) for p in pg) / 1024
        pg_rss = sum(_status_kb(p, "VmRSS") for p in pg) / 1024
        return dict(total=notifyd + pg_pss, notifyd=notifyd, notifyd_rss=notifyd_rss, pg_pss=pg_pss, pg_rss=pg_rss,
                    pg_processes=len(pg))
    return measure


def run_engine_api(alerts: int, receiver_port: int, workdir: Path, processes: int, workers: int, *,
                   api_only: bool = False) -> dict:
    import httpx
    import psycopg

    from engine.app import App
    from engine.config import load_config
    from engine.tokens import add_token

    data_dir = workdir / "pg-api"
    with bench_cluster(data_dir, settings={}) as url:   # the embedded cluster's settings, as notifyd ships
        path = "/notify-engine-api"
        prepare_database(url, alerts, f"http://127.0.0.1:{receiver_port}{path}", with_alerts=False)
        api_port = free_port()
        daemons = []
        try:
            for n in range(processes):
                # The first serves the API; every one runs a dispatcher on the shared queue, but with
                # --api-only the first claims nothing (delivery.workers 0) and leaves it to the others.
                api = ("api:", f"  listen: 127.0.0.1:{api_port}") if n == 0 else ("api:", "  listen: null")
                own_workers = 0 if api_only and n == 0 else workers
                # The first extra line lands in start_notifyd's delivery: section.
                proc, _ = start_notifyd(workdir, url, receiver_port, "1d", route=False, name=f"notifyd-{n}",
                                        extra=(f"  workers: {own_workers}", *api))
                daemons.append(proc)
            with App(load_config(str(workdir / "notifyd-0.yaml"))) as app:
                token = add_token(app, "bench-prometheus", ["events"])
            client = httpx.Client(base_url=f"http://127.0.0.1:{api_port}", trust_env=False, timeout=60,
                                  headers={"Authorization": f"Bearer {token}"})
            client.get("/v1/openapi.json").raise_for_status()   # connected before the clock starts
            time.sleep(2)   # the dispatchers are listening
            pids = lambda: [d.pid for d in daemons] + cluster_pids(data_dir)  # noqa: E731
            with MemorySampler(engine_memory([d.pid for d in daemons], data_dir), pids=pids) as memory:
                start = time.perf_counter()
                post_alert_batches(client, alerts)
                posted_seconds = time.perf_counter() - start
                received = wait_received(receiver_port, path, alerts)
                received_seconds = time.perf_counter() - start
                with psycopg.connect(url, autocommit=True) as conn:
                    recorded = 0
                    deadline = time.monotonic() + TIME_LIMIT
                    while time.monotonic() < deadline:
                        recorded = conn.execute("SELECT count(*) FROM notify.notifications WHERE status = 'sent'"
                                                " AND sent_at IS NOT NULL AND send_attempts = 1").fetchone()[0]
                        if recorded >= alerts:
                            break
                        time.sleep(0.05)
                seconds = time.perf_counter() - start
            hwm = sum(_status_kb(d.pid, "VmHWM") for d in daemons) / 1024
            with psycopg.connect(url, autocommit=True) as conn:
                alerts_open = conn.execute("SELECT count(*) FROM notify.alerts WHERE status = 'open'").fetchone()[0]
            return dict(seconds=seconds, received_seconds=received_seconds, posted_seconds=posted_seconds,
                        received=received, recorded_sent=recorded, alerts_open=alerts_open,
                        memory=memory.peak, notifyd_hwm_mb=hwm, cpu_seconds=memory.cpu_seconds,
                        cpu_api=memory.cpu_of([daemons[0].pid]), cpu_other_notifyd=memory.cpu_of([d.pid for d in daemons[1:]]))
        finally:
            stop_processes(daemons)


def run_alertmanager_sampled(alerts: int, receiver_port: int, workdir: Path) -> dict:
    with running_alertmanager(receiver_port, workdir) as (proc, client, version):
        def measure() -> dict:
            return dict(total=_status_kb(proc.pid, "VmRSS") / 1024)
        with MemorySampler(measure, pids=lambda: [proc.pid]) as memory:
            start = time.perf_counter()
            post_alert_batches(client, alerts)
            posted_seconds = time.perf_counter() - start
            delivered = wait_received(receiver_port, "/alertmanager", alerts)
            seconds = time.perf_counter() - start
        return dict(version=version, delivered=delivered, seconds=seconds, posted_seconds=posted_seconds,
                    rss_mb=memory.peak["total"], hwm_mb=peak_rss_mb(proc.pid), cpu_seconds=memory.cpu_seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=50_000)
    parser.add_argument("--notifyd", type=int, default=1, help="notifyd processes (the first serves the API)")
    parser.add_argument("--workers", type=int, default=2, help="delivery.workers of each (default 2, the shipped value)")
    parser.add_argument("--api-only", action="store_true",
                        help="the first notifyd serves the API and delivers nothing (delivery.workers 0); "
                             "the other --notifyd - 1 deliver")
    parser.add_argument("--skip-alertmanager", action="store_true")
    parser.add_argument("--skip-delivery-only", action="store_true")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="ne-am-api-bench-"))
    workdir.chmod(0o755)
    receiver_port = free_port()
    receiver = start_receiver(receiver_port)
    try:
        ours = run_engine_api(args.alerts, receiver_port, workdir, args.notifyd, args.workers, api_only=args.api_only)
        rate = ours["recorded_sent"] / ours["seconds"]
        mem = ours["memory"]
        print(f"notify-engine via POST /api/v2/alerts: {args.alerts:,} alerts in batches of 1,000 to {args.notifyd} "
              f"notifyd (API in the first{', which delivers nothing' if args.api_only else ''}); all posted (200s) at {ours['posted_seconds']:.2f} s; receiver got "
              f"{ours['received']:,} at {ours['received_seconds']:.2f} s; {ours['recorded_sent']:,} recorded sent at "
              f"{ours['seconds']:.2f} s; open alerts {ours['alerts_open']:,}", flush=True)
        print(f"  webhooks/s {rate:,.0f} (to the last recorded), {ours['received'] / ours['received_seconds']:,.0f} "
              f"(to the last received); memory at the sampled peak: notifyd {mem.get('notifyd', 0):.0f} MB (shared "
              f"libraries once; RSS sum {mem.get('notifyd_rss', 0):.0f} MB) + "
              f"PostgreSQL PSS {mem.get('pg_pss', 0):.0f} MB ({mem.get('pg_processes', 0)} processes; their RSS sum "
              f"{mem.get('pg_rss', 0):.0f} MB) = {mem['total']:.0f} MB; notifyd VmHWM {ours['notifyd_hwm_mb']:.0f} MB",
              flush=True)
        print(f"  CPU seconds: {ours['cpu_seconds']:.1f} in all = the API's notifyd {ours['cpu_api']:.1f} + the other "
              f"notifyd {ours['cpu_other_notifyd']:.1f} + PostgreSQL "
              f"{ours['cpu_seconds'] - ours['cpu_api'] - ours['cpu_other_notifyd']:.1f}", flush=True)
        delivery_only = None
        if not args.skip_delivery_only:
            delivery_only = run_engine(args.alerts, receiver_port, workdir, 2, args.workers)
            delivery_only["rate"] = delivery_only["sent"] / delivery_only["deliver_seconds"]
            print(f"notify-engine, delivery only (delivery_bench: planned before the clock, 2 dispatcher processes): "
                  f"{delivery_only['rate']:,.0f}/s; planning took {delivery_only['plan_seconds']:.2f} s off the clock",
                  flush=True)
        if not args.skip_alertmanager:
            am = run_alertmanager_sampled(args.alerts, receiver_port, workdir)
            am_rate = am["delivered"] / am["seconds"]
            print(f"{am['version']}: delivered {am['delivered']:,} in {am['seconds']:.2f} s (posting took "
                  f"{am['posted_seconds']:.2f} s); RSS at the sampled peak {am['rss_mb']:.0f} MB, VmHWM {am['hwm_mb']:.0f} MB")
            am_memory = max(am["rss_mb"], am["hwm_mb"])
            print("\n| measure | notify-engine | Alertmanager (same run) | ratio |")
            print("| --- | --- | --- | --- |")
            print(f"| webhooks/s, first POST to last webhook (ours: to last recorded sent) | {rate:,.0f} | {am_rate:,.0f} | "
                  f"{rate / am_rate:.2f} |")
            if delivery_only:
                print(f"| webhooks/s, ours delivery only (planned queue) | {delivery_only['rate']:,.0f} | {am_rate:,.0f} | "
                      f"{delivery_only['rate'] / am_rate:.2f} |")
            print(f"| CPU seconds for the same work (ours: notifyd + PostgreSQL; AM: its process; the receiver "
                  f"and the posting client on neither) | {ours['cpu_seconds']:.1f} | {am['cpu_seconds']:.1f} | "
                  f"{ours['cpu_seconds'] / am['cpu_seconds']:.2f} |")
            print(f"| peak memory MB (ours: notifyd, shared libraries once, + PostgreSQL PSS; AM: max(RSS sampled, VmHWM)) | "
                  f"{mem['total']:.0f} | {am_memory:.0f} | {mem['total'] / am_memory:.2f} |")
            print(f"\ngoal: rate >= {GOAL_RATIO}x: {'met' if rate / am_rate >= GOAL_RATIO else 'NOT met'} "
                  f"({rate / am_rate:.2f}); every delivery recorded: "
                  f"{'yes' if ours['recorded_sent'] >= args.alerts else 'NO'}; memory <= {GOAL_MEMORY}x: "
                  f"{'met' if mem['total'] / am_memory <= GOAL_MEMORY else 'NOT met'} ({mem['total'] / am_memory:.2f})")
    finally:
        receiver.terminate()
        receiver.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
