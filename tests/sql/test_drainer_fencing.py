"""Two drainers on one outbox, slow answers, a lease shorter than a round: none sent twice.

In process, on each store: the SQLite outbox file (what several ``OutboxSender``
processes share: the audit of issue 18), SQLAlchemy on SQLite, and PostgreSQL. Each
drainer has its own store object (its own connection), as separate processes would.
Before the heartbeat and the claim tokens, rows expired while their drainer was still
working through its claim, and the other drainer sent them again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.outbox.conftest import make_events
from tests.sql._relays import seqs
from tests.sql.conftest import fresh_tables

from gbtrack.emulator import GameballEmulator
from gbtrack.gameball import GameballClient
from gbtrack.outbox import OutboxDrainer, OutboxStore, OutboxStoreProtocol
from gbtrack.outbox._sql import SqlOutboxStore
from gbtrack.senders import RateLimiter


@pytest.fixture(params=["file", "sql-sqlite", "sql-postgresql"])
def open_store(request: Any, tmp_path: Path) -> Iterator[Callable[[], OutboxStoreProtocol]]:
    """Open another store object on one shared outbox (closed after the test)."""
    opened: list[OutboxStoreProtocol] = []
    if request.param == "file":
        path = tmp_path / "outbox.sqlite3"

        def make() -> OutboxStoreProtocol:
            return OutboxStore(path)
    else:
        if request.param == "sql-sqlite":
            url = f"sqlite:///{tmp_path / 'app.sqlite3'}"
        else:
            url = str(request.getfixturevalue("postgres_url"))
        fresh_tables(url)

        def make() -> OutboxStoreProtocol:
            return SqlOutboxStore(url)

    def tracked() -> OutboxStoreProtocol:
        store = make()
        opened.append(store)
        return store

    try:
        yield tracked
    finally:
        for store in opened:
            store.close()


def test_two_drainers_slow_answers_short_lease_none_twice(
    open_store: Callable[[], OutboxStoreProtocol], gameball_emulator: GameballEmulator
) -> None:
    """A round of 24 requests at 0.05 s each lasts ~1.2 s; the lease is 0.5 s."""
    emu = gameball_emulator
    emu.faults.set_latency(0.05)
    n = 48
    open_store().append(make_events(n, customers=n))
    errors: list[BaseException] = []
    done = threading.Event()

    def drain() -> None:
        store = open_store()
        with GameballClient(emu.api_key, base_url=emu.url) as client:
            drainer = OutboxDrainer(
                store,
                client,
                lease=0.5,
                claim_size=24,
                concurrency=1,
                limiter=RateLimiter([(1000, 1.0)]),
            )
            try:
                deadline = time.monotonic() + 30
                while not done.is_set() and time.monotonic() < deadline:
                    if not drainer.run_once().claimed:
                        if store.count("pending") == 0:
                            done.set()
                        time.sleep(0.02)  # other rows are leased: their lease may end
            except BaseException as exc:
                errors.append(exc)
            finally:
                drainer.close()

    threads = [threading.Thread(target=drain) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    counts = seqs(emu)
    assert sorted(counts) == list(range(n))  # none lost
    assert max(counts.values()) == 1  # none twice


def test_a_failed_round_stops_renewing_its_rows(tmp_path: Path) -> None:
    """The store is locked while a row waits for its rate-limit slot: the check before
    sending cannot reach the store and the round raises. Its rows must then no longer be
    renewed by the heartbeat, so their lease runs out and another worker claims them
    (renewed forever by a live process, they would never be delivered)."""
    import sqlite3

    import httpx

    path = tmp_path / "outbox.sqlite3"
    sent = threading.Event()

    def gameball(request: httpx.Request) -> httpx.Response:
        sent.set()
        return httpx.Response(200, json={"success": True})

    failures: list[BaseException] = []
    with (
        OutboxStore(path, busy_timeout=0.2) as store,
        OutboxStore(path) as other,
        GameballClient("k", transport=httpx.MockTransport(gameball)) as client,
    ):
        store.append(make_events(2, customers=2))
        drainer = OutboxDrainer(
            store, client, lease=0.4, concurrency=1, limiter=RateLimiter([(1, 2.0)])
        )

        def round_() -> None:
            try:
                drainer.run_once(bulk=False)
            except Exception as exc:
                failures.append(exc)

        thread = threading.Thread(target=round_)
        thread.start()
        assert sent.wait(10)
        deadline = time.monotonic() + 10
        while store.count("pending") != 1 and time.monotonic() < deadline:
            time.sleep(0.01)  # the first row settled; the second waits ~2 s for a slot
        locker = sqlite3.connect(path, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")  # until the round has failed
        thread.join(10)
        locker.execute("COMMIT")
        locker.close()
        assert failures, "the round was expected to fail on the locked store"
        taken: list[Any] = []
        deadline = time.monotonic() + 5
        while not taken and time.monotonic() < deadline:
            time.sleep(0.1)
            taken = other.claim("other", 10, lease=30)
        drainer.close()
        assert len(taken) == 1  # the lease ran out: not renewed for a round that failed


class _StealingLimiter(RateLimiter):
    """A limiter whose first slot is given only after another worker took the rows."""

    def __init__(self, steal: Callable[[], None]) -> None:
        super().__init__([(1, 0.05)], margin=0.0)
        self._steal: Callable[[], None] | None = steal

    def take(
        self, timeout: float | None = None, *, stop: threading.Event | None = None
    ) -> float | None:
        steal, self._steal = self._steal, None
        if steal is not None:
            steal()
        return super().take(timeout, stop=stop)


@pytest.mark.parametrize("bulk", [False, True], ids=["per_request", "batch_job"])
def test_a_slot_taken_for_rows_fenced_meanwhile_is_ended(tmp_path: Path, bulk: bool) -> None:
    """The rows were claimed elsewhere while the drainer waited for its slot: nothing is
    sent, and the slot ends at once (left in flight it would count for ``hold``, 120 s,
    and with a limit of one the next request would wait that long)."""
    import httpx

    def gameball(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"nothing may be sent: {request.url}")

    path = tmp_path / "outbox.sqlite3"
    with (
        OutboxStore(path) as store,
        OutboxStore(path) as other,
        GameballClient("k", secret_key="s", transport=httpx.MockTransport(gameball)) as client,
    ):
        store.append(make_events(3, customers=3))

        def steal() -> None:
            # Claimed elsewhere as if the lease had run out (a freeze, seen from outside);
            # the drainer's heartbeat then finds the rows under another token.
            assert len(other.claim("other", 10, lease=30, now=time.time() + 3600)) == 3
            time.sleep(0.3)

        limiter = _StealingLimiter(steal)
        drainer = OutboxDrainer(
            store, client, lease=0.2, concurrency=1, limiter=limiter, bulk_threshold=1
        )
        try:
            result = drainer.run_once(bulk=bulk)
        finally:
            drainer.close()
        assert result.fenced == 3
        assert limiter.take(timeout=5.0) is not None  # the fenced round's slot ended
