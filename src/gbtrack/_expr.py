"""The path language: parse once, evaluate as a precomputed chain of steps.

Grammar::

    path  := root ( "." name | "[" int "]" | "[" quoted-string "]" )*
    root  := name
    name  := [A-Za-z][A-Za-z0-9_]*          (a leading underscore is refused)

- ``.name`` reads a mapping key on a :class:`~collections.abc.Mapping` and a public
  attribute on anything else.
- ``[int]`` indexes a sequence (negative indexes count from the end).
- ``["key"]`` / ``['key']`` reads a mapping key. Quoted keys may start with ``_``
  (``["_id"]``): they are only ever looked up in mappings, never as attributes.
- ``None`` anywhere on the way yields :data:`MISSING` (a value legitimately absent);
  a step that finds nothing on a value that is not ``None`` (an absent attribute, key
  or index, or a step of the wrong kind) yields :data:`ABSENT`, which the caller counts
  (usually a typo the type checks could not see).

There is no ``eval`` and no call: evaluation is ``getattr(obj, name)`` on public names
and item reads on mappings and sequences, nothing else. Reading never mutates: a mapping
key is looked up with ``in`` first, so a ``defaultdict`` gains no key. Names with a
leading underscore are refused when the expression is compiled, so no dunder walk
(``__class__.__mro__`` ...) can be written; so are the public names that lead to
interpreter internals (``gi_frame``, ``f_globals``, ``tb_frame``, ``co_*`` ...). At
call time, a step *from* a module, frame, code object, traceback, function, method,
generator or coroutine is refused by the value's type, whatever the name: those hold
namespaces and frames, never business data.
"""

from __future__ import annotations

import operator
import re
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Final, Literal

from gbtrack._errors import ExpressionError

__all__ = [
    "ABSENT",
    "MISSING",
    "Path",
    "Reader",
    "Step",
    "compile_steps",
    "evaluate",
    "literal",
    "parse",
    "compile_names",
    "read_name",
    "reads_attributes",
]


class _Missing:
    """The type of :data:`MISSING`."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> Literal[False]:
        return False


MISSING: Final = _Missing()
"""What a path yields when it meets ``None`` on the way (a legitimately absent value)."""


class _Absent:
    """The type of :data:`ABSENT`."""

    _instance: _Absent | None = None

    def __new__(cls) -> _Absent:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ABSENT"

    def __bool__(self) -> Literal[False]:
        return False


ABSENT: Final = _Absent()
"""What a path yields when a step finds nothing on a value that is not ``None``."""

# Step kinds: small ints compared with ``is`` on the hot path.
NAME: Final = 0  # .name: mapping key on mappings, public attribute otherwise
INDEX: Final = 1  # [int]
KEY: Final = 2  # ["key"]

Step = tuple[int, "str | int"]
"""One accessor: ``(kind, argument)``."""

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INT_RE = re.compile(r"-?[0-9]+")
_MAX_INDEX_DIGITS: Final = 18  # any real index fits; int() of thousands of digits raises

# Public names that lead to frames, code and namespaces (generators, coroutines, frames,
# tracebacks, Python 2 style function attributes): refused wherever they appear. Flags
# such as gi_running or f_lineno lead nowhere; reading them is refused at call time by
# the type of the value they are read from.
_INTERNAL_NAMES: Final = frozenset(
    {
        "gi_frame", "gi_code", "gi_yieldfrom",
        "cr_frame", "cr_code", "cr_await", "cr_origin",
        "ag_frame", "ag_code", "ag_await",
        "f_globals", "f_locals", "f_builtins", "f_back", "f_code", "f_trace",
        "tb_frame", "tb_next",
        "func_globals", "func_code", "func_closure", "func_dict", "func_defaults",
        "im_func", "im_self", "im_class",
    }
)  # fmt: skip


class literal(str):
    """Mark a string as a constant, not a path expression.

    Examples:
        >>> from gbtrack import literal
        >>> literal("web")
        literal('web')
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"literal({str.__repr__(self)})"


class Path:
    """A compiled path expression: a root name and a tuple of accessor steps.

    Attributes:
        text: The expression as written.
        root: The root name (a parameter, reserved root or registered resolver).
        steps: The accessors applied to the root's value, in order.
    """

    __slots__ = ("root", "steps", "text")

    def __init__(self, text: str, root: str, steps: tuple[Step, ...]) -> None:
        self.text = text
        self.root = root
        self.steps = steps

    def evaluate(self, value: object) -> object:
        """Apply the steps to the root's ``value``; see :func:`evaluate`."""
        return evaluate(value, self.steps)

    def __repr__(self) -> str:
        return f"Path({self.text!r})"


