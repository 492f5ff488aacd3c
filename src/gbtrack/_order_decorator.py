"""``@track_order``: a purchase as a Gameball order, with ``@track``'s machinery.

Each argument is compiled at decoration by :class:`gbtrack._plan._Compiler` (a path,
:func:`~gbtrack.literal` or a callable; roots checked, types checked against the
annotations, the site registered for :func:`gbtrack.check` and ``gbtrack events``);
``each(path, **fields)`` maps the elements of a list to line items, its inner paths
rooted at one element and checked against the list's element type. The wrapper is
the one :mod:`gbtrack._codegen` writes for every callable kind (its general path: an
order is not on ``@track``'s fast path). At call time the plan reads the values,
completes the identity from :func:`gbtrack.identify`, converts them with
:func:`gbtrack._order.order_draft` on the caller's thread and hands the
:class:`~gbtrack.OrderDraft` to ``tracker.submit_order``; a failure is a counted drop
(``resolver_error``, ``invalid_event``), raised only when the tracker is ``strict``.

A plan of the plain shapes emits through :class:`_FastOrder` instead (not under
``_codegen.mode == "general"``): each root read once, each level of names in one C
call, ``each()``'s elements by a loop :func:`gbtrack._codegen.build_rows` generates,
plain values kept as they are; the very draft the general path builds. Anything it
does not handle runs the general path from the start (tests/test_track_order_paths.py
holds the two to one behaviour).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import keyword
import math
import operator
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, Protocol, cast

import wrapt
from pydantic import SecretStr

import gbtrack._codegen as _codegen
from gbtrack._call import Call
from gbtrack._checks import OrderSite, TypedPath, first_call
from gbtrack._codegen import RowField, build_rows, build_wrapper, shape_of
from gbtrack._context import complete_identity
from gbtrack._decorator import On, _call_site, _Decorator, _target
from gbtrack._errors import ConfigurationError, ExpressionError, InvalidEventError, TrackingError
from gbtrack._expr import (
    _KIND_CACHE,
    _OTHER,
    _SEQUENCE,
    ABSENT,
    MISSING,
    NAME,
    Step,
    _kind_of,
    compile_steps,
    literal,
    parse,
)
from gbtrack._order import (
    LINE_ITEM_FIELDS,
    OrderDraft,
    _amount,
    _convert,
    _extra,
    _merchant,
    _redemption,
    _text,
    check_channel,
    check_return_window,
    each,
    line_item,
    now_timestamp,
    order_draft,
    utc_timestamp,
)
from gbtrack._plan import (
    SlotReader,
    _callable_return,
    _Compiler,
    _Constant,
    _PathSlot,
    call_of,
)
from gbtrack._state import CallSink
from gbtrack._typecheck import Deferred, Leaf, PathTypeError, element_type, walk_steps
from gbtrack._types import UNSET, Unset
from gbtrack.senders._base import SenderTraits

__all__ = ["OrderSink", "orders_refused", "sender_takes_orders", "track_order"]

Expr = str | Callable[[Call], object]

_now = time.time

# The optional arguments read from the call, in the order order_draft() takes them.
_AMOUNTS: Final = ("total_paid", "total_price", "total_discount", "total_shipping", "total_tax")
_SIMPLE: Final = (
    "order_id",
    *_AMOUNTS,
    "order_date",
    "guest",
    "channel",
    "cart_id",
    "return_window_days",
)
_NESTED: Final = ("extra", "merchant", "redemption")
_TEXT_FIELDS: Final = frozenset({"product_id", "sku", "title", "vendor"})
_LINE_AMOUNTS: Final = frozenset({"quantity", "price", "weight", "taxes", "discount"})
# What an order argument's value must be, for the type checks (the rest: anything).
_LEAVES: Final[dict[str, Leaf]] = {
    **dict.fromkeys(_AMOUNTS, "amount"),
    "order_id": "identity",
    "cart_id": "identity",
}


class OrderSink(CallSink, Protocol):
    """What an order's call site uses of a tracker: a call site's, and ``submit_order``."""

    def submit_order(self, draft: OrderDraft) -> bool:
        """Hand one order draft on; ``False`` when it was dropped."""


# --- which senders take orders ------------------------------------------------------------
def sender_takes_orders(traits: SenderTraits | None) -> bool:
    """Whether a sender attached with ``traits`` takes :class:`~gbtrack.OrderDraft`s.

    The one place that reads it (``SenderTraits.takes_orders``: ``False`` for a
    ``BackgroundSender`` without a secret key, and for senders that declare nothing).
    """
    return traits is not None and traits.takes_orders


ORDERS_FIX: Final = (
    "orders go to Gameball's Order API, which needs the secret key as well as the API "
    "key: configure secret_key=... (or GAMEBALL_SECRET_KEY), or use a sender that takes "
    "orders"
)


def orders_refused(tracker: object) -> str | None:
    """Why ``tracker``'s sender refuses orders, or ``None`` (none yet, or it takes them)."""
    sender = getattr(tracker, "_sender", None)
    if sender is None:
        return None  # created on first use: judged then
    if sender_takes_orders(getattr(tracker, "_traits", None)):
        return None
    return f"the tracker's sender ({type(sender).__name__}) does not take orders; {ORDERS_FIX}"


