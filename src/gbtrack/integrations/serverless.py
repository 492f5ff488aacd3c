"""AWS Lambda-style handlers: flush, bounded, at the end of every invocation.

Between invocations a serverless runtime freezes the process, background threads
included, and may never thaw it: events still queued in the
:class:`~gbtrack.senders.BackgroundSender` would wait, or be lost with the instance.
:func:`serverless_function` wraps a handler so that each invocation ends with a
flush, bounded by ``timeout`` and by the time the invocation has left (Lambda's
``context.get_remaining_time_in_millis()``), whether the handler returned or raised.
Nothing of it reaches the handler's result: a flush that fails or runs out of time is
logged on the ``gbtrack`` logger and the events stay counted in ``tracker.stats``.

Standard library only: it works for any ``handler(event, context)`` (AWS Lambda,
Scaleway, OpenFaaS, ...) and for ``async def`` handlers.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, overload

from gbtrack._context import identify
from gbtrack._report import logger
from gbtrack._tracker import Tracker, get_tracker
from gbtrack.integrations._web import IdentityLike, identity_from

__all__ = ["serverless_function"]

F = TypeVar("F", bound=Callable[..., Any])

_MARGIN = 0.5  # seconds left to the runtime after the flush


@overload
def serverless_function(handler: F, /) -> F: ...


@overload
def serverless_function(
    *,
    timeout: float = 2.0,
    tracker: Tracker | None = None,
    identity: Callable[[Any, Any], IdentityLike] | None = None,
) -> Callable[[F], F]: ...


def serverless_function(
    handler: F | None = None,
    /,
    *,
    timeout: float = 2.0,
    tracker: Tracker | None = None,
    identity: Callable[[Any, Any], IdentityLike] | None = None,
) -> F | Callable[[F], F]:
    """Decorate a serverless handler so that each invocation ends with a bounded flush.

    Use it bare (``@serverless_function``) or with options.

    Args:
        handler: The handler, ``handler(event, context)``, sync or ``async def``.
        timeout: The most seconds the flush may take; less when the invocation's
            remaining time (``context.get_remaining_time_in_millis()``, when the context
            has it) minus half a second is shorter.
        tracker: The tracker to flush (the default tracker, looked up at each
            invocation, when ``None``).
        identity: ``identity(event, context)``: the invocation runs inside
            :func:`gbtrack.identify` for the customer it returns (e.g. a Cognito claim):
            any value every integration's identity function may return (``None``, a
            customer id, a mapping of :class:`~gbtrack.Identity`'s fields, an
            :class:`~gbtrack.Identity`; see
            :data:`gbtrack.integrations.asgi.IdentityLike`). If it raises or returns
            something else, the invocation runs without an identity (logged).

    Returns:
        The wrapped handler (or a decorator, without ``handler``).
    """
    if timeout < 0:
        raise ValueError(f"timeout must be >= 0, got {timeout!r}")

    def decorate(func: F) -> F:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                try:
                    with _identity(identity, args):
                        return await func(*args, **kwargs)
                finally:
                    await asyncio.to_thread(_flush, tracker, timeout, args)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                with _identity(identity, args):
                    return func(*args, **kwargs)
            finally:
                _flush(tracker, timeout, args)

        return wrapper  # type: ignore[return-value]

    return decorate if handler is None else decorate(handler)


class _Nobody:
    """No identity: a do-nothing context manager."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NOBODY = _Nobody()


def _identity(
    identity: Callable[[Any, Any], IdentityLike] | None, args: tuple[Any, ...]
) -> identify | _Nobody:
    if identity is None:
        return _NOBODY
    event = args[0] if args else None
    context = args[1] if len(args) > 1 else None
    try:
        block = identity_from(identity(event, context))
        return _NOBODY if block is None else block
    except Exception as exc:
        logger.warning(
            "gbtrack: the identity function raised %s; the invocation runs without an identity",
            type(exc).__name__,
            exc_info=exc,
        )
        return _NOBODY


def _budget(timeout: float, args: tuple[Any, ...]) -> float:
    """The flush's time: ``timeout``, or less when the invocation is about to run out."""
    context = args[1] if len(args) > 1 else None
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if callable(remaining):
        try:
            left = float(remaining()) / 1000.0 - _MARGIN
        except Exception:  # a context of another shape: keep the timeout
            return timeout
        return max(0.0, min(timeout, left))
    return timeout


def _flush(tracker: Tracker | None, timeout: float, args: tuple[Any, ...]) -> None:
    target = tracker if tracker is not None else get_tracker()
    budget = _budget(timeout, args)
    try:
        ok = target.flush(budget)
    except Exception:  # pragma: no cover - flush never raises; the handler's result wins
        logger.exception("gbtrack: flushing at the end of the invocation failed")
        return
    if not ok:
        logger.warning(
            "gbtrack: at the end of the invocation, not every event was delivered within "
            "%.2f s (or some were dropped); see tracker.stats",
            budget,
        )
