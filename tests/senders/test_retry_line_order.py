"""A request waiting for its retry holds its customer's later requests, whatever the resource.

Found by the orders end-to-end test (test_orders_e2e.py): during an outage a shopper's
events, answered 503 and waiting for their retry, were overtaken by the order the
shopper placed after them. A backoff is not the end of a request: until it is settled,
its customer's later events and orders wait, and other customers' requests go on.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from tests.senders import SECRET_KEY

from gbtrack import Event
from gbtrack._order import OrderDraft, order_draft
from gbtrack.emulator import GameballEmulator
from gbtrack.gameball import Outcome
from gbtrack.senders import BackgroundSender, RetryPolicy


class FixedBackoff(RetryPolicy):
    """Every backoff 0.6 s, no jitter: long enough for a later request to overtake."""

    def delay(self, attempts: int, outcome: Outcome | None = None) -> float:
        return 0.6


@pytest.fixture
def sender(
    emulator: GameballEmulator, make_sender: Callable[..., BackgroundSender]
) -> BackgroundSender:
    return make_sender(
        emulator,
        secret_key=SECRET_KEY,
        retry=FixedBackoff(),
        flush_interval=0.02,
        bulk=False,
        timeout=10.0,  # the sender's default
    )


def order(order_id: str, customer: str) -> OrderDraft:
    return order_draft(customer_id=customer, order_id=order_id, total_paid=5, now=time.time())


def arrivals(emulator: GameballEmulator) -> dict[str, float]:
    """When each request that recorded something arrived, by event name or order id."""
    at = {r.request_id: r.received_at for r in emulator.request_log}
    times = {e.name: at[e.request_id] for e in emulator.events}
    times.update({o.order_id: at[o.request_id] for o in emulator.orders})
    return times


def test_an_order_waits_for_its_customers_events_to_be_retried(
    emulator: GameballEmulator, sender: BackgroundSender
) -> None:
    emulator.faults.fail_next(1, status=503, route="events")
    sender.send(Event(name="viewed", customer_id="c-1"))  # answered 503, then retried
    time.sleep(0.2)  # its 503 came back: it waits for its retry
    sender.send(order("O-1", "c-1"))  # must not overtake "viewed"
    sender.send(Event(name="free", customer_id="c-2"))  # another customer goes at once
    assert sender.flush(10)
    at = arrivals(emulator)
    assert at["viewed"] < at["O-1"]
    assert at["free"] < at["viewed"]
    assert sender.stats().retried == 1


def test_an_event_waits_for_its_customers_order_to_be_retried(
    emulator: GameballEmulator, sender: BackgroundSender
) -> None:
    emulator.faults.fail_next(1, status=503, route="orders")
    sender.send(order("O-1", "c-1"))
    time.sleep(0.2)
    sender.send(Event(name="after", customer_id="c-1"))
    assert sender.flush(10)
    at = arrivals(emulator)
    assert at["O-1"] < at["after"]


def test_a_customers_later_events_wait_for_its_retried_events(
    emulator: GameballEmulator, sender: BackgroundSender
) -> None:
    emulator.faults.fail_next(1, status=503, route="events")
    sender.send(Event(name="first", customer_id="c-1"))
    time.sleep(0.2)
    sender.send(Event(name="second", customer_id="c-1"))
    assert sender.flush(10)
    at = arrivals(emulator)
    assert at["first"] < at["second"]
