"""``@track``: one wrapt wrapper, four specialised bodies, everything precomputed.

At decoration time the signature is read once, every expression is compiled into a
slot ``(kind, argument, steps)``, roots are checked against the parameters, the
reserved roots and the registered resolvers, and one of four bodies is chosen: sync,
coroutine, generator or async generator. At call time: no :mod:`inspect`, no
``Signature.bind``, no parsing; a :class:`~gbtrack.Call` is built only when a callable
or registered resolver needs one.

Root precedence (documented in the path language reference):

1. A parameter of the function wins over a registered resolver of the same name.
2. A parameter named like a reserved root (``result``, ``error``, ``args``,
   ``kwargs``, ``identity``) is ambiguous: an expression using that root is an
   :class:`~gbtrack.ExpressionError` (use a callable such as
   ``lambda call: call.arguments["result"]`` instead). Unused, it is harmless.
3. Otherwise reserved roots, then registered resolvers.
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal, ParamSpec, Protocol, TypeVar, overload

import wrapt
from pydantic import SecretStr

from gbtrack import _tracker
from gbtrack._call import Binder, Call, read_param
from gbtrack._context import _identity
from gbtrack._errors import ExpressionError, InvalidEventError
from gbtrack._event import MetadataValue, normalize_value
from gbtrack._expr import (
    _KIND_CACHE,
    _MAPPING,
    MISSING,
    NAME,
    Path,
    Step,
    _kind_of,
    _read_name,
    evaluate,
    literal,
    parse,
)
from gbtrack._resolvers import RESERVED_ROOTS, registered
from gbtrack._types import UNSET, Unset

if TYPE_CHECKING:
    from gbtrack._tracker import Tracker

__all__ = ["On", "track"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

On = Literal["success", "error", "always"]
"""When an event is sent: after a normal return, after an exception, or both."""

Expr = str | Callable[[Call], object]
"""An expression: a path string, a :func:`literal`, or a callable resolver."""

# Slot kinds; small ints compared on the hot path.
_CONST: Final = 0
_PARAM: Final = 1
_RESULT: Final = 2
_ERROR: Final = 3
_ARGS: Final = 4
_KWARGS: Final = 5
_IDENTITY: Final = 6
_RESOLVER: Final = 7
_CALLABLE: Final = 8

_RESERVED_KIND: Final = {
    "result": _RESULT,
    "error": _ERROR,
    "args": _ARGS,
    "kwargs": _KWARGS,
    "identity": _IDENTITY,
}

Slot = tuple[int, Any, tuple[Step, ...]]

_finite = math.isfinite  # a non-finite float goes to normalize_value, which refuses it

# Where a resolved value goes.
_WHEN: Final = 0
_CID: Final = 1
_EMAIL: Final = 2
_MOBILE: Final = 3
_TOKEN: Final = 4
_META: Final = 5


class _Decorator(Protocol):
    """What ``track(...)`` returns: keeps the decorated callable's type."""

    @overload
    def __call__(self, func: staticmethod[P, R], /) -> staticmethod[P, R]: ...
    @overload
    def __call__(self, func: classmethod[T, P, R], /) -> classmethod[T, P, R]: ...
    @overload
    def __call__(self, func: Callable[P, R], /) -> Callable[P, R]: ...


def _qualname(func: object) -> str:
    return str(getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or func)


