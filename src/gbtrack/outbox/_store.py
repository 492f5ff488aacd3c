"""The outbox file: SQLite in WAL mode, a ``pending`` and a ``dead`` table, leases, a cap.

Schema (``PRAGMA user_version`` = 1)::

    pending(id, event_id, name, customer_id, payload, size, created_at, enqueued_at,
            attempts, next_attempt_at, claimed_by, lease_until, last_error, claim_token,
            kind, ambiguous)
    dead(id, event_id, name, customer_id, payload, size, created_at, enqueued_at,
         attempts, status, code, message, failed_at, kind, ambiguous)
    totals(rows, bytes)        kept by triggers: both tables together, for the size cap

A row holds one event (``kind = 'event'``) or one order (``kind = 'order'``).
An event's ``payload`` is its Gameball wire body plus its id and time, as JSON
(``{"customerId", "events": {name: metadata}, "email"?, "mobile"?, "eventId",
"timestamp"}``, see :func:`encode_event`); rows of the older flat form (``name``,
``metadata``, ...) are still read. An order's is its checked wire body plus when it
was taken (``{"order": {...}, "timestamp", "function"?}``, see :func:`encode_order`);
its ``name`` column holds the order id. ``ambiguous`` is 1 once an attempt's answer
was lost (a timeout after sending): a duplicate-order answer on a later attempt, by
any process, then means delivered. Session tokens are never written: an item is
stored without its token.

Several processes may open one file: a worker claims rows inside ``BEGIN IMMEDIATE``
(SQLite's single writer lock), so two workers never hold the same row at once; a row
whose lease expired (its worker died) is claimed again. Each claim writes a fresh
``claim_token``: renewing, deleting, releasing and burying can be fenced by it, so a
worker whose lease ran out (a frozen process) cannot touch rows claimed again since.
Lease times are this machine's clock, the one clock every process on the file shares.
A file of gbtrack 0.1.0 (no ``claim_token``, ``kind``, ``ambiguous``) gets the columns
when it is opened (its rows are events); the change is additive, so ``user_version``
stays 1 and an older gbtrack still opens it (it cannot read order rows: it moves them
to the dead letter, from which a newer gbtrack requeues them).
"""

# SQL text below is built only from constant names and "?" placeholders, never from input.
# ruff: noqa: S608

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import json
import operator
import os
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, ParamSpec, TypeVar

from gbtrack._errors import ConfigurationError, OutboxError
from gbtrack._event import Event, EventDraft, check_drafts, event_of, masked
from gbtrack._fork import reset_after_fork
from gbtrack._order import StoredOrder
from gbtrack._protocol import stored_body
from gbtrack.outbox._paths import resolve_outbox_path

__all__ = [
    "ROW_OVERHEAD",
    "Kind",
    "OutboxBacklog",
    "OutboxRow",
    "OutboxStats",
    "OutboxStore",
    "StoredOrder",
    "Table",
    "decode_event",
    "decode_order",
    "encode_event",
    "encode_order",
    "kind_of",
    "row_values",
]

Table = Literal["pending", "dead"]
"""The two tables: items waiting for delivery, and dead letters."""

Kind = Literal["event", "order"]
"""What a row holds: an event (the default, and every row of gbtrack 0.1.0) or an order."""

ROW_OVERHEAD = 96
"""Bytes counted per row on top of its JSON payload (columns, index entries)."""

_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    customer_id     TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    size            INTEGER NOT NULL,
    created_at      REAL    NOT NULL,
    enqueued_at     REAL    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL    NOT NULL DEFAULT 0,
    claimed_by      TEXT,
    lease_until     REAL,
    last_error      TEXT,
    claim_token     TEXT,
    kind            TEXT    NOT NULL DEFAULT 'event',
    ambiguous       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS pending_ready ON pending (next_attempt_at);
