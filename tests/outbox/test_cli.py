"""``gbtrack outbox ...`` end to end: in-process through ``main`` and once as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gbtrack import Event
from gbtrack.cli import main
from gbtrack.emulator import GameballEmulator
from gbtrack.outbox import OutboxStore

from .conftest import make_events


@pytest.fixture
def seeded(outbox_path: Path) -> Path:
    """Four pending rows and two dead letters (codes 3003 and 1000)."""
    with OutboxStore(outbox_path) as store:
        signup = Event(
            name="signup",
            customer_id="c-42",
            email="john@example.com",
            mobile="+1234567890",
            metadata={"seq": 100},
        )
        store.append([signup, *make_events(5)])
        rows = store.claim("w", 2, lease=30)
        store.bury([rows[0].id], status=422, code=3003, message="rejected: Invalid Value")
        store.bury([rows[1].id], status=401, code=1000, message="rejected: Unauthorized")
    return outbox_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_stats(seeded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "outbox", "--path", str(seeded), "stats", "--json")
    assert code == 0
    data = json.loads(out)
    assert (data["pending"], data["dead"], data["rows"]) == (4, 2, 6)
    assert data["oldest_age_seconds"] >= 0
    code, out, _ = run(capsys, "outbox", "--path", str(seeded), "stats")
    assert code == 0
    assert "pending     4" in out


def test_list_and_show_mask_pii(seeded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "outbox", "--path", str(seeded), "list", "--dead")
    assert code == 0
    assert "j***@example.com" in out
    assert "***7890" in out
    assert "john@example.com" not in out
    assert "code=3003" in out
    code, out, _ = run(capsys, "outbox", "--path", str(seeded), "list", "--json")
    assert code == 0
    assert len(out.splitlines()) == 4
    with OutboxStore(seeded) as store:
        dead_id = store.rows("dead")[0].id
    code, out, _ = run(capsys, "outbox", "--path", str(seeded), "show", str(dead_id), "--dead")
    assert code == 0
    shown = json.loads(out)
    assert shown["event"]["email"] == "j***@example.com"
    assert shown["code"] == 3003
    assert "+1234567890" not in out
    code, _, err = run(capsys, "outbox", "--path", str(seeded), "show", "999999")
    assert code == 1
    assert "no pending row" in err


def test_retry_filters_and_nothing_to_do(seeded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "outbox", "--path", str(seeded), "retry", "--code", "3003")
    assert (code, out.strip()) == (0, "moved 1 dead letter(s) back to pending")
    code, _, _ = run(capsys, "outbox", "--path", str(seeded), "retry", "--code", "3003")
    assert code == 3
    code, _, _ = run(capsys, "outbox", "--path", str(seeded), "retry", "--since", "2099-01-01")
    assert code == 3
    code, out, _ = run(capsys, "outbox", "--path", str(seeded), "retry", "--since", "1h")
    assert code == 0
    with OutboxStore(seeded) as store:
        assert (store.count(), store.count("dead")) == (6, 0)


def test_purge_needs_confirmation(seeded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # stdin is not a terminal under pytest: without --yes the purge is refused.
    code, _, err = run(capsys, "outbox", "--path", str(seeded), "purge", "--dead")
    assert code == 3
    assert "aborted" in err
    code, out, _ = run(capsys, "outbox", "--path", str(seeded), "purge", "--dead", "--yes")
    assert (code, out.strip()) == (0, "deleted 2 dead row(s)")
    code, _, _ = run(capsys, "outbox", "--path", str(seeded), "purge", "--dead", "--yes")
    assert code == 3
    with pytest.raises(SystemExit) as exc:
        main(["outbox", "--path", str(seeded), "purge"])  # --dead or --pending is required
    assert exc.value.code == 2


def test_export_json_lines(seeded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "outbox", "--path", str(seeded), "export", "--dead")
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["code"] for line in lines] == [3003, 1000]
    assert lines[0]["event"]["email"] == "john@example.com"  # export is the data itself
    code, out, _ = run(capsys, "outbox", "--path", str(seeded), "export", "--dead", "--mask")
    assert "john@example.com" not in out


def test_missing_outbox_is_nothing_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "outbox", "--path", str(tmp_path / "none.db"), "stats")
    assert code == 3
    assert "no outbox" in err
    assert not (tmp_path / "none.db").exists()


def test_drain_delivers_and_reports(
    seeded: Path,
    gameball_emulator: GameballEmulator,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GAMEBALL_API_KEY", raising=False)
    base = ["outbox", "--path", str(seeded), "drain", "--base-url", gameball_emulator.url]
    code, _, err = run(capsys, *base)
    assert code == 2
    assert "API key" in err
    monkeypatch.setenv("GAMEBALL_API_KEY", "test-api-key")
    code, out, err = run(capsys, *base)
    assert code == 0, err
    assert out.strip() == "delivered 4, dead 0, retried 0, left pending 0"
    assert err == ""  # not a terminal, and quick: no progress lines at all
    assert "test-api-key" not in out + err
    assert sorted(e.metadata["seq"] for e in gameball_emulator.events) == [1, 2, 3, 4]
    code, out, _ = run(capsys, *base)
    assert (code, out.strip()) == (3, "nothing to drain")


def test_drain_with_a_wrong_key_stops_and_keeps_the_backlog(
    seeded: Path, gameball_emulator: GameballEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    # A wrong key is the operator's mistake, not the events': nothing moves to dead.
    code, out, err = run(
        capsys,
        "outbox",
        "--path",
        str(seeded),
        "drain",
        "--api-key",
        "wrong-key",
        "--base-url",
        gameball_emulator.url,
    )
    assert code == 1
    assert "wrong-key" not in out + err
    [line] = err.strip().splitlines()
    assert "API key" in line
    assert "1000" in line
    assert "left pending" in line
    assert "dead 0" in out
    assert gameball_emulator.requests[("v4.0/events", 401)] == 1  # stopped at the first
    with OutboxStore(seeded) as store:
        assert store.count("pending") == 4
        assert store.count("dead") == 2  # the two seeded ones only
        assert all(r.attempts == 0 and r.claimed_by is None for r in store.rows("pending"))


def test_drain_with_a_missing_secret_key_stops_too(
    seeded: Path, gameball_emulator: GameballEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    gameball_emulator.high_security = True  # v4.0 needs the SecretKey: 401/1001
    code, _out, err = run(
        capsys,
        "outbox",
        "--path",
        str(seeded),
        "drain",
        "--api-key",
        "test-api-key",
        "--base-url",
        gameball_emulator.url,
    )
    assert code == 1
    [line] = err.strip().splitlines()
    assert "1001" in line
    with OutboxStore(seeded) as store:
        assert store.count("pending") == 4


def test_drain_to_an_unreachable_server_is_quiet_and_says_why(
    seeded: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again below: connections are refused
    code, out, err = run(
        capsys,
        "outbox",
        "--path",
        str(seeded),
        "drain",
        "--api-key",
        "test-api-key",
        "--base-url",
        f"http://127.0.0.1:{port}",
        "--timeout",
        "2.5",
    )
    assert code == 1
    assert len(err.splitlines()) <= 1  # at most one progress line per interval
    summary = out.strip()
    assert "left pending 4" in summary
    assert "last error:" in summary
    assert "could not connect" in summary


def test_drain_progress_on_a_terminal(
    seeded: Path,
    gameball_emulator: GameballEmulator,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    code, _out, err = run(
        capsys,
        "outbox",
        "--path",
        str(seeded),
        "drain",
        "--api-key",
        "test-api-key",
        "--base-url",
        gameball_emulator.url,
    )
    assert code == 0, err
    assert "\r[########################] 100% drain: 4/4 settled" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["drain", "--base-url", "ftp://example.com"], "--base-url"),
        (["drain", "--base-url", "not a url"], "--base-url"),
        (["drain", "--timeout", "-1"], "--timeout"),
        (["drain", "--timeout", "nan"], "--timeout"),
    ],
)
def test_drain_usage_errors(
    seeded: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["outbox", "--path", str(seeded), *argv, "--api-key", "k"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_path_after_the_subcommand(seeded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "outbox", "stats", "--json", "--path", str(seeded))
    assert code == 0
    assert json.loads(out)["pending"] == 4
    code, out, _ = run(capsys, "outbox", "list", "--dead", "--path", str(seeded))
    assert code == 0
    assert len(out.strip().splitlines()) == 2


def test_help_documents_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["outbox", "--help"], ["outbox", "drain", "--help"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0
        out = capsys.readouterr().out
        assert "exit codes:" in out
        assert "3  nothing to do" in out
    assert main(["outbox"]) == 2


def test_real_subprocess(seeded: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gbtrack.cli", "outbox", "--path", str(seeded), "stats", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["pending"] == 4


def test_drain_through_the_batch_endpoint(
    seeded: Path, gameball_emulator: GameballEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys,
        "outbox",
        "--path",
        str(seeded),
        "drain",
        "--api-key",
        "test-api-key",
        "--secret-key",
        "test-secret-key",
        "--base-url",
        gameball_emulator.url,
        "--bulk-threshold",
        "1",
    )
    assert code == 0, err
    assert "test-secret-key" not in out + err
    assert {e.version for e in gameball_emulator.events} == {"batch"}
    assert len(gameball_emulator.events) == 4


def test_progress_bar() -> None:
    from gbtrack.outbox._cli import _bar

    assert _bar(0, 4) == "[........................]   0%"
    assert _bar(1, 4) == "[######..................]  25%"
    assert _bar(5, 4) == "[########################] 100%"
    assert _bar(0, 0) == "[########################] 100%"


def test_orders_show_their_kind_and_requeue_by_kind(
    outbox_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import time

    from gbtrack._order import order_draft
    from gbtrack.outbox._store import StoredOrder

    draft = order_draft(
        customer_id="c-7",
        order_id="ORD-9",
        total_paid=12,
        order_date="2026-12-07T10:00:00Z",
        email="shopper@example.com",
        now=time.time(),
    )
    with OutboxStore(outbox_path) as store:
        store.append([*make_events(1), StoredOrder.of(draft)])
        rows = store.claim("w", 2, lease=30)
        store.bury([r.id for r in rows], status=422, code=9004, message="duplicate: no")
    code, out, _ = run(capsys, "outbox", "--path", str(outbox_path), "list", "--dead")
    assert code == 0
    order_line = out.splitlines()[1]
    assert "order ORD-9  customer=c-7" in order_line
    assert "shopper@example.com" not in order_line  # masked
    code, out, _ = run(capsys, "outbox", "--path", str(outbox_path), "list", "--dead", "--json")
    assert [json.loads(line)["kind"] for line in out.splitlines()] == ["event", "order"]
    code, out, _ = run(capsys, "outbox", "--path", str(outbox_path), "stats", "--json")
    assert (json.loads(out)["dead"], json.loads(out)["dead_orders"]) == (2, 1)
    code, out, _ = run(capsys, "outbox", "--path", str(outbox_path), "stats")
    assert "orders      0 pending, 1 dead" in out
    code, out, _ = run(capsys, "outbox", "--path", str(outbox_path), "retry", "--kind", "order")
    assert (code, out.strip()) == (0, "moved 1 dead letter(s) back to pending")
    with OutboxStore(outbox_path) as store:
        assert [(r.kind, r.name) for r in store.rows()] == [("order", "ORD-9")]
