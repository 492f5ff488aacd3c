"""configure(outbox=...): the durable outbox becomes the BackgroundSender's spill.

gbtrack.sender_from_config opens it; BackgroundSender.from_config, below the outbox,
is given the opener and refuses an outbox without one.
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import pytest

from gbtrack import ConfigurationError, Event, Tracker, sender_from_config
from gbtrack.emulator import GameballEmulator
from gbtrack.gameball import GameballClient
from gbtrack.outbox import OutboxSender, OutboxStore
from gbtrack.senders import (
    BackgroundSender,
    DeliveryClient,
    DeliveryConfig,
    Limiter,
    RetryPolicy,
)


def test_outbox_option_builds_a_spill_sharing_client_and_limiter(tmp_path: Path) -> None:
    sender = sender_from_config(
        api_key="k", base_url="http://127.0.0.1:9", outbox=tmp_path / "o.sqlite3"
    )
    try:
        assert isinstance(sender.spill, OutboxSender)
        assert sender.spill.client is sender.client
        assert sender.spill.store.path == tmp_path / "o.sqlite3"
        # Spilled events and orders keep to the sender's buckets (shared through Redis).
        assert sender.spill.drainer is not None
        assert sender.spill.drainer.limiter is sender.rate_limiter
        assert sender.spill.drainer.order_limiter is sender.order_rate_limiter
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
    with pytest.raises(ConfigurationError, match="outbox= or spill="):
        sender_from_config(api_key="k", outbox=tmp_path / "o.sqlite3", spill=object())


def test_without_outbox_no_spill(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GBTRACK_OUTBOX", raising=False)
    sender = sender_from_config(api_key="k", base_url="http://127.0.0.1:9")
    try:
        assert sender.spill is None
        assert sender.config.outbox is None
    finally:
        assert sender.close(timeout=5)


@pytest.mark.parametrize("source", ["argument", "environment"])
def test_from_config_refuses_an_outbox_without_an_opener(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    path = tmp_path / "o.sqlite3"
    if source == "environment":
        monkeypatch.setenv("GBTRACK_OUTBOX", str(path))
        config = DeliveryConfig.resolve(api_key="k")
    else:
        config = DeliveryConfig(api_key="k", outbox=path)
    with pytest.raises(ConfigurationError, match=r"no open_outbox=.*gbtrack\.sender_from_config"):
        BackgroundSender.from_config(config)
    assert not path.exists()  # loud, and nothing opened


class _Spill:
    """A spill that keeps what it is given, and knows whether it was closed."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.closed = False

    def spill(self, events: Sequence[Event], reason: str) -> int:
        self.events.extend(events)
        return len(events)

    def close(self, timeout: float | None = None) -> bool:  # the sender gives its time left
        self.closed = True
        return True


def test_from_config_owns_what_the_opener_opens(tmp_path: Path) -> None:
    opened: list[tuple[object, DeliveryClient, Limiter, Limiter]] = []
    spill = _Spill()

    def open_outbox(
        path: str | PathLike[str], client: DeliveryClient, limiter: Limiter, orders: Limiter
    ) -> _Spill:
        opened.append((path, client, limiter, orders))
        return spill

    path = tmp_path / "o.sqlite3"
    config = DeliveryConfig(api_key="k", base_url="http://127.0.0.1:9", outbox=path)
    sender = BackgroundSender.from_config(config, open_outbox=open_outbox)
    try:
        # Once, sharing the client and both buckets' limiters.
        assert opened == [(path, sender.client, sender.rate_limiter, sender.order_rate_limiter)]
        assert sender.spill is spill
        assert sender.config.spill is spill
        assert sender.config.outbox is None
    finally:
        assert sender.close(timeout=5)
    assert spill.closed  # owned: closed with the sender


def test_an_opener_that_fails_leaves_nothing_open(tmp_path: Path) -> None:
    clients: list[DeliveryClient] = []

    def open_outbox(
        path: str | PathLike[str], client: DeliveryClient, limiter: Limiter, orders: Limiter
    ) -> _Spill:
        clients.append(client)
        raise ConfigurationError("the outbox directory is not writable")

    config = DeliveryConfig(api_key="k", base_url="http://127.0.0.1:9", outbox=tmp_path)
    with pytest.raises(ConfigurationError, match="not writable"):
        BackgroundSender.from_config(config, open_outbox=open_outbox)
    [client] = clients
    assert isinstance(client, GameballClient)
    assert client.closed  # the half-built sender was closed, and its client with it


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
