"""``gbtrack.transaction(...)``: the event row commits or rolls back with the business data.

SQLAlchemy ``Connection`` and ``Session`` on SQLite and PostgreSQL, Django's
``transaction.atomic`` on its SQLite backend (in a subprocess: Django's settings are
per process), a failed INSERT that must not break the business transaction, and the
emulator counting what a drainer delivers from committed rows only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session
from tests.sql.conftest import app_engine, run_django

import gbtrack
from gbtrack import InMemorySender, Tracker, TrackingError
from gbtrack.emulator import GameballEmulator
from gbtrack.gameball import GameballClient
from gbtrack.outbox import OutboxDrainer
from gbtrack.outbox._sql import SqlOutboxStore, pending_table

orders = sa.Table(
    "orders",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("total", sa.Integer),
)


@pytest.fixture
def engine(sql_url: str) -> Iterator[sa.Engine]:
    """The application's engine, its ``orders`` table fresh."""
    with app_engine(sql_url, orders) as eng:
        yield eng


@pytest.fixture
def tracker() -> Tracker:
    return Tracker(InMemorySender())


def _outbox(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(pending_table.c.name).order_by("id")).scalars())


def _orders(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(orders)).scalar_one())


def test_connection_commit_keeps_the_event(engine: sa.Engine, tracker: Tracker) -> None:
    with engine.begin() as conn, gbtrack.transaction(conn) as bound:
        conn.execute(orders.insert().values(id=1, total=10))
        assert tracker.emit("order_placed", customer_id="c-1", metadata={"total": 10})
    assert bound.inserted == 1
    assert _outbox(engine) == ["order_placed"]
    assert _orders(engine) == 1
    assert tracker.sender.events == []  # went to the table, not to the sender
    assert tracker.stats.sent == 1  # accepted: a row in the transaction


def test_connection_rollback_leaves_no_event(engine: sa.Engine, tracker: Tracker) -> None:
    def place() -> None:
        with engine.begin() as conn, gbtrack.transaction(conn):
            conn.execute(orders.insert().values(id=1, total=10))
            tracker.emit("order_placed", customer_id="c-1")
            raise RuntimeError("payment refused")

    with pytest.raises(RuntimeError, match="refused"):
        place()
    assert _outbox(engine) == []
    assert _orders(engine) == 0


def test_session_commit_and_rollback(engine: sa.Engine, tracker: Tracker) -> None:
    @tracker.track("order_placed", customer_id="customer", metadata={"total": "total"})
    def place(session: Session, customer: str, total: int) -> int:
        session.execute(orders.insert().values(total=total))
        return total

    with Session(engine) as session, gbtrack.transaction(session):
        place(session, "c-1", 5)
        place(session, "c-2", 6)
        session.commit()
    with Session(engine) as session, gbtrack.transaction(session):
        place(session, "c-3", 7)
        session.rollback()
    assert _outbox(engine) == ["order_placed", "order_placed"]
    assert _orders(engine) == 2


def test_span_inside_a_binding(engine: sa.Engine, tracker: Tracker) -> None:
    with (
        engine.begin() as conn,
        gbtrack.transaction(conn),
        tracker.span("checkout", customer_id="c-9") as s,
    ):
        s.set("total", 3)
    assert _outbox(engine) == ["checkout"]


def test_outside_a_binding_nothing_changes(engine: sa.Engine, tracker: Tracker) -> None:
    with engine.begin() as conn:
        with gbtrack.transaction(conn):
            tracker.emit("inside", customer_id="c-1")
        tracker.emit("after", customer_id="c-1")  # the binding is closed
    tracker.emit("outside", customer_id="c-1")
    assert [e.name for e in tracker.sender.events] == ["after", "outside"]
    assert _outbox(engine) == ["inside"]


def test_binding_for_one_tracker_only(engine: sa.Engine, tracker: Tracker) -> None:
    other = Tracker(InMemorySender())
    with engine.begin() as conn, gbtrack.transaction(conn, tracker=tracker):
        tracker.emit("mine", customer_id="c-1")
        other.emit("theirs", customer_id="c-1")
    assert _outbox(engine) == ["mine"]
    assert [e.name for e in other.sender.events] == ["theirs"]


def test_invalid_event_is_dropped_not_inserted(engine: sa.Engine, tracker: Tracker) -> None:
    with engine.begin() as conn, gbtrack.transaction(conn):
        assert not tracker.emit("bad", customer_id="c-1", metadata={"x": object()})
        assert tracker.emit("good", customer_id="c-1")
    assert _outbox(engine) == ["good"]
    assert tracker.stats.dropped.get("invalid_event") == 1


def test_failed_insert_is_counted_and_the_business_commits(
    engine: sa.Engine, tracker: Tracker
) -> None:
    """The outbox table is gone: the INSERT fails inside its SAVEPOINT, the order commits."""
    pending_table.drop(engine)
    with engine.begin() as conn, gbtrack.transaction(conn):
        conn.execute(orders.insert().values(id=1, total=10))
        assert not tracker.emit("order_placed", customer_id="c-1")
        conn.execute(orders.insert().values(id=2, total=20))  # the transaction still works
    assert _orders(engine) == 2
    assert tracker.stats.dropped.get("outbox_error") == 1


def test_failed_insert_raises_under_strict(engine: sa.Engine) -> None:
    strict = Tracker(InMemorySender(), strict=True)
    pending_table.drop(engine)
    with engine.begin() as conn, gbtrack.transaction(conn):
        conn.execute(orders.insert().values(id=1, total=10))
        with pytest.raises(TrackingError) as caught:
            strict.emit("order_placed", customer_id="c-1")
        assert caught.value.reason == "outbox_error"
    assert _orders(engine) == 1


