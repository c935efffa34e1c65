"""Webhook summary benchmark: the CPU one webhook delivery spends building its body (payload, JSON
encoding, signature) with channels.webhook.summary on and off, in the same run, one process.

What is timed: WebhookChannel.summary (when on) + build_payload + encode_payload + sign, per
message, over a rotating set of 100 alerts: every kind (quota, wallet, payment, rate limit), each
with 20 different numbers and times, transitions opened, reminder and resolved, two locales and two
time zones. No network, no database: the send itself is the same either way.

engine.messages caches each format by its exact input (plan limits, reset dates and today's date
recur; counts and amounts mostly do not), so two figures with the summary on: "warm", the caches
holding the 100 alerts' values, and "cold", the caches emptied before every render, so every
number, amount and date the summary reads is formatted by Babel again (the worst case).

Run:  .venv/bin/python bench/summary_bench.py [--renders N] [--rounds R] [--profile]
Prints µs of this process's CPU time per render (time.process_time: waiting for a busy CPU is not
counted) for each mode, best of R rounds, and the difference the summary adds.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from channels.base import Message  # noqa: E402
from channels.webhook import WebhookChannel, build_payload, encode_payload, sign  # noqa: E402
from engine.config import Config  # noqa: E402
from engine import messages as messages_module  # noqa: E402
from engine.messages import Composer  # noqa: E402

NOW = datetime(2026, 11, 30, 9, 15, tzinfo=timezone.utc)
VARIANTS = 20   # distinct values per kind, so the formats' caches meet new numbers as in production


def contexts(n: int) -> dict[str, dict]:
    """The context of each kind, its numbers and times varied by n."""
    captured = (NOW - timedelta(minutes=7 * n)).isoformat()
    return {
        "RUNS_THRESHOLD": {"metric": "runs_used", "value": 800 + 13 * n, "limit": 1000, "percent": 80 + 1.3 * n,
                           "level_percent": 80, "plan": "default", "period": "2026-11", "captured_at": captured},
        "STORAGE_THRESHOLD": {"metric": "storage_gb", "value": 9.5 + 0.03 * n, "limit": 10, "level_percent": 95,
                              "plan": "default", "period": "2026-11", "captured_at": captured},
        "WALLET_LOW": {"value": 320 - 11 * n, "floor": 500, "plan": "default", "runway_days": 2.5 + n / 10,
                       "burn_per_day": 128 + n, "runway_limit_days": 7, "captured_at": captured},
        "PAYMENT_FAILED": {"event": {"invoice_number": f"INV-2026-{n:04d}", "amount_cents": 4900 + 100 * n,
                                     "currency": "usd", "failure_message": "card declined",
                                     "next_attempt_at": "2026-12-02T09:00:00Z"}},
        "RATE_LIMIT": {"value": 1240 + 17 * n, "threshold": 1000, "window_seconds": 300},
    }


def messages() -> list[Message]:
    out = []
    for n in range(VARIANTS):
        for i, (kind, context) in enumerate(contexts(n).items()):
            transition = ("opened", "reminder", "resolved")[n % 3]
            locale, zone = (("en", "UTC"), ("de", "Europe/Berlin"))[n % 2]
            alert = {"id": uuid.uuid4(), "tenant_id": uuid.uuid4(), "base_id": uuid.uuid4() if i % 2 else None,
                     "kind": kind, "severity": "warn", "status": "open", "dedupe_key": f"{kind}:{n}",
                     "first_seen_at": NOW - timedelta(hours=3, minutes=n), "last_seen_at": NOW, "context": context}
            out.append(Message(notification_id=str(uuid.uuid4()), tenant_id=str(alert["tenant_id"]),
                               alert_id=str(alert["id"]), channel="webhook", recipient="http://127.0.0.1:9/",
                               idempotency_key=f"msg_{uuid.uuid4().hex}", transition=transition, reminder_no=0,
                               severity="warn", attempt=1, now=NOW, alert=alert, secret="whsec_c2VjcmV0",
                               destination_id=str(uuid.uuid4()), timezone=zone, locale=locale))
    return out


def body(channel: WebhookChannel, message: Message) -> bytes:
    """What WebhookChannel.send does before the network."""
    data = encode_payload(build_payload(message, channel.summary(message) if channel.with_summary else None))
    sign(message.secret, message.idempotency_key, int(message.now.timestamp()), data)
    return data


def clear_format_caches() -> None:
    for name in ("_format_decimal", "_format_money", "_format_percent", "_format_day", "_format_month",
                 "_format_duration", "_format_datetime"):
        cached = getattr(messages_module, name, None)   # absent in a tree before the caches (a before/after run)
        if cached is not None:
            cached.cache_clear()


def per_render_us(channel: WebhookChannel, batch: list[Message], renders: int, rounds: int,
                  cold: bool = False) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for i in range(renders):
            if cold:
                clear_format_caches()
            body(channel, batch[i % len(batch)])
        best = min(best, (time.process_time() - started) / renders)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renders", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="cProfile the summary-on loop instead")
    args = parser.parse_args()

    config = Config()
    composer = Composer(config)
    with_summary = WebhookChannel(allow_private_networks=True, connect_timeout=5, read_timeout=10,
                                  composer=composer, summary=True)
    without = WebhookChannel(allow_private_networks=True, connect_timeout=5, read_timeout=10,
                             composer=composer, summary=False)
    batch = messages()
    for message in batch:   # warm: templates compiled, Babel's locale data loaded
        body(with_summary, message)
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for i in range(args.renders):
            body(with_summary, batch[i % len(batch)])
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
        return
    print(f"{len(batch)} distinct messages, {args.renders} renders per round, best of {args.rounds} rounds, "
          "CPU time")
    off = per_render_us(without, batch, args.renders, args.rounds)
    on = per_render_us(with_summary, batch, args.renders, args.rounds)
    cold_off = per_render_us(without, batch, args.renders, args.rounds, cold=True)   # the clearing's own cost
    cold = per_render_us(with_summary, batch, args.renders, args.rounds, cold=True)
    print(f"summary off:         {off:8.1f} µs per render")
    print(f"summary on, warm:    {on:8.1f} µs per render   (adds {on - off:6.1f} µs = {(on - off) / 1000:.3f} ms)")
    print(f"summary on, cold:    {cold:8.1f} µs per render   (adds {cold - cold_off:6.1f} µs = "
          f"{(cold - cold_off) / 1000:.3f} ms)")


if __name__ == "__main__":
    main()
