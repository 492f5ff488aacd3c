"""The tracker's pipeline: compiled from its settings and its sender, never per event.

:func:`compile_route` is the one place that decides what a draft goes through, in the
spirit of structlog's processors and sentry's event processors: the plan check
(``strict_plan``), sampling, validation where needed (``strict``, or a sender that
takes events), ``before_send`` (inline, or given to the sender), the debug line, then
the sender or the transaction binding. Each feature is a step in a tuple built when
the configuration changes; no step tests a flag per event. The common case has no
step at all: the tracker's gate is then the sender's own fast entry.

The helpers the steps share live here too: :class:`Books` (where they count),
:class:`LoopWarnings`, the debug logging switch, and the default sender's creation.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Union

from gbtrack._delivery import sender_from_config
from gbtrack._errors import InvalidEventError, TrackingError
from gbtrack._event import Event, EventDraft, Limits, as_draft, mask_email, mask_mobile
from gbtrack._order import OrderDraft
from gbtrack._outcomes import Unsent, dropped_outcome, own_hook
from gbtrack._report import Reporter, Stats, logger, warn_user
from gbtrack._schema import check_planned
from gbtrack._settings import BeforeSend, TrackerSettings
from gbtrack._state import FieldsGate, Gate
from gbtrack._state import _open as _bindings
from gbtrack._state import bound_transaction as _bound_transaction
from gbtrack._transaction import TransactionBinding, insert_failed
from gbtrack.senders._base import BatchHook, LoggingSender, Sender, SenderTraits, Tell

__all__ = [
    "Books",
    "LoopWarnings",
    "Route",
    "batch_hook",
    "compile_route",
    "debug_logging",
    "default_sender",
    "where",
]

Item = Union[Event, EventDraft]  # noqa: UP007  # a runtime alias: X | Y is not one on 3.10
DraftStep = Callable[[EventDraft], bool]
"""A step on the draft: ``False`` when it dropped it (already counted)."""
ItemStep = Callable[[EventDraft, Item], "Item | None"]
"""A step on what goes on (the draft, or the event validated from it): ``None`` drops it."""

_random = random.random


def where(function: str | None) -> str:
    """`` from <function>`` for messages about an event, or nothing."""
    return f" from {function}" if function else ""


# --- where the steps count -------------------------------------------------------------
class Books:
    """Where the pipeline counts: the tracker's reporter and its deliberate drops.

    Errors (``invalid_event``, ``sender_error``, ...) go through the reporter: counted,
    logged, reported to ``on_error``, raised under ``strict``. Deliberate drops
    (``sampled_out``, ``before_send``) are counted here and are not errors.
    """

    __slots__ = ("_filtered", "_lock", "debug", "hooked", "reporter", "strict", "tell")

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self.strict = False
        self.debug = False
        # Outcomes of drops made here: the sender's way to run the hooks (None: it runs
        # none), and whether the tracker has an on_outcome hook (an item may have its own).
        self.tell: Tell | None = None
        self.hooked = False
        self._filtered: dict[str, int] = {}
        self._lock = threading.Lock()

    def drop(
        self,
        reason: str,
        message: str,
        *,
        function: str | None = None,
        exc: BaseException | None = None,
        about: Event | EventDraft | OrderDraft | Unsent | None = None,
    ) -> None:
        """Count, log and report a dropped event; raise it under ``strict``.

        With ``about`` (the item, or what it would have been), its outcome goes to the
        ``on_outcome`` hooks too, through the sender (on its thread), before the raise.

        Raises:
            TrackingError: Under ``strict``.
        """
        error = self.reporter.drop(reason, message, function=function, exc_info=exc)
        tell = self.tell
        if tell is not None and about is not None:
            hook = own_hook(about)
            if hook is not None or self.hooked:  # no hook: no outcome built
                tell(dropped_outcome(about, reason, message, function), hook)
        if self.strict:
            raise error

    def filter(self, reason: str, message: str) -> None:
        """Count a deliberate drop (not an error: neither logged as one nor reported)."""
        with self._lock:
            self._filtered[reason] = self._filtered.get(reason, 0) + 1
        if self.debug:
            logger.info("gbtrack: %s", message)

    def filtered(self) -> Stats | None:
        """The deliberate drops as :class:`Stats`, or ``None`` when there were none."""
        if not self._filtered:
            return None
        with self._lock:
            return Stats(dropped=dict(self._filtered))

    def send_failed(self, draft: EventDraft, sender: object, exc: Exception) -> None:
        """Drop ``draft`` because handing it to ``sender`` raised (``sender_error``)."""
        self.drop(
            "sender_error",
            f"event {draft.name!r}{where(draft.function)}: "
            + (
                f"{type(sender).__name__}.send raised {type(exc).__name__}"
                if sender is not None
                else f"creating the default sender raised {type(exc).__name__}: {exc}"
            ),
            function=draft.function,
            exc=exc,
            about=draft,
        )


# --- the compiled route ------------------------------------------------------------------
@dataclass(frozen=True)
class Route:
    """What one draft goes through, compiled by :func:`compile_route`.

    Attributes:
        steps: The steps on the draft, in order (plan check, sampling).
        to_sender: The rest of the way to the sender (validation, hook, debug line, send).
        to_binding: The way into an open ``gbtrack.transaction()`` binding of the owner.
        owner: The tracker a binding must bind.
        gate: The fast entry when there is nothing to do but hand the draft on (then
            ``to_sender`` is the gate too); ``None`` otherwise.
        fields_gate: ``gate`` for a draft's fields as a plain tuple: the sender's own
            (``SenderTraits.fields_gate``), else one that makes the draft, then calls
            ``gate``; ``None`` with ``gate``.
        names: The names of every step of the way to the sender, for tests and debugging.
        run: The whole way, one function: ``run(draft)`` is ``False`` when the draft was
            dropped (counted).
    """

    steps: tuple[DraftStep, ...]
    to_sender: Callable[[EventDraft], object]
    to_binding: Callable[[EventDraft, TransactionBinding], bool]
    owner: object
    gate: Gate | None
    names: tuple[str, ...]
    fields_gate: FieldsGate | None = None
    run: Callable[[EventDraft], bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "run", _runner(self))


def _runner(route: Route) -> Callable[[EventDraft], bool]:
    """The route as one function: the steps, then the binding or the sender."""
    steps, to_sender, to_binding, owner = (
        route.steps,
        route.to_sender,
        route.to_binding,
        route.owner,
    )

    def run(draft: EventDraft) -> bool:
        for step in steps:
            if not step(draft):
                return False
        if _bindings[0]:  # gbtrack.transaction(): a plain global test while none is open
            bound = _bound_transaction.get()
            if bound is not None and bound.binds(owner):
                return to_binding(draft, bound)
        return bool(to_sender(draft))

    return run


def compile_route(
    settings: TrackerSettings,
    sender: Sender | None,
    traits: SenderTraits,
    books: Books,
    *,
    owner: object,
    first_use: Callable[[EventDraft], object],
    warnings: LoopWarnings,
) -> Route:
    """Compile the pipeline of one configuration: the one place that decides it.

    Args:
        settings: The tracker's settings.
        sender: The sender, or ``None`` before the first use creates the default one.
        traits: What ``sender`` declared when it was attached.
        books: Where the steps count.
        owner: The tracker (what a transaction binding binds).
        first_use: The way to the sender while there is none yet: creates it, then
            takes the draft the rest of the way.
        warnings: The tracker's warned-once event-loop warnings.

    Returns:
        The route; its ``gate`` is set when nothing but the sender has work to do.
    """
    steps: list[DraftStep] = []
    if settings.strict_plan:
        steps.append(_plan_check(books))
    if settings.sample:
        steps.append(_sampler(settings.sample, books))
    to_binding = _binding_leg(settings, books)
    if sender is None:
        names = (*_names(steps), "create the default sender")
        return Route(tuple(steps), first_use, to_binding, owner, None, names)

    hook = None if traits.applies_before_send else settings.before_send
    item_steps: list[ItemStep] = []
    if traits.blocking:
        item_steps.append(_blocking_warning(sender, warnings))
    if settings.strict or hook is not None or not traits.takes_drafts:
        # Validated here: a sender that takes drafts still gets the draft, unless the
        # hook runs here and changes the event.
        keep_draft = traits.takes_drafts and hook is None
        item_steps.append(_validator(settings.limits, books, keep_draft=keep_draft))
    if hook is not None:
        item_steps.append(_inline_hook(hook, settings.limits, books))
    if settings.debug:
        item_steps.append(_debug_line(type(sender).__name__))
    leg = _sender_leg(tuple(item_steps), sender, books)
    names = (*_names(steps), *_names(item_steps), "send")
    # The pass-through rule, in one place: nothing to do but hand the draft on.
    if steps or item_steps or _bindings[0]:
        return Route(tuple(steps), leg, to_binding, owner, None, names)
    if traits.gate is not None and traits.fields_gate is not None:
        return Route((), traits.gate, to_binding, owner, traits.gate, names, traits.fields_gate)
    gate = traits.gate if traits.gate is not None else leg
    return Route((), gate, to_binding, owner, gate, names, _drafting(gate))


def _drafting(gate: Gate) -> FieldsGate:
    """``gate`` for a draft's fields: makes the ``EventDraft`` (one C call), then calls it."""

    def fields_gate(fields: tuple[object, ...]) -> object:
        return gate(as_draft(fields))

    return fields_gate


