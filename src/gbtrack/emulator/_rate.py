"""The emulator's rate limits: one bucket per Gameball resource, strict windows in each.

Gameball counts each API resource in its own bucket ("distinct rate and quota buckets
for different API resources"): events 100 a second and 1,200 every 30 seconds, order
tracking 30 a second and 360 every 30 seconds. A :class:`RateBucket` keeps one
resource's windows and the arrival log a test reads back; nothing here takes a lock
(the emulator's state holds its own around every call).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Final

__all__ = [
    "BUCKETS",
    "DEFAULT_ORDER_RATE_LIMITS",
    "DEFAULT_RATE_LIMITS",
    "EVENTS_BUCKET",
    "ORDERS_BUCKET",
    "RateBucket",
    "RateLimits",
    "RateWindows",
    "check_bucket",
    "max_in_window",
    "parse_rate_limits",
]

RateLimits = Sequence[tuple[int, float]]
"""Sliding windows as ``(max requests, window seconds)`` pairs."""

DEFAULT_RATE_LIMITS: Final[tuple[tuple[int, float], ...]] = ((100, 1.0), (1200, 30.0))
"""Gameball's documented events limits: 100 requests a second and 1,200 every 30 seconds."""

DEFAULT_ORDER_RATE_LIMITS: Final[tuple[tuple[int, float], ...]] = ((30, 1.0), (360, 30.0))
"""Gameball's documented order-tracking limits: 30 a second and 360 every 30 seconds."""

EVENTS_BUCKET: Final = "events"
ORDERS_BUCKET: Final = "orders"
BUCKETS: Final = (EVENTS_BUCKET, ORDERS_BUCKET)
"""The rate buckets the emulator keeps, by resource name."""

# An arrival checked this much later than the newest one is still checked exactly
# (threads answer in any order); older log entries are forgotten.
_LATE_ARRIVAL = 60.0


def check_bucket(bucket: object) -> str:
    """Check a bucket name (``"events"`` or ``"orders"``) and return it.

    Raises:
        ValueError: For any other value.
    """
    if bucket == EVENTS_BUCKET:
        return EVENTS_BUCKET
    if bucket == ORDERS_BUCKET:
        return ORDERS_BUCKET
    raise ValueError(f"bucket must be one of {', '.join(BUCKETS)}, got {bucket!r}")


class RateWindows:
    """Exact sliding windows over arrival times: at most ``limit`` in any ``period`` seconds.

    Arrivals are stamped when a request's line is read, and checked when its handler
    thread gets there, which may be after a later arrival was: each window keeps its
    admitted arrivals sorted, and an arrival is admitted only if, with it, no
    ``limit + 1`` admitted arrivals lie within less than ``period`` of each other, in
    whatever order they were checked.

    Args:
        limits: The windows.

    Raises:
        ValueError: If a window has a limit below 1 or a non-positive period.
    """

    def __init__(self, limits: RateLimits) -> None:
        checked: list[tuple[int, float]] = []
        for limit, period in limits:
            if int(limit) < 1 or not float(period) > 0:
                raise ValueError(
                    f"a rate limit needs limit >= 1 and period > 0, got {limit}/{period}"
                )
            checked.append((int(limit), float(period)))
        self.limits = tuple(checked)
        self._logs: list[list[float]] = [[] for _ in checked]
        self._newest = -math.inf

    def try_admit(self, arrived: float) -> float:
        """Admit an arrival and return 0.0, or return the seconds until one would be."""
        self._newest = max(self._newest, arrived)
        wait = 0.0
        for (limit, period), log in zip(self.limits, self._logs, strict=True):
            forget = bisect.bisect_right(log, self._newest - period - _LATE_ARRIVAL)
            if forget:
                del log[:forget]
            wait = max(wait, _crowding(log, arrived, limit, period))
        if wait > 0:
            return max(wait, 1e-6)
        for log in self._logs:
            bisect.insort(log, arrived)
        return 0.0


def _crowding(log: list[float], t: float, limit: int, period: float) -> float:
    """How long after ``t`` an arrival would fit among ``log``'s (0.0: ``t`` fits now).

    ``t`` fits when no ``limit + 1`` of ``log`` and ``t`` together span less than ``period``.
    """
    k = bisect.bisect_right(log, t)

    def at(i: int) -> float:  # the sorted sequence with t inserted at k
        return log[i] if i < k else t if i == k else log[i - 1]

    wait = 0.0
    for start in range(max(0, k - limit), k + 1):
        end = start + limit
        if end <= len(log) and at(end) - at(start) < period:
            wait = max(wait, at(start) + period - t)
    return wait


class RateBucket:
    """One resource's rate limit: its windows (or none) and what arrived and was admitted.

    Args:
        limits: The windows, or ``None`` for no limit.
    """

    def __init__(self, limits: RateLimits | None) -> None:
        self.windows: RateWindows | None = None if limits is None else RateWindows(limits)
        self.arrivals: list[float] = []
        self.admitted: list[float] = []
        self.rate_limited = 0

    @property
    def limits(self) -> tuple[tuple[int, float], ...] | None:
        """The windows as ``(limit, period)`` pairs, or ``None`` when off."""
        return None if self.windows is None else self.windows.limits

    def arrive(self, arrived: float) -> None:
        """Log an arrival (counted whatever its answer)."""
        self.arrivals.append(arrived)

    def try_admit(self, arrived: float) -> float:
        """Admit an arrival (0.0) or count a refusal and return the seconds to wait."""
        wait = 0.0 if self.windows is None else self.windows.try_admit(arrived)
        if wait:
            self.rate_limited += 1
        else:
            self.admitted.append(arrived)
        return wait

    def set_limits(self, limits: RateLimits | None) -> None:
        """Replace the windows with fresh ones (``None``: off); the logs are kept."""
        self.windows = None if limits is None else RateWindows(limits)

    def reset(self) -> None:
        """Forget the arrivals, admissions and refusals; fresh windows of the same limits."""
        self.arrivals.clear()
        self.admitted.clear()
        self.rate_limited = 0
        self.set_limits(self.limits)


def max_in_window(times: Sequence[float], window: float) -> int:
    """The most of the sorted ``times`` that lie within less than ``window`` of each other."""
    best = 0
    start = 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def parse_rate_limits(text: str) -> tuple[tuple[int, float], ...]:
    """Parse ``"100/1,1200/30"`` into ``((100, 1.0), (1200, 30.0))``.

    Raises:
        ValueError: For text that is not comma-separated ``count/seconds`` pairs.
    """
    limits: list[tuple[int, float]] = []
    for part in text.split(","):
        count, sep, seconds = part.strip().partition("/")
        if not sep:
            raise ValueError(f"expected COUNT/SECONDS, got {part.strip()!r}")
        limits.append((int(count), float(seconds)))
    RateWindows(limits)  # validates
    return tuple(limits)
