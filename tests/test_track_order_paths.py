"""@track_order's two emitters: the fast path of the plain shapes and the general path.

Every behaviour test of ``tests/test_track_order.py`` runs here again on both paths
(``tests._paths.call_path``: ``generated`` keeps the fast emitter wherever a plan is
eligible, ``general`` never builds it); the tests below check that the fast path is the
one taken for the plain shapes and that it hands on the very draft the general path
builds, and reports the same drops and misses, for values it keeps and values it leaves
to the general path.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Final, NamedTuple

import pytest
from tests._paths import call_path  # noqa: F401 - runs every test on both call paths
from tests.test_track_order import *  # noqa: F403 - the behaviour tests, on both paths

from gbtrack import InMemorySender, OrderDraft, Tracker, _codegen, each, literal, track_order
from gbtrack import _order_decorator as od
from gbtrack._order import now_timestamp, utc_timestamp

# Not about emitting; a plan lives until the cyclic GC collects it, so a second
# decoration of the same function in one process would find two sites alike.
del test_sites_are_registered_for_check  # noqa: F821 - from the star import


@dataclasses.dataclass
class _Product:
    id: Any
    name: Any


@dataclasses.dataclass
class _Line:
    product: Any
    quantity: Any
    price: Any


class _Line2(NamedTuple):
    product: Any
    quantity: Any
    price: Any


@dataclasses.dataclass
class _Buyer:
    id: Any
    email: Any = None


@dataclasses.dataclass
class _Order:
    id: Any
    total: Any
    lines: Any
    channel: Any = "web"


def _decorate(mode: str, **extra: Any) -> tuple[Callable[..., Any], Tracker, InMemorySender]:
    """A checkout tracked by a fresh tracker, its wrapper generated in ``mode``."""
    sender = InMemorySender()
    tracker = Tracker(sender)
    options: dict[str, Any] = {
        "customer_id": "buyer.id",
        "email": "buyer.email",
        "order_id": "result.id",
        "total_paid": "result.total",
        "total_tax": "result.total",
        "channel": "result.channel",
        "line_items": each(
            "result.lines",
            product_id="product.id",
            title="product.name",
            quantity="quantity",
            price="price",
            sku=literal("SKU"),
            weight=2,
        ),
        **extra,
    }
    saved = _codegen.mode
    _codegen.mode = mode  # type: ignore[assignment]
    try:

        @track_order(tracker=tracker, **options)
        def checkout(buyer: _Buyer, placed: _Order) -> _Order:
            return placed

    finally:
        _codegen.mode = saved
    return checkout, tracker, sender


def _outcome(mode: str, buyer: Any, placed: Any, **extra: Any) -> tuple[object, ...]:
    checkout, tracker, sender = _decorate(mode, **extra)
    checkout(buyer, placed)
    stats = tracker.stats
    return sender.orders, dict(stats.dropped), stats.missing, stats.total_dropped


def _general_runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record each run of a plan's general path from now on."""
    runs: list[str] = []
    general = od.OrderPlan.emit

    def emit(self: od.OrderPlan, *args: Any) -> None:
        runs.append(self.qualname)
        general(self, *args)

    monkeypatch.setattr(od.OrderPlan, "emit", emit)
    return runs


def _line(n: int, **changes: Any) -> _Line:
    return dataclasses.replace(_Line(_Product(f"p-{n}", f"Product {n}"), 1 + n, 2.5 * n), **changes)


_CASES: dict[str, tuple[Any, Any]] = {
    "plain": (_Buyer("c-1", "c1@x.io"), _Order("A-1", 10.5, [_line(1), _line(2), _line(3)])),
    "int ids, tuple, no email": (_Buyer(42), _Order(7, 10, (_line(1),))),
    "decimal and blank texts": (
        _Buyer("c-1", "  "),
        _Order("A-1", Decimal("9.90"), [_line(1, price=Decimal("1.10"), product=_Product(" ", 5))]),
    ),
    "none values": (_Buyer("c-1"), _Order("A-1", 1.0, [_line(1, product=_Product(None, None))])),
    "a line's product is None": (_Buyer("c-1"), _Order("A-1", 1.0, [_line(1, product=None)])),
    "dict lines": (
        _Buyer("c-1"),
        _Order("A-1", 1.0, [{"product": {"id": "p", "name": "n"}, "quantity": 1, "price": 2}]),
    ),
    "no lines": (_Buyer("c-1"), _Order("A-1", 1.0, None)),
    "empty lines": (_Buyer("c-1"), _Order("A-1", 1.0, [])),
    "a generator of lines": (_Buyer("c-1"), _Order("A-1", 1.0, (_line(n) for n in range(2)))),
    "an absent attribute": (_Buyer("c-1"), _Order("A-1", 1.0, [_line(1, product=object())])),
    "nan price": (_Buyer("c-1"), _Order("A-1", 1.0, [_line(1, price=math.nan)])),
    "negative total": (_Buyer("c-1"), _Order("A-1", -1.0, [])),
    "bool quantity": (_Buyer("c-1"), _Order("A-1", 1.0, [_line(1, quantity=True)])),
    "bad channel": (_Buyer("c-1"), _Order("A-1", 1.0, [], channel="shop")),
    "no customer": (_Buyer(None), _Order("A-1", 1.0, [])),
    "blank order id": (_Buyer("c-1"), _Order(" ", 1.0, [])),
    "lines is a string": (_Buyer("c-1"), _Order("A-1", 1.0, "abc")),
    "a str subclass": (_Buyer("c-1"), _Order(type("S", (str,), {})("A-1"), 1.0, [])),
    "mixed classes of lines": (
        _Buyer("c-1"),
        _Order(
            "A-1", 1.0, [_line(1), _Line(_Product("p", "n"), 1, 1), _Line2(_Product(1, "n"), 2, 3)]
        ),
    ),
    "a line missing a key": (_Buyer("c-1"), _Order("A-1", 1.0, [{"product": {"id": "p"}}])),
}


