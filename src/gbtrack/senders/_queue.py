"""The background sender's bounded queue: what callers enqueue and its bookkeeping.

:class:`EventQueue` is a ``deque`` of events (:attr:`EventQueue.items`, which
``send()`` checks against :attr:`EventQueue.full_at` and appends to directly: C calls
only, on the caller's thread) plus the books the caller's thread, the worker and
``flush()`` share: how many events are held past the queue, the overflow policy
(``drop_newest`` or ``block``, spilling what overflows when a spill is configured),
throttled overflow reports, and the flush marks (the send ordinal of each drain's
first event, so that ``flush()`` waits for exactly the events queued before it).

A tracker's gate does less still: it appends to its own :class:`Inlet` and compares the
inlet's length with a limit. Whoever looks next (the worker on each turn, ``flush()``,
``stats()``, ``send()``) moves the inlets' drafts into the queue in order
(:meth:`EventQueue.gather`) and counts them as the tracker's ``sent`` there; the limit
is where the gate's slow path takes over: the first draft while the worker is idle
(the wake-up that arms its timer), a batch's worth (the wake-up of a full batch), or
the capacity (the overflow), so that the bound holds on the caller's thread.

A gate takes a draft's fields as a plain tuple too (``SenderTraits.fields_gate``): the
generated wrappers hand it the tuple, and whoever takes an item out of an inlet makes
it an ``EventDraft`` there (:data:`gbtrack._event.as_draft`, one C call), off the caller's
thread.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from itertools import islice
from typing import TYPE_CHECKING, Any, Literal

from gbtrack._event import Event, EventDraft, as_draft
from gbtrack._order import OrderDraft

if TYPE_CHECKING:
    from gbtrack._report import Reporter
    from gbtrack._state import FieldsGate

__all__ = ["EventQueue", "Inlet", "Overflow", "Queued"]

Queued = Event | EventDraft | OrderDraft
"""What the queue holds: events, event drafts and order drafts, in the order accepted."""

Overflow = Literal["drop_newest", "block"]
"""What ``send()`` does when the queue is full: drop (and count) the event, or wait."""

_OVERFLOW_LOG_INTERVAL = 5.0  # seconds between two overflow log lines during an outage
_END = object()  # iter(f, _END) calls f forever: islice(..., n) calls it n times, in C


def _gate(
    items: deque[tuple[Any, ...]], over: Callable[[], object]
) -> tuple[FieldsGate, Callable[[int], None]]:
    """A gate appending to ``items``, calling ``over()`` once ``items`` reach the limit.

    The limit lives in a closure cell (the cheapest read there is); ``set_limit`` sets it.
    It takes an ``EventDraft`` or a draft's fields as a plain tuple alike.
    """
    append = items.append
    limit = 1  # the first draft wakes (and starts) the worker

    def gate(draft: tuple[Any, ...]) -> bool:
        append(draft)
        if len(items) >= limit:
            over()
        return True

    def set_limit(n: int) -> None:
        nonlocal limit
        limit = n

    return gate, set_limit


class Inlet:
    """One tracker's way into a sender's queue: a deque its gate appends to.

    The gate (:attr:`gate`) is an append and one length test against a limit; the
    ``sent`` count (``count_sent`` per draft), the capacity and the worker's wake-up
    are the business of whoever gathers the inlet (:meth:`EventQueue.gather`) or of
    ``over(inlet)``, the gate's slow path, called once the inlet's length reaches the
    limit (:attr:`set_limit`; the sender keeps it where the next decision is due).

    Args:
        count_sent: Counts one draft in the tracker's ``stats.sent``.
        over: The slow path, called with this inlet.
    """

    __slots__ = ("count_sent", "gate", "items", "set_limit")

    def __init__(self, count_sent: Callable[[], object], over: Callable[[Inlet], None]) -> None:
        self.items: deque[tuple[Any, ...]] = deque()  # drafts, or drafts' fields
        self.count_sent = count_sent
        self.gate, self.set_limit = _gate(self.items, functools.partial(over, self))

    def count(self, n: int) -> None:
        """Count ``n`` drafts as sent by the tracker (C calls only)."""
        deque(islice(iter(self.count_sent, _END), n), 0)


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
        inlets: The trackers' inlets (the sender's list: it outlives a queue replaced
            after a fork).
    """

    __slots__ = (
        "_abandoned",
        "_overflow_event",
        "_overflow_lock",
        "_overflow_reported_at",
        "abandon_done",
        "batch_size",
        "block_timeout",
        "blocked",
        "capacity",
        "flush_waiters",
        "full_at",
        "held",
        "inlets",
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
        inlets: list[Inlet] | None = None,
    ) -> None:
        self.items: deque[Queued] = deque()
        self.inlets: list[Inlet] = inlets if inlets is not None else []
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
        self.abandon_done = threading.Event()  # the worker has reported what it held
        self._overflow_lock = threading.Lock()
        self.overflow_pending = 0  # overflow drops counted but not yet reported
        self._overflow_event: Queued | None = None
        self._overflow_reported_at = -_OVERFLOW_LOG_INTERVAL

    def __len__(self) -> int:
        return len(self.items)

    # --- the trackers' inlets -----------------------------------------------------------
    def pending(self) -> int:
        """Events queued, the inlets' included (not yet held by the worker)."""
        return len(self.items) + sum(len(inlet.items) for inlet in self.inlets)

    def gather(self) -> None:
        """Move the inlets' drafts into the queue, in order, counting them as sent.

        Then trim what exceeds the capacity (newest first, as ``drop_newest``). With one
        inlet its gate keeps the bound exactly; with several, each limit is the inlet's
        share of the room when it was set, and the others may fill theirs meanwhile:
        the queue may pass the capacity (by less than the capacity) until this trim.
        """
        inlets = self.inlets
        if not inlets:
            return
        with self.lock:
            extend = self.items.extend
            for inlet in inlets:
                n = len(inlet.items)
                if n:
                    extend(map(as_draft, islice(iter(inlet.items.popleft, _END), n)))
                    inlet.count(n)
            excess = len(self.items) + self.held - self.capacity
            trimmed = [self.items.pop() for _ in range(excess)] if excess > 0 else []
        for item in reversed(trimmed):
            self.overflowed(item)

    def limit_for(self, inlet: Inlet) -> int:
        """The length at which ``inlet``'s gate next takes its slow path (under :attr:`lock`).

        An idle queue: its first draft (the worker's wake-up). Else a full batch (the
        next one when a batch is queued already), or the inlet's share of the room left
        (its gate keeps the capacity), whichever is first.
        """
        queued = len(self.items)
        n = len(inlet.items)
        if not queued and not n:
            return 1
        room = self.capacity - self.held - self.pending()
        if room <= 0:
            return n + 1
        batch = self.batch_size
        to_batch = batch - queued if queued < batch else batch
        return n + max(1, min(to_batch, room // len(self.inlets)))

    def arm(self) -> bool:
        """Set every inlet's limit before the worker sleeps; ``False`` if drafts came meanwhile.

        The limit is set before the inlets are looked at: a gate that appended before
        sees the old limit, and its draft is seen here.
        """
        inlets = self.inlets
        if not inlets:
            return True
        with self.lock:
            for inlet in inlets:
                inlet.set_limit(self.limit_for(inlet))
            return bool(self.items) or not any(inlet.items for inlet in inlets)

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
        self.overflowed(event)
        return False

    def overflowed(self, event: Queued) -> None:
        """``event`` found the queue full: spill it, or count (and report) it dropped."""
        if not self.spill_overflow(event):
            with self._overflow_lock:
                self.overflow_pending += 1
                self._overflow_event = event
            self.report_overflow(force=False)

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
        self.gather()
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
        self.gather()
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