def _names(steps: list[DraftStep] | list[ItemStep]) -> tuple[str, ...]:
    return tuple(step.__name__.replace("_", " ") for step in steps)


def _sender_leg(steps: tuple[ItemStep, ...], sender: Sender, books: Books) -> DraftStep:
    """Run ``steps`` on a draft, stopping at the first that drops it, then ``send()``."""
    send = sender.send
    count_sent = books.reporter.count_sent

    def send_item(draft: EventDraft, item: Item) -> bool:
        try:
            send(item)  # type: ignore[arg-type]  # a draft only to a sender that takes drafts
        except TrackingError:
            raise  # strict mode's own error
        except Exception as exc:
            books.send_failed(draft, sender, exc)
            return False
        count_sent()
        return True

    if not steps:  # the same as send_item(draft, draft), one call shorter

        def send_draft(draft: EventDraft) -> bool:
            try:
                send(draft)  # type: ignore[arg-type]  # no step: a sender that takes drafts
            except TrackingError:
                raise
            except Exception as exc:
                books.send_failed(draft, sender, exc)
                return False
            count_sent()
            return True

        return send_draft

    def leg(draft: EventDraft) -> bool:
        item: Item | None = draft
        for step in steps:
            item = step(draft, item)  # type: ignore[arg-type]  # not None: checked below
            if item is None:
                return False
        return send_item(draft, item)  # type: ignore[arg-type]  # the loop ran: not None

    return leg


