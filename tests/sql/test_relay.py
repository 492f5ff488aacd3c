"""``gbtrack relay``: in process, and as real processes against the emulator.

Counted at the emulator (rate limits on): what was delivered, how many times. The
slow tests: three relays share 20,000 events (zero lost, zero duplicated), and a relay
SIGKILLed with a batch job in flight (nothing lost; duplicates at most the job's rows,
the lease bound of docs/reliability.md).
"""

from __future__ import annotations

import threading
import time
import urllib.request
from pathlib import Path

import pytest
from tests._redis import RedisServer
from tests.outbox.conftest import make_events
from tests.sql._relays import RelayProcess, seqs, wait_until

from gbtrack._protocol import MAX_BATCH_ITEMS
from gbtrack.emulator import GameballEmulator
from gbtrack.gameball import GameballClient
from gbtrack.outbox import OutboxDrainer
from gbtrack.outbox._relay import Relay, advisory_key
from gbtrack.outbox._sql import SqlOutboxStore


def test_relay_in_process_delivers_and_stops_cleanly(
    sql_url: str, gameball_emulator: GameballEmulator
) -> None:
    emu = gameball_emulator
    with (
        SqlOutboxStore(sql_url) as store,
        GameballClient(emu.api_key, base_url=emu.url) as client,
    ):
        store.append(make_events(50, customers=10))
        drainer = OutboxDrainer(store, client)
        relay = Relay(store, drainer, stats_interval=0, idle_interval=0.05)
        thread = threading.Thread(target=relay.run)
        thread.start()
        try:
            wait_until(lambda: store.count("pending") == 0, 30, "the relay to deliver")
            store.append(make_events(5, customers=5, start=50))  # picked up while running
            wait_until(lambda: len(emu.events) == 55, 30, "the second batch")
        finally:
            relay.stop.set()
            thread.join(30)
        assert not thread.is_alive()
        assert sorted(seqs(emu)) == list(range(55))
        assert max(seqs(emu).values()) == 1
        relay.refresh_gauges()
        text = relay.metrics.prometheus()
        assert "gbtrack_relay_delivered_total 55" in text
        assert "gbtrack_relay_pending 0" in text
        assert "# TYPE gbtrack_relay_lag_seconds gauge" in text


def test_advisory_key_is_per_account_and_hides_the_key() -> None:
    assert advisory_key("key-a") == advisory_key("key-a")
    assert advisory_key("key-a") != advisory_key("key-b")
    assert -(2**63) <= advisory_key("key-a") < 2**63


@pytest.mark.slow
def test_relay_sigterm_past_the_grace_releases_rows_and_exits_0(
    sql_url: str, gameball_emulator_factory: object, tmp_path: Path
) -> None:
    """A batch job that outlasts --grace: its 20 rows go back at the deadline, counted as
    possibly sent, exit 0."""
    emu: GameballEmulator = gameball_emulator_factory(batch_delay=60.0)  # type: ignore[operator]
    with SqlOutboxStore(sql_url) as store:
        store.append(make_events(20, customers=20))
        relay = RelayProcess(
            sql_url, emu, tmp_path / "r.log",
            "--election", "none", "--bulk-threshold", "10", "--grace", "1",
        )  # fmt: skip
        try:
            wait_until(lambda: store.stats().claimed == 20, 30, "the job's claim")
            wait_until(lambda: _created(emu), 30, "the batch job")
        finally:
            started = time.monotonic()
            code, out = relay.terminate()
        assert time.monotonic() - started < 10  # the grace, not the lease (60 s) or the job
        assert code == 0, relay.stderr()
        assert out.startswith("delivered 0,")
        assert "possibly sent 20" in out
        assert store.stats().claimed == 0  # released at exit, not left to the lease
        assert store.count("pending") == 20


