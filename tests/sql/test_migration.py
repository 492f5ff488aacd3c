"""Outboxes of gbtrack 0.1.0 as first released (no ``claim_token`` column) open, and get it.

The layouts below are verbatim what 0.1.0 first created: ``gbtrack outbox ddl`` for the
SQL outbox (SQLite and PostgreSQL), and the outbox file's schema (``user_version`` 1).
``tests/data`` holds a later layout, still versioned 0.1.0 (``claim_token``, no orders),
for ``test_upgrade_0_1_0.py``: the two share most of their lines on purpose.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from tests.outbox.conftest import make_events

from gbtrack.outbox import OutboxStore
from gbtrack.outbox._sql import SqlOutboxStore, metadata

SQL_SQLITE_0_1_0 = """\
CREATE TABLE gbtrack_outbox (
    id INTEGER NOT NULL,
    event_id VARCHAR(64) NOT NULL,
    name VARCHAR(255) NOT NULL,
    customer_id VARCHAR(255) NOT NULL,
    payload TEXT NOT NULL,
    size INTEGER NOT NULL,
    created_at DOUBLE NOT NULL,
    enqueued_at DOUBLE NOT NULL,
    attempts INTEGER DEFAULT '0' NOT NULL,
    next_attempt_at DOUBLE DEFAULT '0' NOT NULL,
    claimed_by VARCHAR(255),
    lease_until DOUBLE,
    last_error TEXT,
    PRIMARY KEY (id)
);

CREATE INDEX ix_gbtrack_outbox_claimed_by ON gbtrack_outbox (claimed_by);

CREATE INDEX ix_gbtrack_outbox_ready ON gbtrack_outbox (next_attempt_at);

CREATE TABLE gbtrack_outbox_dead (
    id INTEGER NOT NULL,
    event_id VARCHAR(64) NOT NULL,
    name VARCHAR(255) NOT NULL,
    customer_id VARCHAR(255) NOT NULL,
    payload TEXT NOT NULL,
    size INTEGER NOT NULL,
    created_at DOUBLE NOT NULL,
    enqueued_at DOUBLE NOT NULL,
    attempts INTEGER NOT NULL,
    status INTEGER,
    code INTEGER,
    message TEXT,
    failed_at DOUBLE NOT NULL,
    PRIMARY KEY (id)
);
"""

SQL_POSTGRESQL_0_1_0 = """\
CREATE TABLE gbtrack_outbox (
    id BIGSERIAL NOT NULL,
    event_id VARCHAR(64) NOT NULL,
    name VARCHAR(255) NOT NULL,
    customer_id VARCHAR(255) NOT NULL,
    payload TEXT NOT NULL,
    size INTEGER NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    enqueued_at DOUBLE PRECISION NOT NULL,
    attempts INTEGER DEFAULT '0' NOT NULL,
    next_attempt_at DOUBLE PRECISION DEFAULT '0' NOT NULL,
    claimed_by VARCHAR(255),
    lease_until DOUBLE PRECISION,
    last_error TEXT,
    PRIMARY KEY (id)
);

CREATE INDEX ix_gbtrack_outbox_claimed_by ON gbtrack_outbox (claimed_by);

CREATE INDEX ix_gbtrack_outbox_ready ON gbtrack_outbox (next_attempt_at);

CREATE TABLE gbtrack_outbox_dead (
    id BIGSERIAL NOT NULL,
    event_id VARCHAR(64) NOT NULL,
    name VARCHAR(255) NOT NULL,
    customer_id VARCHAR(255) NOT NULL,
    payload TEXT NOT NULL,
    size INTEGER NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    enqueued_at DOUBLE PRECISION NOT NULL,
    attempts INTEGER NOT NULL,
    status INTEGER,
    code INTEGER,
    message TEXT,
    failed_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (id)
);
"""

FILE_0_1_0 = """\
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
    last_error      TEXT
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
    failed_at   REAL    NOT NULL
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