# --- the steps ----------------------------------------------------------------------------
def _plan_check(books: Books) -> DraftStep:
    def plan_check(draft: EventDraft) -> bool:
        problem = check_planned(draft.name, strict=True)
        if problem is None:
            return True
        books.drop(
            "unplanned_event",
            f"event {draft.name!r}{where(draft.function)}: {problem}",
            function=draft.function,
            about=draft,
        )
        return False

    return plan_check


def _sampler(rates: Mapping[str, float], books: Books) -> DraftStep:
    rate_of = dict(rates).get

    def sample(draft: EventDraft) -> bool:
        rate = rate_of(draft.name)
        if rate is None or _random() < rate:
            return True
        books.filter("sampled_out", f"event {draft.name!r} sampled out (rate {rate})")
        return False

    return sample


def _validator(limits: Limits, books: Books, *, keep_draft: bool) -> ItemStep:
    def validate(draft: EventDraft, item: Item) -> Item | None:
        try:
            event = draft.to_event(limits)
        except InvalidEventError as exc:
            # to_event's message already names the event and the function
            books.drop("invalid_event", str(exc), function=draft.function, exc=exc, about=draft)
            return None
        return draft if keep_draft else event

    return validate


def _inline_hook(hook: BeforeSend, limits: Limits, books: Books) -> ItemStep:
    def before_send(draft: EventDraft, item: Item) -> Item | None:
        return run_before_send(hook, item, draft.function, limits, books, inline=True)  # type: ignore[arg-type]  # validated first

    return before_send


def _debug_line(target: str) -> ItemStep:
    def debug_log(draft: EventDraft, item: Item) -> Item:
        log_event(item, target)
        return item

    return debug_log


def _blocking_warning(sender: Sender, warnings: LoopWarnings) -> ItemStep:
    def blocking_check(draft: EventDraft, item: Item) -> Item:
        warnings.blocking_sender(sender)
        return item

    return blocking_check