# --- compiling ----------------------------------------------------------------------------
class _OrderCompiler(_Compiler):
    """``@track``'s compiler, with ``@track_order`` in its messages and an OrderSite."""

    site_class = OrderSite

    def __init__(self, func: Callable[..., Any], on: str, is_async_gen: bool) -> None:
        super().__init__("order", func, on, is_async_gen)
        self.globalns = getattr(inspect.unwrap(func), "__globals__", None)
        self.callables: dict[str, Callable[..., Any]] = {}
        self.needs_call_each = False  # an each() field is a callable of the element

    def error(self, message: str, **fields: Any) -> ExpressionError:
        return ExpressionError(
            f"@track_order on {self.qualname}: {message}", function=self.qualname, **fields
        )

    def value(self, spec: object, role: str) -> SlotReader | _Constant | _PathSlot | None:
        """A path, literal or callable as ``@track`` compiles it; other values are constants."""
        if spec is None or isinstance(spec, str) or callable(spec):
            if callable(spec) and not isinstance(spec, str):
                self.callables[role] = spec
            return self.slot(spec, role)
        if isinstance(spec, (Mapping, each)):
            raise self.error(f"{role}: a {type(spec).__name__} is not accepted here")
        self.sources[role] = repr(spec)
        return _Constant(spec)

    def leaf(self, role: str, leaf: Leaf) -> None:
        """What ``role``'s path (or callable's return annotation) must give."""
        if leaf == "any":
            return
        for at, typed in enumerate(self.typed):
            if typed.role == role:
                self.typed[at] = dataclasses.replace(typed, leaf=leaf)
        func = self.callables.get(role)
        if func is not None and role not in {t.role for t in self.typed}:
            # @track checks only identity callables' return annotations; orders check
            # the amounts' and ids' too.
            self.typed.append(
                TypedPath(
                    role,
                    None,
                    None,
                    functools.partial(_callable_return, func),
                    (),
                    leaf,
                    self.sources.get(role, ""),
                )
            )

    def constant(self, slot: object, role: str, check: Callable[[object], object]) -> None:
        """Check a constant now: a mistake is a decoration error, not a drop per call."""
        if isinstance(slot, _Constant) and slot.value is not None:
            try:
                check(slot.value)
            except InvalidEventError as exc:
                raise self.error(str(exc)) from None

    def tree(self, spec: object, role: str) -> _Tree | None:
        """``extra``/``merchant``/``redemption``: a mapping of names to values, or one value."""
        if spec is None:
            return None
        if not isinstance(spec, Mapping):
            return _Tree(self.value(spec, role), None)
        items: dict[str, _Tree | None] = {}
        for key, sub in spec.items():
            if not isinstance(key, str) or not key:
                raise self.error(f"{role} keys must be non-empty strings, got {key!r}")
            items[key] = self.tree(sub, f"{role}[{key!r}]")
        return _Tree(None, items)

    def lines(self, spec: object) -> _Lines | SlotReader | _Constant | _PathSlot | None:
        """``line_items``: ``each(...)``, or a path/callable giving a list of mappings."""
        if not isinstance(spec, each):
            return self.value(spec, "line_items")
        outer = self.slot(spec.path, "line_items")
        assert isinstance(outer, _PathSlot)
        typed = self.typed[-1]
        self.typed[-1] = dataclasses.replace(typed, leaf="iterable")
        element = functools.partial(_element_root, typed.root_type, typed.steps, self.globalns)
        fields: list[tuple[str, Callable[[object], object] | None, object]] = []
        # Each field's steps from the element (None: a constant; ... a callable).
        paths: list[tuple[Step, ...] | None] = []
        for name, inner in spec.fields.items():
            role = f"line_items.{name}"
            if isinstance(inner, literal):
                self.sources[role] = f"literal({str(inner)!r})"
                fields.append((name, None, str(inner)))
                paths.append(None)
            elif isinstance(inner, str):
                steps = self.inner_path(inner, role, element, name)
                fields.append((name, compile_steps(steps), None))
                paths.append(steps)
            elif callable(inner):
                self.sources[role] = f"callable of the element {_qualname(inner)}"
                fields.append((name, _present_call(inner), None))
                self.needs_call_each = True
                paths.append(None)
            elif inner is None:
                continue
            else:
                self.sources[role] = repr(inner)
                fields.append((name, None, inner))
                paths.append(None)
        return _Lines(outer, tuple(fields), tuple(paths))

    def inner_path(
        self, text: str, role: str, element: Callable[[], Any], name: str
    ) -> tuple[Step, ...]:
        """A path rooted at one element of the list: ``"product.id"`` reads ``line.product.id``."""
        try:
            path = parse(text)
        except ExpressionError as exc:
            raise self.error(f"{role}: {exc}", expression=text) from None
        steps = ((NAME, path.root), *path.steps)
        self.sources[role] = text
        self.described[role] = f"the path {text!r} of each element"
        leaf: Leaf = (
            "identity" if name in _TEXT_FIELDS else "amount" if name in _LINE_AMOUNTS else "any"
        )
        self.typed.append(TypedPath(role, None, text, element, steps, leaf))
        return steps


