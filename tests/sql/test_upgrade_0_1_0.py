"""Outboxes written by gbtrack 0.1.0 open, keep their rows as events, and then carry orders.

The fixtures in ``tests/data`` were made by gbtrack 0.1.0 itself (commit 1d98e58, see
``tests/data/make_outbox_0_1_0.py``): an outbox file with three pending events and a
dead letter, and the SQL outbox's DDL for SQLite and PostgreSQL. The SQL tables are
created from that DDL and filled with the file's rows, as 0.1.0 stored them.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from gbtrack._order import order_draft
from gbtrack.emulator import GameballEmulator
from gbtrack.gameball import GameballClient
from gbtrack.outbox import OutboxDrainer, OutboxStore, OutboxStoreProtocol
from gbtrack.outbox._sql import SqlOutboxStore
from gbtrack.outbox._store import StoredOrder
from gbtrack.senders import RetryPolicy

DATA = Path(__file__).resolve().parents[1] / "data"
FILE_0_1_0 = DATA / "outbox-0.1.0.sqlite3"
API_KEY = "gb-api-KEY-4242-abcdef"
SECRET_KEY = "gb-secret-KEY-4242-ghijkl"
_PENDING = ("event_id", "name", "customer_id", "payload", "size", "created_at", "enqueued_at")
_DEAD = (*_PENDING, "attempts", "status", "code", "message", "failed_at")


def _rows_0_1_0(table: str, columns: tuple[str, ...]) -> list[dict[str, Any]]:
    """The fixture file's rows, read without gbtrack from a copy.

    A copy: opening a WAL file, even read-only, makes ``-wal``/``-shm`` files beside it.
    """
    with tempfile.TemporaryDirectory() as where:
        copy = _old_file(Path(where))
        with contextlib.closing(sqlite3.connect(copy)) as db:
            found = db.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY id").fetchall()
    return [dict(zip(columns, row, strict=True)) for row in found]


@pytest.fixture
def emulator() -> Iterator[GameballEmulator]:
    emu = GameballEmulator(api_key=API_KEY, secret_key=SECRET_KEY).start()
    yield emu
    emu.stop()


def _old_file(tmp_path: Path) -> Path:
    path = tmp_path / "outbox.sqlite3"
    shutil.copyfile(FILE_0_1_0, path)
    return path


def _old_sql(dialect: str, url: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS gbtrack_outbox_dead")
            conn.exec_driver_sql("DROP TABLE IF EXISTS gbtrack_outbox")
            ddl = (DATA / f"outbox-0.1.0-{dialect}.sql").read_text(encoding="utf-8")
            for statement in ddl.split(";"):
                if statement.strip():
                    conn.exec_driver_sql(statement)
            columns = [c["name"] for c in sa.inspect(conn).get_columns("gbtrack_outbox")]
            assert "kind" not in columns  # the layout of 0.1.0
            for table, names in (("gbtrack_outbox", _PENDING), ("gbtrack_outbox_dead", _DEAD)):
                marks = ", ".join(f":{n}" for n in names)
                conn.execute(
                    sa.text(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})"),
                    _rows_0_1_0("pending" if table == "gbtrack_outbox" else "dead", names),
                )
    finally:
        engine.dispose()


@pytest.fixture(params=["file", "sql-sqlite", "sql-postgresql"])
def old_store(request: Any, tmp_path: Path) -> Iterator[OutboxStoreProtocol]:
    """A store opened on an outbox of gbtrack 0.1.0 (upgraded by opening it)."""
    store: OutboxStoreProtocol
    if request.param == "file":
        store = OutboxStore(_old_file(tmp_path))
    else:
        dialect = request.param.removeprefix("sql-")
        if dialect == "sqlite":
            url = f"sqlite:///{tmp_path / 'app.sqlite3'}"
        else:
            url = str(request.getfixturevalue("postgres_url"))
        _old_sql(dialect, url)
        store = SqlOutboxStore(url)
    with store:  # type: ignore[attr-defined]
        yield store


def test_the_fixture_is_a_0_1_0_file(tmp_path: Path) -> None:
    with contextlib.closing(sqlite3.connect(_old_file(tmp_path))) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(pending)")]
        assert "kind" not in columns
        assert "ambiguous" not in columns
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    assert len(_rows_0_1_0("pending", _PENDING)) == 3
    assert len(_rows_0_1_0("dead", _DEAD)) == 1


def test_an_outbox_of_0_1_0_keeps_its_rows_as_events_then_carries_orders(
    old_store: OutboxStoreProtocol, emulator: GameballEmulator
) -> None:
    pending = old_store.rows()
    assert [(r.name, r.kind, r.ambiguous) for r in pending] == [
        ("old_1", "event", False),
        ("old_2", "event", False),
        ("old_3", "event", False),
    ]
    assert [r.event().metadata for r in pending] == [{"n": 1}, {"n": 2}, {"n": 3}]
    [dead] = old_store.rows("dead")
    assert (dead.name, dead.kind, dead.code) == ("old_0", "event", 3000)
    draft = order_draft(
        customer_id="c-1",
        order_id="NEW-1",
        total_paid=40,
        order_date="2026-12-07T10:00:00Z",
        now=time.time(),
    )
    assert old_store.append([StoredOrder.of(draft)]) == 1
    assert old_store.retry_dead() == 1  # the old dead letter comes back as an event
    assert [r.kind for r in old_store.rows()] == ["event", "event", "event", "order", "event"]
    with GameballClient(API_KEY, secret_key=SECRET_KEY, base_url=emulator.url) as client:
        drainer = OutboxDrainer(old_store, client, retry=RetryPolicy(base_delay=0.01))
        try:
            result = drainer.run_once(bulk=False)
        finally:
            drainer.close()
    assert (result.delivered, result.dead) == (5, 0)
    assert old_store.count("pending") == 0
    assert sorted(e.name for e in emulator.events) == ["old_0", "old_1", "old_2", "old_3"]
    assert [o.order_id for o in emulator.orders] == ["NEW-1"]
    assert emulator.points == {"c-1": 40}


def test_the_file_is_upgraded_additively(tmp_path: Path) -> None:
    path = _old_file(tmp_path)
    with OutboxStore(path):
        pass
    with sqlite3.connect(path) as db:
        for table in ("pending", "dead"):
            columns = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
            assert columns[-2:] == ["kind", "ambiguous"]
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1
        assert db.execute("SELECT DISTINCT kind, ambiguous FROM pending").fetchall() == [
            ("event", 0)
        ]
    with OutboxStore(path) as again:  # opening it twice changes nothing
        assert again.count("pending") == 3
