"""SIGKILL a real producer mid-burst: nothing accepted is lost, and a restart resumes."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gbtrack.emulator import GameballEmulator
from gbtrack.gameball import GameballClient
from gbtrack.outbox import OutboxSender, OutboxStore
from gbtrack.senders._policy import RateLimiter, RetryPolicy

CHILD = Path(__file__).with_name("_child.py")
CLAIM_SIZE = 100  # OutboxSender's default: the most rows one worker holds at a time


def _received(emulator: GameballEmulator) -> list[int]:
    return [int(e.metadata["seq"]) for e in emulator.events]


@pytest.mark.slow
@pytest.mark.parametrize("sync", ["every_event", "batch"])
def test_sigkill_mid_burst_loses_nothing_and_restart_resumes(
    gameball_emulator_factory: object, outbox_path: Path, sync: str
) -> None:
    emulator: GameballEmulator = gameball_emulator_factory(rate_limits=None)  # type: ignore[operator]
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), emulator.url, str(outbox_path), sync, "0", "1000000", "burst"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    accepted = -1
    try:
        assert proc.stdout is not None
        # Kill once the child has accepted a good number and delivery is under way.
        while accepted < 400 or emulator.event_count < 50:
            line = proc.stdout.readline()
            assert line, "the child exited early"
            accepted = int(line)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL

    # Nothing accepted is lost: every seq is at Gameball or still in the outbox.
    with OutboxStore(outbox_path) as store:
        remaining = [int(r.event().metadata["seq"]) for r in store.iter_rows()]
        assert store.count("dead") == 0
    at_gameball = _received(emulator)
    assert set(range(accepted + 1)) <= set(at_gameball) | set(remaining)

    # A restart resumes: expired leases are reclaimed and the backlog is delivered.
    with (
        GameballClient("test-api-key", base_url=emulator.url) as client,
        OutboxSender(
            client,
            path=outbox_path,
            retry=RetryPolicy(base_delay=0.01, max_delay=0.1),
            rate_limiter=RateLimiter(((10_000, 1.0),)),
            idle_interval=0.05,
        ) as sender,
    ):
        assert sender.flush(timeout=60)
    received = _received(emulator)
    assert set(range(accepted + 1)) <= set(received)
    # Duplicates only for rows the killed worker had claimed (sent, not yet deleted).
    duplicates = sum(n - 1 for n in collections.Counter(received).values() if n > 1)
    assert duplicates <= CLAIM_SIZE
    with OutboxStore(outbox_path) as store:
        assert store.count() == 0
