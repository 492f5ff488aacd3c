"""Decoration-time compilation of ``@track``'s arguments into a plan, and the plan's emit.

At decoration time every expression is compiled once: a path string into a root reader
(a parameter through :class:`~gbtrack._call.Binder`, a reserved root, a registered
resolver) and a compiled path (:func:`gbtrack._expr.compile_steps`); roots are checked
against the parameters, the reserved roots and the registered resolvers. Then one of two
plan classes is chosen: :class:`ConstantPlan` when nothing varies per call, else
:class:`Plan`.

At call time a plan reads plain values, converts them cheaply
(:mod:`gbtrack._plain`), completes the identity from :func:`gbtrack.identify`, and
hands one :class:`~gbtrack.EventDraft` to :meth:`gbtrack.Tracker.submit`. Everything on
that path is fenced: a failure is a counted drop (``resolver_error``,
``invalid_event``), raised only when the tracker is ``strict``.

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
import functools
import inspect
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol

from pydantic import SecretStr

from gbtrack._call import Binder, Call, ParamReader
from gbtrack._checks import Site, TypedPath, first_call, register
from gbtrack._context import complete_identity, current_identity
from gbtrack._errors import ExpressionError, InvalidEventError, TrackingError
from gbtrack._event import EventDraft, Identity
from gbtrack._expr import (
    ABSENT,
    MISSING,
    NAME,
    Path,
    Reader,
    compile_names,
    compile_steps,
    literal,
    parse,
    read_name,
)
from gbtrack._outcomes import OutcomeHook
from gbtrack._plain import MetadataValue, plain_value
from gbtrack._resolvers import RESERVED_ROOTS, registered
from gbtrack._typecheck import Leaf, param_types, return_type
from gbtrack._types import UNSET

if TYPE_CHECKING:
    from gbtrack._state import CallSink as Tracker

__all__ = ["ConstantPlan", "FastSource", "FastSpec", "Plan", "SlotReader", "compile_plan"]

SlotReader = Callable[
    [object, tuple[Any, ...], dict[str, Any], object, "BaseException | None", "Call | None"],
    object,
]
"""Reads one slot: ``(instance, args, kwargs, result, error, call) -> value``.

The value is plain data, :data:`~gbtrack._expr.MISSING` (``None`` on the way) or
:data:`~gbtrack._expr.ABSENT` (nothing found on a value that was not ``None``).
"""

_new_draft = tuple.__new__
_now = time.time


def _qualname(func: object) -> str:
    return str(getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or func)


class _Constant:
    """A slot's constant value (``literal(...)``, a number, a token)."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value


class _PathSlot:
    """A compiled path: its root, the root's reader, its steps and the composed reader."""

    __slots__ = ("read", "root", "root_reader", "steps")

    def __init__(
        self, root: str, root_reader: SlotReader | None, steps: tuple[Any, ...], read: SlotReader
    ) -> None:
        self.root = root
        self.root_reader = root_reader  # None: the root is the call's result
        self.steps = steps
        self.read = read


def _leaf(role: str) -> Leaf:
    """What the value of ``role`` must be, for the type checks."""
    if role == "customer_id":
        return "identity"
    if role in ("email", "mobile"):
        return "text"
    return "metadata" if role.startswith("metadata[") else "any"


def _unknown() -> Any:
    return Any


def _identity_type() -> Any:
    return Identity


def _callable_return(func: object) -> Any:
    """A callable resolver's return annotation (``Any`` for anything but a function)."""
    if inspect.isfunction(func) or inspect.ismethod(func):
        return return_type(func)
    return Any


def _resolver_return(name: str) -> Any:
    """The return annotation of the resolver registered as ``name`` now."""
    return _callable_return(registered().get(name))


class _Annotations:
    """The decorated function's annotations, read only when a path needs them, once."""

    __slots__ = ("func", "params", "result_type")

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func
        self.params: dict[str, Any] | None = None
        self.result_type: Any = None

    def param(self, name: str) -> Any:
        if self.params is None:
            self.params = param_types(self.func)
        return self.params.get(name, Any)

    def result(self) -> Any:
        if self.result_type is None:  # may raise Deferred: then asked again later
            self.result_type = return_type(self.func)
        return self.result_type


_Slot = SlotReader | _Constant | _PathSlot | None
"""One compiled argument: a reader, a constant, a path, or nothing given."""


