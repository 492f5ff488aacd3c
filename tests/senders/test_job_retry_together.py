"""A batch job whose create failed is retried as one job, not as its items one by one.

Found by the orders end-to-end test (test_orders_e2e.py): after an outage, the items
of a failed batch job came back one by one, each after its own random backoff, and
went as single requests (hundreds of order requests at 30 a second, the recovery 12-27 s
instead of a few jobs). Items that failed together now share one backoff.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from tests.senders import SECRET_KEY

from gbtrack import Event
from gbtrack._order import order_draft
from gbtrack.emulator import GameballEmulator
from gbtrack.senders import BackgroundSender, RetryPolicy

BACKLOG = 300  # customers: past both bulk thresholds (200 event requests, 60 orders)


@pytest.fixture
def sender(
    emulator: GameballEmulator, make_sender: Callable[..., BackgroundSender]
) -> BackgroundSender:
    return make_sender(
        emulator,
        secret_key=SECRET_KEY,
        # Jitter over up to 0.4 s: time enough for items to trickle back one by one.
        retry=RetryPolicy(base_delay=0.2, max_delay=0.4),
        flush_interval=0.3,  # the whole backlog is queued before the first drain
        timeout=10.0,  # the sender's default
    )


def test_a_failed_job_of_orders_is_retried_as_one_job(
    emulator: GameballEmulator, sender: BackgroundSender
) -> None:
    emulator.faults.fail_next(2, status=503, route="orders")
    for n in range(BACKLOG):
        sender.send(
            order_draft(customer_id=f"c-{n}", order_id=f"O-{n}", total_paid=5, now=time.time())
        )
    assert sender.flush(30)
    assert emulator.order_count == BACKLOG
    requests = emulator.requests
    assert requests[("batch/orders", 503)] == 2
    assert requests[("batch/orders", 200)] == 1
    assert not [key for key in requests if key[0].endswith("/orders") and "batch" not in key[0]]


def test_a_failed_job_of_events_is_retried_as_one_job(
    emulator: GameballEmulator, sender: BackgroundSender
) -> None:
    emulator.faults.fail_next(2, status=503, route="events")
    events = [Event(name="viewed", customer_id=f"c-{n}") for n in range(BACKLOG)]
    for event in events:
        sender.send(event)
    assert sender.flush(30)
    assert emulator.event_count == BACKLOG
    requests = emulator.requests
    assert requests[("batch/events", 503)] == 2
    assert requests[("batch/events", 200)] == 1
    assert not [key for key in requests if key[0].endswith("/events") and "batch" not in key[0]]
