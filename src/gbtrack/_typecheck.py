"""Decoration-time type checks: walk a path's steps over the annotations.

``check_steps(Order, parse("result.items[0].sku").steps)`` answers, without running
anything, whether the path can work on values of the annotated types, and what type
its leaf has. The rules mirror :func:`gbtrack._expr.evaluate`:

=========================  ==================  ===============  ==================
type                       ``.name``           ``[int]``        ``["key"]``
=========================  ==================  ===============  ==================
``Mapping[str, V]``        ``V``               error            ``V``
``TypedDict``              the key's type      error            the key's type
``list[T]``, ``Sequence``  an attribute        ``T``            error
``tuple[...]``             an attribute        the item's type  error
``NamedTuple``             the field's type    the item's type  error
a class                    the attribute       error            error
=========================  ==================  ===============  ==================

Classes are read through their annotations: pydantic v2 models (fields and computed
fields; an alias is not an attribute), dataclasses, attrs classes (duck typed through
``__attrs_attrs__``, attrs is never imported), NamedTuples, TypedDicts and plain classes
(class-level annotations, ``@property`` and ``functools.cached_property`` return
annotations, class attributes, and attributes assigned as ``self.name = ...`` in a
method). ``Optional``/``Union`` need the step on every non-``None`` member; the leaf is
the union of the members' leaves. ``Annotated``, ``NewType``, ``ClassVar``, ``Final``,
``Required``/``NotRequired`` and bound ``TypeVar`` are unwrapped; type variables of
generic classes (``Box[int]``, ``class IntBox(Box[int])``) are substituted.

Anything the checker cannot see through (``Any``, ``object``, no annotation, a class
with ``__getattr__``, a ``Callable``, an unsubstituted ``TypeVar`` ...) is *unknown*:
the walk stops there without an error. A false alarm would break an import, so when in
doubt, this module says nothing.

Forward references never break: an annotation that cannot be resolved yet (a class
defined further down, a ``TYPE_CHECKING``-only import) raises :class:`Deferred` when the
walk needs it, and the caller retries later.
"""

from __future__ import annotations

import collections
import collections.abc as cabc
import dataclasses
import datetime as _dt
import decimal
import difflib
import dis
import enum
import functools
import inspect
import sys
import threading
import types
import typing
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Final, ForwardRef, Literal, TypeGuard, TypeVar, get_args, get_origin

from gbtrack._expr import INDEX, KEY, NAME, Step

__all__ = [
    "Deferred",
    "Leaf",
    "PathTypeError",
    "check_leaf",
    "check_steps",
    "element_type",
    "is_method",
    "is_class",
    "members_of",
    "normalize",
    "param_types",
    "return_type",
    "type_name",
    "union_members",
    "walk_steps",
    "yield_type",
]

Leaf = Literal["metadata", "identity", "text", "any", "iterable", "amount"]
"""What the leaf of a path must be: a metadata value, a customer id, a text (email,
mobile), anything, a list to map with ``each()`` (see :func:`element_type`), or an
order's amount (``int``, ``float``, ``Decimal``)."""

NONE_TYPE: Final = type(None)

try:  # always installed with pydantic; its Required/NotRequired are typing's on 3.11+
    import typing_extensions as _typing_extensions
except ImportError:  # pragma: no cover
    _typing_extensions = None  # type: ignore[assignment]

_WRAPPERS: set[object] = {typing.ClassVar, typing.Final}
for _name in ("ClassVar", "Final", "Required", "NotRequired", "ReadOnly"):
    for _module in (typing, _typing_extensions):
        if _module is not None and hasattr(_module, _name):
            _WRAPPERS.add(getattr(_module, _name))

_UNION_ORIGINS: Final = (typing.Union, types.UnionType)
_UNKNOWN_ORIGINS: Final[tuple[object, ...]] = (type, cabc.Callable)
_CONTAINER_MODULES: Final = ("builtins", "collections", "collections.abc", "typing")
_CACHE_SIZE: Final = 1024
_ABSENT: Final = object()

METADATA_TYPES: Final = (str, int, float, bool, decimal.Decimal, enum.Enum, uuid.UUID, _dt.date)
IDENTITY_TYPES: Final = (str, int, uuid.UUID)
AMOUNT_TYPES: Final = (int, float, decimal.Decimal)
_ACCEPTS: Final = {
    "metadata": "Gameball accepts str, int, float or bool "
    "(Decimal, Enum, UUID, date and datetime are converted)",
    "identity": "a customer id must be a str, int or UUID",
    "text": "it must be a str",
    "amount": "an amount must be an int, float or Decimal",
}


