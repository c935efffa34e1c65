"""POST /v1/events through the HTTP API, with `notifyd` running as a real process (API, planner
in each request's transaction, dispatcher) on a private PostgreSQL cluster, one ops webhook
route to a local receiver (bench/e2e_latency_bench.py's, which stamps each webhook's arrival).

Two phases, each bounded in time:
  1. load, once per count in --clients (16, 32, 64 by default): that many concurrent HTTP/1.1
     keep-alive clients (aiohttp, in this process) post --load-events trigger events, each for its
     own tenant, as fast as the answers come; the clock runs from the first request to the last
     answer. Each client waits for its answer before it sends again (a closed loop), so with few
     clients the rate is bounded by the clients (clients / latency), not by the server: the
     counts show the whole curve, and the goal is met when one count meets both the rate and the
     p99. Figures: events/s answered, request
     latency p50/p99/max (request sent to answer read), how many webhooks arrived, and the CPU
     time per event of notifyd (API and dispatcher), PostgreSQL and the bench's own clients
     during the load (steadier than the rate on a shared machine).
  2. latency: --events events paced at --rate per second (absolute schedule, one request in
     flight per event); latency = the webhook's arrival at the receiver - the instant the request
     started (the same clock, time.time()), as e2e_latency_bench measures raise_event.
Reference in the same run: a bare POST of the same size to the same receiver at the same rate.

Run:  .venv/bin/python bench/api_events_bench.py      (about a minute; loopback only)
      --clients N[,N...] (default 16,32,64), --load-events N (default 20,000), --events N (default 2,000),
      --rate R (default 200)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from delivery_bench import (  # noqa: E402
    bench_cluster, cluster_cpu_seconds, free_port, pid_cpu_seconds, process_cpu_seconds, stop_processes,
)
from e2e_latency_bench import (  # noqa: E402
    measure, percentiles, receiver_process, run_bare_posts, start_notifyd, tenant, wait_arrivals,
)

GOAL_RATE = 2000.0
GOAL_P99 = 0.050


def event_body(phase: int, i: int) -> bytes:
    return json.dumps({"action": "trigger", "tenant_id": tenant(phase, i), "kind": "PAYMENT_FAILED",
                       "context": {"invoice": f"inv-{i}", "amount_cents": 4900}}).encode()


async def load(api: str, token: str, count: int, clients: int, phase: int) -> dict:
    import aiohttp

    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    bodies = [event_body(phase, i) for i in range(count)]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    next_index = iter(range(count))

    async def client(session) -> None:
        for i in next_index:
            started = time.perf_counter()
            async with session.post(f"{api}/v1/events", data=bodies[i], headers=headers) as response:
                await response.read()
            latencies.append(time.perf_counter() - started)
            statuses[response.status] = statuses.get(response.status, 0) + 1

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(f"{api}/v1/openapi.json") as response:   # connected before the clock
            await response.read()
        start = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        seconds = time.perf_counter() - start
    return dict(percentiles(latencies), seconds=seconds, rate=count / seconds, statuses=statuses)


async def paced_events(api: str, token: str, count: int, rate: float, phase: int) -> tuple[dict, dict]:
    import aiohttp

    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    pushed: dict[str, float] = {}
    answers: list[float] = []
    statuses: dict[int, int] = {}

    async def one(session, i: int) -> None:
        body = event_body(phase, i)
        pushed[f"alert.opened:{tenant(phase, i)}"] = time.time()
        started = time.perf_counter()
        async with session.post(f"{api}/v1/events", data=body, headers=headers) as response:
            await response.read()
        answers.append(time.perf_counter() - started)
        statuses[response.status] = statuses.get(response.status, 0) + 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
        tasks = []
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(count):
            delay = start + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session, i)))
        await asyncio.gather(*tasks)
        push_seconds = loop.time() - start
    return pushed, dict(percentiles(answers), push_seconds=push_seconds, statuses=statuses)


def fmt(r: dict) -> str:
    return f"p50 {r['p50'] * 1000:6.1f} ms  p99 {r['p99'] * 1000:6.1f} ms  max {r['max'] * 1000:6.1f} ms  (n={r['n']})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="16,32,64", help="concurrent clients, one load phase per count")
    parser.add_argument("--load-events", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=2_000)
    parser.add_argument("--rate", type=float, default=200.0)
    args = parser.parse_args()

    from engine.app import App
    from engine.config import load_config
    from engine.tokens import add_token

    workdir = Path(tempfile.mkdtemp(prefix="ne-api-events-bench-"))
    workdir.chmod(0o755)
    receiver_port = free_port()
    spawn = multiprocessing.get_context("spawn")
    ready = spawn.Event()
    receiver = spawn.Process(target=receiver_process, args=(receiver_port, ready), daemon=True)
    notifyd = None
    try:
        with bench_cluster(workdir / "pg") as url:
            receiver.start()
            if not ready.wait(30):
                raise SystemExit("the receiver did not start")
            api_port = free_port()
            notifyd, _ = start_notifyd(workdir, url, receiver_port, "1d",
                                       extra=("api:", f"  listen: 127.0.0.1:{api_port}"))
            api = f"http://127.0.0.1:{api_port}"
            with App(load_config(str(workdir / "notifyd.yaml"))) as app:
                token = add_token(app, "bench-billing", ["events"])
            # Warm-up, not measured: connections, prepared plans, the dispatcher's loop.
            asyncio.run(load(api, token, 200, 4, phase=9))

            results = []
            for n, clients in enumerate(int(c) for c in args.clients.split(",")):
                phase = 10 + n   # each phase's events name tenants of their own
                # CPU per event of each part (the machine may be shared: wall rates are noisy, CPU less so).
                cpu_before = (pid_cpu_seconds(notifyd.pid), cluster_cpu_seconds(workdir / "pg"), process_cpu_seconds())
                result = asyncio.run(load(api, token, args.load_events, clients, phase=phase))
                cpu = [(after - before) / args.load_events * 1e6 for before, after in zip(cpu_before, (
                    pid_cpu_seconds(notifyd.pid), cluster_cpu_seconds(workdir / "pg"), process_cpu_seconds()))]
                keys = [f"alert.opened:{tenant(phase, i)}" for i in range(args.load_events)]
                got = wait_arrivals(receiver_port, keys, 120)
                delivered = sum(1 for key in keys if key in got)
                print(f"load: {args.load_events:,} POST /v1/events from {clients} concurrent clients: "
                      f"{result['rate']:,.0f} events/s answered ({result['seconds']:.2f} s); request {fmt(result)}; "
                      f"statuses {result['statuses']}; webhooks arrived {delivered:,}", flush=True)
                print(f"  CPU per event during the load: notifyd {cpu[0]:.0f} us (API and dispatcher), PostgreSQL "
                      f"{cpu[1]:.0f} us, the bench's clients {cpu[2]:.0f} us", flush=True)
                results.append((clients, result))

            bare = run_bare_posts(receiver_port, min(args.events, 500), args.rate)
            pushed, answers = asyncio.run(paced_events(api, token, args.events, args.rate, phase=2))
            e2e = measure(receiver_port, pushed, answers["push_seconds"])
            print(f"paced at {args.rate:.0f}/s: event -> webhook via POST /v1/events  p50 {e2e['p50'] * 1000:6.1f} ms  "
                  f"p99 {e2e['p99'] * 1000:6.1f} ms  max {e2e['max'] * 1000:6.1f} ms  (n={e2e['n']}, missing "
                  f"{e2e['missing']}, pushed at {e2e['achieved_rate']:.0f}/s)", flush=True)
            print(f"  the answers themselves: {fmt(answers)}; statuses {answers['statuses']}")
            print(f"reference, same run: bare POST to the receiver p50 {bare['p50'] * 1000:.2f} ms, "
                  f"p99 {bare['p99'] * 1000:.2f} ms")
            meeting = [(c, r) for c, r in results if r["rate"] >= GOAL_RATE and r["p99"] < GOAL_P99]
            print(f"\ngoal: >= {GOAL_RATE:,.0f} events/s with request p99 < {GOAL_P99 * 1000:.0f} ms: "
                  f"{'met' if meeting else 'NOT met'} ("
                  + "; ".join(f"{c} clients {r['rate']:,.0f}/s, p99 {r['p99'] * 1000:.1f} ms" for c, r in results)
                  + f"); event -> webhook p99 < "
                  f"{GOAL_P99 * 1000:.0f} ms at {args.rate:.0f}/s: "
                  f"{'met' if e2e.get('p99', 1e9) < GOAL_P99 and not e2e['missing'] else 'NOT met'} "
                  f"({e2e.get('p99', float('nan')) * 1000:.1f} ms)")
    finally:
        stop_processes([notifyd])
        if receiver.is_alive():
            receiver.terminate()
            receiver.join(10)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
