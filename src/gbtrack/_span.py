"""``span()``: an event built by hand inside a block, sent when the block ends.

Values are given directly (no path expressions): the block sets metadata and identity
on the handle as it learns them, and the event is sent on exit according to ``on``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Final, Literal

from pydantic import SecretStr

from gbtrack._context import ambient
from gbtrack._errors import GbtrackError
from gbtrack._event import EventDraft
from gbtrack._state import active
from gbtrack._types import UNSET, Unset

if TYPE_CHECKING:
    from gbtrack._state import CallSink as Tracker

_new = tuple.__new__
_Draft = EventDraft
_now = time.time
_PLAIN: Final = frozenset({str, int, float, bool, type(None)})  # sent as they are
# The last metadata keys a span found plain (all non-empty str). A block sets the same
# keys each time it runs: an equal tuple is that one (one comparison, no check per
# key), and the drafts share it, which the delivery worker checks and encodes once per
# run of equal key tuples (check_drafts, wire_json).
_keys: list[tuple[str, ...]] = [()]

__all__ = ["Span", "SpanContext", "span", "tracker_span"]


class Span:
    """A manual event: ``span(...)`` builds one; it is its own context manager and handle.

    ``with span(...) as s`` gives the same object: collect metadata and identity on it
    as the block learns them. The event is sent when the block ends: after a normal exit
    with ``on="success"`` (the default), after an exception with ``"error"`` (the
    exception propagates untouched), or both with ``"always"``; never after
    :meth:`cancel`, never twice. Without a ``customer_id`` the ambient
    :func:`gbtrack.identify` one is used. Usable once, with ``with`` or ``async with``.

    Args:
        name: The event name.
        customer_id: The customer (may also be set later with :meth:`identify`).
        email: Optional email.
        mobile: Optional mobile.
        session_token: Left out: the ambient token; ``None``: no token.
        metadata: Initial metadata values.
        on: ``"success"``, ``"error"`` or ``"always"``.
        tracker: The tracker; ``None`` uses the default tracker at exit.

    Raises:
        GbtrackError: For an invalid ``on``; when entered twice; when changed after
            the block ended.

    Attributes:
        name: The event name.
        metadata: The metadata collected so far (raw; converted when sent).
        customer_id: The customer id given so far (``None``: the ambient one).
        email: The email given so far.
        mobile: The mobile given so far.
        session_token: The session token given so far (``UNSET``: the ambient one).
        cancelled: Whether :meth:`cancel` was called.
        event: After the block, the :class:`~gbtrack.EventDraft` handed to the tracker
            (``None`` when nothing was sent).
    """

    __slots__ = (
        "_broken",
        "_finished",
        "_on",
        "_tracker",
        "_used",
        "cancelled",
        "customer_id",
        "email",
        "event",
        "metadata",
        "mobile",
        "name",
        "session_token",
    )

    name: str
    customer_id: str | int | None
    email: str | None
    mobile: str | None
    session_token: str | SecretStr | Unset | None
    metadata: dict[str, object]
    cancelled: bool
    event: EventDraft | None
    _on: str
    _tracker: Tracker | None
    _finished: bool
    _used: bool
    _broken: Exception | None

    def __init__(
        self,
        name: str,
        *,
        customer_id: str | int | None = None,
        email: str | None = None,
        mobile: str | None = None,
        session_token: str | SecretStr | Unset | None = UNSET,
        metadata: Mapping[str, object] | None = None,
        on: Literal["success", "error", "always"] = "success",
        tracker: Tracker | None = None,
    ) -> None:
        # Filled inline rather than through a shared helper: opening a span is the hot
        # path (tracker_span below fills it the same way).
        if on != "success" and on != "error" and on != "always":
            raise _bad_on(name)
        self.name = name
        self.customer_id = customer_id
        self.email = email
        self.mobile = mobile
        self.session_token = session_token
        self._on = on
        self._tracker = tracker
        self.cancelled = self._finished = self._used = False
        self.event = self._broken = None
        self.metadata = {}
        if metadata is not None:
            _fill(self, metadata)

    def _closed(self) -> GbtrackError:
        return GbtrackError(f"span {self.name!r} has already ended; it cannot be changed")

    def set(self, key: str, value: object) -> None:
        """Set metadata ``key`` to ``value`` (``None`` leaves the key out)."""
        if self._finished:
            raise self._closed()
        self.metadata[key] = value

    def __setitem__(self, key: str, value: object) -> None:
        if self._finished:
            raise self._closed()
        self.metadata[key] = value

    def update(self, values: Mapping[str, object] | None = None, /, **kw: object) -> None:
        """Set several metadata keys, from a mapping and/or keyword arguments."""
        if self._finished:
            raise self._closed()
        if values:
            self.metadata.update(values)
        self.metadata.update(kw)

    def identify(
        self,
        customer_id: str | int | None = None,
        *,
        email: str | None = None,
        mobile: str | None = None,
        session_token: str | SecretStr | Unset | None = UNSET,
    ) -> None:
        """Set the event's identity; arguments left out keep their current value."""
        if self._finished:
            raise self._closed()
        if customer_id is not None:
            self.customer_id = customer_id
        if email is not None:
            self.email = email
        if mobile is not None:
            self.mobile = mobile
        if session_token is not UNSET:  # `is`: isinstance() may read a hostile __class__
            self.session_token = session_token

    def cancel(self) -> None:
        """Do not send this event when the block ends."""
        self.cancelled = True

    def __enter__(self) -> Span:
        if self._used:
            raise GbtrackError(
                f"span {self.name!r} was already used; create a new span() for each block"
            )
        self._used = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._finished = True
        if exc is None:
            if self._on == "error":
                return
        elif not isinstance(exc, Exception) or self._on == "success":
            return  # KeyboardInterrupt, cancellation: neither success nor error
        if self.cancelled:
            return
        tracker = self._tracker or active.tracker
        if not tracker.enabled:
            return
        gate = tracker.gate
        customer_id = self.customer_id
        metadata = self.metadata
        # The gate open and the values plain: the draft is built here, as tracker.record
        # would build it; anything else goes through record. Each value is loaded once.
        if (
            gate is not None
            and type(customer_id) is str
            and type(metadata) is dict
            and self._broken is None
            and customer_id.strip()
            and ((email := self.email) is None or (type(email) is str and email.strip()))
            and ((mobile := self.mobile) is None or (type(mobile) is str and mobile.strip()))
            and type(name := self.name) is str
            and ((token := self.session_token) is UNSET or token is None)
            and ambient()[0] != customer_id  # the ambient identity does not complete it
        ):
            values = tuple(metadata.values())
            for value in values:
                if type(value) not in _PLAIN:
                    break
            else:
                keys = tuple(metadata)
                last = _keys[0]
                try:
                    same = keys == last
                except Exception:  # a hostile key's __eq__: the checks below refuse it
                    same = False
                if same:
                    keys = last  # the same keys as the last plain ones: that tuple, shared
                else:
                    for key in keys:
                        if type(key) is not str or not key:
                            break
                    else:
                        _keys[0] = keys
                        same = True
                if same:
                    draft: EventDraft = _new(
                        _Draft, (name, customer_id, email, mobile, None, keys, values, None, _now())
                    )
                    self.event = draft if gate(draft) else None
                    return
        if self._broken is not None:
            tracker.drop(
                "resolver_error",
                f"span {self.name!r}: reading its metadata raised {type(self._broken).__name__}",
                exc=self._broken,
                about=("event", self.name, None),
            )
        else:
            self.event = tracker.record(
                self.name,
                self.customer_id,
                self.email,
                self.mobile,
                self.session_token,
                self.metadata,
                None,
            )

    async def __aenter__(self) -> Span:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __repr__(self) -> str:
        state = "ended" if self._finished else "open"
        return f"<Span {self.name!r} {state}{' cancelled' if self.cancelled else ''}>"