class _Compiler:
    """Compiles one ``@track``'s expressions; every error names the function and expression."""

    site_class: type[Site] = Site  # @track_order's compiler registers an OrderSite

    def __init__(self, name: str, func: Callable[..., Any], on: str, is_async_gen: bool) -> None:
        self.name = name
        self.func = func
        self.qualname = _qualname(func)
        self.binder = Binder(func)
        self.on = on
        self.is_async_gen = is_async_gen
        self.needs_call = False
        # role -> what computes it, for messages (never a value)
        self.described: dict[str, str] = {}
        # a parameter root's slot reader -> the Binder's reader it wraps
        self.params: dict[SlotReader, ParamReader] = {}
        # For the type checks and the catalog (gbtrack._checks): paths with the source
        # of their root's type, metadata constants as sent, and role -> how computed.
        self.annotations = _Annotations(func)
        self.typed: list[TypedPath] = []
        self.constants: dict[str, object] = {}
        self.sources: dict[str, str] = {}
        self.meta_keys: dict[str, str] = {}  # "metadata['amount']" -> "amount"
        self.site: Site | None = None
        self.pending: Site | None = None

    def error(self, message: str, **fields: Any) -> ExpressionError:
        return ExpressionError(
            f"@track({self.name!r}) on {self.qualname}: {message}",
            function=self.qualname,
            **fields,
        )

    def identity(
        self, customer_id: object, email: object, mobile: object, session_token: object
    ) -> tuple[_Slot, _Slot, _Slot, _Slot]:
        """Compile the four identity arguments, in the draft's order.

        The session token's rule: ``UNSET`` (no slot) means the ambient token, ``None``
        explicitly no token.
        """
        return (
            self.slot(customer_id, "customer_id"),
            self.slot(email, "email"),
            self.slot(mobile, "mobile"),
            None
            if session_token is UNSET
            else _Constant(None)
            if session_token is None
            else self.slot(session_token, "session_token"),
        )

    def slot(self, spec: object, role: str) -> SlotReader | _Constant | _PathSlot | None:
        """Compile one argument: ``None`` (not given), a constant or a reader."""
        if spec is None:
            return None
        if isinstance(spec, literal):
            self.sources[role] = f"literal({str(spec)!r})"
            return _Constant(str(spec))
        if isinstance(spec, str):
            self.sources[role] = spec
            return self.path(spec, role)
        if callable(spec):
            self.needs_call = True
            self.described[role] = f"resolver {_qualname(spec)}"
            self.sources[role] = f"callable {_qualname(spec)}"
            leaf = _leaf(role)
            if leaf != "any":  # only its return annotation can be checked
                self.typed.append(
                    TypedPath(
                        role,
                        self.meta_keys.get(role),
                        None,
                        functools.partial(_callable_return, spec),
                        (),
                        leaf,
                        f"resolver {_qualname(spec)}",
                    )
                )
            func = spec
            return lambda i, a, k, r, e, call: _present(func(call))
        if isinstance(spec, SecretStr) and role == "session_token":
            self.sources[role] = "a constant token"
            return _Constant(spec)
        if role in ("customer_id", "when") or role.startswith("metadata["):
            self.sources[role] = repr(spec)
            return _Constant(spec)
        raise self.error(
            f"{role} must be an expression string, literal(...) or a callable, "
            f"got {type(spec).__name__}"
        )

    def path(self, text: str, role: str) -> _PathSlot:
        try:
            path = parse(text)
        except ExpressionError as exc:
            raise self.error(f"{role}: {exc}", expression=text) from None
        read_steps = compile_steps(path.steps)
        root = path.root
        self.described[role] = f"the path {text!r}"
        if root in self.binder.params:
            if root in RESERVED_ROOTS:
                raise self.error(
                    f"{role}={text!r} is ambiguous: parameter {root!r} shadows the reserved "
                    f"root {root!r}; use a callable, e.g. lambda call: call.arguments[{root!r}]",
                    expression=text,
                )
            param = self.binder.reader(root)
            self.typed_path(role, text, path, functools.partial(self.annotations.param, root))
            root_reader: SlotReader = lambda i, a, k, r, e, c: param(i, a, k)  # noqa: E731
            self.params[root_reader] = param
            return _PathSlot(
                root,
                root_reader,
                path.steps,
                lambda i, a, k, r, e, c: read_steps(param(i, a, k)),
            )
        if root in RESERVED_ROOTS:
            self.check_reserved(root, role, text)
            root_type = (
                self.annotations.result
                if root == "result"
                else _identity_type
                if root == "identity"
                else _unknown
            )
            self.typed_path(role, text, path, root_type)
            reserved = _reserved_reader(root, _identity_step)
            return _PathSlot(
                root,
                None if root == "result" else reserved,
                path.steps,
                _reserved_reader(root, read_steps),
            )
        resolvers = registered()
        if root in resolvers:
            self.needs_call = True
            self.described[role] = f"registered resolver {root!r}"
            self.typed_path(role, text, path, functools.partial(_resolver_return, root))
            # Not grouped: a resolver is called once per slot, as documented.
            return _PathSlot(root, None, (), _resolver_reader(root, read_steps))
        raise self.unknown_root(path, role, sorted(resolvers))

    def typed_path(self, role: str, text: str, path: Path, root_type: Callable[[], Any]) -> None:
        self.typed.append(
            TypedPath(role, self.meta_keys.get(role), text, root_type, path.steps, _leaf(role))
        )

    def check(self, where: tuple[str, int] | None, tracker: Tracker | None) -> None:
        """Type-check the paths and the plan now; register the site for gbtrack.check().

        Raises:
            ExpressionError: Listing every problem found.
        """
        func = self.func
        meta = {key: self.sources.get(role, "?") for role, key in self.meta_keys.items()}
        identity = {"customer_id": self.sources.get("customer_id", "identify()")}
        identity.update((r, self.sources[r]) for r in ("email", "mobile") if r in self.sources)
        if where is None:
            code = getattr(func, "__code__", None)
            where = (getattr(code, "co_filename", "?"), getattr(code, "co_firstlineno", 0))
        site = self.site_class(
            event=self.name,
            function=self.qualname,
            module=str(getattr(func, "__module__", None) or "?"),
            where=where,
            on=self.on,
            paths=self.typed,
            constants=self.constants,
            identity=identity,
            metadata=meta,
            tracker=tracker,
            globalns=getattr(inspect.unwrap(func), "__globals__", None),
        )
        site.run(final=False)
        if site.error is not None:
            raise site.error
        register(site)
        self.site = site
        self.pending = site if site.deferred else None

    def check_reserved(self, root: str, role: str, text: str) -> None:
        if root == "result" and self.on == "error":
            raise self.error(
                f"{role}={text!r} uses 'result', but on='error' sends only when the "
                "function raises, so there is no result; use 'error' or on='always'",
                expression=text,
            )
        if root == "error" and self.on == "success":
            raise self.error(
                f"{role}={text!r} uses 'error', but on='success' sends only when the "
                "function returns; use on='error' or on='always'",
                expression=text,
            )
        if root == "result" and self.is_async_gen:
            raise self.error(
                f"{role}={text!r} uses 'result', but an async generator has no return value",
                expression=text,
            )

    def unknown_root(self, path: Path, role: str, resolvers: list[str]) -> ExpressionError:
        names = [*self.binder.names, *sorted(RESERVED_ROOTS), *resolvers]
        close = tuple(difflib.get_close_matches(path.root, names, n=3, cutoff=0.6))
        hint = f"did you mean {' or '.join(repr(n) for n in close)}? " if close else ""
        return self.error(
            f"{role}={path.text!r}: unknown root {path.root!r}; {hint}"
            f"valid roots are the parameters ({', '.join(self.binder.names) or 'none'}), "
            f"the reserved roots ({', '.join(sorted(RESERVED_ROOTS))}) and the registered "
            f"resolvers ({', '.join(resolvers) or 'none'})",
            expression=path.text,
            suggestions=close,
        )


