"""One process of the orders end-to-end test (tests/senders/test_orders_e2e.py).

``python _orders_e2e_worker.py REDIS_URL BASE_URL API_KEY SECRET_KEY INDEX CUSTOMERS``
configures the default tracker as an application would (a ``BackgroundSender`` with the
emulator's base URL and a ``RedisRateLimiter`` per resource on ``REDIS_URL``, Gameball's
real limits), then runs the commands the test writes on stdin, one line each:

- ``round N``: each of the process's ``CUSTOMERS`` shoppers views 10 products
  (``@track``, an event name each: a shopper's events coalesce into one request), and
  every other shopper then checks out (``@track_order``); the other half of the orders
  are placed by as many buyers who send no events (a point of sale). Answers ``sent N``
  once the calls returned (the sender delivers in the background).
- ``flush``: waits until everything was delivered or finally failed, answers ``flushed``.
- ``end``: closes the tracker and prints one JSON line: whether the final flush
  delivered everything, the sender's counters, every outcome the tracker's
  ``on_outcome`` hook received (counted by resource and status, the duplicates apart),
  every drop ``on_error`` reported, and the windows of its Redis limiters.

Every customer's calls carry a sequence number (event metadata ``seq``, order
``extra.seq``), increasing in the order they were made, so the test can check that
each customer's events and orders reached Gameball in that order.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gbtrack
from gbtrack import DeliveryOutcome, track, track_order
from gbtrack.senders import RedisRateLimiter, RetryPolicy

EVENTS_PER_CHECKOUT = 10
"""Events per shopper and round: ``viewed_0`` ... ``viewed_9`` (one request together)."""

# The outage lasts seconds: retry quickly and without giving up, so that the run
# measures delivery, not backoff. With the defaults (0.5 s doubling up to 60 s, 8
# attempts) this run took 11-22 s, its recovery waiting out backoffs of seconds; and
# full jitter can draw 7 short backoffs in a row, so a 3 s outage exhausts a request's
# 8 attempts with a probability of ~2e-5 (1,500 requests retried: up to ~3% of runs).
RETRY = RetryPolicy(base_delay=0.05, max_delay=0.4, max_attempts=10_000)


@dataclass
class Checkout:
    """What a tracked checkout returns: the order the shop placed."""

    number: str
    paid: float
    seq: int


class Report:
    """The tracker's ``on_outcome`` and ``on_error`` hooks: counts and every drop."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.outcomes: Counter[str] = Counter()
        self.duplicates: list[str] = []
        self.drops: list[str] = []

    def outcome(self, outcome: DeliveryOutcome) -> None:
        with self.lock:
            self.outcomes[f"{outcome.resource}:{outcome.status}"] += 1
            if outcome.duplicate:
                self.duplicates.append(str(outcome.reference))

    def error(self, error: Any) -> None:
        with self.lock:
            self.drops.append(repr(error))


def build(index: int) -> tuple[list[Callable[[str, int], None]], Callable[..., Checkout]]:
    """The shop's tracked functions: one per event name, and the checkout (an order)."""

    def viewer(k: int) -> Callable[[str, int], None]:
        @track(f"viewed_{k}", customer_id="customer_id", metadata={"seq": "seq", "p": index})
        def viewed(customer_id: str, seq: int) -> None:
            pass

        return viewed

    @track_order(
        customer_id="customer_id",
        order_id="result.number",
        total_paid="result.paid",
        extra={"seq": "result.seq"},
        channel=gbtrack.literal("web"),
    )
    def checkout(customer_id: str, number: str, paid: float, seq: int) -> Checkout:
        return Checkout(number, paid, seq)

    return [viewer(k) for k in range(EVENTS_PER_CHECKOUT)], checkout


def main() -> None:
    redis_url, base_url, api_key, secret_key, index_arg, customers_arg = sys.argv[1:7]
    index, customers = int(index_arg), int(customers_arg)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    report = Report()
    tracker = gbtrack.configure(
        api_key=api_key,
        secret_key=secret_key,
        base_url=base_url,
        redis_url=redis_url,
        # This 2-core box can starve the Redis server for a moment; the fallback is
        # tested elsewhere (test_redis_system.py), here Redis must serve throughout.
        redis_socket_timeout=1.0,
        retry=RETRY,
        on_outcome=report.outcome,
        on_error=report.error,
    )
    viewers, checkout = build(index)
    seq = 0
    print("ready", flush=True)
    for line in sys.stdin:
        command = line.split()
        if command[0] == "round":
            round_ = int(command[1])
            for c in range(customers):
                shopper = f"p{index}-c{c}"
                for viewed in viewers:
                    viewed(shopper, seq)
                    seq += 1
                buyer = shopper if c % 2 == 0 else f"p{index}-b{c}"
                checkout(buyer, f"P{index}-C{c}-O{round_}", 10.0 + c % 7, seq)
                seq += 1
            print(f"sent {round_}", flush=True)
        elif command[0] == "flush":
            tracker.flush(timeout=120)
            print("flushed", flush=True)
        elif command[0] == "end":
            break
    flushed = tracker.flush(timeout=120)
    stats = tracker.stats
    sender = tracker.sender
    limiters = [getattr(sender, "rate_limiter", None), getattr(sender, "order_rate_limiter", None)]
    # Each bucket's limiter: a RedisRateLimiter, and its windows.
    redis = [limiter.limits for limiter in limiters if isinstance(limiter, RedisRateLimiter)]
    tracker.close(timeout=30)
    print(
        json.dumps(
            {
                "flushed": flushed,
                "delivered": stats.delivered,
                "dropped": dict(stats.dropped),
                "retried": stats.retried,
                "outcomes": dict(report.outcomes),
                "duplicates": report.duplicates,
                "drops": report.drops,
                "redis": redis,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
