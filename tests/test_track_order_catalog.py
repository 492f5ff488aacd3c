"""Issue 22: `gbtrack events` and gbtrack.check() list @track_order sites as orders."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import gbtrack
from gbtrack import ExpressionError
from gbtrack._catalog import as_json, as_markdown, as_text, build, import_modules

SHOP = """
from __future__ import annotations

import dataclasses

from gbtrack import each, literal, track, track_order


@track_order(
    customer_id="customer_id",
    order_id="result.number",
    total_paid="result.paid",
    channel=literal("web"),
    line_items=each("result.lines", sku="sku", quantity="qty"),
)
def checkout(customer_id: str) -> Placed:
    return Placed("A-1", 3.0, [Line("s", 1)])


@dataclasses.dataclass
class Line:
    sku: str
    qty: int


@dataclasses.dataclass
class Placed:
    number: str
    paid: float
    lines: list[Line]
"""

PLACE_ORDER = """
from gbtrack import track

@track("place_order", customer_id="cid")
def placed(cid: str) -> None: ...
"""


_count = iter(range(1_000_000))


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    # A new package name per test: sites of an earlier test's module may still be alive.
    package = tmp_path / f"order_shop_{next(_count)}"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "orders.py").write_text(textwrap.dedent(SHOP))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield package
    for name in [n for n in sys.modules if n.split(".")[0] == package.name]:
        del sys.modules[name]


def test_orders_are_listed_apart_and_checked(shop: Path) -> None:
    catalog = build(import_modules([shop.name]))
    assert catalog.events == {}
    (site,) = catalog.orders
    assert site.kind == "order"
    assert site.function == "checkout"
    assert catalog.inconsistencies == []
    assert catalog.unchecked == []  # every path checked, each() inner ones included
    text = as_text(catalog)
    assert "orders (Gameball Order API)  (1 site)" in text
    assert "line_items.quantity: qty" in text
    data = json.loads(as_json(catalog))
    (order,) = data["orders"]
    assert order["kind"] == "order"
    assert order["fields"]["channel"] == "literal('web')"
    assert "## Orders (Gameball Order API)" in as_markdown(catalog)


def test_forward_reference_checked_at_first_call_and_by_check(shop: Path) -> None:
    (shop / "orders.py").write_text(
        textwrap.dedent(SHOP).replace('quantity="qty"', 'quantity="qtty"')
    )
    import_modules([shop.name])  # deferred: Placed is defined further down
    with pytest.raises(ExpressionError, match="Line has no field 'qtty'; did you mean 'qty'"):
        gbtrack.check()
    catalog = build([shop.name])
    assert [i.kind for i in catalog.inconsistencies] == ["check"]
    assert "@track_order on checkout" in catalog.inconsistencies[0].message
    from gbtrack.testing import capture_events

    checkout = sys.modules[f"{shop.name}.orders"].checkout
    with capture_events() as captured:
        checkout("c")  # the first call runs the checks: a counted drop
    assert captured.orders == []
    assert gbtrack.get_tracker().stats.dropped.get("invalid_expression") == 1


def test_place_order_event_beside_track_order_is_flagged(shop: Path) -> None:
    (shop / "events.py").write_text(PLACE_ORDER)
    catalog = build(import_modules([shop.name]))
    (flag,) = catalog.inconsistencies
    assert flag.kind == "place_order"
    assert "fires place_order itself" in flag.message
    assert len(flag.sites) == 2
