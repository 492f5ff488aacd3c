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
- A missing attribute, key or index, or ``None`` anywhere on the way, yields
  :data:`MISSING`.

There is no ``eval`` and no call: evaluation is ``getattr(obj, name, MISSING)`` on
public names and ``obj[key]`` on mappings and sequences, nothing else. Names with a
leading underscore are refused when the expression is compiled, so no dunder walk
(``__class__.__mro__`` ...) can be written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Final, Literal

from gbtrack._errors import ExpressionError

__all__ = ["MISSING", "Path", "Step", "evaluate", "literal", "parse"]


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
"""What a path yields when it hits a missing attribute, key, index or ``None``."""

# Step kinds: small ints compared with ``is`` on the hot path.
NAME: Final = 0  # .name: mapping key on mappings, public attribute otherwise
INDEX: Final = 1  # [int]
KEY: Final = 2  # ["key"]

Step = tuple[int, "str | int"]
"""One accessor: ``(kind, argument)``."""

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INT_RE = re.compile(r"-?[0-9]+")


class literal(str):
    """Mark a string as a constant, not a path expression.

    Example:
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


def _kind_of(cls: type, value: object) -> int:
    # isinstance() against the ABCs is slow; a type's answer does not change, so cache it.
    kind = _KIND_CACHE.get(cls)
    if kind is None:
        if isinstance(value, Mapping):
            kind = _MAPPING
        elif isinstance(value, Sequence):
            kind = _SEQUENCE
        else:
            kind = _OTHER
        if len(_KIND_CACHE) < 4096:  # bounded: classes made on the fly must not leak
            _KIND_CACHE[cls] = kind
    return kind


def _read_name(value: object, name: str) -> object:
    """One ``.name`` step, as :func:`evaluate` does it: the hot path's commonest shape."""
    if value is None or value is MISSING:
        return MISSING
    cls = type(value)
    if cls is dict:
        value = value.get(name)  # type: ignore[attr-defined]
    else:
        kind = _KIND_CACHE.get(cls)
        if kind is None:
            kind = _kind_of(cls, value)
        if kind == _MAPPING:
            try:
                value = value[name]  # type: ignore[index]
            except KeyError:
                return MISSING
        else:
            value = getattr(value, name, MISSING)
    return MISSING if value is None else value


def evaluate(value: object, steps: tuple[Step, ...]) -> object:
    """Walk ``steps`` from ``value``; :data:`MISSING` when anything is absent or ``None``.

    Only attribute reads of public names (checked at parse time) and item reads on
    mappings and sequences happen here; exceptions other than "not there" (a property
    that raises, say) propagate to the caller, which drops the event.
    """
    for step, arg in steps:
        if value is None or value is MISSING:
            return MISSING
        cls = type(value)
        kind = _MAPPING if cls is dict else _KIND_CACHE.get(cls)
        if kind is None:
            kind = _kind_of(cls, value)
        if step == NAME:
            if kind == _MAPPING:
                try:
                    value = value[arg]  # type: ignore[index]
                except KeyError:
                    return MISSING
            else:
                value = getattr(value, arg, MISSING)  # type: ignore[arg-type]
        elif step == INDEX:
            if kind != _SEQUENCE:
                return MISSING
            try:
                value = value[arg]  # type: ignore[index]
            except IndexError:
                return MISSING
        elif kind == _MAPPING:
            try:
                value = value[arg]  # type: ignore[index]
            except KeyError:
                return MISSING
        else:
            return MISSING
    return MISSING if value is None else value