class PathTypeError(Exception):
    """A path cannot work on the annotated types.

    The message names the type and the nearest valid names; the caller adds the
    function and the expression.

    Attributes:
        step: The index of the failing step in the path's steps (``len(steps)`` for a
            problem with the leaf).
        suggestions: The nearest valid names, best first.
    """

    def __init__(self, message: str, *, step: int = 0, suggestions: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.step = step
        self.suggestions = suggestions


class Deferred(Exception):
    """An annotation the check needs cannot be resolved yet; retry later.

    Attributes:
        name: The name that is not defined (yet), e.g. ``"Order"``.
    """

    def __init__(self, name: str) -> None:
        super().__init__(f"the annotation {name!r} cannot be resolved yet")
        self.name = name


# --------------------------------------------------------------------------- unknown

_BUDGET: Final = 2_000
"""Type operations (unwrapping, union members, steps) one check may spend: any
annotation, recursive or absurdly nested, is given up as unknown within it."""
_NORMALIZE_STEPS: Final = 64
_UNION_DEPTH: Final = 32


class _Notes(threading.local):
    """Per thread: why the running check met an unknown type, and the budget left."""

    def __init__(self) -> None:
        self.reasons: list[str] | None = None
        self.budget = _BUDGET


_NOTES: Final = _Notes()


class _Exhausted(Exception):
    """The check spent its budget: the annotation is recursive or too large."""


def _unknown(reason: str) -> Any:
    """``Any``, remembering ``reason`` for the report of unchecked paths."""
    reasons = _NOTES.reasons
    if reasons is not None and len(reasons) < 8:
        reasons.append(reason)
    return Any


def _spend(cost: int = 1) -> None:
    notes = _NOTES
    if notes.reasons is None:  # not inside a check: each operation bounds itself
        return
    notes.budget -= cost
    if notes.budget < 0:
        raise _Exhausted


# --------------------------------------------------------------------------- resolution


def _evaluate(text: str, globalns: dict[str, Any], localns: dict[str, Any] | None = None) -> Any:
    """Resolve one string annotation with the public ``typing.get_type_hints``."""
    shim = types.ModuleType("gbtrack_annotation")  # a module: ClassVar and Final are allowed
    shim.__annotations__ = {"t": text}
    try:
        return typing.get_type_hints(shim, globalns, localns, include_extras=True)["t"]
    except NameError as exc:
        raise Deferred(getattr(exc, "name", None) or text) from None
    except AttributeError:  # "models.Order" while models is half imported
        raise Deferred(text) from None
    except Exception as exc:  # a broken annotation is not ours to report: unknown
        return _unknown(f"its annotation {text!r} cannot be evaluated ({type(exc).__name__})")


def _resolve_ref(ref: str | ForwardRef, globalns: dict[str, Any] | None) -> Any:
    if isinstance(ref, ForwardRef):
        text, module = ref.__forward_arg__, ref.__forward_module__
    else:
        text, module = ref, None
    mod = sys.modules.get(module) if isinstance(module, str) else None
    namespace = vars(mod) if mod is not None else globalns
    if namespace is None:
        raise Deferred(text)
    try:
        return _evaluate(text, namespace)
    except Deferred:
        # Code run with exec() in its own namespace (a notebook cell, a docs block):
        # its __module__ names a module whose namespace is not the function's globals.
        if globalns is None or globalns is namespace:
            raise
        return _evaluate(text, globalns)


def normalize(tp: object, globalns: dict[str, Any] | None = None) -> Any:
    """Strip what does not change a value's shape; ``Any`` for the unknown.

    Unwraps ``Annotated``, ``ClassVar``, ``Final``, ``Required``, ``NotRequired``,
    ``NewType``, type aliases (``TypeAliasType``, Python 3.12's ``type X = ...``) and
    generic descriptors (SQLAlchemy's ``Mapped[int]`` is ``int``); a ``TypeVar``
    becomes its bound (or the union of its constraints, or ``Any``); ``None`` becomes
    ``NoneType``; ``object`` and a missing annotation become ``Any``. Strings and
    ``ForwardRef`` are resolved against their module (a ``ForwardRef`` made with
    ``module=``) or ``globalns``. An annotation that unwraps to itself (``T =
    TypeVar("T", bound="T")``, an alias naming itself) is ``Any``: this always returns.

    Raises:
        Deferred: If a forward reference cannot be resolved yet.
    """
    seen: list[object] = []
    for _ in range(_NORMALIZE_STEPS):
        if tp is Any:  # a class on 3.11+
            return _unknown("its type is Any")
        if is_class(tp):  # the common case first: a plain class is itself
            if tp is object:
                return _unknown("its type is object")
            if tp is inspect.Parameter.empty:
                return _unknown("it has no annotation")
            return tp
        if tp is None:
            return NONE_TYPE
        _spend()
        if any(tp is s for s in seen):
            return _unknown(f"its annotation {_safe_name(tp)} refers to itself")
        seen.append(tp)
        if isinstance(tp, str | ForwardRef):
            tp = _resolve_ref(tp, globalns)
            continue
        origin = get_origin(tp)
        if origin is typing.Annotated or origin in _WRAPPERS:
            args = get_args(tp)
            tp = args[0] if args else Any
        elif _in(tp, _WRAPPERS):  # a bare ClassVar / Final
            return _unknown(f"its annotation is a bare {_safe_name(tp)}")
        elif isinstance(tp, TypeVar):
            if tp.__bound__ is not None:
                tp = tp.__bound__
            elif tp.__constraints__:
                tp = typing.Union[tp.__constraints__]  # noqa: UP007
            else:
                return _unknown(f"its type is the type variable {tp.__name__}")
        elif _is_newtype(tp):
            tp = tp.__supertype__  # type: ignore[attr-defined]
        elif isinstance(origin, type) and get_args(tp) and _is_descriptor_class(origin):
            # A generic descriptor (SQLAlchemy's Mapped[int], cached_property[int]):
            # reading it on an instance gives its type argument.
            if _sqlalchemy_collection(origin):  # WriteOnlyMapped, DynamicMapped: queries
                return _unknown(f"{_safe_name(tp)} is read as a query, not a value")
            tp = get_args(tp)[0]
        elif _is_type_alias(tp):  # TypeAliasType, 3.12's `type X = ...`
            tp = tp.__value__  # type: ignore[attr-defined]
        else:
            return tp
    return _unknown(f"its annotation {_safe_name(tp)} is nested too deeply")


def _in(tp: object, group: set[object]) -> bool:
    try:
        return tp in group
    except TypeError:  # an unhashable annotation
        return False


def _safe_name(tp: object) -> str:
    try:
        return type_name(tp)
    except Exception:  # a name is for messages only
        return type(tp).__name__


def _is_newtype(tp: object) -> bool:
    if isinstance(tp, typing.NewType):
        return True
    # typing_extensions' NewType on old Pythons, and the 3.10 function form
    return not isinstance(tp, type) and callable(tp) and hasattr(tp, "__supertype__")


def _is_type_alias(tp: object) -> bool:
    return type(tp).__name__ == "TypeAliasType" and hasattr(tp, "__value__")


def _static(cls: type, name: str, default: object = None) -> Any:
    """``cls.name`` looked up in the classes' own namespaces only.

    ``getattr`` on a class may run its metaclass's ``__getattr__``: user code that
    decoration must not call.
    """
    for klass in cls.__mro__:
        namespace = klass.__dict__
        if name in namespace:
            return namespace[name]
    return default


def _is_descriptor_class(cls: type) -> bool:
    return _static(cls, "__get__") is not None or _sqlalchemy_mapped(cls)


def _sqlalchemy_mapped(cls: type) -> bool:
    """SQLAlchemy's ``Mapped`` family: descriptors for the type checker only.

    At run time ``Mapped`` has no ``__get__`` (the mapper puts an
    ``InstrumentedAttribute`` on the class); on an instance, ``Mapped[int]`` reads an
    ``int``. SQLAlchemy is never imported: the classes are known by name.
    """
    return any(
        k.__name__ in ("Mapped", "_MappedAnnotationBase")
        and str(k.__module__).startswith("sqlalchemy.")
        for k in cls.__mro__
    )


def _sqlalchemy_collection(cls: type) -> bool:
    return cls.__name__ in ("WriteOnlyMapped", "DynamicMapped") and str(cls.__module__).startswith(
        "sqlalchemy."
    )


def union_members(tp: object, globalns: dict[str, Any] | None = None) -> tuple[Any, ...]:
    """The normalized members of ``tp``: a union's members, flattened, else ``(tp,)``.

    ``Literal[...]`` stays one member. ``NoneType`` is kept. A union that contains
    itself (through an alias) or is nested too deeply is ``(Any,)``.

    Raises:
        Deferred: If a forward reference cannot be resolved yet.
    """
    out: list[Any] = []
    try:
        _flatten(tp, globalns, out, [], [_BUDGET])
    except _Exhausted:
        if _NOTES.reasons is not None:
            raise
        return (_unknown(f"the union {_safe_name(tp)} is too large to check"),)
    return tuple(out)


def _flatten(
    tp: object,
    globalns: dict[str, Any] | None,
    out: list[Any],
    stack: list[object],
    budget: list[int],
) -> None:
    budget[0] -= 1
    if budget[0] < 0:
        raise _Exhausted
    _spend()
    member = normalize(tp, globalns)
    if get_origin(member) not in _UNION_ORIGINS:
        if not any(member is m or _equal(member, m) for m in out):
            out.append(member)
        return
    if len(stack) >= _UNION_DEPTH or any(member is s for s in stack):
        out.append(_unknown(f"the union {_safe_name(member)} contains itself"))
        return
    stack.append(member)
    for arg in get_args(member):
        _flatten(arg, globalns, out, stack, budget)
    stack.pop()


def _equal(a: object, b: object) -> bool:
    try:
        return bool(a == b)
    except Exception:  # an exotic annotation's __eq__
        return False


def _union(members: list[Any]) -> Any:
    if any(m is Any for m in members):
        return Any
    unique = list(dict.fromkeys(members))
    if len(unique) == 1:
        return unique[0]
    try:
        return typing.Union[tuple(unique)]  # noqa: UP007
    except (TypeError, SyntaxError):  # unhashable exotic members; a string not Python
        return Any


# --------------------------------------------------------------------------- names


def type_name(tp: object) -> str:
    """A short, readable name: ``Order``, ``list[Line]``, ``Order | None``."""
    if tp is Any:
        return "Any"
    if tp is NONE_TYPE or tp is None:
        return "None"
    if isinstance(tp, ForwardRef):
        return tp.__forward_arg__
    origin = get_origin(tp)
    args = get_args(tp)
    if origin in _UNION_ORIGINS:
        return " | ".join(type_name(a) for a in args)
    if origin is Literal:
        return f"Literal[{', '.join(repr(a) for a in args)}]"
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is not None:
        base = getattr(origin, "__qualname__", None) or repr(origin).replace("typing.", "")
        if base == "tuple" and args == ((),):  # 3.10 spells tuple[()] this way
            args = ()
        inner = ", ".join("..." if a is Ellipsis else type_name(a) for a in args)
        return f"{base}[{inner or '()'}]"
    if is_class(tp):
        return tp.__qualname__.rpartition("<locals>.")[2]  # Outer.Inner, not f.<locals>.X
    return repr(tp).replace("typing.", "")


def _kind_word(cls: type) -> str:
    """`` (a dataclass)`` and the like, or ``""`` for a plain class."""
    if _is_pydantic(cls):
        return " (a pydantic model)"
    if _is_dataclass(cls):
        return " (a dataclass)"
    if _attrs_fields(cls) is not None:
        return " (an attrs class)"
    if _is_typeddict(cls):
        return " (a TypedDict)"
    if _is_namedtuple(cls):
        return " (a NamedTuple)"
    return ""


def _suggest(name: str, candidates: cabc.Iterable[str]) -> tuple[str, ...]:
    names = list(candidates)
    # One edit away (a letter dropped, doubled, changed or two swapped) first: the
    # likeliest typo, even for names too short for difflib's ratio ("di" for "id").
    near = sorted(c for c in names if _one_edit(name, c))
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    return tuple(dict.fromkeys([*near, *close]))[:3]


def _one_edit(a: str, b: str) -> bool:
    """Whether ``b`` is ``a`` with one letter dropped, added, changed, or two swapped."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
        if len(diff) == 1:
            return True
        return (
            len(diff) == 2
            and diff[1] == diff[0] + 1
            and a[diff[0]] == b[diff[1]]
            and (a[diff[1]] == b[diff[0]])
        )
    short, long = (a, b) if len(a) < len(b) else (b, a)
    i = 0
    while i < len(short) and short[i] == long[i]:
        i += 1
    return short[i:] == long[i + 1 :]


def _names_hint(name: str, valid: cabc.Iterable[str], noun: str) -> tuple[str, tuple[str, ...]]:
    """``"; did you mean 'total'?"`` or ``"; its fields are: a, b, c"``, and suggestions."""
    names = sorted(set(valid))
    close = _suggest(name, names)
    if close:
        return f"; did you mean {close[0]!r}?", close
    if not names:
        return f"; it has no {noun}s", ()
    shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    return f"; its {noun}s are: {shown}", ()


# --------------------------------------------------------------------------- class kinds


def is_class(tp: object) -> TypeGuard[type]:
    """Whether ``tp`` is a class and not a parametrized alias.

    On Python 3.10, ``isinstance(list[int], type)`` is true.
    """
    return isinstance(tp, type) and not isinstance(tp, types.GenericAlias)


def _is_pydantic(cls: type) -> bool:
    return _static(cls, "__pydantic_fields__") is not None and hasattr(cls, "model_fields")


def _is_typeddict(cls: object) -> bool:
    return (
        is_class(cls)
        and issubclass(cls, dict)
        and _static(cls, "__required_keys__", _ABSENT) is not _ABSENT
    )


def _is_namedtuple(cls: type) -> bool:
    return issubclass(cls, tuple) and _static(cls, "_fields", _ABSENT) is not _ABSENT


def _is_dataclass(cls: type) -> bool:
    return _static(cls, "__dataclass_fields__") is not None


def _attrs_fields(cls: type) -> Any:
    return _static(cls, "__attrs_attrs__")


@dataclasses.dataclass
class Members:
    """What a class offers to a ``.name`` step (cached per class).

    Attributes:
        noun: ``"field"``, ``"key"`` or ``"attribute"``, for messages.
        names: Name -> declared type (may hold a ``ForwardRef`` or type variables), and
            the class that declared it (for type-variable substitution).
        methods: Public names that are methods: reading one is an error.
        aliases: Pydantic alias -> field name.
        open: Unknown names may exist (``__getattr__``, ``extra="allow"``).
        why_open: Why, for the report of unchecked paths.
        near_misses: On an open class, a name one edit from a declared one is still a
            typo (a Django model: ``QuerySet.annotate()`` may add names, not misspell
            a field's).
        hidden: Names that look like attributes and are not: name -> why
            (a dataclass's ``InitVar``).
        positions: NamedTuple item types, for ``[int]``.
        optional: TypedDict keys that may be absent.
    """

    noun: str
    names: dict[str, tuple[Any, type]] = dataclasses.field(default_factory=dict)
    methods: set[str] = dataclasses.field(default_factory=set)
    aliases: dict[str, str] = dataclasses.field(default_factory=dict)
    open: bool = False
    why_open: str = ""
    near_misses: bool = False
    hidden: dict[str, str] = dataclasses.field(default_factory=dict)
    positions: tuple[Any, ...] = ()
    optional: frozenset[str] = frozenset()

    def add(self, name: str, tp: Any, owner: type) -> None:
        """Record ``name`` unless it is private or already known."""
        if (
            not name.startswith("_")
            and name not in self.names
            and name not in self.methods
            and name not in self.hidden
        ):
            self.names[name] = (tp, owner)


_MEMBERS: dict[type, Members] = {}


def members_of(cls: type) -> Members:
    """The cached :class:`Members` table of ``cls`` (built once, never raises)."""
    table = _MEMBERS.get(cls)
    if table is None:
        table = _build_members(cls)
        if len(_MEMBERS) >= _CACHE_SIZE:  # bounded: classes made on the fly must not leak
            _MEMBERS.clear()
        _MEMBERS[cls] = table
    return table


def _class_hints(cls: type) -> dict[str, Any]:
    """Every class-level annotation along the MRO, resolved where possible."""
    if not _metaclass_getattr(cls):  # get_type_hints asks the class for __no_type_check__
        try:
            return typing.get_type_hints(cls, include_extras=True)
        except Exception:  # noqa: S110 - one unresolvable annotation must not hide the others
            pass
    hints: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        try:
            own = inspect.get_annotations(klass)
        except Exception:  # noqa: S112  # pragma: no cover - 3.14 deferred annotations
            continue
        module = sys.modules.get(klass.__module__)
        globalns = dict(vars(module)) if module is not None else {}
        for name, raw in own.items():
            if isinstance(raw, str):
                try:
                    hints[name] = _evaluate(raw, globalns, dict(vars(klass)))
                except Deferred:
                    hints[name] = ForwardRef(raw, module=klass.__module__)
            else:
                hints[name] = raw
    return hints


def _metaclass_getattr(cls: type) -> bool:
    metaclasses = inspect.getmro(type(cls))
    return any("__getattr__" in vars(meta) for meta in metaclasses if meta is not type)


def _declaring(cls: type, name: str) -> type:
    for klass in cls.__mro__:
        if name in vars(klass).get("__annotations__", {}):
            return klass
    return cls


def _function_return(func: Callable[..., Any]) -> Any:
    hints = _function_hints(func)
    return hints.get("return", Any)


def _attributes_assigned(func: object) -> Iterator[str]:
    """Names a method stores on its first argument: ``self.name = ...``."""
    code = getattr(func, "__code__", None)
    if not isinstance(code, types.CodeType) or not code.co_argcount:
        return
    first = code.co_varnames[0]
    previous: dis.Instruction | None = None
    for ins in dis.get_instructions(code):
        if ins.opname == "STORE_ATTR" and previous is not None:
            # LOAD_FAST self; 3.13 fuses loads (LOAD_FAST_LOAD_FAST (value, self)).
            loaded = previous.argval
            if isinstance(loaded, tuple) and loaded:
                loaded = loaded[-1]
            if previous.opname.startswith("LOAD_FAST") and loaded == first:
                yield str(ins.argval)
        previous = ins


_BUILTIN_STOP: Final = (object, dict, list, tuple, str, int, float, bool, bytes)


def _add_class_attributes(table: Members, cls: type, hints: dict[str, Any]) -> None:
    """Annotations, properties, class attributes, methods and ``self.x =`` names."""
    pydantic_base = _pydantic_base() if _is_pydantic(cls) else None
    machinery = _pydantic_machinery() if pydantic_base is not None else frozenset()
    for klass in cls.__mro__:
        if klass is object or klass is pydantic_base:
            break
        own = vars(klass)
        for name in own.get("__annotations__", {}):
            if name in hints:
                table.add(name, hints[name], _declaring(cls, name))
        for name, value in own.items():
            if name.startswith("_") or name in table.names or name in table.methods:
                continue
            if name in machinery:
                continue
            if isinstance(value, property):
                rt = _function_return(value.fget) if value.fget else Any
                table.add(name, rt, klass)
            elif isinstance(value, functools.cached_property):
                table.add(name, _function_return(value.func), klass)
            elif is_method(value):
                table.methods.add(name)
            else:
                # A class attribute, a slot, a nested class, a callable object, or a
                # descriptor (Django's cached_property, SQLAlchemy's hybrid_property
                # and InstrumentedAttribute): reading it gives a value.
                table.add(name, _descriptor_type(value), klass)
        if klass in _BUILTIN_STOP:
            continue
        for value in own.values():
            if isinstance(value, staticmethod):
                continue
            for fn in _functions_in(value):
                for name in _attributes_assigned(fn):
                    table.add(name, Any, klass)
    for k in cls.__mro__:
        if k is object or k is pydantic_base:
            continue
        if "__getattr__" in vars(k):
            table.open, table.why_open = True, f"{k.__qualname__} defines __getattr__"
            break
        if "__getattribute__" in vars(k) and k.__flags__ & _HEAPTYPE:
            table.open, table.why_open = True, f"{k.__qualname__} defines __getattribute__"
            break


_METHOD_TYPES: Final = (
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodDescriptorType,
    types.WrapperDescriptorType,
    types.ClassMethodDescriptorType,
    types.MethodWrapperType,
    staticmethod,
    classmethod,
    functools.partialmethod,
    functools.singledispatchmethod,
)


def is_method(value: object) -> bool:
    """Whether a class attribute is a method: reading it on an instance gives a callable.

    Only real functions and method wrappers are: a descriptor that merely defines
    ``__get__`` (Django's ``cached_property``, Django's field descriptors,
    ``functools.cached_property``) gives a value, whatever ``inspect.isroutine`` says.
    """
    return isinstance(value, _METHOD_TYPES)


def _descriptor_type(value: object) -> Any:
    """The type a class attribute reads as on an instance (``Any`` if unknown).

    A descriptor that wraps a function (``func`` for Django's ``cached_property``,
    ``fget`` for SQLAlchemy's ``hybrid_property``) reads as its return annotation.
    """
    if _static(type(value), "__get__") is None:
        return Any
    if str(type(value).__module__).startswith("django.db.models"):
        # A ForeignKey or OneToOneField descriptor reads as the related model.
        related = getattr(inspect.getattr_static(value, "field", None), "related_model", None)
        if is_class(related) and type(value).__name__.startswith("Forward"):
            return related
    for attr in ("fget", "func"):
        fn = inspect.getattr_static(value, attr, None)
        if inspect.isfunction(fn):
            return _function_return(fn)
    return Any


def _functions_in(value: object) -> Iterator[object]:
    if isinstance(value, staticmethod | classmethod):
        yield value.__func__
    elif isinstance(value, property):
        yield from (f for f in (value.fget, value.fset) if f is not None)
    elif inspect.isfunction(value):
        yield value


@functools.lru_cache(maxsize=1)
def _pydantic_machinery() -> frozenset[str]:
    return frozenset(dir(_pydantic_base()))


@functools.lru_cache(maxsize=1)
def _pydantic_base() -> type:
    from pydantic import BaseModel  # pydantic is a runtime dependency; imported lazily

    return BaseModel


def _build_members(cls: type) -> Members:
    try:
        return _build_members_unsafe(cls)
    except Exception:  # never break an import on an exotic class: unknown
        return Members("attribute", open=True)


def _build_members_unsafe(cls: type) -> Members:
    if _is_typeddict(cls):
        return _typeddict_members(cls)
    if _is_pydantic(cls):
        table = Members("field")
        _pydantic_fields(cls, table)
        _add_class_attributes(table, cls, {})
        return table
    hints = _class_hints(cls)
    table = Members("attribute")
    for name, hint in hints.items():
        if isinstance(hint, dataclasses.InitVar) or hint is dataclasses.InitVar:
            table.hidden[name] = (
                "an InitVar: it is passed to __init__ and __post_init__, never stored"
            )
    if _is_dataclass(cls):
        table.noun = "field"
        for f in dataclasses.fields(cls):
            table.add(f.name, hints.get(f.name, Any), _declaring(cls, f.name))
    attrs_fields = _attrs_fields(cls)
    if attrs_fields is not None:
        table.noun = "field"
        for a in attrs_fields:
            tp = hints.get(a.name, a.type if a.type is not None else Any)
            if isinstance(tp, str):
                tp = ForwardRef(tp, module=cls.__module__)
            table.add(a.name, tp, _declaring(cls, a.name))
    if _is_namedtuple(cls):
        table.noun = "field"
        field_names: tuple[str, ...] = _static(cls, "_fields", ())
        for name in field_names:
            table.add(name, hints.get(name, Any), _declaring(cls, name))
        table.positions = tuple(hints.get(name, Any) for name in field_names)
    hints = {k: v for k, v in hints.items() if k not in table.hidden}
    _add_class_attributes(table, cls, hints)
    if _is_django_model(cls):
        table.open, table.near_misses = True, True
        table.why_open = "a Django model may carry names QuerySet.annotate() adds"
    if table.noun == "attribute" and not table.open:
        table.why_open = _open_plain_class(cls, table)
        table.open = bool(table.why_open)
    return table


_HEAPTYPE: Final = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class written in Python
_DYNAMIC_NAMES: Final = frozenset({"setattr", "__dict__", "__setattr__", "vars"})
_STATE_DUNDERS: Final = frozenset(
    {"__init__", "__new__", "__post_init__", "__setstate__", "__setattr__", "__call__"}
)


def _open_plain_class(cls: type, table: Members) -> str:
    """Why a plain class's instances may carry attributes it never declares ("": they don't).

    A class written in C is closed unless its instances have a ``__dict__``
    (``SimpleNamespace``); so is a Python class built on one (a ``SimpleNamespace``
    subclass), exceptions aside. A Python class is closed when it declares something
    (annotations, properties, class attributes, ``self.x = ...``) and none of its
    methods sets attributes by name (``setattr``, ``__dict__``, ``vars``); a class
    that declares nothing, like ``class Bag: pass``, is open.
    """
    for klass in cls.__mro__:
        if klass.__flags__ & _HEAPTYPE or klass is object or issubclass(klass, BaseException):
            continue
        if klass.__dictoffset__:
            return f"its base {type_name(klass)} stores any attribute"
    if not cls.__flags__ & _HEAPTYPE:
        return ""
    if not table.names:
        return f"{type_name(cls)} declares no attributes"
    for klass in cls.__mro__:
        if not klass.__flags__ & _HEAPTYPE:
            continue
        for name, value in vars(klass).items():
            if name.startswith("__") and name not in _STATE_DUNDERS:
                continue  # __dir__, __subclasshook__, __init_subclass__: not instance state
            for fn in _functions_in(value):
                if _DYNAMIC_NAMES & _code_names(fn) and not _known_constructor(fn):
                    return f"{type_name(klass)}.{name} sets attributes by name"
    return ""


def _is_django_model(cls: type) -> bool:
    meta = _static(cls, "_meta")
    return meta is not None and str(type(meta).__module__).startswith("django.db.models")


def _known_constructor(fn: object) -> bool:
    """A library's constructor that sets only the attributes its class declares.

    SQLAlchemy's declarative ``__init__`` refuses any keyword that is not a mapped
    attribute, so its ``setattr`` adds no name; ``typing.Protocol`` puts its own
    ``__init__`` on protocol classes, which sets none.
    """
    module = str(getattr(fn, "__module__", ""))
    name = getattr(fn, "__qualname__", "")
    if module == "typing" or module == "typing_extensions":
        return name == "_no_init_or_replace_init"
    return module.startswith("sqlalchemy.orm.") and name == "_declarative_constructor"


def _code_names(func: object) -> set[str]:
    code = getattr(func, "__code__", None)
    names: set[str] = set()
    stack = [code] if isinstance(code, types.CodeType) else []
    while stack:
        code = stack.pop()
        names.update(code.co_names)
        stack.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    return names


def _typeddict_members(cls: type) -> Members:
    table = Members("key")
    hints = _class_hints(cls)
    optional = set(getattr(cls, "__optional_keys__", ()))
    for name, tp in hints.items():
        # Under `from __future__ import annotations`, Python before 3.14 cannot see
        # Required/NotRequired when it builds __optional_keys__: read them here.
        origin = get_origin(tp)
        while origin is typing.Annotated or origin in _WRAPPERS:
            if getattr(origin, "_name", None) == "Required":
                optional.discard(name)
            elif getattr(origin, "_name", None) == "NotRequired":
                optional.add(name)
            tp = get_args(tp)[0]
            origin = get_origin(tp)
        # Keys may start with "_" in a TypedDict: they are read as keys, not attributes.
        table.names[name] = (typing.Optional[tp] if name in optional else tp, cls)  # noqa: UP045
    table.optional = frozenset(optional)
    return table


def _pydantic_fields(cls: type, table: Members) -> None:
    module = sys.modules.get(cls.__module__)
    globalns = dict(vars(module)) if module is not None else {}
    fields: dict[str, Any] = cls.model_fields  # type: ignore[attr-defined]
    for name, info in fields.items():
        tp = info.annotation
        if isinstance(tp, ForwardRef | str):  # the model is not complete yet
            text = tp.__forward_arg__ if isinstance(tp, ForwardRef) else tp
            try:
                tp = _evaluate(text, globalns, dict(vars(cls)))
            except Deferred:
                tp = ForwardRef(text, module=cls.__module__)
        table.add(name, tp if tp is not None else Any, cls)
        for alias in _aliases(info):
            if alias != name:
                table.aliases.setdefault(alias, name)
    computed: dict[str, Any] = getattr(cls, "model_computed_fields", {})
    for name, cinfo in computed.items():
        tp = getattr(cinfo, "return_type", Any)
        if tp is None or type(tp).__name__ == "PydanticUndefinedType":
            wrapped = getattr(cinfo, "wrapped_property", None)
            fget = getattr(wrapped, "fget", None)
            tp = _function_return(fget) if fget is not None else Any
        table.add(name, tp, cls)
    if (getattr(cls, "model_config", {}) or {}).get("extra") == "allow":
        table.open = True


def _aliases(info: Any) -> Iterator[str]:
    for attr in ("alias", "validation_alias", "serialization_alias"):
        value = getattr(info, attr, None)
        if isinstance(value, str):
            yield value
        for choice in getattr(value, "choices", ()) or ():
            if isinstance(choice, str):
                yield choice


# --------------------------------------------------------------------------- generics


def _substitute(tp: Any, mapping: dict[Any, Any]) -> Any:
    if not mapping:
        return tp
    if isinstance(tp, TypeVar):
        return mapping.get(tp, tp)
    params = getattr(tp, "__parameters__", ())
    if params and not is_class(tp):
        try:
            return tp[tuple(mapping.get(p, p) for p in params)]
        except Exception:  # ParamSpec and friends: leave it, it becomes unknown
            return tp
    return tp


def _has_typevars(tp: Any) -> bool:
    return isinstance(tp, TypeVar) or bool(not is_class(tp) and getattr(tp, "__parameters__", ()))


def _type_maps(cls: type, own: dict[Any, Any]) -> dict[type, dict[Any, Any]]:
    """For ``cls`` and each generic ancestor: its type variables -> concrete types."""
    maps: dict[type, dict[Any, Any]] = {cls: own}
    for klass in cls.__mro__:  # subclasses first: a class's map is known when it is read
        mapping = maps.get(klass, {})
        for base in vars(klass).get("__orig_bases__", ()):
            origin = get_origin(base)
            params = getattr(origin, "__parameters__", ())
            if isinstance(origin, type) and params and origin not in maps:
                args = [_substitute(a, mapping) for a in get_args(base)]
                maps[origin] = dict(zip(params, args, strict=False))
    return maps


# --------------------------------------------------------------------------- the walk


def _describe_step(kind: int, arg: str | int) -> str:
    if kind == NAME:
        return f".{arg}"
    return f"[{arg!r}]" if kind == KEY else f"[{arg}]"


def _fail(message: str, index: int, suggestions: tuple[str, ...] = ()) -> PathTypeError:
    return PathTypeError(message, step=index, suggestions=suggestions)


class _Walk:
    __slots__ = ("arg", "globalns", "index", "kind", "unknown_input")

    def __init__(self, globalns: dict[str, Any] | None) -> None:
        self.globalns = globalns
        self.index = 0
        self.kind = NAME
        self.arg: str | int = ""
        self.unknown_input = False  # the value this step reads has no known type

    def step(self, tp: Any) -> Any:
        members = union_members(tp, self.globalns)
        real = [m for m in members if m is not NONE_TYPE]
        if any(m is Any for m in real):
            self.unknown_input = True
        if not real:
            raise _fail(
                f"the value is always None, so {_describe_step(self.kind, self.arg)} "
                "can never be read",
                self.index,
            )
        if len(real) == 1:
            return self.one(real[0])
        results: list[Any] = []
        for member in real:
            try:
                results.append(self.one(member))
            except PathTypeError as exc:
                whole = " | ".join(type_name(m) for m in members)
                raise _fail(f"{exc} (the value is {whole})", self.index, exc.suggestions) from None
        return _union(results)

    def one(self, tp: Any) -> Any:
        if tp is Any:
            return Any
        origin = get_origin(tp)
        if origin is Literal:
            return self.step(_union([type(v) for v in get_args(tp)]))
        if origin is None:
            if is_class(tp):
                return self.cls(tp, {})
            return _unknown(f"its type is {_safe_name(tp)}, which the check cannot read")
        args = get_args(tp)
        if not isinstance(origin, type) or origin in _UNKNOWN_ORIGINS:
            # type[X], Callable[...], special forms: unknown
            return _unknown(f"its type is {_safe_name(tp)}, which the check cannot read")
        if origin is tuple:
            return self.tuple_(tp, args)
        if origin.__module__ in _CONTAINER_MODULES:  # dict[K, V], Sequence[T], deque[T] ...
            if issubclass(origin, cabc.Mapping):
                return self.mapping(tp, args[1] if len(args) == 2 else _mapping_value(origin))
            if issubclass(origin, cabc.Sequence) and self.kind == INDEX:
                return args[0] if args else Any
        params = getattr(origin, "__parameters__", ())
        return self.cls(origin, dict(zip(params, args, strict=False)))

    def tuple_(self, tp: Any, args: tuple[Any, ...]) -> Any:
        if self.kind != INDEX:
            return self.cls(tuple, {})
        if len(args) == 2 and args[1] is Ellipsis:
            return args[0]
        if args == ((),):
            args = ()
        index = int(self.arg)
        if -len(args) <= index < len(args):
            return args[index]
        raise _fail(
            f"{type_name(tp)} has {len(args)} item{'s' if len(args) != 1 else ''}; "
            f"the index [{index}] is out of range",
            self.index,
        )

    def mapping(self, tp: Any, value: Any) -> Any:
        if self.kind == INDEX:
            raise _fail(
                f"{type_name(tp)} is a mapping; [{self.arg}] indexes sequences only, "
                f'use ["key"] or .name to read a key',
                self.index,
            )
        if value is Any:
            return _unknown(f"the values of {_safe_name(tp)} have no known type")
        return value

    def cls(self, cls: type, own_map: dict[Any, Any]) -> Any:
        kind, arg = self.kind, self.arg
        if _is_typeddict(cls):
            return self.typeddict(cls)
        if issubclass(cls, cabc.Mapping):
            return self.mapping(cls, _mapping_value(cls))
        if kind == INDEX:
            if _is_namedtuple(cls):
                positions = members_of(cls).positions
                return self.tuple_(tuple[positions] if positions else tuple, positions)  # type: ignore[valid-type]
            if issubclass(cls, str):
                return str
            if issubclass(cls, bytes | bytearray):
                return int
            if issubclass(cls, cabc.Sequence):
                return _sequence_item(cls)
            raise _fail(
                f"{type_name(cls)}{_kind_word(cls)} is not a sequence; "
                f"[{arg}] indexes lists and tuples only",
                self.index,
            )
        table = members_of(cls)
        if kind == KEY:
            hint = ""
            if isinstance(arg, str) and arg in table.names:
                hint = f"; read the attribute with .{arg}"
            raise _fail(
                f"{type_name(cls)}{_kind_word(cls)} is not a mapping; "
                f"[{arg!r}] reads mapping keys only{hint}",
                self.index,
            )
        name = str(arg)
        if issubclass(cls, enum.Enum) and name in ("name", "value"):
            return str if name == "name" else _union([type(m.value) for m in cls] or [Any])
        entry = table.names.get(name)
        if entry is not None:
            tp, owner = entry
            if isinstance(tp, ForwardRef):
                tp = normalize(tp, self.globalns)  # raises Deferred while still unresolved
                table.names[name] = (tp, owner)
            if tp is Any:
                return _unknown(f"{type_name(cls)}.{name} has no annotation")
            if not _has_typevars(tp):
                return tp
            return _substitute(tp, _type_maps(cls, own_map).get(owner, {}))
        if name in table.hidden:
            raise _fail(f"{type_name(cls)}.{name} is {table.hidden[name]}", self.index)
        if name not in table.methods and not table.open:
            # Not declared by the class itself: inherited machinery (BaseModel's
            # model_dump, object's methods) is looked up only now, on the error path.
            found = inspect.getattr_static(cls, name, _ABSENT)
            if found is not _ABSENT and not name.startswith("_"):
                if not is_method(found):
                    return _unknown(f"{type_name(cls)}.{name} is not annotated")
                table.methods.add(name)
        if name in table.methods:
            raise _fail(
                f"{type_name(cls)}.{name} is a method; a path reads values and never calls, "
                "use a @property or a callable resolver",
                self.index,
            )
        if table.open:
            near = sorted(n for n in table.names if _one_edit(name, n))
            if table.near_misses and near:
                raise _fail(
                    f"{type_name(cls)} has no attribute {name!r}; did you mean {near[0]!r}? "
                    "(a name one letter away from a declared one is taken as a typo; "
                    "declare a name your querysets add, e.g. `n_items: int` in the class body)",
                    self.index,
                    tuple(near),
                )
            return _unknown(
                f"{type_name(cls)} may have attributes it does not declare ({table.why_open})"
            )
        if name in table.aliases:
            field = table.aliases[name]
            raise _fail(
                f"{type_name(cls)} has no attribute {name!r}: {name!r} is the alias of the "
                f"field {field!r}, and a path reads attributes; did you mean {field!r}?",
                self.index,
                (field,),
            )
        hint, close = _names_hint(name, table.names, table.noun)
        raise _fail(f"{type_name(cls)} has no {table.noun} {name!r}{hint}", self.index, close)

    def typeddict(self, cls: type) -> Any:
        if self.kind == INDEX:
            raise _fail(
                f"{type_name(cls)} is a TypedDict (a mapping); [{self.arg}] indexes sequences "
                'only, use ["key"] or .name',
                self.index,
            )
        table = members_of(cls)
        key = str(self.arg)
        entry = table.names.get(key)
        if entry is None:
            hint, close = _names_hint(key, table.names, "key")
            raise _fail(f"{type_name(cls)} has no key {key!r}{hint}", self.index, close)
        return entry[0]


def _generic_arg(cls: type, abc: type, position: int) -> Any:
    for klass in cls.__mro__:
        for base in getattr(klass, "__orig_bases__", ()):
            origin = get_origin(base)
            if isinstance(origin, type) and issubclass(origin, abc):
                args = get_args(base)
                return args[position] if len(args) > position else Any
    return Any


def _mapping_value(cls: type) -> Any:
    if issubclass(cls, collections.Counter):
        return int
    return _generic_arg(cls, cabc.Mapping, 1)


def _sequence_item(cls: type) -> Any:
    return _generic_arg(cls, cabc.Sequence, 0)


def element_type(tp: object, globalns: dict[str, Any] | None = None) -> Any:
    """The type of one element of an iterable type, for ``each()``'s inner paths.

    ``list[T]``, ``Sequence[T]``, ``Iterable[T]``, ``set[T]``, ``tuple[T, ...]`` and
    iterable classes that name their item type give ``T``; ``tuple[A, B]`` gives
    ``A | B``; ``None`` members of an optional are left out (no list: no line items).
    Anything the check cannot read is ``Any``.

    Raises:
        PathTypeError: For a type that is surely not a list of items: a string, bytes,
            a mapping, a pydantic model, or a class that is not iterable.
        Deferred: If a forward reference cannot be resolved yet.
    """
    found: list[Any] = []
    for member in union_members(tp, globalns):
        if member is NONE_TYPE:
            continue
        found.append(_element_of(normalize(member, globalns)))
    return _union(found) if found else Any


def _element_of(tp: Any) -> Any:
    if tp is Any:
        return Any
    origin = get_origin(tp)
    args = get_args(tp)
    cls = origin if origin is not None else tp
    if not is_class(cls):
        return Any  # a special form: unknown
    if cls is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return args[0]
        return _union(list(args)) if args and args != ((),) else Any
    what = type_name(tp)
    need = "each() needs a list of items (list[Line], Sequence[Line], Iterable[Line])"
    if issubclass(cls, str | bytes | bytearray):
        raise PathTypeError(f"the value is {what}, a string; {need}")
    if _is_typeddict(cls) or issubclass(cls, cabc.Mapping):
        raise PathTypeError(f"the value is {what}, a mapping; {need}")
    if _is_pydantic(cls) or _is_dataclass(cls):
        raise PathTypeError(f"the value is {what}{_kind_word(cls)}, one object; {need}")
    if not issubclass(cls, cabc.Iterable):
        if members_of(cls).open:
            return Any  # __getattr__ and friends: it may iterate in ways we cannot see
        raise PathTypeError(f"the value is {what}{_kind_word(cls)}, which is not iterable; {need}")
    if origin is not None and args and origin.__module__ in _CONTAINER_MODULES:
        return args[0]
    return _generic_arg(cls, cabc.Iterable, 0)


def check_steps(
    root_type: object,
    steps: tuple[Step, ...],
    *,
    leaf: Leaf = "any",
    globalns: dict[str, Any] | None = None,
) -> Any:
    """Walk ``steps`` from ``root_type`` and return the leaf's type (``Any`` if unknown).

    Args:
        root_type: The root's annotation (from :func:`param_types` or
            :func:`return_type`); ``Any`` or ``object`` when unannotated.
        steps: The path's steps, as :func:`gbtrack._expr.parse` makes them.
        leaf: What the leaf must be: ``"metadata"`` (a value Gameball accepts or one
            gbtrack converts), ``"identity"`` (a customer id: ``str``, ``int`` or
            ``UUID``), ``"text"`` (``str``: email, mobile) or ``"any"``.
        globalns: The namespace for string annotations that carry no module, usually
            the decorated function's ``__globals__``.

    Returns:
        The leaf's type, possibly a union; ``Any`` when the walk met an unknown type.

    Raises:
        PathTypeError: A step cannot work on the annotated type, or the leaf is not
            what ``leaf`` asks for. The message names the type and the nearest names.
        Deferred: An annotation the walk needs cannot be resolved yet.
    """
    return walk_steps(root_type, steps, leaf=leaf, globalns=globalns)[0]


def walk_steps(
    root_type: object,
    steps: tuple[Step, ...],
    *,
    leaf: Leaf = "any",
    globalns: dict[str, Any] | None = None,
) -> tuple[Any, str | None]:
    """:func:`check_steps`, and why the path is unchecked, if it is.

    Always returns, within a budget of type operations: an annotation that is
    recursive or too large to follow is unknown.

    Returns:
        ``(leaf type, reason)``: ``reason`` is ``None`` when every step and the leaf
        were checked, else why the check stopped (``"Order.meta has no annotation"``).

    Raises:
        PathTypeError: See :func:`check_steps`.
        Deferred: See :func:`check_steps`.
    """
    notes = _NOTES
    outer = notes.reasons
    reasons: list[str] = []
    notes.reasons, notes.budget = reasons, _BUDGET
    try:
        tp = _walk(root_type, steps, leaf, globalns)
    except _Exhausted:
        tp = Any
        reasons[:0] = ["its annotation is recursive or too large to check"]
    finally:
        notes.reasons = outer
    if tp is not Any or (not steps and leaf == "any"):
        return tp, None
    where = _where_unknown(steps, reasons)
    return Any, where


def _walk(root_type: object, steps: tuple[Step, ...], leaf: Leaf, globalns: Any) -> Any:
    walk = _Walk(globalns)
    tp: Any = root_type
    for index, (kind, arg) in enumerate(steps):
        walk.index, walk.kind, walk.arg = index, kind, arg
        walk.unknown_input = False
        tp = walk.step(tp)
        if tp is Any:  # "@k": the value after k steps has no known type
            known = index if walk.unknown_input else index + 1
            _NOTES.reasons.append(f"@{known}")  # type: ignore[union-attr]
            return Any
    tp = normalize(tp, globalns)
    if tp is Any:  # the leaf itself has no known type
        _NOTES.reasons.append(f"@{len(steps)}")  # type: ignore[union-attr]
    if leaf != "any":
        problem = _leaf_problem(tp, leaf, globalns)
        if problem:
            raise PathTypeError(problem, step=len(steps))
    return tp


def _where_unknown(steps: tuple[Step, ...], reasons: list[str]) -> str:
    """``"after .meta: Order.meta has no annotation"`` from the notes of a walk."""
    stop = next((r for r in reversed(reasons) if r.startswith("@")), "@0")
    why = next((r for r in reasons if not r.startswith("@")), "its type is unknown")
    shown = "".join(_describe_step(k, a) for k, a in steps[: int(stop[1:])])
    return f"at {shown}: {why}" if shown else f"the root: {why}"


def check_leaf(tp: object, leaf: Leaf, *, globalns: dict[str, Any] | None = None) -> None:
    """Check that values of type ``tp`` can be sent as ``leaf``; see :func:`check_steps`.

    Raises:
        PathTypeError: If they cannot (``step`` is 0).
        Deferred: If ``tp`` cannot be resolved yet.
    """
    problem = _leaf_problem(normalize(tp, globalns), leaf, globalns)
    if problem:
        raise PathTypeError(problem)


def _leaf_problem(tp: Any, leaf: Leaf, globalns: dict[str, Any] | None) -> str | None:
    if leaf == "any":
        return None
    if leaf == "iterable":
        try:
            element_type(tp, globalns)
        except PathTypeError as exc:
            return str(exc)
        return None
    members = union_members(tp, globalns)
    real = [m for m in members if m is not NONE_TYPE]
    if not real:
        return "the value is always None, so it is never sent"
    accepted = {
        "metadata": METADATA_TYPES,
        "identity": IDENTITY_TYPES,
        "text": (str,),
        "amount": AMOUNT_TYPES,
    }[leaf]
    for member in real:
        if not _accepts(member, accepted, leaf):
            what = type_name(member)
            if is_class(member):
                what += _kind_word(member)
            whole = " | ".join(type_name(m) for m in members)
            if len(members) > 1:
                what = f"{what} (in {whole})"
            return f"the value is {what}; {_ACCEPTS[leaf]}"
    return None


def _accepts(tp: Any, accepted: tuple[type, ...], leaf: Leaf) -> bool:
    if tp is Any:
        return True
    origin = get_origin(tp)
    if origin is Literal:
        return all(_accepts(type(v), accepted, leaf) for v in get_args(tp))
    if origin is not None:
        # A parametrized container is never a single value (list[str], Sequence[str] ...),
        # while a generic class of ours is judged by its class.
        if not isinstance(origin, type) or origin.__module__ in ("builtins", "collections.abc"):
            return not isinstance(origin, type)  # special forms: unknown
        tp = origin
    if not is_class(tp):
        return True  # unknown
    if tp.__name__ == "EmailStr" and tp.__module__.startswith("pydantic"):
        return True  # validates to a plain str
    if leaf in ("identity", "amount") and issubclass(tp, bool):
        return False
    if _is_typeddict(tp):
        return False
    try:
        if issubclass(tp, accepted):
            return True
        # A supertype (numbers.Real, a runtime Protocol) may hold an accepted value.
        return any(issubclass(a, tp) for a in accepted)
    except TypeError:  # a non-runtime Protocol and friends: unknown
        return True


# --------------------------------------------------------------------------- functions


def _unwrap_callable(func: object) -> Any:
    if isinstance(func, staticmethod | classmethod):
        func = func.__func__
    if isinstance(func, types.MethodType):
        func = func.__func__
    return func


_CODE: dict[str, types.CodeType] = {}
_LAST_HINTS: list[tuple[object, dict[str, Any]]] = []


def _function_hints(func: Any) -> dict[str, Any]:
    """A function's resolved annotations (``ForwardRef`` for the unresolvable ones).

    :func:`param_types` and :func:`return_type` ask for the same function one after
    the other at decoration: the last answer is kept.
    """
    if _LAST_HINTS and _LAST_HINTS[0][0] is func:
        return _LAST_HINTS[0][1]
    hints = _fast_hints(func)
    if hints is None:
        hints = _slow_hints(func)
    _LAST_HINTS[:] = [(func, hints)]
    return hints


def _fast_hints(func: Any) -> dict[str, Any] | None:
    """The common case, fast: plain annotations, or strings that are names and subscripts.

    ``typing.get_type_hints`` compiles every string annotation each time (a
    ``ForwardRef`` per annotation: most of the import-time cost of the checks with
    ``from __future__ import annotations``); the same few strings (``"Order"``,
    ``"list[Line]"``) recur across a module, so their code is compiled once and
    evaluated in the function's globals, as ``get_type_hints`` does. Anything unusual
    (a syntax error, an exception other than an undefined name, a string result)
    returns ``None`` for the general path.
    """
    raw = getattr(func, "__annotations__", None)
    if not isinstance(raw, dict):
        return None
    target = inspect.unwrap(func)
    globalns = getattr(target, "__globals__", None)
    if not isinstance(globalns, dict):
        return None
    hints: dict[str, Any] = {}
    for name, value in raw.items():
        if isinstance(value, str):
            text = value
            code = _CODE.get(text)
            if code is None:
                try:
                    code = compile(text, "<annotation>", "eval")
                except SyntaxError:
                    return None
                if len(_CODE) >= _CACHE_SIZE:
                    _CODE.clear()
                _CODE[text] = code
            try:
                # The module's own annotation, evaluated in its namespace exactly as
                # typing.get_type_hints does; a path never reaches this.
                value = eval(code, globalns)  # noqa: S307
            except NameError:
                value = ForwardRef(text, module=getattr(target, "__module__", None))
            except Exception:
                return None
            if isinstance(value, str):
                return None
        elif value is None:
            value = NONE_TYPE
        hints[name] = value
    return hints


def _slow_hints(func: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func, include_extras=True)
    except Exception:  # noqa: S110 - per annotation: one unresolvable name defers only its own
        pass
    try:
        raw = inspect.get_annotations(func)
    except Exception:
        return {}
    target = inspect.unwrap(func)
    globalns = getattr(target, "__globals__", {})
    module = getattr(target, "__module__", None)
    hints: dict[str, Any] = {}
    for name, value in raw.items():
        if isinstance(value, str):
            try:
                hints[name] = _evaluate(value, globalns)
            except Deferred:
                hints[name] = ForwardRef(value, module=module)
        else:
            hints[name] = value
    return hints


def param_types(func: Callable[..., Any]) -> dict[str, Any]:
    """Every parameter's annotation, resolved, by name (``Any`` when unannotated).

    ``*args: T`` gives ``tuple[T, ...]`` and ``**kwargs: T`` gives ``dict[str, T]``,
    the types of those roots. An annotation that cannot be resolved yet comes back as
    a ``typing.ForwardRef`` bound to the function's module: :func:`check_steps` raises
    :class:`Deferred` if a path needs it and it is still unresolved, so one
    ``TYPE_CHECKING``-only import defers only the paths that go through it.
    """
    func = _unwrap_callable(func)
    hints = _function_hints(func)
    out: dict[str, Any] = {}
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return {k: v for k, v in hints.items() if k != "return"}
    for p in parameters:
        tp = hints.get(p.name, Any)
        if p.kind is p.VAR_POSITIONAL:
            tp = tuple[tp, ...]  # type: ignore[valid-type]
        elif p.kind is p.VAR_KEYWORD:
            tp = dict[str, tp]  # type: ignore[valid-type]
        out[p.name] = tp
    return out


def return_type(func: Callable[..., Any]) -> Any:
    """The type of the ``result`` root: what a call of ``func`` produces for ``@track``.

    - a plain function or ``async def``: the return annotation (for a coroutine
      function it already is the awaited value's type); a function marked as a
      coroutine function that is not an ``async def`` has ``Awaitable[T]`` or
      ``Coroutine[..., T]`` unwrapped to ``T``;
    - a generator function: the ``Generator``'s return type (third argument);
      ``Iterator``/``Iterable`` annotations return nothing (``NoneType``);
    - an async generator: ``NoneType`` (it cannot return a value);
    - no annotation: ``Any``.

    An unresolvable annotation comes back as a ``ForwardRef`` (see :func:`param_types`).

    Raises:
        Deferred: For a generator function whose annotation cannot be resolved yet
            (the return type sits inside it).
    """
    func = _unwrap_callable(func)
    rt = _function_hints(func).get("return", Any)
    code = getattr(inspect.unwrap(func), "__code__", None)
    if inspect.isasyncgenfunction(func):
        return NONE_TYPE
    if inspect.isgeneratorfunction(func):
        rt = normalize(rt)
        origin, args = get_origin(rt), get_args(rt)
        if origin is cabc.Generator:
            return args[2] if len(args) == 3 else Any
        if origin in (cabc.Iterator, cabc.Iterable) or rt in (cabc.Iterator, cabc.Iterable):
            return NONE_TYPE
        return Any
    is_async_def = code is not None and bool(code.co_flags & inspect.CO_COROUTINE)
    if inspect.iscoroutinefunction(func) and not is_async_def:
        rt = normalize(rt)
        if get_origin(rt) in (cabc.Awaitable, cabc.Coroutine):
            args = get_args(rt)
            return args[-1] if args else Any
    return rt


def yield_type(func: Callable[..., Any]) -> Any:
    """The type a generator or async generator function yields (``Any`` if unknown).

    Raises:
        Deferred: If the annotation cannot be resolved yet.
    """
    func = _unwrap_callable(func)
    rt = normalize(_function_hints(func).get("return", Any))
    iterables = (
        cabc.Generator,
        cabc.Iterator,
        cabc.Iterable,
        cabc.AsyncGenerator,
        cabc.AsyncIterator,
        cabc.AsyncIterable,
    )
    if get_origin(rt) in iterables:
        args = get_args(rt)
        return args[0] if args else Any
    return Any
