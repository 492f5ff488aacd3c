"""``with gbtrack.transaction(session):``: events and orders commit or roll back with the data.

Inside the block, every event a tracker submits (``@track``, ``span()``,
``Tracker.emit()``) and every order (``@track_order``, ``Tracker.order()``,
``gbtrack.send_order()``) is checked at once and INSERTed into the SQL outbox table
(:mod:`gbtrack.outbox._sql`) *on the caller's own connection, in the caller's own
transaction*. A relay (``gbtrack relay``) delivers the rows once they are committed; a
rollback takes them away with the rest: an order exists in Gameball if and only if the
business transaction committed. Outside a bound block nothing changes.

The binding lives in a :class:`contextvars.ContextVar` (per thread and per asyncio
task). The tracker's hot path pays one global integer test while no binding is open
anywhere in the process (:func:`gbtrack._state.bind_transaction` counts them), and one
``ContextVar.get()`` while some is.

Each INSERT runs inside a SAVEPOINT by default: on PostgreSQL a failed statement
aborts the whole transaction, so without one a broken outbox table would fail the
business transaction at its commit. With the savepoint, a failed INSERT is rolled back
alone, the event (or order) is dropped and counted as ``outbox_error`` (raised under
``strict``), and the business transaction goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from gbtrack._errors import ConfigurationError
from gbtrack._event import Event
from gbtrack._state import bind_transaction, unbind_transaction

if TYPE_CHECKING:
    from gbtrack._order import StoredOrder
    from gbtrack._state import CallSink as Tracker

_Rows = Callable[[list["Event | StoredOrder"]], None]

__all__ = ["TransactionBinding", "insert_failed", "transaction"]


def insert_failed(exc: BaseException) -> str:
    """What a drop says when the outbox INSERT failed in the caller's transaction."""
    return (
        f"the INSERT into the outbox table failed ({type(exc).__name__}); "
        "the business transaction goes on without it"
    )


class TransactionBinding:
    """The open binding of :func:`transaction`: where its items go, and how many went.

    Attributes:
        target: The bound Session, Connection or Django connection.
        savepoint: Whether each INSERT runs inside a SAVEPOINT.
        tracker: The only tracker bound, or ``None`` for every tracker.
        inserted: Events and orders inserted into the outbox table in this block.
        orders: How many of them were orders.
    """

    def __init__(
        self,
        target: Any,
        insert: _Rows,
        *,
        savepoint: bool,
        tracker: Tracker | None,
    ) -> None:
        self.target = target
        self.savepoint = savepoint
        self.tracker = tracker
        self.inserted = 0
        self.orders = 0
        self._insert = insert

    def __repr__(self) -> str:
        return f"<TransactionBinding {type(self.target).__name__} inserted={self.inserted}>"

    def binds(self, tracker: Tracker) -> bool:
        """Whether ``tracker``'s events go into this transaction."""
        return self.tracker is None or tracker is self.tracker

    def insert(self, event: Event) -> None:
        """INSERT ``event`` into the outbox table in the bound transaction.

        The tracker validates the event and counts a failure (``outbox_error``).

        Raises:
            Exception: Whatever the database raised (after the SAVEPOINT rolled back).
        """
        self._insert([event])
        self.inserted += 1

    def insert_order(self, order: StoredOrder) -> None:
        """INSERT ``order`` (checked) into the outbox table in the bound transaction.

        The tracker checks the order and counts a failure (``outbox_error``).

        Raises:
            Exception: Whatever the database raised (after the SAVEPOINT rolled back).
        """
        self._insert([order])
        self.inserted += 1
        self.orders += 1


