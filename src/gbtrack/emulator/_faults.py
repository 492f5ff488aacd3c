"""Fault injection for the emulator: failed answers, dropped connections, latency.

A :class:`FaultPlan` is shared by the emulator's handler threads and whoever drives the
faults (a test, or another process through the ``/_emulator/faults/...`` endpoints), so
every method takes one lock. The request path checks plain attributes first and takes
the lock only when a fault is armed, which keeps a fault-free emulator fast.
"""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from gbtrack.emulator._rate import check_bucket

__all__ = ["DropWhen", "Fault", "FaultPlan", "FailFault", "DropFault", "default_code"]

DropWhen = Literal["before_body", "after_body", "reset", "after_processing"]
"""How a connection is dropped: see :meth:`FaultPlan.drop_next`."""

_DROP_WHEN: frozenset[str] = frozenset({"before_body", "after_body", "reset", "after_processing"})

# The Gameball code used when a fault names only an HTTP status.
_CODE_FOR_STATUS: dict[int, int] = {
    400: 3016,
    401: 1000,
    403: 1002,
    404: 3017,
    412: 2000,
    415: 3013,
    422: 2001,
    429: 429,
    500: 5000,
    503: 5003,
}


def default_code(status: int) -> int:
    """Return the Gameball code the emulator pairs with an HTTP status by default.

    Args:
        status: The HTTP status.

    Returns:
        The documented code for that status (e.g. 503 -> 5003, 422 -> 2001), or the
        status itself when Gameball documents none (429 -> 429).
    """
    return _CODE_FOR_STATUS.get(status, status)


@dataclass(frozen=True)
class FailFault:
    """Answer one request with an error instead of processing it.

    Attributes:
        status: The HTTP status to answer.
        code: The Gameball ``code`` in the error envelope.
        message: The envelope's ``message``; a default per code when ``None``.
        retry_after: Seconds for a ``Retry-After`` header; no header when ``None``.
    """

    status: int
    code: int
    message: str | None = None
    retry_after: float | None = None


@dataclass(frozen=True)
class DropFault:
    """Close one request's connection without answering.

    Attributes:
        when: ``"before_body"``, ``"after_body"``, ``"reset"`` or ``"after_processing"``;
            see :meth:`FaultPlan.drop_next`.
    """

    when: DropWhen


Fault = FailFault | DropFault
"""One armed one-shot fault."""


@dataclass
class _Armed:
    fault: Fault
    remaining: int
    route: str | None = None  # "events", "orders", or None for any resource