class _Plan:
    """The compiled event of one ``@track``: slots for identity, metadata and ``when``."""

    __slots__ = (
        "binder",
        "customer_id",
        "email",
        "fast",
        "function",
        "head",
        "meta_const",
        "meta_readers",
        "mobile",
        "name",
        "needs_call",
        "qualname",
        "result_names",
        "session_token",
        "slots",
        "when",
    )

    def __init__(
        self,
        name: str,
        func: Callable[..., Any],
        *,
        customer_id: object,
        email: object,
        mobile: object,
        session_token: object,
        metadata: Mapping[str, object] | None,
        when: object,
        on: str,
        is_async_gen: bool,
    ) -> None:
        self.name = name
        self.function = func
        self.qualname = _qualname(func)
        self.binder = Binder(func)
        self._check_name(name)
        compile_ = self._compiler(on, is_async_gen)
        self.customer_id = compile_(customer_id, "customer_id")
        self.email = compile_(email, "email")
        self.mobile = compile_(mobile, "mobile")
        # UNSET (no slot): the ambient token; None: explicitly no token.
        self.session_token: Slot | None = (
            None
            if session_token is UNSET
            else (_CONST, None, ())
            if session_token is None
            else compile_(session_token, "session_token")
        )
        self.when = compile_(when, "when")
        self.meta_const: dict[str, MetadataValue] = {}
        slots: list[tuple[str, Slot]] = []
        if metadata is not None:
            if not isinstance(metadata, Mapping):
                raise self._error(f"metadata must be a mapping, got {type(metadata).__name__}")
            for key, spec in metadata.items():
                if not isinstance(key, str) or not key:
                    raise self._error(f"metadata keys must be non-empty strings, got {key!r}")
                slot = compile_(spec, f"metadata[{key!r}]")
                if slot is None:
                    continue
                if slot[0] == _CONST:
                    try:
                        value = normalize_value(key, slot[1])
                    except InvalidEventError as exc:
                        raise self._error(str(exc)) from None
                    if value is not None:
                        self.meta_const[key] = value
                else:
                    slots.append((key, slot))
        # Evaluation order: `when` first (it can skip the rest), then identity, metadata.
        ordered: list[tuple[str, int, Slot]] = []
        for role, target, slot_ in (
            ("when", _WHEN, self.when),
            ("customer_id", _CID, self.customer_id),
            ("email", _EMAIL, self.email),
            ("mobile", _MOBILE, self.mobile),
            ("session_token", _TOKEN, self.session_token),
        ):
            if slot_ is not None:
                ordered.append((role, target, slot_))
        ordered += [(key, _META, slot_) for key, slot_ in slots]
        self.slots = tuple(ordered)
        # Per slot, a reader specialised at decoration time (see _reader): ``when`` and
        # identity first, then metadata. Trailing "result.name" metadata slots (the
        # commonest shape) are read inline from one type check of the result; keeping
        # them last keeps the documented evaluation order.
        self.head = tuple(
            (role, target, _reader(slot_), slot_)
            for role, target, slot_ in ordered
            if target != _META
        )
        meta = [(key, slot_) for key, slot_ in slots]
        tail: list[tuple[str, str, Slot]] = []
        while meta and _is_result_name(meta[-1][1]):
            key, slot_ = meta.pop()
            tail.insert(0, (key, str(slot_[2][0][1]), slot_))
        self.meta_readers = tuple((key, _reader(slot_), slot_) for key, slot_ in meta)
        self.result_names = tuple(tail)
        everything = [self.customer_id, self.email, self.mobile, self.session_token, self.when]
        everything += [slot for _, slot in slots]
        self.needs_call = any(s is not None and s[0] in (_CALLABLE, _RESOLVER) for s in everything)
        # Nothing to resolve per call: identity fields are constants, no `when`, no slots.
        self.fast = (
            not slots and self.when is None and all(s is None or s[0] == _CONST for s in everything)
        )

    def _error(self, message: str, **fields: Any) -> ExpressionError:
        return ExpressionError(
            f"@track({self.name!r}) on {self.qualname}: {message}",
            function=self.qualname,
            **fields,
        )

    def _check_name(self, name: object) -> None:
        if not isinstance(name, str) or not name.strip():
            raise self._error(f"the event name must be a non-empty string, got {name!r}")

    def _compiler(self, on: str, is_async_gen: bool) -> Callable[[object, str], Slot | None]:
        def compile_(spec: object, role: str) -> Slot | None:
            if spec is None:
                return None
            if isinstance(spec, literal):
                return (_CONST, str(spec), ())
            if isinstance(spec, str):
                return self._compile_path(spec, role, on, is_async_gen)
            if callable(spec):
                return (_CALLABLE, spec, ())
            if isinstance(spec, SecretStr) and role == "session_token":
                return (_CONST, spec, ())
            if role in ("customer_id", "when") or role.startswith("metadata["):
                return (_CONST, spec, ())
            raise self._error(
                f"{role} must be an expression string, literal(...) or a callable, "
                f"got {type(spec).__name__}"
            )

        return compile_

    def _compile_path(self, text: str, role: str, on: str, is_async_gen: bool) -> Slot:
        try:
            path = parse(text)
        except ExpressionError as exc:
            raise self._error(f"{role}: {exc}", expression=text) from None
        root = path.root
        params = self.binder.params
        if root in params:
            if root in RESERVED_ROOTS:
                raise self._error(
                    f"{role}={text!r} is ambiguous: parameter {root!r} shadows the reserved "
                    f"root {root!r}; use a callable, e.g. lambda call: call.arguments[{root!r}]",
                    expression=text,
                )
            return (_PARAM, self.binder.getter(root), path.steps)
        if root in RESERVED_ROOTS:
            if root == "result" and on == "error":
                raise self._error(
                    f"{role}={text!r} uses 'result', but on='error' sends only when the "
                    "function raises, so there is no result; use 'error' or on='always'",
                    expression=text,
                )
            if root == "error" and on == "success":
                raise self._error(
                    f"{role}={text!r} uses 'error', but on='success' sends only when the "
                    "function returns; use on='error' or on='always'",
                    expression=text,
                )
            if root == "result" and is_async_gen:
                raise self._error(
                    f"{role}={text!r} uses 'result', but an async generator has no return value",
                    expression=text,
                )
            return (_RESERVED_KIND[root], None, path.steps)
        resolvers = registered()
        if root in resolvers:
            return (_RESOLVER, root, path.steps)
        return self._unknown_root(path, role, sorted(resolvers))

    def _unknown_root(self, path: Path, role: str, resolvers: list[str]) -> Slot:
        names = [*self.binder.names, *sorted(RESERVED_ROOTS), *resolvers]
        close = tuple(difflib.get_close_matches(path.root, names, n=3, cutoff=0.6))
        hint = f"did you mean {' or '.join(repr(n) for n in close)}? " if close else ""
        raise self._error(
            f"{role}={path.text!r}: unknown root {path.root!r}; {hint}"
            f"valid roots are the parameters ({', '.join(self.binder.names) or 'none'}), "
            f"the reserved roots ({', '.join(sorted(RESERVED_ROOTS))}) and the registered "
            f"resolvers ({', '.join(resolvers) or 'none'})",
            expression=path.text,
            suggestions=close,
        )

    # --- call time ---------------------------------------------------------------------
    def emit(
        self,
        tracker: Tracker,
        instance: object,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        result: object,
        error: BaseException | None,
    ) -> None:
        """Resolve, normalise and submit one event; never raises unless strict."""
        if self.fast:
            tracker._submit(
                self.name,
                None if self.customer_id is None else self.customer_id[1],
                None if self.email is None else self.email[1],
                None if self.mobile is None else self.mobile[1],
                UNSET if self.session_token is None else self.session_token[1],
                dict(self.meta_const),
                function=self.qualname,
            )
            return
        call = (
            Call(
                self.function,
                args,
                kwargs,
                result=result,
                error=error,
                instance=instance,
                binder=self.binder,
            )
            if self.needs_call
            else None
        )
        customer_id: object = None
        email: object = None
        mobile: object = None
        token: object = UNSET
        metadata: dict[str, MetadataValue] = dict(self.meta_const) if self.meta_const else {}
        invalid: InvalidEventError | None = None
        role = ""
        slot: Slot | None = None
        value: object
        try:
            for role, target, read, slot in self.head:  # noqa: B007 - slot: for the message
                value = read(instance, args, kwargs, result, error, call)
                if target == _CID:
                    customer_id = value
                elif target == _WHEN:
                    if not value:
                        tracker._reporter.count("skipped")
                        return
                elif target == _EMAIL:
                    email = value
                elif target == _MOBILE:
                    mobile = value
                else:
                    token = value
            # Raw metadata values first (reads can raise: resolver_error), then one
            # conversion loop (a bad value is invalid_event).
            raw: list[tuple[str, object]] = []
            for role, read, slot in self.meta_readers:  # noqa: B007 - slot: for the message
                value = read(instance, args, kwargs, result, error, call)
                if value is not MISSING:
                    raw.append((role, value))
            if self.result_names and result is not None:
                # evaluate()'s single ".name" step, with the result's type checked once.
                cls = type(result)
                kind = _MAPPING if cls is dict else _KIND_CACHE.get(cls)
                if kind is None:
                    kind = _kind_of(cls, result)
                for role, name, slot in self.result_names:  # noqa: B007 - for the message
                    if kind != _MAPPING:
                        value = getattr(result, name, None)
                    elif cls is dict:
                        value = result.get(name)  # type: ignore[attr-defined]
                    else:
                        try:
                            value = result[name]  # type: ignore[index]
                        except KeyError:
                            continue
                    if value is not None:
                        raw.append((role, value))
            for key, value in raw:
                cls = type(value)
                if (
                    cls is str or cls is int or cls is bool or (cls is float and _finite(value))  # type: ignore[arg-type]
                ):
                    metadata[key] = value  # type: ignore[assignment]
                    continue
                try:
                    converted = normalize_value(key, value)
                except InvalidEventError as exc:
                    invalid = exc
                    break
                if converted is not None:
                    metadata[key] = converted
        except Exception as exc:
            tracker._drop(
                "resolver_error",
                f"event {self.name!r} from {self.qualname}: resolving {role} "
                f"({'?' if slot is None else self.describe(slot)}) raised {type(exc).__name__}",
                function=self.qualname,
                exc=exc,
            )
            return
        if invalid is not None:
            tracker._drop(
                "invalid_event",
                f"event {self.name!r} from {self.qualname}: {invalid}",
                function=self.qualname,
                exc=invalid,
            )
            return
        tracker._submit(
            self.name,
            None if customer_id is MISSING else customer_id,
            None if email is MISSING else email,
            None if mobile is MISSING else mobile,
            UNSET if token is MISSING else token,
            metadata,
            function=self.qualname,
        )

    @staticmethod
    def describe(slot: Slot) -> str:
        """A short description of a slot for messages (never its value)."""
        kind, arg, _ = slot
        if kind == _CALLABLE:
            return f"resolver {_qualname(arg)}"
        if kind == _RESOLVER:
            return f"registered resolver {arg!r}"
        return "a path expression"


