"""Spans: events built by hand inside a block, sent when the block ends; sync and async.

A decorator fits when one call is one event. When the event's data is learnt along
the way (a multi-step flow, a loop, a request handler), open a ``span``: set metadata
and identity on the handle as you learn them; the event is sent once, on exit.

This script shows ``set``, item assignment, ``update``, ``identify`` on the handle,
``cancel()``, ``on="error"`` and ``on="always"``, ``async with`` in concurrent tasks
each under its own ``identify()``, and that a span never swallows an exception.
It uses its own :class:`~gbtrack.Tracker` with an in-memory sender.
Run: ``python examples/spans.py``.
"""

from __future__ import annotations

import asyncio

from gbtrack import InMemorySender, Tracker, identify

tracker = Tracker(InMemorySender())


def import_orders(customer_id: str, rows: list[dict[str, str | float]]) -> None:
    """A multi-step job: the span collects what it learns and is sent at the end."""
    with tracker.span("orders_imported", customer_id=customer_id) as span:
        span.set("source", "csv")
        span["rows"] = len(rows)
        span.update(total=sum(float(row["amount"]) for row in rows), currency="EGP")


def apply_coupon(code: str) -> None:
    """Cancel: some blocks decide on their way that there is nothing to report."""
    with tracker.span("coupon_applied", customer_id="c-2") as span:
        span["code"] = code
        if code.startswith("TEST"):
            span.cancel()  # internal test coupons are not loyalty events


def pay(customer_id: str, amount: float) -> None:
    """on="always": one event for success and failure alike, with the outcome in it."""
    with tracker.span("payment_attempted", on="always", metadata={"amount": amount}) as span:
        span.identify(customer_id)  # identity learnt inside the block
        span["ok"] = False
        if amount > 1000:
            raise ValueError("amount above the card limit")
        span["ok"] = True


async def visit(customer_id: str, pages: int) -> None:
    """Concurrent tasks, each with its own ambient identity; spans pick it up."""
    async with identify(customer_id), tracker.span("session_ended") as span:
        for _ in range(pages):
            await asyncio.sleep(0)  # other tasks run here
        span["pages"] = pages


async def visits() -> None:
    """Three customers browsing at once."""
    await asyncio.gather(visit("c-10", 3), visit("c-11", 1), visit("c-12", 2))


def main() -> None:
    """Run every flow and print the events the tracker received."""
    import_orders("c-1", [{"amount": "10.5"}, {"amount": 20}])
    apply_coupon("TEST-123")
    apply_coupon("SUMMER")
    pay("c-3", 250.0)
    try:
        pay("c-4", 5000.0)
    except ValueError as exc:
        print(f"pay() raised, as it should: {exc}")
    asyncio.run(visits())

    for event in tracker.sender.events:
        print(f"{event.name:<18} {event.customer_id:<5} {event.metadata}")
    print(f"{tracker.stats.sent} events sent")


if __name__ == "__main__":
    main()
