"""The SQL outbox's edges that the store contract does not pin (mutation testing).

Every column a row carries through append, claim, release, bury and retry; the caps at
their boundaries; ids beyond one chunk; errors translated with the database's message;
and :class:`~gbtrack.TransactionBinding`'s drops, hooks and counters. The store tests run
on SQLAlchemy-on-SQLite and on PostgreSQL (``sql_store``); ``nox -s mutate`` runs the
SQLite ones.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import SQLAlchemyError
from tests.outbox.conftest import make_events
from tests.sql.conftest import fresh_tables

import gbtrack
from gbtrack import ConfigurationError, Event, InMemorySender, Limits, Tracker, TrackingError
from gbtrack.outbox import OutboxError
from gbtrack.outbox._sql import (
    _CHUNK,
    SqlOutboxStore,
    _failure,
    _sqlite_immediate,
    ddl,
    dead_table,
    event_values,
    insert_events,
    metadata,
    pending_table,
)
from gbtrack.outbox._store import ROW_OVERHEAD

NOW = 1_700_000_000.0


def _event(n: int = 0) -> Event:
    # Non-ASCII metadata: the stored size counts bytes, not characters.
    return Event(
        name=f"ordered-{n}", customer_id=f"c-{n}", metadata={"note": "é ✓", "n": n},
        timestamp=NOW - 100 + n,
    )  # fmt: skip


# --- rows: every column through every move ---------------------------------------------


def test_append_stores_every_column(sql_store: SqlOutboxStore) -> None:
    event = _event(1)
    assert sql_store.append([event], now=NOW) == 1
    (row,) = sql_store.rows()
    assert (row.table, row.event_id, row.name, row.customer_id) == (
        "pending", event.event_id, "ordered-1", "c-1",
    )  # fmt: skip
    assert row.size == len(row.payload.encode()) + ROW_OVERHEAD
    assert row.size > len(row.payload) + ROW_OVERHEAD  # bytes, not characters
    assert (row.created_at, row.enqueued_at) == (NOW - 99, NOW)
    assert (row.attempts, row.next_attempt_at) == (0, 0)
    assert (row.claimed_by, row.lease_until) == (None, None)
    assert row.last_error is None
    assert row.event().metadata == {"note": "é ✓", "n": 1}
    assert sql_store.get("pending", row.id) == row
    assert sql_store.max_id() == row.id
    assert sql_store.max_id("dead") == 0
    assert sql_store.get("pending", row.id + 1) is None


def test_claim_release_and_release_owner_columns(sql_store: SqlOutboxStore) -> None:
    sql_store.append([_event(1), _event(2)], now=NOW)
    claimed = sql_store.claim("w1", 10, lease=30, now=NOW)
    assert [(r.claimed_by, r.lease_until) for r in claimed] == [("w1", NOW + 30)] * 2
    assert [sql_store.get("pending", r.id) for r in claimed] == claimed
    before = time.time()
    sql_store.release("w1", [claimed[0].id], delay=100, error="503 busy")
    sql_store.release("w1", [claimed[1].id], delay=0, count_attempt=False)
    first, second = sql_store.rows()
    assert (first.claimed_by, first.lease_until, first.attempts) == (None, None, 1)
    assert first.last_error == "503 busy"
    assert before + 100 <= first.next_attempt_at <= time.time() + 100
    assert (second.attempts, second.last_error) == (0, None)
    # Ready exactly at next_attempt_at; a lease is free exactly at lease_until.
    assert [r.id for r in sql_store.claim("w2", 10, lease=5, now=first.next_attempt_at)] == [
        first.id,
        second.id,
    ]
    assert sql_store.claim("w3", 10, lease=5, now=first.next_attempt_at + 4.9) == []
    again = sql_store.claim("w3", 10, lease=5, now=first.next_attempt_at + 5)
    assert len(again) == 2
    assert sql_store.release_owner("w3") == 2
    assert all((r.claimed_by, r.lease_until) == (None, None) for r in sql_store.rows())


def test_bury_and_retry_carry_every_column(sql_store: SqlOutboxStore) -> None:
    sql_store.append([_event(1), _event(2), _event(3)], now=NOW)
    rows = sql_store.claim("w", 10, lease=30, now=NOW)
    sql_store.release("w", [r.id for r in rows], delay=0, error="boom")
    before = time.time()
    assert sql_store.bury([rows[0].id], status=422, code=3003, message="invalid") == 1
    moved = sql_store.bury(
        [rows[1].id], status=None, code=None, message="gone", count_attempt=False
    )
    assert moved == 1
    first, second = sql_store.rows("dead")
    assert sql_store.rows("dead") == list(sql_store.iter_rows("dead"))
    for dead, pending in ((first, rows[0]), (second, rows[1])):
        assert dead.table == "dead"
        assert (dead.event_id, dead.name, dead.customer_id, dead.payload, dead.size) == (
            pending.event_id, pending.name, pending.customer_id, pending.payload, pending.size,
        )  # fmt: skip
        assert (dead.created_at, dead.enqueued_at) == (pending.created_at, NOW)
        assert before <= dead.failed_at <= time.time()  # type: ignore[operator]
    assert (first.attempts, first.status, first.code, first.message) == (2, 422, 3003, "invalid")
    assert (second.attempts, second.status, second.code, second.message) == (1, None, None, "gone")
    assert sql_store.get("dead", first.id) == first
    before = time.time()
    assert sql_store.retry_dead(ids=[second.id]) == 1
    assert [d.id for d in sql_store.rows("dead")] == [first.id]
    back = sql_store.rows()[-1]
    assert (back.event_id, back.name, back.customer_id, back.payload, back.size) == (
        second.event_id, second.name, second.customer_id, second.payload, second.size,
    )  # fmt: skip
    assert back.created_at == second.created_at
    assert before <= back.enqueued_at <= time.time()
    assert (back.attempts, back.next_attempt_at, back.claimed_by, back.last_error) == (
        0, 0, None, None,
    )  # fmt: skip


def test_retry_dead_filters_and_the_since_boundary(sql_store: SqlOutboxStore) -> None:
    sql_store.append([_event(1), _event(2), _event(3)], now=NOW)
    ids = [r.id for r in sql_store.rows()]
    sql_store.bury(ids[:2], status=400, code=3000, message="x")
    sql_store.bury(ids[2:], status=400, code=3001, message="y")
    dead = sql_store.rows("dead")
    assert sql_store.retry_dead(since=dead[-1].failed_at) == 1  # at or after
    assert sql_store.retry_dead(name="ordered-2") == 1
    assert [d.name for d in sql_store.rows("dead")] == ["ordered-1"]
    assert sql_store.retry_dead(ids=[dead[0].id + 100]) == 0
    assert sql_store.retry_dead(code=3000) == 1


def test_ids_beyond_one_chunk(sql_store: SqlOutboxStore) -> None:
    n = 2 * _CHUNK + 1
    sql_store.append([Event(name="bulk", customer_id=f"c-{i}") for i in range(n)], now=NOW)
    ids = [r.id for r in sql_store.claim("w", n, lease=30, now=NOW)]
    assert len(ids) == n
    sql_store.extend("w", ids, lease=3600)
    assert sql_store.claim("x", n, lease=30) == []  # every lease pushed
    sql_store.release("w", ids, delay=0, error="e")
    assert all(r.last_error == "e" for r in sql_store.iter_rows())
    assert sql_store.bury(ids, status=500, code=None, message="m") == n
    assert sql_store.count("dead") == n
    assert sql_store.retry_dead() == n
    back = [r.id for r in sql_store.rows()]
    assert sql_store.complete(back) == n
    assert sql_store.count("pending") == 0


def test_a_chunk_is_one_statement(tmp_path: Path) -> None:
    with SqlOutboxStore(f"sqlite:///{tmp_path / 'o.db'}", create=True) as store:
        store.append([Event(name="bulk", customer_id=f"c-{i}") for i in range(2 * _CHUNK)])
        seen: list[str] = []
        sa.event.listen(
            store.engine, "before_cursor_execute", lambda *a: seen.append(a[2].split()[0])
        )
        assert store.complete([r.id for r in store.rows()]) == 2 * _CHUNK
        assert seen.count("DELETE") == 2


def test_bury_keeps_pending_id_order(sql_store: SqlOutboxStore) -> None:
    sql_store.append([_event(1), _event(2), _event(3)], now=NOW)
    ids = [r.id for r in sql_store.rows()]
    sql_store.bury(list(reversed(ids)), status=1, code=2, message="m")
    assert [d.name for d in sql_store.rows("dead")] == ["ordered-1", "ordered-2", "ordered-3"]


def test_iter_rows_reads_page_by_page(sql_store: SqlOutboxStore) -> None:
    sql_store.append(make_events(4))
    ids = [r.id for r in sql_store.rows()]
    rows = sql_store.iter_rows(page=2)
    assert next(rows).event().metadata["seq"] == 0
    sql_store.complete([ids[2]])  # on the next page: not read
    sql_store.append(make_events(1, start=4))  # beyond the first page: read
    assert [r.event().metadata["seq"] for r in rows] == [1, 3, 4]


# --- leases, readiness and stats ---------------------------------------------------------


def _count(engine: sa.Engine, query: sa.TextClause) -> int:
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def test_postgresql_bury_never_dead_letters_a_row_deleted_meanwhile(postgres_url: str) -> None:
    """Another relay completes the row while bury runs: no dead letter of a delivered event.

    The other transaction deletes the row and holds it; bury waits for it (polled in
    pg_stat_activity, not timed), then finds nothing to move.
    """
    fresh_tables(postgres_url)
    with SqlOutboxStore(postgres_url) as store:
        store.append(make_events(1))
        (row,) = store.rows()
        t = pending_table
        results: list[int] = []
        with store.engine.connect() as other:
            with other.begin():
                other.execute(t.delete().where(t.c.id == row.id))  # delivered elsewhere
                worker = threading.Thread(
                    target=lambda: results.append(
                        store.bury([row.id], status=1, code=1, message="m")
                    )
                )
                worker.start()
                waiting = sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                )
                deadline = time.monotonic() + 30
                while not _count(store.engine, waiting):  # a fresh snapshot each time
                    assert time.monotonic() < deadline, "bury never waited for the row"
                    time.sleep(0.01)
            worker.join(30)
        assert results == [0]
        assert store.count("dead") == 0
        assert store.count("pending") == 0


def test_postgresql_claim_skips_rows_locked_elsewhere(postgres_url: str) -> None:
    """SKIP LOCKED: a row locked by another transaction is passed over, not waited for."""
    fresh_tables(postgres_url)
    options = {"connect_args": {"options": "-c lock_timeout=5000"}}  # waiting fails the test
    with SqlOutboxStore(postgres_url, engine_options=options) as store:
        store.append(make_events(2))
        first, second = (r.id for r in store.rows())
        with store.engine.connect() as other, other.begin():
            t = pending_table
            other.execute(sa.select(t.c.id).where(t.c.id == first).with_for_update())
            assert [r.id for r in store.claim("w", 10, lease=30)] == [second]


def test_make_ready_takes_expired_leases_not_live_ones(sql_store: SqlOutboxStore) -> None:
    sql_store.append(make_events(3))
    now = time.time()
    (live,) = sql_store.claim("alive", 1, lease=3600, now=now)
    (free,) = sql_store.claim("w", 1, lease=30, now=now)
    sql_store.release("w", [free.id], delay=3600)
    (stale,) = sql_store.claim("gone", 1, lease=1, now=now - 100)  # lease long expired
    assert sql_store.make_ready() == 2  # the released row and the expired lease
    assert sql_store.get("pending", free.id).next_attempt_at == 0  # type: ignore[union-attr]
    assert sql_store.get("pending", live.id).claimed_by == "alive"  # type: ignore[union-attr]
    assert sql_store.get("pending", stale.id).claimed_by == "gone"  # type: ignore[union-attr]


def test_stats_counts_live_leases_and_bytes(sql_store: SqlOutboxStore) -> None:
    empty = sql_store.stats()
    assert (empty.pending, empty.claimed, empty.dead, empty.rows, empty.bytes) == (0, 0, 0, 0, 0)
    sql_store.append([_event(1), _event(2), _event(3), _event(4)], now=NOW)
    now = time.time()
    sql_store.claim("old", 1, lease=1, now=now - 100)
    sql_store.claim("live", 1, lease=3600, now=now)
    (dead,) = sql_store.claim("w", 1, lease=30, now=now)
    sql_store.bury([dead.id], status=1, code=1, message="m")
    stats = sql_store.stats()
    assert (stats.pending, stats.claimed, stats.dead, stats.rows) == (3, 1, 1, 4)
    assert stats.bytes == sum(r.size for r in sql_store.rows()) + dead.size
    assert stats.oldest_created_at == NOW - 99
    if sql_store.dialect == "sqlite":
        assert stats.file_bytes == 0
    else:
        assert stats.file_bytes > 0


def test_next_ready_in(sql_store: SqlOutboxStore) -> None:
    assert sql_store.next_ready_in() is None
    sql_store.append([_event(1)], now=NOW)
    assert sql_store.next_ready_in(now=0.5) == 0.0  # ready since 0: never negative
    (row,) = sql_store.claim("w", 1, lease=50, now=NOW)
    assert sql_store.next_ready_in(now=NOW + 20) == 30.0  # its lease ends first
    sql_store.release("w", [row.id], delay=0)
    ready = sql_store.get("pending", row.id).next_attempt_at  # type: ignore[union-attr]
    assert sql_store.next_ready_in(now=ready - 7) == pytest.approx(7.0)
    assert 0.0 <= sql_store.next_ready_in() <= 0.01  # type: ignore[operator]


# --- caps ---------------------------------------------------------------------------------


def _size(event: Event) -> int:
    return int(event_values(event, NOW)["size"])


def test_max_rows_counts_pending_and_dead(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'o.db'}"
    with SqlOutboxStore(url, create=True, max_rows=3) as store:
        assert store.room() == 3
        assert store.append([_event(1)]) == 1
        store.bury([store.rows()[0].id], status=1, code=1, message="m")
        assert store.room() == 2
        assert store.append([_event(i) for i in range(2, 6)]) == 2
        assert store.room() == 0
        assert store.append([_event(9)]) == 0
        assert store.count("pending") == 2


def test_max_bytes_is_exact(tmp_path: Path) -> None:
    size = _size(_event(1))
    url = f"sqlite:///{tmp_path / 'o.db'}"
    with SqlOutboxStore(url, create=True, max_bytes=3 * size) as store:
        assert store.room() == 3 * size // (ROW_OVERHEAD + 1)
        assert store.append([_event(1)]) == 1
        store.bury([store.rows()[0].id], status=1, code=1, message="m")  # dead bytes count
        assert store.append([_event(i) for i in range(2, 9)]) == 2  # exactly full
        assert store.room() == 0
        assert store.append([_event(3)]) == 0
    with SqlOutboxStore(url, max_bytes=4 * size - 1, max_rows=100) as store:
        assert store.room() == min(100 - 3, (size - 1) // (ROW_OVERHEAD + 1))
        assert store.append([_event(4)]) == 0  # one byte short
    with SqlOutboxStore(url, max_bytes=10**7) as store:
        assert store.room() == (10**7 - 3 * size) // (ROW_OVERHEAD + 1)


def test_without_caps(sql_store: SqlOutboxStore) -> None:
    assert sql_store.room() == 1 << 62
    assert sql_store.append([]) == 0
    assert sql_store.append([_event(i) for i in range(5)]) == 5


def test_caps_must_be_positive(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'o.db'}"
    for caps in ({"max_rows": 0}, {"max_bytes": 0}, {"max_rows": 1, "max_bytes": 0}):
        with pytest.raises(ConfigurationError, match=r"^max_rows and max_bytes must be positive$"):
            SqlOutboxStore(url, create=True, **caps)  # type: ignore[arg-type]
    with SqlOutboxStore(url, create=True, max_rows=1, max_bytes=1) as store:
        assert (store.max_rows, store.max_bytes) == (1, 1)
        assert store.room() == 0


# --- opening, closing, errors -------------------------------------------------------------


def test_missing_tables_are_named_and_not_created(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'o.db'}"
    with pytest.raises(ConfigurationError) as caught:
        SqlOutboxStore(url)
    assert str(caught.value) == (
        f"the outbox tables gbtrack_outbox, gbtrack_outbox_dead are missing in {url}: create "
        "them with `gbtrack outbox init --url URL`, or with the DDL in docs/scaling.md"
    )
    engine = sa.create_engine(url)
    try:
        assert sa.inspect(engine).get_table_names() == []
        pending_table.create(engine)
        with pytest.raises(ConfigurationError, match=r"tables gbtrack_outbox_dead are missing"):
            SqlOutboxStore(engine)
    finally:
        engine.dispose()


def test_bad_urls(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"^cannot use the outbox URL: "):
        SqlOutboxStore("nosuchdriver://x/y")
    missing = tmp_path / "no" / "such" / "dir.db"
    with pytest.raises(ConfigurationError, match=rf"^cannot open the outbox sqlite:///{missing}: "):
        SqlOutboxStore(f"sqlite:///{missing}")


def test_engine_options_dialect_and_pragmas(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'o.db'}"
    with SqlOutboxStore(url, create=True, engine_options={"pool_size": 3}) as store:
        assert store.engine.pool.size() == 3  # type: ignore[attr-defined]
        assert store.dialect == "sqlite"
        assert store.closed is False
        assert repr(store) == f"<SqlOutboxStore url={url!r}>"
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


def test_close_disposes_only_an_own_engine(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'o.db'}"
    store = SqlOutboxStore(url, create=True)
    pool = store.engine.pool
    store.close()
    assert store.closed
    assert store.engine.pool is not pool
    shared = sa.create_engine(url)
    try:
        pool = shared.pool
        with SqlOutboxStore(shared) as store:
            assert store.count() == 0
        assert store.closed
        assert shared.pool is pool
    finally:
        shared.dispose()


def test_after_fork_leaves_the_parents_connections_open(tmp_path: Path) -> None:
    with SqlOutboxStore(f"sqlite:///{tmp_path / 'o.db'}", create=True) as store:
        with store.engine.connect() as conn:
            raw = conn.connection.dbapi_connection
        pool = store.engine.pool
        store._after_fork()
        assert store.engine.pool is not pool
        assert raw is not None
        assert raw.execute("SELECT 1").fetchone() == (1,)  # not closed under the parent


def test_closed_store_refuses_reads_and_writes(sql_store: SqlOutboxStore) -> None:
    sql_store.close()
    with pytest.raises(ConfigurationError, match=r"^the outbox store is closed$"):
        sql_store.count()
    with pytest.raises(ConfigurationError, match=r"^the outbox store is closed$"):
        sql_store.append([_event(1)])


def test_database_errors_become_outbox_errors(sql_store: SqlOutboxStore) -> None:
    sql_store.append([_event(1)])
    (row,) = sql_store.rows()
    dead_table.drop(sql_store.engine)
    prefix = f"outbox {sql_store.location} failed: "
    with pytest.raises(OutboxError) as caught:
        sql_store.count("dead")  # a read
    assert str(caught.value).startswith(prefix)
    assert isinstance(caught.value.__cause__, SQLAlchemyError)
    kind = type(caught.value.__cause__).__name__
    assert str(caught.value).startswith(f"{prefix}{kind}: ")
    assert "gbtrack_outbox_dead" in str(caught.value)
    assert "\n" not in str(caught.value)  # the first line of the driver's message
    with pytest.raises(OutboxError, match=r"^outbox .* failed: "):
        sql_store.bury([row.id], status=1, code=1, message="m")  # a write: rolled back
    assert sql_store.rows() == [row]


def test_failure_without_a_message() -> None:
    assert str(_failure("db", SQLAlchemyError(""))) == "outbox db failed: SQLAlchemyError: "


def test_unknown_table_and_dialect(sql_store: SqlOutboxStore) -> None:
    with pytest.raises(ValueError, match=r"^unknown table 'archive'$"):
        sql_store.count("archive")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"^unknown SQL dialect 'nosuch'$"):
        ddl("nosuch")
    assert ddl(sqlite.dialect()) == ddl("sqlite")


# --- inserting in the caller's transaction ------------------------------------------------


def test_event_values() -> None:
    event = _event(1)
    values = event_values(event, 12.5)
    assert values == {
        "event_id": event.event_id,
        "name": "ordered-1",
        "customer_id": "c-1",
        "payload": values["payload"],
        "size": len(values["payload"].encode()) + ROW_OVERHEAD,
        "created_at": NOW - 99,
        "enqueued_at": 12.5,
        "attempts": 0,
        "next_attempt_at": 0.0,
        "kind": "event",
    }


@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_insert_events_inserts_each_one(tmp_path: Path, n: int) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    try:
        metadata.create_all(engine)
        with engine.begin() as conn:
            insert_events(conn, [_event(i) for i in range(n)])
        with engine.connect() as conn:
            names = conn.execute(sa.select(pending_table.c.name).order_by("id")).scalars()
            assert list(names) == [f"ordered-{i}" for i in range(n)]
    finally:
        engine.dispose()


@pytest.fixture
def app_engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    _sqlite_immediate(engine)
    metadata.create_all(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def _names(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(pending_table.c.name).order_by("id")).scalars())


def test_binding_counts_and_describes(app_engine: sa.Engine) -> None:
    tracker = Tracker(InMemorySender())
    with app_engine.begin() as conn, gbtrack.transaction(conn, savepoint=False) as binding:
        assert (binding.target, binding.savepoint, binding.tracker) == (conn, False, None)
        assert tracker.emit("a", customer_id="c-1")
        assert tracker.emit("b", customer_id="c-1", session_token="tok")
        assert tracker.emit("c", customer_id="c-1")
        assert binding.inserted == 3
        assert repr(binding) == "<TransactionBinding Connection inserted=3>"
    assert _names(app_engine) == ["a", "b", "c"]
    assert tracker.stats.sent == 3
    assert tracker._reporter.get("session_token_stripped") == 1


def test_binding_samples_and_runs_before_send(app_engine: sa.Engine) -> None:
    seen: list[str] = []

    def hook(event: Event) -> Event | None:
        seen.append(event.name)
        if event.name == "drop-me":
            return None
        return event.model_copy(update={"metadata": {"hooked": True}})

    tracker = Tracker(InMemorySender(), before_send=hook, sample={"never": 0.0, "always": 1.0})
    with app_engine.begin() as conn, gbtrack.transaction(conn) as binding:
        assert tracker.emit("never", customer_id="c-1") is None  # dropped: None
        assert tracker.emit("always", customer_id="c-1") is not None
        assert tracker.emit("drop-me", customer_id="c-1") is None
        assert binding.inserted == 1
    assert seen == ["always", "drop-me"]
    assert _names(app_engine) == ["always"]
    with app_engine.connect() as conn:
        (payload,) = conn.execute(sa.select(pending_table.c.payload)).scalars()
    assert '"hooked":true' in payload.replace(" ", "")


def test_binding_drops_say_where_and_why(app_engine: sa.Engine) -> None:
    errors: list[TrackingError] = []
    tracker = Tracker(InMemorySender(), on_error=errors.append)

    @tracker.track("checked_out", customer_id="user")
    def checkout(user: str) -> None:
        pass

    with app_engine.begin() as conn, gbtrack.transaction(conn):
        checkout("c" * 1000)  # converts, but is no valid Event
        assert tracker.emit("bad", customer_id="c-1", metadata={"x": object()}) is None
    assert _names(app_engine) == []
    first, second = errors
    assert first.reason == "invalid_event"
    assert first.function is not None
    assert str(first).startswith(f"event 'checked_out' from {first.function}: customer_id ")
    assert str(first).count("event 'checked_out'") == 1  # named once (issue 20)
    assert isinstance(first.__cause__, Exception)
    assert second.reason == "invalid_event"
    assert str(second).startswith("event 'bad': ")
    assert tracker.stats.dropped == {"invalid_event": 2}


def test_failed_insert_says_why(app_engine: sa.Engine) -> None:
    errors: list[TrackingError] = []
    tracker = Tracker(InMemorySender(), on_error=errors.append)

    @tracker.track("lost", customer_id="user")
    def checkout(user: str) -> None:
        pass

    pending_table.drop(app_engine)
    with app_engine.begin() as conn, gbtrack.transaction(conn, savepoint=False):
        assert tracker.emit("lost", customer_id="c-1") is None
        checkout("c-1")
    error, tracked = errors
    assert error.function is None
    assert tracked.function is not None
    assert str(tracked).startswith(f"event 'lost' in {tracked.function}: the INSERT")
    assert error.reason == "outbox_error"
    assert str(error).startswith(
        "event 'lost': the INSERT into the outbox table failed (OperationalError); "
        "the business transaction goes on without it"
    )
    assert isinstance(error.__cause__, sa.exc.OperationalError)


def test_binding_uses_the_trackers_limits_and_names_the_function(app_engine: sa.Engine) -> None:
    errors: list[TrackingError] = []

    def hook(event: Event) -> Event:
        raise RuntimeError("hook bug")

    tracker = Tracker(
        InMemorySender(), on_error=errors.append, limits=Limits(max_customer_id_length=3)
    )

    @tracker.track("checked_out", customer_id="user")
    def checkout(user: str) -> None:
        pass

    with app_engine.begin() as conn, gbtrack.transaction(conn):
        assert tracker.emit("long", customer_id="c-12") is None  # over this tracker's limit
        tracker.before_send = hook
        checkout("c-1")
    assert _names(app_engine) == []
    invalid, failed = errors
    assert invalid.reason == "invalid_event"
    assert failed.reason == "before_send_error"
    assert failed.function is not None
    assert failed.function.endswith("checkout")


def test_unknown_target_names_its_type() -> None:
    with (
        pytest.raises(ConfigurationError, match=r"or a Django connection, not int$"),
        gbtrack.transaction(42),
    ):
        pass
