"""What a loaded machine does to requests: CPU hogs, and a transport that delays sending.

A rate limiter takes a slot before a request leaves; on a busy machine the request may
leave (and arrive) long after. :class:`DelayedTransport` makes that delay certain and
large: it holds some requests back before handing them to the real HTTP transport, as a
starved thread would. :func:`cpu_hogs` adds the real thing: busy-loop processes that
compete with the test for the cores. Both are for tests of limits counted at the server.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx


class DelayedTransport(httpx.BaseTransport):
    """httpx's HTTP transport, with a share of requests held back before they leave.

    Args:
        share: The share of requests delayed.
        low: The shortest delay, in seconds.
        high: The longest delay, in seconds.
        seed: The random generator's seed (the same requests are delayed each run).
    """

    def __init__(self, share: float, low: float, high: float, seed: int = 18) -> None:
        self._inner = httpx.HTTPTransport()
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.share, self.low, self.high = share, low, high

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Wait (for some requests), then send over the network."""
        with self._lock:
            delayed = self._random.random() < self.share
            delay = self._random.uniform(self.low, self.high)
        if delayed:
            time.sleep(delay)
        return self._inner.handle_request(request)

    def close(self) -> None:
        """Close the real transport."""
        self._inner.close()


@contextmanager
def cpu_hogs(count: int = 2) -> Iterator[None]:
    """Run ``count`` busy-loop processes (one per core by default) for the block's time.

    They run at ``nice`` 5: they still take a core whenever the test's threads want it
    (each gets about a quarter of a contended core, the test's processes the rest, and
    anything else on the box is slowed the same way), without starving tests that other
    pytest-xdist workers run meanwhile.
    """
    hogs = [
        subprocess.Popen(
            [sys.executable, "-c", "import os; os.nice(5)\nwhile True: pass"],
            env={"PATH": os.defpath},
        )
        for _ in range(count)
    ]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
        for hog in hogs:
            hog.wait(10)