def _check_guest(value: object) -> None:
    if type(value) is not bool:
        raise InvalidEventError(f"guest must be a bool, got {value!r}", field="guest")


def _qualname(func: object) -> str:
    return str(getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or func)


def _present_call(func: Callable[[object], object]) -> Callable[[object], object]:
    return lambda element: func(element)


def _element_root(
    outer: Callable[[], Any], steps: tuple[Any, ...], globalns: dict[str, Any] | None
) -> Any:
    """The element type of the list ``each()`` maps.

    ``Any`` when the outer path is wrong: that path's own check reports it.
    """
    try:
        tp = walk_steps(outer(), steps, globalns=globalns)[0]
        return element_type(tp, globalns)
    except PathTypeError:
        return Any
    except Deferred:
        raise


class _Tree:
    """A nested argument: one compiled value, or named sub-trees."""

    __slots__ = ("items", "slot")

    def __init__(
        self, slot: SlotReader | _Constant | _PathSlot | None, items: dict[str, _Tree | None] | None
    ) -> None:
        self.slot = slot
        self.items = items


class _Lines:
    """``each()`` compiled: the list's reader and each field's reader of one element."""

    __slots__ = ("fields", "outer", "paths", "read")

    def __init__(
        self,
        outer: _PathSlot,
        fields: tuple[tuple[str, Callable[[object], object] | None, object], ...],
        paths: tuple[tuple[Step, ...] | None, ...],
    ) -> None:
        self.outer = outer
        self.read = outer.read
        self.fields = fields
        self.paths = paths  # each field's steps from the element (None: not a path)


class _Found:
    """A call's reads: counts what a path did not find (ABSENT) as ``@track`` does."""

    __slots__ = ("args", "call", "error", "instance", "kwargs", "plan", "result", "role", "tracker")

    def __init__(self, plan: OrderPlan, tracker: OrderSink, *frame: Any) -> None:
        self.plan, self.tracker = plan, tracker
        self.instance, self.args, self.kwargs, self.result, self.error, self.call = frame
        self.role = "the order"

    def read(self, slot: object, role: str) -> object:
        if slot is None:
            return None
        if isinstance(slot, _Constant):
            return slot.value
        self.role = role
        read = slot.read if isinstance(slot, _PathSlot) else slot
        value = read(  # type: ignore[operator]
            self.instance, self.args, self.kwargs, self.result, self.error, self.call
        )
        return self.present(value, role)

    def present(self, value: object, role: str) -> object:
        if value is MISSING:
            return None
        if value is ABSENT:
            self.plan.missing(self.tracker, role)
            return None
        return value

    def tree(self, tree: _Tree | None, role: str) -> object:
        if tree is None:
            return None
        if tree.items is None:
            return self.read(tree.slot, role)
        out = {}
        for key, sub in tree.items.items():
            value = self.tree(sub, f"{role}[{key!r}]")
            if value is not None:
                out[key] = value
        return out

    def lines(self, spec: object) -> object:
        if not isinstance(spec, _Lines):
            return self.read(spec, "line_items")
        self.role = "line_items"
        found = self.present(
            spec.read(self.instance, self.args, self.kwargs, self.result, self.error, self.call),
            "line_items",
        )
        if found is None:
            return None
        if isinstance(found, (str, bytes, Mapping)) or not hasattr(found, "__iter__"):
            raise InvalidEventError(
                f"line_items must be a list of line items, got {type(found).__name__}",
                field="line_items",
            )
        items = []
        for element in found:
            item: dict[str, object] = {}
            for name, read, constant in spec.fields:
                role = f"line_items.{name}"
                self.role = role
                value = constant if read is None else self.present(read(element), role)
                if value is not None:
                    item[name] = value
            items.append(item)
        return items


