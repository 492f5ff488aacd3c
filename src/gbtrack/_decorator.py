"""``@track``: one wrapt wrapper per decorated function, generated for its plan.

All the work happens at decoration time: :mod:`gbtrack._plan` compiles the arguments
(signature read once, expressions compiled, roots checked) and :mod:`gbtrack._codegen`
writes the wrapper for the function's shape (sync, coroutine, generator, async
generator). At call time the wrapper looks the tracker up late, reads the values
straight-line when it can and hands the event on; nothing raises into business code
unless the tracker is ``strict``.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, Protocol, TypeVar, overload

import wrapt
from pydantic import SecretStr

from gbtrack._call import Call
from gbtrack._codegen import build_wrapper, shape_of
from gbtrack._errors import ConfigurationError, ExpressionError
from gbtrack._outcomes import OutcomeHook
from gbtrack._plan import compile_plan
from gbtrack._types import UNSET, Unset

if TYPE_CHECKING:
    from gbtrack._state import CallSink as Tracker

__all__ = ["On", "track"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

On = Literal["success", "error", "always"]
"""When an event is sent: after a normal return, after an exception, or both."""

Expr = str | Callable[[Call], object]
"""An expression: a path string, a :func:`literal`, or a callable resolver."""


class _Decorator(Protocol):
    """What ``track(...)`` returns: keeps the decorated callable's type."""

    @overload
    def __call__(self, func: staticmethod[P, R], /) -> staticmethod[P, R]: ...
    @overload
    def __call__(self, func: classmethod[T, P, R], /) -> classmethod[T, P, R]: ...
    @overload
    def __call__(self, func: Callable[P, R], /) -> Callable[P, R]: ...


_OWN_MODULES = frozenset({__name__, "gbtrack._tracker"})


def _call_site() -> tuple[str, int] | None:
    """The file and line of the ``track(...)`` call, for the event catalog.

    Read from the caller's frame (skipping ``Tracker.track``): the line of the
    ``@track(...)`` decorator itself, which tells stacked decorators apart where the
    function's code object would give one line for all. ``sys._getframe`` is
    CPython's (PyPy has it too); elsewhere the catalog falls back to the ``def`` line.
    """
    getframe = getattr(sys, "_getframe", None)
    if getframe is None:  # pragma: no cover - CPython and PyPy have it
        return None
    frame = getframe(2)
    while frame is not None and frame.f_globals.get("__name__") in _OWN_MODULES:
        frame = frame.f_back
    if frame is None:  # pragma: no cover
        return None
    return frame.f_code.co_filename, frame.f_lineno


def _target(func: object) -> Callable[..., Any]:
    """The plain function under classmethod/staticmethod (and under other wrappers)."""
    inner = getattr(func, "__func__", func)
    if not callable(inner):
        raise ExpressionError(f"@track needs a function, got {type(func).__name__}")
    return inner


def track(
    name: str,
    *,
    customer_id: Expr | int | None = None,
    email: Expr | None = None,
    mobile: Expr | None = None,
    session_token: Expr | SecretStr | Unset | None = UNSET,
    metadata: Mapping[str, object] | None = None,
    when: Expr | None = None,
    on: On = "success",
    tracker: Tracker | None = None,
    on_outcome: OutcomeHook | None = None,
) -> _Decorator:
    """Send an event named ``name`` each time the decorated function is called.

    Works for plain functions, ``async def`` coroutines, generators and async
    generators (the event follows the end of iteration; ``result`` is a generator's
    return value), methods, classmethods and staticmethods in either decorator order.
    Name, docstring, signature and ``inspect`` predicates are kept. Stacked ``@track``
    decorators send one event each.

    Every expression is a path string (see the path language reference), a
    :func:`literal` constant string, or a callable ``func(call) -> value``; in
    ``metadata`` non-string constants (numbers, booleans) are sent as they are. All of
    them are compiled here, and every path is checked against the annotations (the
    parameters', the return annotation for ``result``, resolvers' return annotations)
    and, for a planned event, against its :func:`~gbtrack.event_schema`; mistakes raise
    :class:`~gbtrack.ExpressionError` naming the function, the expression and the
    nearest valid names. An annotation that cannot be resolved yet (a forward
    reference) defers its check to the first call and :func:`gbtrack.check`.

    Roots: ``result``, ``error``, ``args`` and ``kwargs`` (as passed, without a bound
    ``self``/``cls``), ``identity`` (the ambient one), the parameter names (``self`` and
    ``cls`` included) and registered resolvers. A parameter shadows a registered
    resolver of the same name; a parameter named like a reserved root makes an
    expression using that root ambiguous (an error: use a callable instead).

    Args:
        name: The event name.
        customer_id: The customer; when missing, the ambient :func:`gbtrack.identify`
            one is used, else the event is dropped (reason ``no_customer_id``).
        email: Optional email for channel merging.
        mobile: Optional mobile for channel merging.
        session_token: Left out: the ambient token; ``None``: no token; an expression
            or callable: resolved per call.
        metadata: Event metadata, key -> expression, literal or constant. Missing
            values are left out.
        when: Send only when this expression or callable is truthy.
        on: ``"success"`` (after a normal return), ``"error"`` (when the function
            raises; the exception is re-raised untouched) or ``"always"``.
        tracker: The tracker to use; ``None`` looks the default one up at each call.
        on_outcome: ``hook(outcome)``, called once per event of this function with its
            final :class:`~gbtrack.DeliveryOutcome` in this process (delivered, dropped
            with its reason, or persisted to the outbox), before the tracker's own
            ``on_outcome``, by senders that report outcomes (the built-in delivery
            senders): on the sender's thread (``DirectSender``: inside its blocking
            ``send()``), never able to break delivery (what it raises is logged once
            and counted ``outcome_hook_errors``). Sampled-out events have no outcome.
            ``None`` (the default) costs the call path nothing.

    Returns:
        The decorator.

    Raises:
        ExpressionError: For an invalid expression, option or root, a path the
            annotations refuse, or metadata that breaks the event's schema (or an
            unplanned event when the tracker given has ``strict_plan``).
        ConfigurationError: When ``on_outcome`` is not callable (at decoration).

    Examples:
        >>> from gbtrack import track
        >>> @track("signed_up", customer_id="user.id", metadata={"plan": "plan"})
        ... def sign_up(user, plan="free"): ...
    """
    if on not in ("success", "error", "always"):
        raise ExpressionError(
            f"@track({name!r}): on must be 'success', 'error' or 'always', got {on!r}"
        )
    send_ok = on != "error"
    send_err = on != "success"
    fixed = tracker
    where = _call_site()

    def decorate(func: Any) -> Any:
        target = _target(func)
        if on_outcome is not None and not callable(on_outcome):
            raise ConfigurationError(
                f"@track({name!r}) on {getattr(target, '__qualname__', target)!s}: "
                f"on_outcome must be callable, got {type(on_outcome).__name__}"
            )
        is_async_gen = inspect.isasyncgenfunction(target)
        plan = compile_plan(
            name,
            target,
            customer_id=customer_id,
            email=email,
            mobile=mobile,
            session_token=session_token,
            metadata=metadata,
            when=when,
            on=on,
            is_async_gen=is_async_gen,
            where=where,
            tracker=fixed,
            on_outcome=on_outcome,
        )
        shape = shape_of(target, is_async_gen)
        return wrapt.FunctionWrapper(func, build_wrapper(plan, shape, fixed, send_ok, send_err))

    return decorate
