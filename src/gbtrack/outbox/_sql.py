"""The SQL outbox: the same pending rows, leases and dead letters, in your own database.

Two tables in one :class:`sqlalchemy.MetaData` (:data:`metadata`)::

    gbtrack_outbox(id, event_id, name, customer_id, payload, size, created_at,
                   enqueued_at, attempts, next_attempt_at, claimed_by, lease_until,
                   last_error, claim_token, kind, ambiguous)
    gbtrack_outbox_dead(id, event_id, name, customer_id, payload, size, created_at,
                        enqueued_at, attempts, status, code, message, failed_at,
                        kind, ambiguous)

Columns and meanings are the SQLite outbox's (times are epoch seconds; ``kind`` is
``'event'`` or ``'order'``; ``payload`` the stored body of
:func:`~gbtrack.outbox._store.encode_event` or
:func:`~gbtrack.outbox._store.encode_order`), so rows read the same through
:class:`~gbtrack.outbox.OutboxRow`. Because the table lives in the application's
database, an event or an order can be inserted *in the business transaction*
(:func:`insert_items`, used by :func:`gbtrack.transaction`): it commits or rolls back
with the business data.

Claims run ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL and MySQL 8, so several
relays on several machines take disjoint rows without waiting for each other; on
SQLite (one writer at a time) the store's own engine begins every transaction with
``BEGIN IMMEDIATE``.

Every claim writes a fresh ``claim_token`` on its rows: renewing a lease
(:meth:`SqlOutboxStore.extend`), deleting a delivered row, putting it back or burying it
can be fenced by that token, so a relay whose lease ran out (a pause, a freeze) can
neither renew nor settle rows another relay has claimed since. Lease and retry times
come from the database's clock (``clock_timestamp()`` on PostgreSQL, ``NOW(6)`` on
MySQL), so relays on machines whose clocks disagree still agree on when a lease ends;
SQLite has no server: its clock is the one machine's clock. Tables made by gbtrack
0.1.0 (without ``claim_token``, ``kind``, ``ambiguous``) get the columns when a store
opens them (:meth:`SqlOutboxStore.upgrade`), each nullable or with a constant default:
a change of the catalogue only on PostgreSQL 11+ and MySQL 8, whatever the table's size.
"""

# SQL below is built by SQLAlchemy Core from constant tables, never from input.

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from gbtrack._errors import ConfigurationError, OutboxError
from gbtrack._event import Event
from gbtrack._fork import reset_after_fork
from gbtrack.outbox._store import (
    ROW_OVERHEAD,
    Kind,
    OutboxBacklog,
    OutboxRow,
    OutboxStats,
    StoredOrder,
    Table,
    kind_of,
    row_values,
)

__all__ = [
    "DEAD_TABLE",
    "GAUGE_CAP",
    "PENDING_TABLE",
    "SqlOutboxStore",
    "dead_table",
    "ddl",
    "event_values",
    "insert_events",
    "insert_items",
    "metadata",
    "pending_table",
]

PENDING_TABLE = "gbtrack_outbox"
"""The pending table's name."""
DEAD_TABLE = "gbtrack_outbox_dead"
"""The dead-letter table's name."""

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite: INTEGER PRIMARY KEY
_PAYLOAD = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql")  # TEXT is 64 KB
_TIME: sa.Double[float] = sa.Double()

metadata = sa.MetaData()
"""The SQL outbox's tables, for ``create_all``, Alembic's autogenerate, or the DDL."""