class OrderPlan:
    """The compiled order of one ``@track_order``: its readers, and its call-time entry."""

    __slots__ = (
        "binder",
        "described",
        "emitter",
        "function",
        "identity",
        "lines",
        "needs_call",
        "nested",
        "on_outcome",
        "pending",
        "qualname",
        "simple",
        "site",
        "when",
    )

    fast = None  # never @track's straight-line path

    def __init__(
        self,
        compiler: _OrderCompiler,
        function: Callable[..., Any],
        identity: tuple[object, object, object, object],
        simple: tuple[tuple[str, object], ...],
        nested: tuple[tuple[str, _Tree | None], ...],
        lines: object,
        when: object,
        on_outcome: Callable[[Any], object] | None,
    ) -> None:
        self.qualname = compiler.qualname
        self.function = function
        self.binder = compiler.binder
        self.needs_call = compiler.needs_call
        self.described = compiler.described
        self.site = compiler.site
        self.pending = compiler.pending
        self.identity = identity
        self.simple = simple
        self.nested = nested
        self.lines = lines
        self.when = when
        self.on_outcome = on_outcome
        self.emitter = self.emit
        if _codegen.mode != "general" and not self.needs_call:
            fast = _FastOrder.of(self, compiler)
            if fast is not None:
                self.emitter = fast.emit

    def missing(self, tracker: OrderSink, role: str) -> None:
        tracker.missing(
            "order",
            role,
            f"@track_order on {self.qualname}: {role} ({self.described.get(role)}) found "
            "nothing: an absent key or attribute on a value that is not None; the order is "
            "sent without it",
        )

    def emit(
        self,
        tracker: Any,
        instance: object,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        result: object,
        error: BaseException | None,
    ) -> None:
        """Read, convert and submit one order; never raises unless strict."""
        sink = cast(OrderSink, tracker)
        if self.pending is not None and first_call(self, tracker):
            return
        found: _Found | None = None
        try:
            call = call_of(self, instance, args, kwargs, result, error) if self.needs_call else None
            found = _Found(self, sink, instance, args, kwargs, result, error, call)
            if self.when is not None:
                found.role = "when"
                if not found.read(self.when, "when"):
                    sink.count("skipped")
                    return
            cid, email, mobile, token = (
                found.read(slot, role)
                for slot, role in zip(self.identity, _IDENTITY_ROLES, strict=True)
            )
            values = {role: found.read(slot, role) for role, slot in self.simple}
            values.update((role, found.tree(tree, role)) for role, tree in self.nested)
            values["line_items"] = found.lines(self.lines)
            found.role = "the identity"
            token_slot = self.identity[3]
            if token_slot is None:
                token = UNSET  # left out: the ambient token
            elif token is None and not isinstance(token_slot, _Constant):
                token = UNSET  # a path that found None: the ambient token, as @track
            identity = complete_identity(cid, email, mobile, token)
            if identity is None:
                sink.no_customer("order", self.qualname, about=("order", None, self.on_outcome))
                return
            found.role = "the order"
            draft = order_draft(
                customer_id=identity[0],
                email=identity[1],
                mobile=identity[2],
                session_token=identity[3],
                function=self.qualname,
                now=_now(),
                on_outcome=self.on_outcome,
                **values,
            )
        except TrackingError:
            raise
        except InvalidEventError as exc:
            sink.drop(
                "invalid_event",
                f"order from {self.qualname}: {exc}",
                function=self.qualname,
                exc=exc,
                about=("order", None, self.on_outcome),
            )
            return
        except Exception as exc:
            role = found.role if found is not None else "the order"
            what = self.described.get(role)
            sink.drop(
                "resolver_error",
                f"order from {self.qualname}: resolving {role}"
                + (f" ({what})" if what else "")
                + f" raised {type(exc).__name__}",
                function=self.qualname,
                exc=exc,
                about=("order", None, self.on_outcome),
            )
            return
        sink.submit_order(draft)


_IDENTITY_ROLES: Final = ("customer_id", "email", "mobile", "session_token")


# --- the fast path ------------------------------------------------------------------------
class _Bail(Exception):
    """Something only the general path handles: it reads the call again and reports."""


class _Ineligible(Exception):
    """A plan the fast path does not take (decoration time)."""


Out = list[object]
TreeReader = Callable[[object, Out], None]
_PLAIN_KINDS: Final = (_OTHER, _SEQUENCE)  # what read_name reads attributes of


def _tree_reader(
    paths: list[tuple[int, tuple[Step, ...]]], index: dict[int, int], start: int
) -> tuple[TreeReader, int]:
    """Read several paths from one value by appending to a list: one C call per level.

    A level's names are read with one :func:`operator.attrgetter` (or ``itemgetter``
    on a ``dict``) when :func:`~gbtrack._expr.read_name` would read them as attributes
    (or keys); each path's value lands at ``index[path id]``, from ``start`` on (the
    next free index is returned). ``None`` stands for ``MISSING``. Anything else
    (a name not found, a mapping or a refused type on the way) raises: the general
    path reads again and reports.
    """
    groups: dict[str, list[tuple[int, tuple[Step, ...]]]] = {}
    direct: list[int] = []
    other: list[tuple[int, tuple[Step, ...]]] = []
    for pid, steps in paths:
        if not steps:
            direct.append(pid)
        elif steps[0][0] == NAME:
            groups.setdefault(cast(str, steps[0][1]), []).append((pid, steps[1:]))
        else:
            other.append((pid, steps))
    names = tuple(groups)
    for j, name in enumerate(names):
        for pid, rest in groups[name]:
            if not rest:
                index[pid] = start + j
    at = start + len(names)
    for pid in direct:
        index[pid], at = at, at + 1
    others: list[Callable[[object], object]] = []
    for pid, steps in other:
        index[pid], at = at, at + 1
        others.append(compile_steps(steps))
    deeper: list[tuple[int, TreeReader]] = []
    for j, name in enumerate(names):
        below = [(pid, rest) for pid, rest in groups[name] if rest]
        if below:
            child, at = _tree_reader(below, index, at)
            deeper.append((j, child))
    attrs = operator.attrgetter(*names) if names else None
    items = operator.itemgetter(*names) if names else None
    single = len(names) == 1
    kinds = _KIND_CACHE

    def read_names(value: object, out: Out) -> None:  # the common level: names only
        cls = type(value)
        if cls is dict:
            got = items(value)  # type: ignore[misc,arg-type]  # KeyError: absent
        else:
            kind = kinds.get(cls)
            if kind is None:
                kind = _kind_of(cls)
            if kind not in _PLAIN_KINDS:
                raise _Bail
            got = attrs(value)  # type: ignore[misc]  # AttributeError: absent
        out += (got,) if single else got

    if attrs is not None and not (direct or others or deeper):
        return read_names, at

    def read(value: object, out: Out) -> None:
        got: Any = ()
        if attrs is not None:
            cls = type(value)
            if cls is dict:
                got = items(value)  # type: ignore[misc,arg-type]  # KeyError: absent
            else:
                kind = kinds.get(cls)
                if kind is None:
                    kind = _kind_of(cls)
                if kind not in _PLAIN_KINDS:
                    raise _Bail
                got = attrs(value)  # AttributeError: absent
            if single:
                got = (got,)
            out += got
        for _ in direct:
            out.append(value)
        for reader in others:
            found = reader(value)
            if found is ABSENT:
                raise _Bail
            out.append(found)
        for j, child in deeper:
            child(got[j], out)

    return read, at