class _CallSource(Protocol):
    """What builds a :class:`~gbtrack._call.Call`: a compiled plan (event or order)."""

    function: Callable[..., Any]
    binder: Binder


def call_of(
    plan: _CallSource,
    instance: object,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    result: object,
    error: BaseException | None,
) -> Call:
    """The :class:`~gbtrack._call.Call` a plan's callables and resolvers are given."""
    return Call(
        plan.function,
        args,
        kwargs,
        result=result,
        error=error,
        instance=instance,
        binder=plan.binder,
    )


def _present(value: object) -> object:
    return MISSING if value is None else value


def _identity_step(value: object) -> object:
    return value


def _reserved_reader(root: str, read_steps: Reader) -> SlotReader:
    if root == "result":
        return lambda i, a, k, result, e, c: read_steps(result)
    if root == "error":
        return lambda i, a, k, r, error, c: read_steps(error)
    if root == "args":
        return lambda i, args, k, r, e, c: read_steps(args)
    if root == "kwargs":
        return lambda i, a, kwargs, r, e, c: read_steps(kwargs)
    assert root == "identity"
    return lambda i, a, k, r, e, c: read_steps(current_identity())


def _resolver_reader(name: str, read_steps: Reader) -> SlotReader:
    def read(
        i: object,
        a: tuple[Any, ...],
        k: dict[str, Any],
        r: object,
        e: BaseException | None,
        call: Call | None,
    ) -> object:
        func = registered().get(name)
        if func is None:
            raise LookupError(f"resolver {name!r} is no longer registered")
        return read_steps(func(call))  # type: ignore[arg-type]  # built when needed

    return read


