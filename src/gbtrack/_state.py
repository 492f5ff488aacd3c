"""The state call sites share, below the tracker: the default tracker's holder and bindings.

``@track``, ``span()``, ``gbtrack.transaction()`` and the import checks read the default
tracker late (``active.tracker``) and open transaction bindings here, so none of them
imports :mod:`gbtrack._tracker`; the tracker imports them. What a call site may ask of a
tracker is :class:`CallSink`, the one contract between the two.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from gbtrack._event import EventDraft, Limits

__all__ = [
    "CallSink",
    "FieldsGate",
    "Gate",
    "active",
    "bind_transaction",
    "bindings_open",
    "bound_transaction",
    "on_bindings_change",
    "unbind_transaction",
]

Gate = Callable[["EventDraft"], object]
"""A tracker's fast entry: ``gate(draft)`` is the whole of ``submit(draft)``; never raises."""

FieldsGate = Callable[[tuple[Any, ...]], object]
"""The same entry for a draft's fields as a plain tuple (``tuple(draft)``: nine, or ten
with the draft's own outcome hook); the ``EventDraft`` is made by whoever takes it, off
the caller's thread where the sender can (the generated wrappers' way in)."""


class CallSink(Protocol):
    """What call sites (``@track``, ``span()``, ``emit()``) use of a tracker.

    ``gate`` is ``None`` whenever anything but "hand the draft to the sender" is
    configured (strict, a plan check, sampling, ``before_send`` on the caller's
    thread, debug, an open transaction binding, no sender yet); otherwise calling it is
    the whole of :meth:`submit`, counted, and never raises.
    """

    enabled: bool  # call sites test it first: a disabled tracker calls straight through
    gate: Gate | None
    fields_gate: FieldsGate | None  # ``gate`` for a draft's fields; ``None`` with it

    @property
    def strict(self) -> bool:
        """Whether tracking failures raise into callers."""

    @property
    def strict_plan(self) -> bool:
        """Whether only planned events are tracked."""

    @property
    def limits(self) -> Limits:
        """The limits events are validated against."""

    def submit(self, draft: EventDraft) -> bool:
        """Hand one draft on; ``False`` when it was dropped."""

    def record(
        self,
        name: str,
        customer_id: object,
        email: object,
        mobile: object,
        session_token: object,
        metadata: Mapping[str, object] | None,
        function: str | None,
    ) -> EventDraft | None:
        """Build a draft from values given by hand and submit it."""

    def drop(
        self,
        reason: str,
        message: str,
        *,
        function: str | None = None,
        exc: BaseException | None = None,
        about: Any = None,
    ) -> None:
        """Count, log and report a dropped event (``about``: the item); raise when strict."""

    def count(self, key: str) -> None:
        """Add one to counter ``key``."""

    def no_customer(self, name: str, function: str | None, about: Any = None) -> None:
        """Drop an event that has no customer id."""

    def missing(self, event: str, field: str, message: str) -> None:
        """Count a path that found nothing."""


class _Active:
    """Holds the default tracker; decorators read ``active.tracker`` at each call."""

    __slots__ = ("tracker",)

    tracker: Any  # a gbtrack.Tracker, set when gbtrack._tracker is imported


active = _Active()
"""The default tracker's holder (``active.tracker``), read late by decorators and spans."""


# gbtrack.transaction(): the binding of this context, and how many bindings are open in
# the whole process, so that submit() pays a global test, not a ContextVar lookup, while
# none is; trackers close their gates while any is open.
bound_transaction: ContextVar[Any] = ContextVar("gbtrack_transaction", default=None)
_open = [0]
_lock = threading.Lock()
on_bindings_change: list[Callable[[], None]] = []
"""Called (without arguments) when the first binding opens and when the last one closes."""


def bindings_open() -> int:
    """How many transaction bindings are open in the whole process."""
    return _open[0]


def bind_transaction(binding: object) -> Token[Any]:
    """Make ``binding`` the current context's transaction; for ``gbtrack.transaction()``."""
    token = bound_transaction.set(binding)
    with _lock:
        _open[0] += 1
        changed = _open[0] == 1
    if changed:
        for hook in on_bindings_change:
            hook()
    return token


def unbind_transaction(token: Token[Any]) -> None:
    """Undo :func:`bind_transaction` (the previous binding, if any, is current again)."""
    with _lock:
        _open[0] -= 1
        changed = _open[0] == 0
    bound_transaction.reset(token)
    if changed:
        for hook in on_bindings_change:
            hook()