Reader = Callable[
    [object, tuple[Any, ...], dict[str, Any], object, "BaseException | None", "Call | None"],
    object,
]
"""Reads one slot's value from a call: ``(instance, args, kwargs, result, error, call)``."""


def _reader(slot: Slot) -> Reader:
    """Specialise one slot into a reader; the two commonest shapes are fully inlined.

    The readers return exactly what the generic path did: :data:`MISSING` for a missing
    value (``None`` included), except a constant, which is returned as it is.
    """
    kind, arg, steps = slot
    if kind == _CONST:
        return lambda i, a, k, r, e, c: arg
    if kind == _PARAM and arg[3] == 0:
        return _param_reader(arg, steps)
    if kind == _RESULT and len(steps) == 1 and steps[0][0] == NAME:
        name: str = steps[0][1]  # type: ignore[assignment]

        def read_result_name(
            i: object,
            a: tuple[Any, ...],
            k: dict[str, Any],
            result: object,
            e: BaseException | None,
            c: Call | None,
        ) -> object:
            return _read_name(result, name)

        return read_result_name

    def read(
        instance: object,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        result: object,
        error: BaseException | None,
        call: Call | None,
    ) -> object:
        if kind == _PARAM:
            value = read_param(arg, instance, args, kwargs)
        elif kind == _RESULT:
            value = result
        else:
            value = _resolve(kind, arg, instance, args, kwargs, error, call)
        if steps:
            return evaluate(value, steps)
        return MISSING if value is None else value

    return read