def _common(table: str) -> list[sa.Column[Any]]:
    return [
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("customer_id", sa.String(255), nullable=False),
        sa.Column("payload", _PAYLOAD, nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("enqueued_at", _TIME, nullable=False),
    ]


def _kind_columns() -> list[sa.Column[Any]]:
    # Added after gbtrack 0.1.0: NOT NULL with constant defaults, so adding them to an
    # existing table rewrites nothing (see SqlOutboxStore.upgrade).
    return [
        sa.Column("kind", sa.String(16), nullable=False, server_default="event"),
        sa.Column("ambiguous", sa.Integer(), nullable=False, server_default="0"),
    ]


pending_table = sa.Table(
    PENDING_TABLE,
    metadata,
    *_common(PENDING_TABLE),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("next_attempt_at", _TIME, nullable=False, server_default="0"),
    sa.Column("claimed_by", sa.String(255)),
    sa.Column("lease_until", _TIME),
    sa.Column("last_error", sa.Text()),
    sa.Column("claim_token", sa.String(64)),
    *_kind_columns(),
    sa.Index(f"ix_{PENDING_TABLE}_ready", "next_attempt_at"),
    sa.Index(f"ix_{PENDING_TABLE}_claimed_by", "claimed_by"),
)
"""Events and orders waiting for delivery."""

dead_table = sa.Table(
    DEAD_TABLE,
    metadata,
    *_common(DEAD_TABLE),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("status", sa.Integer()),
    sa.Column("code", sa.Integer()),
    sa.Column("message", sa.Text()),
    sa.Column("failed_at", _TIME, nullable=False),
    *_kind_columns(),
)
"""Dead letters: items Gameball refused for good, or whose retries ran out."""

_COMMON = ("id", "event_id", "name", "customer_id", "payload", "size", "created_at",
           "enqueued_at", "attempts")  # fmt: skip
_PENDING_COLS = [pending_table.c[n] for n in _COMMON] + [
    pending_table.c.next_attempt_at,
    pending_table.c.claimed_by,
    pending_table.c.lease_until,
    pending_table.c.last_error,
    pending_table.c.claim_token,
    pending_table.c.kind,
    pending_table.c.ambiguous,
]
_DEAD_COLS = [dead_table.c[n] for n in _COMMON] + [
    dead_table.c.status,
    dead_table.c.code,
    dead_table.c.message,
    dead_table.c.failed_at,
    dead_table.c.kind,
    dead_table.c.ambiguous,
]
# Columns added since gbtrack 0.1.0 (table, column), added by SqlOutboxStore.upgrade().
_ADDED = (
    (pending_table, "claim_token"),
    (pending_table, "kind"),
    (pending_table, "ambiguous"),
    (dead_table, "kind"),
    (dead_table, "ambiguous"),
)
_CHUNK = 500  # ids per IN (...) clause: well under every driver's parameter limit
GAUGE_CAP = 10_000
"""Pending rows counted exactly by :meth:`SqlOutboxStore.backlog`; above, an estimate."""


def ddl(dialect: str | sa.engine.Dialect) -> str:
    """The ``CREATE TABLE`` and ``CREATE INDEX`` statements for ``dialect``.

    Args:
        dialect: ``"postgresql"``, ``"mysql"``, ``"sqlite"`` (any SQLAlchemy dialect
            name), or a dialect object.

    Returns:
        The statements, each ending with ``;``, separated by blank lines: what
        ``gbtrack outbox init`` creates, for Alembic or Django migrations.
    """
    target: sa.engine.Dialect
    if isinstance(dialect, str):
        try:
            target = sa.dialects.registry.load(dialect)()
        except Exception as exc:  # NoSuchModuleError and friends
            raise ConfigurationError(f"unknown SQL dialect {dialect!r}") from exc
    else:
        target = dialect

    def text(element: sa.schema.ExecutableDDLElement) -> str:
        # SQLAlchemy indents with tabs and leaves trailing spaces: tidy for docs and diffs.
        lines = str(element.compile(dialect=target)).strip().splitlines()
        return "\n".join(line.rstrip().replace("\t", "    ") for line in lines) + ";"

    parts: list[str] = []
    for table in metadata.sorted_tables:
        parts.append(text(sa.schema.CreateTable(table)))
        parts.extend(
            text(sa.schema.CreateIndex(i)) for i in sorted(table.indexes, key=lambda i: str(i.name))
        )
    return "\n\n".join(parts) + "\n"


def event_values(item: Event | StoredOrder, stamp: float) -> dict[str, Any]:
    """The pending row for an event or an order (without id), enqueued at ``stamp``."""
    return row_values(item, stamp)


def insert_items(connection: Connection, items: Sequence[Event | StoredOrder]) -> None:
    """INSERT events and orders as pending rows on ``connection``, in its transaction.

    The caller owns the transaction: the rows commit or roll back with it. No cap is
    applied (the rows are the caller's data).
    """
    if items:
        stamp = time.time()
        rows = [row_values(item, stamp) for item in items]
        # One row: a plain INSERT (a list would take the executemany path).
        connection.execute(pending_table.insert(), rows[0] if len(rows) == 1 else rows)


insert_events = insert_items
"""INSERT events as pending rows in the caller's transaction (:func:`insert_items`)."""


def _failure(location: str, exc: SQLAlchemyError) -> OutboxError:
    first = str(exc).splitlines()[0] if str(exc) else ""
    return OutboxError(f"outbox {location} failed: {type(exc).__name__}: {first}")


@contextlib.contextmanager
def _translating(store: SqlOutboxStore, opened: Callable[[], Any]) -> Iterator[Connection]:
    """``with`` ``opened()``: raise :class:`OutboxError` (chained) for SQLAlchemy's errors.

    Every statement of :class:`SqlOutboxStore` runs inside one of these (its ``_begin``
    and ``_connect``), so none of SQLAlchemy's exceptions leave the store.
    """
    try:
        with opened() as conn:
            yield conn
    except SQLAlchemyError as exc:
        raise _failure(store.location, exc) from exc


def _chunks(ids: Sequence[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield list(ids[start : start + _CHUNK])


def _carried(source: sa.Table) -> dict[str, Any]:
    """The columns a row keeps when it moves between the pending and dead tables."""
    names = ("event_id", "name", "customer_id", "payload", "size", "created_at", "enqueued_at",
             "kind", "ambiguous")  # fmt: skip
    return {name: source.c[name] for name in names}


def _move(
    conn: Connection,
    source: sa.Table,
    target: sa.Table,
    ids: Sequence[int],
    columns: dict[str, Any],
    *fence: Any,
) -> int:
    """Move rows ``ids`` of ``source`` into ``target``, in id order; return how many.

    ``columns`` maps each ``target`` column to what it takes: a ``source`` column or
    an expression (a literal, ``attempts + 1``); ``fence``: further conditions a row
    must meet to move (its claim token).
    """
    moved = 0
    for chunk in _chunks(ids):
        # Lock the rows first (PostgreSQL, MySQL): a row another transaction deletes
        # meanwhile is neither copied nor deleted; what is inserted is what is deleted.
        part = list(
            conn.execute(
                sa.select(source.c.id)
                .where(source.c.id.in_(chunk), *fence)
                .order_by(source.c.id)
                .with_for_update()
            ).scalars()
        )
        rows = sa.select(*columns.values()).where(source.c.id.in_(part)).order_by(source.c.id)
        conn.execute(target.insert().from_select(list(columns), rows))
        # INSERT ... SELECT's rowcount is -1 on some drivers: count the delete.
        moved += int(conn.execute(source.delete().where(source.c.id.in_(part))).rowcount)
    return moved


def _sqlite_immediate(engine: Engine) -> None:
    """SQLite: WAL, a busy timeout, and ``BEGIN IMMEDIATE`` for every transaction.

    pysqlite begins transactions lazily and as DEFERRED: two workers reading then
    writing would deadlock on the upgrade. IMMEDIATE takes the write lock at BEGIN,
    which makes SQLite's claims exclusive (it has one writer anyway).
    """

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we send BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _postgres_idle_timeout(engine: Engine, seconds: float) -> None:
    """End this engine's sessions that stay idle inside a transaction for ``seconds``."""
    milliseconds = max(1, round(seconds * 1000))

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"SET idle_in_transaction_session_timeout = {milliseconds}")
        cursor.close()
        dbapi_connection.commit()  # the driver opened a transaction for the SET


class SqlOutboxStore:
    """An outbox in a SQL database (PostgreSQL, MySQL 8, SQLite) through SQLAlchemy Core.

    The same interface and row semantics as :class:`~gbtrack.outbox.OutboxStore`
    (:class:`~gbtrack.outbox.OutboxStoreProtocol`): :class:`~gbtrack.outbox.OutboxDrainer`,
    ``gbtrack outbox --url ...`` and ``gbtrack relay`` use either.

    Args:
        url: A SQLAlchemy URL (``postgresql+psycopg://user@host/db``,
            ``sqlite:///path``) or an :class:`~sqlalchemy.engine.Engine` to share.
        create: Create the tables if missing (``gbtrack outbox init`` does the same);
            otherwise missing tables raise :class:`~gbtrack.ConfigurationError`.
        max_rows: Cap for :meth:`append` (pending and dead together); ``None`` (the
            default): no cap. Rows inserted in a business transaction are never capped.
        max_bytes: Cap on stored bytes for :meth:`append`; ``None``: no cap.
        engine_options: Passed to :func:`sqlalchemy.create_engine` with a URL.
        idle_transaction_timeout: PostgreSQL only, for an engine this store creates:
            seconds after which the server ends a session left idle inside a
            transaction (``idle_in_transaction_session_timeout``). A relay frozen
            (SIGSTOP, a paused VM) between two statements of a claim or a lease renewal
            would otherwise keep its rows locked, and ``SKIP LOCKED`` claimers would pass
            them over for as long as it stays frozen. ``None`` leaves the server's
            setting.

    Raises:
        ConfigurationError: For a bad URL, a missing driver, an unreachable database
            or missing tables.
    """

    def __init__(
        self,
        url: str | sa.URL | Engine,
        *,
        create: bool = False,
        max_rows: int | None = None,
        max_bytes: int | None = None,
        engine_options: dict[str, Any] | None = None,
        idle_transaction_timeout: float | None = 10.0,
    ) -> None:
        if idle_transaction_timeout is not None and not idle_transaction_timeout > 0:
            raise ConfigurationError("idle_transaction_timeout must be positive seconds or None")
        if (max_rows is not None and max_rows < 1) or (max_bytes is not None and max_bytes < 1):
            raise ConfigurationError("max_rows and max_bytes must be positive")
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self._owns_engine = not isinstance(url, Engine)
        if isinstance(url, Engine):
            self.engine = url
        else:
            try:
                self.engine = sa.create_engine(url, **(engine_options or {}))
            except (SQLAlchemyError, ImportError, ValueError) as exc:
                raise ConfigurationError(f"cannot use the outbox URL: {exc}") from exc
            if self.engine.dialect.name == "sqlite":
                _sqlite_immediate(self.engine)
            elif self.engine.dialect.name == "postgresql" and idle_transaction_timeout:
                _postgres_idle_timeout(self.engine, idle_transaction_timeout)
        self.dialect: str = self.engine.dialect.name
        self._closed = False
        try:
            if create:
                metadata.create_all(self.engine)
            else:
                present = sa.inspect(self.engine).get_table_names()
                missing = [t for t in (PENDING_TABLE, DEAD_TABLE) if t not in present]
                if missing:
                    raise ConfigurationError(
                        f"the outbox tables {', '.join(missing)} are missing in "
                        f"{self.location}: create them with `gbtrack outbox init --url URL`, "
                        "or with the DDL in docs/scaling.md"
                    )
            self.upgrade()
        except SQLAlchemyError as exc:
            if self._owns_engine:
                self.engine.dispose()
            raise ConfigurationError(f"cannot open the outbox {self.location}: {exc}") from exc
        reset_after_fork(self)

    def _missing(self) -> list[sa.Column[Any]]:
        inspector = sa.inspect(self.engine)
        present = {
            table.name: {c["name"] for c in inspector.get_columns(table.name)}
            for table in (pending_table, dead_table)
        }
        return [table.c[name] for table, name in _ADDED if name not in present[table.name]]

    def upgrade(self) -> list[str]:
        """Add the columns a table of an older gbtrack lacks; return them (``table.column``).

        gbtrack 0.1.0's tables have no ``claim_token``, ``kind`` or ``ambiguous``. Each
        is added by one ``ALTER TABLE ... ADD COLUMN``, nullable or ``NOT NULL`` with a
        constant default (existing rows are events, never ambiguous): PostgreSQL 11+
        and MySQL 8 change the catalogue only, whatever the table's size. Run when a
        store opens the tables; idempotent, and safe when several processes open them
        at once.
        """
        added: list[str] = []
        exists = "IF NOT EXISTS " if self.dialect == "postgresql" else ""
        for column in self._missing():
            declared = column.type.compile(dialect=self.engine.dialect)
            if column.server_default is not None:
                default = column.server_default.arg  # type: ignore[attr-defined]
                quoted = default if str(default).isdigit() else f"'{default}'"
                declared += f" NOT NULL DEFAULT {quoted}"
            table = column.table.name
            try:
                with self.engine.begin() as conn:
                    conn.exec_driver_sql(
                        f"ALTER TABLE {table} ADD COLUMN {exists}{column.name} {declared}"
                    )
            except SQLAlchemyError:
                # Another process opening the table at the same time added it first.
                if any(c is column for c in self._missing()):
                    raise
                continue
            added.append(f"{table}.{column.name}")
        return added

    def _clock(self, conn: Connection) -> float:
        """Now, in epoch seconds, on the database's clock (SQLite: this machine's)."""
        if self.dialect == "postgresql":
            query = "SELECT EXTRACT(EPOCH FROM clock_timestamp())"
        elif self.dialect in ("mysql", "mariadb"):
            query = "SELECT UNIX_TIMESTAMP(NOW(6))"
        else:
            return time.time()
        return float(conn.exec_driver_sql(query).scalar_one())

    def _after_fork(self) -> None:
        # Pooled connections must not cross fork: the child opens its own.
        self.engine.dispose(close=False)

    @property
    def location(self) -> str:
        """The database URL without its password."""
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Dispose of the engine's connections if this store created it; idempotent."""
        if not self._closed and self._owns_engine:
            self.engine.dispose()
        self._closed = True

    def __enter__(self) -> SqlOutboxStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SqlOutboxStore url={self.location!r}>"

    def _begin(self) -> contextlib.AbstractContextManager[Connection]:
        """``with self._begin() as conn``: one transaction, committed at the end."""
        if self._closed:
            raise ConfigurationError("the outbox store is closed")
        return _translating(self, self.engine.begin)

    def _connect(self) -> contextlib.AbstractContextManager[Connection]:
        """``with self._connect() as conn``: a connection for reading."""
        if self._closed:
            raise ConfigurationError("the outbox store is closed")
        return _translating(self, self.engine.connect)

    # --- writing ------------------------------------------------------------------------
    def append(self, items: Iterable[Event | StoredOrder], *, now: float | None = None) -> int:
        """Insert events and orders in one transaction, in order, as the caps allow.

        Returns:
            How many items were stored: the first ``n``; the rest did not fit.
        """
        stamp = time.time() if now is None else now
        rows = [row_values(item, stamp) for item in items]
        if not rows:
            return 0
        with self._begin() as conn:
            n = len(rows)
            if self.max_rows is not None or self.max_bytes is not None:
                n = self._fit(conn, [r["size"] for r in rows])
            if n:
                conn.execute(pending_table.insert(), rows[:n])
        return n

    def _fit(self, conn: Connection, sizes: Sequence[int]) -> int:
        total_rows, total_bytes = self._totals(conn)
        n = 0
        for size in sizes:
            if self.max_rows is not None and total_rows + n + 1 > self.max_rows:
                break
            if self.max_bytes is not None and total_bytes + size > self.max_bytes:
                break
            total_bytes += size
            n += 1
        return n

    @staticmethod
    def _totals(conn: Connection) -> tuple[int, int]:
        rows = bytes_ = 0
        for table in (pending_table, dead_table):
            count, size = conn.execute(
                sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(table.c.size), 0))
            ).one()
            rows += int(count)
            bytes_ += int(size)
        return rows, bytes_

    def room(self) -> int:
        """How many more rows fit under the caps (an upper bound for ``max_bytes``)."""
        if self.max_rows is None and self.max_bytes is None:
            return 1 << 62
        with self._connect() as conn:
            rows, size = self._totals(conn)
        free = self.max_rows - rows if self.max_rows is not None else 1 << 62
        if self.max_bytes is not None:
            free = min(free, (self.max_bytes - size) // (ROW_OVERHEAD + 1))
        return max(0, free)

    # --- leases -------------------------------------------------------------------------
    def claim(
        self, owner: str, limit: int, *, lease: float, now: float | None = None
    ) -> list[OutboxRow]:
        """Lease up to ``limit`` ready rows to ``owner``, oldest first, under a new token.

        PostgreSQL and MySQL lock the chosen rows with ``FOR UPDATE SKIP LOCKED``:
        concurrent claimers skip each other's rows instead of waiting or taking them.
        The rows' :attr:`~gbtrack.outbox.OutboxRow.claim_token` is new to this claim;
        ``now`` (for tests) replaces the database's clock.
        """
        t = pending_table
        token = secrets.token_hex(8)
        with self._begin() as conn:
            stamp = self._clock(conn) if now is None else now
            query = (
                sa.select(*_PENDING_COLS)
                .where(
                    t.c.next_attempt_at <= stamp,
                    sa.or_(t.c.lease_until.is_(None), t.c.lease_until <= stamp),
                )
                .order_by(t.c.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            until = stamp + lease
            found = conn.execute(query).all()
            for part in _chunks([r[0] for r in found]):
                conn.execute(
                    t.update()
                    .where(t.c.id.in_(part))
                    .values(claimed_by=owner, lease_until=until, claim_token=token)
                )
        return [_pending_row((*r[:10], owner, until, r[12], token, *r[14:])) for r in found]

    def extend(
        self, owner: str, ids: Sequence[int], *, lease: float, token: str | None = None
    ) -> list[int]:
        """Push the lease of ``owner``'s rows ``ids`` to ``lease`` seconds from now.

        Args:
            owner: The claimer.
            ids: The rows.
            lease: Seconds from now, on the database's clock.
            token: Only rows still under this claim token (fencing): a row claimed
                again since, by anyone, is not renewed.

        Returns:
            The ids of ``ids`` still held (renewed), in id order.
        """
        t = pending_table
        held: list[int] = []
        with self._begin() as conn:
            until = self._clock(conn) + lease
            for part in _chunks(ids):
                where = [t.c.claimed_by == owner, t.c.id.in_(part)]
                if token is not None:
                    where.append(t.c.claim_token == token)
                conn.execute(t.update().where(*where).values(lease_until=until))
                held += conn.execute(sa.select(t.c.id).where(*where).order_by(t.c.id)).scalars()
        return held

    def release_owner(self, owner: str) -> int:
        """Give back every row ``owner`` holds, attempts unchanged (a clean shutdown)."""
        t = pending_table
        with self._begin() as conn:
            result = conn.execute(
                t.update()
                .where(t.c.claimed_by == owner)
                .values(claimed_by=None, lease_until=None, claim_token=None)
            )
            return int(result.rowcount)

    def complete(self, ids: Sequence[int], *, token: str | None = None) -> int:
        """Delete delivered rows (only those still under claim ``token`` when given).

        Returns:
            How many rows were deleted.
        """
        deleted = 0
        t = pending_table
        fence = [] if token is None else [t.c.claim_token == token]
        with self._begin() as conn:
            for part in _chunks(ids):
                deleted += int(conn.execute(t.delete().where(t.c.id.in_(part), *fence)).rowcount)
        return deleted

    def release(
        self,
        owner: str,
        ids: Sequence[int],
        *,
        delay: float = 0.0,
        error: str | None = None,
        count_attempt: bool = True,
        token: str | None = None,
        ambiguous: bool = False,
    ) -> None:
        """Give ``owner``'s rows back: ready again after ``delay`` seconds.

        With ``token``, only rows still under that claim (fencing). ``ambiguous``
        marks the rows' latest attempt as answered by nothing (kept for good).
        """
        t = pending_table
        values: dict[str, Any] = {
            "claimed_by": None,
            "lease_until": None,
            "claim_token": None,
            "attempts": t.c.attempts + (1 if count_attempt else 0),
        }
        if error is not None:
            values["last_error"] = error
        if ambiguous:
            values["ambiguous"] = 1
        fence = [] if token is None else [t.c.claim_token == token]
        with self._begin() as conn:
            values["next_attempt_at"] = self._clock(conn) + delay
            for part in _chunks(ids):
                conn.execute(
                    t.update()
                    .where(t.c.claimed_by == owner, t.c.id.in_(part), *fence)
                    .values(**values)
                )

    def bury(
        self,
        ids: Sequence[int],
        *,
        status: int | None,
        code: int | None,
        message: str,
        count_attempt: bool = True,
        token: str | None = None,
        ambiguous: bool = False,
    ) -> int:
        """Move pending rows to the dead letter with the final failure; return how many.

        With ``token``, only rows still under that claim (fencing). A row keeps its
        kind; ``ambiguous`` marks its last attempt as unanswered.
        """
        p = pending_table
        fence = [] if token is None else [p.c.claim_token == token]
        columns = _carried(p) | {
            "ambiguous": sa.literal(1, sa.Integer()) if ambiguous else p.c.ambiguous,
            "attempts": p.c.attempts + (1 if count_attempt else 0),
            "status": sa.literal(status, sa.Integer()),
            "code": sa.literal(code, sa.Integer()),
            "message": sa.literal(message, sa.Text()),
            "failed_at": sa.literal(time.time(), _TIME),
        }
        with self._begin() as conn:
            return _move(conn, p, dead_table, ids, columns, *fence)

    # --- operations (the CLI) ------------------------------------------------------------
    def retry_dead(
        self,
        *,
        code: int | None = None,
        name: str | None = None,
        since: float | None = None,
        ids: Sequence[int] | None = None,
        kind: Kind | None = None,
    ) -> int:
        """Move dead letters back to pending (attempts reset); return how many.

        A requeued row keeps its kind, and whether an attempt of it was ambiguous.

        Args:
            code: Only those whose Gameball code is ``code``.
            name: Only events with this name (orders: this order id).
            since: Only those that failed at or after this time (epoch seconds).
            ids: Only these dead-letter ids.
            kind: Only rows of this kind (``"event"`` or ``"order"``).
        """
        d = dead_table
        where: list[Any] = []
        if kind is not None:
            where.append(d.c.kind == kind)
        if code is not None:
            where.append(d.c.code == code)
        if name is not None:
            where.append(d.c.name == name)
        if since is not None:
            where.append(d.c.failed_at >= since)
        if ids is not None:
            if not ids:
                return 0
            where.append(d.c.id.in_(list(ids)))
        # enqueued_at restarts: the row is new to the pending table.
        columns = _carried(d) | {"enqueued_at": sa.literal(time.time(), _TIME)}
        with self._begin() as conn:
            chosen = conn.execute(
                sa.select(d.c.id).where(*where).order_by(d.c.id).with_for_update()
            ).scalars()
            return _move(conn, d, pending_table, list(chosen), columns)

    def make_ready(self) -> int:
        """Clear the backoff of every unclaimed pending row (deliver now); return how many."""
        t = pending_table
        with self._begin() as conn:
            now = self._clock(conn)
            result = conn.execute(
                t.update()
                .where(sa.or_(t.c.claimed_by.is_(None), t.c.lease_until <= now))
                .values(next_attempt_at=0.0)
            )
            return int(result.rowcount)

    def purge(self, table: Table) -> int:
        """Delete every row of ``table``; return how many."""
        target = _table(table)
        with self._begin() as conn:
            return int(conn.execute(target.delete()).rowcount)

    # --- reading ----------------------------------------------------------------------------
    def stats(self) -> OutboxStats:
        """Counts, the oldest pending event and the sizes.

        ``file_bytes`` is the tables' size on disk on PostgreSQL, else 0. Reads both
        tables whole: for ``gbtrack outbox stats``; a relay's gauges use :meth:`backlog`.
        """
        t = pending_table
        with self._connect() as conn:
            now = self._clock(conn)
            claimed = sa.func.coalesce(sa.func.sum(sa.case((t.c.lease_until > now, 1), else_=0)), 0)
            pending, held, oldest, pending_orders = conn.execute(
                sa.select(sa.func.count(), claimed, sa.func.min(t.c.created_at), _orders(t))
            ).one()
            dead, dead_orders = conn.execute(sa.select(sa.func.count(), _orders(dead_table))).one()
            rows, size = self._totals(conn)
            on_disk = 0
            if self.dialect == "postgresql":
                on_disk = conn.execute(
                    sa.text(
                        "SELECT pg_total_relation_size(:p) + pg_total_relation_size(:d)"
                    ).bindparams(p=PENDING_TABLE, d=DEAD_TABLE)
                ).scalar_one()
        return OutboxStats(
            pending=int(pending),
            claimed=int(held),
            dead=int(dead),
            oldest_created_at=None if oldest is None else float(oldest),
            rows=rows,
            bytes=size,
            file_bytes=int(on_disk),
            pending_orders=int(pending_orders),
            dead_orders=int(dead_orders),
        )

    def count(
        self, table: Table = "pending", *, up_to_id: int | None = None, limit: int | None = None
    ) -> int:
        """Count rows of ``table`` (pending rows with ``id <= up_to_id`` when given).

        Args:
            table: ``"pending"`` or ``"dead"``.
            up_to_id: Only rows with ``id <= up_to_id``.
            limit: Stop counting at ``limit`` (the answer is at most ``limit``): a cost
                bounded by ``limit``, whatever the backlog.
        """
        target = _table(table)
        inner = sa.select(sa.literal(1).label("one")).select_from(target)
        if up_to_id is not None:
            inner = inner.where(target.c.id <= up_to_id)
        if limit is not None:
            inner = inner.limit(max(0, limit))
        query = sa.select(sa.func.count()).select_from(inner.subquery())
        with self._connect() as conn:
            return int(conn.execute(query).scalar_one())

    def backlog(self, cap: int = GAUGE_CAP) -> OutboxBacklog:
        """Pending rows and the oldest one, at a cost that does not grow with the backlog.

        Up to ``cap`` pending rows are counted exactly; beyond, PostgreSQL's planner
        estimate (``pg_class.reltuples``, refreshed by autovacuum) when larger, else
        ``cap`` (``exact=False`` either way). The oldest row is the one with the lowest
        id (a primary-key lookup): rows committed out of order make it approximate.
        """
        t = pending_table
        with self._connect() as conn:
            inner = sa.select(sa.literal(1).label("one")).select_from(t).limit(cap + 1)
            pending = int(
                conn.execute(sa.select(sa.func.count()).select_from(inner.subquery())).scalar_one()
            )
            exact = pending <= cap
            if not exact and self.dialect == "postgresql":
                estimate = conn.execute(
                    sa.text(
                        "SELECT reltuples FROM pg_class WHERE oid = to_regclass(:t)"
                    ).bindparams(t=PENDING_TABLE)
                ).scalar()
                pending = max(cap, int(estimate or 0))
            elif not exact:
                pending = cap
            oldest = conn.execute(sa.select(t.c.created_at).order_by(t.c.id).limit(1)).scalar()
        return OutboxBacklog(pending, exact, None if oldest is None else float(oldest))

    def max_id(self, table: Table = "pending") -> int:
        """The highest row id in ``table`` (0 when none)."""
        target = _table(table)
        with self._connect() as conn:
            value = conn.execute(sa.select(sa.func.max(target.c.id))).scalar_one()
        return int(value or 0)

    def next_ready_in(self, now: float | None = None) -> float | None:
        """Seconds until some pending row becomes claimable; ``None`` when none is pending.

        Two index-backed reads (free rows by ``next_attempt_at``, held rows by
        ``claimed_by``): the cost does not grow with the backlog.
        """
        t = pending_table
        lease = sa.func.coalesce(t.c.lease_until, 0.0)
        held = sa.case((lease > t.c.next_attempt_at, lease), else_=t.c.next_attempt_at)
        with self._connect() as conn:
            stamp = self._clock(conn) if now is None else now
            free = conn.execute(
                sa.select(t.c.next_attempt_at)
                .where(t.c.claimed_by.is_(None))
                .order_by(t.c.next_attempt_at)
                .limit(1)
            ).scalar()
            taken = conn.execute(
                sa.select(sa.func.min(held)).where(t.c.claimed_by.is_not(None))
            ).scalar()
        found = [float(v) for v in (free, taken) if v is not None]
        return max(0.0, min(found) - stamp) if found else None

    def get(self, table: Table, row_id: int) -> OutboxRow | None:
        """Return row ``row_id`` of ``table``, or ``None``."""
        target = _table(table)
        cols = _PENDING_COLS if table == "pending" else _DEAD_COLS
        with self._connect() as conn:
            row = conn.execute(sa.select(*cols).where(target.c.id == row_id)).first()
        if row is None:
            return None
        return _pending_row(row) if table == "pending" else _dead_row(row)

    def rows(
        self, table: Table = "pending", *, limit: int | None = None, offset: int = 0
    ) -> list[OutboxRow]:
        """Return rows of ``table`` oldest first."""
        target = _table(table)
        cols = _PENDING_COLS if table == "pending" else _DEAD_COLS
        query = sa.select(*cols).order_by(target.c.id).offset(offset)
        if limit is not None:
            query = query.limit(limit)
        with self._connect() as conn:
            found = conn.execute(query).all()
        make = _pending_row if table == "pending" else _dead_row
        return [make(r) for r in found]

    def iter_rows(self, table: Table = "pending", *, page: int = 500) -> Iterator[OutboxRow]:
        """Iterate over every row of ``table`` by pages, oldest first (for export)."""
        target = _table(table)
        cols = _PENDING_COLS if table == "pending" else _DEAD_COLS
        make = _pending_row if table == "pending" else _dead_row
        last = 0
        while True:
            found = self._page(target, cols, last, page)
            if not found:
                return
            for r in found:
                yield make(r)
            last = found[-1][0]

    def _page(self, target: sa.Table, cols: list[Any], after: int, page: int) -> list[Any]:
        query = sa.select(*cols).where(target.c.id > after).order_by(target.c.id).limit(page)
        with self._connect() as conn:
            return list(conn.execute(query).all())


def _orders(table: sa.Table) -> Any:
    """``SUM`` of the order rows of ``table`` (0 when empty)."""
    return sa.func.coalesce(sa.func.sum(sa.case((table.c.kind == "order", 1), else_=0)), 0)


def _table(table: str) -> sa.Table:
    if table == "pending":
        return pending_table
    if table == "dead":
        return dead_table
    raise ValueError(f"unknown table {table!r}")


def _pending_row(r: Sequence[Any]) -> OutboxRow:
    return OutboxRow(
        "pending", int(r[0]), r[1], r[2], r[3], r[4], int(r[5]), float(r[6]), float(r[7]),
        int(r[8]), next_attempt_at=float(r[9]), claimed_by=r[10],
        lease_until=None if r[11] is None else float(r[11]), last_error=r[12],
        claim_token=r[13], kind=kind_of(r[14]), ambiguous=bool(r[15]),
    )  # fmt: skip


def _dead_row(r: Sequence[Any]) -> OutboxRow:
    return OutboxRow(
        "dead", int(r[0]), r[1], r[2], r[3], r[4], int(r[5]), float(r[6]), float(r[7]),
        int(r[8]), status=r[9], code=r[10], message=r[11], failed_at=float(r[12]),
        kind=kind_of(r[13]), ambiguous=bool(r[14]),
    )  # fmt: skip
