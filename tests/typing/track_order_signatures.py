"""Typing examples checked by mypy (never run): @track_order keeps the callable's type."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

from typing_extensions import assert_type

import gbtrack
from gbtrack import OrderDraft, Tracker, each, literal, track_order


@track_order(
    customer_id="customer_id",
    order_id="result",
    total_paid="paid",
    channel=literal("web"),
    line_items=each("lines", sku="sku", quantity="qty"),
    return_window_days=14,
)
def checkout(customer_id: str, paid: Decimal, lines: list[dict[str, object]]) -> str:
    return "A-1"


assert_type(checkout("c", Decimal(1), []), str)


class Shop:
    @track_order(order_id=literal("o"), total_paid=lambda call: 1.0)
    def rows(self) -> Iterator[int]:
        yield 1


assert_type(Shop().rows(), Iterator[int])
assert_type(gbtrack.send_order(order_id="o", total_paid=1), OrderDraft | None)
assert_type(Tracker().order(order_id="o", total_paid=Decimal(2)), OrderDraft | None)
