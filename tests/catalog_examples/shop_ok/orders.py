from __future__ import annotations

from gbtrack import track
from shop_ok.models import Customer, Order


@track(
    "purchase_completed",
    customer_id="customer.id",
    email="customer.email",
    metadata={"order_id": "result.id", "amount": "result.total", "currency": "result.currency"},
)
def checkout(customer: Customer, cart: list[float]) -> Order:
    return Order("o-1", sum(cart))


@track(
    "purchase_completed",
    customer_id="customer.id",
    metadata={"order_id": "result.id", "amount": "result.total", "currency": "result.currency"},
    on="success",
)
async def checkout_async(customer: Customer, cart: list[float]) -> Order:
    return Order("o-2", sum(cart))