class FaultPlan:
    """The faults armed on an emulator; thread-safe.

    One-shot faults (:meth:`fail_next`, :meth:`drop_next`) form one queue in the order
    they were armed; each POST to a resource endpoint (events and orders: v4.0, v4.1
    and batch create) consumes the first one armed for its resource (``route``) or for
    any. Latency and per-item batch failures are independent of that queue.

    Example::

        emulator.faults.fail_next(2, status=503)          # two 503/5003 answers
        emulator.faults.fail_next(status=422, code=2001)  # a concurrent-request answer
        emulator.faults.drop_next(when="before_body")     # then one connection reset
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[_Armed] = deque()
        self._latency = 0.0
        self._latency_up_to = 0.0
        self._latency_remaining: int | None = None
        self._random = random.Random()  # test latency, not a secret
        self._item_ids: dict[str, tuple[int, str | None]] = {}
        self._item_next = 0
        self._item_next_fault: tuple[int, str | None] = (5003, None)

    # --- arming ------------------------------------------------------------------------
    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 503,
        code: int | None = None,
        message: str | None = None,
        retry_after: float | None = None,
        route: str | None = None,
    ) -> None:
        """Answer the next ``count`` requests (of ``route``, if given) with an error envelope.

        Args:
            count: How many requests fail.
            status: The HTTP status, e.g. 503, 500, 429 or 422.
            code: The Gameball code; by default the one documented for ``status``
                (see :func:`default_code`), e.g. 503 -> 5003 and 422 -> 2001.
            message: The envelope's message; a default per code when ``None``.
            retry_after: When set, a ``Retry-After`` header with these seconds.
            route: ``"events"`` or ``"orders"``: only requests to that resource's
                endpoints consume these faults; ``None`` (default): any request.

        Raises:
            ValueError: If ``count`` is negative, ``status`` is not 400-599 or
                ``route`` is unknown.
        """
        _check_count(count)
        if not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error status (400-599), got {status}")
        if retry_after is not None and retry_after < 0:
            raise ValueError("retry_after must be >= 0")
        fault = FailFault(
            status, default_code(status) if code is None else code, message, retry_after
        )
        self._push(fault, count, route)

    def drop_next(
        self, count: int = 1, *, when: DropWhen = "after_body", route: str | None = None
    ) -> None:
        """Close the connection of the next ``count`` requests without answering.

        The emulator processes nothing in the first three variants; they differ in what
        the client sees (httpx 0.28 over loopback):

        - ``"before_body"``: a TCP reset right after the headers, the body never read,
          as when a server dies mid-request. httpx reports ``RemoteProtocolError`` or
          ``ReadError`` depending on how much of the body it had written (it swallows
          a write error to look for an answer), so a client cannot tell this from an
          ambiguous failure.
        - ``"after_body"``: the whole request is read, then the connection closes (FIN)
          without an answer: httpx ``RemoteProtocolError`` ("Server disconnected").
        - ``"reset"``: the whole request is read, then a TCP reset: httpx ``ReadError``
          (connection reset by peer), deterministically.
        - ``"after_processing"``: the request is read **and processed** as usual (its
          events are recorded, a batch job is created), then the connection closes (FIN)
          without an answer: httpx ``RemoteProtocolError``. The realistic ambiguous
          case: Gameball counted the events, the client cannot know, and a retry is a
          duplicate.

        Args:
            count: How many requests are dropped.
            when: The variant, as above.
            route: ``"events"`` or ``"orders"``: only requests to that resource's
                endpoints consume these faults; ``None`` (default): any request.

        Raises:
            ValueError: If ``count`` is negative, or ``when`` or ``route`` is unknown.
        """
        _check_count(count)
        if when not in _DROP_WHEN:
            raise ValueError(f"when must be one of {sorted(_DROP_WHEN)}, got {when!r}")
        self._push(DropFault(when), count, route)

    def set_latency(
        self, seconds: float, *, count: int | None = None, up_to: float | None = None
    ) -> None:
        """Delay the answer of resource requests by ``seconds`` (or a random time up to ``up_to``).

        The request is processed (and its events recorded) first; only the answer waits,
        so a client whose read timeout is shorter sees a timeout for a delivered request:
        the ambiguous case.

        Args:
            seconds: The delay per request; 0 turns latency off.
            count: Delay only the next ``count`` requests; every request when ``None``.
            up_to: When given, each delay is drawn uniformly from ``[seconds, up_to]``
                (answers of mixed speed, as under load).

        Raises:
            ValueError: If ``seconds`` or ``count`` is negative, or ``up_to < seconds``.
        """
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        if up_to is not None and up_to < seconds:
            raise ValueError("up_to must be >= seconds")
        if count is not None:
            _check_count(count)
        with self._lock:
            self._latency = float(seconds)
            self._latency_up_to = float(seconds if up_to is None else up_to)
            self._latency_remaining = count

    def fail_batch_items(
        self,
        *,
        customer_ids: Iterable[str] = (),
        next_items: int = 0,
        code: int = 5003,
        message: str | None = None,
    ) -> None:
        """Fail batch job items: those of the given customers, and/or the next N items.

        A failed item is reported in the job's ``errors`` with this code and is not
        recorded. Items failing validation report their own code instead.

        Args:
            customer_ids: Items whose ``customerId`` is one of these always fail (until
                :meth:`clear`).
            next_items: The next ``next_items`` valid items processed (any job) fail.
            code: The per-item error code.
            message: The per-item message; a default per code when ``None``.

        Raises:
            ValueError: If ``next_items`` is negative.
        """
        _check_count(next_items)
        with self._lock:
            for customer_id in customer_ids:
                self._item_ids[str(customer_id)] = (code, message)
            if next_items:
                self._item_next = next_items
                self._item_next_fault = (code, message)

    def clear(self) -> None:
        """Disarm every fault (queued answers, drops, latency, batch item failures)."""
        with self._lock:
            self._queue.clear()
            self._latency = 0.0
            self._latency_up_to = 0.0
            self._latency_remaining = None
            self._item_ids.clear()
            self._item_next = 0

    # --- inspection --------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """How many one-shot faults (failed answers and drops) are still armed."""
        with self._lock:
            return sum(entry.remaining for entry in self._queue)

    def snapshot(self) -> dict[str, object]:
        """Return the armed faults as a JSON-ready mapping (for ``/_emulator/stats``)."""
        with self._lock:
            queue = [
                {
                    "fault": _fault_dict(entry.fault),
                    "remaining": entry.remaining,
                    "route": entry.route,
                }
                for entry in self._queue
            ]
            return {
                "queue": queue,
                "latency": self._latency,
                "latencyUpTo": self._latency_up_to,
                "latencyRemaining": self._latency_remaining,
                "batchItemCustomerIds": sorted(self._item_ids),
                "batchNextItems": self._item_next,
            }

    # --- consumed by the request path ----------------------------------------------------
    def take(self, route: str | None = None) -> Fault | None:
        """Consume and return the next one-shot fault for ``route``, or ``None``.

        Args:
            route: The resource of the request (``"events"``, ``"orders"``); it takes
                the oldest fault armed for that resource or for any.
        """
        if not self._queue:  # unlocked fast path; a race only delays a fault by one request
            return None
        with self._lock:
            for index, entry in enumerate(self._queue):
                if entry.route is None or entry.route == route:
                    entry.remaining -= 1
                    if entry.remaining <= 0:
                        del self._queue[index]
                    return entry.fault
            return None

    def take_latency(self) -> float:
        """Consume one request's latency; return the seconds to wait (0.0 for none)."""
        if not self._latency_up_to:
            return 0.0
        with self._lock:
            latency = self._latency
            if self._latency_up_to > latency:
                latency = self._random.uniform(latency, self._latency_up_to)
            if self._latency_remaining is not None:
                self._latency_remaining -= 1
                if self._latency_remaining <= 0:
                    self._latency = self._latency_up_to = 0.0
                    self._latency_remaining = None
            return latency

    @property
    def has_item_faults(self) -> bool:
        """Whether any per-item batch failure is armed."""
        return bool(self._item_ids) or self._item_next > 0

    def take_item_fault(self, customer_id: str) -> tuple[int, str | None] | None:
        """Return the ``(code, message)`` failing this batch item, consuming it, or ``None``."""
        with self._lock:
            by_id = self._item_ids.get(customer_id)
            if by_id is not None:
                return by_id
            if self._item_next > 0:
                self._item_next -= 1
                return self._item_next_fault
            return None

    def _push(self, fault: Fault, count: int, route: str | None) -> None:
        checked = None if route is None else check_bucket(route)
        if count:
            with self._lock:
                self._queue.append(_Armed(fault, count, checked))


def _check_count(count: int) -> None:
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")


def _fault_dict(fault: Fault) -> dict[str, object]:
    if isinstance(fault, FailFault):
        return {
            "kind": "fail",
            "status": fault.status,
            "code": fault.code,
            "message": fault.message,
            "retryAfter": fault.retry_after,
        }
    return {"kind": "drop", "when": fault.when}