@pytest.mark.slow
def test_metrics_endpoint_and_stats_line(
    sql_url: str, gameball_emulator: GameballEmulator, tmp_path: Path
) -> None:
    with SqlOutboxStore(sql_url) as store:
        store.append(make_events(30, customers=30))
    relay = RelayProcess(
        sql_url, gameball_emulator, tmp_path / "r.log",
        "--metrics-port", "0", "--stats-interval", "0.2", "--election", "none",
    )  # fmt: skip
    try:
        port = int(relay.wait_for(r"metrics on http://127\.0\.0\.1:(\d+)/metrics").group(1))
        wait_until(lambda: len(gameball_emulator.events) == 30, 30, "delivery")
        relay.wait_for(r"delivered 30 \(", 10)

        def scrape() -> str:
            url = f"http://127.0.0.1:{port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as answer:
                assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                return str(answer.read().decode())

        # The gauges refresh once a second: the first scrape after that shows the drain.
        deadline = time.monotonic() + 10
        while "gbtrack_relay_pending 0" not in (text := scrape()):
            assert time.monotonic() < deadline, text
            time.sleep(0.1)
        assert "gbtrack_relay_delivered_total 30" in text
        assert "gbtrack_relay_claimed_total 30" in text
        assert "gbtrack_relay_pending 0" in text
        assert "gbtrack_relay_active 1" in text
    finally:
        code, out = relay.terminate()
    assert code == 0
    assert out.startswith("delivered 30, retried 0, dead 0")


@pytest.mark.slow
def test_election_one_active_standby_takes_over(
    postgres_url: str, gameball_emulator: GameballEmulator, tmp_path: Path
) -> None:
    """PostgreSQL without Redis: one relay delivers; SIGKILL it and the standby takes over."""
    from tests.sql.conftest import fresh_tables

    fresh_tables(postgres_url)
    first = RelayProcess(postgres_url, gameball_emulator, tmp_path / "1.log")
    first.wait_for("active: holds the account's advisory lock")
    second = RelayProcess(postgres_url, gameball_emulator, tmp_path / "2.log")
    try:
        second.wait_for("standby: another relay holds")
        with SqlOutboxStore(postgres_url) as store:
            store.append(make_events(10, customers=10))
            wait_until(lambda: len(gameball_emulator.events) == 10, 30, "the active relay")
            first.kill()  # its session dies: PostgreSQL releases the lock
            second.wait_for("active: holds the account's advisory lock", 30)
            store.append(make_events(10, customers=10, start=10))
            wait_until(lambda: len(gameball_emulator.events) == 20, 30, "the new active relay")
    finally:
        code, out = second.terminate()
    assert code == 0
    assert out.startswith("delivered 10,")
    assert sorted(seqs(gameball_emulator)) == list(range(20))


@pytest.mark.slow
def test_three_relays_share_20000_events_none_lost_none_twice(
    postgres_url: str, gameball_emulator_factory: object, tmp_path: Path
) -> None:
    from tests.sql.conftest import fresh_tables

    emu: GameballEmulator = gameball_emulator_factory()  # type: ignore[operator]
    fresh_tables(postgres_url)
    n = 20_000
    with SqlOutboxStore(postgres_url) as store:
        for start in range(0, n, 5_000):
            store.append(make_events(5_000, customers=5_000, start=start))
        relays = [
            RelayProcess(
                postgres_url,
                emu,
                tmp_path / f"{i}.log",
                "--election",
                "none",
                "--bulk-threshold",
                "500",
                "--stats-interval",
                "5",
            )
            for i in range(3)
        ]
        started = time.monotonic()
        try:
            wait_until(lambda: store.count("pending") == 0, 80, "20,000 deliveries")
            elapsed = time.monotonic() - started
        finally:
            results = [r.terminate() for r in relays]
        assert store.count("dead") == 0
    assert [code for code, _ in results] == [0, 0, 0]
    counts = seqs(emu)
    assert len(counts) == n  # none lost
    assert max(counts.values()) == 1  # none twice
    per_relay = [int(out.split()[1].rstrip(",")) for _, out in results]
    assert sum(per_relay) == n
    print(f"3 relays, {n} events in {elapsed:.1f}s: {per_relay}; 429s {emu.rate_limited}")