CREATE TABLE IF NOT EXISTS dead (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    customer_id TEXT    NOT NULL,
    payload     TEXT    NOT NULL,
    size        INTEGER NOT NULL,
    created_at  REAL    NOT NULL,
    enqueued_at REAL    NOT NULL,
    attempts    INTEGER NOT NULL,
    status      INTEGER,
    code        INTEGER,
    message     TEXT,
    failed_at   REAL    NOT NULL,
    kind        TEXT    NOT NULL DEFAULT 'event',
    ambiguous   INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS totals (
    one   INTEGER PRIMARY KEY CHECK (one = 1),
    rows  INTEGER NOT NULL,
    bytes INTEGER NOT NULL
);
INSERT OR IGNORE INTO totals (one, rows, bytes) VALUES (1, 0, 0);
CREATE TRIGGER IF NOT EXISTS pending_ins AFTER INSERT ON pending BEGIN
    UPDATE totals SET rows = rows + 1, bytes = bytes + NEW.size WHERE one = 1; END;
CREATE TRIGGER IF NOT EXISTS pending_del AFTER DELETE ON pending BEGIN
    UPDATE totals SET rows = rows - 1, bytes = bytes - OLD.size WHERE one = 1; END;
CREATE TRIGGER IF NOT EXISTS dead_ins AFTER INSERT ON dead BEGIN
    UPDATE totals SET rows = rows + 1, bytes = bytes + NEW.size WHERE one = 1; END;
CREATE TRIGGER IF NOT EXISTS dead_del AFTER DELETE ON dead BEGIN
    UPDATE totals SET rows = rows - 1, bytes = bytes - OLD.size WHERE one = 1; END;
"""

_COMMON = "id, event_id, name, customer_id, payload, size, created_at, enqueued_at, attempts"
_PENDING_COLS = (
    f"{_COMMON}, next_attempt_at, claimed_by, lease_until, last_error, claim_token, kind, ambiguous"
)
_DEAD_COLS = f"{_COMMON}, status, code, message, failed_at, kind, ambiguous"
# The columns append() writes, and what a row keeps when it moves between the tables.
_INSERTED = ("event_id", "name", "customer_id", "payload", "size", "created_at", "enqueued_at",
             "kind")  # fmt: skip
_CARRIED = "event_id, name, customer_id, payload, size, created_at, enqueued_at, kind, ambiguous"
_pick = operator.itemgetter(*_INSERTED)  # a row's values in _INSERTED's order, as a tuple
# Columns added since gbtrack 0.1.0, added to an older file when it is opened.
_ADDED = (
    ("pending", "claim_token", "TEXT"),
    ("pending", "kind", "TEXT NOT NULL DEFAULT 'event'"),
    ("pending", "ambiguous", "INTEGER NOT NULL DEFAULT 0"),
    ("dead", "kind", "TEXT NOT NULL DEFAULT 'event'"),
    ("dead", "ambiguous", "INTEGER NOT NULL DEFAULT 0"),
)
_MAX_PARAMS = 500  # ids per IN (...) clause, well under SQLite's variable limit


# --- the stored form of an event -----------------------------------------------------
def encode_event(event: Event) -> str:
    """Return the JSON stored for ``event``: its wire body plus id and time.

    That is :func:`gbtrack._protocol.stored_body`; the session token is left out on
    purpose.
    """
    return _encode(stored_body(event))


# Built once: json.dumps with options builds an encoder per call.
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def decode_event(payload: str | dict[str, Any]) -> Event:
    """Rebuild an :class:`~gbtrack.Event` (without session token) from its stored JSON.

    Reads the stored body (``{"customerId", "events": {name: metadata}, ...}``) and
    the flat form gbtrack wrote before it (``{"name", "metadata", ...}``), so that
    rows written by an older version are still delivered. A plainly valid row is
    checked in plain Python (:func:`~gbtrack._event.check_drafts`, without the tracking
    plan, as the constructor); anything else goes through ``Event``'s own validation.
    """
    data = json.loads(payload) if isinstance(payload, str) else payload
    if "events" in data:
        ((name, metadata),) = data["events"].items()
    else:  # the flat form of rows written before the stored body
        name, metadata = data["name"], data.get("metadata")
    timestamp = _dt.datetime.fromisoformat(data["timestamp"])
    event_id = data["eventId"]
    if type(metadata) is dict and type(event_id) is str and timestamp.tzinfo is not None:
        draft = EventDraft(
            name,
            data["customerId"],
            data.get("email"),
            data.get("mobile"),
            None,
            tuple(metadata),
            tuple(metadata.values()),
            None,
            timestamp.timestamp(),
        )
        records, _failed = check_drafts((draft,), plan=False)
        if records:
            record = records[0]
            checked = record[8]  # the model pydantic built, when the row was not plain
            if checked is None:
                return event_of(record, event_id=event_id, timestamp=timestamp)
            return checked.model_copy(update={"event_id": event_id, "timestamp": timestamp})
    # Refused (or not even shaped like a stored event): the constructor says why.
    return Event(
        name=name,
        customer_id=data["customerId"],
        email=data.get("email"),
        mobile=data.get("mobile"),
        metadata=metadata or {},
        event_id=event_id,
        timestamp=timestamp,
    )


_ORDER_KEYS = ("customerId", "orderId", "orderDate")


def encode_order(order: StoredOrder) -> str:
    """Return the JSON stored for ``order``: ``{"order": body, "timestamp", "function"?}``."""
    data: dict[str, Any] = {"order": order.body, "timestamp": order.timestamp}
    if order.function is not None:
        data["function"] = order.function
    return _encode(data)


def decode_order(payload: str | dict[str, Any]) -> StoredOrder:
    """Rebuild a :class:`StoredOrder` from its stored JSON (see :func:`encode_order`).

    Raises:
        ValueError: For a payload that is not a stored order (a broken or newer writer).
    """
    data = json.loads(payload) if isinstance(payload, str) else payload
    body = data.get("order") if isinstance(data, dict) else None
    if not isinstance(body, dict):
        raise ValueError("not a stored order (no 'order' object)")
    for key in _ORDER_KEYS:
        if type(body.get(key)) is not str:
            raise ValueError(f"stored order without a valid {key!r}")
    if type(body.get("totalPaid")) not in (int, float):
        raise ValueError("stored order without a numeric 'totalPaid'")
    stamp = data.get("timestamp")
    if not isinstance(stamp, (int, float)) or isinstance(stamp, bool):
        raise ValueError("stored order without a 'timestamp'")
    function = data.get("function")
    return StoredOrder(body, float(stamp), function if isinstance(function, str) else None)


def row_values(item: Event | StoredOrder, stamp: float) -> dict[str, Any]:
    """The pending row of an event or an order (without id), enqueued at ``stamp``.

    An order's row gets a fresh ``event_id`` (the row's own id) and its order id as
    ``name``, so that listings and ``requeue --name`` find it.
    """
    if isinstance(item, StoredOrder):
        payload = encode_order(item)
        event_id, name, customer_id = uuid.uuid4().hex, item.order_id[:255], item.customer_id
        created, kind = item.timestamp, "order"
    else:
        payload = encode_event(item)
        event_id, name, customer_id = item.event_id, item.name, item.customer_id
        created, kind = item.timestamp.timestamp(), "event"
    return {
        "event_id": event_id,
        "name": name,
        "customer_id": customer_id,
        "payload": payload,
        "size": len(payload.encode()) + ROW_OVERHEAD,
        "created_at": created,
        "enqueued_at": stamp,
        "attempts": 0,
        "next_attempt_at": 0.0,
        "kind": kind,
    }


@dataclass(frozen=True)
class OutboxRow:
    """One stored event or order, pending or dead.

    Attributes:
        table: ``"pending"`` or ``"dead"``.
        id: The row id (unique within its table).
        event_id: The event's id (an order's row: an id of the row's own).
        name: The event name (an order's row: the order id).
        customer_id: The customer id.
        payload: The stored JSON text (see :func:`encode_event`, :func:`encode_order`).
        size: Bytes counted against ``max_bytes``.
        created_at: The event's timestamp (epoch seconds).
        enqueued_at: When the row was written (epoch seconds).
        attempts: Delivery attempts so far.
        next_attempt_at: Pending rows: not claimed before this time (epoch seconds).
        claimed_by: Pending rows: the worker holding the lease, if any.
        lease_until: Pending rows: when that lease expires.
        last_error: Pending rows: the last retryable failure.
        claim_token: Pending rows: the token of the claim holding the row (new to each
            claim), for fencing.
        status: Dead rows: the HTTP status of the final failure, if there was one.
        code: Dead rows: Gameball's error code, if there was one.
        message: Dead rows: why the event is dead.
        failed_at: Dead rows: when it was moved to the dead letter (epoch seconds).
        kind: What the row holds: ``"event"`` or ``"order"`` (:meth:`event`,
            :meth:`order`).
        ambiguous: An earlier attempt's answer was lost (it may have been processed):
            for an order, a duplicate answer then means delivered.
    """

    table: Table
    id: int
    event_id: str
    name: str
    customer_id: str
    payload: str
    size: int
    created_at: float
    enqueued_at: float
    attempts: int
    next_attempt_at: float | None = None
    claimed_by: str | None = None
    lease_until: float | None = None
    last_error: str | None = None
    status: int | None = None
    code: int | None = None
    message: str | None = None
    failed_at: float | None = None
    claim_token: str | None = None
    kind: Kind = "event"
    ambiguous: bool = False

    def event(self) -> Event:
        """Return the stored event.

        Raises:
            ValueError: If the row holds an order.
        """
        if self.kind != "event":
            raise ValueError(f"outbox row {self.id} holds an {self.kind}, not an event")
        return decode_event(self.payload)

    def order(self) -> StoredOrder:
        """Return the stored order.

        Raises:
            ValueError: If the row holds an event, or an unreadable order.
        """
        if self.kind != "order":
            raise ValueError(f"outbox row {self.id} holds an {self.kind}, not an order")
        return decode_order(self.payload)

    def to_dict(self, *, mask: bool = True) -> dict[str, Any]:
        """Return the row as a JSON-ready dict; email and mobile masked unless ``mask=False``.

        An event's stored body is under ``"event"``, an order's wire body under
        ``"order"``, beside ``"kind"``.
        """
        data = json.loads(self.payload)
        out: dict[str, Any] = {"table": self.table, "id": self.id, "kind": self.kind}
        if self.kind == "order":
            body = data.get("order", {}) if isinstance(data, dict) else {}
            out["order"] = masked(body) if mask else body
        else:
            out["event"] = masked(data) if mask else data
        out["attempts"] = self.attempts
        if self.ambiguous:
            out["ambiguous"] = True
        out["enqueued_at"] = self.enqueued_at
        if self.table == "pending":
            out.update(
                next_attempt_at=self.next_attempt_at,
                claimed_by=self.claimed_by,
                lease_until=self.lease_until,
                last_error=self.last_error,
            )
        else:
            out.update(
                status=self.status, code=self.code, message=self.message, failed_at=self.failed_at
            )
        return out


@dataclass(frozen=True)
class OutboxStats:
    """What the outbox holds.

    Attributes:
        pending: Rows waiting for delivery (claimed ones included).
        claimed: Pending rows currently leased by a worker.
        dead: Dead letters.
        oldest_created_at: Timestamp (epoch seconds) of the oldest pending event.
        rows: ``pending + dead``, the number the ``max_rows`` cap counts.
        bytes: The bytes the ``max_bytes`` cap counts.
        file_bytes: The size on disk of the database and its WAL.
        pending_orders: How many of the pending rows are orders.
        dead_orders: How many of the dead letters are orders.
    """

    pending: int
    claimed: int
    dead: int
    oldest_created_at: float | None
    rows: int
    bytes: int
    file_bytes: int
    pending_orders: int = 0
    dead_orders: int = 0

    def oldest_age(self, now: float | None = None) -> float | None:
        """Seconds since the oldest pending event was created, or ``None`` when empty."""
        if self.oldest_created_at is None:
            return None
        return max(0.0, (time.time() if now is None else now) - self.oldest_created_at)


@dataclass(frozen=True)
class OutboxBacklog:
    """A relay's view of the backlog, read at a cost that does not grow with it.

    Attributes:
        pending: Pending rows: exact when ``exact``, else a lower bound or an estimate.
        exact: Whether ``pending`` was counted exactly (at most the counting cap).
        oldest_created_at: Timestamp (epoch seconds) of the oldest pending row by id.
    """

    pending: int
    exact: bool
    oldest_created_at: float | None


_P = ParamSpec("_P")
_R = TypeVar("_R")


def outbox_error(path: Path, exc: sqlite3.Error) -> OutboxError:
    """The :class:`OutboxError` for a SQLite failure on ``path``, in one line."""
    damaged = isinstance(exc, sqlite3.DatabaseError) and "malformed" in str(exc).lower()
    what = "is damaged" if damaged else "failed"
    error = OutboxError(f"outbox {str(path)!r} {what}: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


def _translated(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """Raise :class:`OutboxError` (chained) instead of SQLite's own exceptions."""

    @functools.wraps(method)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(*args, **kwargs)
        except sqlite3.Error as exc:
            store = args[0]
            assert isinstance(store, OutboxStore)
            raise outbox_error(store.path, exc) from exc

    return run


def _chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), _MAX_PARAMS):
        yield ids[start : start + _MAX_PARAMS]