Emitter = Callable[
    ["Tracker", object, tuple[Any, ...], dict[str, Any], object, "BaseException | None"], None
]
"""A plan's per-call entry: ``(tracker, instance, args, kwargs, result, error)``."""


class ConstantPlan:
    """A plan with nothing to read per call: identity constants (or ambient), constant metadata."""

    __slots__ = (
        "customer_id",
        "email",
        "emitter",
        "keys",
        "mobile",
        "name",
        "on_outcome",
        "qualname",
        "site",
        "token",
        "values",
    )

    def __init__(
        self,
        name: str,
        qualname: str,
        identity: tuple[object, object, object, object],
        keys: tuple[str, ...],
        values: tuple[MetadataValue, ...],
        site: Site | None = None,
        on_outcome: OutcomeHook | None = None,
    ) -> None:
        self.name = name
        self.qualname = qualname
        self.on_outcome = on_outcome
        self.site = site  # keeps the registered site (weakly registered) alive
        self.customer_id, self.email, self.mobile, self.token = identity
        self.keys = keys
        self.values = values
        self.emitter: Emitter = self.emit

    def emit(
        self,
        tracker: Tracker,
        instance: object,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        result: object,
        error: BaseException | None,
    ) -> None:
        """Complete the identity and submit the draft; never raises unless strict."""
        try:
            identity = complete_identity(self.customer_id, self.email, self.mobile, self.token)
        except TrackingError:
            raise
        except Exception as exc:
            _failed(tracker, self.name, self.qualname, "the identity", exc, self.on_outcome)
            return
        _submit(tracker, self, identity, self.values)


def _submit(
    tracker: Tracker,
    plan: Plan | ConstantPlan,
    identity: tuple[object, ...] | None,
    values: tuple[object, ...],
) -> None:
    """Hand the draft to the tracker, or drop an event that has no customer at all.

    A plan with its own outcome hook puts it on the draft, as a tenth element.
    """
    if identity is None:
        tracker.no_customer(plan.name, plan.qualname, ("event", plan.name, plan.on_outcome))
        return
    fields = (plan.name, *identity, plan.keys, values, plan.qualname, _now())
    hook = plan.on_outcome
    tracker.submit(_new_draft(EventDraft, fields if hook is None else (*fields, hook)))


_CID: Final = 0
_EMAIL: Final = 1
_MOBILE: Final = 2
_TOKEN: Final = 3
_META: Final = 4  # metadata values start here in the plan's value list
_PLAIN_TYPES: Final = frozenset({str, int, float, bool})  # finiteness is checked in the worker


