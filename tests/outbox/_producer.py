"""A producer at full speed for the durability-window kill test (run as a script).

Usage: python _producer.py OUTBOX COUNTER URL

Tracks as fast as it can into ``OutboxSender(sync="batch")`` until killed. ``URL`` is
``-`` for no delivery, else a Gameball base URL (a closed port: delivery keeps failing,
its worker competing for the file). ``COUNTER`` is a 16-byte file, shared memory: the
first 8 bytes become 1 once the events are built, the next 8 count the ``send()`` calls
that returned (acknowledged events); a SIGKILL cannot hide a count already written.
"""

from __future__ import annotations

import mmap
import struct
import sys

from gbtrack import Event
from gbtrack.gameball import GameballClient
from gbtrack.outbox import OutboxSender
from gbtrack.senders._policy import RateLimiter, RetryPolicy

POOL = 20_000  # distinct events, sent round and round: row k holds event k % POOL


def main() -> int:
    path, counter, url = sys.argv[1:4]
    pool = [
        Event(name=f"burst_{i}", customer_id=f"c-{i % 17}", metadata={"seq": i})
        for i in range(POOL)
    ]
    client = None if url == "-" else GameballClient("test-api-key", base_url=url, timeout=1)
    sender = OutboxSender(
        client,
        path=path,
        sync="batch",
        retry=RetryPolicy(base_delay=0.05, max_delay=0.2, max_attempts=1_000_000),
        rate_limiter=RateLimiter(((10_000, 1.0),)),
        idle_interval=0.05,
    )
    with open(counter, "r+b") as file:
        shared = mmap.mmap(file.fileno(), 16)
    put = struct.Struct("q").pack_into
    put(shared, 0, 1)
    sent = 0
    send = sender.send
    while True:
        for event in pool:
            send(event)
            sent += 1
            put(shared, 8, sent)


if __name__ == "__main__":
    sys.exit(main())