def _fail(text: str, position: int, why: str, function: str | None) -> ExpressionError:
    where = f" in @track on {function}" if function else ""
    pointer = " " * position + "^"
    return ExpressionError(
        f"invalid expression {text!r}{where}: {why} at position {position}\n  {text}\n  {pointer}",
        function=function,
        expression=text,
    )


def _check_name(text: str, name: str, position: int, function: str | None) -> None:
    if name.startswith("_"):
        raise _fail(
            text,
            position,
            f"name {name!r} starts with an underscore; private and dunder names are refused",
            function,
        )
    if name in _INTERNAL_NAMES or name.startswith("co_"):
        raise _fail(
            text,
            position,
            f"name {name!r} leads to interpreter internals (frames, code, namespaces); refused",
            function,
        )


def parse(text: str, *, function: str | None = None) -> Path:
    """Parse ``text`` into a :class:`Path` (the root is not checked here).

    Args:
        text: The expression, e.g. ``"result.items[0]['sku']"``.
        function: The decorated function's qualified name, for error messages.

    Raises:
        ExpressionError: On a syntax error or a name with a leading underscore.
    """
    if not isinstance(text, str):
        raise ExpressionError(
            f"an expression must be a string, got {type(text).__name__}",
            function=function,
        )
    match = _NAME_RE.match(text)
    if match is None:
        why = "empty expression" if not text else "expected a name"
        raise _fail(text, 0, why, function)
    root = match.group()
    _check_name(text, root, 0, function)
    pos = match.end()
    steps: list[Step] = []
    end = len(text)
    while pos < end:
        char = text[pos]
        if char == ".":
            match = _NAME_RE.match(text, pos + 1)
            if match is None:
                raise _fail(text, pos + 1, "expected a name after '.'", function)
            _check_name(text, match.group(), pos + 1, function)
            steps.append((NAME, match.group()))
            pos = match.end()
        elif char == "[":
            pos += 1
            if pos < end and text[pos] in "'\"":
                quote = text[pos]
                close = text.find(quote, pos + 1)
                if close < 0:
                    raise _fail(text, pos, "unterminated string", function)
                key = text[pos + 1 : close]
                if "\\" in key:
                    raise _fail(text, pos, "escapes are not supported in keys", function)
                steps.append((KEY, key))
                pos = close + 1
            else:
                match = _INT_RE.match(text, pos)
                if match is None:
                    raise _fail(text, pos, "expected an integer or a quoted key", function)
                digits = match.group().lstrip("-")
                if len(digits) > _MAX_INDEX_DIGITS:
                    raise _fail(
                        text,
                        pos,
                        f"index has {len(digits)} digits; at most 18 are allowed",
                        function,
                    )
                steps.append((INDEX, int(match.group())))
                pos = match.end()
            if pos >= end or text[pos] != "]":
                raise _fail(text, pos, "expected ']'", function)
            pos += 1
        else:
            raise _fail(text, pos, f"unexpected {char!r}", function)
    return Path(text, root, tuple(steps))


_KIND_CACHE: dict[type, int] = {}
_OTHER: Final = 0
_MAPPING: Final = 1
_SEQUENCE: Final = 2
_REFUSED: Final = 3

# Values whose attributes are namespaces, frames or code: never stepped into.
_REFUSED_TYPES: Final = (
    types.ModuleType,
    types.FrameType,
    types.CodeType,
    types.TracebackType,
    types.FunctionType,
    types.MethodType,
    types.BuiltinFunctionType,
    types.BuiltinMethodType,
    types.GeneratorType,
    types.CoroutineType,
    types.AsyncGeneratorType,
    types.CellType,
)


def _kind_of(cls: type) -> int:
    # isinstance() against the ABCs is slow; a type's answer does not change, so cache it.
    kind = _KIND_CACHE.get(cls)
    if kind is None:
        if issubclass(cls, _REFUSED_TYPES):
            kind = _REFUSED
        elif issubclass(cls, Mapping):
            kind = _MAPPING
        elif issubclass(cls, Sequence):
            kind = _SEQUENCE
        else:
            kind = _OTHER
        if len(_KIND_CACHE) < 4096:  # bounded: classes made on the fly must not leak
            _KIND_CACHE[cls] = kind
    return kind


def reads_attributes(cls: type) -> bool:
    """Whether a ``.name`` step on a ``cls`` value is a plain attribute read.

    True when :func:`read_name` would read ``getattr(value, name, ABSENT)`` on it: not a
    mapping, not a refused type (module, frame, function ...), not ``None``.
    """
    if cls is type(None) or cls is _Missing or cls is _Absent:
        return False
    kind = _KIND_CACHE.get(cls)
    if kind is None:
        kind = _kind_of(cls)
    return kind in (_OTHER, _SEQUENCE)


class RefusedError(ExpressionError):
    """A step from a module, frame, code object, function or generator (call time)."""