def _columns(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        return [c["name"] for c in sa.inspect(engine).get_columns("gbtrack_outbox")]
    finally:
        engine.dispose()


def _old_rows_still_deliverable(store: SqlOutboxStore | OutboxStore) -> None:
    rows = store.claim("w", 10, lease=30)
    assert [r.event().metadata["seq"] for r in rows] == [0, 1, 2]
    token = rows[0].claim_token
    assert token is not None
    assert store.extend("w", [r.id for r in rows], lease=30, token=token) == [r.id for r in rows]
    assert store.complete([r.id for r in rows], token=token) == 3


def test_sql_outbox_of_0_1_0_on_sqlite_gets_the_claim_token(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    url = f"sqlite:///{path}"
    with sqlite3.connect(path) as db:
        db.executescript(SQL_SQLITE_0_1_0)
    with SqlOutboxStore(url) as old:  # opening migrates
        assert "claim_token" in _columns(url)
        old.append(make_events(3))
        _old_rows_still_deliverable(old)
    with SqlOutboxStore(url) as again:  # the second open finds it done
        assert again.count() == 0


def test_sql_outbox_of_0_1_0_on_postgresql_gets_the_claim_token(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    try:
        metadata.drop_all(engine)
        with engine.begin() as conn:
            for statement in SQL_POSTGRESQL_0_1_0.split(";"):
                if statement.strip():
                    conn.exec_driver_sql(statement)
        with engine.begin() as conn:  # a row written by 0.1.0, before the upgrade
            conn.exec_driver_sql(
                "INSERT INTO gbtrack_outbox (event_id, name, customer_id, payload, size,"
                " created_at, enqueued_at) VALUES ('e', 'n', 'c', '{}', 1, 1, 1)"
            )
    finally:
        engine.dispose()
    assert "claim_token" not in _columns(postgres_url)
    with SqlOutboxStore(postgres_url) as store:
        assert "claim_token" in _columns(postgres_url)
        (row,) = store.rows()
        assert row.claim_token is None
        store.purge("pending")
        store.append(make_events(3))
        _old_rows_still_deliverable(store)
    with SqlOutboxStore(postgres_url, create=True):  # create= on a migrated table: a no-op
        pass


def test_outbox_file_of_0_1_0_gets_the_claim_token(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(FILE_0_1_0)
        db.execute("PRAGMA user_version=1")
    with OutboxStore(path) as store:
        store.append(make_events(3))
        _old_rows_still_deliverable(store)
    with sqlite3.connect(path) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(pending)")]
        assert columns[-3:] == ["claim_token", "kind", "ambiguous"]  # added at the end
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1  # additive: 0.1.0 opens it


def _old_sqlite_engine(tmp_path: Path) -> sa.Engine:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript(SQL_SQLITE_0_1_0)
    return sa.create_engine(f"sqlite:///{path}")


def test_another_process_migrating_first_is_no_error(tmp_path: Path) -> None:
    """Two processes open a 0.1.0 table at once: the one whose ALTER loses the race finds
    the column there and opens the store."""
    engine = _old_sqlite_engine(tmp_path)

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _other_process_first(conn: object, cursor: object, statement: str, *_: object) -> None:
        if statement.startswith("ALTER TABLE gbtrack_outbox ADD COLUMN claim_token"):
            with sqlite3.connect(tmp_path / "old.db") as other:
                other.execute("ALTER TABLE gbtrack_outbox ADD COLUMN claim_token VARCHAR(32)")

    try:
        with SqlOutboxStore(engine) as store:
            store.append(make_events(3))
            _old_rows_still_deliverable(store)
    finally:
        engine.dispose()


def test_a_migration_that_fails_for_another_reason_says_so(tmp_path: Path) -> None:
    """An ALTER refused for another reason (no privilege, say) leaves no column: the
    store does not open, and the error says why."""
    from gbtrack import ConfigurationError

    engine = _old_sqlite_engine(tmp_path)

    @sa.event.listens_for(engine, "before_cursor_execute", retval=True)
    def _refused(
        conn: object, cursor: object, statement: str, parameters: object, *_: object
    ) -> tuple[str, object]:
        if statement.startswith("ALTER TABLE gbtrack_outbox"):
            statement = "ALTER TABLE no_such_table ADD COLUMN claim_token VARCHAR(32)"
        return statement, parameters

    try:
        with pytest.raises(ConfigurationError, match="no_such_table"):
            SqlOutboxStore(engine)
        assert "claim_token" not in [
            c["name"] for c in sa.inspect(engine).get_columns("gbtrack_outbox")
        ]
    finally:
        engine.dispose()
