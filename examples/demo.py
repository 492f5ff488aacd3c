"""The gbtrack demo: the example checkout service sends orders and events into a local Gameball.

What happens, all in this one process and on 127.0.0.1 only:

1. a :class:`~gbtrack.emulator.GameballEmulator` starts on an ephemeral port (a real
   HTTP server speaking Gameball's events and Order APIs, with their auth rules and
   rate limits);
2. ``gbtrack.configure(api_key=..., secret_key=..., base_url=emulator.url)`` gives the
   default tracker a :class:`~gbtrack.senders.BackgroundSender`;
3. the decorated functions of ``examples/checkout_service.py`` run for a few customers,
   with an ``identify()`` block and a ``span``;
4. ``flush()`` waits until the worker has delivered everything, and the script prints
   what the emulator received (the orders with the points they earned, then the
   events) and ``tracker.stats``.

Exit status 1 if any order or event was lost (dropped, or not received by the emulator).
Run it with ``./nox -s demo`` or ``python examples/demo.py``.
"""

from __future__ import annotations

import asyncio
import sys
from contextlib import suppress
from decimal import Decimal

from checkout_service import (
    Cart,
    EmptyCartError,
    Item,
    LoyaltyDesk,
    Payment,
    checkout,
    ship_order,
    sign_up,
    submit_review,
)

import gbtrack
from gbtrack.emulator import GameballEmulator, ReceivedEvent, ReceivedOrder

CUSTOMERS = [
    ("alice@example.com", "+201001234567", "friend"),
    ("bob@example.com", None, None),
    ("carol@example.com", "+201112223334", "newsletter"),
]


def run_service() -> None:
    """Exercise the example service the way real traffic would."""
    desk = LoyaltyDesk("cairo-1")
    for n, (email, mobile, referrer) in enumerate(CUSTOMERS, start=1):
        customer = sign_up(email, mobile=mobile, referrer=referrer)
        cart = Cart([Item("sku-1", Decimal("49.90"), n), Item("sku-2", Decimal("15.00"))])
        # A span: an event built by hand inside a block, sent when the block ends.
        with gbtrack.span("cart_reviewed", customer_id=customer.id) as review:
            review["lines"] = len(cart.items)
            review["total"] = cart.total
        order = checkout(customer, cart, Payment.WALLET if n % 2 else Payment.CARD)
        asyncio.run(ship_order(order))
        submit_review(customer.id, "sku-1", 4 + n % 2, "Fast delivery")
        # identify(): the ambient customer for code that does not know it.
        with gbtrack.identify(customer.id, email=customer.email):
            desk.redeem(100 * n)
    # A failed checkout sends checkout_failed; the error still reaches the caller.
    with suppress(EmptyCartError):
        checkout(sign_up("dave@example.com"), Cart())


def print_orders(orders: list[ReceivedOrder]) -> None:
    """Print the orders the emulator received, with the points each earned."""
    for order in sorted(orders, key=lambda o: o.customer_id):
        print(
            f"{order.customer_id}  order {order.order_id}  totalPaid={order.total_paid}  "
            f"lines={len(order.body.get('lineItems', []))}  points={order.rewarded_points}"
        )


def print_table(events: list[ReceivedEvent]) -> None:
    """Print what the emulator received, one event a line."""
    rows = [("customer", "event", "endpoint", "metadata")]
    for event in sorted(events, key=lambda e: (e.customer_id, e.received_at)):
        metadata = ", ".join(f"{k}={v}" for k, v in event.metadata.items())
        rows.append((event.customer_id, event.name, event.version, metadata))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for i, (*cells, metadata) in enumerate(rows):
        line = "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))
        print(f"{line}  {metadata}")
        if i == 0:
            print("  ".join("-" * width for width in [*widths, len("metadata")]))


def main() -> int:
    """Run the demo; return the exit status."""
    with GameballEmulator() as emulator:
        print(f"Gameball emulator listening on {emulator.url} (until the demo ends)\n")
        tracker = gbtrack.configure(
            api_key=emulator.api_key,
            secret_key=emulator.secret_key,
            base_url=emulator.url,
        )
        try:
            run_service()
            settled = tracker.flush(timeout=30)
            stats = tracker.stats
            received = emulator.events
            orders = emulator.orders
            place_order = [e for e in emulator.system_events if e.name == "place_order"]
            requests = sum(
                count
                for (endpoint, status), count in emulator.requests.items()
                if endpoint.endswith("events") and 200 <= status < 300
            )
        finally:
            tracker.close(timeout=10)
    print_orders(orders)
    print(
        f"{len(orders)} orders received by the Order API, which recorded "
        f"{len(place_order)} place_order events itself\n"
    )
    print_table(received)
    # Coalescing: one customer's pending events travel in one request.
    print(f"\n{len(received)} events received by the emulator in {requests} requests")
    print(
        f"tracker.stats: sent={stats.sent} delivered={stats.delivered} "
        f"retried={stats.retried} dropped={dict(stats.dropped)} "
        f"in_queue={stats.in_queue} in_flight={stats.in_flight}"
    )
    lost = stats.sent - len(received) - len(orders)
    if not settled or stats.total_dropped or lost:
        print(f"LOST: {max(lost, stats.total_dropped)} order(s) or event(s); settled={settled}")
        return 1
    print("nothing lost")
    # The emulator above stopped with the demo: its URL is gone now.
    print(
        "\nThe demo's emulator stopped with it. To watch events arrive live, keep one "
        "running:\n  gbtrack emulator --port 8080   (then open http://127.0.0.1:8080/)\n"
        "and point your app at it: gbtrack.configure(api_key='test-api-key', "
        "secret_key='test-secret-key', base_url='http://127.0.0.1:8080')"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
