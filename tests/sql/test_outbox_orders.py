"""Orders in the durable outboxes: stored with their kind, drained to the orders endpoint.

Every test runs on the outbox file (:class:`OutboxStore`) and on the SQL outbox
(SQLite, PostgreSQL), against the emulator over loopback HTTP.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.outbox.conftest import make_events
from tests.sql.conftest import fresh_tables

from gbtrack import Event
from gbtrack._order import order_draft
from gbtrack.emulator import GameballEmulator
from gbtrack.gameball import GameballClient
from gbtrack.outbox import OutboxDrainer, OutboxStore, OutboxStoreProtocol
from gbtrack.outbox._sql import SqlOutboxStore
from gbtrack.outbox._store import StoredOrder, decode_order, encode_order
from gbtrack.senders import RateLimiter, RetryPolicy

API_KEY = "gb-api-KEY-4242-abcdef"
SECRET_KEY = "gb-secret-KEY-4242-ghijkl"
FAST = RetryPolicy(base_delay=0.01, max_delay=0.05)


def stored(order_id: str, customer: str = "c-1", paid: float = 100, **fields: Any) -> StoredOrder:
    draft = order_draft(
        customer_id=customer,
        order_id=order_id,
        total_paid=paid,
        order_date="2024-10-16T08:13:29.290Z",
        email=f"{customer}@example.com",
        function="shop.checkout",
        now=time.time(),
        **fields,
    )
    return StoredOrder.of(draft)


@pytest.fixture(params=["file", "sqlite", "postgresql"])
def store(request: Any, tmp_path: Path) -> Iterator[OutboxStoreProtocol]:
    made: OutboxStoreProtocol
    if request.param == "file":
        made = OutboxStore(tmp_path / "outbox.db")
    else:
        url = (
            f"sqlite:///{tmp_path / 'app.sqlite3'}"
            if request.param == "sqlite"
            else str(request.getfixturevalue("postgres_url"))
        )
        fresh_tables(url)
        made = SqlOutboxStore(url)
    with made:  # type: ignore[attr-defined]
        yield made


@pytest.fixture
def emulator() -> Iterator[GameballEmulator]:
    emu = GameballEmulator(api_key=API_KEY, secret_key=SECRET_KEY).start()
    yield emu
    emu.stop()


@pytest.fixture
def client(emulator: GameballEmulator) -> Iterator[GameballClient]:
    with GameballClient(API_KEY, secret_key=SECRET_KEY, base_url=emulator.url) as made:
        yield made


class CountingLimiter(RateLimiter):
    """A local limiter that counts the slots taken from it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.taken = 0

    def take(self, *args: Any, **kwargs: Any) -> float | None:
        self.taken += 1
        return super().take(*args, **kwargs)


def drain(drainer: OutboxDrainer, store: OutboxStoreProtocol, rounds: int = 20) -> None:
    for _ in range(rounds):
        if store.count("pending") == 0:
            return
        store.make_ready()
        drainer.run_once()
    raise AssertionError(f"{store.count('pending')} row(s) still pending")


# --- storing ------------------------------------------------------------------------------------
def test_the_stored_form_rebuilds_the_body_exactly() -> None:
    order = stored("A-17", line_items=[{"product_id": "p-1", "quantity": 2, "price": 5}])
    again = decode_order(encode_order(order))
    assert again == order
    assert again.body["lineItems"] == [{"productId": "p-1", "quantity": 2, "price": 5}]
    with pytest.raises(ValueError, match="orderId"):
        decode_order('{"order": {"customerId": "c", "orderDate": "x", "totalPaid": 1}, '
                     '"timestamp": 1}')  # fmt: skip


def test_rows_keep_their_kind_pending_dead_and_back(store: OutboxStoreProtocol) -> None:
    [event] = make_events(1)
    assert store.append([event, stored("A-1"), stored("A-2", "c-2")]) == 3
    rows = store.rows()
    assert [r.kind for r in rows] == ["event", "order", "order"]
    assert rows[0].event().name == event.name
    assert rows[1].order().order_id == "A-1"
    assert rows[1].name == "A-1"
    with pytest.raises(ValueError, match="not an event"):
        rows[1].event()
    shown = rows[1].to_dict()
    assert (shown["kind"], shown["order"]["orderId"]) == ("order", "A-1")
    assert shown["order"]["email"] != "c-1@example.com"  # masked
    stats = store.stats()
    assert (stats.pending, stats.pending_orders) == (3, 2)
    claimed = store.claim("w", 10, lease=30)
    token = claimed[0].claim_token
    store.release("w", [claimed[1].id], token=token, ambiguous=True)
    store.bury([claimed[1].id, claimed[2].id], status=422, code=9004, message="no")
    dead = store.rows("dead")
    assert [(r.kind, r.ambiguous) for r in dead] == [("order", True), ("order", False)]
    assert store.stats().dead_orders == 2
    assert store.retry_dead(kind="event") == 0
    assert store.retry_dead(kind="order", name="A-1") == 1
    [back] = [r for r in store.rows() if r.name == "A-1"]
    assert (back.kind, back.ambiguous, back.attempts) == ("order", True, 0)


