"""The Sender protocol and the simple senders: in-memory and logging."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Protocol, runtime_checkable

from gbtrack._event import DEFAULT_LIMITS, Event, EventDraft, Limits, masked
from gbtrack._event import validate_drafts as _validate_drafts
from gbtrack._report import ErrorHandler, Reporter, Stats

__all__ = ["BaseSender", "InMemorySender", "LoggingSender", "Sender"]


@runtime_checkable
class Sender(Protocol):
    """Where a tracker hands its events.

    ``send()`` runs on the caller's thread: it must neither block nor raise. Where
    delivery happens (a thread, disk, the network) is the sender's business.

    A sender receives validated :class:`~gbtrack.Event`s: the tracker validates each
    :class:`~gbtrack.EventDraft` before ``send()``. A sender that validates where it
    serialises (off the caller's thread) declares ``accepts_drafts = True`` and a
    writable ``limits`` attribute; it then receives drafts as they are (and ``Event``s
    from code that calls it directly), and must validate them with
    :meth:`BaseSender.validated` (counted ``invalid_event`` when they fail).
    """

    def send(self, event: Event) -> None:
        """Accept ``event`` for delivery without blocking; never raise."""

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything accepted so far is delivered or finally failed.

        Returns:
            ``True`` if everything accepted before the call was delivered (or durably
            persisted) within ``timeout`` seconds: ``False`` on timeout, and ``False``
            when any event was dropped or dead-lettered since the previous ``flush()``.
        """

    def close(self, timeout: float | None = None) -> bool:
        """Flush, then release resources; idempotent. Later sends are dropped.

        Returns:
            ``True`` if everything was settled within ``timeout`` seconds.
        """


class BaseSender:
    """A convenient base for senders: a :class:`~gbtrack._report.Reporter` and ``stats()``.

    Args:
        on_error: Called with a :class:`~gbtrack.TrackingError` for each event the
            sender drops. :func:`gbtrack.configure` wires the tracker's hook here
            when the sender has none.
    """

    accepts_drafts = False
    """Whether :meth:`send` takes :class:`~gbtrack.EventDraft`s (validated later)."""

    before_send: Callable[[list[Event]], list[Event]] | None = None
    """Set by the tracker: its ``before_send`` hook over the events validated from drafts."""

    def __init__(self, *, on_error: ErrorHandler | None = None) -> None:
        self.reporter = Reporter(on_error)
        self.limits: Limits = DEFAULT_LIMITS
        self._closed = False
        self._lost_at_flush = 0  # events dropped or dead when flush() last answered

    def validated(self, items: Iterable[Event | EventDraft]) -> list[Event]:
        """Validate drafts into events, in order; an invalid one is counted and reported.

        ``Event``s pass through unchanged. Runs where events are serialised (the
        delivery worker), never on the caller's thread.

        Returns:
            The valid events, oldest first.
        """
        items = list(items)
        hook = self.before_send  # the tracker's hook, for events validated from drafts
        if all(type(item) is EventDraft for item in items):
            events, invalid = _validate_drafts(items, self.limits)  # type: ignore[arg-type]
            if hook is not None and events:
                events = hook(events)
        else:
            events, invalid = [], []
            for item in items:
                if type(item) is EventDraft:
                    good, bad = _validate_drafts((item,), self.limits)
                    events += hook(good) if hook is not None and good else good
                    invalid += bad
                else:
                    events.append(item)  # type: ignore[arg-type]
        for draft, error in invalid:
            self.reporter.drop("invalid_event", str(error), function=draft.function, exc_info=error)
        return events

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def stats(self) -> Stats:
        """Return a snapshot of this sender's counters."""
        return self.reporter.snapshot()

    def _drop_closed(self, event: Event | EventDraft) -> None:
        self.reporter.drop(
            "closed",
            f"{type(self).__name__} is closed; event {event.name!r} dropped",
            event=event if type(event) is Event else None,
        )

    def _nothing_lost_since_flush(self) -> bool:
        """Whether no event was dropped (or moved to a dead letter) since the last call.

        The second half of every ``flush()`` answer: ``flush()`` says whether
        everything submitted before it was delivered or durably persisted, so a drop
        since the previous ``flush()`` (a rejected event, an overflow, ...) makes it
        ``False`` even when nothing is left to wait for.
        """
        lost = self.reporter.snapshot().total_dropped + self.reporter.get("dead")
        clean = lost == self._lost_at_flush
        self._lost_at_flush = lost
        return clean

    def flush(self, timeout: float | None = None) -> bool:
        """Nothing is buffered: ``True`` unless an event was dropped since the last flush."""
        return self._nothing_lost_since_flush()

    def close(self, timeout: float | None = None) -> bool:
        """Mark the sender closed; later sends are dropped with reason ``closed``."""
        self._closed = True
        return True


class InMemorySender(BaseSender):
    """Keep events in a list: for tests, examples and the benchmarks.

    Thread-safe; :attr:`events` returns a copy in send order.
    """

    def __init__(self, *, on_error: ErrorHandler | None = None) -> None:
        super().__init__(on_error=on_error)
        self._events: list[Event] = []
        self._lock = threading.Lock()

    def send(self, event: Event) -> None:
        """Append ``event`` (dropped with reason ``closed`` after :meth:`close`)."""
        if self._closed:
            self._drop_closed(event)
            return
        with self._lock:
            self._events.append(event)
        self.reporter.count("delivered")

    @property
    def events(self) -> list[Event]:
        """A copy of the events received so far, oldest first."""
        with self._lock:
            return list(self._events)

    def clear(self) -> None:
        """Forget the events received so far."""
        with self._lock:
            self._events.clear()

    def __len__(self) -> int:
        return len(self._events)

    def __repr__(self) -> str:
        return f"<InMemorySender events={len(self._events)}>"


class LoggingSender(BaseSender):
    """Log each event as one JSON line on a logger; nothing reaches Gameball.

    The default when no delivery is configured. Email and mobile are masked and the
    session token is never written.

    Args:
        logger: The logger (default ``gbtrack.events``).
        level: The log level (default ``INFO``).
        on_error: See :class:`BaseSender`.
    """

    def __init__(
        self,
        logger: logging.Logger | None = None,
        *,
        level: int = logging.INFO,
        on_error: ErrorHandler | None = None,
    ) -> None:
        super().__init__(on_error=on_error)
        self.logger = logger or logging.getLogger("gbtrack.events")
        self.level = level

    def send(self, event: Event) -> None:
        """Log ``event`` (dropped with reason ``closed`` after :meth:`close`)."""
        if self._closed:
            self._drop_closed(event)
            return
        if self.logger.isEnabledFor(self.level):
            body = masked(event.to_payload())
            self.logger.log(self.level, "gbtrack event %s", json.dumps(body, sort_keys=True))
        self.reporter.count("delivered")

    def __repr__(self) -> str:
        return f"<LoggingSender logger={self.logger.name!r}>"