class _Layout:
    """Where each value of a call goes in one flat list, and the readers that fill it.

    Constants come first (set once); the paths' values follow, appended root by root.
    """

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.params = params
        self.slots: list[object] = []
        self.groups: dict[str, list[tuple[int, tuple[Step, ...]]]] = {}

    def place(self, slot: object, root: str | None = None) -> int:
        """Give ``slot`` an id: a constant, or a path from a parameter or ``result``."""
        pid = len(self.slots)
        self.slots.append(slot)
        if isinstance(slot, _PathSlot):
            if slot.root != "result" and slot.root not in self.params:
                raise _Ineligible
            self.groups.setdefault(slot.root, []).append((pid, slot.steps))
        elif slot is not None and not isinstance(slot, _Constant):
            raise _Ineligible
        return pid

    def finish(self) -> tuple[Out, list[tuple[str, TreeReader]], dict[int, int]]:
        """The constants' list, each root's reader and each id's index."""
        index: dict[int, int] = {}
        constants: Out = []
        for pid, slot in enumerate(self.slots):
            if not isinstance(slot, _PathSlot):
                index[pid] = len(constants)
                constants.append(slot.value if isinstance(slot, _Constant) else None)
        readers = []
        at = len(constants)
        for root, paths in self.groups.items():
            reader, at = _tree_reader(paths, index, at)
            readers.append((root, reader))
        return constants, readers, index


def _guest(value: object) -> bool:
    if type(value) is not bool:
        raise _Bail
    return value


def _cashback(value: object) -> dict[str, int]:
    return {"returnWindow": check_return_window(value)}


# The optional simple arguments: role -> (wire key, conversion, placed after the lines).
_OPTIONAL: Final[dict[str, tuple[str, Callable[[object], object], bool]]] = {
    **{
        role: (key, functools.partial(_amount, field=role), False)
        for role, key in (
            ("total_price", "totalPrice"),
            ("total_discount", "totalDiscount"),
            ("total_shipping", "totalShipping"),
            ("total_tax", "totalTax"),
        )
    },
    "guest": ("guest", _guest, True),
    "channel": ("channel", check_channel, True),
    "cart_id": ("cartId", functools.partial(_text, field="cart_id"), True),
    "return_window_days": ("cashbackConfigurations", _cashback, True),
}
_INF: Final = math.inf
_new = tuple.__new__


