"""One contract, three stores: the SQLite file, SQLAlchemy on SQLite, and PostgreSQL.

The same assertions run against :class:`OutboxStore` and :class:`SqlOutboxStore` (on a
SQLite file and on a real PostgreSQL server), so the row semantics (pending, leases,
dead letters, operations) cannot drift apart.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.outbox.conftest import make_events
from tests.sql.conftest import fresh_tables

from gbtrack import Event
from gbtrack.outbox import OutboxStore, OutboxStoreProtocol
from gbtrack.outbox._sql import SqlOutboxStore


@pytest.fixture(params=["file", "sql-sqlite", "sql-postgresql"])
def store(request: Any, tmp_path: Path) -> Iterator[OutboxStoreProtocol]:
    s: OutboxStoreProtocol
    if request.param == "file":
        s = OutboxStore(tmp_path / "outbox.sqlite3")
    else:
        if request.param == "sql-sqlite":
            url = f"sqlite:///{tmp_path / 'app.sqlite3'}"
        else:
            url = str(request.getfixturevalue("postgres_url"))
        fresh_tables(url)
        s = SqlOutboxStore(url)
    try:
        yield s
    finally:
        s.close()


def test_append_claim_complete(store: OutboxStoreProtocol) -> None:
    events = make_events(10)
    assert store.append(events) == 10
    rows = store.claim("w1", 4, lease=30)
    assert [r.event().event_id for r in rows] == [e.event_id for e in events[:4]]
    assert all(r.claimed_by == "w1" and r.table == "pending" for r in rows)
    other = store.claim("w2", 100, lease=30)
    assert {r.id for r in other}.isdisjoint({r.id for r in rows})
    assert len(other) == 6
    assert store.complete([r.id for r in rows]) == 4
    assert store.count("pending") == 6
    assert store.stats().claimed == 6


def test_event_round_trips(store: OutboxStoreProtocol) -> None:
    event = Event(
        name="ordered", customer_id="c-1", email="a@example.com", mobile="+201234567",
        metadata={"total": 12.5, "count": 3, "vip": True, "note": "é ✓"}, session_token="tok",
    )  # fmt: skip
    store.append([event])
    (row,) = store.rows()
    back = row.event()
    assert back.model_dump(exclude={"session_token"}) == event.model_dump(exclude={"session_token"})
    assert back.session_token is None
    assert "tok" not in row.payload


def test_expired_lease_is_reclaimed(store: OutboxStoreProtocol) -> None:
    store.append(make_events(3))
    now = time.time()
    first = store.claim("dead-worker", 10, lease=5, now=now)
    assert len(first) == 3
    assert store.claim("w2", 10, lease=5, now=now + 1) == []
    again = store.claim("w2", 10, lease=5, now=now + 6)
    assert [r.id for r in again] == [r.id for r in first]
    assert all(r.claimed_by == "w2" for r in again)


def test_release_delays_and_counts_attempts(store: OutboxStoreProtocol) -> None:
    store.append(make_events(2))
    rows = store.claim("w", 10, lease=30)
    store.release("w", [rows[0].id], delay=3600, error="503 boom")
    store.release("w", [rows[1].id], count_attempt=False)
    ready = store.claim("w", 10, lease=30)
    assert [r.id for r in ready] == [rows[1].id]
    assert ready[0].attempts == 0
    later = store.get("pending", rows[0].id)
    assert later is not None
    assert (later.attempts, later.last_error, later.claimed_by) == (1, "503 boom", None)
    store.complete([ready[0].id])
    wait = store.next_ready_in()
    assert wait is not None
    assert wait > 3000


def test_release_ignores_rows_of_another_owner(store: OutboxStoreProtocol) -> None:
    store.append(make_events(1))
    (row,) = store.claim("w1", 1, lease=30)
    store.release("w2", [row.id], delay=0)
    assert store.get("pending", row.id).claimed_by == "w1"  # type: ignore[union-attr]
    assert store.release_owner("w1") == 1
    assert store.get("pending", row.id).claimed_by is None  # type: ignore[union-attr]


def test_bury_and_retry_dead_with_filters(store: OutboxStoreProtocol) -> None:
    store.append(make_events(3, name="a") + make_events(2, name="b", start=3))
    rows = store.claim("w", 10, lease=30)
    store.bury([rows[0].id, rows[1].id], status=422, code=3003, message="rejected: invalid")
    store.bury([rows[3].id], status=401, code=1000, message="rejected: unauthorized")
    assert store.count("dead") == 3
    dead = store.rows("dead")
    assert [(d.status, d.code) for d in dead] == [(422, 3003), (422, 3003), (401, 1000)]
    assert dead[0].attempts == 1
    assert dead[0].failed_at is not None
    assert dead[0].message == "rejected: invalid"
    assert store.get("dead", dead[2].id) == dead[2]
    assert store.retry_dead(code=1000) == 1
    assert store.retry_dead(name="nope") == 0
    assert store.retry_dead(since=time.time() + 60) == 0
    assert store.retry_dead(ids=[]) == 0
    assert store.retry_dead() == 2
    assert store.count("dead") == 0
    pending = store.rows("pending")
    assert len(pending) == 5
    assert all(r.attempts == 0 for r in pending if r.id > rows[-1].id)


def test_purge_and_stats(store: OutboxStoreProtocol) -> None:
    store.append(make_events(4))
    rows = store.claim("w", 1, lease=30)
    store.bury([rows[0].id], status=400, code=3000, message="x")
    stats = store.stats()
    assert (stats.pending, stats.dead, stats.rows) == (3, 1, 4)
    assert stats.bytes > 0
    age = stats.oldest_age()
    assert age is not None
    assert age >= 0
    assert store.purge("dead") == 1
    assert store.purge("pending") == 3
    stats = store.stats()
    assert (stats.pending, stats.dead, stats.rows, stats.bytes) == (0, 0, 0, 0)
    assert stats.oldest_age() is None
    assert store.next_ready_in() is None


def test_count_and_max_id(store: OutboxStoreProtocol) -> None:
    assert store.max_id("pending") == 0
    store.append(make_events(5))
    top = store.max_id("pending")
    assert top > 0
    store.append(make_events(2, start=5))
    assert store.count("pending", up_to_id=top) == 5
    assert store.count("pending") == 7


def test_iter_rows_pages_in_order(store: OutboxStoreProtocol) -> None:
    store.append(make_events(23))
    seqs = [r.event().metadata["seq"] for r in store.iter_rows("pending", page=5)]
    assert seqs == list(range(23))
    assert [r.event().metadata["seq"] for r in store.rows(limit=3, offset=2)] == [2, 3, 4]


def test_extend_keeps_the_lease_alive(store: OutboxStoreProtocol) -> None:
    store.append(make_events(2))
    rows = store.claim("w1", 2, lease=0.001)
    store.extend("w1", [rows[0].id], lease=3600)
    store.extend("w2", [rows[1].id], lease=3600)  # not w2's row: unchanged
    stolen = store.claim("w2", 10, lease=30, now=time.time() + 1)
    assert [r.id for r in stolen] == [rows[1].id]


def test_make_ready_clears_backoff(store: OutboxStoreProtocol) -> None:
    store.append(make_events(2))
    rows = store.claim("w", 2, lease=30)
    store.release("w", [r.id for r in rows], delay=3600)
    assert store.claim("w", 10, lease=30) == []
    assert store.make_ready() == 2
    assert len(store.claim("w", 10, lease=30)) == 2


def test_concurrent_claims_never_share_a_row(store: OutboxStoreProtocol) -> None:
    """Four threads claim and complete until empty: each row is claimed exactly once."""
    store.append(make_events(400))
    seen: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker(owner: str) -> None:
        try:
            while True:
                rows = store.claim(owner, 7, lease=60)
                if not rows:
                    return
                with lock:
                    seen.extend(r.id for r in rows)
                store.complete([r.id for r in rows])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len(seen) == 400
    assert len(set(seen)) == 400
    assert store.count("pending") == 0


def test_closed_store_refuses(store: OutboxStoreProtocol) -> None:
    store.close()
    assert store.closed
    with pytest.raises(Exception, match="closed"):
        store.count()


# --- fencing: claim tokens ---------------------------------------------------------------


def test_each_claim_has_its_own_token(store: OutboxStoreProtocol) -> None:
    store.append(make_events(4))
    first = store.claim("w", 2, lease=30)
    second = store.claim("w", 2, lease=30)
    tokens = {r.claim_token for r in first} | {r.claim_token for r in second}
    assert None not in tokens
    assert len({r.claim_token for r in first}) == 1
    assert len(tokens) == 2  # same owner, two claims, two tokens
    assert store.get("pending", first[0].id).claim_token == first[0].claim_token  # type: ignore[union-attr]


def test_a_stale_token_renews_settles_nothing(store: OutboxStoreProtocol) -> None:
    """w1's lease ran out and w2 claimed the rows: w1's token no longer touches them."""
    store.append(make_events(3))
    now = time.time()
    stale = store.claim("w", 10, lease=5, now=now - 60)  # expired long ago
    ids = [r.id for r in stale]
    token = stale[0].claim_token
    fresh = store.claim("w", 10, lease=30)  # the same owner name: only the token tells
    assert [r.id for r in fresh] == ids
    assert store.extend("w", ids, lease=3600, token=token) == []
    assert store.complete(ids, token=token) == 0
    store.release("w", ids, delay=0, token=token)
    assert store.bury(ids, status=400, code=3000, message="x", token=token) == 0
    rows = [store.get("pending", i) for i in ids]
    assert all(r is not None and r.claim_token == fresh[0].claim_token for r in rows)
    assert all(r is not None and r.lease_until is not None for r in rows)
    # ... and the current token does.
    assert store.extend("w", ids, lease=30, token=fresh[0].claim_token) == ids
    assert store.complete(ids[:1], token=fresh[0].claim_token) == 1
    assert store.bury(ids[1:2], status=400, code=3000, message="x", token=fresh[0].claim_token) == 1
    store.release("w", ids[2:], token=fresh[0].claim_token)
    back = store.get("pending", ids[2])
    assert back is not None
    assert (back.claimed_by, back.claim_token) == (None, None)


def test_extend_renews_an_expired_lease_nobody_took(store: OutboxStoreProtocol) -> None:
    store.append(make_events(2))
    rows = store.claim("w", 10, lease=5, now=time.time() - 60)
    ids = [r.id for r in rows]
    assert store.extend("w", ids, lease=60, token=rows[0].claim_token) == ids
    assert store.claim("x", 10, lease=30) == []  # renewed: held again


def test_bounded_count_and_backlog(store: OutboxStoreProtocol) -> None:
    store.append(make_events(25))
    assert store.count("pending", limit=10) == 10
    assert store.count("pending", limit=100) == 25
    assert store.count("pending", up_to_id=store.max_id(), limit=5) == 5
    backlog = store.backlog(cap=10)
    assert (backlog.pending, backlog.exact) == (10, False)
    first = store.rows(limit=1)[0]
    assert backlog.oldest_created_at == first.created_at
    whole = store.backlog(cap=100)
    assert (whole.pending, whole.exact) == (25, True)
    store.purge("pending")
    empty = store.backlog()
    assert (empty.pending, empty.exact, empty.oldest_created_at) == (0, True, None)


def test_next_ready_in_sees_free_and_held_rows(store: OutboxStoreProtocol) -> None:
    store.append(make_events(2))
    rows = store.claim("w", 10, lease=100)
    store.release("w", [rows[0].id], delay=500)
    wait = store.next_ready_in()
    assert wait is not None
    assert 90 < wait <= 100  # the held row's lease ends first
    store.complete([rows[1].id])
    wait = store.next_ready_in()
    assert wait is not None
    assert 490 < wait <= 500