def _binding_leg(
    settings: TrackerSettings, books: Books
) -> Callable[[EventDraft, TransactionBinding], bool]:
    """Validate a draft and INSERT it in the transaction ``gbtrack.transaction()`` bound.

    The tracker's limits, ``before_send`` and debug line apply here as for a sender that
    takes events; a failed INSERT is an ``outbox_error`` drop (raised under ``strict``),
    and the business transaction goes on.
    """
    steps: list[ItemStep] = [_validator(settings.limits, books, keep_draft=False)]
    if settings.before_send is not None:
        steps.append(_inline_hook(settings.before_send, settings.limits, books))
    if settings.debug:
        steps.append(_debug_line(TransactionBinding.__name__))
    count_sent = books.reporter.count_sent

    def to_binding(draft: EventDraft, bound: TransactionBinding) -> bool:
        item: Item | None = draft
        for step in steps:
            item = step(draft, item)  # type: ignore[arg-type]  # not None: checked below
            if item is None:
                return False
        event: Event = item  # type: ignore[assignment]  # validated: an Event
        try:
            bound.insert(event)
        except Exception as exc:
            books.drop(
                "outbox_error",
                f"event {draft.name!r}"
                + (f" in {draft.function}" if draft.function else "")
                + f": {insert_failed(exc)}",
                function=draft.function,
                exc=exc,
                about=draft,
            )
            return False
        if event.session_token is not None:
            books.reporter.count("session_token_stripped")  # tokens are never stored
        count_sent()
        return True

    return to_binding


# --- before_send ---------------------------------------------------------------------------
def run_before_send(
    hook: BeforeSend,
    event: Event,
    function: str | None,
    limits: Limits,
    books: Books,
    *,
    inline: bool,
) -> Event | None:
    """Apply the hook; a drop, a failure or an invalid change never reaches the caller.

    Inline (on the caller's thread) a failure is a drop raised under ``strict``; in a
    sender's worker it is counted and reported, never raised.
    """
    said = f"event {event.name!r}{where(function)}"

    def failed(reason: str, message: str, exc: Exception | None) -> None:
        if inline:
            books.drop(reason, message, function=function, exc=exc, about=event)  # strict raises
        else:
            books.reporter.drop(reason, message, function=function, exc_info=exc)

    try:
        result: object = hook(event)
    except Exception as exc:
        message = f"{said}: the before_send hook raised {type(exc).__name__}"
        failed("before_send_error", message, exc)
        return None
    if result is None:
        books.filter("before_send", f"{said} dropped by before_send")
        return None
    if result is event:
        return event
    if not isinstance(result, Event):
        message = (
            f"{said}: before_send returned a {type(result).__name__}, not a gbtrack.Event or None"
        )
        failed("before_send_error", message, None)
        return None
    try:  # a changed copy (model_copy does not validate): validate it again
        return Event.model_validate(dict(result), context={"limits": limits})
    except ValueError as exc:
        failed("invalid_event", f"{said}: the event before_send returned is invalid: {exc}", exc)
        return None


def batch_hook(hook: BeforeSend, limits: Limits, books: Books) -> BatchHook:
    """The hook as a sender applies it, in its worker: the events kept, in order.

    Failures are counted and reported like inline ones, but never raised (there is no
    caller to raise into).
    """

    def before_send(events: list[Event]) -> list[Event]:
        kept = []
        for event in events:
            hooked = run_before_send(hook, event, None, limits, books, inline=False)
            if hooked is not None:
                kept.append(hooked)
        return kept

    return before_send


# --- the default sender ------------------------------------------------------------------
_NO_DELIVERY_WARNING = (
    "gbtrack: no Gameball delivery is configured, so events are only logged on the "
    "'gbtrack.events' logger at INFO (see them with logging.basicConfig(level=logging.INFO)). "
    "Call gbtrack.configure(api_key=...) or set GAMEBALL_API_KEY to deliver them."
)


def default_sender() -> Sender:
    """The sender of a tracker given none, made on first use.

    A :class:`~gbtrack.senders.BackgroundSender` from the environment when
    ``GAMEBALL_API_KEY`` is set; otherwise a :class:`~gbtrack.LoggingSender`, with a
    one-time warning saying how to configure delivery.

    Raises:
        ConfigurationError: If the environment's delivery options are invalid.
    """
    if os.environ.get("GAMEBALL_API_KEY"):
        return sender_from_config()
    warn_user(_NO_DELIVERY_WARNING)
    return LoggingSender()