class _FastOrder:
    """A plan's straight-line emitter for the plain shapes, beside its general path.

    Taken when every argument (``extra``/``merchant``/``redemption``'s values
    included) is a constant or a path from a parameter or ``result`` (no callable,
    resolver or reserved root but ``result``), ``each()``'s fields are name paths or
    constants, and ``session_token`` is left out. Each root is read once, each level of names in
    one C call, into one flat list; plain values (exact ``str`` texts, finite
    non-negative ``int``/``float`` amounts) are kept as they are, others converted
    by the same functions :func:`~gbtrack._order.order_draft` uses. Anything else (a
    path found nothing or met ``None`` on the way, a conversion failed, no customer,
    ``when`` false, a list that is not a ``list``/``tuple``) runs the plan's general
    path from the start, which reads again and reports exactly as it always has (a
    property read on the way runs once more), as ``@track``'s generated path does.
    """

    __slots__ = (
        "at",
        "constants",
        "date_at",
        "lines_at",
        "nested",
        "optional",
        "plan",
        "roots",
        "rows",
        "when_at",
    )

    def __init__(self, plan: OrderPlan) -> None:
        self.plan = plan
        self.roots: tuple[tuple[Callable[..., object] | None, TreeReader], ...] = ()
        self.constants: Out = []
        self.at: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)
        self.when_at: int | None = None
        self.date_at: int | None = None
        self.lines_at: int | None = None
        self.optional: tuple[tuple[int, str, Callable[[object], object], bool], ...] = ()
        self.rows: Callable[[Any], list[dict[str, object]]] | None = None
        # extra, merchant, redemption: (wire key, conversion, the tree of value indices)
        self.nested: tuple[tuple[str, Callable[[object], object], _Node], ...] = ()

    @classmethod
    def of(cls, plan: OrderPlan, compiler: _OrderCompiler) -> _FastOrder | None:
        """The fast emitter of ``plan``, or ``None`` when it takes the general path only."""
        lines = plan.lines
        if compiler.needs_call_each or plan.identity[3] is not None:
            return None
        fast = cls(plan)
        layout = _Layout(compiler.binder.params)
        simple = dict(plan.simple)
        try:
            ids = [layout.place(slot) for slot in plan.identity[:3]]
            ids += [layout.place(simple["order_id"]), layout.place(simple["total_paid"])]
            when = None if plan.when is None else layout.place(plan.when)
            date = layout.place(simple["order_date"]) if "order_date" in simple else None
            optional = [
                (layout.place(slot), *_OPTIONAL[role])
                for role, slot in plan.simple
                if role in _OPTIONAL
            ]
            outer = layout.place(lines.outer if isinstance(lines, _Lines) else lines)
            nested = [(role, _place_tree(layout, tree)) for role, tree in plan.nested]
        except _Ineligible:
            return None
        fast.constants, readers, index = layout.finish()
        fast.roots = tuple(
            (None if root == "result" else compiler.binder.reader(root), reader)
            for root, reader in readers
        )
        fast.at = cast(Any, tuple(index[pid] for pid in ids))
        fast.when_at = None if when is None else index[when]
        fast.date_at = None if date is None else index[date]
        fast.optional = tuple((index[pid], *rest) for pid, *rest in optional)  # type: ignore[misc]
        fast.nested = tuple(
            (role, _NESTED_CONVERT[role], _indexed(node, index)) for role, node in nested
        )
        if lines is not None:
            fast.lines_at = index[outer]
            fast.rows = _rows(lines) if isinstance(lines, _Lines) else _mapped_rows
            if fast.rows is None:
                return None
        return fast

    def emit(
        self,
        tracker: Any,
        instance: object,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        result: object,
        error: BaseException | None,
    ) -> None:
        """Read, convert and submit one order; the general path for anything unusual."""
        plan = self.plan
        if plan.pending is not None:
            plan.emit(tracker, instance, args, kwargs, result, error)
            return
        try:
            out = self.constants.copy()
            for param, read in self.roots:
                read(result if param is None else param(instance, args, kwargs), out)
            if self.when_at is not None:
                flag = out[self.when_at]
                if flag is None or flag is MISSING or not flag:
                    raise _Bail  # the general path counts the skip
            cid, email, mobile, oid_at, paid_at = self.at
            identity = complete_identity(out[cid], out[email], out[mobile], UNSET)
            if identity is None:
                raise _Bail
            value = out[oid_at]
            oid = value if type(value) is str and value.strip() else _text(value, "order_id")
            if oid is None:
                raise _Bail
            value = out[paid_at]
            paid = (
                value
                if (type(value) is float or type(value) is int) and 0 <= value < _INF
                else _amount(value, "total_paid")
            )
            now = _now()
            value = None if self.date_at is None else out[self.date_at]
            date = now_timestamp(now) if value is None or value is MISSING else utc_timestamp(value)
            fields: list[tuple[str, object]] = []
            after: list[tuple[str, object]] = []
            if self.optional:
                for at, key, convert, late in self.optional:
                    value = out[at]
                    if value is not None and value is not MISSING:
                        converted = convert(value)
                        if converted is not None:
                            (after if late else fields).append((key, converted))
            rows = self.rows
            if rows is not None:
                elements = out[self.lines_at]  # type: ignore[index]
                if elements is not None and elements is not MISSING:
                    if type(elements) is not list and type(elements) is not tuple:
                        raise _Bail  # another iterable: read once, by the general path
                    fields.append(("lineItems", rows(elements)))
            for key, convert, node in self.nested:
                value = _tree_value(node, out)
                if value is not None:
                    converted = convert(value)
                    if converted is not None:
                        fields.append((key, converted))
            if after:
                fields += after
        except Exception:
            plan.emit(tracker, instance, args, kwargs, result, error)
            return
        sink: OrderSink = tracker
        sink.submit_order(
            _new(
                OrderDraft,
                (*identity, oid, paid, date, tuple(fields), plan.qualname, now, plan.on_outcome),
            )
        )


_Node = int | tuple[tuple[str, "_Node"], ...]
"""A nested argument laid out: a value's id (or index), or named sub-trees."""

# The nested arguments' conversions, as order_draft() applies them.
_NESTED_CONVERT: Final[dict[str, Callable[[object], object]]] = {
    "extra": functools.partial(_extra, field="extra"),
    "merchant": _merchant,
    "redemption": _redemption,
}