class Plan:
    """The compiled event of one ``@track``: readers for ``when``, identity and metadata.

    Paths of one ``.name`` step from the same root (``customer.id`` and
    ``customer.email``; ``result.id``, ``result.total``) form a group: the root is read
    once and its names in one C-level call (:func:`~gbtrack._expr.compile_names`).
    Every other slot has its own reader. Metadata is laid out group by group (then the
    other slots, then the constants), so a group's tuple is the draft's values as read.
    """

    __slots__ = (
        "binder",
        "described",
        "emitter",
        "fast",
        "function",
        "id_groups",
        "id_singles",
        "id_template",
        "keys",
        "labels",
        "meta_const",
        "meta_groups",
        "meta_singles",
        "name",
        "needs_call",
        "on_outcome",
        "params",
        "pending",
        "qualname",
        "site",
        "when",
    )

    def __init__(
        self,
        compiler: _Compiler,
        function: Callable[..., Any],
        identity: tuple[SlotReader | _Constant | _PathSlot | None, ...],
        when: SlotReader | None,
        meta: tuple[tuple[str, SlotReader | _Constant | _PathSlot], ...],
        when_path: object = None,
        on_outcome: OutcomeHook | None = None,
    ) -> None:
        self.name = compiler.name
        self.on_outcome = on_outcome
        self.qualname = compiler.qualname
        self.function = function
        self.binder = compiler.binder
        self.needs_call = compiler.needs_call
        self.described = compiler.described
        self.params = compiler.params
        # The site keeps the registration alive; pending: checks deferred to the first call.
        self.site = compiler.site
        self.pending = compiler.pending
        self.when = when
        template: list[object] = [None, None, None, UNSET]
        id_groups: dict[str, tuple[SlotReader | None, list[str], list[int]]] = {}
        id_singles: list[tuple[int, SlotReader]] = []
        for target, slot in enumerate(identity):
            if slot is None:
                continue
            if isinstance(slot, _Constant):
                template[target] = slot.value
            elif _groupable(slot) and target != _TOKEN:  # a None token means "no token"
                group = id_groups.setdefault(slot.root, (slot.root_reader, [], []))  # type: ignore[union-attr]
                group[1].append(slot.steps[0][1])  # type: ignore[union-attr]
                group[2].append(target)
            else:
                id_singles.append((target, _reader_of(slot)))
        self.id_template = template
        self.id_groups = tuple(
            (reader, compile_names(tuple(names)), tuple(targets), tuple(names))
            for reader, names, targets in id_groups.values()
        )
        self.id_singles = tuple(id_singles)
        meta_groups: dict[str, tuple[SlotReader | None, list[str], list[str]]] = {}
        meta_singles: list[tuple[str, SlotReader]] = []
        constants: list[tuple[str, object]] = []
        for key, slot in meta:
            if isinstance(slot, _Constant):
                constants.append((key, slot.value))
            elif _groupable(slot):
                mgroup = meta_groups.setdefault(slot.root, (slot.root_reader, [], []))  # type: ignore[union-attr]
                mgroup[1].append(slot.steps[0][1])  # type: ignore[union-attr]
                mgroup[2].append(key)
            else:
                meta_singles.append((key, _reader_of(slot)))
        self.meta_groups = tuple(
            (reader, compile_names(tuple(names)), tuple(names))
            for reader, names, _ in meta_groups.values()
        )
        self.meta_singles = tuple(read for _, read in meta_singles)
        self.meta_const = tuple(value for _, value in constants)
        self.keys = (
            *(key for _, _, keys in meta_groups.values() for key in keys),
            *(key for key, _ in meta_singles),
            *(key for key, _ in constants),
        )
        roles = ("customer_id", "email", "mobile", "session_token")
        self.labels = (*roles, *(f"metadata[{key!r}]" for key in self.keys))
        self.fast = _fast_spec(self, identity, when_path, meta)
        self.emitter: Emitter = self.emit if self.pending is None else self._deferred(self.emit)

    def _deferred(self, emit: Emitter) -> Emitter:
        """``emit`` behind the checks deferred to the first call (forward references)."""

        def emit_checked(
            tracker: Tracker,
            instance: object,
            args: tuple[Any, ...],
            kwargs: dict[str, Any],
            result: object,
            error: BaseException | None,
        ) -> None:
            if self.pending is not None and first_call(self, tracker):
                return
            emit(tracker, instance, args, kwargs, result, error)

        return emit_checked

    def emit(
        self,
        tracker: Tracker,
        instance: object,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        result: object,
        error: BaseException | None,
    ) -> None:
        """Read, convert and submit one event; never raises unless strict."""
        try:
            call = call_of(self, instance, args, kwargs, result, error) if self.needs_call else None
            read = self.when
            if read is not None:
                value = read(instance, args, kwargs, result, error, call)
                if value is ABSENT:
                    self._missing(tracker, "when", "when")
                if not value:
                    tracker.count("skipped")
                    return
            ident = self.id_template.copy()
            for reader, names, targets, _ in self.id_groups:
                got = names(
                    result
                    if reader is None
                    else reader(instance, args, kwargs, result, error, call)
                )
                for target, value in zip(targets, got):  # noqa: B905 - equal by construction
                    ident[target] = value
            for target, read in self.id_singles:
                ident[target] = read(instance, args, kwargs, result, error, call)
            values: tuple[object, ...] = ()
            for reader, names, _ in self.meta_groups:
                values += names(
                    result
                    if reader is None
                    else reader(instance, args, kwargs, result, error, call)
                )
            if self.meta_singles:
                values += tuple(
                    [
                        read(instance, args, kwargs, result, error, call)
                        for read in self.meta_singles
                    ]
                )
            values += self.meta_const
        except TrackingError:
            raise
        except Exception as exc:
            self._failed(tracker, exc, instance, args, kwargs, result, error)
            return
        cid, email, mobile, token = ident
        self._finish(tracker, cid, email, mobile, token, values)

    def _finish(
        self,
        tracker: Tracker,
        cid: object,
        email: object,
        mobile: object,
        token: object,
        values: tuple[object, ...],
    ) -> None:
        """Convert what was read, complete the identity and submit the draft."""
        try:
            for value in values:
                if type(value) not in _PLAIN_TYPES:
                    values = self._converted(tracker, values)
                    break
            identity = self._identity(tracker, cid, email, mobile, token)
        except TrackingError:
            raise
        except Exception as exc:
            _failed(tracker, self.name, self.qualname, "the event", exc, self.on_outcome)
            return
        _submit(tracker, self, identity, values)

    def _converted(self, tracker: Tracker, values: tuple[object, ...]) -> tuple[object, ...]:
        """Metadata values with the ones that are not plain converted (or left out)."""
        out: list[object] = []
        for key, label, value in zip(self.keys, self.labels[_META:], values, strict=True):
            if type(value) in _PLAIN_TYPES or value is None:
                out.append(value)
            elif value is MISSING:
                out.append(None)
            elif value is ABSENT:
                self._missing(tracker, key, label)
                out.append(None)
            else:
                out.append(plain_value(key, value))
        return tuple(out)

    def _identity(
        self, tracker: Tracker, cid: object, email: object, mobile: object, token: object
    ) -> tuple[object, ...] | None:
        """The general identity path: absent fields counted, the ambient one merged."""
        if cid is ABSENT or email is ABSENT or mobile is ABSENT or token is ABSENT:
            cid = self._present(tracker, "customer_id", cid)
            email = self._present(tracker, "email", email)
            mobile = self._present(tracker, "mobile", mobile)
            if token is ABSENT:  # nothing found: counted, and the ambient token is kept
                self._missing(tracker, "session_token", "session_token")
                token = UNSET
        # A token path that found None means the ambient token; a None constant, none.
        return complete_identity(cid, email, mobile, UNSET if token is MISSING else token)

    def _failed(
        self,
        tracker: Tracker,
        exc: Exception,
        instance: object,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        result: object,
        error: BaseException | None,
    ) -> None:
        """Count a failed read or conversion, naming the slot (found by reading again)."""
        role = "the event"
        if not isinstance(exc, InvalidEventError):
            role = self._culprit(instance, args, kwargs, result, error)
        what = self.described.get(role)
        role = f"{role} ({what})" if what else role
        _failed(tracker, self.name, self.qualname, role, exc, self.on_outcome)

    def _culprit(
        self,
        instance: object,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        result: object,
        error: BaseException | None,
    ) -> str:
        """Which slot raised: each one read again on its own (the failure path only)."""
        call = None
        try:
            if self.needs_call:
                call = call_of(self, instance, args, kwargs, result, error)
            if self.when is not None:
                self.when(instance, args, kwargs, result, error, call)
        except Exception:
            return "when"
        slots = [(self.labels[t], read) for t, read in self.id_singles]
        for reader, _, targets, raw in self.id_groups:
            slots += [(self.labels[t], _one(reader, n)) for n, t in zip(raw, targets, strict=True)]
        j = _META
        for reader, _, raw in self.meta_groups:
            for name in raw:
                slots.append((self.labels[j], _one(reader, name)))
                j += 1
        for read in self.meta_singles:
            slots.append((self.labels[j], read))
            j += 1
        for label, read in slots:
            try:
                read(instance, args, kwargs, result, error, call)
            except Exception:
                return label
        return "a value"

    def _missing(self, tracker: Tracker, field: str, role: str) -> None:
        tracker.missing(
            self.name,
            field,
            f"@track({self.name!r}) on {self.qualname}: {role} ({self.described.get(role)}) "
            "found nothing: an absent key or attribute on a value that is not None; "
            "the event is sent without it",
        )

    def _present(self, tracker: Tracker, field: str, value: object) -> object:
        if value is ABSENT:
            self._missing(tracker, field, field)
            return None
        return value


