from __future__ import annotations

from dataclasses import dataclass

from gbtrack import track


@track(
    "purchase_completed",
    customer_id="customer.id",
    metadata={"order_id": "result.id", "amount": "result.total"},
)
def checkout(customer: Customer) -> Order:
    return Order("o-1", 10.0)


@dataclass
class Customer:  # below the function: a forward reference, resolved for the catalog
    id: str


@dataclass
class Order:
    id: str
    total: float