def _place_tree(layout: _Layout, tree: _Tree | None) -> _Node:
    """Give each value of a nested argument an id (``_Found.tree``'s shape)."""
    if tree is None:
        raise _Ineligible  # not given: the plan holds no such tree
    if tree.items is None:
        return layout.place(tree.slot)
    return tuple((key, _place_tree(layout, sub)) for key, sub in tree.items.items() if sub)


def _indexed(node: _Node, index: dict[int, int]) -> _Node:
    if isinstance(node, int):
        return index[node]
    return tuple((key, _indexed(sub, index)) for key, sub in node)


def _tree_value(node: _Node, out: Out) -> object:
    """A nested argument's value as ``_Found.tree`` gives it (``None`` entries left out)."""
    if type(node) is int:
        value = out[node]
        return None if value is MISSING else value
    found = {}
    for key, sub in node:  # type: ignore[union-attr]
        value = _tree_value(sub, out)
        if value is not None:
            found[key] = value
    return found


def _mapped_rows(elements: list[object] | tuple[object, ...]) -> list[dict[str, object]]:
    """``line_items`` as a path to mappings: each converted as ``order_draft`` does."""
    return [line_item(item, index) for index, item in enumerate(elements)]


def _rows(lines: _Lines) -> Callable[[Any], list[dict[str, object]]] | None:
    """``each()``'s generated loop (:func:`gbtrack._codegen.build_rows`), or ``None``.

    ``None`` when a field's path steps by index or key, or names something that is not
    an identifier: those take the general path.
    """
    fields: list[RowField] = []
    kinds: list[tuple[str, str, str]] = []
    for (name, _read, constant), steps in zip(lines.fields, lines.paths, strict=True):
        key, kind = LINE_ITEM_FIELDS[name]
        kinds.append((key, kind, name))
        check: Literal["text", "amount"] | None = (
            "text" if kind == "text" else "amount" if kind == "amount" else None
        )
        if steps is None:  # a constant: kept as it is when plain, or converted per element
            plain = (
                (type(constant) is str and constant.strip())
                if kind == "text"
                else (
                    type(constant) in (int, float) and 0 <= constant < _INF  # type: ignore[operator]
                )
            )
            fields.append((key, None, constant, check if plain else None))
            continue
        names = tuple(arg for step_kind, arg in steps if step_kind == NAME)
        if len(names) != len(steps) or not all(
            isinstance(n, str) and n.isidentifier() and not keyword.iskeyword(n) for n in names
        ):
            return None
        fields.append((key, cast(tuple[str, ...], names), None, check))
    return build_rows(tuple(fields), functools.partial(_line_item, tuple(kinds)), _Bail)


def _line_item(
    kinds: tuple[tuple[str, str, str], ...], index: int, values: tuple[object, ...]
) -> dict[str, object]:
    """One line item whose values are not all plain: converted as ``line_item()`` does."""
    item: dict[str, object] = {}
    for (key, kind, name), value in zip(kinds, values, strict=True):
        if value is not None and value is not MISSING:
            converted = _convert(value, kind, f"line_items[{index}].{name}")
            if converted is not None:
                item[key] = converted
    return item


