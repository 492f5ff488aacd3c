"""``gbtrack relay`` delivers orders from the SQL outbox, as a real process, to the emulator."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.sql._relays import RelayProcess, wait_until

from gbtrack import Event
from gbtrack._order import order_draft
from gbtrack.emulator import GameballEmulator
from gbtrack.outbox._sql import SqlOutboxStore
from gbtrack.outbox._store import StoredOrder

API_KEY = "gb-api-KEY-4242-abcdef"
SECRET_KEY = "gb-secret-KEY-4242-ghijkl"


@pytest.fixture
def emulator() -> Iterator[GameballEmulator]:
    emu = GameballEmulator(api_key=API_KEY, secret_key=SECRET_KEY).start()
    yield emu
    emu.stop()


def _order(order_id: str, customer: str, paid: float) -> StoredOrder:
    draft = order_draft(
        customer_id=customer,
        order_id=order_id,
        total_paid=paid,
        order_date="2026-12-07T09:00:00Z",
        now=time.time(),
    )
    return StoredOrder.of(draft)


def test_the_relay_delivers_orders_and_events_from_the_table(
    sql_url: str, emulator: GameballEmulator, tmp_path: Path
) -> None:
    with SqlOutboxStore(sql_url) as store:
        store.append(
            [
                Event(name="cart_viewed", customer_id="c-1"),
                _order("R-1", "c-1", 120),
                Event(name="reviewed", customer_id="c-1"),
                _order("R-2", "c-2", 30),
            ]
        )
        relay = RelayProcess(sql_url, emulator, tmp_path / "r.log", "--election", "none")
        try:
            wait_until(lambda: store.count("pending") == 0, 30, "the relay to deliver")
        finally:
            code, out = relay.terminate()
    assert code == 0, relay.stderr()
    assert "delivered 4," in out
    assert sorted(o.order_id for o in emulator.orders) == ["R-1", "R-2"]
    assert emulator.points == {"c-1": 120, "c-2": 30}
    assert sorted(e.name for e in emulator.events) == ["cart_viewed", "reviewed"]
    arrivals = sorted(
        [(e.received_at, e.name) for e in emulator.events]
        + [(o.received_at, o.order_id) for o in emulator.orders if o.customer_id == "c-1"]
    )
    assert [what for _, what in arrivals] == ["cart_viewed", "R-1", "reviewed"]
    assert emulator.rate_limited == 0
