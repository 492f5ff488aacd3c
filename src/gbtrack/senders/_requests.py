"""The background sender's requests: what each carries, and the threads that run them.

:class:`Request` is one customer's coalesced events on their way, :class:`BulkRequest`
a batch job carrying many (its progress is the engine's :class:`~gbtrack._protocol.BulkJob`),
:class:`IOPool` the few daemon threads that make the calls.

Why threads rather than an ``AsyncGameballClient`` on a private event loop: the sync
client is thread-safe and shares one connection pool, socket I/O releases the GIL, the
:class:`~gbtrack.senders.DeliveryClient` seam stays a plain synchronous protocol for the
background sender and :class:`~gbtrack.senders.DirectSender` alike, and the threads are
daemons, so an ``atexit`` flush still works (``concurrent.futures`` pools refuse work
once interpreter shutdown has begun). At 100 requests/s the per-request thread hand-off
costs microseconds; bulk jobs carry 1,000 customer objects each.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, overload

from gbtrack._errors import AuthenticationError
from gbtrack._protocol import (
    MAX_BATCH_ITEMS,
    BulkJob,
    EventBatch,
    client_raised,
    describe_outcome,
    job_items,
)

if TYPE_CHECKING:
    from pydantic import SecretStr

    from gbtrack._event import Record
    from gbtrack._order import OrderDraft
    from gbtrack._protocol import Outcome

__all__ = [
    "BulkRequest",
    "Entry",
    "IOPool",
    "KeyGate",
    "OrderBulk",
    "OrderRequest",
    "Request",
    "key_refused",
    "marks",
    "requests_of",
    "time_left",
]


_log = logging.getLogger("gbtrack")


def key_refused(outcome: Outcome) -> bool:
    """Whether Gameball refused the credentials (401/403, codes 1000-1999)."""
    return (
        outcome.permanent
        and isinstance(outcome.error, AuthenticationError)
        and not client_raised(outcome)
    )


class Request(EventBatch):
    """One coalesced request (one customer's events) on its way: the batch and its state.

    An :class:`~gbtrack.gameball.EventBatch` itself (what the client is given), plus
    what the dispatcher tracks of it: one object per request for the cyclic GC, not a
    batch and a wrapper. A bulk job holds a thousand of them for its whole life, long
    enough to reach the oldest generation, which is what makes a full collection come.
    """

    __slots__ = ("attempts", "direct", "key", "mark", "n", "probe")

    is_order = False  # an event request (an OrderRequest says True)

    def __init__(self, batch: EventBatch, mark: int) -> None:
        super().__init__(
            batch.customer_id, batch.email, batch.mobile, batch.session_token, batch.events
        )
        self._start(mark)

    @classmethod
    def of(cls, records: tuple[Record, ...], mark: int) -> Request:
        """The request of one group of records (:func:`~gbtrack._protocol.group_records`)."""
        job = cls.from_records(records)
        # _start(), inline: one request per event in a bulk burst.
        job.key = job.customer_id
        job.n = len(records)
        job.attempts = 0
        job.direct = job.probe = False
        job.mark = mark
        return job

    def _start(self, mark: int) -> None:
        self.key = self.customer_id  # one request per customer at a time
        self.n = len(self.records)
        self.attempts = 0
        self.direct = False  # one request of its own, never in a batch job
        self.probe = False  # the one request that tests a refused key
        # The send ordinal of the first event of the drain that made this job: flush()
        # waits for every job whose events may have been queued before its call.
        self.mark = mark

    # A request is one thing on its way (the dispatcher keeps sets of them), not a value.
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    @property
    def batch(self) -> EventBatch:
        """The batch the client is given: this request itself."""
        return self

    def split(self) -> list[Request]:
        """One request per event, each to go alone (never in a batch job)."""
        singles = [Request.of((record,), self.mark) for record in self.records]
        for single in singles:
            single.direct = True
        return singles

    def age(self, now_wall: float) -> float:
        return now_wall - self.oldest()


class OrderRequest:
    """One order on its way: its draft, its checked wire body and its delivery state.

    Orders are never merged: one order per request, to the orders endpoint, in the
    orders rate bucket. It waits in the same line as event requests, so that one
    customer's events and orders go in the order they were accepted (one request in
    flight per customer, whatever its resource).

    Attributes:
        draft: The order as taken on the caller's thread.
        body: Its wire body (``OrderDraft.to_body``), checked.
        ambiguous: An earlier attempt's answer was lost (it may have been processed):
            a duplicate answer then means delivered.
    """

    __slots__ = ("ambiguous", "attempts", "body", "draft", "key", "mark", "probe")

    is_order = True
    n = 1
    direct = True  # never in an events batch job
    session_token: SecretStr | None = None  # read by job_items(): never a batch item

    def __init__(self, draft: OrderDraft, body: dict[str, object], mark: int) -> None:
        self.draft = draft
        self.body = body
        self.key = draft.customer_id
        self.mark = mark
        self.attempts = 0
        self.probe = False
        self.ambiguous = False

    @property
    def customer_id(self) -> str:
        return self.draft.customer_id

    @property
    def events(self) -> list[object]:
        """No events: an order is given up through the sender's order path."""
        return []

    def age(self, now_wall: float) -> float:
        return now_wall - self.draft.timestamp

    def __repr__(self) -> str:
        return f"<OrderRequest order_id={self.draft.order_id!r} attempts={self.attempts}>"