FastSource = tuple[str, tuple[Any, ...]]
"""A value the generated wrapper reads itself: ``(root, steps)`` of a compiled path."""


class FastSpec:
    """What a plan's generated wrapper reads straight-line (see :mod:`gbtrack._codegen`).

    Only the plain shapes: every slot a constant or a path from a parameter or
    ``result``; ``when`` absent or such a path; no callable or resolver; the customer id
    given or the ambient one; the session token left out or ``None``. Anything else
    has no spec and takes the general path.

    Attributes:
        roots: The roots read, in order of first use (parameter names or ``"result"``).
        when: The ``when`` path, or ``None``.
        identity: Customer id, email and mobile: ``None`` (not given: the ambient
            one's), a :class:`FastSource`, or a constant (only a non-blank str).
        keep_token: Whether the session token is the ambient one (left out) rather
            than ``None``.
        meta: One :class:`FastSource` or constant per metadata key, in the plan's order.
        constant: Which entries of ``meta`` are constants.
    """

    __slots__ = ("constant", "identity", "keep_token", "meta", "roots", "when")

    def __init__(
        self,
        roots: tuple[str, ...],
        when: FastSource | None,
        identity: tuple[object, object, object],
        keep_token: bool,
        meta: tuple[object, ...],
        constant: tuple[bool, ...],
    ) -> None:
        self.roots = roots
        self.when = when
        self.identity = identity
        self.keep_token = keep_token
        self.meta = meta
        self.constant = constant


