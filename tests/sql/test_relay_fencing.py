"""Two live relays never send the same row: leases renewed in flight, rows fenced by token.

Counted at the emulator. Slow answers against short leases used to let rows expire while
their relay was still working through its claim (issue 18: 63 of 200 duplicated); a
relay frozen (SIGSTOP) past its lease used to send and delete, when thawed, rows another
relay had claimed and sent meanwhile. Both start real relays (seconds each on a loaded
machine): marked slow; ``test_drainer_fencing.py`` covers the first in process.
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest
from tests.outbox.conftest import make_events
from tests.sql._relays import RelayProcess, seqs, wait_until
from tests.sql.conftest import fresh_tables

from gbtrack.emulator import GameballEmulator
from gbtrack.outbox._sql import SqlOutboxStore


@pytest.mark.slow
def test_slow_answers_short_leases_two_relays_none_twice(
    postgres_url: str, gameball_emulator_factory: object, tmp_path: Path
) -> None:
    """Claims of 40 rows at 2 requests in flight and 0.1 s answers take ~2 s, longer than
    the 1.5 s lease: the heartbeat keeps the rows, the other relay never gets them."""
    emu: GameballEmulator = gameball_emulator_factory()  # type: ignore[operator]
    emu.faults.set_latency(0.1)
    fresh_tables(postgres_url)
    n = 120
    args = (
        "--election", "none", "--lease", "1.5", "--claim-size", "40", "--concurrency", "2",
        "--bulk-threshold", "100000",
    )  # fmt: skip
    with SqlOutboxStore(postgres_url) as store:
        store.append(make_events(n, customers=n))
        relays = [RelayProcess(postgres_url, emu, tmp_path / f"{i}.log", *args) for i in range(2)]
        try:
            wait_until(lambda: store.count("pending") == 0, 60, "delivery")
        finally:
            results = [relay.terminate() for relay in relays]
    assert [code for code, _ in results] == [0, 0]
    counts = seqs(emu)
    assert len(counts) == n
    assert sum(c - 1 for c in counts.values()) == 0  # none twice
    assert emu.rate_limited == 0


@pytest.mark.slow
def test_relay_frozen_past_its_lease_neither_sends_nor_settles_fenced_rows(
    postgres_url: str, gameball_emulator_factory: object, tmp_path: Path
) -> None:
    """Relay A sends one event a second from a claim of 20 and is SIGSTOPped between two
    sends for longer than its 2 s lease; relay B claims the rest and delivers them. When
    A is thawed, the rows it still believes it holds are fenced: not sent, not deleted."""
    emu: GameballEmulator = gameball_emulator_factory()  # type: ignore[operator]
    fresh_tables(postgres_url)
    n = 20
    common = ("--election", "none", "--lease", "2", "--bulk-threshold", "100000")
    with SqlOutboxStore(postgres_url) as store:
        store.append(make_events(n, customers=n))
        a = RelayProcess(
            postgres_url, emu, tmp_path / "a.log", *common,
            "--claim-size", "20", "--concurrency", "1", "--rate-limits", "1/1",
        )  # fmt: skip
        b: RelayProcess | None = None
        try:
            wait_until(lambda: len(emu.events) >= 2, 30, "A's first sends")
            # Freeze A while it waits for its next slot, not mid-request: its last answer
            # went out 0.3 s ago and the next send is due ~1 s after the previous one.
            wait_until(lambda: time.time() - _last_arrival(emu) > 0.3, 5, "a pause in A")
            a.proc.send_signal(signal.SIGSTOP)
            sent_by_a = len(emu.events)
            b = RelayProcess(postgres_url, emu, tmp_path / "b.log", *common)
            wait_until(lambda: len(emu.events) == n, 60, "B to deliver A's expired rows")
            a.proc.send_signal(signal.SIGCONT)
            a.wait_for("claimed by another worker")  # A found out: its rows are B's
            code_a, out_a = a.terminate(60)
        finally:
            a.proc.send_signal(signal.SIGCONT)
            if a.proc.poll() is None:
                a.kill()
            if b is not None:
                code_b, out_b = b.terminate()
        assert code_a == 0, a.stderr()
        assert code_b == 0
        assert store.count("pending") == 0
    counts = seqs(emu)
    assert sorted(counts) == list(range(n))
    assert max(counts.values()) == 1  # A sent none of the rows B had taken
    fenced = re.search(r"fenced (\d+)", out_a)
    assert fenced is not None, out_a
    assert int(fenced.group(1)) == n - sent_by_a  # every other row A held: left to B
    assert out_a.startswith(f"delivered {sent_by_a},"), out_a
    assert out_b.startswith(f"delivered {n - sent_by_a},"), out_b


def _last_arrival(emu: GameballEmulator) -> float:
    log = emu.request_log
    return max((r.received_at for r in log), default=0.0)


def test_leases_and_retry_times_follow_the_database_clock(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relay whose clock runs an hour fast still leases for 30 s and backs off for 10 s
    as PostgreSQL counts them: its claims neither outlive nor undercut the others'."""
    fresh_tables(postgres_url)
    real = time.time
    with SqlOutboxStore(postgres_url) as store:
        store.append(make_events(2))
        monkeypatch.setattr(time, "time", lambda: real() + 3600.0)
        first, second = store.claim("fast", 2, lease=30)
        assert first.lease_until is not None
        assert abs(first.lease_until - (real() + 30)) < 5
        assert first.claim_token is not None
        assert store.extend("fast", [first.id], lease=60, token=first.claim_token) == [first.id]
        renewed = store.get("pending", first.id)
        assert renewed is not None
        assert renewed.lease_until is not None
        assert abs(renewed.lease_until - (real() + 60)) < 5
        store.release("fast", [second.id], delay=10, token=second.claim_token)
        back = store.get("pending", second.id)
        assert back is not None
        assert back.next_attempt_at is not None
        assert abs(back.next_attempt_at - (real() + 10)) < 5
        monkeypatch.setattr(time, "time", real)
        wait = store.next_ready_in()
        assert wait is not None
        assert 5 < wait <= 10.5