# What the fast path hands on itself (the rest it leaves to the general path).
_FAST: Final = frozenset(
    {
        "plain",
        "int ids, tuple, no email",
        "decimal and blank texts",
        "none values",
        "dict lines",
        "no lines",
        "empty lines",
        "a str subclass",
        "mixed classes of lines",
    }
)


@pytest.mark.parametrize("case", list(_CASES))
def test_the_fast_path_hands_on_what_the_general_path_does(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(od, "_now", lambda: 1765000000.25)
    buyer, placed = _CASES[case]
    runs = _general_runs(monkeypatch)
    if case == "a generator of lines":  # consumed by one call: one generator per path
        fast = _outcome("gate", buyer, dataclasses.replace(placed, lines=iter([_line(0)])))
        general = _outcome("general", buyer, dataclasses.replace(placed, lines=iter([_line(0)])))
    else:
        fast = _outcome("gate", buyer, placed)
        general = _outcome("general", buyer, placed)
    assert fast == general
    # The plain cases never reach the general path on the fast side (once: the general side).
    assert len(runs) == (1 if case in _FAST else 2)
    assert all(type(d) is OrderDraft for d in fast[0])  # type: ignore[attr-defined]


def test_the_plain_shape_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    runs = _general_runs(monkeypatch)
    checkout, _tracker, sender = _decorate("gate")
    checkout(*_CASES["plain"])
    assert runs == []
    assert [d.order_id for d in sender.orders] == ["A-1"]


@pytest.mark.parametrize(
    "extra",
    [
        {"session_token": None},
        {"order_id": lambda call: "A-1"},
        {"line_items": each("result.lines", sku=lambda line: "s")},
        {"line_items": each("result.lines", title="product.name[0]")},
    ],
)
def test_other_shapes_take_the_general_path(extra: dict[str, Any]) -> None:
    compiled: list[object] = []
    original = od._FastOrder.of

    def spy(plan: od.OrderPlan, compiler: Any) -> object:
        fast = original(plan, compiler)
        compiled.append(fast)
        return fast

    od._FastOrder.of = spy  # type: ignore[method-assign,assignment]
    try:
        _decorate("gate", **extra)
    finally:
        od._FastOrder.of = original  # type: ignore[method-assign]
    assert compiled in ([], [None])


_NESTED: Final = {
    "extra": {"extra": {"source": "result.channel", "n": 3, "none": "buyer.email"}},
    "extra as one path (an index step)": {"extra": "result.lines[0]"},
    "merchant and redemption": {
        "merchant": {"unique_id": "result.id", "branch": {"name": "result.channel"}},
        "redemption": {"coupon_codes": "result.channel"},
    },
    "lines as a path to mappings": {},
}


@pytest.mark.parametrize("shape", list(_NESTED))
@pytest.mark.parametrize(
    "lines", [[{"sku": "s", "price": 1}], [{"sku": "s", "pirce": 1}], [{"a": 1.5}], ({"b": "x"},)]
)
def test_nested_arguments_and_mapped_lines_on_the_fast_path(
    shape: str, lines: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(od, "_now", lambda: 1765000000.25)
    runs = _general_runs(monkeypatch)
    placed = _Order("A-1", 5, lines)
    options = {"line_items": "result.lines", **_NESTED[shape]}
    fast = _outcome("gate", _Buyer("c-1"), placed, **options)
    general = _outcome("general", _Buyer("c-1"), placed, **options)
    assert fast == general
    if fast[1] == {}:  # handed on: by the fast path alone
        assert len(runs) == 1
        assert fast[0]  # type: ignore[truthy-bool]


def test_a_property_that_raises_is_the_general_paths_drop() -> None:
    class Raising(_Order):
        @property  # type: ignore[misc]
        def id(self) -> str:
            raise RuntimeError("boom")

        @id.setter
        def id(self, value: object) -> None:
            pass

    outcomes = [
        _outcome(mode, _Buyer("c-1"), Raising(None, 1.0, [])) for mode in ("gate", "general")
    ]
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][1] == {"resolver_error": 1}


def test_now_timestamp_is_utc_timestamp() -> None:
    rng = random.Random(22)
    values = [rng.uniform(0, 4e9) for _ in range(20_000)]
    values += [1765000000 + k / 1e6 + d for k in range(0, 1_000_000, 997) for d in (0, 5e-7, -5e-7)]
    values += [0.0, 1.5, 1765000000.9999995, 1765000000.0000005, 1765000000.9994999]
    assert [now_timestamp(v) for v in values] == [utc_timestamp(v) for v in values]
