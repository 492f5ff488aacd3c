"""Backlog drain through the batch endpoint, with per-item failures."""

from __future__ import annotations

import json

from gbtrack.gameball import MAX_BATCH_ITEMS, GameballClient
from gbtrack.outbox import OutboxDrainer, OutboxSender, OutboxStore
from gbtrack.senders._policy import RateLimiter, RetryPolicy

from .conftest import FakeGameball, make_events

FAST = RetryPolicy(base_delay=0.0, max_delay=0.0)


def _drainer(store: OutboxStore, client: GameballClient, **kw: object) -> OutboxDrainer:
    kw.setdefault("retry", FAST)
    return OutboxDrainer(
        store,
        client,
        limiter=RateLimiter(((10_000, 1.0),)),
        poll_interval=0.01,
        **kw,  # type: ignore[arg-type]
    )


def test_batch_job_items_go_back_or_dead_by_code(
    store: OutboxStore, secure_client: GameballClient, fake_gameball: FakeGameball
) -> None:
    store.append(make_events(30, customers=30))  # one event per customer: item i = event i
    fake_gameball.item_errors = {3: (3003, "Invalid Value"), 7: (2001, "Concurrent request")}
    drainer = _drainer(store, secure_client, bulk_threshold=10)
    assert drainer.use_bulk()
    result = drainer.run_once()
    drainer.close()
    assert (result.claimed, result.delivered, result.dead, result.retried) == (30, 28, 1, 1)
    (dead,) = store.rows("dead")
    assert (dead.code, dead.event().metadata["seq"]) == (3003, 3)
    (pending,) = store.rows("pending")
    assert pending.event().metadata["seq"] == 7
    assert pending.attempts == 1
    assert sorted(fake_gameball.seqs()) == [i for i in range(30) if i not in (3, 7)]
    # The retried item is delivered on the next round (now below the threshold: per request).
    assert not drainer.use_bulk()
    assert drainer.run_once().delivered == 1
    assert 7 in fake_gameball.seqs()


def test_jobs_hold_at_most_1000_items(
    store: OutboxStore, secure_client: GameballClient, fake_gameball: FakeGameball
) -> None:
    store.append(make_events(1500, customers=1500))
    drainer = _drainer(store, secure_client, bulk_threshold=100)
    total = 0
    while (result := drainer.run_once(bulk=True)).claimed:
        total += result.delivered
    drainer.close()
    assert total == 1500
    sizes = [
        len(json.loads(r.content)["body"])
        for r in fake_gameball.requests
        if r.url.path.endswith("/batch/events")
    ]
    assert sizes == [MAX_BATCH_ITEMS, 500]
    assert sorted(fake_gameball.seqs()) == list(range(1500))
    assert store.count() == 0


def test_no_secret_key_means_per_request(
    store: OutboxStore, client: GameballClient, fake_gameball: FakeGameball
) -> None:
    store.append(make_events(50))
    drainer = _drainer(store, client, bulk_threshold=1)
    assert not drainer.use_bulk()
    drainer.close()


def test_sender_switches_to_bulk_for_a_backlog(
    outbox_path: str, secure_client: GameballClient, fake_gameball: FakeGameball
) -> None:
    with OutboxStore(outbox_path) as seed:
        seed.append(make_events(300, customers=300))
    with OutboxSender(
        secure_client, path=outbox_path, bulk_threshold=100, poll_interval=0.01, retry=FAST
    ) as sender:
        assert sender.flush(timeout=60)
    assert sorted(fake_gameball.seqs()) == list(range(300))
    assert any(r.url.path.endswith("/batch/events") for r in fake_gameball.requests)


def test_emulator_batch_job_with_per_item_failures(
    gameball_emulator: object, store: OutboxStore
) -> None:
    # Against the real local server: customer c-3's item fails for good (3003), the
    # next two other items fail with 5003 ("not processed") and are sent again.
    from gbtrack.emulator import GameballEmulator

    emulator: GameballEmulator = gameball_emulator  # type: ignore[assignment]
    store.append(make_events(20, customers=20))
    emulator.faults.fail_batch_items(customer_ids=["c-3"], code=3003)
    emulator.faults.fail_batch_items(next_items=2, code=5003)
    with GameballClient(
        emulator.api_key, secret_key=emulator.secret_key, base_url=emulator.url
    ) as gb:
        drainer = _drainer(store, gb, bulk_threshold=10)
        first = drainer.run_once()
        assert (first.claimed, first.dead, first.retried) == (20, 1, 2)
        assert first.delivered == 17
        while drainer.run_once(bulk=True).claimed:
            pass
        drainer.close()
    (dead,) = store.rows("dead")
    assert (dead.code, dead.customer_id) == (3003, "c-3")
    received = [e.metadata["seq"] for e in emulator.events]
    assert sorted(received) == [i for i in range(20) if i != 3]
    assert {e.version for e in emulator.events} == {"batch"}