def _is_result_name(slot: Slot) -> bool:
    kind, _, steps = slot
    return kind == _RESULT and len(steps) == 1 and steps[0][0] == NAME and type(steps[0][1]) is str


def _param_reader(getter: tuple[int, str, object, int], steps: tuple[Step, ...]) -> Reader:
    """A reader for a named parameter (``read_param`` inlined; one ``.name`` step too)."""
    position, param, default, _ = getter
    first = steps[0][1] if len(steps) == 1 and steps[0][0] == NAME else None
    name = first if isinstance(first, str) else None
    shifted = position - 1  # where the parameter is when wrapt has bound self/cls

    def read_param_inline(
        instance: object,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        r: object,
        e: BaseException | None,
        c: Call | None,
    ) -> object:
        if instance is not None and position == 0:
            value: object = instance
        else:
            p = position if instance is None else shifted
            if 0 <= p < len(args):
                value = args[p]
            elif param:
                value = kwargs.get(param, default)
            else:
                value = default
        if name is not None:
            return _read_name(value, name)
        if steps:
            return evaluate(value, steps)
        return MISSING if value is None else value

    return read_param_inline


def _resolve(
    kind: int,
    arg: Any,
    instance: object,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    error: BaseException | None,
    call: Call | None,
) -> object:
    """The root value of the less common slot kinds (the caller applies the steps)."""
    if kind == _CALLABLE:
        return arg(call)
    if kind == _ERROR:
        return error
    if kind == _IDENTITY:
        return _identity.get()
    if kind == _RESOLVER:
        func = registered().get(arg)
        if func is None:
            raise LookupError(f"resolver {arg!r} is no longer registered")
        assert call is not None  # built whenever the plan has a resolver
        return func(call)
    if kind == _ARGS:
        return args
    return kwargs


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
    them are compiled here; mistakes raise :class:`~gbtrack.ExpressionError` naming the
    function, the expression and the nearest valid names.

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

    Returns:
        The decorator.

    Raises:
        ExpressionError: For an invalid expression, option or root.

    Example:
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

    def decorate(func: Any) -> Any:
        target = _target(func)
        is_async_gen = inspect.isasyncgenfunction(target)
        plan = _Plan(
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
        )
        emit = plan.emit
        if is_async_gen:
            wrapper = _async_gen_body(emit, fixed, send_ok, send_err)
        elif inspect.iscoroutinefunction(target):
            wrapper = _coroutine_body(emit, fixed, send_ok, send_err)
        elif inspect.isgeneratorfunction(target):
            wrapper = _generator_body(emit, fixed, send_ok, send_err)
        else:
            wrapper = _sync_body(emit, fixed, send_ok, send_err)
        return wrapt.FunctionWrapper(func, wrapper)

    return decorate


