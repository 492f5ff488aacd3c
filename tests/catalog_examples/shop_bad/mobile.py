from dataclasses import dataclass

from gbtrack import track


@dataclass
class MobileOrder:
    id: int
    total: float


@track(
    "purchase_completed",
    customer_id="customer_id",
    metadata={"order_id": "result.id", "amout": "result.total"},
)
def checkout(customer_id: str) -> MobileOrder:
    return MobileOrder(1, 10.0)


@track("refund_issued", customer_id="customer_id", metadata={"price": "price"})
def refund(customer_id: str, price: float) -> None: ...
