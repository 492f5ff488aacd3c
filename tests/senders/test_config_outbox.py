"""configure(outbox=...): the durable outbox becomes the BackgroundSender's spill."""

from __future__ import annotations

from pathlib import Path

import pytest

from gbtrack import Tracker
from gbtrack.emulator import GameballEmulator
from gbtrack.outbox import OutboxSender, OutboxStore
from gbtrack.senders import BackgroundSender, RetryPolicy, sender_from_config


def test_outbox_option_builds_a_spill_sharing_client_and_limiter(tmp_path: Path) -> None:
    sender = sender_from_config(
        api_key="k", base_url="http://127.0.0.1:9", outbox=tmp_path / "o.sqlite3"
    )
    try:
        assert isinstance(sender.spill, OutboxSender)
        assert sender.spill.client is sender.client
        assert sender.spill.store.path == tmp_path / "o.sqlite3"
    finally:
        assert sender.close(timeout=5)
    assert sender.spill.closed  # closed with the sender that built it


def test_outbox_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GBTRACK_OUTBOX", str(tmp_path / "env.sqlite3"))
    sender = sender_from_config(api_key="k", base_url="http://127.0.0.1:9")
    try:
        assert isinstance(sender.spill, OutboxSender)
        assert sender.spill.store.path == tmp_path / "env.sqlite3"
    finally:
        sender.close(timeout=5)


def test_outbox_and_spill_are_exclusive(tmp_path: Path) -> None:
    from gbtrack import ConfigurationError

    with pytest.raises(ConfigurationError, match="outbox= or spill="):
        sender_from_config(api_key="k", outbox=tmp_path / "o.sqlite3", spill=object())


def test_outage_spills_to_disk_and_nothing_is_lost(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    with GameballEmulator(rate_limits=None) as emulator:
        api_key = emulator.api_key.get_secret_value()
        emulator.faults.fail_next(10_000, status=503)  # Gameball is down
        tracker = Tracker()
        tracker.configure(
            api_key=api_key,
            base_url=emulator.url,
            outbox=path,
            max_queue_size=5,
            flush_interval=0.01,
            retry=RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02),
        )
        sender = tracker.sender
        assert isinstance(sender, BackgroundSender)
        for i in range(60):
            tracker.emit("purchase", customer_id=f"c{i % 7}", metadata={"seq": i})
        assert tracker.flush(timeout=30)
        stats = tracker.stats
        assert stats.sent == 60
        assert stats.total_dropped == 0, stats.dropped  # spilled, never dropped
        assert sender.spilled == 60
        assert stats.persisted + stats.delivered == 60
        emulator.faults.clear()  # Gameball is back: the outbox drains
        assert tracker.close(timeout=30)
        seqs = sorted(int(e.metadata["seq"]) for e in emulator.events)
        with OutboxStore(path) as store:
            left = store.count("pending") + store.count("dead")
        # Every event is either delivered or still safe on disk; 503 is never ambiguous.
        assert left + len(seqs) == 60
        assert left == 0  # and the outbox drained everything once Gameball was back
        assert len(set(seqs)) == len(seqs)
