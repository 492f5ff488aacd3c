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
