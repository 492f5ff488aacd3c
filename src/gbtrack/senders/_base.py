"""The sender contract and the simple senders: in-memory and logging.

A sender is any object with ``send``/``flush``/``close`` (:class:`Sender`). What a
tracker and a sender say to each other beyond that is one explicit, optional extension:
a sender may define ``attach(link)`` (:class:`AttachableSender`); the tracker then hands
it a :class:`TrackerLink` (what the tracker gives: its limits, its ``before_send`` over
a list of events, its error forwarder, its ``sent`` counter) whenever its settings or
its sender change, and the sender answers with :class:`SenderTraits` (what it can do:
take drafts, apply ``before_send`` itself, hand over, report stats, its fast entry).
:class:`BaseSender` implements it; docs/senders.md shows how to write one.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from gbtrack._errors import InvalidEventError
from gbtrack._event import DEFAULT_LIMITS, Event, EventDraft, Limits, masked
from gbtrack._event import validate_drafts as _validate_drafts
from gbtrack._order import OrderDraft
from gbtrack._outcomes import DeliveryOutcome, OutcomeHook, OutcomeHooks
from gbtrack._report import ErrorHandler, Reporter, Stats
from gbtrack._state import FieldsGate, Gate

__all__ = [
    "AttachableSender",
    "BaseSender",
    "BatchHook",
    "InMemorySender",
    "LoggingSender",
    "Sender",
    "SenderTraits",
    "Tell",
    "TrackerLink",
]

BatchHook = Callable[[list[Event]], list[Event]]
"""A tracker's ``before_send`` as a sender applies it: the events validated from drafts
in, the events to deliver out (in order; a dropped one is already counted)."""

Tell = Callable[[DeliveryOutcome, "OutcomeHook | None"], None]
"""``tell(outcome, item_hook)``: a sender runs the outcome hooks of an item the tracker
dropped before handing it on (its own hook, then the tracker's), on its own thread."""


@runtime_checkable
class Sender(Protocol):
    """Where a tracker hands its events.

    ``send()`` runs on the caller's thread: it must neither block nor raise. Where
    delivery happens (a thread, disk, the network) is the sender's business.

    A sender receives validated :class:`~gbtrack.Event`s: the tracker validates each
    :class:`~gbtrack.EventDraft` before ``send()``. What else a sender can do (take
    drafts and validate them off the caller's thread, apply ``before_send`` there,
    report stats, hand its backlog over, offer a fast entry) it declares through the
    optional :class:`AttachableSender` extension, which :class:`BaseSender` implements.
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


@dataclass(frozen=True)
class TrackerLink:
    """What a tracker gives the sender it uses (see :class:`AttachableSender`).

    Given again, as a new value, whenever the tracker's settings or sender change.

    Attributes:
        limits: The :class:`~gbtrack.Limits` to validate drafts against.
        before_send: The tracker's ``before_send`` over a list of validated events
            (``None``: no hook). Failures inside are counted and reported by the tracker;
            it never raises.
        on_error: Forwards a :class:`~gbtrack.TrackingError` to the tracker's
            ``on_error`` hook; for a sender that has no hook of its own.
        count_sent: Counts one event in the tracker's ``stats.sent``; a fast entry calls
            it for each draft it accepts (the tracker counts every other path itself).
        send_failed: Reports that taking ``draft`` raised ``exc`` (counted
            ``sender_error`` on the tracker); for a fast entry that wraps a ``send()``
            which may raise.
        on_outcome: The tracker's ``on_outcome`` hook (``None``: none): called by the
            sender once per item with its final :class:`~gbtrack.DeliveryOutcome`, on
            the sender's thread (see :class:`~gbtrack._outcomes.OutcomeHooks`).
    """

    limits: Limits
    before_send: BatchHook | None
    on_error: ErrorHandler
    count_sent: Callable[[], object]
    send_failed: Callable[[EventDraft, Exception], None]
    on_outcome: OutcomeHook | None = None


@dataclass(frozen=True)
class SenderTraits:
    """What a sender declares to the tracker, answering :meth:`AttachableSender.attach`.

    A sender without ``attach()`` has the defaults: it takes validated events and
    nothing more.

    Attributes:
        takes_drafts: ``send()`` takes :class:`~gbtrack.EventDraft`s as they are (and
            ``Event``s from code that calls it directly) and validates them where it
            serialises, with the link's ``limits`` (e.g. :meth:`BaseSender.validated`).
        applies_before_send: The sender passes the events it validates from drafts
            through the link's ``before_send``; the tracker then leaves the hook to it
            (only with ``takes_drafts``).
        blocking: ``send()`` blocks until delivery (as :class:`DirectSender` does): the
            tracker warns once when it is called on a running event loop.
        gate: The sender's fast entry, the tracker's ``gate`` whenever nothing else is
            configured (only with ``takes_drafts``): ``gate(draft)`` takes one draft,
            counts it with the link's ``count_sent`` (at once, or later but before
            ``stats`` answers), never raises, and returns a truthy value when it
            accepted it. ``None``: the tracker calls ``send()``.
        fields_gate: ``gate`` again, when it also takes a draft's fields as a plain
            tuple (``tuple(draft)``) and makes the :class:`~gbtrack.EventDraft` itself,
            off the caller's thread (as :class:`BackgroundSender`'s worker does): the
            generated wrappers then skip making it. ``None``: the tracker makes the
            draft before calling ``gate``.
        stats: Returns the sender's :class:`~gbtrack.Stats`, merged into
            ``tracker.stats`` (all but ``sent``, which the tracker counts); called
            before the tracker reads its own counters.
        hand_over: ``hand_over(successor, timeout)``: when the tracker replaces this
            sender, send what it still holds to ``successor``, then close; without it
            the tracker closes the old sender.
        takes_orders: ``send()`` takes :class:`~gbtrack.OrderDraft`s (validated where
            the sender serialises, with the link's ``limits``). ``False`` when the
            sender cannot deliver orders (e.g. no secret key): the tracker refuses
            orders loudly then, at configure or decoration time.
        reports_outcomes: The sender calls the link's ``on_outcome`` (and each
            order's own hook) once per item with its final outcome.
        tell: With ``reports_outcomes``: how the tracker hands the sender the outcome
            of an item it dropped itself (no customer, invalid under ``strict``, not in
            the plan, ...), so that the hooks hear every item once and never on the
            caller's thread (:class:`BaseSender` defers it to its worker, if it has one).
    """

    takes_drafts: bool = False
    applies_before_send: bool = False
    blocking: bool = False
    gate: Gate | None = None
    fields_gate: FieldsGate | None = None
    stats: Callable[[], Stats] | None = None
    hand_over: Callable[[Sender, float | None], bool] | None = None
    takes_orders: bool = False
    reports_outcomes: bool = False
    tell: Tell | None = None


@runtime_checkable
class AttachableSender(Sender, Protocol):
    """A :class:`Sender` that wants to know its tracker: the optional extension.

    :class:`BaseSender` implements it; see docs/senders.md for writing one.
    """

    def attach(self, link: TrackerLink) -> SenderTraits:
        """Take what the tracker gives; say what this sender can do.

        Called when a tracker starts using the sender and whenever its settings
        change; must not block or raise.
        """


class BaseSender:
    """A convenient base for senders: counters, ``stats()``, ``validated()`` and ``attach()``.

    It implements the :class:`AttachableSender` extension from two class attributes:
    ``accepts_drafts`` (``send()`` takes drafts, validated where the sender serialises
    with :meth:`validated`, which also applies the tracker's ``before_send``) and
    ``blocking``. :meth:`attach` keeps what the tracker gives in ``self.limits``,
    ``self.before_send`` and the reporter's ``on_error`` (when the sender has no hook of
    its own); :meth:`fast_entry` is the draft-taking sender's fast entry.

    Args:
        on_error: Called with a :class:`~gbtrack.TrackingError` for each event the
            sender drops. A tracker wires its own hook here when the sender has none.
    """

    accepts_drafts = False
    """Whether :meth:`send` takes :class:`~gbtrack.EventDraft`s (validated later)."""

    blocking = False
    """Whether :meth:`send` blocks until delivery (the tracker warns on an event loop)."""

    accepts_orders = False
    """Whether :meth:`send` takes :class:`~gbtrack.OrderDraft`s (``SenderTraits.takes_orders``)."""

    reports_outcomes = False
    """Whether the sender calls :attr:`outcomes` for each settled item."""

    before_send: BatchHook | None = None
    """The tracker's ``before_send`` over the events validated from drafts (see :meth:`attach`)."""

    def __init__(self, *, on_error: ErrorHandler | None = None) -> None:
        self.reporter = Reporter(on_error)
        self.limits: Limits = DEFAULT_LIMITS
        # The outcome hooks: the tracker's, once attached (None: no hook, no cost).
        self.outcomes = OutcomeHooks(None, self.reporter)
        self._closed = False
        self._lost_at_flush = 0  # events dropped or dead when flush() last answered

    def send(self, event: Event) -> None:
        """Accept ``event`` without blocking or raising: each sender defines it."""
        raise NotImplementedError(f"{type(self).__name__} must define send()")

    def attach(self, link: TrackerLink) -> SenderTraits:
        """Keep the tracker's limits, hook and error forwarder; declare what this sender does.

        Returns:
            Drafts taken (and ``before_send`` applied in :meth:`validated`) when
            ``accepts_drafts``, with :meth:`fast_entry` as the gate; ``blocking``;
            :meth:`stats` and :meth:`hand_over`.
        """
        if self.reporter.on_error is None:  # no hook of its own: report to the tracker's
            self.reporter.on_error = link.on_error
        self.limits = link.limits
        self.outcomes.tracker_hook = link.on_outcome
        takes_drafts = self.accepts_drafts
        gate = None
        if takes_drafts:
            self.before_send = link.before_send
            gate = self.fast_entry(link)
        return SenderTraits(
            takes_drafts=takes_drafts,
            applies_before_send=takes_drafts,
            blocking=self.blocking,
            gate=gate,
            fields_gate=None if gate is None else self.fields_entry(gate),
            stats=self.stats,
            hand_over=self.hand_over,
            takes_orders=bool(self.accepts_orders),
            reports_outcomes=self.reports_outcomes,
            tell=self.tell_outcome if self.reports_outcomes else None,
        )

    def tell_outcome(self, outcome: DeliveryOutcome, item_hook: OutcomeHook | None) -> None:
        """Run the hooks for an item the tracker dropped (``SenderTraits.tell``).

        This one runs them at once, as a blocking sender runs its others; a sender with a
        worker defers them to it (:meth:`~gbtrack.senders.BackgroundSender.tell_outcome`).
        """
        self.outcomes.emit(outcome, item_hook)

    def fast_entry(self, link: TrackerLink) -> Gate:
        """The tracker's gate while nothing else is configured: one draft to :meth:`send`.

        This one calls ``send()``, reports what it raises through the link (counted
        ``sender_error``) and counts each accepted draft with ``link.count_sent``. A
        sender whose ``send()`` cannot raise may return its own bound method that does
        the same in one call.
        """
        send = self.send
        count_sent = link.count_sent
        send_failed = link.send_failed

        def gate(draft: EventDraft) -> bool:
            try:
                send(draft)  # type: ignore[arg-type]  # accepts_drafts: send() takes drafts
            except Exception as exc:
                send_failed(draft, exc)
                return False
            count_sent()
            return True

        return gate

    def fields_entry(self, gate: Gate) -> FieldsGate | None:
        """``gate`` (from :meth:`fast_entry`) if it also takes a draft's fields as a tuple.

        ``SenderTraits.fields_gate``: a gate that makes the ``EventDraft`` off the
        caller's thread returns itself here. This one: ``None`` (the tracker makes it).
        """
        return None

    def hand_over(self, successor: Sender, timeout: float | None = None) -> bool:
        """Replaced by ``successor``: nothing is held here, so this only closes.

        Senders that hold events (a queue) send them to ``successor`` instead.

        Returns:
            What :meth:`close` returns.
        """
        return self.close(timeout)

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


def _checked_order(sender: BaseSender, order: OrderDraft) -> dict[str, object] | None:
    """The order's wire body, or ``None`` when it breaks the limits (counted, reported)."""
    try:
        return order.to_body(sender.limits)
    except InvalidEventError as exc:
        sender.reporter.drop(
            "invalid_event",
            f"order {order.order_id!r}: {exc}",
            function=order.function,
            exc_info=exc,
        )
        return None


class InMemorySender(BaseSender):
    """Keep events (and orders) in lists: for tests, examples and the benchmarks.

    Thread-safe; :attr:`events` and :attr:`orders` return copies in send order.
    """

    accepts_orders = True
    """``send()`` takes :class:`~gbtrack.OrderDraft`s too (kept in :attr:`orders`)."""

    def __init__(self, *, on_error: ErrorHandler | None = None) -> None:
        super().__init__(on_error=on_error)
        self._events: list[Event] = []
        self._orders: list[OrderDraft] = []
        self._lock = threading.Lock()

    def send(self, event: Event | OrderDraft) -> None:
        """Append ``event`` (dropped with reason ``closed`` after :meth:`close`).

        An :class:`~gbtrack.OrderDraft` is checked against the limits (as a delivering
        sender does before serialising it) and kept in :attr:`orders`.
        """
        if self._closed:
            if isinstance(event, OrderDraft):
                self.reporter.drop(
                    "closed", f"InMemorySender is closed; order {event.order_id!r} dropped"
                )
            else:
                self._drop_closed(event)
            return
        if isinstance(event, OrderDraft):
            if _checked_order(self, event) is None:
                return
            with self._lock:
                self._orders.append(event)
        else:
            with self._lock:
                self._events.append(event)
        self.reporter.count("delivered")

    @property
    def orders(self) -> list[OrderDraft]:
        """A copy of the orders received so far, oldest first (``to_body()``: the wire body)."""
        with self._lock:
            return list(self._orders)

    @property
    def events(self) -> list[Event]:
        """A copy of the events received so far, oldest first."""
        with self._lock:
            return list(self._events)

    def clear(self) -> None:
        """Forget the events and orders received so far."""
        with self._lock:
            self._events.clear()
            self._orders.clear()

    def __len__(self) -> int:
        return len(self._events)

    def __repr__(self) -> str:
        return f"<InMemorySender events={len(self._events)} orders={len(self._orders)}>"


class LoggingSender(BaseSender):
    """Log each event as one JSON line on a logger; nothing reaches Gameball.

    The default when no delivery is configured. Email and mobile are masked and the
    session token is never written.

    Args:
        logger: The logger (default ``gbtrack.events``).
        level: The log level (default ``INFO``).
        on_error: See :class:`BaseSender`.
    """

    accepts_orders = True
    """``send()`` takes :class:`~gbtrack.OrderDraft`s too (logged as ``gbtrack order``)."""

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

    def send(self, event: Event | OrderDraft) -> None:
        """Log ``event`` or an order (dropped with reason ``closed`` after :meth:`close`)."""
        if isinstance(event, OrderDraft):
            self._log_order(event)
            return
        if self._closed:
            self._drop_closed(event)
            return
        if self.logger.isEnabledFor(self.level):
            body = masked(event.to_payload())
            self.logger.log(self.level, "gbtrack event %s", json.dumps(body, sort_keys=True))
        self.reporter.count("delivered")

    def _log_order(self, order: OrderDraft) -> None:
        if self._closed:
            self.reporter.drop(
                "closed", f"LoggingSender is closed; order {order.order_id!r} dropped"
            )
            return
        body = _checked_order(self, order)
        if body is None:
            return
        if self.logger.isEnabledFor(self.level):
            self.logger.log(
                self.level, "gbtrack order %s", json.dumps(masked(body), sort_keys=True)
            )
        self.reporter.count("delivered")

    def __repr__(self) -> str:
        return f"<LoggingSender logger={self.logger.name!r}>"