def test_bindings_are_per_task(engine: sa.Engine, tracker: Tracker) -> None:
    """An asyncio task bound to a transaction does not capture another task's events."""

    async def main() -> None:
        gate = asyncio.Event()

        async def bound() -> None:
            with engine.begin() as conn, gbtrack.transaction(conn):
                tracker.emit("bound", customer_id="c-1")
                gate.set()
                await asyncio.sleep(0.01)

        async def free() -> None:
            await gate.wait()
            tracker.emit("free", customer_id="c-2")

        await asyncio.gather(bound(), free())

    asyncio.run(main())
    assert _outbox(engine) == ["bound"]
    assert [e.name for e in tracker.sender.events] == ["free"]


def test_unknown_target_is_a_clear_error() -> None:
    binding = gbtrack.transaction(object())
    with pytest.raises(gbtrack.ConfigurationError, match="Session or Connection"):
        binding.__enter__()


def test_commit_delivers_exactly_one_rollback_none(
    engine: sa.Engine, tracker: Tracker, gameball_emulator: GameballEmulator
) -> None:
    """Counted at the emulator: only the committed transaction's event is delivered."""
    with engine.begin() as conn, gbtrack.transaction(conn):
        tracker.emit("committed", customer_id="c-1")

    def abort() -> None:
        with engine.begin() as conn, gbtrack.transaction(conn):
            tracker.emit("rolled_back", customer_id="c-2")
            raise RuntimeError("abort")

    with pytest.raises(RuntimeError, match="abort"):
        abort()
    emu = gameball_emulator
    with (
        SqlOutboxStore(engine) as store,
        GameballClient(emu.api_key, base_url=emu.url) as client,
    ):
        drainer = OutboxDrainer(store, client)
        try:
            while drainer.run_once().claimed:
                pass
        finally:
            drainer.close()
        assert store.count("pending") == 0
    assert [(e.name, e.customer_id) for e in emu.events] == [("committed", "c-1")]


DJANGO_SCRIPT = """
with connection.cursor() as cursor:
    cursor.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER)")

tracker = Tracker(InMemorySender())
with transaction.atomic(), gbtrack.transaction(connection):
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO orders (total) VALUES (10)")
    tracker.emit("committed", customer_id="c-1")
try:
    with transaction.atomic(), gbtrack.transaction(connection):
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO orders (total) VALUES (20)")
        tracker.emit("rolled_back", customer_id="c-2")
        raise RuntimeError("abort")
except RuntimeError:
    pass
# The helper: atomic() and the binding in one.
from gbtrack.integrations.django import atomic
with atomic():
    tracker.emit("helper", customer_id="c-3")
# A broken table: the event is dropped, the order commits.
with connection.cursor() as cursor:
    cursor.execute("ALTER TABLE gbtrack_outbox RENAME TO gone")
with transaction.atomic(), gbtrack.transaction(connection):
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO orders (total) VALUES (30)")
    assert not tracker.emit("lost", customer_id="c-4")
with connection.cursor() as cursor:
    cursor.execute("SELECT name FROM gone ORDER BY id")
    print([r[0] for r in cursor.fetchall()])
    cursor.execute("SELECT total FROM orders ORDER BY id")
    print([r[0] for r in cursor.fetchall()])
print(tracker.stats.dropped.get("outbox_error"), tracker.sender.events)
"""


def test_django_atomic(tmp_path: Path) -> None:
    assert run_django(tmp_path, DJANGO_SCRIPT) == [
        "['committed', 'helper']",
        "[10, 30]",
        "1 []",
    ]


def test_debug_logs_the_bound_event(engine: sa.Engine, caplog: pytest.LogCaptureFixture) -> None:
    tracker = Tracker(InMemorySender(), debug=True)
    try:
        with (
            caplog.at_level("INFO", logger="gbtrack"),
            engine.begin() as conn,
            gbtrack.transaction(conn),
        ):
            tracker.emit("order_placed", customer_id="c-1", metadata={"total": 1})
        assert any(
            "order_placed" in r.getMessage() and "TransactionBinding" in r.getMessage()
            for r in caplog.records
        )
    finally:
        tracker.debug = False


def test_no_binding_open_costs_no_contextvar_lookup(
    monkeypatch: pytest.MonkeyPatch, tracker: Tracker
) -> None:
    """While no binding is open anywhere, submit() never reads the ContextVar."""
    from gbtrack import _pipeline, _state

    class Exploding:
        def get(self) -> None:
            raise AssertionError("ContextVar read on the hot path")

    assert _state.bindings_open() == 0
    monkeypatch.setattr(_pipeline, "_bound_transaction", Exploding())
    assert tracker.emit("free", customer_id="c-1")
    assert [e.name for e in tracker.sender.events] == ["free"]


def test_bindings_nest_and_always_close(engine: sa.Engine, tracker: Tracker) -> None:
    from gbtrack import _state

    def fail_inside() -> None:
        with engine.begin() as conn, gbtrack.transaction(conn):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_inside()
    assert _state.bindings_open() == 0
    with engine.begin() as conn, gbtrack.transaction(conn) as first:
        with gbtrack.transaction(conn) as second:  # the inner binding wins, then unwinds
            tracker.emit("inner", customer_id="c-1")
        tracker.emit("outer", customer_id="c-1")
        assert (first.inserted, second.inserted) == (1, 1)
    assert _state.bindings_open() == 0
    assert sorted(_outbox(engine)) == ["inner", "outer"]
