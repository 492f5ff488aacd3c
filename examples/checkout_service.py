"""An example service: customers, carts and orders, with decorated business functions.

This module shows the everyday ways of using ``@track_order`` and ``@track``:

- ``checkout``: a purchase sent as a Gameball order (``@track_order``: what earns the
  customer points), its line items made by ``each()`` from the cart, a ``literal``
  constant, a ``Decimal`` and an ``Enum`` converted for Gameball, and an ``@track``
  with ``on="error"`` for failed checkouts;
- ``submit_review``: a ``when`` condition (only reviews with a text are sent);
- ``sign_up``: the identity comes from the result;
- ``ship_order``: an ``async def`` coroutine;
- ``LoyaltyDesk.redeem``: a method whose customer comes from an ``identify()`` block.

The functions know nothing about delivery: the default tracker decides where orders
and events go (``examples/demo.py`` sends them to a local Gameball emulator). Run on its own, this
script captures the orders and events in memory and prints them::

    python examples/checkout_service.py
"""

from __future__ import annotations

import asyncio
import itertools
from contextlib import suppress
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum

from gbtrack import each, identify, literal, track, track_order

__all__ = [
    "Cart",
    "Customer",
    "EmptyCartError",
    "Item",
    "LoyaltyDesk",
    "Order",
    "Payment",
    "checkout",
    "ship_order",
    "sign_up",
    "submit_review",
]

_order_ids = itertools.count(1001)
_customer_ids = itertools.count(1)


class Payment(Enum):
    """How an order is paid; sent to Gameball as the enum's value."""

    CARD = "card"
    WALLET = "wallet"


@dataclass
class Customer:
    """A customer of the shop; ``id`` is the Gameball customer id."""

    id: str
    email: str | None = None
    mobile: str | None = None


@dataclass
class Item:
    """A cart line."""

    sku: str
    price: Decimal
    quantity: int = 1


@dataclass
class Cart:
    """What a customer is about to buy."""

    items: list[Item] = field(default_factory=list)
    coupon: str | None = None

    @property
    def total(self) -> Decimal:
        """The cart's total price."""
        return sum((item.price * item.quantity for item in self.items), Decimal(0))


@dataclass
class Order:
    """A placed order."""

    id: str
    customer_id: str
    total: Decimal
    item_count: int
    payment: Payment


class EmptyCartError(Exception):
    """Raised by :func:`checkout` for a cart without items."""


# A purchase is a Gameball *order*: the Order API is what earns the customer points
# (cashback on total_paid), and Gameball records the place_order event itself.
@track_order(
    customer_id="customer.id",
    email="customer.email",
    order_id="result.id",
    total_paid="result.total",  # Decimal: sent as a float
    line_items=each("cart.items", product_id="sku", price="price", quantity="quantity"),
    extra={
        "payment": "result.payment.value",  # an Enum member's value: a string
        "coupon": "cart.coupon",  # None: left out of the order
    },
    channel=literal("web"),  # a constant, not a path
)
@track(
    "checkout_failed",
    on="error",
    customer_id="customer.id",
    metadata={"reason": lambda call: type(call.error).__name__},
)
def checkout(customer: Customer, cart: Cart, payment: Payment = Payment.CARD) -> Order:
    """Place an order for ``cart``; raises :class:`EmptyCartError` for an empty cart."""
    if not cart.items:
        raise EmptyCartError("the cart is empty")
    return Order(
        id=f"ord-{next(_order_ids)}",
        customer_id=customer.id,
        total=cart.total,
        item_count=sum(item.quantity for item in cart.items),
        payment=payment,
    )


@track(
    "review_submitted",
    customer_id="customer_id",
    metadata={"product": "product_id", "rating": "rating"},
    when="text",  # an empty text is falsy: star-only reviews are not sent
)
def submit_review(customer_id: str, product_id: str, rating: int, text: str = "") -> bool:
    """Store a review; returns whether it was accepted."""
    return 1 <= rating <= 5


@track(
    "signed_up",
    customer_id="result.id",
    email="result.email",
    mobile="result.mobile",
    metadata={"referrer": "referrer"},
)
def sign_up(email: str, mobile: str | None = None, referrer: str | None = None) -> Customer:
    """Create a customer account."""
    return Customer(id=f"cust-{next(_customer_ids)}", email=email, mobile=mobile)


@track(
    "order_shipped",
    customer_id="order.customer_id",
    metadata={"order_id": "order.id", "carrier": "result"},
)
async def ship_order(order: Order) -> str:
    """Hand an order to a carrier (a coroutine: the event follows the ``await``)."""
    await asyncio.sleep(0)  # stands for a call to the carrier's API
    return "dhl" if order.total > 100 else "aramex"


class LoyaltyDesk:
    """The in-store desk where customers spend their points."""

    def __init__(self, branch: str) -> None:
        self.branch = branch

    # No customer_id: the ambient identify() one is used.
    @track("points_redeemed", metadata={"points": "points", "branch": "self.branch"})
    def redeem(self, points: int) -> int:
        """Redeem ``points`` for the identified customer; returns the points spent."""
        return points


def _main() -> None:
    from gbtrack.testing import capture_events

    with capture_events() as events:
        alice = sign_up("alice@example.com", mobile="+201001234567", referrer="friend")
        cart = Cart([Item("sku-1", Decimal("49.90"), 2), Item("sku-2", Decimal("15.00"))])
        order = checkout(alice, cart, Payment.WALLET)
        with suppress(EmptyCartError):  # the business error reaches the caller untouched
            checkout(alice, Cart())
        submit_review(alice.id, "sku-1", 5, "Great!")
        submit_review(alice.id, "sku-2", 3)  # no text: not sent
        asyncio.run(ship_order(order))
        with identify(alice.id, email=alice.email):
            LoyaltyDesk("cairo-1").redeem(250)
    for placed in events.orders:
        body = placed.to_body()
        summary = {k: body[k] for k in ("orderId", "totalPaid", "extra", "channel")}
        print(f"{'order':<20} {body['customerId']:<8} {summary} {len(body['lineItems'])} lines")
    for event in events:
        print(f"{event.name:<20} {event.customer_id:<8} {event.metadata}")
    print(f"{len(events.orders)} order and {len(events)} events tracked")


if __name__ == "__main__":
    _main()
