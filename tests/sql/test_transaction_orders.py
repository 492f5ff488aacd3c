"""``gbtrack.transaction(...)`` carries orders: the order row commits or rolls back with the data.

SQLAlchemy ``Connection`` and ``Session`` on SQLite and PostgreSQL, Django's
``transaction.atomic`` (in a subprocess: Django's settings are per process), and one
end-to-end run: a checkout in a transaction, then ``gbtrack relay`` (a real process)
delivering the committed order to the emulator, which awards its points.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session
from tests.sql._relays import RelayProcess, wait_until
from tests.sql.conftest import app_engine, run_django

import gbtrack
from gbtrack import InMemorySender, Tracker, track_order
from gbtrack.emulator import GameballEmulator
from gbtrack.outbox._sql import SqlOutboxStore

API_KEY = "gb-api-KEY-4242-abcdef"
SECRET_KEY = "gb-secret-KEY-4242-ghijkl"

purchases = sa.Table(
    "purchases",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("customer", sa.String(64)),
    sa.Column("total", sa.Integer),
)


@pytest.fixture
def engine(sql_url: str) -> Iterator[sa.Engine]:
    """The application's engine, its ``purchases`` table fresh."""
    with app_engine(sql_url, purchases) as eng:
        yield eng


@pytest.fixture
def tracker() -> Tracker:
    return Tracker(InMemorySender())


def _rows(engine: sa.Engine) -> list[tuple[str, str]]:
    with SqlOutboxStore(engine) as store:
        return [(r.kind, r.name) for r in store.rows()]


def _aborted(engine: sa.Engine, work: Callable[[Session], object]) -> None:
    """Run ``work`` in a bound Session transaction that then fails (rolled back)."""
    with Session(engine) as session, session.begin(), gbtrack.transaction(session):
        work(session)
        raise RuntimeError("abort")


def _purchases(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(purchases)).scalar_one())


def test_connection_commit_keeps_the_order_rollback_removes_it(
    engine: sa.Engine, tracker: Tracker
) -> None:
    with engine.begin() as conn, gbtrack.transaction(conn) as bound:
        conn.execute(purchases.insert().values(id=1, customer="c-1", total=10))
        assert tracker.order(customer_id="c-1", order_id="T-1", total_paid=10) is not None
    assert (bound.inserted, bound.orders) == (1, 1)

    def abort() -> None:
        with engine.begin() as conn, gbtrack.transaction(conn):
            conn.execute(purchases.insert().values(id=2, customer="c-2", total=20))
            tracker.order(customer_id="c-2", order_id="T-2", total_paid=20)
            raise RuntimeError("abort")

    with pytest.raises(RuntimeError, match="abort"):
        abort()
    assert _rows(engine) == [("order", "T-1")]
    assert _purchases(engine) == 1
    assert tracker.sender.orders == []  # went to the table, not to the sender
    assert tracker.stats.sent == 2  # both were rows in their transaction; one rolled back


def test_session_and_send_order_and_the_decorator(engine: sa.Engine, tracker: Tracker) -> None:
    @track_order(customer_id="customer", order_id="result", total_paid="total", tracker=tracker)
    def checkout(session: Session, customer: str, total: int) -> str:
        session.execute(purchases.insert().values(customer=customer, total=total))
        return f"S-{total}"

    previous = gbtrack.set_tracker(tracker)
    try:
        with Session(engine) as session, session.begin(), gbtrack.transaction(session):
            checkout(session, "c-1", 15)
            gbtrack.send_order(customer_id="c-1", order_id="S-manual", total_paid=1)
            tracker.emit("checked_out", customer_id="c-1")
        with pytest.raises(RuntimeError, match="abort"):
            _aborted(engine, lambda session: checkout(session, "c-2", 99))
    finally:
        gbtrack.set_tracker(previous)
    assert _rows(engine) == [("order", "S-15"), ("order", "S-manual"), ("event", "checked_out")]
    assert _purchases(engine) == 1


def test_an_invalid_order_is_dropped_not_inserted(engine: sa.Engine, tracker: Tracker) -> None:
    tracker.limits = gbtrack.Limits(max_string_length=3)
    with engine.begin() as conn, gbtrack.transaction(conn):
        assert tracker.order(customer_id="c", order_id="too-long", total_paid=1) is None
    assert _rows(engine) == []
    assert tracker.stats.dropped == {"invalid_event": 1}


def test_a_failed_insert_drops_the_order_and_the_business_commits(
    engine: sa.Engine, tracker: Tracker
) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE gbtrack_outbox RENAME TO gbtrack_outbox_gone"))
    try:
        with engine.begin() as conn, gbtrack.transaction(conn):
            conn.execute(purchases.insert().values(id=1, customer="c-1", total=10))
            assert tracker.order(customer_id="c-1", order_id="F-1", total_paid=10) is None
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE gbtrack_outbox_gone RENAME TO gbtrack_outbox"))
    assert _purchases(engine) == 1
    assert tracker.stats.dropped == {"outbox_error": 1}


DJANGO_SCRIPT = """
tracker = Tracker(InMemorySender())
with transaction.atomic(), gbtrack.transaction(connection):
    tracker.order(customer_id="c-1", order_id="DJ-1", total_paid=10)
try:
    with transaction.atomic(), gbtrack.transaction(connection):
        tracker.order(customer_id="c-2", order_id="DJ-2", total_paid=20)
        raise RuntimeError("abort")
except RuntimeError:
    pass
with connection.cursor() as cursor:
    cursor.execute("SELECT kind, name, payload FROM gbtrack_outbox ORDER BY id")
    for kind, name, payload in cursor.fetchall():
        print(kind, name, '"totalPaid":10' in payload)
print(tracker.sender.orders)
"""


def test_django_atomic_carries_orders(tmp_path: Path) -> None:
    assert run_django(tmp_path, DJANGO_SCRIPT) == ["order DJ-1 True", "[]"]


# --- end to end: a checkout, committed or not, then the relay -----------------------------------
@dataclass
class Cart:
    customer_id: str
    total: int


def test_a_committed_checkout_earns_points_through_the_relay_a_rolled_back_one_nothing(
    engine: sa.Engine, sql_url: str, tracker: Tracker, tmp_path: Path
) -> None:
    @track_order(
        customer_id="cart.customer_id",
        order_id="result",
        total_paid="cart.total",
        tracker=tracker,
    )
    def checkout(session: Session, cart: Cart, number: int) -> str:
        session.execute(purchases.insert().values(customer=cart.customer_id, total=cart.total))
        return f"E2E-{number}"

    with Session(engine) as session, session.begin(), gbtrack.transaction(session):
        checkout(session, Cart("c-paid", 250), 1)
    with pytest.raises(RuntimeError, match="abort"):
        # The order row is inserted, then rolled back with the rest.
        _aborted(engine, lambda session: checkout(session, Cart("c-aborted", 80), 2))
    assert _rows(engine) == [("order", "E2E-1")]
    emulator = GameballEmulator(api_key=API_KEY, secret_key=SECRET_KEY).start()
    try:
        relay = RelayProcess(sql_url, emulator, tmp_path / "r.log", "--election", "none")
        try:
            wait_until(lambda: emulator.order_count == 1, 30, "the relay to deliver")
        finally:
            code, out = relay.terminate()
        assert code == 0, relay.stderr()
        assert "delivered 1," in out
        assert [o.order_id for o in emulator.orders] == ["E2E-1"]
        assert emulator.points == {"c-paid": 250}
    finally:
        emulator.stop()
    assert _rows(engine) == []
