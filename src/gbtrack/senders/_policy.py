"""Delivery policy: retries, the client-side rate limiter, and the seams senders use.

- :class:`RetryPolicy`: the one retry decision (:meth:`RetryPolicy.decide`): which
  outcomes are retried, how often, and how long to wait.
- :class:`RateLimiter`: sliding windows matching Gameball's per-account limits, kept
  for arrivals at the server whatever the delay before a request leaves.
- :class:`Limiter`: what a sender needs from a rate limiter (:class:`RateLimiter`, or
  :class:`~gbtrack.senders.RedisRateLimiter` shared by every process through Redis).
- :class:`DeliveryClient`: what a sender needs from a Gameball client
  (:class:`gbtrack.gameball.GameballClient` implements it).
- :class:`Spill`: where events go instead of being dropped (the durable outbox).
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from bisect import insort
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from gbtrack._protocol import DUPLICATE_ORDER_CODES, client_raised, describe_outcome, is_duplicate

if TYPE_CHECKING:
    from gbtrack._event import Event
    from gbtrack.gameball import EventBatch, Outcome

__all__ = ["DeliveryClient", "Decision", "Limiter", "RateLimiter", "RetryPolicy", "Spill"]

DEFAULT_HOLD = 120.0
"""Seconds a rate-limit slot counts as in flight when its answer never comes."""

DEFAULT_MARGIN = 0.05
"""Seconds a rate limiter adds to each window (the server's clock and window edges)."""


@dataclass(frozen=True)
class Decision:
    """What :meth:`RetryPolicy.decide` says after an attempt.

    Attributes:
        reason: ``None`` to retry; otherwise why delivery ends (a drop reason, or
            ``"delivered"``).
        delay: Seconds to wait before the retry (``0`` when giving up).
        message: Why, for logs and reports: status, code and error class, never
            Gameball's free text, keys or PII.
    """

    reason: str | None
    delay: float = 0.0
    message: str = ""

    @property
    def retry(self) -> bool:
        """Whether to try again (after :attr:`delay` seconds)."""
        return self.reason is None


@dataclass(frozen=True)
class RetryPolicy:
    """When and how a failed delivery is tried again.

    Retryable outcomes (the request surely did not take effect: refused connection,
    429, 503, 2001) are always retried within the limits. Ambiguous outcomes (a read
    timeout or a 5xx after the body was sent) are retried only when
    ``retry_ambiguous`` is true: Gameball has no idempotency key, so such a retry may
    count an event twice; set it to ``False`` to prefer losing over double counting.
    Permanent outcomes are never retried.

    Attributes:
        max_attempts: Attempts in all, the first included.
        max_age: Seconds since the event's timestamp after which it is no longer tried.
        base_delay: The backoff before the second attempt (doubled each time).
        max_delay: The cap on one backoff.
        retry_ambiguous: Retry ambiguous outcomes (may double count).
        retry_ambiguous_orders: Retry ambiguous *order* requests (default ``True``,
            whatever ``retry_ambiguous`` says): Gameball rejects a duplicate
            ``orderId``, so a retry cannot award twice, and a duplicate answer after an
            ambiguous attempt is read as delivered. ``False`` restores at-most-once
            for orders (the deduplication is UNCONFIRMED by Gameball's docs).
        duplicate_order_codes: The Gameball codes (or HTTP statuses) that mean "this
            order already exists". Default ``{9004}``, UNCONFIRMED: Gameball documents
            that duplicates are rejected, not how.
    """

    max_attempts: int = 8
    max_age: float = 3600.0
    base_delay: float = 0.5
    max_delay: float = 60.0
    retry_ambiguous: bool = True
    retry_ambiguous_orders: bool = True
    duplicate_order_codes: frozenset[int] = DUPLICATE_ORDER_CODES

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.max_age <= 0 or self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("max_age must be positive and delays non-negative")
        codes = self.duplicate_order_codes
        if isinstance(codes, int | str) or not all(  # type: ignore[unreachable]
            type(code) is int
            for code in codes  # no bools, no strings
        ):
            raise ValueError("duplicate_order_codes must be a set of int codes")
        object.__setattr__(self, "duplicate_order_codes", frozenset(codes))

    def decide(self, outcome: Outcome, attempts: int, age: float) -> Decision:
        """Decide what follows ``outcome``: the one retry decision of every sender.

        :class:`~gbtrack.senders.BackgroundSender`, :class:`~gbtrack.senders.DirectSender`
        and the outbox all ask this, so an outcome leads to the same end everywhere.

        Args:
            outcome: The outcome of the latest attempt.
            attempts: Attempts made so far (``1`` after the first).
            age: Seconds since the oldest event of the request was created.

        Returns:
            A :class:`Decision`: retry after :attr:`Decision.delay` seconds, or give up
            with :attr:`Decision.reason`: ``"delivered"`` (nothing to do),
            ``"client_error"`` (the client raised: a bug the same request would meet
            again), ``"rejected"`` (permanent), ``"ambiguous"`` (ambiguous and
            ``retry_ambiguous`` is off), ``"expired"`` (older than ``max_age``) or
            ``"retries_exhausted"`` (``max_attempts`` reached).
        """
        return self._decide(outcome, attempts, age, self.retry_ambiguous)

    def decide_order(
        self, outcome: Outcome, attempts: int, age: float, *, ambiguous_before: bool
    ) -> Decision:
        """Decide what follows an order request's ``outcome``: :meth:`decide`, plus dedup.

        A duplicate answer (:attr:`duplicate_order_codes`) ends as ``"delivered"`` when
        an earlier attempt of the order was ambiguous (its answer was lost, Gameball
        had it), else as the drop reason ``"duplicate"`` (the application sent the
        same order twice). Ambiguous answers are retried while
        :attr:`retry_ambiguous_orders` (default), else dropped as ``"ambiguous"``.

        Args:
            outcome: The outcome of the latest attempt.
            attempts: Attempts made so far (``1`` after the first).
            age: Seconds since the order was taken.
            ambiguous_before: Whether an earlier attempt of this order was ambiguous.
        """
        if is_duplicate(outcome, self.duplicate_order_codes):
            what = describe_outcome(outcome)
            if ambiguous_before:
                return Decision(
                    "delivered", message=f"Gameball already had the order (duplicate): {what}"
                )
            return Decision(
                "duplicate", message=f"Gameball already has an order with this id: {what}"
            )
        return self._decide(outcome, attempts, age, self.retry_ambiguous_orders)

    def _decide(
        self, outcome: Outcome, attempts: int, age: float, retry_ambiguous: bool
    ) -> Decision:
        if outcome.delivered:
            return Decision("delivered", message="delivered")
        what = describe_outcome(outcome)
        if client_raised(outcome):
            return Decision("client_error", message=f"{outcome.error}; not retried: {what}")
        if outcome.permanent or not (outcome.retryable or outcome.ambiguous):
            return Decision("rejected", message=f"Gameball rejected the request: {what}")
        if outcome.ambiguous and not retry_ambiguous:
            return Decision(
                "ambiguous", message=f"delivery uncertain and retry_ambiguous is off: {what}"
            )
        if age >= self.max_age:
            return Decision(
                "expired", message=f"older than max_age={self.max_age:g}s, still failing: {what}"
            )
        if attempts >= self.max_attempts:
            return Decision(
                "retries_exhausted", message=f"{attempts} attempt(s) failed, the last: {what}"
            )
        return Decision(None, delay=self.delay(attempts, outcome), message=what)

    def should_retry(self, outcome: Outcome, attempts: int, age: float) -> bool:
        """Whether :meth:`decide` retries after ``outcome``."""
        return self.decide(outcome, attempts, age).retry

    def give_up_reason(self, outcome: Outcome, attempts: int, age: float) -> str | None:
        """:meth:`decide`'s reason: ``None`` to retry, else why delivery ends."""
        return self.decide(outcome, attempts, age).reason

    def delay(self, attempts: int, outcome: Outcome | None = None) -> float:
        """Seconds to wait before the next attempt: exponential backoff, full jitter.

        The wait is uniform in ``[0, min(max_delay, base_delay * 2 ** (attempts - 1))]``
        and never shorter than the outcome's ``Retry-After``.

        Args:
            attempts: Attempts made so far (``1`` after the first).
            outcome: The latest outcome, for its ``retry_after``.
        """
        cap = min(self.max_delay, self.base_delay * (2.0 ** max(0, min(attempts - 1, 62))))
        wait = random.uniform(0.0, cap)
        retry_after = outcome.retry_after if outcome is not None else None
        if retry_after is not None and retry_after > wait:
            wait = float(retry_after)
        return wait


class RateLimiter:
    """Thread-safe sliding-window rate limiter; the defaults are Gameball's limits.

    Each window ``(limit, period)`` allows at most ``limit`` requests to arrive at the
    server in any ``period`` seconds. Gameball allows 100 requests per second and 1,200
    per 30 seconds per account; an account shared by several processes should divide
    them (:func:`gbtrack.integrations.gunicorn.rate_limit_share`) or share one
    :class:`~gbtrack.senders.RedisRateLimiter`.

    **The guarantee, at the server.** A sender takes a slot with :meth:`reserve` before
    it hands a request to the network and gives its stamp to :meth:`restamp` when the
    answer came (or the attempt failed). Whatever happened in between (a busy CPU, a
    thread hand-off, a new connection, a slow network), the request reached the server,
    if at all, at some time inside the slot's *interval* ``[reserved, answered]``. The
    limiter counts a slot in a window from its reservation until ``period + margin``
    after its answer, and a slot still in flight counts, however old it is. A slot is
    given only when fewer than ``limit`` slots count now. Then no ``limit + 1`` arrivals
    fall in any ``period``: take the last slot ``k`` reserved among any ``limit + 1``
    whose arrivals lie within ``period`` of each other. Each of the others was reserved
    before ``k`` and arrived at most ``period`` before ``k``'s arrival, so at most
    ``period`` before ``k``'s reservation: its answer came no earlier than that, so it
    still counted when ``k`` was reserved. That is ``limit`` slots counting, and ``k``
    would have waited. The delay between reserving and arriving never enters the
    argument; ``margin`` covers the server's own clock and window edges.

    **What it costs.** In a steady burst, each slot is held for its round trip (reserve
    to answer) plus ``period + margin``: at most ``limit / (period + margin + rtt)``
    requests per second, e.g. 100 / (1 + 0.05 + 0.05) = 91/s of Gameball's 100/s with a
    50 ms round trip. Slots still in flight when the window is full make the wait a whole
    ``period + margin`` (the earliest they can free).

    A slot whose answer never comes (a thread that died with it) counts as answered
    ``hold`` seconds after it was reserved; a request that arrives later than that is
    outside the guarantee. :meth:`try_acquire` and :meth:`acquire` take slots that are
    answered at once (the caller sends within the margin, or accepts the risk).

    Args:
        limits: The windows, as ``(limit, period_seconds)`` pairs.
        clock: A monotonic clock (injectable for tests).
        margin: Seconds added to each window's period (``0`` for an exact limiter).
        hold: The most seconds a slot counts as in flight without an answer.
    """

    def __init__(
        self,
        limits: Sequence[tuple[int, float]] = ((100, 1.0), (1200, 30.0)),
        *,
        clock: Callable[[], float] = time.monotonic,
        margin: float = DEFAULT_MARGIN,
        hold: float = DEFAULT_HOLD,
    ) -> None:
        self.limits = checked_windows(limits, margin)
        if not hold > 0:
            raise ValueError("hold must be positive")
        self.clock = clock
        self.margin = float(margin)
        self.hold = float(hold)
        self._lock = threading.Lock()
        # Per window: the answer times of answered slots, oldest first.
        self._windows: list[deque[float]] = [deque() for _ in self.limits]
        # Slots in flight: stamp -> when reserved (dicts keep insertion order: oldest first).
        self._open: dict[float, float] = {}
        self._seq = itertools.count(1)
        self._gate = 0.0

    def try_acquire(self) -> float:
        """Take a slot now if one is free, answered at once (compatibility).

        Returns:
            ``0.0`` when a slot was taken; otherwise the seconds to wait before
            trying again (nothing was taken).
        """
        wait, stamp = self.reserve()
        if stamp is not None:
            self.restamp(stamp)
        return wait

    def reserve(self) -> tuple[float, float | None]:
        """Take a slot now if one is free; it counts as in flight until :meth:`restamp`.

        Returns:
            ``(0.0, stamp)`` when a slot was taken (``stamp`` is opaque, for
            :meth:`restamp`); otherwise ``(wait, None)`` with the seconds to wait
            before trying again.
        """
        with self._lock:
            now = self.clock()
            self._expire_open(now)
            wait = self._gate - now
            in_flight = len(self._open)
            for (limit, period), window in zip(self.limits, self._windows, strict=True):
                period += self.margin
                horizon = now - period
                while window and window[0] <= horizon:
                    window.popleft()
                excess = in_flight + len(window) - limit
                if excess >= 0:
                    # The excess-th answered slot must leave first; a slot in flight
                    # leaves a whole period after its answer, which is no earlier than now.
                    free_at = window[excess] + period if excess < len(window) else now + period
                    wait = max(wait, free_at - now)
            if wait > 0:
                return wait, None
            stamp = float(next(self._seq))
            self._open[stamp] = now
            return 0.0, stamp

    def _expire_open(self, now: float) -> None:
        """Count slots in flight longer than ``hold`` as answered then (lock held)."""
        cutoff = now - self.hold
        while self._open:
            stamp, reserved = next(iter(self._open.items()))
            if reserved > cutoff:
                return
            del self._open[stamp]
            for window in self._windows:
                insort(window, reserved + self.hold)

    def restamp(self, stamp: float) -> None:
        """The request of the slot taken with ``stamp`` was answered (or failed): now.

        From now the slot counts ``period + margin`` more in each window, by when the
        request surely reached the server. Unknown stamps, and a second call, are ignored.
        """
        with self._lock:
            if self._open.pop(stamp, None) is None:
                return
            now = self.clock()
            for window in self._windows:
                # ``now`` is no earlier than any answer logged, so the window stays sorted.
                window.append(now)

    def ages(self) -> list[float]:
        """Seconds since each slot the longest window still counts was answered.

        Slots in flight are ``0.0`` (answered now). For handing this limiter's recent
        slots to another (a :class:`~gbtrack.senders.RedisRateLimiter` whose Redis is
        back).
        """
        longest = max(range(len(self.limits)), key=lambda i: self.limits[i][1])
        with self._lock:
            now = self.clock()
            horizon = now - self.limits[longest][1] - self.margin
            answered = [now - t for t in self._windows[longest] if t > horizon]
            return answered + [0.0] * len(self._open)

    def take(
        self, timeout: float | None = None, *, stop: threading.Event | None = None
    ) -> float | None:
        """Take a slot, waiting until one is free: :meth:`reserve`'s blocking form.

        The one way every sender takes a slot is :meth:`reserve` (or this, which waits
        for it), then :meth:`restamp` with the returned stamp when the answer came:
        only then does the limit hold for arrivals at Gameball.

        Args:
            timeout: The most seconds to wait; ``None`` waits as long as needed.
            stop: An event that ends the wait early (a sender shutting down).

        Returns:
            The slot's stamp (for :meth:`restamp`), or ``None`` on timeout or stop.
        """
        return take_slot(self.reserve, timeout, stop)

    def acquire(self, timeout: float | None = None) -> bool:
        """Take a slot, sleeping until one is free (blocking: not for the hot path).

        Kept for compatibility: the slot counts as answered when taken. Senders use
        :meth:`take` (or :meth:`reserve`) and :meth:`restamp` the stamp when the
        answer comes.

        Args:
            timeout: The most seconds to wait; ``None`` waits as long as needed.

        Returns:
            ``True`` if a slot was taken, ``False`` on timeout.
        """
        stamp = self.take(timeout)
        if stamp is None:
            return False
        self.restamp(stamp)
        return True

    def defer(self, seconds: float) -> None:
        """Let nothing through before ``seconds`` from now (a 429 or ``Retry-After``)."""
        with self._lock:
            self._gate = max(self._gate, self.clock() + seconds)

    def note(self, outcome: Outcome) -> None:
        """Apply an answer's back-pressure: a 429 or a ``Retry-After`` gates every request.

        The gate lasts ``Retry-After`` seconds when given, else one second.
        """
        if outcome.status == 429 or outcome.retry_after is not None:
            self.defer(outcome.retry_after if outcome.retry_after is not None else 1.0)

    def _after_fork(self) -> None:
        # The lock may have been held by a thread that does not exist in the child.
        self._lock = threading.Lock()
        # The parent's requests in flight are answered for this child: its threads that
        # would restamp them are gone, and the parent counts them in its own limiter.
        if self._open:
            now = self.clock()
            self._open.clear()
            for window in self._windows:
                window.append(now)

    def __repr__(self) -> str:
        windows = ", ".join(f"{limit}/{period:g}s" for limit, period in self.limits)
        return f"<RateLimiter {windows}>"


def checked_windows(
    limits: Sequence[tuple[int, float]], margin: float
) -> tuple[tuple[int, float], ...]:
    """Every limiter's windows, checked: ``(limit, seconds)`` pairs as ints and floats.

    Raises:
        ValueError: If a window's limit is below 1 or its period not positive, or
            ``margin`` is negative.
    """
    for limit, period in limits:
        if limit < 1 or period <= 0:
            raise ValueError(f"invalid rate limit window ({limit}, {period})")
    if margin < 0:
        raise ValueError("margin must not be negative")
    return tuple((int(limit), float(period)) for limit, period in limits)


def take_slot(
    reserve: Callable[[], tuple[float, float | None]],
    timeout: float | None,
    stop: threading.Event | None,
) -> float | None:
    """Call ``reserve`` until it gives a slot: the waiting loop of every limiter's ``take``.

    Returns:
        The slot's stamp, or ``None`` on timeout or when ``stop`` is set.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        wait, stamp = reserve()
        if stamp is not None:
            return stamp
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            wait = min(wait, left)
        # Never spin: a wait computed as zero still yields a little.
        wait = max(wait, 0.0005)
        if stop is not None:
            if stop.wait(wait):
                return None
        else:
            time.sleep(wait)


@runtime_checkable
class Limiter(Protocol):
    """What a sender needs from a rate limiter: slots taken at dispatch, ended at the answer.

    A slot counts from :meth:`reserve` (in flight, however long) until ``period`` after
    :meth:`restamp`; see :class:`RateLimiter` for why that keeps arrivals at the server
    within the limit.

    :class:`RateLimiter` (one process) and :class:`~gbtrack.senders.RedisRateLimiter`
    (every process of a Gameball account, through Redis) implement it. A stamp is
    opaque: only :meth:`restamp` reads it.
    """

    def reserve(self) -> tuple[float, float | None]:
        """Take a slot now if one is free: ``(0.0, stamp)``, else ``(wait, None)``."""

    def restamp(self, stamp: float) -> None:
        """The slot taken with ``stamp`` was answered now; it counts a window more."""

    def take(
        self, timeout: float | None = None, *, stop: threading.Event | None = None
    ) -> float | None:
        """Take a slot, waiting until one is free; its stamp, or ``None`` on timeout or stop."""

    def acquire(self, timeout: float | None = None) -> bool:
        """Take a slot, sleeping until one is free; ``False`` on timeout."""

    def try_acquire(self) -> float:
        """Take a slot now if one is free: ``0.0``, else the seconds to wait."""

    def defer(self, seconds: float) -> None:
        """Let nothing through before ``seconds`` from now."""

    def note(self, outcome: Outcome) -> None:
        """Apply an answer's back-pressure (a 429 or a ``Retry-After``)."""

    def _after_fork(self) -> None:
        """Reset locks and connections in a forked child."""


@runtime_checkable
class DeliveryClient(Protocol):
    """What a sender needs from a Gameball client; every call returns an outcome.

    :class:`gbtrack.gameball.GameballClient` implements it. Methods never raise for
    delivery failures: they return an :class:`~gbtrack.gameball.Outcome`.
    """

    @property
    def has_secret_key(self) -> bool:
        """Whether a secret key is configured (required by the batch endpoints)."""

    def send(self, batch: EventBatch) -> Outcome:
        """Send one customer's events in one request."""

    def create_batch(self, batches: Sequence[EventBatch]) -> Outcome:
        """Create a bulk job of at most 1,000 customer objects."""

    def batch_status(self, job_id: str) -> Outcome:
        """Ask for a bulk job's status."""

    def stop_batch(self, job_id: str) -> Outcome:
        """Stop a bulk job."""

    def close(self) -> None:
        """Release the client's connections."""


@runtime_checkable
class Spill(Protocol):
    """Somewhere durable for events that would otherwise be dropped (the outbox)."""

    def spill(self, events: Sequence[Event], reason: str) -> int:
        """Store ``events`` (dropped or still failing for ``reason``).

        Returns:
            How many of them were stored.
        """
