"""One process of the shared-rate-limit system test (tests/senders/test_redis_system.py).

``python _redis_worker.py REDIS_URL BASE_URL API_KEY INDEX EVENTS LIMITS_JSON HOW`` sends
``EVENTS`` events through a BackgroundSender whose rate limiter is a RedisRateLimiter
on ``REDIS_URL`` (``HOW``: ``direct``, or ``delayed`` through a
:class:`~tests._load.DelayedTransport`), flushes, and prints one JSON line: whether the
flush delivered everything, and the sender's counters.
"""

from __future__ import annotations

import json
import logging
import sys

from tests._load import DelayedTransport

from gbtrack import Event
from gbtrack.gameball import GameballClient
from gbtrack.senders import BackgroundSender, RedisRateLimiter

# Forty distinct names per customer: a customer's 40 events fit one request, so the
# request count (and the run's length) does not depend on how the queue is drained.
NAMES_PER_CUSTOMER = 40


def main() -> None:
    redis_url, base_url, api_key, index, count, limits, how = sys.argv[1:8]
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    limiter = RedisRateLimiter(
        redis_url,
        api_key=api_key,
        limits=[tuple(window) for window in json.loads(limits)],  # type: ignore[misc]
        fallback_share=0.25,
        retry_interval=0.5,
        # The default 0.1 s would fall back whenever this 2-core box starves the Redis
        # server for a moment (as under the full test suite); here the fallback is
        # tested by killing Redis, which fails at once whatever the timeout.
        socket_timeout=1.0,
    )
    # One slow request must not hold a slot the others could use: no bulk (one request
    # per customer), the default concurrency and flush interval.
    # "delayed": half the requests leave 0.7-0.8 s after their slot was taken (just past
    # the window), as on a starved machine (tests/_load.py).
    transport = DelayedTransport(0.5, 0.7, 0.8, seed=int(index)) if how == "delayed" else None
    client = GameballClient(api_key, base_url=base_url, timeout=10.0, transport=transport)
    sender = BackgroundSender(client=client, rate_limiter=limiter, bulk=False)
    print("ready", flush=True)
    sys.stdin.readline()  # the start signal: every process starts together
    for i in range(int(count)):
        sender.send(
            Event(
                name=f"e{i % NAMES_PER_CUSTOMER}",
                customer_id=f"p{index}-c{i // NAMES_PER_CUSTOMER}",
                metadata={"p": int(index), "i": i},
            )
        )
    flushed = sender.flush(timeout=300)
    stats = sender.stats()
    sender.close()
    client.close()
    print(
        json.dumps(
            {
                "flushed": flushed,
                "delivered": stats.delivered,
                "dropped": dict(stats.dropped),
                "redis_available": limiter.available,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