def _marks(n: int) -> str:
    return ",".join("?" * n)


class OutboxStore:
    """Thread-safe access to one outbox file; several processes may open the same file.

    Args:
        path: The SQLite file; ``None`` uses ``$GBTRACK_OUTBOX`` or the user's state
            directory (see :func:`~gbtrack.outbox.default_outbox_path`).
        max_rows: Cap on stored rows (pending and dead together); ``None`` for none.
        max_bytes: Cap on stored bytes (JSON payloads plus :data:`ROW_OVERHEAD` per
            row, pending and dead together); ``None`` for none. At least one cap must
            be set: an outbox is never unbounded.
        synchronous: SQLite's ``synchronous`` pragma. ``"NORMAL"`` (default) survives a
            process crash (SIGKILL); ``"FULL"`` also survives power loss, slower.
        busy_timeout: Seconds to wait for another process's write lock.

    Raises:
        ConfigurationError: If the path is not writable or no cap is set.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        max_rows: int | None = 1_000_000,
        max_bytes: int | None = None,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        busy_timeout: float = 30.0,
    ) -> None:
        if max_rows is None and max_bytes is None:
            raise ConfigurationError("an outbox needs max_rows or max_bytes: never unbounded")
        if (max_rows is not None and max_rows < 1) or (max_bytes is not None and max_bytes < 1):
            raise ConfigurationError("max_rows and max_bytes must be positive")
        if synchronous not in ("NORMAL", "FULL"):
            raise ConfigurationError(f"synchronous must be 'NORMAL' or 'FULL', not {synchronous!r}")
        self.path: Path = resolve_outbox_path(path)
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._closed = False
        self._orphans: list[sqlite3.Connection] = []
        with self._lock:
            self._connect()
        reset_after_fork(self)

    def _after_fork(self) -> None:
        # A lock held by a parent thread at fork time would never be released in the child.
        self._lock = threading.RLock()

    # --- connection -------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        _make_private(self.path)
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout,
                isolation_level=None,  # autocommit; transactions are explicit below
                check_same_thread=False,  # guarded by self._lock
            )
        except sqlite3.Error as exc:
            raise ConfigurationError(f"cannot open the outbox {str(self.path)!r}: {exc}") from exc
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > _SCHEMA_VERSION:
                raise ConfigurationError(
                    f"outbox {str(self.path)!r} has schema {version}, newer than this gbtrack"
                )
            # One transaction, so concurrent first opens of a new file do not interleave.
            conn.executescript(
                f"BEGIN IMMEDIATE;{_SCHEMA}PRAGMA user_version={_SCHEMA_VERSION};COMMIT;"
            )
            _upgrade(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise ConfigurationError(f"cannot use the outbox {str(self.path)!r}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _db(self) -> sqlite3.Connection:
        """The connection for this process (a forked child opens its own; call under lock)."""
        if self._closed:
            raise ConfigurationError("the outbox store is closed")
        if self._pid != os.getpid():
            # A connection must not cross fork; keep the parent's object alive unused.
            if self._conn is not None:
                self._orphans.append(self._conn)
            self._pid = os.getpid()
            return self._connect()
        assert self._conn is not None
        return self._conn

    @property
    def location(self) -> str:
        """The file's path, for messages."""
        return str(self.path)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Close the connection; idempotent."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                with contextlib.suppress(sqlite3.Error):  # a damaged file still closes
                    self._conn.close()
            self._conn = None
            self._closed = True

    def __enter__(self) -> OutboxStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<OutboxStore path={str(self.path)!r}>"

    def _write(self) -> _Txn:
        return _Txn(self)

    # --- writing ------------------------------------------------------------------------
    @_translated
    def room(self) -> int:
        """Return how many more rows fit under the caps (an upper bound for ``max_bytes``)."""
        with self._lock:
            rows, size = self._db().execute("SELECT rows, bytes FROM totals").fetchone()
        return self._fit(rows, size, None)

    def _fit(self, rows: int, size: int, sizes: Sequence[int] | None) -> int:
        if sizes is None:
            free = self.max_rows - rows if self.max_rows is not None else 1 << 62
            if self.max_bytes is not None:
                free = min(free, (self.max_bytes - size) // (ROW_OVERHEAD + 1))
            return max(0, free)
        n = 0
        for item in sizes:
            if self.max_rows is not None and rows + n + 1 > self.max_rows:
                break
            if self.max_bytes is not None and size + item > self.max_bytes:
                break
            size += item
            n += 1
        return n

    @_translated
    def append(self, items: Iterable[Event | StoredOrder], *, now: float | None = None) -> int:
        """Write events and orders durably in one transaction, in order, as the caps allow.

        Returns:
            How many items were stored: the first ``n``; the rest did not fit.
        """
        stamp = time.time() if now is None else now
        rows = [_pick(row_values(item, stamp)) for item in items]
        if not rows:
            return 0
        with self._write() as db:
            total_rows, total_bytes = db.execute("SELECT rows, bytes FROM totals").fetchone()
            n = self._fit(total_rows, total_bytes, [r[4] for r in rows])
            if n:
                db.executemany(
                    f"INSERT INTO pending ({', '.join(_INSERTED)})"
                    f" VALUES ({_marks(len(_INSERTED))})",
                    rows[:n],
                )
        return n

    # --- leases -------------------------------------------------------------------------
    @_translated
    def claim(
        self, owner: str, limit: int, *, lease: float, now: float | None = None
    ) -> list[OutboxRow]:
        """Lease up to ``limit`` ready rows to ``owner``, oldest first.

        A row is ready when its retry time has come and nobody holds a live lease on
        it; a lease left by a dead worker expires and the row becomes ready again.
        """
        stamp = time.time() if now is None else now
        token = secrets.token_hex(8)
        with self._write() as db:
            found = db.execute(
                f"SELECT {_PENDING_COLS} FROM pending WHERE next_attempt_at <= ?"
                " AND (lease_until IS NULL OR lease_until <= ?) ORDER BY id LIMIT ?",
                (stamp, stamp, limit),
            ).fetchall()
            ids = [r[0] for r in found]
            for part in _chunks(ids):
                db.execute(
                    "UPDATE pending SET claimed_by = ?, lease_until = ?, claim_token = ?"
                    f" WHERE id IN ({_marks(len(part))})",
                    (owner, stamp + lease, token, *part),
                )
        return [_pending_row((*r[:10], owner, stamp + lease, r[12], token, *r[14:])) for r in found]

    @_translated
    def extend(
        self, owner: str, ids: Sequence[int], *, lease: float, token: str | None = None
    ) -> list[int]:
        """Push the lease of ``owner``'s rows ``ids`` to ``lease`` seconds from now.

        Args:
            owner: The claimer.
            ids: The rows.
            lease: Seconds from now.
            token: Only rows still under this claim token (fencing).

        Returns:
            The ids of ``ids`` still held (renewed), in id order.
        """
        until = time.time() + lease
        held: list[int] = []
        fence, extra = ("", ()) if token is None else (" AND claim_token = ?", (token,))
        with self._write() as db:
            for part in _chunks(ids):
                where = f"claimed_by = ? AND id IN ({_marks(len(part))}){fence}"
                db.execute(
                    f"UPDATE pending SET lease_until = ? WHERE {where}",
                    (until, owner, *part, *extra),
                )
                held += [
                    r[0]
                    for r in db.execute(
                        f"SELECT id FROM pending WHERE {where} ORDER BY id", (owner, *part, *extra)
                    )
                ]
        return held

    @_translated
    def release_owner(self, owner: str) -> int:
        """Give back every row ``owner`` holds, attempts unchanged (a clean shutdown)."""
        with self._write() as db:
            cur = db.execute(
                "UPDATE pending SET claimed_by = NULL, lease_until = NULL, claim_token = NULL"
                " WHERE claimed_by = ?",
                (owner,),
            )
            return int(cur.rowcount)

    @_translated
    def complete(self, ids: Sequence[int], *, token: str | None = None) -> int:
        """Delete delivered rows (only those still under claim ``token`` when given).

        Returns:
            How many rows were deleted.
        """
        deleted = 0
        fence, extra = ("", ()) if token is None else (" AND claim_token = ?", (token,))
        with self._write() as db:
            for part in _chunks(ids):
                cur = db.execute(
                    f"DELETE FROM pending WHERE id IN ({_marks(len(part))}){fence}",
                    (*part, *extra),
                )
                deleted += cur.rowcount
        return deleted

    @_translated
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
        ready = time.time() + delay
        bump = 1 if count_attempt else 0
        fence, extra = ("", ()) if token is None else (" AND claim_token = ?", (token,))
        with self._write() as db:
            for part in _chunks(ids):
                db.execute(
                    "UPDATE pending SET claimed_by = NULL, lease_until = NULL, claim_token = NULL,"
                    " attempts = attempts + ?, next_attempt_at = ?,"
                    " last_error = COALESCE(?, last_error), ambiguous = MAX(ambiguous, ?)"
                    f" WHERE claimed_by = ? AND id IN ({_marks(len(part))}){fence}",
                    (bump, ready, error, int(ambiguous), owner, *part, *extra),
                )

    @_translated
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
        moved = 0
        stamp = time.time()
        bump = 1 if count_attempt else 0
        fence, extra = ("", ()) if token is None else (" AND claim_token = ?", (token,))
        with self._write() as db:
            for part in _chunks(ids):
                where = f"id IN ({_marks(len(part))}){fence}"
                cur = db.execute(
                    f"INSERT INTO dead ({_CARRIED}, attempts, status, code, message, failed_at)"
                    " SELECT event_id, name, customer_id, payload, size, created_at, enqueued_at,"
                    " kind, MAX(ambiguous, ?),"
                    f" attempts + ?, ?, ?, ?, ? FROM pending WHERE {where} ORDER BY id",
                    (int(ambiguous), bump, status, code, message, stamp, *part, *extra),
                )
                moved += cur.rowcount
                db.execute(f"DELETE FROM pending WHERE {where}", (*part, *extra))
        return moved

    # --- operations (the CLI) --------------------------------------------------------------
    @_translated
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
        where: list[str] = ["1 = 1"]
        params: list[object] = []
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        if code is not None:
            where.append("code = ?")
            params.append(code)
        if name is not None:
            where.append("name = ?")
            params.append(name)
        if since is not None:
            where.append("failed_at >= ?")
            params.append(since)
        if ids is not None:
            if not ids:
                return 0
            where.append(f"id IN ({_marks(len(ids))})")
            params.extend(ids)
        cond = " AND ".join(where)
        with self._write() as db:
            cur = db.execute(
                f"INSERT INTO pending ({_CARRIED}) SELECT event_id, name, customer_id, payload,"
                f" size, created_at, ?, kind, ambiguous FROM dead WHERE {cond} ORDER BY id",
                (time.time(), *params),
            )
            moved = cur.rowcount
            db.execute(f"DELETE FROM dead WHERE {cond}", tuple(params))
        return moved

    @_translated
    def make_ready(self) -> int:
        """Clear the backoff of every unclaimed pending row (deliver now); return how many."""
        with self._write() as db:
            cur = db.execute(
                "UPDATE pending SET next_attempt_at = 0 WHERE claimed_by IS NULL"
                " OR lease_until <= ?",
                (time.time(),),
            )
            return int(cur.rowcount)

    @_translated
    def purge(self, table: Table) -> int:
        """Delete every row of ``table``; return how many."""
        if table not in ("pending", "dead"):
            raise ValueError(f"unknown table {table!r}")
        with self._write() as db:
            return int(db.execute(f"DELETE FROM {table}").rowcount)

    # --- reading --------------------------------------------------------------------------
    @_translated
    def stats(self) -> OutboxStats:
        """Return counts, the oldest pending event and the sizes."""
        now = time.time()
        with self._lock:
            db = self._db()
            pending, claimed, oldest, pending_orders = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(lease_until > ?), 0), MIN(created_at),"
                " COALESCE(SUM(kind = 'order'), 0) FROM pending",
                (now,),
            ).fetchone()
            dead, dead_orders = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(kind = 'order'), 0) FROM dead"
            ).fetchone()
            rows, size = db.execute("SELECT rows, bytes FROM totals").fetchone()
        file_bytes = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                file_bytes += os.path.getsize(f"{self.path}{suffix}")
        return OutboxStats(
            pending=pending,
            claimed=claimed,
            dead=dead,
            oldest_created_at=oldest,
            rows=rows,
            bytes=size,
            file_bytes=file_bytes,
            pending_orders=pending_orders,
            dead_orders=dead_orders,
        )

    @_translated
    def count(
        self, table: Table = "pending", *, up_to_id: int | None = None, limit: int | None = None
    ) -> int:
        """Count rows of ``table`` (pending rows with ``id <= up_to_id`` when given).

        Args:
            table: ``"pending"`` or ``"dead"``.
            up_to_id: Only rows with ``id <= up_to_id``.
            limit: Stop counting at ``limit``: a cost bounded by ``limit``.
        """
        inner = f"SELECT 1 FROM {_table(table)}"
        params: tuple[int, ...] = ()
        if up_to_id is not None:
            inner += " WHERE id <= ?"
            params = (up_to_id,)
        if limit is not None:
            inner += " LIMIT ?"
            params = (*params, max(0, limit))
        with self._lock:
            return int(self._db().execute(f"SELECT COUNT(*) FROM ({inner})", params).fetchone()[0])

    @_translated
    def backlog(self, cap: int = 10_000) -> OutboxBacklog:
        """Pending rows (counted up to ``cap``) and the oldest by id: bounded cost."""
        with self._lock:
            db = self._db()
            pending = db.execute(
                "SELECT COUNT(*) FROM (SELECT 1 FROM pending LIMIT ?)", (cap + 1,)
            ).fetchone()[0]
            oldest = db.execute("SELECT created_at FROM pending ORDER BY id LIMIT 1").fetchone()
        return OutboxBacklog(min(pending, cap), pending <= cap, oldest[0] if oldest else None)

    @_translated
    def max_id(self, table: Table = "pending") -> int:
        """The highest row id ever used in ``table`` (0 when none)."""
        with self._lock:
            row = (
                self._db()
                .execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (_table(table),))
                .fetchone()
            )
        return int(row[0]) if row else 0

    @_translated
    def next_ready_in(self, now: float | None = None) -> float | None:
        """Seconds until some pending row becomes claimable; ``None`` when none is pending."""
        stamp = time.time() if now is None else now
        with self._lock:
            row = (
                self._db()
                .execute("SELECT MIN(MAX(next_attempt_at, COALESCE(lease_until, 0))) FROM pending")
                .fetchone()
            )
        return None if row[0] is None else max(0.0, row[0] - stamp)

    @_translated
    def get(self, table: Table, row_id: int) -> OutboxRow | None:
        """Return row ``row_id`` of ``table``, or ``None``."""
        cols = _PENDING_COLS if table == "pending" else _DEAD_COLS
        with self._lock:
            row = (
                self._db()
                .execute(f"SELECT {cols} FROM {_table(table)} WHERE id = ?", (row_id,))
                .fetchone()
            )
        if row is None:
            return None
        return _pending_row(row) if table == "pending" else _dead_row(row)

    @_translated
    def rows(
        self, table: Table = "pending", *, limit: int | None = None, offset: int = 0
    ) -> list[OutboxRow]:
        """Return rows of ``table`` oldest first."""
        cols = _PENDING_COLS if table == "pending" else _DEAD_COLS
        with self._lock:
            found = (
                self._db()
                .execute(
                    f"SELECT {cols} FROM {_table(table)} ORDER BY id LIMIT ? OFFSET ?",
                    (-1 if limit is None else limit, offset),
                )
                .fetchall()
            )
        make = _pending_row if table == "pending" else _dead_row
        return [make(r) for r in found]

    def iter_rows(self, table: Table = "pending", *, page: int = 500) -> Iterator[OutboxRow]:
        """Iterate over every row of ``table`` by pages, oldest first (for export)."""
        last = 0
        cols = _PENDING_COLS if table == "pending" else _DEAD_COLS
        make = _pending_row if table == "pending" else _dead_row
        while True:
            with self._lock:
                try:
                    found = (
                        self._db()
                        .execute(
                            f"SELECT {cols} FROM {_table(table)} WHERE id > ? ORDER BY id LIMIT ?",
                            (last, page),
                        )
                        .fetchall()
                    )
                except sqlite3.Error as exc:
                    raise outbox_error(self.path, exc) from exc
            if not found:
                return
            for r in found:
                yield make(r)
            last = found[-1][0]


