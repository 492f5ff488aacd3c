"""Issue 19: decoration terminates, quickly, on any annotation, and raises only ExpressionError.

Hypothesis builds annotations (nested generics, unions, ``Annotated``, self-referential
type aliases and type variables, forward references that never resolve, classes of
every kind) and paths over them; ``@track`` must return within a bound and raise
nothing but :class:`~gbtrack.ExpressionError`. So must ``gbtrack.check()``'s final
pass (:func:`gbtrack._typecheck.walk_steps`), where unresolvable names are unknown.
"""

from __future__ import annotations

import collections.abc as cabc
import contextlib
import dataclasses
import decimal
import enum
import time
import typing
from typing import Annotated, Any, ForwardRef, Generic, Literal, NamedTuple, NewType, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from typing_extensions import TypeAliasType, TypedDict

from gbtrack import ExpressionError, InMemorySender, Tracker
from gbtrack._expr import parse
from gbtrack._typecheck import Deferred, PathTypeError, walk_steps

BOUND_SECONDS = 2.0  # a decoration takes about a millisecond; generous for a loaded box

T = TypeVar("T")
SelfBound = TypeVar("SelfBound", bound="SelfBound")
Constrained = TypeVar("Constrained", int, "Line")
Loop = TypeAliasType("Loop", ForwardRef("Loop"))
Ping = TypeAliasType("Ping", ForwardRef("Pong"))
Pong = TypeAliasType("Pong", ForwardRef("Ping"))
Nested = TypeAliasType("Nested", "list[Nested] | dict[str, Nested] | int | None")
Sku = NewType("Sku", str)


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Line:
    sku: str
    total: decimal.Decimal
    child: Line | None = None


class Model(BaseModel):
    id: int
    name: str
    items: list[Line] = []


class Keys(TypedDict):
    id: str
    value: float


class Pair(NamedTuple):
    name: str
    value: int


class Dynamic:
    def __getattr__(self, name: str) -> object:
        return name


@dataclasses.dataclass
class Box(Generic[T]):
    value: T
    items: list[T]


NAMESPACE: dict[str, Any] = {
    name: value
    for name, value in globals().items()
    if isinstance(value, type | TypeVar | TypeAliasType) or name == "Sku"
}

LEAVES = st.sampled_from(
    [
        int,
        str,
        float,
        bool,
        None,
        Any,
        object,
        bytes,
        decimal.Decimal,
        Color,
        Line,
        Model,
        Keys,
        Pair,
        Dynamic,
        T,
        SelfBound,
        Constrained,
        Loop,
        Ping,
        Nested,
        Sku,
        Literal["a", 1],
        ForwardRef("Nowhere"),
        ForwardRef("Line"),
        "Nowhere",
        "Ping",
        "list[Nowhere]",
        "Line | None",
        "not valid python (",
        typing.ClassVar,
        cabc.Callable[[int], str],
        type[Line],
    ]
)


def _build(make: typing.Callable[[], Any]) -> Any:
    try:
        return make()
    except Exception:  # typing refuses some combinations (ClassVar in a list ...)
        return Any


_aliases = iter(range(10**9))


def _self_alias(inner: Any) -> Any:
    name = f"Rec{next(_aliases)}"
    alias = TypeAliasType(name, typing.Union[inner, list[ForwardRef(name)]])  # noqa: UP007
    NAMESPACE[name] = alias
    return alias


def _extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    one = children
    two = st.tuples(children, children)
    return st.one_of(
        one.map(lambda a: _build(lambda: list[a])),
        one.map(lambda a: _build(lambda: dict[str, a])),
        one.map(lambda a: _build(lambda: cabc.Sequence[a])),
        one.map(lambda a: _build(lambda: cabc.Mapping[str, a])),
        one.map(lambda a: _build(lambda: tuple[a, ...])),
        one.map(lambda a: _build(lambda: typing.Optional[a])),  # noqa: UP045
        one.map(lambda a: _build(lambda: Annotated[a, "meta"])),
        one.map(lambda a: _build(lambda: Box[a])),
        one.map(lambda a: _build(lambda: TypeVar("B", bound=a))),
        one.map(lambda a: _build(lambda: _self_alias(a))),
        two.map(lambda ab: _build(lambda: typing.Union[ab[0], ab[1]])),  # noqa: UP007
        two.map(lambda ab: _build(lambda: tuple[ab[0], ab[1]])),
    )


ANNOTATIONS = st.recursive(LEAVES, _extend, max_leaves=12)
STEPS = st.lists(
    st.one_of(
        st.sampled_from(
            [".id", ".sku", ".total", ".child", ".items", ".name", ".value", ".x", ".root"]
        ),
        st.sampled_from(["[0]", "[-1]", "[3]", '["k"]', '["id"]']),
    ),
    min_size=0,
    max_size=6,
)

tracker = Tracker(InMemorySender())


def _function(annotation: Any) -> Any:
    def tracked(x: Any) -> None: ...

    tracked.__annotations__ = {"x": annotation, "return": annotation}
    return tracked


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(annotation=ANNOTATIONS, steps=STEPS, leaf=st.sampled_from(["metadata", "any"]))
def test_decoration_terminates_and_raises_only_expression_error(
    annotation: Any, steps: list[str], leaf: str
) -> None:
    path = "x" + "".join(steps)
    role = {"metadata": {"metadata": {"v": path}}, "any": {"when": path}}[leaf]
    options: dict[str, Any] = {"customer_id": "x", **role}
    start = time.perf_counter()
    try:
        tracker.track("generated", **options)(_function(annotation))
        tracker.track("generated", metadata={"r": "result" + "".join(steps)})(_function(annotation))
    except ExpressionError:
        pass
    took = time.perf_counter() - start
    assert took < BOUND_SECONDS, f"decoration took {took:.2f} s on {annotation!r}"

    # gbtrack.check()'s pass: whatever cannot be resolved is unknown, never a crash.
    start = time.perf_counter()
    with contextlib.suppress(PathTypeError, Deferred):
        walk_steps(annotation, parse(path).steps, leaf="metadata", globalns=NAMESPACE)
    took = time.perf_counter() - start
    assert took < BOUND_SECONDS, f"the check took {took:.2f} s on {annotation!r}"


def test_a_union_with_a_string_that_is_not_python_is_unknown() -> None:
    """Found by the property test: Union[...] compiles string members (SyntaxError)."""
    from gbtrack._typecheck import _union

    assert _union([int, "not valid python ("]) is Any


@pytest.mark.parametrize("annotation", [SelfBound, Loop, Ping, "Ping"])
def test_the_recursive_annotations_are_unknown_with_a_reason(annotation: Any) -> None:
    tp, why = walk_steps(annotation, parse("x.id.name").steps, globalns=NAMESPACE)
    assert tp is Any
    assert why is not None
