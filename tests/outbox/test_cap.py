"""The size cap: rows or bytes, ``drop_newest`` counted and reported, or ``block``."""

from __future__ import annotations

import threading
from pathlib import Path

from gbtrack import Event, TrackingError
from gbtrack.gameball import GameballClient
from gbtrack.outbox import OutboxSender, OutboxStore
from gbtrack.outbox._store import ROW_OVERHEAD, encode_event

from .conftest import FakeGameball, make_events


def test_store_append_stops_at_max_rows(outbox_path: Path) -> None:
    with OutboxStore(outbox_path, max_rows=5) as store:
        assert store.append(make_events(3)) == 3
        assert store.append(make_events(4, start=3)) == 2  # the first two fit, in order
        assert [r.event().metadata["seq"] for r in store.rows()] == [0, 1, 2, 3, 4]
        # Dead letters count too: the file is bounded whatever the failures.
        rows = store.claim("w", 5, lease=30)
        store.bury([r.id for r in rows], status=400, code=3000, message="x")
        assert store.append(make_events(1, start=9)) == 0
        assert store.purge("dead") == 5
        assert store.append(make_events(1, start=9)) == 1


def test_store_append_stops_at_max_bytes(outbox_path: Path) -> None:
    events = make_events(10)
    one = len(encode_event(events[0]).encode()) + ROW_OVERHEAD
    with OutboxStore(outbox_path, max_rows=None, max_bytes=one * 3 + one // 2) as store:
        assert store.append(events) == 3
        assert store.stats().bytes <= store.max_bytes  # type: ignore[operator]


def test_drop_newest_counts_and_reports(outbox_path: Path) -> None:
    errors: list[TrackingError] = []
    with OutboxSender(
        path=outbox_path, sync="every_event", max_rows=4, on_error=errors.append
    ) as sender:
        for event in make_events(6):
            sender.send(event)
        assert sender.stats().dropped == {"outbox_full": 2}
        assert sender.stats().persisted == 4
    assert [e.reason for e in errors] == ["outbox_full", "outbox_full"]
    assert errors[0].event is not None
    assert errors[0].event.metadata["seq"] == 4
    assert "max_rows=4" in str(errors[0])


def test_drop_newest_in_batch_mode(outbox_path: Path) -> None:
    with OutboxSender(path=outbox_path, max_rows=10, commit_interval=60) as sender:
        for event in make_events(15):
            sender.send(event)
        assert sender.commit(timeout=30)
        stats = sender.stats()
        assert stats.persisted == 10
        assert stats.dropped == {"outbox_full": 5}


def test_block_waits_for_room_then_stores(
    outbox_path: Path, client: GameballClient, fake_gameball: FakeGameball
) -> None:
    # The cap is full of undeliverable rows (Gameball down); send() blocks until a
    # delivery frees room, then stores the event: nothing is dropped.
    fake_gameball.fail_all = (503, {"code": 5003, "message": "down"})
    with OutboxStore(outbox_path) as seed:
        seed.append(make_events(2))
    sender = OutboxSender(
        client,
        path=outbox_path,
        sync="every_event",
        max_rows=2,
        overflow="block",
        block_timeout=60,
    )
    done = threading.Event()

    def produce() -> None:
        sender.send(Event(name="late", customer_id="c-9", metadata={"seq": 99}))
        done.set()

    producer = threading.Thread(target=produce)
    producer.start()
    assert not done.wait(0.3)  # still blocked: the outbox is full
    fake_gameball.fail_all = None  # Gameball is back
    producer.join(60)
    assert done.is_set()
    assert sender.flush(timeout=60)
    assert sender.close(timeout=30)
    assert sender.stats().dropped == {}
    assert sorted(fake_gameball.seqs()) == [0, 1, 99]


def test_block_gives_up_after_timeout(outbox_path: Path) -> None:
    with OutboxSender(
        path=outbox_path, sync="every_event", max_rows=1, overflow="block", block_timeout=0.2
    ) as sender:
        for event in make_events(2):
            sender.send(event)
        assert sender.stats().dropped == {"outbox_full": 1}
