"""A damaged outbox file (random bytes mid-file, header intact): no raw sqlite3 errors.

The sender never raises from ``send``/``flush``/``close`` (``close`` runs from exit
hooks); what it could not write is dropped, counted once as ``outbox_error``, logged
and reported; the store raises :class:`~gbtrack.outbox.OutboxError` (a
``GbtrackError``); the CLI prints one line and exits 1.
"""

from __future__ import annotations

import logging
import random
import sqlite3
from pathlib import Path

import pytest

from gbtrack import GbtrackError, TrackingError
from gbtrack.cli import main
from gbtrack.gameball import GameballClient
from gbtrack.outbox import OutboxError, OutboxSender, OutboxStore

from .conftest import FakeGameball, make_events

PAGE = 4096
# Pages whose damage leaves the file openable: the writes fail (1, 12) or the reads
# fail after the writes succeeded (6). Found by damaging each page of this file.
DAMAGED_PAGES = (1, 6, 12)


def damage(path: Path, page: int) -> None:
    """Overwrite one page of ``path`` (never the header page) with random bytes."""
    noise = random.Random(page).randbytes(PAGE)
    with path.open("r+b") as file:
        file.seek(PAGE * page)
        file.write(noise)


@pytest.fixture(params=DAMAGED_PAGES, ids=lambda page: f"page{page}")
def damaged(request: pytest.FixtureRequest, outbox_path: Path) -> Path:
    with OutboxStore(outbox_path) as store:
        store.append(make_events(100))
    damage(outbox_path, request.param)
    try:
        OutboxStore(outbox_path).close()
    except GbtrackError:
        pytest.skip("this SQLite refuses the file at open (also fine: a clear error)")
    return outbox_path


@pytest.mark.parametrize("sync", ["batch", "every_event"])
def test_sender_never_raises_and_counts_each_event_once(
    damaged: Path,
    client: GameballClient,
    fake_gameball: FakeGameball,
    sync: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    errors: list[TrackingError] = []
    sender = OutboxSender(
        client,
        path=damaged,
        sync=sync,
        idle_interval=0.05,
        on_error=errors.append,  # type: ignore[arg-type]
    )
    with caplog.at_level(logging.WARNING, logger="gbtrack"):
        for event in make_events(200, start=1000):
            sender.send(event)
        flushed = sender.flush(timeout=2)
        before_close = sender.stats()
        closed = sender.close(timeout=2)
    assert isinstance(flushed, bool)
    assert isinstance(closed, bool)
    stats = sender.stats()
    dropped = stats.dropped.get("outbox_error", 0)
    assert set(stats.dropped) <= {"outbox_error"}
    # Counted once: written to the file or dropped, never both, never neither.
    assert sender.reporter.get("persisted") + dropped == 200
    assert len([e for e in errors if e.reason == "outbox_error"]) >= min(dropped, 1)
    if dropped:
        assert "outbox_error" in caplog.text
    # No row this process could not commit is visible as persisted.
    assert before_close.persisted <= 100 + sender.reporter.get("persisted")
    if not (flushed and closed):
        assert stats.last_error is not None


def test_store_operations_raise_outbox_error(damaged: Path) -> None:
    store = OutboxStore(damaged)
    operations = (
        lambda: store.append(make_events(50, start=500)),
        store.stats,
        lambda: store.rows("pending"),
        lambda: list(store.iter_rows("pending")),
        lambda: store.claim("w", 100, lease=30),
        lambda: store.count("pending"),
        store.make_ready,
    )
    raised: list[OutboxError] = []
    for operation in operations:
        try:
            operation()
        except OutboxError as exc:
            raised.append(exc)
    assert raised  # the damage shows somewhere
    for exc in raised:
        assert isinstance(exc, GbtrackError)
        assert str(damaged) in str(exc)
        assert isinstance(exc.__cause__, sqlite3.Error)
    store.close()


def test_commit_failure_leaves_no_open_transaction(outbox_path: Path) -> None:
    # A failed COMMIT must roll back: rows the caller counts as dropped must not stay
    # visible (and later committed) through the same connection.
    store = OutboxStore(outbox_path)
    conn = store._db()
    store.append(make_events(1))
    real_execute = conn.execute

    class Failing:
        def __getattr__(self, name: str) -> object:
            return getattr(conn, name)

        def execute(self, sql: str, *args: object) -> object:
            if sql == "COMMIT":
                raise sqlite3.OperationalError("disk I/O error")
            return real_execute(sql, *args)

    store._conn = Failing()  # type: ignore[assignment]
    with pytest.raises(OutboxError):
        store.append(make_events(5, start=10))
    store._conn = conn
    assert not conn.in_transaction
    assert store.count("pending") == 1
    store.close()


@pytest.mark.parametrize(
    "argv",
    [
        ["stats"],
        ["list"],
        ["list", "--dead"],
        ["show", "1"],
        ["export"],
        ["retry"],
        ["purge", "--pending", "--yes"],
        ["drain", "--api-key", "k", "--base-url", "http://127.0.0.1:9", "--timeout", "1"],
    ],
    ids=lambda argv: argv[0] if argv[0] != "list" or len(argv) == 1 else "list-dead",
)
def test_cli_on_a_damaged_file_is_one_line_and_exit_1(
    damaged: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code = main(["outbox", "--path", str(damaged), *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    if code in (0, 3):  # this command did not touch the damaged pages
        return
    assert code == 1
    [line] = err.strip().splitlines()
    assert line.startswith("gbtrack outbox: ")
    assert "damaged" in line or "malformed" in line