_FAST_KINDS: Final = (
    inspect.Parameter.POSITIONAL_ONLY,
    inspect.Parameter.POSITIONAL_OR_KEYWORD,
    inspect.Parameter.KEYWORD_ONLY,
)


def _fast_source(plan: Plan, slot: object) -> FastSource | None:
    """The root and steps a slot reads, when the generated wrapper can read it itself."""
    if not isinstance(slot, _PathSlot):
        return None
    if slot.root != "result":
        if slot.root_reader not in plan.params:  # a reserved root or a resolver
            return None
        if plan.binder.params[slot.root][1] not in _FAST_KINDS:  # *args, **kwargs
            return None
    return (slot.root, slot.steps)


def _fast_spec(
    plan: Plan,
    identity: tuple[SlotReader | _Constant | _PathSlot | None, ...],
    when: object,
    meta: tuple[tuple[str, SlotReader | _Constant | _PathSlot], ...],
) -> FastSpec | None:
    """The plan's :class:`FastSpec`, or ``None`` when its shape takes the general path."""
    if plan.needs_call:
        return None
    roots: dict[str, None] = {}
    when_source = None
    if when is not None:
        when_source = _fast_source(plan, when)
        if when_source is None:
            return None
        roots.setdefault(when_source[0])
    token = identity[_TOKEN]
    if token is not None and not (isinstance(token, _Constant) and token.value is None):
        return None  # a token to convert: the general path
    fields: list[object] = []
    for slot in identity[:_TOKEN]:
        if slot is None:
            fields.append(None)
        elif isinstance(slot, _Constant):
            value = slot.value
            if type(value) is not str or not value.strip():
                return None  # a constant to convert
            fields.append(value)
        else:
            source = _fast_source(plan, slot)
            if source is None:
                return None
            roots.setdefault(source[0])
            fields.append(source)
    by_key: dict[str, object] = {}
    constant: dict[str, bool] = {}
    for key, slot in meta:
        if isinstance(slot, _Constant):
            by_key[key] = slot.value
            constant[key] = True
            continue
        source = _fast_source(plan, slot)
        if source is None:
            return None
        roots.setdefault(source[0])
        by_key[key] = source
        constant[key] = False
    return FastSpec(
        tuple(roots),
        when_source,
        (fields[_CID], fields[_EMAIL], fields[_MOBILE]),
        token is None,
        tuple(by_key[key] for key in plan.keys),
        tuple(constant[key] for key in plan.keys),
    )


def _groupable(slot: object) -> bool:
    """A path of one ``.name`` step from a parameter or a reserved root (not a resolver)."""
    return (
        isinstance(slot, _PathSlot)
        and len(slot.steps) == 1
        and slot.steps[0][0] == NAME
        and (slot.root_reader is not None or slot.root == "result")
    )


def _reader_of(slot: SlotReader | _PathSlot) -> SlotReader:
    return slot.read if isinstance(slot, _PathSlot) else slot


