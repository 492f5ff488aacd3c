"""A producer process for the kill and multi-process tests (run as a script).

Usage: python _child.py URL PATH SYNC START COUNT MODE
MODE ``burst``: print each accepted seq (durable) and keep going until killed.
MODE ``finish``: send everything, then ``close()``; exit 0 when all was settled.
"""

from __future__ import annotations

import sys

from gbtrack import Event
from gbtrack.gameball import GameballClient
from gbtrack.outbox import OutboxSender
from gbtrack.senders._policy import RateLimiter, RetryPolicy


def main() -> int:
    url, path, sync, start, count, mode = sys.argv[1:7]
    first, n = int(start), int(count)
    client = GameballClient("test-api-key", base_url=url, timeout=10)
    sender = OutboxSender(
        client,
        path=path,
        sync=sync,  # type: ignore[arg-type]
        lease=3.0,
        retry=RetryPolicy(base_delay=0.01, max_delay=0.1, max_attempts=1000),
        rate_limiter=RateLimiter(((10_000, 1.0),)),
        idle_interval=0.05,
    )
    for seq in range(first, first + n):
        sender.send(Event(name=f"burst_{seq}", customer_id=f"c-{seq % 17}", metadata={"seq": seq}))
        if mode == "burst":
            if sync == "every_event":
                print(seq, flush=True)  # send() returned: durable
            elif seq % 10 == 9 and sender.commit(timeout=30):
                print(seq, flush=True)  # committed: everything up to seq is durable
    ok = sender.close(timeout=120)
    client.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