# --- draining -----------------------------------------------------------------------------------
def test_orders_go_to_the_orders_endpoint_in_each_customers_order(
    store: OutboxStoreProtocol, emulator: GameballEmulator, client: GameballClient
) -> None:
    e1, e2, e3 = (Event(name=f"step_{i}", customer_id="c-1") for i in range(3))
    store.append([e1, stored("B-1", paid=120), e2, Event(name="other", customer_id="c-2")])
    store.append([stored("B-2", "c-2", paid=30), e3])
    events, orders = CountingLimiter(), CountingLimiter()
    drainer = OutboxDrainer(store, client, retry=FAST, limiter=events, order_limiter=orders)
    try:
        result = drainer.run_once(bulk=False)
    finally:
        drainer.close()
    assert (result.claimed, result.delivered, result.dead) == (6, 6, 0)
    assert store.count("pending") == 0
    assert emulator.points == {"c-1": 120, "c-2": 30}
    assert orders.taken == 2  # one slot per order, from the orders bucket
    assert events.taken == 3  # c-1: step_0, then step_1+step_2 after the order; c-2: other
    # c-1's events before and after its order were not merged across it.
    arrivals = sorted(
        [(e.received_at, e.name) for e in emulator.events if e.customer_id == "c-1"]
        + [(o.received_at, o.order_id) for o in emulator.orders if o.customer_id == "c-1"]
    )
    assert [what for _, what in arrivals] == ["step_0", "B-1", "step_1", "step_2"]


def test_a_bulk_round_sends_orders_as_a_batch_job(
    store: OutboxStoreProtocol, emulator: GameballEmulator, client: GameballClient
) -> None:
    store.append([stored(f"J-{i}", f"c-{i}", paid=10) for i in range(5)])
    store.append([stored("J-later", "c-0", paid=1), Event(name="after", customer_id="c-1")])
    store.append([Event(name="alone", customer_id=f"e-{i}") for i in range(3)])
    drainer = OutboxDrainer(store, client, retry=FAST, poll_interval=0.05)
    try:
        first = drainer.run_once(bulk=True)
        drain(drainer, store)
    finally:
        drainer.close()
    # One job of orders, one of events; c-0's second order and c-1's event waited.
    assert (first.delivered, first.requests) == (8, 2)
    assert {o.version for o in emulator.orders if o.order_id != "J-later"} == {"batch"}
    assert sorted(o.order_id for o in emulator.orders) == [*(f"J-{i}" for i in range(5)), "J-later"]
    assert emulator.points["c-0"] == 11
    assert sorted(e.customer_id for e in emulator.events) == ["c-1", "e-0", "e-1", "e-2"]
    [after] = [e for e in emulator.events if e.customer_id == "c-1"]
    [j1] = [o for o in emulator.orders if o.order_id == "J-1"]
    assert after.received_at > j1.received_at


def test_an_ambiguous_order_answered_duplicate_after_a_restart_is_delivered(
    store: OutboxStoreProtocol, emulator: GameballEmulator, client: GameballClient
) -> None:
    store.append([stored("D-1", "c-9", paid=50)])
    emulator.faults.drop_next(1, when="after_processing", route="orders")
    first = OutboxDrainer(store, client, retry=FAST)
    try:
        result = first.run_once()
    finally:
        first.close()  # the relay stops: what it knew in memory is gone
    assert (result.retried, result.delivered) == (1, 0)
    [row] = store.rows()
    assert row.ambiguous
    assert row.attempts == 1
    assert emulator.points == {"c-9": 50}  # Gameball had it
    second = OutboxDrainer(store, client, retry=FAST)
    try:
        drain(second, store)
    finally:
        second.close()
    assert store.count("pending") == store.count("dead") == 0
    assert emulator.points == {"c-9": 50}  # awarded once, and counted delivered


def test_a_duplicate_without_an_ambiguous_attempt_is_dead_as_an_order(
    store: OutboxStoreProtocol, emulator: GameballEmulator, client: GameballClient
) -> None:
    store.append([stored("X-1", "c-3", paid=5), stored("X-1", "c-3", paid=5)])
    drainer = OutboxDrainer(store, client, retry=FAST)
    try:
        result = drainer.run_once()
    finally:
        drainer.close()
    assert (result.delivered, result.dead) == (1, 1)
    [dead] = store.rows("dead")
    assert (dead.kind, dead.code, dead.name) == ("order", 9004, "X-1")
    assert dead.message is not None
    assert dead.message.startswith("duplicate")


def test_a_buried_ambiguous_order_requeued_and_answered_duplicate_is_delivered(
    store: OutboxStoreProtocol, emulator: GameballEmulator, client: GameballClient
) -> None:
    store.append([stored("R-1", "c-4", paid=7)])
    emulator.faults.drop_next(1, when="after_processing", route="orders")
    once = RetryPolicy(max_attempts=1)
    drainer = OutboxDrainer(store, client, retry=once)
    try:
        assert drainer.run_once().dead == 1
        [dead] = store.rows("dead")
        assert (dead.kind, dead.ambiguous) == ("order", True)
        assert store.retry_dead(kind="order") == 1
        assert drainer.run_once().delivered == 1
    finally:
        drainer.close()
    assert store.count("dead") == 0
    assert emulator.points == {"c-4": 7}


def test_without_a_secret_key_drain_halts_and_a_relay_buries_the_order(
    store: OutboxStoreProtocol, emulator: GameballEmulator
) -> None:
    store.append([stored("K-1", "c-5")])
    with GameballClient(API_KEY, base_url=emulator.url) as keyless:
        halting = OutboxDrainer(store, keyless, retry=FAST, halt_on_auth=True)
        try:
            assert halting.run_once().dead == 0
        finally:
            halting.close()
        assert halting.halted is not None
        [row] = store.rows()
        assert (row.kind, row.attempts) == ("order", 0)  # untouched, for a drain with the key
        relay = OutboxDrainer(store, keyless, retry=FAST)
        try:
            assert relay.run_once().dead == 1
        finally:
            relay.close()
    [dead] = store.rows("dead")
    assert dead.message is not None
    assert "secret key" in dead.message
    assert emulator.order_count == 0