def _one(reader: SlotReader | None, name: str) -> SlotReader:
    """One name of a group, read on its own (to find the slot that raised)."""

    def read(
        i: object,
        a: tuple[Any, ...],
        k: dict[str, Any],
        r: object,
        e: BaseException | None,
        c: Call | None,
    ) -> object:
        return read_name(r if reader is None else reader(i, a, k, r, e, c), name)

    return read


def _failed(
    tracker: Tracker,
    name: str,
    qualname: str,
    role: str,
    exc: Exception,
    hook: OutcomeHook | None,
) -> None:
    invalid = isinstance(exc, InvalidEventError)
    tracker.drop(
        "invalid_event" if invalid else "resolver_error",
        f"event {name!r} from {qualname}: "
        + (str(exc) if invalid else f"resolving {role} raised {type(exc).__name__}"),
        function=qualname,
        exc=exc,
        about=("event", name, hook),
    )


def compile_plan(
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
    where: tuple[str, int] | None = None,
    tracker: Tracker | None = None,
    on_outcome: OutcomeHook | None = None,
) -> Plan | ConstantPlan:
    """Compile ``@track``'s arguments for ``func``, and check them against its annotations.

    Args:
        name: The event name.
        func: The decorated function (under ``classmethod``/``staticmethod``).
        customer_id: ``@track``'s argument.
        email: ``@track``'s argument.
        mobile: ``@track``'s argument.
        session_token: ``@track``'s argument (``UNSET``: the ambient token).
        metadata: ``@track``'s argument.
        when: ``@track``'s argument.
        on: ``@track``'s argument.
        is_async_gen: Whether ``func`` is an async generator function.
        where: The file and line of the ``@track(...)`` call, for the catalog.
        tracker: The tracker given to ``@track`` (``None``: the default one), whose
            ``strict_plan`` the plan check follows.
        on_outcome: ``@track``'s argument: the events' own outcome hook (``None``: none).

    Raises:
        ExpressionError: For an invalid name, expression, option or root, a path that
            cannot work on the annotated types, or metadata that breaks the event's
            schema; one error lists every type and plan problem.
    """
    compiler = _Compiler(name, func, on, is_async_gen)
    if not isinstance(name, str) or not name.strip():
        raise compiler.error(f"the event name must be a non-empty string, got {name!r}")
    identity = compiler.identity(customer_id, email, mobile, session_token)
    when_slot = compiler.slot(when, "when")
    meta: list[tuple[str, SlotReader | _Constant | _PathSlot]] = []
    if metadata is not None:
        if not isinstance(metadata, Mapping):
            raise compiler.error(f"metadata must be a mapping, got {type(metadata).__name__}")
        for key, spec in metadata.items():
            if not isinstance(key, str) or not key:
                raise compiler.error(f"metadata keys must be non-empty strings, got {key!r}")
            role = f"metadata[{key!r}]"
            compiler.meta_keys[role] = key
            slot = compiler.slot(spec, role)
            if isinstance(slot, _Constant):
                try:
                    value = plain_value(key, slot.value)
                except InvalidEventError as exc:
                    raise compiler.error(str(exc)) from None
                if value is not None:
                    meta.append((key, _Constant(value)))
                    compiler.constants[key] = value
                else:
                    del compiler.meta_keys[role]
            elif slot is not None:
                meta.append((key, slot))
            else:
                del compiler.meta_keys[role]
    compiler.check(where, tracker)
    if (
        when_slot is None
        and all(s is None or isinstance(s, _Constant) for s in identity)
        and all(isinstance(s, _Constant) for _, s in meta)
    ):
        cid, mail, phone, token = (s.value if isinstance(s, _Constant) else None for s in identity)
        return ConstantPlan(
            name,
            compiler.qualname,
            (cid, mail, phone, UNSET if identity[3] is None else token),
            tuple(key for key, _ in meta),
            tuple(s.value for _, s in meta if isinstance(s, _Constant)),  # type: ignore[misc]
            compiler.site,
            on_outcome,
        )
    if isinstance(when_slot, _Constant):
        const_when = when_slot.value
        when_slot = lambda i, a, k, r, e, c: const_when  # noqa: E731
    when_reader = when_slot.read if isinstance(when_slot, _PathSlot) else when_slot
    return Plan(
        compiler,
        func,
        identity,
        when_reader,
        tuple(meta),
        when_path=when_slot,
        on_outcome=on_outcome,
    )
