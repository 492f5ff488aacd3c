"""The SQLite store: schema, round trip, operations, paths.

Leases and dead letters are tested once for every store in tests/sql/test_store_contract.py.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from pydantic import SecretStr

from gbtrack import ConfigurationError, Event
from gbtrack.outbox import OutboxStore, default_outbox_path, resolve_outbox_path
from gbtrack.outbox._store import decode_event, encode_event

from .conftest import make_events


def test_file_is_wal_with_both_tables(store: OutboxStore) -> None:
    conn = sqlite3.connect(store.path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"pending", "dead"} <= tables
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    finally:
        conn.close()


def test_event_round_trip_keeps_everything_but_the_token() -> None:
    event = Event(
        name="purchase",
        customer_id="c-1",
        email="john@example.com",
        mobile="+1234567890",
        metadata={"amount": 149.99, "vip": True, "n": 3, "order": "ORD-1"},
        session_token=SecretStr("tok-very-secret"),
    )
    text = encode_event(event)
    assert "tok-very-secret" not in text
    back = decode_event(text)
    assert back.session_token is None
    assert back.model_dump(exclude={"session_token"}) == event.model_dump(exclude={"session_token"})


def test_session_token_never_reaches_the_file(store: OutboxStore) -> None:
    event = Event(name="e", customer_id="c", session_token=SecretStr("tok-XYZZY-123"))
    assert store.append([event]) == 1
    store.close()
    for suffix in ("", "-wal"):
        file = Path(f"{store.path}{suffix}")
        if file.exists():
            assert b"tok-XYZZY-123" not in file.read_bytes()


def test_append_claim_complete(store: OutboxStore) -> None:
    events = make_events(10)
    assert store.append(events) == 10
    rows = store.claim("w1", 4, lease=30)
    assert [r.event().event_id for r in rows] == [e.event_id for e in events[:4]]
    assert all(r.claimed_by == "w1" for r in rows)
    # Claimed rows are invisible to another worker while the lease lives.
    other = store.claim("w2", 100, lease=30)
    assert {r.id for r in other}.isdisjoint({r.id for r in rows})
    assert len(other) == 6
    assert store.complete([r.id for r in rows]) == 4
    assert store.count("pending") == 6
    assert store.stats().claimed == 6


def test_purge_and_stats(store: OutboxStore) -> None:
    store.append(make_events(4))
    rows = store.claim("w", 1, lease=30)
    store.bury([rows[0].id], status=400, code=3000, message="x")
    stats = store.stats()
    assert (stats.pending, stats.dead, stats.rows) == (3, 1, 4)
    assert stats.bytes > 0
    assert stats.file_bytes > 0
    age = stats.oldest_age()
    assert age is not None
    assert age >= 0
    assert store.purge("dead") == 1
    assert store.purge("pending") == 3
    stats = store.stats()
    assert (stats.pending, stats.dead, stats.rows, stats.bytes) == (0, 0, 0, 0)
    assert stats.oldest_age() is None


def test_export_iterates_every_row_in_order(store: OutboxStore) -> None:
    store.append(make_events(23))
    seqs = [r.event().metadata["seq"] for r in store.iter_rows("pending", page=5)]
    assert seqs == list(range(23))


def test_masked_row_dict(store: OutboxStore) -> None:
    store.append([Event(name="e", customer_id="c", email="john@example.com", mobile="+1234567890")])
    (row,) = store.rows()
    shown = row.to_dict()
    assert shown["event"]["email"] == "j***@example.com"
    assert shown["event"]["mobile"] == "***7890"
    assert row.to_dict(mask=False)["event"]["email"] == "john@example.com"


def test_reopen_keeps_rows(outbox_path: Path) -> None:
    with OutboxStore(outbox_path) as first:
        first.append(make_events(3))
    with OutboxStore(outbox_path) as second:
        assert second.count() == 3


def test_closed_store_refuses(store: OutboxStore) -> None:
    store.close()
    store.close()
    with pytest.raises(ConfigurationError):
        store.count()


def test_needs_a_cap(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="never unbounded"):
        OutboxStore(tmp_path / "x.db", max_rows=None, max_bytes=None)


def test_default_path_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GBTRACK_OUTBOX", str(tmp_path / "explicit.db"))
    assert default_outbox_path() == tmp_path / "explicit.db"
    monkeypatch.delenv("GBTRACK_OUTBOX")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert default_outbox_path() == tmp_path / "xdg" / "gbtrack" / "outbox.sqlite3"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_outbox_path() == tmp_path / "home" / ".local/state/gbtrack/outbox.sqlite3"
    # resolve creates the directory
    assert resolve_outbox_path().parent.is_dir()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_unwritable_directory_is_a_clear_error(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ConfigurationError, match=r"not writable.*GBTRACK_OUTBOX"):
            OutboxStore(locked / "outbox.sqlite3")
    finally:
        locked.chmod(0o700)


def test_path_that_is_a_directory_or_under_a_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="is a directory"):
        OutboxStore(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigurationError, match="cannot create the outbox directory"):
        OutboxStore(blocker / "sub" / "outbox.sqlite3")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc")
def test_uncreatable_directory_is_a_clear_error() -> None:
    # /proc refuses new directories even to root.
    with pytest.raises(ConfigurationError, match=r"cannot create the outbox directory.*GBTRACK"):
        OutboxStore("/proc/gbtrack-outbox-test/outbox.sqlite3")


def _mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o777


def test_files_are_private_to_the_owner(outbox_path: Path) -> None:
    # Emails and mobiles are stored in plain text: the file and its siblings are 0600,
    # whatever the umask allows.
    previous = os.umask(0o022)
    try:
        with OutboxStore(outbox_path) as store:
            assert store.append(make_events(50)) == 50
            rows = store.claim("w", 10, lease=30)
            store.complete([r.id for r in rows])
            siblings = [Path(f"{outbox_path}{s}") for s in ("", "-wal", "-shm")]
            assert all(p.exists() for p in siblings)
            assert {str(p): _mode(p) for p in siblings} == {str(p): 0o600 for p in siblings}
    finally:
        os.umask(previous)


def test_rollback_journal_is_private_too(outbox_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        OutboxStore(outbox_path).close()
        # Another tool may switch the file out of WAL; its journal inherits the mode.
        conn = sqlite3.connect(outbox_path, isolation_level=None)
        try:
            assert conn.execute("PRAGMA journal_mode=PERSIST").fetchone()[0] == "persist"
            conn.execute("UPDATE totals SET rows = rows")
        finally:
            conn.close()
        journal = Path(f"{outbox_path}-journal")
        assert journal.exists()
        assert _mode(journal) == 0o600
    finally:
        os.umask(previous)


def test_existing_loose_file_is_tightened(outbox_path: Path) -> None:
    OutboxStore(outbox_path).close()
    os.chmod(outbox_path, 0o644)
    with OutboxStore(outbox_path) as store:
        store.append(make_events(1))
        assert _mode(outbox_path) == 0o600
        assert _mode(Path(f"{outbox_path}-wal")) == 0o600
