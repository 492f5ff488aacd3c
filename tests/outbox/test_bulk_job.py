"""The outbox drives batch jobs with the one state machine, against the local emulator.

Every way a batch job can go ends with each row delivered, pending again, or dead:
a failed create never leaves its rows claimed and waiting for a job that does not exist.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from gbtrack import Event
from gbtrack.emulator import GameballEmulator
from gbtrack.gameball import GameballClient
from gbtrack.outbox import OutboxDrainer, OutboxStore
from gbtrack.senders._policy import RateLimiter, RetryPolicy

from .conftest import make_events

N = 20


@pytest.fixture
def emulator(gameball_emulator_factory: Callable[..., GameballEmulator]) -> GameballEmulator:
    return gameball_emulator_factory(rate_limits=None)


@pytest.fixture
def drainer(emulator: GameballEmulator, store: OutboxStore) -> Iterator[OutboxDrainer]:
    store.append(make_events(N, customers=N))
    with GameballClient(
        emulator.api_key, secret_key=emulator.secret_key, base_url=emulator.url
    ) as client:
        drainer = OutboxDrainer(
            store,
            client,
            retry=RetryPolicy(base_delay=0.0, max_delay=0.0),
            limiter=RateLimiter(((10_000, 1.0),)),
            poll_interval=0.05,
            bulk_threshold=10,
        )
        yield drainer
        drainer.close()


def _seqs(emulator: GameballEmulator) -> list[int]:
    return sorted(int(e.metadata["seq"]) for e in emulator.events)


def _polls(emulator: GameballEmulator) -> int:
    return sum(n for (endpoint, _), n in emulator.requests.items() if endpoint == "batch/status")


def _unclaimed(store: OutboxStore) -> bool:
    return all(row.claimed_by is None for row in store.rows())


def test_a_failed_batch_create_with_retries_off_goes_dead(
    emulator: GameballEmulator, store: OutboxStore, drainer: OutboxDrainer
) -> None:
    drainer.retry = RetryPolicy(max_attempts=1)
    emulator.faults.fail_next(1, status=503)
    result = drainer.run_once(bulk=True)
    assert (result.claimed, result.dead) == (N, N)
    assert _polls(emulator) == 0
    assert store.count("pending") == 0
    assert store.count("dead") == N


def test_a_pending_job_is_polled_until_it_completes(
    emulator: GameballEmulator, store: OutboxStore, drainer: OutboxDrainer
) -> None:
    emulator.batch_delay = 0.3
    result = drainer.run_once(bulk=True)
    assert (result.claimed, result.delivered) == (N, N)
    polls = emulator.requests[("batch/status", 200)]
    assert 2 <= polls <= 8  # 50 ms, then doubling to poll_interval (50 ms here)
    assert _seqs(emulator) == list(range(N))
    assert store.count() == 0


def test_a_job_past_its_timeout_is_ambiguous(
    emulator: GameballEmulator, store: OutboxStore, drainer: OutboxDrainer
) -> None:
    emulator.batch_delay = 30.0
    drainer.job_timeout = 0.2
    drainer.retry = RetryPolicy(retry_ambiguous=False)
    result = drainer.run_once(bulk=True)
    assert (result.claimed, result.dead) == (N, N)
    (dead, *_) = store.rows("dead")
    assert "not finished within 0.2 s" in (dead.message or "")


def test_a_job_carries_each_customer_once_so_item_errors_stay_attributable(
    emulator: GameballEmulator, store: OutboxStore, drainer: OutboxDrainer
) -> None:
    # c-0 has three requests (the same event name thrice): a job carries one of them,
    # so that its item errors stay attributable; the others wait for later jobs.
    again = [
        Event(name="purchase_0", customer_id="c-0", email="user0@example.com", metadata={"seq": k})
        for k in (100, 101)
    ]
    store.append(again)
    emulator.faults.fail_batch_items(customer_ids=["c-0"], code=3003)
    first = drainer.run_once(bulk=True)
    assert (first.delivered, first.dead, first.retried) == (N - 1, 1, 0)  # c-0 once per job
    while drainer.run_once(bulk=True).claimed:
        pass
    assert store.count("pending") == 0
    assert sorted(row.customer_id for row in store.rows("dead")) == ["c-0"] * 3
    assert {row.code for row in store.rows("dead")} == {3003}
    assert _seqs(emulator) == list(range(1, N))
