"""Counting and reporting: every dropped event is counted, logged and handed to ``on_error``.

One :class:`Reporter` per tracker and one per sender. A sender built by
:func:`gbtrack.configure` shares the tracker's ``on_error`` hook.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import TYPE_CHECKING

from gbtrack._errors import GbtrackError, TrackingError

if TYPE_CHECKING:
    from gbtrack._event import Event

__all__ = ["ErrorHandler", "Reporter", "Stats", "logger", "warn_user"]

logger = logging.getLogger("gbtrack")
"""The ``gbtrack`` logger: drops and delivery failures are logged here, keys never."""

ErrorHandler = Callable[[TrackingError], None]
"""The ``on_error`` hook: receives a :class:`~gbtrack.TrackingError` for every dropped event."""

# Frames in files under this directory are gbtrack's own; a warning names the first
# frame outside it: the user's line that called into gbtrack.
_PACKAGE_DIR = os.path.dirname(__file__) + os.sep


def warn_user(message: str, category: type[Warning] = RuntimeWarning) -> None:
    """Warn at the user's call site (the first frame outside gbtrack), never raise.

    When warnings are turned into errors (``-W error``, pytest's ``filterwarnings =
    error``), the message is logged on the ``gbtrack`` logger instead: a warning about
    tracking must not break the business call.
    """
    try:
        if sys.version_info >= (3, 12):
            warnings.warn(message, category, skip_file_prefixes=(_PACKAGE_DIR,))
        else:
            warnings.warn(message, category, stacklevel=_user_stacklevel())
    except category:
        logger.warning(message)


def _user_stacklevel() -> int:
    """Return the ``stacklevel`` at which a warning from :func:`warn_user` names user code."""
    frame = sys._getframe(1)  # warn_user: stacklevel 1
    level = 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
        level += 1
    return level


@dataclass(frozen=True)
class Stats:
    """A snapshot of what happened to events, by a tracker and its sender.

    Attributes:
        sent: Events handed to the sender (accepted by ``send()``).
        delivered: Events Gameball acknowledged (delivery senders only).
        retried: Delivery attempts repeated after a retryable or ambiguous outcome.
        dropped: Events lost, by reason (``no_customer_id``, ``queue_overflow``, ...).
        in_queue: Events waiting in the sender's queue.
        in_flight: Events in requests under way.
        persisted: Events written to a durable outbox and not yet delivered.
        last_error: A short description of the most recent failure, without keys or PII.
        missing: Paths that found nothing on a value that was not ``None`` (an absent
            key or attribute: usually a typo), by ``(event name, field)``, e.g.
            ``("purchase", "amount")``. The event is sent without that field.
    """

    sent: int = 0
    delivered: int = 0
    retried: int = 0
    dropped: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    in_queue: int = 0
    in_flight: int = 0
    persisted: int = 0
    last_error: str | None = None
    missing: Mapping[tuple[str, str], int] = field(default_factory=lambda: MappingProxyType({}))

    def __repr__(self) -> str:
        # The mappings are read-only proxies; shown as the dicts they hold, not
        # "mappingproxy({...})", so that print(tracker.stats) reads plainly.
        shown = ", ".join(
            f"{f.name}={dict(value) if isinstance(value, Mapping) else value!r}"
            for f in fields(self)
            for value in (getattr(self, f.name),)
        )
        return f"Stats({shown})"

    @property
    def total_dropped(self) -> int:
        """All dropped events, whatever the reason."""
        return sum(self.dropped.values())

    def merge(self, other: Stats) -> Stats:
        """Return the sum of two snapshots (counters added, the other's last error wins)."""
        dropped = dict(self.dropped)
        for reason, count in other.dropped.items():
            dropped[reason] = dropped.get(reason, 0) + count
        missing = dict(self.missing)
        for where, count in other.missing.items():
            missing[where] = missing.get(where, 0) + count
        return Stats(
            sent=self.sent + other.sent,
            delivered=self.delivered + other.delivered,
            retried=self.retried + other.retried,
            dropped=MappingProxyType(dropped),
            in_queue=self.in_queue + other.in_queue,
            in_flight=self.in_flight + other.in_flight,
            persisted=self.persisted + other.persisted,
            last_error=other.last_error or self.last_error,
            missing=MappingProxyType(missing),
        )


class Reporter:
    """Thread-safe counters plus the drop path: count, log, call ``on_error``.

    Args:
        on_error: Called with a :class:`~gbtrack.TrackingError` for each drop; its own
            exceptions are logged and swallowed.
        log: The logger to use (the ``gbtrack`` logger by default).
        log_interval: Seconds between two log lines of one drop reason; drops in
            between are summed into the next line ("and N more"). Every drop is still
            counted and passed to ``on_error``.
        clock: The monotonic clock for ``log_interval`` (injectable for tests).
    """

    def __init__(
        self,
        on_error: ErrorHandler | None = None,
        log: logging.Logger = logger,
        *,
        log_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.on_error = on_error
        self.log = log
        # An outage can drop events by the million: one log line per reason per
        # interval (with how many it stands for); counting and on_error see every drop.
        self.log_interval = log_interval
        self._clock = clock
        self._log_after: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._dropped: dict[str, int] = {}
        self._missing: dict[tuple[str, str], int] = {}
        self.last_error: str | None = None
        # "sent" is counted on every tracked call: count_sent is an itertools.count's
        # C-level __next__ (one step the GIL never splits: no lock, no Python frame; a
        # third of a per-thread cell's cost), read by taking one more tick under the lock.
        self._sent_ticks = itertools.count()
        self._sent_reads = 0
        self.count_sent: Callable[[], object] = self._sent_ticks.__next__
        """Add one to the ``sent`` counter without taking a lock."""

    def _sent(self) -> int:
        with self._lock:
            self._sent_reads += 1  # this read's own tick, taken next
            return next(self._sent_ticks) - self._sent_reads + 1

    def count(self, key: str, n: int = 1) -> None:
        """Add ``n`` to counter ``key`` (``sent``, ``delivered``, ``retried``, ...)."""
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + n

    def get(self, key: str) -> int:
        """Return counter ``key``."""
        if key == "sent":
            return self._counts.get(key, 0) + self._sent()
        return self._counts.get(key, 0)

    def dropped(self, reason: str) -> int:
        """Return how many events were dropped for ``reason``."""
        return self._dropped.get(reason, 0)

    def drop(
        self,
        reason: str,
        message: str,
        *,
        event: Event | None = None,
        function: str | None = None,
        n: int = 1,
        exc_info: BaseException | None = None,
    ) -> TrackingError:
        """Count, log and report ``n`` dropped events; return the error (for strict mode).

        Args:
            reason: The stable reason code the drop is counted under.
            message: A human-readable explanation, without keys or unmasked PII.
            event: The event concerned, when one exists.
            function: The tracked function's qualified name, when there is one.
            n: How many events this drop stands for (a failed batch counts each).
            exc_info: The underlying exception, chained as ``__cause__``.
        """
        error = TrackingError(message, reason=reason, event=event, function=function)
        error.__cause__ = exc_info
        now = self._clock()
        with self._lock:
            self._dropped[reason] = self._dropped.get(reason, 0) + n
            self.last_error = f"{reason}: {message}"
            log_now = now >= self._log_after.get(reason, 0.0)
            if log_now:
                earlier = self._unlogged.pop(reason, 0)
                self._log_after[reason] = now + self.log_interval
            else:
                self._unlogged[reason] = self._unlogged.get(reason, 0) + n
        if log_now:
            more = f" (and {earlier} more since the last line)" if earlier else ""
            # gbtrack's own errors say it all in the message: their traceback runs through
            # gbtrack's internals, so it goes to DEBUG. Any other exception (a hook's, a
            # resolver's, a custom sender's) keeps it: it points at the bug.
            internal = isinstance(exc_info, GbtrackError)
            self.log.warning(
                "gbtrack dropped %d event(s) [%s]: %s%s",
                n,
                reason,
                message,
                more,
                exc_info=None if internal else exc_info,
            )
            if internal and self.log.isEnabledFor(logging.DEBUG):
                self.log.debug("gbtrack: the traceback of the drop above", exc_info=exc_info)
        self.report(error)
        return error

    def missing(self, event: str, field: str, message: str) -> bool:
        """Count a path that found nothing; log the first time per ``(event, field)``.

        Returns:
            ``True`` the first time this ``(event, field)`` is counted.
        """
        where = (event, field)
        with self._lock:
            count = self._missing.get(where, 0)
            self._missing[where] = count + 1
        if count == 0:
            self.log.warning("gbtrack: %s (logged once; counted in stats.missing)", message)
        return count == 0

    def note_error(self, message: str) -> None:
        """Remember ``message`` as the last error without counting a drop."""
        self.last_error = message

    def report(self, error: TrackingError) -> None:
        """Pass ``error`` to ``on_error``; the hook's own failures are logged, not raised."""
        hook = self.on_error
        if hook is None:
            return
        try:
            hook(error)
        except Exception:
            self.log.exception("gbtrack on_error hook raised; ignored")

    def snapshot(self, **gauges: int) -> Stats:
        """Return a :class:`Stats` of the counters plus the given gauges."""
        with self._lock:
            counts = dict(self._counts)
            dropped = MappingProxyType(dict(self._dropped))
            missing = MappingProxyType(dict(self._missing))
        return Stats(
            missing=missing,
            sent=counts.get("sent", 0) + self._sent(),
            delivered=counts.get("delivered", 0),
            retried=counts.get("retried", 0),
            dropped=dropped,
            last_error=self.last_error,
            **gauges,
        )