# --- event-loop warnings -----------------------------------------------------------------
def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class LoopWarnings:
    """A tracker's warnings about blocking a running event loop, each given once."""

    def __init__(self) -> None:
        # What blocked a running event loop: "flush", "close", or the id of a sender.
        self._warned: set[object] = set()

    def blocking_call(self, method: str, timeout: float | None) -> None:
        """Warn once per method when flush()/close() would block a running event loop."""
        if self._first(method):
            wait = "with no time limit" if timeout is None else f"for up to {timeout:g} s"
            warn_user(
                f"gbtrack: {method}() blocks {wait} until the sender settles, and it is being "
                "called on a running asyncio event loop, which it stalls; run it in a thread: "
                f"await asyncio.to_thread(gbtrack.{method}, {5 if timeout is None else timeout:g})"
            )

    def blocking_sender(self, sender: Sender) -> None:
        """Warn once per sender when a blocking sender is used on an event loop."""
        if self._first(id(sender)):
            warn_user(
                f"gbtrack: {type(sender).__name__}.send() blocks until Gameball answers, and it "
                "is being called on a running asyncio event loop, which it stalls; use the "
                "default BackgroundSender (gbtrack.configure(api_key=...)) in async applications"
            )

    def _first(self, what: object) -> bool:
        """Whether ``what`` blocks a running event loop for the first time (then noted)."""
        if what in self._warned or not _on_event_loop():
            return False
        self._warned.add(what)
        return True


# --- debug logging -----------------------------------------------------------------------
def log_event(item: Item, target: str) -> None:
    """The debug line of one event: name, customer, metadata keys; no values, no token."""
    keys = sorted(item.metadata)
    logger.info(
        "gbtrack: event %r for customer %r%s%s%s, metadata keys [%s] -> %s",
        item.name,
        item.customer_id,
        f", email {mask_email(item.email)}" if item.email else "",
        f", mobile {mask_mobile(item.mobile)}" if item.mobile else "",
        ", with a session token" if item.session_token is not None else "",
        ", ".join(keys),
        target,
    )


_debugging: weakref.WeakSet[object] = weakref.WeakSet()  # trackers with debug on
_debug_handler: logging.Handler | None = None
_saved_levels: list[int] = []  # the loggers' levels before debug turned them up
_DEBUG_LOGGERS = (logger, logging.getLogger("gbtrack.gameball"))


class _AsInfo(logging.Filter):
    """Under ``debug=True``: the client's per-request DEBUG lines are logged at INFO.

    So an application whose handlers stop at INFO still sees them.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.INFO:
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


_as_info = _AsInfo()


def debug_logging(owner: object, on: bool) -> None:
    """Turn the debug log lines on for ``owner`` (or off, when no owner wants them any more).

    The ``gbtrack`` logger goes to INFO and ``gbtrack.gameball``'s per-request lines
    (method, path, status, outcome, duration; no body, no headers) are logged at INFO. When
    nothing handles the ``gbtrack`` logger's lines, a stderr handler is added, as
    sentry-sdk's ``debug=True`` does, and removed when debug is turned off again.
    """
    global _debug_handler
    if on:
        _debugging.add(owner)
    else:
        _debugging.discard(owner)
    if _debugging and not _saved_levels:
        _saved_levels.extend(log.level for log in _DEBUG_LOGGERS)
        logger.setLevel(logging.INFO)
        _DEBUG_LOGGERS[1].setLevel(logging.DEBUG)
        _DEBUG_LOGGERS[1].addFilter(_as_info)
        if not logger.hasHandlers():
            _debug_handler = logging.StreamHandler()
            _debug_handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
            logger.addHandler(_debug_handler)
    elif not _debugging and _saved_levels:
        for log, level in zip(_DEBUG_LOGGERS, _saved_levels, strict=True):
            log.setLevel(level)
        _DEBUG_LOGGERS[1].removeFilter(_as_info)
        _saved_levels.clear()
        if _debug_handler is not None:
            logger.removeHandler(_debug_handler)
            _debug_handler = None