def _missing(conn: sqlite3.Connection) -> list[tuple[str, str, str]]:
    present = {
        (table, row[1])
        for table in ("pending", "dead")
        for row in conn.execute(f"PRAGMA table_info({table})")
    }
    return [added for added in _ADDED if added[:2] not in present]


def _upgrade(conn: sqlite3.Connection) -> None:
    """Add the columns a file of an older gbtrack lacks (once, under the write lock).

    gbtrack 0.1.0 had no ``claim_token``, ``kind`` or ``ambiguous``: each is added with
    its default (existing rows are events, never ambiguous), a change of the schema
    only (SQLite does not rewrite the rows).
    """
    if not _missing(conn):
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        for table, column, declared in _missing(conn):  # another process may have added some
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declared}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


class _Txn:
    """``with store._write() as db``: the lock plus one ``BEGIN IMMEDIATE`` transaction."""

    def __init__(self, store: OutboxStore) -> None:
        self.store = store

    def __enter__(self) -> sqlite3.Connection:
        self.store._lock.acquire()
        try:
            db = self.store._db()
            db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.store._lock.release()
            raise
        self.db = db
        return db

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None:
                try:
                    self.db.execute("COMMIT")
                except BaseException:
                    # Never leave the connection inside a transaction: its rows would
                    # look stored to this connection and be committed by a later write.
                    self._rollback()
                    raise
            else:
                self._rollback()
        finally:
            self.store._lock.release()

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")