@contextmanager
def transaction(
    target: Any, *, savepoint: bool = True, tracker: Tracker | None = None
) -> Iterator[TransactionBinding]:
    """Bind the caller's open transaction: what is tracked inside goes into its outbox table.

    Inside the block, events of ``@track``, ``span()`` and ``Tracker.emit()``, and orders
    of ``@track_order``, ``Tracker.order()`` and ``gbtrack.send_order()``, are checked at
    once and INSERTed into ``gbtrack_outbox`` on ``target``'s connection, in its current
    transaction: they are committed with the business data or rolled back with it.
    ``gbtrack relay --url ...`` delivers committed rows (orders in the orders bucket).
    The block does not begin or commit anything itself; the application does, as before.
    Orders need no secret key in this process: the relay sends them.

    Args:
        target: A SQLAlchemy ``Session`` (rows go through ``session.connection()``), a
            SQLAlchemy ``Connection``, or a Django connection
            (``django.db.connection`` or ``connections[alias]``, for
            ``transaction.atomic``).
        savepoint: Run each INSERT in a SAVEPOINT (default), so that a failed INSERT
            drops the item (``outbox_error``) instead of aborting the transaction.
            SQLite through pysqlite needs SQLAlchemy's SAVEPOINT recipe for this
            (see docs/scaling.md); pass ``False`` to skip it.
        tracker: Bind only this tracker's events and orders; ``None`` (default): every
            tracker.

    Yields:
        The :class:`TransactionBinding` (``inserted`` counts the rows written).

    Raises:
        ConfigurationError: For a target that is none of the above.

    Example:
        >>> import gbtrack
        >>> callable(gbtrack.transaction)
        True
    """
    binding = TransactionBinding(
        target, _inserter(target, savepoint), savepoint=savepoint, tracker=tracker
    )
    token = bind_transaction(binding)
    try:
        yield binding
    finally:
        unbind_transaction(token)


def _inserter(target: Any, savepoint: bool) -> _Rows:
    module = type(target).__module__
    if module.startswith("django."):
        return _django_inserter(target, savepoint)
    try:
        from sqlalchemy.engine import Connection
        from sqlalchemy.orm import Session
    except ImportError as exc:  # pragma: no cover - only without the sql extra
        raise ConfigurationError(
            "gbtrack.transaction() needs SQLAlchemy: pip install 'gbtrack[sql]'"
        ) from exc
    from gbtrack.outbox._sql import insert_items

    if isinstance(target, Session):
        session = target

        def connection() -> Connection:
            return session.connection()  # the session's transaction (begun if need be)

    elif isinstance(target, Connection):
        conn = target

        def connection() -> Connection:
            return conn

    else:
        raise ConfigurationError(
            "gbtrack.transaction() takes a SQLAlchemy Session or Connection, or a Django "
            f"connection, not {type(target).__name__}"
        )

    def insert(items: list[Event | StoredOrder]) -> None:
        conn = connection()
        if savepoint:
            with conn.begin_nested():
                insert_items(conn, items)
        else:
            insert_items(conn, items)

    return insert


def _django_inserter(connection: Any, savepoint: bool) -> _Rows:
    import operator
    import time

    from django.db import transaction as dj_transaction

    from gbtrack.outbox._sql import PENDING_TABLE, event_values

    columns = ("event_id", "name", "customer_id", "payload", "size", "created_at",
               "enqueued_at", "attempts", "next_attempt_at", "kind")  # fmt: skip
    pick = operator.itemgetter(*columns)  # one row's values, in the columns' order
    quote = connection.ops.quote_name
    names = ", ".join(quote(c) for c in columns)
    marks = ", ".join(["%s"] * len(columns))
    # Constant names, quoted by Django; the values are parameters.
    sql = f"INSERT INTO {quote(PENDING_TABLE)} ({names}) VALUES ({marks})"  # noqa: S608

    def write(items: list[Event | StoredOrder]) -> None:
        stamp = time.time()
        rows = [pick(event_values(item, stamp)) for item in items]
        with connection.cursor() as cursor:
            cursor.executemany(sql, rows)

    def insert(items: list[Event | StoredOrder]) -> None:
        if savepoint:
            # Inside atomic(): a savepoint; a failure rolls back to it and re-raises.
            with dj_transaction.atomic(using=connection.alias, savepoint=True):
                write(items)
        else:
            write(items)

    return insert
