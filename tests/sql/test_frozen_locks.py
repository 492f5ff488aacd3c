"""A relay frozen inside a transaction (SIGSTOP, a paused VM) must not hide its rows for ever.

``SKIP LOCKED`` claimers pass over locked rows; a session that stops between the UPDATE of
a lease renewal and its COMMIT holds those locks for as long as it is frozen, whatever its
lease says. The store's own PostgreSQL sessions carry ``idle_in_transaction_session_timeout``,
so the server ends such a session and the rows become claimable once their lease is over.
"""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from tests.outbox.conftest import make_events
from tests.sql.conftest import fresh_tables

from gbtrack import ConfigurationError
from gbtrack.gameball import GameballClient
from gbtrack.outbox import OutboxDrainer, SqlOutboxStore
from gbtrack.outbox._relay import Relay
from gbtrack.outbox._sql import pending_table


def _frozen_renewal(store: SqlOutboxStore, ids: list[int]) -> sa.Connection:
    """A transaction that renewed ``ids``' lease and then stopped, COMMIT never sent."""
    conn = store.engine.connect()
    conn.begin()
    t = pending_table
    conn.execute(t.update().where(t.c.id.in_(ids)).values(lease_until=0.0))
    return conn


def test_a_session_frozen_in_a_transaction_gives_its_rows_up(postgres_url: str) -> None:
    fresh_tables(postgres_url)
    with (
        SqlOutboxStore(postgres_url, idle_transaction_timeout=0.5) as frozen,
        SqlOutboxStore(postgres_url) as other,
    ):
        frozen.append(make_events(5))
        rows = frozen.claim("a", 5, lease=0.2)
        conn = _frozen_renewal(frozen, [r.id for r in rows])
        try:
            time.sleep(0.3)  # past the lease: only the locks stand in the way
            deadline = time.monotonic() + 30
            taken: list[int] = []
            while not taken and time.monotonic() < deadline:
                taken = [r.id for r in other.claim("b", 5, lease=30)]
                time.sleep(0.05)
            assert taken == [r.id for r in rows]
        finally:
            conn.invalidate()  # the server ended it: do not hand it back to the pool


def test_the_timeout_is_checked(postgres_url: str) -> None:
    with pytest.raises(ConfigurationError, match="idle_transaction_timeout"):
        SqlOutboxStore(postgres_url, idle_transaction_timeout=0)


@pytest.mark.slow
def test_the_election_lock_outlives_the_idle_timeout(postgres_url: str) -> None:
    """The active relay's lock session is never left idle in a transaction: rounds longer
    than ``idle_transaction_timeout`` between two checks must not cost it the lock."""
    fresh_tables(postgres_url)
    with (
        SqlOutboxStore(postgres_url, idle_transaction_timeout=0.3) as store,
        GameballClient("key", base_url="http://127.0.0.1:9") as client,
    ):
        relay = Relay(
            store, OutboxDrainer(store, client), election="lock", lock_key=4242, stats_interval=0
        )
        try:
            assert relay._hold_lock()
            for _ in range(3):
                time.sleep(1.1)  # a round longer than the check interval and the timeout
                assert relay._hold_lock()
            time.sleep(0.6)  # past the idle timeout after the last check
            with store.engine.connect() as other:
                held = other.execute(
                    sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
                ).scalar_one()
            assert held == 1
        finally:
            relay._drop_lock()
