"""The outbox as a BackgroundSender's spill: an outage spills to disk, then drains."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from gbtrack._order import order_draft
from gbtrack.gameball import GameballClient
from gbtrack.outbox import OutboxSender, OutboxStore
from gbtrack.outbox._store import StoredOrder
from gbtrack.senders._background import BackgroundSender
from gbtrack.senders._policy import RetryPolicy, Spill

from .conftest import FakeGameball, make_events


def test_outbox_is_a_spill(outbox_path: Path) -> None:
    with OutboxSender(path=outbox_path) as outbox:
        assert isinstance(outbox, Spill)
        assert outbox.spill(make_events(3), "queue_overflow") == 3
        assert outbox.reporter.get("spilled:queue_overflow") == 3
        assert outbox.store.count() == 3
        assert outbox.spill([], "closed") == 0


def test_spill_respects_the_cap(outbox_path: Path) -> None:
    with OutboxSender(path=outbox_path, max_rows=2) as outbox:
        assert outbox.spill(make_events(5), "queue_overflow") == 2


def test_orders_spill_as_events_do_and_a_failed_spill_says_what_it_held(
    outbox_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    orders = [
        StoredOrder.of(
            order_draft(customer_id="c-1", order_id=f"ORD-{i}", total_paid=10, now=time.time())
        )
        for i in range(2)
    ]
    outbox = OutboxSender(path=outbox_path)
    assert outbox.spill_orders(orders, "retries_exhausted") == 2
    assert outbox.reporter.get("spilled") == 2
    assert outbox.reporter.get("spilled:retries_exhausted") == 2
    assert outbox.store.count() == 2
    assert outbox.spill_orders([], "closed") == 0
    outbox.store.close()  # the store fails under the sender: nothing stored, nothing raised
    with caplog.at_level(logging.WARNING, logger="gbtrack"):
        assert outbox.spill_orders(orders, "queue_overflow") == 0
        assert outbox.spill(make_events(3), "queue_overflow") == 0
    failed = [r.getMessage() for r in caplog.records if "spill of" in r.getMessage()]
    assert failed[0].startswith("gbtrack outbox: spill of 2 order(s) failed: ")
    assert failed[1].startswith("gbtrack outbox: spill of 3 event(s) failed: ")
    assert outbox.reporter.get("spilled") == 2
    outbox.close()
    with OutboxSender(path=outbox_path) as closed:
        closed.close()
        assert closed.spill_orders(orders, "closed") == 0  # after close: not stored


def test_outage_spills_then_drains_with_nothing_lost(
    outbox_path: Path, client: GameballClient, fake_gameball: FakeGameball
) -> None:
    # A simulated outage: every request fails until the background sender gives up and
    # spills; the outbox keeps the events and delivers them once Gameball is back.
    fake_gameball.fail_all = (503, {"code": 5003, "message": "down"})
    outbox = OutboxSender(
        client,
        path=outbox_path,
        retry=RetryPolicy(base_delay=0.01, max_delay=0.05, max_attempts=1000),
    )
    background = BackgroundSender(
        client,
        retry=RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02),
        flush_interval=0.01,
        spill=outbox,
    )
    for event in make_events(40, customers=8):
        background.send(event)
    assert background.flush(timeout=60)
    spilled = background.stats()
    assert spilled.delivered == 0
    assert spilled.total_dropped == 0  # spilled, not dropped
    with OutboxStore(outbox_path) as reader:
        assert reader.count() + reader.count("dead") == 40
    fake_gameball.fail_all = None  # Gameball is back
    assert outbox.flush(timeout=60)
    assert background.close(timeout=30)
    assert outbox.close(timeout=30)
    seqs = fake_gameball.seqs()
    assert sorted(set(seqs)) == list(range(40))
    assert len(seqs) == 40  # 503 is not ambiguous: no duplicates


def test_emulator_outage_spills_then_drains(gameball_emulator: object, outbox_path: Path) -> None:
    # The same outage against the real local server: every request answers 503 until
    # the fault is cleared.
    from gbtrack.emulator import GameballEmulator
    from gbtrack.gameball import GameballClient as Client

    emulator: GameballEmulator = gameball_emulator  # type: ignore[assignment]
    emulator.faults.fail_next(1_000_000, status=503)
    with Client(emulator.api_key, base_url=emulator.url) as gb:
        outbox = OutboxSender(
            gb,
            path=outbox_path,
            retry=RetryPolicy(base_delay=0.01, max_delay=0.05, max_attempts=10_000),
        )
        background = BackgroundSender(
            gb,
            retry=RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02),
            flush_interval=0.01,
            spill=outbox,
        )
        for event in make_events(30, customers=6):
            background.send(event)
        assert background.flush(timeout=60)
        assert background.stats().total_dropped == 0
        assert emulator.event_count == 0
        emulator.faults.clear()
        assert outbox.flush(timeout=60)
        assert background.close(timeout=30)
        assert outbox.close(timeout=30)
    seqs = [e.metadata["seq"] for e in emulator.events]
    assert sorted(seqs) == list(range(30))