_PRIVATE = 0o600
_SIBLINGS = ("", "-wal", "-shm", "-journal")


def _make_private(path: Path) -> None:
    """Create ``path`` 0600 if missing; take group/other access off it and its siblings.

    The file holds emails and mobiles in plain text. SQLite creates ``-wal``, ``-shm``
    and ``-journal`` with the database file's permissions, so a 0600 database keeps
    them 0600 too; existing siblings (from an older gbtrack) are tightened here.
    """
    try:
        fd = os.open(path, os.O_CREAT | os.O_RDWR | getattr(os, "O_CLOEXEC", 0), _PRIVATE)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot create the outbox {str(path)!r} ({exc.strerror})"
        ) from exc
    os.close(fd)
    for suffix in _SIBLINGS:
        target = f"{path}{suffix}"
        with contextlib.suppress(OSError):  # absent, or owned by another user: leave it
            mode = os.stat(target).st_mode & 0o777
            if mode & 0o077:
                os.chmod(target, mode & 0o700)


def _table(table: str) -> str:
    if table not in ("pending", "dead"):
        raise ValueError(f"unknown table {table!r}")
    return table


def _pending_row(r: Sequence[Any]) -> OutboxRow:
    return OutboxRow(
        "pending", r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8],
        next_attempt_at=r[9], claimed_by=r[10], lease_until=r[11], last_error=r[12],
        claim_token=r[13], kind=kind_of(r[14]), ambiguous=bool(r[15]),
    )  # fmt: skip


def _dead_row(r: Sequence[Any]) -> OutboxRow:
    return OutboxRow(
        "dead", r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8],
        status=r[9], code=r[10], message=r[11], failed_at=r[12],
        kind=kind_of(r[13]), ambiguous=bool(r[14]),
    )  # fmt: skip


def kind_of(value: object) -> Kind:
    """A ``kind`` column's value as a :data:`Kind`: anything but ``"order"`` is an event.

    Every row of gbtrack 0.1.0 is an event.
    """
    return "order" if value == "order" else "event"