def track_order(
    *,
    order_id: Expr | int | None = None,
    total_paid: Expr | float | None = None,
    customer_id: Expr | int | None = None,
    order_date: Expr | None = None,
    total_price: Expr | float | None = None,
    total_discount: Expr | float | None = None,
    total_shipping: Expr | float | None = None,
    total_tax: Expr | float | None = None,
    line_items: each | Expr | None = None,
    email: Expr | None = None,
    mobile: Expr | None = None,
    session_token: Expr | SecretStr | Unset | None = UNSET,
    guest: Expr | bool | None = None,
    channel: Expr | None = None,
    extra: Mapping[str, object] | Expr | None = None,
    merchant: Mapping[str, object] | Expr | None = None,
    redemption: Mapping[str, object] | Expr | None = None,
    cart_id: Expr | int | None = None,
    return_window_days: Expr | int | None = None,
    when: Expr | None = None,
    on: On = "success",
    tracker: Any = None,
    on_outcome: Callable[[Any], object] | None = None,
) -> _Decorator:
    """Send a Gameball order each time the decorated function completes.

    The Order API is what earns a customer points for a purchase, and it records the
    ``place_order`` event itself. Works for every callable kind ``@track`` does (plain
    functions, coroutines, generators, async generators, methods), with the same rules:
    every argument is a path string, a :func:`~gbtrack.literal` or a callable
    ``func(call) -> value`` (numbers and booleans may be given as constants), compiled
    here and checked against the annotations; mistakes raise
    :class:`~gbtrack.ExpressionError` naming the function, the expression and the
    nearest names. The order is sent after the call (``on=``, ``when=`` as for
    ``@track``); missing identity comes from :func:`gbtrack.identify`; a value that
    cannot be read or converted is a counted drop (``resolver_error``,
    ``invalid_event``), raised only when the tracker is ``strict``.

    Args:
        order_id: The order's id (case kept; ints and UUIDs converted). Required.
        total_paid: What the customer paid after discounts; points are computed on it
            (``Decimal`` converted). Required.
        customer_id: The customer; missing: the ambient :func:`gbtrack.identify` one.
        order_date: When the order was placed (``datetime``, ``date``, ISO string;
            naive taken as UTC); left out: the time of the call.
        total_price: Optional total before discounts (history only).
        total_discount: Optional total discount.
        total_shipping: Optional shipping total.
        total_tax: Optional tax total.
        line_items: ``each("result.lines", product_id="product.id", ...)``: each
            element of the list becomes a line item, its paths rooted at the element;
            or a path/callable giving a list of mappings of line item fields.
        email: Optional email for channel merging.
        mobile: Optional mobile for channel merging.
        session_token: As for ``@track`` (left out: the ambient token).
        guest: Whether the customer is a guest.
        channel: ``mobile``, ``pos``, ``web`` or ``callcenter`` (a literal is checked here).
        extra: Key -> value (strings or numbers), or one path to a mapping.
        merchant: ``{"unique_id": ..., "name": ..., "branch": {...}}``.
        redemption: ``{"points_hold_reference": ..., "coupons_lock_reference": ...,
            "coupon_codes": ...}``.
        cart_id: Optional cart id.
        return_window_days: Days the cashback stays pending (0 to 7,300; a constant
            is checked here).
        when: Send only when this expression or callable is truthy.
        on: ``"success"``, ``"error"`` or ``"always"``, as for ``@track``.
        tracker: The tracker to use; ``None`` looks the default one up at each call.
            A tracker given here whose sender cannot take orders (no secret key) is
            refused now with :class:`~gbtrack.ConfigurationError`.
        on_outcome: Called with each order's final delivery outcome, where the sender
            reports outcomes.

    Returns:
        The decorator.

    Raises:
        ExpressionError: For a missing ``order_id``/``total_paid``, an invalid
            expression or root, a path the annotations refuse, a channel outside the
            enum or a return window out of range.
        ConfigurationError: When ``tracker``'s sender cannot take orders.

    Examples:
        >>> from gbtrack import each, track_order
        >>> @track_order(customer_id="customer_id", order_id="result['id']",
        ...              total_paid="result['paid']")
        ... def checkout(customer_id: str) -> dict: ...
    """
    where = _call_site()
    if order_id is None or total_paid is None:
        missing = " and ".join(
            n for n, v in (("order_id", order_id), ("total_paid", total_paid)) if v is None
        )
        raise ExpressionError(f"@track_order needs {missing}: Gameball requires them")
    if on not in ("success", "error", "always"):
        raise ExpressionError(
            f"@track_order: on must be 'success', 'error' or 'always', got {on!r}"
        )
    if tracker is not None:
        refused = orders_refused(tracker)
        if refused is not None:
            raise ConfigurationError(f"@track_order: {refused}")
    send_ok = on != "error"
    send_err = on != "success"

    def decorate(func: Any) -> Any:
        target = _target(func)
        is_async_gen = inspect.isasyncgenfunction(target)
        compiler = _OrderCompiler(target, on, is_async_gen)
        identity = compiler.identity(customer_id, email, mobile, session_token)
        given = {
            "order_id": order_id,
            "total_paid": total_paid,
            "total_price": total_price,
            "total_discount": total_discount,
            "total_shipping": total_shipping,
            "total_tax": total_tax,
            "order_date": order_date,
            "guest": guest,
            "channel": channel,
            "cart_id": cart_id,
            "return_window_days": return_window_days,
        }
        simple = []
        for role in _SIMPLE:
            slot = compiler.value(given[role], role)
            if slot is None:
                continue
            compiler.leaf(role, _LEAVES.get(role, "any"))
            if role in _AMOUNTS:
                compiler.constant(slot, role, functools.partial(_amount, field=role))
            elif role == "channel":
                compiler.constant(slot, role, check_channel)
            elif role == "return_window_days":
                compiler.constant(slot, role, check_return_window)
            elif role == "guest":
                compiler.constant(slot, role, _check_guest)
            simple.append((role, slot))
        nested = tuple(
            (role, compiler.tree(spec, role))
            for role, spec in (("extra", extra), ("merchant", merchant), ("redemption", redemption))
            if spec is not None
        )
        lines = compiler.lines(line_items)
        when_slot = compiler.slot(when, "when")
        if isinstance(when_slot, _Constant):
            const = when_slot.value
            when_slot = lambda i, a, k, r, e, c: const  # noqa: E731
        compiler.check(where, tracker)
        site = compiler.site
        if isinstance(site, OrderSite):
            site.fields = dict(compiler.sources)
        plan = OrderPlan(
            compiler, target, identity, tuple(simple), nested, lines, when_slot, on_outcome
        )
        shape = shape_of(target, is_async_gen)
        # The generated wrapper's general path: it calls plan.emitter after the call.
        wrapper = build_wrapper(cast(Any, plan), shape, tracker, send_ok, send_err)
        return wrapt.FunctionWrapper(func, wrapper)

    return cast(_Decorator, decorate)