class OrderBulk:
    """One batch job of orders in flight (``/batch/orders``): the orders and the job.

    Its items are the :class:`OrderRequest` s themselves (a few dozen to 1,000): the job
    attributes item errors to them by position or ``customerId``, one order per customer.
    """

    __slots__ = ("job", "jobs")

    def __init__(self, jobs: list[OrderRequest]) -> None:
        self.jobs = jobs
        self.job = BulkJob(jobs)  # type: ignore[arg-type]  # customer_id is all it reads

    def bodies(self) -> list[dict[str, object]]:
        return [job.body for job in self.jobs]

    @staticmethod
    def choose(
        ready: Sequence[Request | OrderRequest], busy: set[str], limit: int = MAX_BATCH_ITEMS
    ) -> list[int]:
        """Positions of the orders one job carries, in line order.

        Each is the first waiting request of its customer (an earlier request of that
        customer keeps its place), carries no session token (a per-request header),
        one per customer, at most ``limit``.
        """
        taken: list[int] = []
        seen: set[str] = set()  # customers met in the line so far
        for index, job in enumerate(ready):
            key = job.key
            if key in seen or key in busy:
                seen.add(key)
                continue
            seen.add(key)
            if job.is_order and job.draft.session_token is None:  # type: ignore[union-attr]
                taken.append(index)
                if len(taken) >= limit:
                    break
        return taken


Entry = tuple[tuple["Record", ...], int, int]
"""What a batch job keeps of each request: ``(records, mark, attempts)``.

A plain tuple of a records tuple and ints, which the cyclic GC stops tracking: a job
holds a thousand of them for its whole life (its create, then a poll 50 ms later at
the earliest), long enough to reach the oldest generation as objects would. The
:class:`Request` objects are made again only for items that did not go through.
"""


class _Batches(Sequence[EventBatch]):
    """A job's items as batches, each built when read (the job reads them on failure)."""

    __slots__ = ("_entries",)

    def __init__(self, entries: list[Entry]) -> None:
        self._entries = entries

    def __len__(self) -> int:
        return len(self._entries)

    @overload
    def __getitem__(self, index: int) -> EventBatch: ...

    @overload
    def __getitem__(self, index: slice) -> list[EventBatch]: ...

    def __getitem__(self, index: int | slice) -> EventBatch | list[EventBatch]:
        if isinstance(index, slice):
            return [EventBatch.from_records(entry[0]) for entry in self._entries[index]]
        return EventBatch.from_records(self._entries[index][0])