def _bad_on(name: str) -> GbtrackError:
    return GbtrackError(f"span({name!r}): on must be 'success', 'error' or 'always'")


def _fill(span: Span, metadata: Mapping[str, object]) -> None:
    """The initial metadata; a hostile mapping is counted when the span ends."""
    try:
        span.metadata.update(metadata)
    except Exception as exc:
        span._broken = exc


_alloc = object.__new__


def tracker_span(
    self: Tracker,
    name: str,
    *,
    customer_id: str | int | None = None,
    email: str | None = None,
    mobile: str | None = None,
    session_token: str | SecretStr | Unset | None = UNSET,
    metadata: Mapping[str, object] | None = None,
    on: Literal["success", "error", "always"] = "success",
) -> Span:
    """Open a manual event on this tracker; see :class:`gbtrack.Span`.

    ``Span(name, ..., tracker=self)`` in one call: the same span as the class makes,
    without passing every keyword on a second time (about a third of what opening a
    span costs). It is :meth:`gbtrack.Tracker.span`.
    """
    if on != "success" and on != "error" and on != "always":
        raise _bad_on(name)
    span: Span = _alloc(Span)
    span.name = name
    span.customer_id = customer_id
    span.email = email
    span.mobile = mobile
    span.session_token = session_token
    span._on = on
    span._tracker = self
    span.cancelled = span._finished = span._used = False
    span.event = span._broken = None
    span.metadata = {}
    if metadata is not None:
        _fill(span, metadata)
    return span


SpanContext = Span
"""The type :func:`span` returns: since 0.2.0 the same object as its :class:`Span` handle."""


span = Span
"""Open a manual event: ``span(name, ...)`` is the :class:`Span` itself (see there).

Examples:
    >>> from gbtrack import span
    >>> with span("cart_checked", customer_id="c-1") as s:
    ...     s["items"] = 3
"""
