"""``span()``: an event built by hand inside a block, sent when the block ends.

Values are given directly (no path expressions): the block sets metadata and identity
on the handle as it learns them, and the event is sent on exit according to ``on``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Literal

from pydantic import SecretStr

from gbtrack import _tracker
from gbtrack._errors import GbtrackError, InvalidEventError
from gbtrack._types import UNSET, Unset

if TYPE_CHECKING:
    from gbtrack._event import Event
    from gbtrack._tracker import Tracker

__all__ = ["Span", "SpanContext", "span"]


class Span:
    """The handle a :func:`span` block receives: collect metadata and identity.

    Attributes:
        name: The event name.
        metadata: The metadata collected so far (raw; converted when sent).
        event: The event handed to the sender once the span ended and sent one.
    """

    __slots__ = (
        "_finished",
        "cancelled",
        "customer_id",
        "email",
        "event",
        "metadata",
        "mobile",
        "name",
        "session_token",
    )

    def __init__(
        self,
        name: str,
        *,
        customer_id: str | int | None,
        email: str | None,
        mobile: str | None,
        session_token: str | SecretStr | Unset | None,
        metadata: Mapping[str, object] | None,
    ) -> None:
        self.name = name
        self.customer_id = customer_id
        self.email = email
        self.mobile = mobile
        self.session_token = session_token
        self.metadata: dict[str, object] = dict(metadata or {})
        self.cancelled = False
        self.event: Event | None = None
        self._finished = False

    def _check_open(self) -> None:
        if self._finished:
            raise GbtrackError(f"span {self.name!r} has already ended; it cannot be changed")

    def set(self, key: str, value: object) -> None:
        """Set metadata ``key`` to ``value`` (``None`` leaves the key out)."""
        self._check_open()
        self.metadata[key] = value

    def __setitem__(self, key: str, value: object) -> None:
        self.set(key, value)

    def update(self, values: Mapping[str, object] | None = None, /, **kw: object) -> None:
        """Set several metadata keys, from a mapping and/or keyword arguments."""
        self._check_open()
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
        self._check_open()
        if customer_id is not None:
            self.customer_id = customer_id
        if email is not None:
            self.email = email
        if mobile is not None:
            self.mobile = mobile
        if not isinstance(session_token, Unset):
            self.session_token = session_token

    def cancel(self) -> None:
        """Do not send this event when the block ends."""
        self.cancelled = True

    def __repr__(self) -> str:
        state = "ended" if self._finished else "open"
        return f"<Span {self.name!r} {state}{' cancelled' if self.cancelled else ''}>"


class SpanContext:
    """The context manager :func:`span` returns; usable once, with ``with`` or ``async with``."""

    __slots__ = ("_handle", "_initial", "_on", "_tracker", "_used", "name")

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
        if on not in ("success", "error", "always"):
            raise GbtrackError(f"span({name!r}): on must be 'success', 'error' or 'always'")
        self.name = name
        self._on = on
        self._tracker = tracker
        self._initial = (customer_id, email, mobile, session_token, metadata)
        self._handle: Span | None = None
        self._used = False

    def __enter__(self) -> Span:
        if self._used:
            raise GbtrackError(
                f"span {self.name!r} was already used; create a new span() for each block"
            )
        self._used = True
        customer_id, email, mobile, token, metadata = self._initial
        self._handle = Span(
            self.name,
            customer_id=customer_id,
            email=email,
            mobile=mobile,
            session_token=token,
            metadata=metadata,
        )
        return self._handle

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        handle = self._handle
        assert handle is not None, "span exited without being entered"
        handle._finished = True
        failed = exc is not None
        if failed and not isinstance(exc, Exception):
            return  # KeyboardInterrupt, cancellation: neither success nor error
        if handle.cancelled:
            return
        if (self._on == "success" and failed) or (self._on == "error" and not failed):
            return
        tracker = self._tracker or _tracker._default
        if not tracker.enabled:
            return
        from gbtrack._event import normalize_metadata

        try:
            metadata = normalize_metadata(handle.metadata)
        except InvalidEventError as exc_:
            tracker._drop("invalid_event", f"span {self.name!r}: {exc_}", exc=exc_)
            return
        handle.event = tracker._submit(
            self.name,
            handle.customer_id,
            handle.email,
            handle.mobile,
            handle.session_token,
            metadata,
            function=None,
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
        return f"<SpanContext {self.name!r} on={self._on!r}{' used' if self._used else ''}>"


def span(
    name: str,
    *,
    customer_id: str | int | None = None,
    email: str | None = None,
    mobile: str | None = None,
    session_token: str | SecretStr | Unset | None = UNSET,
    metadata: Mapping[str, object] | None = None,
    on: Literal["success", "error", "always"] = "success",
    tracker: Tracker | None = None,
) -> SpanContext:
    """Open a manual event: a context manager yielding a :class:`Span` handle.

    The event is sent when the block ends: after a normal exit with ``on="success"``
    (the default), after an exception with ``"error"`` (the exception propagates
    untouched), or both with ``"always"``; never after :meth:`Span.cancel`, never twice.
    Without a ``customer_id`` the ambient :func:`gbtrack.identify` one is used.

    Args:
        name: The event name.
        customer_id: The customer (may also be set later with ``handle.identify``).
        email: Optional email.
        mobile: Optional mobile.
        session_token: Left out: the ambient token; ``None``: no token.
        metadata: Initial metadata values.
        on: ``"success"``, ``"error"`` or ``"always"``.
        tracker: The tracker; ``None`` uses the default tracker at exit.

    Returns:
        A :class:`SpanContext`, usable once with ``with`` or ``async with``.

    Example:
        >>> from gbtrack import span
        >>> with span("cart_checked", customer_id="c-1") as s:
        ...     s["items"] = 3
    """
    return SpanContext(
        name,
        customer_id=customer_id,
        email=email,
        mobile=mobile,
        session_token=session_token,
        metadata=metadata,
        on=on,
        tracker=tracker,
    )