def _refuse(value: object, step: object) -> RefusedError:
    return RefusedError(
        f"refusing to read {step} from a {type(value).__name__}: modules, frames, code, "
        "functions and generators are never read by the path language"
    )


def read_name(value: object, name: str) -> object:
    """One ``.name`` step: a mapping key on a mapping, a public attribute otherwise.

    Returns:
        The value read; :data:`MISSING` when ``value`` or the value read is ``None``;
        :data:`ABSENT` when nothing is there.

    Raises:
        RefusedError: When ``value`` is a module, frame, code object, function,
            generator or coroutine.
    """
    cls = type(value)
    if cls is dict:
        found = value.get(name, ABSENT)  # type: ignore[attr-defined]
    elif value is None or value is MISSING:
        return MISSING
    else:
        kind = _KIND_CACHE.get(cls)
        if kind is None:
            kind = _kind_of(cls)
        if kind == _MAPPING:
            # `in` first: value[name] would insert the key into a defaultdict.
            found = value[name] if name in value else ABSENT  # type: ignore[operator,index]  # noqa: SIM401 - .get() of a Mapping subclass may call __missing__
        elif kind == _REFUSED:
            raise _refuse(value, f".{name}")
        else:
            found = getattr(value, name, ABSENT)
    return MISSING if found is None else found


class _NotPlain(Exception):
    """The value is not a plain object or dict: the names are read one by one."""


def compile_names(names: tuple[str, ...]) -> Callable[[object], tuple[object, ...]]:
    """Compile several ``.name`` steps from one value into one reader of a tuple.

    The reader gives exactly ``tuple(read_name(value, n) for n in names)``, except that
    a value that is ``None`` is left as ``None`` (callers treat ``None`` and
    :data:`MISSING` alike). The common cases are read in C: a ``dict`` with
    :func:`operator.itemgetter`, any other object that is not a mapping with
    :func:`operator.attrgetter`; when a name is absent (or the value is a mapping, a
    refused type or ``None``) the names are read again one by one by :func:`read_name`.
    """
    attrs = operator.attrgetter(*names)
    items = operator.itemgetter(*names)
    single = len(names) == 1
    other = (_OTHER, _SEQUENCE)
    kinds = _KIND_CACHE

    def read(value: object) -> tuple[object, ...]:
        cls = type(value)
        try:
            if cls is dict:
                got = items(value)  # type: ignore[arg-type]
            else:
                kind = kinds.get(cls)
                if kind not in other:
                    raise _NotPlain
                got = attrs(value)
        except (AttributeError, KeyError, _NotPlain):
            return tuple([read_name(value, name) for name in names])
        return (got,) if single else got

    return read


def _read_item(value: object, kind: int, arg: str | int) -> object:
    """One ``[int]`` or ``["key"]`` step (``kind`` is the step kind)."""
    cls = type(value)
    vkind = _MAPPING if cls is dict else _KIND_CACHE.get(cls)
    if vkind is None:
        vkind = _kind_of(cls)
    if vkind == _REFUSED:
        raise _refuse(value, f"[{arg!r}]")
    if kind == INDEX:
        if vkind != _SEQUENCE:
            return ABSENT
        try:
            return value[arg]  # type: ignore[index]
        except IndexError:
            return ABSENT
    if vkind != _MAPPING:
        return ABSENT
    return value[arg] if arg in value else ABSENT  # type: ignore[operator,index]  # noqa: SIM401 - see read_name


def evaluate(value: object, steps: tuple[Step, ...]) -> object:
    """Walk ``steps`` from ``value``; see :func:`read_name` for the results.

    Only attribute reads of public names (checked at parse time) and item reads on
    mappings and sequences happen here; exceptions other than "not there" (a property
    that raises, say) propagate to the caller, which counts the event as dropped.
    """
    for kind, arg in steps:
        if value is None or value is MISSING:
            return MISSING
        value = read_name(value, arg) if kind == NAME else _read_item(value, kind, arg)  # type: ignore[arg-type]
        if value is ABSENT:
            return ABSENT
    return MISSING if value is None else value


Reader = Callable[[object], object]
"""A compiled path: root value -> value, :data:`MISSING` or :data:`ABSENT`."""


def _read_root(value: object) -> object:
    return MISSING if value is None else value


def compile_steps(steps: tuple[Step, ...]) -> Reader:
    """Compile ``steps`` into a reader of the root's value (the fast paths live here).

    No step: the value itself; one ``.name`` step (the commonest shape): one call of
    :func:`read_name`; anything else: :func:`evaluate`.
    """
    if not steps:
        return _read_root
    if len(steps) == 1 and steps[0][0] == NAME:
        name = steps[0][1]
        assert isinstance(name, str)

        def read_one(value: object) -> object:
            return read_name(value, name)

        return read_one

    def read_path(value: object) -> object:
        return evaluate(value, steps)

    return read_path