Emit = Callable[
    [Any, object, tuple[Any, ...], dict[str, Any], object, "BaseException | None"], None
]
Wrapper = Callable[[Any, Any, tuple[Any, ...], dict[str, Any]], Any]


def _sync_body(emit: Emit, fixed: Tracker | None, send_ok: bool, send_err: bool) -> Wrapper:
    def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        tracker = fixed or _tracker._default
        if not tracker.enabled:
            return wrapped(*args, **kwargs)
        try:
            result = wrapped(*args, **kwargs)
        except Exception as exc:
            if send_err:
                emit(tracker, instance, args, kwargs, None, exc)
            raise
        if send_ok:
            emit(tracker, instance, args, kwargs, result, None)
        return result

    return wrapper


def _coroutine_body(emit: Emit, fixed: Tracker | None, send_ok: bool, send_err: bool) -> Wrapper:
    async def run(
        tracker: Tracker, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        try:
            result = await wrapped(*args, **kwargs)
        except Exception as exc:
            if send_err:
                emit(tracker, instance, args, kwargs, None, exc)
            raise
        if send_ok:
            emit(tracker, instance, args, kwargs, result, None)
        return result

    def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        tracker = fixed or _tracker._default
        if not tracker.enabled:
            return wrapped(*args, **kwargs)
        return run(tracker, wrapped, instance, args, kwargs)

    return wrapper


def _generator_body(emit: Emit, fixed: Tracker | None, send_ok: bool, send_err: bool) -> Wrapper:
    def run(
        tracker: Tracker, gen: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        # yield from forwards send/throw/close; a close() before the end (GeneratorExit)
        # is neither success nor error, so nothing is sent.
        try:
            result = yield from gen
        except Exception as exc:
            if send_err:
                emit(tracker, instance, args, kwargs, None, exc)
            raise
        if send_ok:
            emit(tracker, instance, args, kwargs, result, None)
        return result

    def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        tracker = fixed or _tracker._default
        if not tracker.enabled:
            return wrapped(*args, **kwargs)
        return run(tracker, wrapped(*args, **kwargs), instance, args, kwargs)

    return wrapper


def _async_gen_body(emit: Emit, fixed: Tracker | None, send_ok: bool, send_err: bool) -> Wrapper:
    async def run(
        tracker: Tracker, agen: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        # Async generators have no `yield from`: forward asend/athrow/aclose by hand.
        try:
            value = await agen.__anext__()
            while True:
                try:
                    sent = yield value
                except GeneratorExit:
                    await agen.aclose()
                    raise
                except BaseException as thrown:
                    value = await agen.athrow(thrown)
                else:
                    value = await agen.asend(sent)
        except StopAsyncIteration:
            pass
        except Exception as exc:
            if send_err:
                emit(tracker, instance, args, kwargs, None, exc)
            raise
        if send_ok:
            emit(tracker, instance, args, kwargs, None, None)

    def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        tracker = fixed or _tracker._default
        if not tracker.enabled:
            return wrapped(*args, **kwargs)
        return run(tracker, wrapped(*args, **kwargs), instance, args, kwargs)

    return wrapper