class BulkRequest:
    """One batch job in flight: the engine's state machine and what it carries.

    Keeps each request as an :data:`Entry` (plain tuples), not as the request object.
    """

    __slots__ = ("entries", "job")

    def __init__(self, jobs: list[Request]) -> None:
        self.entries: list[Entry] = [(job.records, job.mark, job.attempts) for job in jobs]
        self.job = BulkJob(_Batches(self.entries))

    @property
    def jobs(self) -> list[Request]:
        """The requests carried, made again (their attempts kept)."""
        return requests_of(self.entries)

    def batches(self) -> list[EventBatch]:
        """The batches to create the job with (built for the create call only)."""
        return [EventBatch.from_records(entry[0]) for entry in self.entries]

    @staticmethod
    def choose(ready: list[Request], busy: set[str]) -> tuple[list[Request], list[Request]]:
        """The requests one job carries, by :func:`~gbtrack._protocol.job_items`, and the rest.

        Also left out: a customer in ``busy`` (a request in flight) and a request that
        must go alone (split, or fallen back from a job).
        """
        held: set[str] = set()  # customers with an earlier request left: keep their order

        def skip(job: Request) -> bool:
            if job.direct or job.key in busy or job.key in held:
                held.add(job.key)
                return True
            return False

        taken, left = job_items(ready, skip=skip)
        return [ready[i] for i in taken], [ready[i] for i in left]

    def fates(self, outcomes: Sequence[Outcome]) -> Iterable[tuple[Outcome, list[Entry]]]:
        """The finished job's entries grouped by outcome, in order (one per item given).

        Items that share a fate share one outcome object: the common case, every item
        delivered, is then counted and settled once per job.
        """
        entries = self.entries
        if len(outcomes) != len(entries):
            raise ValueError(f"{len(outcomes)} outcome(s) for {len(entries)} item(s)")
        if outcomes:
            first = outcomes[0]
            if all(outcome is first for outcome in outcomes):  # one fate: the common case
                return [(first, entries)]
        groups: dict[int, tuple[Outcome, list[Entry]]] = {}
        for outcome, entry in zip(outcomes, entries, strict=True):
            groups.setdefault(id(outcome), (outcome, []))[1].append(entry)
        return groups.values()


def requests_of(entries: Iterable[Entry]) -> list[Request]:
    """The :class:`Request` of each entry again, with its attempts."""
    jobs = []
    for records, mark, attempts in entries:
        job = Request.of(records, mark)
        job.attempts = attempts
        jobs.append(job)
    return jobs


def marks(jobs: Iterable[Request | OrderRequest]) -> Iterable[int]:
    return (job.mark for job in jobs)


class KeyGate:
    """A refused key (401/403, codes 1000-1999) stops sending until a probe is accepted.

    While :attr:`refused`, the worker sends one probe request every ``interval``
    seconds and nothing else; the first probe that is delivered reopens the gate.
    """

    __slots__ = ("probe_at", "probing", "refused")

    def __init__(self) -> None:
        self.refused = False
        self.probing = False  # a probe request is in flight
        self.probe_at = 0.0

    def refuse(self, outcome: Outcome, interval: float, kept: str) -> bool:
        """Gameball refused the key; True the first time (the one ERROR line is logged).

        ``kept`` says where the events wait meanwhile.
        """
        self.probe_at = time.monotonic() + interval
        if self.refused:
            return False
        self.refused = True
        _log.error(
            "gbtrack: Gameball refused the API key (%s): sending is stopped and events "
            "are kept (%s); a probe every %gs resumes when the key works, or "
            "configure() a new key",
            describe_outcome(outcome),
            kept,
            interval,
        )
        return True

    def probe_wait(self, now: float) -> float | None:
        """Seconds until a probe may go, ``None`` when it may go now; ``inf``: one is out."""
        if self.probing:
            return float("inf")
        return self.probe_at - now if now < self.probe_at else None

    def answered(self, outcome: Outcome) -> bool:
        """A probe's answer arrived; True when it reopens the gate."""
        self.probing = False
        if not (outcome.delivered and self.refused):
            return False
        self.refused = False
        _log.warning("gbtrack: Gameball accepts the API key again; sending resumed")
        return True


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
