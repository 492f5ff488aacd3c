"""Delivery outcomes: what finally became of one event or order in this process.

:class:`DeliveryOutcome` is made only where an item *settles* (never per retry):
delivered, dropped with its reason, or persisted to a durable spill (the outbox) that
will deliver it from elsewhere. The tracker-level ``on_outcome`` hook (a superset of
``on_error``) and an order's per-decorator hook (:attr:`gbtrack.OrderDraft.on_outcome`)
receive it on the sender's thread, through :class:`OutcomeHooks`, which catches what a
hook raises (logged once per hook, counted ``outcome_hook_errors``).

An event's own hook (``@track(on_outcome=...)``, ``Tracker.emit(on_outcome=...)``)
rides on its :class:`~gbtrack.EventDraft` as a tenth element, after the nine fields,
only on the drafts that have one (a draft without is the same nine-tuple as ever, so
the call path pays nothing). Where such a draft is checked into an
:class:`~gbtrack.Event`, the event is given the hook in :data:`gbtrack._event.EVENT_HOOKS` (by its
identity, weakly: the entry goes with the event); :func:`item_hook` finds it again
from either.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, cast

from gbtrack._event import EVENT_HOOKS, attach_hook, item_hook
from gbtrack._order import OrderDraft

if TYPE_CHECKING:
    from gbtrack._event import Event, EventDraft
    from gbtrack._report import Reporter

__all__ = [
    "EVENT_HOOKS",
    "DeliveryOutcome",
    "OutcomeHook",
    "OutcomeHooks",
    "Unsent",
    "attach_hook",
    "dropped_outcome",
    "event_outcome",
    "item_hook",
    "order_outcome",
    "own_hook",
]

Status = Literal["delivered", "dropped", "persisted"]

_log = logging.getLogger("gbtrack")

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """The final outcome of one item (an event or an order) in this process.

    Attributes:
        resource: ``"event"`` or ``"order"``.
        status: ``"delivered"``, ``"dropped"`` or ``"persisted"`` (handed to the durable
            outbox, which delivers it later, possibly from another process).
        customer_id: The customer's id.
        reference: The order id, or the event name.
        reason: Why it was dropped (``rejected``, ``duplicate``, ``queue_overflow``,
            ``invalid_order``, ...) or persisted (the spill's reason); ``None`` when
            delivered.
        result: The parsed answer: an order's ``rewardedPoints``, ``redeemedPoints``,
            ...; empty for events.
        duplicate: Delivered because Gameball already had it (an order whose earlier
            attempt's answer was lost, then answered "duplicate").
        error: A short message (no keys, no Gameball free text); ``None`` when delivered.
        function: The tracked function's qualified name, when known.
    """

    resource: Literal["event", "order"]
    status: Status
    customer_id: str
    reference: str | None
    reason: str | None = None
    result: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    duplicate: bool = False
    error: str | None = None
    function: str | None = None

    @property
    def delivered(self) -> bool:
        """Whether Gameball has the item (``status == "delivered"``)."""
        return self.status == "delivered"


def event_outcome(
    event: Event | EventDraft,
    status: Status,
    reason: str | None = None,
    error: str | None = None,
) -> DeliveryOutcome:
    """An event's outcome (its name is the reference)."""
    return DeliveryOutcome(
        "event",
        status,
        event.customer_id,
        event.name,
        reason=reason,
        error=error,
        function=getattr(event, "function", None),
    )


def order_outcome(
    draft: OrderDraft,
    status: Status,
    reason: str | None = None,
    error: str | None = None,
    *,
    result: Mapping[str, Any] | None = None,
    duplicate: bool = False,
) -> DeliveryOutcome:
    """An order's outcome (its order id is the reference; ``result``: Gameball's answer)."""
    return DeliveryOutcome(
        "order",
        status,
        draft.customer_id,
        draft.order_id,
        reason=reason,
        result=_EMPTY if result is None else result,
        duplicate=duplicate,
        error=error,
        function=draft.function,
    )


OutcomeHook = Callable[[DeliveryOutcome], object]
"""``hook(outcome)``: called once per item with its final outcome; its return is ignored."""

Unsent = tuple[Literal["event", "order"], "str | None", "OutcomeHook | None"]
"""What a drop before any draft existed is about: the resource, its reference (an
event's name; ``None`` for an order whose id was not read) and the item's own hook."""


def own_hook(about: Event | EventDraft | OrderDraft | Unsent) -> OutcomeHook | None:
    """The item's own outcome hook, if it has one."""
    if type(about) is tuple:  # Unsent (drafts are tuples of their own types)
        return cast("Unsent", about)[2]
    if isinstance(about, OrderDraft):
        return about.on_outcome
    return item_hook(about)


def dropped_outcome(
    about: Event | EventDraft | OrderDraft | Unsent,
    reason: str,
    message: str,
    function: str | None,
) -> DeliveryOutcome:
    """The outcome of an item the tracker dropped before its sender.

    ``about`` is the draft, the event or the order when there is one; otherwise an
    :data:`Unsent` triple (the customer is then unknown: ``""``).
    """
    if type(about) is tuple:
        resource, reference, _ = cast("Unsent", about)
        return DeliveryOutcome(
            resource, "dropped", "", reference, reason=reason, error=message, function=function
        )
    if isinstance(about, OrderDraft):
        return order_outcome(about, "dropped", reason, message)
    return event_outcome(cast("Event | EventDraft", about), "dropped", reason, message)


class OutcomeHooks:
    """Calls the outcome hooks of settled items safely, on the sender's thread.

    Args:
        tracker_hook: The tracker-level ``on_outcome`` (``None``: none).
        reporter: Where hook failures are counted (``outcome_hook_errors``).
    """

    __slots__ = ("_failed", "pending", "reporter", "tracker_hook")

    def __init__(self, tracker_hook: OutcomeHook | None, reporter: Reporter) -> None:
        self.tracker_hook = tracker_hook
        self.reporter = reporter
        # Outcomes decided on a caller's thread (queue overflow), run later by the worker.
        self.pending: deque[tuple[DeliveryOutcome, OutcomeHook | None]] = deque()
        self._failed: set[int] = set()  # id() of hooks already logged as failing

    def wants(self, item_hook: OutcomeHook | None) -> bool:
        """Whether an item with ``item_hook`` needs its outcome made at all."""
        return self.tracker_hook is not None or item_hook is not None

    def wants_events(self) -> bool:
        """Whether delivered events need their outcomes made (a hook of either kind)."""
        return self.tracker_hook is not None or bool(EVENT_HOOKS)

    def settle_event(
        self,
        event: Event | EventDraft,
        status: Status,
        reason: str | None = None,
        error: str | None = None,
    ) -> None:
        """Report one event's final outcome to its own hook and the tracker's, if any."""
        hook = item_hook(event)
        if hook is not None or self.tracker_hook is not None:
            self.emit(event_outcome(event, status, reason, error), hook)

    def defer_event(
        self,
        event: Event | EventDraft,
        status: Status,
        reason: str | None = None,
        error: str | None = None,
    ) -> bool:
        """:meth:`settle_event` later, on the sender's thread; whether there was a hook."""
        hook = item_hook(event)
        if hook is None and self.tracker_hook is None:
            return False
        self.defer(event_outcome(event, status, reason, error), hook)
        return True

    def emit_own(self, hook: OutcomeHook, outcome: DeliveryOutcome) -> None:
        """Call an item's own hook alone (an outcome the tracker's hook is not told)."""
        self._call(hook, outcome)

    def emit(self, outcome: DeliveryOutcome, item_hook: OutcomeHook | None = None) -> None:
        """Call the item's hook, then the tracker's, each at most once; never raise."""
        if item_hook is not None:
            self._call(item_hook, outcome)
        hook = self.tracker_hook
        if hook is not None:
            self._call(hook, outcome)

    def defer(self, outcome: DeliveryOutcome, item_hook: OutcomeHook | None = None) -> None:
        """Keep ``outcome`` for :meth:`run_pending` (decided off the sender's thread)."""
        self.pending.append((outcome, item_hook))

    def run_pending(self) -> None:
        """Emit the deferred outcomes, oldest first (on the sender's thread)."""
        pending = self.pending
        while pending:
            try:
                outcome, hook = pending.popleft()
            except IndexError:  # pragma: no cover - another thread emptied it
                return
            self.emit(outcome, hook)

    def _call(self, hook: OutcomeHook, outcome: DeliveryOutcome) -> None:
        try:
            hook(outcome)
        except Exception as exc:
            self.reporter.count("outcome_hook_errors")
            key = id(hook)
            if key not in self._failed:  # once per hook: a broken hook must not flood logs
                self._failed.add(key)
                _log.error(
                    "gbtrack: the on_outcome hook %r raised %s (delivery goes on; "
                    "later failures of this hook are counted, not logged)",
                    getattr(hook, "__qualname__", hook),
                    type(exc).__name__,
                    exc_info=exc,
                )
