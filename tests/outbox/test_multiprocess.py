"""Several real processes share one outbox file: nothing lost, nothing sent twice."""

from __future__ import annotations

import collections
import subprocess
import sys
from pathlib import Path

import pytest

from gbtrack.emulator import GameballEmulator
from gbtrack.outbox import OutboxStore

CHILD = Path(__file__).with_name("_child.py")


@pytest.mark.slow
@pytest.mark.parametrize("sync", ["batch", "every_event"])
def test_three_processes_share_one_outbox(
    gameball_emulator_factory: object, outbox_path: Path, sync: str
) -> None:
    emulator: GameballEmulator = gameball_emulator_factory(rate_limits=None)  # type: ignore[operator]
    OutboxStore(outbox_path).close()  # create the file once, as a deploy would
    per_process = 300
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(CHILD),
                emulator.url,
                str(outbox_path),
                sync,
                str(k * per_process),
                str(per_process),
                "finish",
            ]
        )
        for k in range(3)
    ]
    try:
        codes = [p.wait(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
    assert codes == [0, 0, 0]
    received = [int(e.metadata["seq"]) for e in emulator.events]
    counts = collections.Counter(received)
    assert set(counts) == set(range(3 * per_process))  # nothing lost
    assert max(counts.values()) == 1  # no fault, no kill: nothing sent twice
    with OutboxStore(outbox_path) as store:
        assert store.count() == 0
        assert store.count("dead") == 0
