"""``gbtrack relay`` across deploys: SIGTERM finishes the work in flight, counted at the emulator.

A graceful stop claims nothing more, lets the batch job in flight run to its end and
settles its rows, so that the next relay has nothing to send again; a second SIGTERM
(during the shutdown, or while the process exits) still ends in exit code 0. The slow
test is the deploy loop of issue 18: three relays on PostgreSQL, each SIGTERMed and
restarted every few seconds while answers take 0.2-3 s: nothing lost, nothing twice
(10,000 events: the relays before issue 18 sent thousands twice in 20,000).
"""

from __future__ import annotations

import itertools
import signal
import time
from pathlib import Path

import pytest
from tests.outbox.conftest import make_events
from tests.sql._relays import RelayProcess, seqs, wait_until

from gbtrack.emulator import GameballEmulator
from gbtrack.gameball import GameballClient
from gbtrack.outbox import OutboxDrainer
from gbtrack.outbox._sql import SqlOutboxStore


def _job_created(emu: GameballEmulator) -> bool:
    return any(record.endpoint == "batch/events" for record in emu.request_log)


@pytest.mark.slow
def test_sigterm_finishes_the_batch_job_in_flight_none_twice(
    sql_url: str, gameball_emulator_factory: object, tmp_path: Path
) -> None:
    """SIGTERM while a batch job is pending: the relay polls it to its end, deletes its
    rows and exits 0; whatever it left pending would be sent again by the next relay."""
    emu: GameballEmulator = gameball_emulator_factory(batch_delay=1.5)  # type: ignore[operator]
    with SqlOutboxStore(sql_url) as store:
        store.append(make_events(20, customers=20))
        first = RelayProcess(
            sql_url, emu, tmp_path / "1.log",
            "--election", "none", "--bulk-threshold", "10", "--grace", "20",
        )  # fmt: skip
        try:
            wait_until(lambda: _job_created(emu), 30, "the batch job")
        finally:
            code, out = first.terminate(60)
        assert code == 0, first.stderr()
        left = store.count("pending")
        # What a relay started now would send again (nothing, unless rows were left).
        with GameballClient(emu.api_key, base_url=emu.url) as client:
            drainer = OutboxDrainer(store, client)
            while drainer.run_once(bulk=False).claimed:
                pass
            drainer.close()
    emu.run_pending_batches()
    counts = seqs(emu)
    assert sorted(counts) == list(range(20))
    assert sum(c - 1 for c in counts.values()) == 0  # none twice
    assert left == 0  # settled by the relay, not handed to the next one
    assert out.startswith("delivered 20,"), out
    assert "possibly sent 0" in out


@pytest.mark.slow
def test_second_sigterm_stops_at_once_and_exits_0(
    gameball_emulator_factory: object, tmp_path: Path
) -> None:
    """A second SIGTERM during the grace stops at once; signals that keep coming while the
    process exits (after its summary line) do not kill it: exit 0, never -15.

    Before, the relay put the default handlers back before printing its summary, and
    a SIGTERM during the interpreter's exit killed it (-15). Signals do not depend on
    the database: SQLite only.
    """
    from tests.sql.conftest import fresh_tables

    sql_url = f"sqlite:///{tmp_path / 'app.sqlite3'}"
    fresh_tables(sql_url)
    emu: GameballEmulator = gameball_emulator_factory(batch_delay=60.0)  # type: ignore[operator]
    with SqlOutboxStore(sql_url) as store:
        store.append(make_events(20, customers=20))
        relay = RelayProcess(
            sql_url, emu, tmp_path / "r.log",
            "--election", "none", "--bulk-threshold", "10", "--grace", "60",
        )  # fmt: skip
        wait_until(lambda: _job_created(emu), 30, "the batch job")
        relay.proc.send_signal(signal.SIGTERM)
        relay.wait_for("stopping: finishing the work in flight")
        started = time.monotonic()
        # SIGTERM every few milliseconds until the process is gone: the second one ends
        # the grace, the later ones land during the summary and the interpreter's exit.
        while relay.proc.poll() is None and time.monotonic() - started < 30:
            relay.proc.send_signal(signal.SIGTERM)
            time.sleep(0.003)
        code, out = relay.wait(30)
        assert code == 0, relay.stderr()
        assert time.monotonic() - started < 10  # not the 60 s grace
        assert "possibly sent 20" in out
        assert store.stats().claimed == 0
        assert store.count("pending") == 20


@pytest.mark.slow
def test_deploy_loop_three_relays_restarted_under_slow_answers(
    postgres_url: str, gameball_emulator_factory: object, tmp_path: Path
) -> None:
    """3 relays on PostgreSQL over 10,000 events (the batch endpoint, 1,000 rows a job);
    in turn, a new relay is started and, once it runs, an old one is SIGTERMed (grace
    8 s), so that each relay lives a few seconds; every create answer takes 0.2-3 s:
    0 lost, 0 duplicated, counted at the emulator."""
    from tests.sql.conftest import fresh_tables

    emu: GameballEmulator = gameball_emulator_factory()  # type: ignore[operator]
    emu.faults.set_latency(0.2, up_to=3.0)
    fresh_tables(postgres_url)
    n = 10_000
    args = ("--election", "none", "--bulk-threshold", "1", "--grace", "8", "--lease", "10")
    names = itertools.count()

    def start() -> RelayProcess:
        return RelayProcess(postgres_url, emu, tmp_path / f"{next(names)}.log", *args)

    with SqlOutboxStore(postgres_url) as store:
        for first in range(0, n, 5_000):
            store.append(make_events(5_000, customers=5_000, start=first))
        relays = [start() for _ in range(3)]
        for relay in relays:
            relay.wait_for(r"started \(")  # a SIGTERM before that is not a deploy
        stopped: list[RelayProcess] = []
        started = time.monotonic()
        try:
            turn = 0
            while store.count("pending", limit=1) and time.monotonic() - started < 45:
                new = start()
                new.wait_for(r"started \(")  # a SIGTERM before that is not a deploy
                old, relays[turn % 3] = relays[turn % 3], new
                old.proc.send_signal(signal.SIGTERM)  # its grace runs while others work
                stopped.append(old)
                turn += 1
                time.sleep(0.5)
            wait_until(lambda: store.count("pending") == 0, 60, "10,000 deliveries")
            elapsed = time.monotonic() - started
        finally:
            for relay in relays:
                relay.proc.send_signal(signal.SIGTERM)
            results = [(*r.wait(30), r.stderr()) for r in stopped + relays]
        assert store.count("dead") == 0
    assert [r[0] for r in results] == [0] * len(results), [r[2] for r in results if r[0]]
    counts = seqs(emu)
    assert len(counts) == n  # none lost
    duplicated = sum(c - 1 for c in counts.values())
    assert duplicated == 0, f"{duplicated} duplicated; summaries: {[r[1] for r in results]}"
    assert emu.rate_limited == 0
    print(f"deploy loop: {n} events in {elapsed:.1f}s across {len(results)} relays")