@pytest.mark.slow
def test_relay_sigkilled_mid_batch_loses_nothing(
    postgres_url: str, gameball_emulator_factory: object, tmp_path: Path
) -> None:
    """A batch job in flight when the relay dies: its rows wait for the lease, then go again.

    Duplicates are the rows of the job Gameball processed after the kill: at most one
    job (MAX_BATCH_ITEMS rows) per claim the dead relay held.
    """
    from tests.sql.conftest import fresh_tables

    emu: GameballEmulator = gameball_emulator_factory(batch_delay=1.0)  # type: ignore[operator]
    fresh_tables(postgres_url)
    n = 3_000
    with SqlOutboxStore(postgres_url) as store:
        store.append(make_events(n, customers=n))
        first = RelayProcess(
            postgres_url, emu, tmp_path / "1.log",
            "--election", "none", "--bulk-threshold", "100", "--lease", "3",
        )  # fmt: skip
        wait_until(lambda: store.stats().claimed > 0, 30, "a claim")
        wait_until(lambda: emu.requests.get(("batch", 200), 0) > 0 or _created(emu), 30, "a job")
        held = store.stats().claimed
        first.kill()
        assert 0 < held <= MAX_BATCH_ITEMS
        second = RelayProcess(
            postgres_url, emu, tmp_path / "2.log",
            "--election", "none", "--bulk-threshold", "100", "--lease", "3",
        )  # fmt: skip
        try:
            wait_until(lambda: store.count("pending") == 0, 60, "the backlog")
            emu.run_pending_batches()  # a job of the dead relay still pending: its rows count
        finally:
            code, _ = second.terminate()
        assert code == 0
    counts = seqs(emu)
    assert set(counts) == set(range(n))  # nothing lost
    duplicates = sum(c - 1 for c in counts.values())
    assert duplicates <= held  # at most the rows the dead relay held
    print(f"SIGKILL mid-batch: held {held}, duplicates {duplicates}")


def _created(emu: GameballEmulator) -> bool:
    return any("batch" in str(key[0]) for key in emu.requests)


def test_redis_url_means_no_election(
    postgres_url: str, gameball_emulator: GameballEmulator, tmp_path: Path
) -> None:
    """With --redis-url the relays share one limit, so none waits for the lock (even when
    Redis is not there yet: the limiter falls back to its local share)."""
    from tests.sql.conftest import fresh_tables

    fresh_tables(postgres_url)
    relay = RelayProcess(
        postgres_url, gameball_emulator, tmp_path / "r.log", "--redis-url", "redis://127.0.0.1:1/0"
    )
    try:
        said = relay.wait_for(r"started \(.*election (\w+)")
    finally:
        code, _ = relay.terminate()
    assert code == 0
    assert said.group(1) == "none"


@pytest.mark.slow
def test_two_relays_share_a_redis_limiter_both_active(
    postgres_url: str,
    gameball_emulator: GameballEmulator,
    tmp_path: Path,
    redis_server: RedisServer,
) -> None:
    """With Redis, no election: both relays deliver, through one limit, nothing twice."""
    from tests.sql.conftest import fresh_tables

    redis = redis_server
    fresh_tables(postgres_url)
    n = 300
    with SqlOutboxStore(postgres_url) as store:
        store.append(make_events(n, customers=n))
        relays = [
            RelayProcess(
                postgres_url,
                gameball_emulator,
                tmp_path / f"{i}.log",
                "--redis-url",
                redis.url,
                "--claim-size",
                "20",
                "--bulk-threshold",
                "100000",
            )
            for i in range(2)
        ]
        try:
            for relay in relays:
                assert relay.wait_for(r"election (\w+)").group(1) == "none"
            wait_until(lambda: store.count("pending") == 0, 60, "delivery")
        finally:
            results = [relay.terminate() for relay in relays]
    assert [code for code, _ in results] == [0, 0]
    per_relay = [int(out.split()[1].rstrip(",")) for _, out in results]
    assert sum(per_relay) == n
    assert all(count > 0 for count in per_relay)  # both were active
    counts = seqs(gameball_emulator)
    assert len(counts) == n
    assert max(counts.values()) == 1
    assert gameball_emulator.rate_limited == 0  # one shared limit, not two


def test_help_steers_keys_to_the_environment(capsys: pytest.CaptureFixture[str]) -> None:
    from gbtrack.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["relay", "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "GAMEBALL_API_KEY and $GAMEBALL_SECRET_KEY from the environment" in text
    assert "visible to all in `ps`" in text
    assert "--grace" in text


def test_api_key_flag_warns_that_ps_shows_it(
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gbtrack.cli import main

    monkeypatch.delenv("GBTRACK_OUTBOX_URL", raising=False)
    code = main(["relay", "--api-key", "k-123", "--secret-key", "s-456"])  # no URL: stops there
    assert code == 2
    err = capsys.readouterr().err
    assert "--api-key is visible to every user in `ps`; set $GAMEBALL_API_KEY instead" in err
    assert "--secret-key is visible" in err
    assert "k-123" not in err + caplog.text
    assert any("--api-key is visible" in r.getMessage() for r in caplog.records)
