"""A few daemon threads that run the background sender's requests.

Why threads rather than an ``AsyncGameballClient`` on a private event loop: the sync
client is thread-safe and shares one connection pool, socket I/O releases the GIL, the
:class:`~gbtrack.senders.DeliveryClient` seam stays a plain synchronous protocol for the
background sender and :class:`~gbtrack.senders.DirectSender` alike, and the threads are
daemons, so an ``atexit`` flush still works (``concurrent.futures`` pools refuse work
once interpreter shutdown has begun). At 100 requests/s the per-request thread hand-off
costs microseconds; bulk jobs carry 1,000 customer objects each.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["IOPool", "time_left"]


def time_left(deadline: float | None) -> float | None:
    """Seconds left until ``deadline`` (``None``: no deadline), never negative."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


class IOPool:
    """Daemon threads running request callables; each result goes to ``done``.

    Args:
        size: The most threads.
        name: The threads' name prefix.
        done: Receives ``(tag, obj, result)`` per request (``result``: what the callable
            returned, or the exception it raised).
        wake: Set after each result, to wake the worker.
    """

    def __init__(
        self, size: int, name: str, done: queue.SimpleQueue[Any], wake: threading.Event
    ) -> None:
        self.size = size
        self.name = name
        self.tasks: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.done = done
        self.wake = wake
        self.threads: list[threading.Thread] = []

    def submit(self, tag: str, obj: Any, fn: Callable[[], Any], in_flight: int) -> None:
        """Queue ``fn``; start another thread while fewer exist than requests in flight."""
        self.tasks.put((tag, obj, fn))
        if len(self.threads) < min(self.size, in_flight):
            thread = threading.Thread(
                target=self._run, name=f"{self.name}-io-{len(self.threads) + 1}", daemon=True
            )
            self.threads.append(thread)
            thread.start()

    def _run(self) -> None:
        tasks, done, wake = self.tasks, self.done, self.wake
        while True:
            item = tasks.get()
            if item is None:
                return
            tag, obj, fn = item
            try:
                result = fn()
            except BaseException as exc:  # a client must not raise; if it does, record it
                result = exc
            done.put((tag, obj, result))
            wake.set()

    def shutdown(self, timeout: float | None) -> None:
        """Ask the threads to stop; wait at most ``timeout`` (a request may hang)."""
        for _ in self.threads:
            self.tasks.put(None)
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self.threads:
            thread.join(time_left(deadline))
