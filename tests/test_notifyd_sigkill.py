"""notifyd killed with SIGKILL mid-send (no shutdown, no last write), then started again: every
notification still ends `sent`, and what the receiver gets twice carries the same webhook-id.

The real process (tests/daemon_harness.py), the suite's PostgreSQL, a webhook receiver on loopback
that holds requests until told to answer; every wait polls with a deadline.
"""

from __future__ import annotations

import signal
from collections import Counter

from tests.daemon_harness import DEADLINE, start_daemon, wait_for  # noqa: F401 - start_daemon is a fixture
from tests.test_end_to_end import (all_sent, daemon_yaml, gate, key, raise_events, rows,  # noqa: F401 - fixtures
                                   tenant, verify_signature, webhook_route)


def test_sigkill_mid_send_then_a_restart_sends_every_notification_and_repeats_carry_the_same_webhook_id(
        start_daemon, database_urls, gate, key):
    # lease 2s: the claims of the killed process run out soon and the next one takes them over.
    yaml = daemon_yaml(key, lease="2s", routes=webhook_route(gate.server.url("/hold")))
    first = start_daemon(yaml, name="first")
    first.wait_healthy()
    raise_events(first.config_path, [tenant(300 + i) for i in range(5)])
    wait_for(lambda: gate.server.received, "a webhook in flight (held by the receiver)")

    first.process.send_signal(signal.SIGKILL)
    assert first.process.wait(timeout=DEADLINE) == -signal.SIGKILL
    in_flight = Counter(r.headers["webhook-id"] for r in gate.server.received)
    killed = rows(database_urls)
    # Nothing was answered, so nothing is recorded as sent; what was in flight stays claimed.
    assert killed and all(r["status"] == "queued" for r in killed)
    assert set(in_flight) <= {r["idempotency_key"] for r in killed if r["send_attempts"] >= 1}

    gate.open.set()
    second = start_daemon(yaml, name="second")
    done = wait_for(lambda: all_sent(database_urls, 5), "every notification sent after the restart")
    arrived = Counter(r.headers["webhook-id"] for r in gate.server.received)
    # At least once, and only these notifications' ids.
    assert set(arrived) == {r["idempotency_key"] for r in done}
    # Each send cut short by the kill was made again, under the id it had: a receiver can drop it.
    for webhook_id, before in in_flight.items():
        assert arrived[webhook_id] > before
    attempts = {r["idempotency_key"]: r["send_attempts"] for r in done}
    assert all(attempts[webhook_id] >= 2 for webhook_id in in_flight)
    for request in gate.server.received:
        verify_signature(request)
    assert second.stop() == 0
