"""The background sender's bounded queue: what callers enqueue and its bookkeeping.

:class:`EventQueue` is a ``deque`` of events (:attr:`EventQueue.items`, which
``send()`` checks against :attr:`EventQueue.full_at` and appends to directly: C calls
only, on the caller's thread) plus the books the caller's thread, the worker and
``flush()`` share: how many events are held past the queue, the overflow policy
(``drop_newest`` or ``block``, spilling what overflows when a spill is configured),
throttled overflow reports, and the flush marks (the send ordinal of each drain's
first event, so that ``flush()`` waits for exactly the events queued before it).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Literal

from gbtrack._event import Event, EventDraft
from gbtrack._order import OrderDraft

if TYPE_CHECKING:
    from gbtrack._report import Reporter

__all__ = ["EventQueue", "Queued", "Overflow"]

Queued = Event | EventDraft | OrderDraft
"""What the queue holds: events, event drafts and order drafts, in the order accepted."""

Overflow = Literal["drop_newest", "block"]
"""What ``send()`` does when the queue is full: drop (and count) the event, or wait."""

_OVERFLOW_LOG_INTERVAL = 5.0  # seconds between two overflow log lines during an outage


def _what(item: object) -> str:
    """An item for a message: an event's name, or an order's id."""
    name = getattr(item, "name", None)
    if name is not None:
        return repr(name)
    return f"order {getattr(item, 'order_id', '?')!r}"


class EventQueue:
    """A bounded queue of events (or drafts) and the books of what left it.

    ``capacity`` bounds the events queued (:attr:`items`) *plus* :attr:`held` (taken by
    the worker and not yet settled: ready, retrying or in flight), so that memory stays
    bounded during an outage; :attr:`full_at` is the length at which :attr:`items` is
    full (``capacity - held``), kept with :attr:`held`. Counters other than the deque
    itself change under :attr:`lock`.

    Args:
        capacity: The most events queued and held together.
        batch_size: The most events the worker takes at once.
        overflow: ``"drop_newest"`` or ``"block"``.
        block_timeout: Seconds a sender may wait for room with ``overflow="block"``.
        reporter: Where overflow drops are counted and reported.
        spill_overflow: Stores one event that found the queue full; ``True`` when it
            was stored (or settled otherwise), ``False`` to count it as dropped.
    """

    __slots__ = (
        "_abandoned",
        "_overflow_event",
        "_overflow_lock",
        "_overflow_reported_at",
        "batch_size",
        "block_timeout",
        "blocked",
        "capacity",
        "flush_waiters",
        "full_at",
        "held",
        "items",
        "live",
        "lock",
        "overflow",
        "overflow_pending",
        "reporter",
        "settled",
        "settled_cond",
        "space",
        "spill_overflow",
        "taken",
    )

    def __init__(
        self,
        capacity: int,
        batch_size: int,
        overflow: Overflow,
        block_timeout: float,
        reporter: Reporter,
        spill_overflow: Callable[[Queued], bool],
    ) -> None:
        self.items: deque[Queued] = deque()
        self.capacity = capacity
        self.batch_size = batch_size
        self.overflow: Overflow = overflow
        self.block_timeout = block_timeout
        self.reporter = reporter
        self.spill_overflow = spill_overflow
        self.lock = threading.Lock()  # guards the counters below and the flush condition
        self.settled_cond = threading.Condition(self.lock)
        self.space = threading.Condition(threading.Lock())  # overflow="block" waiters
        self.blocked = 0
        self.flush_waiters = 0
        self.taken = 0  # events moved from the queue to the worker
        self.settled = 0  # events finally handled: delivered, dropped or spilled
        self.held = 0  # events taken and not yet settled
        self.full_at = capacity  # capacity - held: one comparison on the hot path
        self.live: dict[int, int] = {}  # unfinished jobs by their drain's mark
        self._abandoned = False  # whoever sets it (worker or close) reports what is held
        self._overflow_lock = threading.Lock()
        self.overflow_pending = 0  # overflow drops counted but not yet reported
        self._overflow_event: Queued | None = None
        self._overflow_reported_at = -_OVERFLOW_LOG_INTERVAL

    def __len__(self) -> int:
        return len(self.items)

    # --- overflow (the caller's thread) ---------------------------------------------------
    def make_room(
        self, event: Queued, closed: Callable[[], bool], nudge: Callable[[], None]
    ) -> bool:
        """The queue is full: wait (``block``) or spill/drop; True when there is room now.

        ``closed`` says whether the sender closed meanwhile; ``nudge`` wakes the worker.
        """
        if (
            self.overflow == "block"
            and self.block_timeout > 0
            and self._wait_for_room(closed, nudge)
        ):
            return True
        if not self.spill_overflow(event):
            with self._overflow_lock:
                self.overflow_pending += 1
                self._overflow_event = event
            self.report_overflow(force=False)
        return False

    def _wait_for_room(self, closed: Callable[[], bool], nudge: Callable[[], None]) -> bool:
        deadline = time.monotonic() + self.block_timeout
        nudge()
        with self.space:
            self.blocked += 1
            try:
                while len(self.items) >= self.full_at:
                    left = deadline - time.monotonic()
                    if left <= 0 or closed():
                        return False
                    nudge()
                    self.space.wait(left)
                return True
            finally:
                self.blocked -= 1

    def wake_blocked(self) -> None:
        """Let senders waiting for room (``overflow="block"``) look again."""
        with self.space:
            self.space.notify_all()

    def report_overflow(self, *, force: bool) -> None:
        """Report counted overflow drops, at most one log line per interval (all counted)."""
        now = time.monotonic()
        with self._overflow_lock:
            n = self.overflow_pending
            if n == 0 or (not force and now - self._overflow_reported_at < _OVERFLOW_LOG_INTERVAL):
                return
            event = self._overflow_event
            self.overflow_pending = 0
            self._overflow_event = None
            self._overflow_reported_at = now
        self.reporter.drop(
            "queue_overflow",
            f"queue full ({self.capacity} events held); {n} event(s) dropped"
            + (f", the latest {_what(event)}" if event is not None else ""),
            event=event if type(event) is Event else None,
            n=n,
        )

    # --- the worker's side ------------------------------------------------------------------
    def take(self, limit: int) -> tuple[list[Queued], int]:
        """Take up to ``limit`` events and their mark; a placeholder job holds the mark.

        The placeholder keeps ``flush()`` from seeing these events taken but in no job;
        :meth:`add_jobs` adds the jobs made of them, :meth:`settle` removes it.
        """
        with self.lock:
            k = min(len(self.items), limit)
            popleft = self.items.popleft
            items = [popleft() for _ in range(k)]
            mark = self.taken
            self.taken += k
            self.held += k
            self.full_at = self.capacity - self.held
            self.live[mark] = self.live.get(mark, 0) + 1
        return items, mark

    def take_all(self) -> list[Queued]:
        """Take every queued event (the sender is stopping); they count as held."""
        with self.lock:
            items = list(self.items)
            self.items.clear()
            self.taken += len(items)
            self.held += len(items)
            self.full_at = self.capacity - self.held
        return items

    def add_jobs(self, mark: int, n: int) -> None:
        """``n`` more unfinished jobs carry events of the drain at ``mark``."""
        if n:
            with self.lock:
                self.live[mark] += n

    def settle(self, n: int, marks: Iterable[int] = ()) -> None:
        """Count ``n`` events as finally handled; one job of each mark in ``marks`` ended."""
        with self.lock:
            self.settled += n
            self.held -= n
            self.full_at = self.capacity - self.held
            live = self.live
            for mark in marks:
                left = live[mark] - 1
                if left:
                    live[mark] = left
                else:
                    del live[mark]
            self.settled_cond.notify_all()

    def claim_abandon(self) -> bool:
        """Whether the caller reports what the worker holds (only the first one does)."""
        with self.lock:
            first, self._abandoned = not self._abandoned, True
        return first

    # --- flush --------------------------------------------------------------------------
    def flushed(self, target: int) -> bool:
        """Whether every event sent before ordinal ``target`` is settled (under lock)."""
        return self.taken >= target and all(mark >= target for mark in self.live)

    def flush_target(self) -> int | None:
        """The ordinal ``flush()`` waits for, registered as a waiter; None: settled already."""
        with self.lock:
            target = self.taken + len(self.items)
            if self.flushed(target):
                return None
            self.flush_waiters += 1
        return target

    def wait_flushed(self, target: int, timeout: float | None, stop: Callable[[], bool]) -> bool:
        """Wait until ``target`` is settled, ``stop()`` holds, or ``timeout``; unregister."""
        try:
            with self.settled_cond:
                done = self.settled_cond.wait_for(lambda: self.flushed(target) or stop(), timeout)
                return bool(done) and not stop()
        finally:
            with self.lock:
                self.flush_waiters -= 1

    def wake_flushers(self) -> None:
        """Make waiting ``flush()`` calls look again (their stop condition may hold)."""
        with self.settled_cond:
            self.settled_cond.notify_all()
