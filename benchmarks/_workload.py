"""The call every benchmark tracks: issue 8's "call above", and its 10,000 customers."""

from __future__ import annotations

from typing import Any

__all__ = [
    "API_KEY",
    "CUSTOMERS",
    "EVENT",
    "SECRET_KEY",
    "TRACK_OPTIONS",
    "Cart",
    "Customer",
    "Order",
    "customer_args",
]

API_KEY = "test-api-key"  # the emulator's own test credentials
SECRET_KEY = "test-secret-key"
CUSTOMERS = 10_000
EVENT = "purchase_completed"

# Customer id + email from an argument, 4 metadata paths on the result.
TRACK_OPTIONS: dict[str, Any] = {
    "customer_id": "customer.id",
    "email": "customer.email",
    "metadata": {
        "order_id": "result.id",
        "amount": "result.total",
        "currency": "result.currency",
        "items": "result.items",
    },
}


class Customer:
    __slots__ = ("email", "id")

    def __init__(self, n: int) -> None:
        self.id = f"cust-{n}"
        self.email = f"c{n}@example.com"


class Cart:
    __slots__ = ("currency", "id", "items", "total")

    def __init__(self, n: int) -> None:
        self.id = f"ORD-{n}"
        self.total = 10.0 + n % 100
        self.currency = "USD"
        self.items = 1 + n % 5


class Order:
    __slots__ = ("currency", "id", "items", "total")

    def __init__(self, cart: Cart) -> None:
        self.id = cart.id
        self.total = cart.total
        self.currency = cart.currency
        self.items = cart.items


def customer_args(customers: int = CUSTOMERS) -> list[tuple[Customer, Cart]]:
    """One pre-built ``(customer, cart)`` per distinct customer."""
    return [(Customer(n), Cart(n)) for n in range(customers)]
