"""``gbtrack outbox <verb> --url ...``: the same verbs on the SQL outbox; init and ddl."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from tests.outbox.conftest import make_events

from gbtrack import Event
from gbtrack.cli import main
from gbtrack.emulator import GameballEmulator
from gbtrack.outbox._sql import SqlOutboxStore, ddl, metadata


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def seeded(sql_url: str) -> str:
    """Four pending rows and two dead letters (codes 3003 and 1000) in the SQL outbox."""
    with SqlOutboxStore(sql_url) as store:
        signup = Event(
            name="signup", customer_id="c-42", email="john@example.com",
            mobile="+1234567890", metadata={"seq": 100},
        )  # fmt: skip
        store.append([signup, *make_events(5)])
        rows = store.claim("w", 2, lease=30)
        store.bury([rows[0].id], status=422, code=3003, message="rejected: Invalid Value")
        store.bury([rows[1].id], status=401, code=1000, message="rejected: Unauthorized")
    return sql_url


def test_stats_list_show_retry_purge_export(
    seeded: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "outbox", "--url", seeded, "stats", "--json")
    data = json.loads(out)
    assert code == 0
    assert (data["pending"], data["dead"], data["rows"]) == (4, 2, 6)
    assert data["url"].split("://")[0] == seeded.split("://")[0]
    code, out, _ = run(capsys, "outbox", "list", "--dead", "--url", seeded)
    assert code == 0
    assert "j***@example.com" in out
    assert "john@example.com" not in out
    code, out, _ = run(capsys, "outbox", "--url", seeded, "list", "--dead", "--json")
    dead_id = json.loads(out.splitlines()[0])["id"]
    code, out, _ = run(capsys, "outbox", "--url", seeded, "show", str(dead_id), "--dead")
    assert code == 0
    assert json.loads(out)["code"] == 3003
    code, out, _ = run(capsys, "outbox", "--url", seeded, "retry", "--code", "1000")
    assert (code, out.strip()) == (0, "moved 1 dead letter(s) back to pending")
    code, out, _ = run(capsys, "outbox", "--url", seeded, "export")
    assert code == 0
    assert len(out.splitlines()) == 5
    code, out, _ = run(capsys, "outbox", "--url", seeded, "export", "--dead")
    assert "john@example.com" in out  # export is unmasked unless --mask
    code, out, _ = run(capsys, "outbox", "--url", seeded, "purge", "--dead", "--yes")
    assert (code, out.strip()) == (0, "deleted 1 dead row(s)")
    code, _, _ = run(capsys, "outbox", "--url", seeded, "purge", "--dead", "--yes")
    assert code == 3


def test_drain_delivers_to_the_emulator(
    seeded: str,
    gameball_emulator: GameballEmulator,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GAMEBALL_API_KEY", "test-api-key")
    base = ["outbox", "--url", seeded, "drain", "--base-url", gameball_emulator.url]
    code, out, err = run(capsys, *base)
    assert code == 0, err
    assert out.strip() == "delivered 4, dead 0, retried 0, left pending 0"
    assert sorted(e.metadata["seq"] for e in gameball_emulator.events) == [1, 2, 3, 4]


def test_init_creates_the_tables_and_is_idempotent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    code, _, err = run(capsys, "outbox", "--url", url, "stats")
    assert code == 1
    assert "gbtrack outbox init" in err  # missing tables: says how to create them
    for _ in range(2):
        code, out, _ = run(capsys, "outbox", "init", "--url", url)
        assert code == 0
        assert "outbox tables ready" in out
    monkeypatch.setenv("GBTRACK_OUTBOX_URL", url)
    code, out, _ = run(capsys, "outbox", "stats", "--json")
    assert (code, json.loads(out)["pending"]) == (0, 0)


def test_init_on_postgresql_and_the_tables_match_the_metadata(
    postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = sa.create_engine(postgres_url)
    metadata.drop_all(engine)
    code, _, err = run(capsys, "outbox", "init", "--url", postgres_url)
    assert code == 0, err
    names = set(sa.inspect(engine).get_table_names())
    engine.dispose()
    assert {"gbtrack_outbox", "gbtrack_outbox_dead"} <= names


def test_ddl_by_dialect_and_by_url(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "outbox", "ddl", "--dialect", "postgresql")
    assert code == 0
    assert out == ddl("postgresql")
    assert "BIGSERIAL" in out
    code, out, _ = run(capsys, "outbox", "ddl", "--url", "mysql+pymysql://u@h/db")
    assert (code, out) == (0, ddl("mysql"))
    code, _, err = run(capsys, "outbox", "ddl", "--dialect", "nosuchdb")
    assert code == 2
    assert "nosuchdb" in err


def test_path_and_url_together_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    code, _, err = run(capsys, "outbox", "--path", str(tmp_path / "f.db"), "--url", url, "stats")
    assert code == 2
    assert "not both" in err


def test_a_password_is_never_printed(capsys: pytest.CaptureFixture[str]) -> None:
    url = "postgresql+psycopg://user:hunter2@127.0.0.1:1/none"
    code, out, err = run(capsys, "outbox", "--url", url, "stats")
    assert code == 1
    assert "hunter2" not in out + err


def test_as_a_subprocess(seeded: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gbtrack", "outbox", "--url", seeded, "stats"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "pending     4 (0 claimed)" in done.stdout
