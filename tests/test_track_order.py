"""Issue 22 item 1: @track_order, each(), the manual forms and submit_order."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterator, Generator, Iterable, Sequence
from decimal import Decimal
from typing import Any, TypedDict

import pydantic
import pytest

import gbtrack
from gbtrack import (
    Call,
    ConfigurationError,
    ExpressionError,
    InMemorySender,
    LoggingSender,
    OrderDraft,
    Tracker,
    TrackingError,
    each,
    identify,
    literal,
    track_order,
)
from gbtrack._order_decorator import sender_takes_orders
from gbtrack.testing import capture_events


# --- the shop's types ------------------------------------------------------------------------
@dataclasses.dataclass
class Product:
    id: str
    name: str
    categories: list[str]


@dataclasses.dataclass
class Line:
    product: Product
    quantity: int
    unit_price: Decimal


@dataclasses.dataclass
class Customer:
    id: str
    email: str | None = None


@dataclasses.dataclass
class Placed:
    number: str
    amount_paid: Decimal
    lines: list[Line]
    placed_at: dt.datetime
    is_paid: bool = True
    tax: Decimal | None = None


class PLine(pydantic.BaseModel):
    sku: str
    qty: int
    price: float


class PPlaced(pydantic.BaseModel):
    id: int
    paid: float
    lines: Sequence[PLine]


class DLine(TypedDict):
    sku: str
    qty: int


def _placed(number: str = "A-1", paid: str = "9.50") -> Placed:
    lines = [
        Line(Product("p1", "Pen", ["office"]), 2, Decimal("4.75")),
        Line(Product("p2", "Ink", []), 1, Decimal("0")),
    ]
    return Placed(number, Decimal(paid), lines, dt.datetime(2024, 1, 2, 3, 4, 5, 678000))


CHECKOUT = {
    "customer_id": "customer.id",
    "order_id": "result.number",
    "total_paid": "result.amount_paid",
}


# --- every argument kind ----------------------------------------------------------------------
def test_full_order_from_paths_literals_constants_and_callables(
    tracker: Tracker, sender: InMemorySender
) -> None:
    @track_order(
        **CHECKOUT,
        order_date="result.placed_at",
        total_price=lambda call: call.result.amount_paid + 1,
        total_tax="result.tax",
        total_shipping=Decimal("2.5"),
        line_items=each(
            "result.lines",
            product_id="product.id",
            title="product.name",
            category="product.categories",
            quantity="quantity",
            price="unit_price",
            vendor=literal("acme"),
            weight=1.5,
            extra=lambda line: {"pos": line.quantity},
        ),
        email="customer.email",
        guest=False,
        channel=literal("web"),
        extra={"payment": literal("card"), "n": "result.number"},
        merchant={"unique_id": literal("store-7"), "branch": {"unique_id": "branch"}},
        redemption={"points_hold_reference": "hold"},
        cart_id="cart_id",
        return_window_days=14,
        tracker=tracker,
    )
    def checkout(customer: Customer, cart_id: int, branch: str, hold: str | None = None) -> Placed:
        return _placed()

    assert checkout(Customer("c-1", "a@b.co"), 42, "b-9", hold="h-1").number == "A-1"
    (order,) = sender.orders
    assert isinstance(order, OrderDraft)
    assert order.function.endswith("checkout")
    assert order.to_body() == {
        "customerId": "c-1",
        "email": "a@b.co",
        "orderId": "A-1",
        "orderDate": "2024-01-02T03:04:05.678Z",
        "totalPaid": 9.5,
        "totalPrice": 10.5,
        "totalShipping": 2.5,
        "lineItems": [
            {
                "productId": "p1",
                "title": "Pen",
                "category": ["office"],
                "quantity": 2,
                "price": 4.75,
                "vendor": "acme",
                "weight": 1.5,
                "extra": {"pos": 2},
            },
            {
                "productId": "p2",
                "title": "Ink",
                "category": [],
                "quantity": 1,
                "price": 0.0,
                "vendor": "acme",
                "weight": 1.5,
                "extra": {"pos": 1},
            },
        ],
        "extra": {"payment": "card", "n": "A-1"},
        "merchant": {"uniqueId": "store-7", "branch": {"uniqueId": "b-9"}},
        "redemption": {"pointsHoldReference": "h-1"},
        "guest": False,
        "channel": "web",
        "cartId": "42",
        "cashbackConfigurations": {"returnWindow": 14},
    }
    assert tracker.stats.sent == 1
    assert tracker.stats.dropped == {}


def test_order_date_defaults_to_the_call_time_and_naive_is_utc(
    tracker: Tracker, sender: InMemorySender
) -> None:
    @track_order(**CHECKOUT, tracker=tracker)
    def now(customer: Customer) -> Placed:
        return _placed()

    @track_order(**CHECKOUT, order_date="when", tracker=tracker)
    def dated(customer: Customer, when: dt.datetime) -> Placed:
        return _placed()

    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    now(Customer("c"))
    aware = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    dated(Customer("c"), aware)
    dated(Customer("c"), dt.datetime(2024, 5, 1, 12, 0))
    first, second, third = sender.orders
    assert dt.datetime.fromisoformat(first.order_date[:-1] + "+00:00") >= before
    assert second.order_date == "2024-05-01T10:00:00.000Z"
    assert third.order_date == "2024-05-01T12:00:00.000Z"


def test_identity_from_identify_and_a_customer_object(
    tracker: Tracker, sender: InMemorySender
) -> None:
    @track_order(order_id="result.number", total_paid="result.amount_paid", tracker=tracker)
    def checkout() -> Placed:
        return _placed()

    with identify("c-ambient", email="x@y.co"):
        checkout()
    checkout()  # no customer at all
    (order,) = sender.orders
    assert (order.customer_id, order.email) == ("c-ambient", "x@y.co")
    assert tracker.stats.dropped == {"no_customer_id": 1}


# --- each() over dataclasses, pydantic models, dicts ------------------------------------------
def test_each_over_pydantic_models(tracker: Tracker, sender: InMemorySender) -> None:
    @track_order(
        customer_id=literal("c-1"),
        order_id="result.id",
        total_paid="result.paid",
        line_items=each("result.lines", sku="sku", quantity="qty", price="price"),
        tracker=tracker,
    )
    def checkout() -> PPlaced:
        return PPlaced(id=7, paid=3.0, lines=[PLine(sku="s", qty=3, price=1.0)])

    checkout()
    (order,) = sender.orders
    assert order.order_id == "7"
    assert order.to_body()["lineItems"] == [{"sku": "s", "quantity": 3, "price": 1.0}]


def test_each_over_dicts_iterable_and_typeddict(tracker: Tracker, sender: InMemorySender) -> None:
    @track_order(
        customer_id="cid",
        order_id=literal("o-1"),
        total_paid=5,
        line_items=each("lines", sku="sku", quantity="qty"),
        tracker=tracker,
    )
    def checkout(cid: str, lines: Iterable[DLine]) -> None:
        pass

    checkout("c", iter([{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}]))
    assert sender.orders[0].to_body()["lineItems"] == [
        {"sku": "a", "quantity": 1},
        {"sku": "b", "quantity": 2},
    ]
    with pytest.raises(ExpressionError, match="DLine has no key 'qtty'"):

        @track_order(
            customer_id="cid",
            order_id=literal("o"),
            total_paid=5,
            line_items=each("lines", quantity="qtty"),
        )
        def bad(cid: str, lines: Iterable[DLine]) -> None: ...


def test_line_items_as_a_path_to_mappings_and_a_callable(
    tracker: Tracker, sender: InMemorySender
) -> None:
    @track_order(
        customer_id="cid",
        order_id=literal("o-1"),
        total_paid=1,
        line_items="result",
        tracker=tracker,
    )
    def by_path(cid: str) -> list[dict[str, Any]]:
        return [{"sku": "a", "quantity": 2}]

    @track_order(
        customer_id="cid",
        order_id=literal("o-2"),
        total_paid=1,
        line_items=lambda call: [{"product_id": call.arguments["cid"]}],
        tracker=tracker,
    )
    def by_callable(cid: str) -> None: ...

    by_path("c")
    by_callable("c")
    first, second = sender.orders
    assert first.to_body()["lineItems"] == [{"sku": "a", "quantity": 2}]
    assert second.to_body()["lineItems"] == [{"productId": "c"}]


# --- decoration errors ---------------------------------------------------------------------------
def _shop(**options: Any) -> Any:
    def checkout(customer: Customer, note: str) -> Placed:
        return _placed()

    return track_order(**options)(checkout)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"total_paid": "result.amount_paid"}, "needs order_id"),
        ({"order_id": "result.number"}, "needs total_paid"),
        ({}, "needs order_id and total_paid"),
        (
            {**CHECKOUT, "customer_id": "custmer.id"},
            "unknown root 'custmer'; did you mean 'customer'",
        ),
        (
            {**CHECKOUT, "order_id": "result.numbr"},
            "Placed has no field 'numbr'; did you mean 'number'",
        ),
        ({**CHECKOUT, "channel": literal("shop")}, "channel must be one of mobile, pos, web"),
        ({**CHECKOUT, "channel": "pos"}, "unknown root 'pos'"),
        ({**CHECKOUT, "return_window_days": 7301}, "return_window_days must be an int from 0"),
        ({**CHECKOUT, "return_window_days": -1}, "return_window_days must be an int from 0"),
        ({**CHECKOUT, "total_tax": -2}, "total_tax is -2; it must not be negative"),
        ({**CHECKOUT, "on": "error"}, "uses 'result', but on='error'"),
        ({**CHECKOUT, "on": "later"}, "on must be 'success', 'error' or 'always'"),
        (
            {**CHECKOUT, "line_items": each("result.number", sku="sku")},
            "line_items='result.number': the value is str, a string; each() needs a list",
        ),
        (
            {**CHECKOUT, "line_items": each("customer", sku="id")},
            "Customer (a dataclass), one object; each() needs a list",
        ),
        (
            {**CHECKOUT, "line_items": each("result.lines", product_id="product.idd")},
            "line_items.product_id='product.idd': Product has no field 'idd'; did you mean 'id'",
        ),
        (
            {**CHECKOUT, "line_items": each("result.lines", quantity="product")},
            "line_items.quantity='product': the value is Product (a dataclass); an amount",
        ),
        ({**CHECKOUT, "extra": {"": "note"}}, "extra keys must be non-empty strings"),
        ({**CHECKOUT, "guest": ["x"]}, "guest must be a bool"),
        (
            {**CHECKOUT, "total_paid": "result.number"},
            "total_paid='result.number': the value is str; an amount must be an int, float",
        ),
        ({**CHECKOUT, "total_paid": "result.is_paid"}, "the value is bool; an amount"),
        ({**CHECKOUT, "order_id": "result.lines"}, "order_id='result.lines'"),
        ({**CHECKOUT, "total_tax": "result.tax"}, None),  # Decimal | None: fine
        ({**CHECKOUT, "total_price": lambda call: 1}, None),  # no annotation: unknown
    ],
)
def test_decoration_errors(options: dict[str, Any], message: str | None) -> None:
    if message is None:
        _shop(**options)
        return
    with pytest.raises(ExpressionError) as err:
        _shop(**options)
    assert message in str(err.value)
    assert "@track_order" in str(err.value)


def test_each_needs_fields_it_knows() -> None:
    with pytest.raises(
        ExpressionError, match="unknown line item field 'qty'; the fields are product_id"
    ):
        each("result.lines", qty="quantity")
    with pytest.raises(ExpressionError, match="give at least one line item field"):
        each("result.lines")


class Basket:
    size: int


def test_each_over_a_non_iterable_class_and_optional_list() -> None:
    with pytest.raises(ExpressionError, match="Basket, which is not iterable"):

        @track_order(order_id=literal("o"), total_paid=1, line_items=each("basket", sku="size"))
        def a(basket: Basket) -> None: ...

    @track_order(order_id=literal("o"), total_paid=1, line_items=each("lines", sku="product.id"))
    def b(lines: list[Line] | None) -> None: ...

    with pytest.raises(ExpressionError, match="Product has no field 'sku'"):

        @track_order(
            order_id=literal("o"), total_paid=1, line_items=each("lines", sku="product.sku")
        )
        def c(lines: tuple[Line, ...] | None) -> None: ...


def test_explicit_tracker_that_cannot_take_orders_is_refused_at_decoration() -> None:
    class EventsOnly:
        def send(self, event: object) -> None: ...

        def flush(self, timeout: float | None = None) -> bool:
            return True

        def close(self, timeout: float | None = None) -> bool:
            return True

    refusing = Tracker(EventsOnly())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="configure secret_key="):

        @track_order(order_id=literal("o"), total_paid=1, tracker=refusing)
        def f() -> None: ...


# --- call time: conversions and drops ----------------------------------------------------------
def test_call_time_failures_are_counted_drops(tracker: Tracker, sender: InMemorySender) -> None:
    def boom(call: Call) -> object:
        raise KeyError("no")

    @track_order(customer_id="cid", order_id="oid", total_paid="paid", tracker=tracker)
    def pay(cid: str, oid: object, paid: object) -> None: ...

    @track_order(customer_id="cid", order_id=literal("o"), total_paid=boom, tracker=tracker)
    def broken(cid: str) -> None: ...

    assert pay("c", "o-1", "nine") is None  # a str is not money
    pay("c", None, 1)  # no order id
    pay("c", "o-2", float("nan"))
    pay("c", uuid.UUID(int=1), Decimal("1.25"))
    broken("c")
    (order,) = sender.orders
    assert (order.order_id, order.total_paid) == (str(uuid.UUID(int=1)), 1.25)
    assert tracker.stats.dropped == {"invalid_event": 3, "resolver_error": 1}


def test_strict_raises_tracking_error_at_the_call(
    strict_tracker: Tracker, sender: InMemorySender
) -> None:
    @track_order(customer_id="cid", order_id="oid", total_paid="paid", tracker=strict_tracker)
    def pay(cid: str, oid: str, paid: object) -> str:
        return "done"

    with pytest.raises(TrackingError, match="total_paid must be a number") as err:
        pay("c", "o", "x")
    assert err.value.reason == "invalid_event"
    strict_tracker.limits = gbtrack.Limits(max_string_length=4)
    with pytest.raises(TrackingError, match="order_id is 10 characters"):
        pay("c", "o-12345678", 1)
    assert pay("c", "o-1", 1) == "done"
    assert len(sender.orders) == 1


def test_absent_values_are_counted_missing(tracker: Tracker, sender: InMemorySender) -> None:
    @track_order(
        customer_id="cid", order_id=literal("o"), total_paid=1, cart_id="data.cart", tracker=tracker
    )
    def f(cid: str, data: dict[str, str]) -> None: ...

    f("c", {})
    (order,) = sender.orders
    assert order.fields == ()
    assert tracker.stats.missing == {("order", "cart_id"): 1}


def test_when_and_on(tracker: Tracker, sender: InMemorySender) -> None:
    @track_order(**CHECKOUT, when="result.is_paid", tracker=tracker)
    def maybe(customer: Customer, paid: bool) -> Placed:
        return dataclasses.replace(_placed(), is_paid=paid)

    maybe(Customer("c"), False)
    maybe(Customer("c"), True)
    assert len(sender.orders) == 1
    assert tracker.stats.sent == 1

    @track_order(customer_id="cid", order_id=literal("o-1"), total_paid=1, tracker=tracker)
    def fails(cid: str) -> None:
        raise ValueError("declined")

    with pytest.raises(ValueError, match="declined"):
        fails("c")
    assert len(sender.orders) == 1  # never sent for a failed call

    @track_order(
        customer_id="cid", order_id="error.args[0]", total_paid=0, on="error", tracker=tracker
    )
    def refunded(cid: str) -> None:
        raise ValueError("o-9")

    with pytest.raises(ValueError):
        refunded("c")
    assert sender.orders[-1].order_id == "o-9"


def test_disabled_tracker_sends_nothing(tracker: Tracker, sender: InMemorySender) -> None:
    @track_order(**CHECKOUT, tracker=tracker)
    def checkout(customer: Customer) -> Placed:
        return _placed()

    tracker.enabled = False
    checkout(Customer("c"))
    assert tracker.order(customer_id="c", order_id="o", total_paid=1) is None
    assert sender.orders == []


# --- every callable kind ------------------------------------------------------------------------
def test_coroutine_generator_async_generator(tracker: Tracker, sender: InMemorySender) -> None:
    @track_order(**CHECKOUT, tracker=tracker)
    async def acheckout(customer: Customer) -> Placed:
        await asyncio.sleep(0)
        return _placed("C-1")

    @track_order(**CHECKOUT, tracker=tracker)
    def gcheckout(customer: Customer) -> Generator[int, None, Placed]:
        yield 1
        return _placed("G-1")

    @track_order(customer_id="customer.id", order_id=literal("AG-1"), total_paid=3, tracker=tracker)
    async def agcheckout(customer: Customer) -> AsyncIterator[int]:
        yield 1
        yield 2

    async def consume() -> list[int]:
        return [x async for x in agcheckout(Customer("c"))]

    assert asyncio.run(acheckout(Customer("c"))).number == "C-1"
    gen = gcheckout(Customer("c"))
    assert next(gen) == 1
    assert sender.orders[-1].order_id == "C-1"
    assert list(gen) == []
    assert sender.orders[-1].order_id == "G-1"
    assert asyncio.run(consume()) == [1, 2]
    assert [o.order_id for o in sender.orders] == ["C-1", "G-1", "AG-1"]


def test_methods_classmethods_staticmethods(tracker: Tracker, sender: InMemorySender) -> None:
    class Shop:
        prefix = "S"

        @track_order(customer_id="self.owner", order_id="number", total_paid=1, tracker=tracker)
        def sell(self, number: str) -> None: ...

        @classmethod
        @track_order(customer_id="cid", order_id="cls.prefix", total_paid=2, tracker=tracker)
        def sell_cls(cls, cid: str) -> None: ...

        @staticmethod
        @track_order(customer_id="cid", order_id=literal("st"), total_paid=3, tracker=tracker)
        def sell_static(cid: str) -> None: ...

        def __init__(self) -> None:
            self.owner = "c-owner"

    Shop().sell("n-1")
    Shop.sell_cls("c")
    Shop.sell_static("c")
    assert [(o.customer_id, o.order_id, o.total_paid) for o in sender.orders] == [
        ("c-owner", "n-1", 1),
        ("c", "S", 2),
        ("c", "st", 3),
    ]


def test_default_tracker_is_looked_up_per_call() -> None:
    @track_order(customer_id="cid", order_id=literal("o-1"), total_paid=1)
    def pay(cid: str) -> None: ...

    with capture_events() as captured:
        pay("c")
    assert captured.assert_order(order_id="o-1", customer_id="c", totalPaid=1)
    assert len(captured) == 0  # orders are not events


# --- manual forms --------------------------------------------------------------------------------
def test_tracker_order_and_send_order(tracker: Tracker, sender: InMemorySender) -> None:
    draft = tracker.order(
        customer_id=12,
        order_id="A-17",
        total_paid=Decimal("99.50"),
        order_date=dt.date(2024, 2, 1),
        line_items=[{"sku": "x", "quantity": 2}],
        channel="pos",
    )
    assert draft is not None
    assert draft.customer_id == "12"
    assert draft.to_body()["lineItems"] == [{"sku": "x", "quantity": 2}]
    assert draft.order_date == "2024-02-01T00:00:00.000Z"
    assert tracker.order(customer_id="c", order_id="o", total_paid=1, channel="shop") is None
    assert tracker.order(order_id="o", total_paid=1) is None
    assert tracker.stats.dropped == {"invalid_event": 1, "no_customer_id": 1}
    with capture_events() as captured, identify("c-amb"):
        gbtrack.send_order(order_id="o-2", total_paid=5, guest=True)
    order = captured.assert_order(order_id="o-2", guest=True)
    assert order.customer_id == "c-amb"
    with pytest.raises(AssertionError, match="no order matches"):
        captured.assert_order(order_id="o-3")


def test_strict_manual_order_raises(strict_tracker: Tracker) -> None:
    with pytest.raises(TrackingError, match="return_window_days"):
        strict_tracker.order(customer_id="c", order_id="o", total_paid=1, return_window_days=-1)


# --- submit_order: senders and transactions -----------------------------------------------------
class _EventsOnly(gbtrack.senders.BaseSender):
    def send(self, event: object) -> None:
        self.reporter.count("delivered")


def test_sender_that_cannot_take_orders_drops_with_the_fix(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tracker = Tracker(_EventsOnly())
    assert not sender_takes_orders(tracker._traits)

    @track_order(customer_id="cid", order_id=literal("o"), total_paid=1)
    def pay(cid: str) -> None: ...

    previous = gbtrack.set_tracker(tracker)
    try:
        with caplog.at_level(logging.WARNING, logger="gbtrack"):
            pay("c")
            pay("c")
    finally:
        gbtrack.set_tracker(previous)
    assert tracker.stats.dropped == {"orders_unsupported": 2}
    lines = [r.getMessage() for r in caplog.records if "orders_unsupported" in r.getMessage()]
    assert len(lines) == 1
    assert "configure secret_key=" in lines[0]
    strict = Tracker(_EventsOnly(), strict=True)
    with pytest.raises(TrackingError, match="does not take orders"):
        strict.order(customer_id="c", order_id="o", total_paid=1)


def test_memory_and_logging_senders_take_orders(caplog: pytest.LogCaptureFixture) -> None:
    assert sender_takes_orders(Tracker(InMemorySender())._traits)
    logging_tracker = Tracker(LoggingSender())
    with caplog.at_level(logging.INFO, logger="gbtrack.events"):
        logging_tracker.order(customer_id="c", email="someone@x.co", order_id="o", total_paid=2)
    (line,) = [r.getMessage() for r in caplog.records if "gbtrack order" in r.getMessage()]
    assert '"orderId": "o"' in line
    assert "someone@x.co" not in line


def test_invalid_order_is_counted_where_the_sender_checks_it(
    tracker: Tracker, sender: InMemorySender
) -> None:
    tracker.limits = gbtrack.Limits(max_string_length=3)
    tracker.order(customer_id="c", order_id="o-long", total_paid=1)
    assert sender.orders == []
    assert tracker.stats.dropped == {"invalid_event": 1}


class _Binding:
    """A transaction binding that keeps what it is given (see tests/sql for the real one)."""

    def __init__(self, tracker: object | None) -> None:
        self.tracker = tracker
        self.orders: list[object] = []

    def binds(self, tracker: object) -> bool:
        return self.tracker is None or tracker is self.tracker

    def insert_order(self, order: object) -> None:
        self.orders.append(order)


def test_a_transaction_binding_carries_orders_instead_of_the_sender(
    tracker: Tracker, sender: InMemorySender
) -> None:
    from gbtrack._state import bind_transaction, unbind_transaction

    binding = _Binding(tracker)
    token = bind_transaction(binding)
    try:
        assert tracker.order(customer_id="c", order_id="o", total_paid=1) is not None
    finally:
        unbind_transaction(token)
    [order] = binding.orders
    assert order.body["orderId"] == "o"  # type: ignore[attr-defined]
    assert sender.orders == []
    assert tracker.stats.dropped == {}


def test_a_binding_of_another_tracker_leaves_orders_to_the_sender(
    tracker: Tracker, sender: InMemorySender
) -> None:
    from gbtrack._state import bind_transaction, unbind_transaction

    binding = _Binding(object())
    token = bind_transaction(binding)
    try:
        tracker.order(customer_id="c", order_id="o", total_paid=1)
    finally:
        unbind_transaction(token)
    assert binding.orders == []
    assert len(sender.orders) == 1


# --- check() and the catalog ---------------------------------------------------------------------
def test_sites_are_registered_for_check() -> None:
    from gbtrack._checks import sites

    @track_order(**CHECKOUT, line_items=each("result.lines", sku="product.id"))
    def checkout(customer: Customer) -> Placed:
        return _placed()

    name = "test_sites_are_registered_for_check.<locals>.checkout"
    (site,) = [s for s in sites() if s.function == name]
    assert site.kind == "order"
    assert site.fields["line_items.sku"] == "product.id"
    assert site.identity == {"customer_id": "customer.id"}
    report = gbtrack.check()
    assert report.paths >= 4


def test_session_token_rules(tracker: Tracker, sender: InMemorySender) -> None:
    from pydantic import SecretStr

    @track_order(customer_id="cid", order_id=literal("o"), total_paid=1, tracker=tracker)
    def ambient(cid: str) -> None: ...

    @track_order(
        customer_id="cid", order_id=literal("o"), total_paid=1, session_token=None, tracker=tracker
    )
    def none(cid: str) -> None: ...

    @track_order(
        customer_id="cid", order_id=literal("o"), total_paid=1, session_token="tok", tracker=tracker
    )
    def given(cid: str, tok: str) -> None: ...

    with identify("c", session_token="s3cr3t-amb"):
        ambient("c")
        none("c")
        given("c", "mine")
    tokens = [o.session_token for o in sender.orders]
    assert [t.get_secret_value() if isinstance(t, SecretStr) else t for t in tokens] == [
        "s3cr3t-amb",
        None,
        "mine",
    ]
    assert "s3cr3t" not in repr(sender.orders[0])


def test_on_outcome_rides_on_the_draft(tracker: Tracker, sender: InMemorySender) -> None:
    def hook(outcome: object) -> None: ...

    @track_order(
        customer_id="cid", order_id=literal("o"), total_paid=1, on_outcome=hook, tracker=tracker
    )
    def pay(cid: str) -> None: ...

    pay("c")
    assert sender.orders[0].on_outcome is hook
    assert tracker.order(customer_id="c", order_id="p", total_paid=1, on_outcome=hook) is not None
    assert sender.orders[1].on_outcome is hook


class _Lines(list[Line]):
    pass


@pytest.mark.parametrize(
    ("tp", "element"),
    [
        (list[Line], Line),
        (Sequence[Line], Line),
        (Iterable[Line], Line),
        (tuple[Line, ...], Line),
        (frozenset[int], int),
        (_Lines, Line),
        (list[Line] | None, Line),
        (Any, Any),
        (list, Any),
    ],
)
def test_element_type(tp: Any, element: Any) -> None:
    from gbtrack._typecheck import element_type

    assert element_type(tp) == element


@pytest.mark.parametrize(
    ("tp", "message"),
    [
        (str, "a string"),
        (dict[str, Line], "a mapping"),
        (DLine, "a mapping"),
        (PLine, "one object"),
        (int, "not iterable"),
    ],
)
def test_element_type_refuses_what_is_not_a_list(tp: Any, message: str) -> None:
    from gbtrack._typecheck import PathTypeError, element_type

    with pytest.raises(PathTypeError, match=message):
        element_type(tp)
