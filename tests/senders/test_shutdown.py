"""Shutdown and exit: nothing delivered twice, nothing lost untold (issue 9).

Exit behaviour is tested in a subprocess (``python -c``) against an emulator started
by the test; the emulator counts what arrived: distinct, duplicates, missing.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from gbtrack.emulator import GameballEmulator

API_KEY = "gb-api-KEY-4242-abcdef"


@pytest.fixture
def emulator() -> Iterator[GameballEmulator]:
    emu = GameballEmulator(api_key=API_KEY).start()
    try:
        yield emu
    finally:
        emu.stop()


@dataclass
class Arrived:
    distinct: int
    duplicates: int
    missing: int


def arrived(emulator: GameballEmulator, name: str, expected: int) -> Arrived:
    seen = Counter(e.metadata["seq"] for e in emulator.events if e.name == name)
    return Arrived(
        distinct=len(seen),
        duplicates=sum(n - 1 for n in seen.values()),
        missing=len(set(range(expected)) - set(seen)),
    )


def run(
    script: str, emulator: GameballEmulator, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    prelude = textwrap.dedent(
        f"""
        import logging
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
        from gbtrack import Event
        from gbtrack.senders import BackgroundSender
        API_KEY, URL = {API_KEY!r}, {emulator.url!r}
        def ev(i, name="purchase"):
            return Event(name=name, customer_id=f"c-{{i}}", metadata={{"seq": i}})
        """
    )
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_requests_in_flight_at_exit_are_not_delivered_twice(emulator: GameballEmulator) -> None:
    # Defect 1: the transports closed (weakref.finalize) before the sender's exit flush,
    # so the requests in flight failed as ambiguous and were sent again.
    emulator.faults.set_latency(0.3)
    result = run(
        """
        s = BackgroundSender(api_key=API_KEY, base_url=URL, flush_interval=0.01,
                             concurrency=8, timeout=10, exit_timeout=30)
        s.send(ev(0, "warm_up"))
        assert s.flush(10)  # the connection pools exist before the exit
        for i in range(48):
            s.send(ev(i))
        import time
        deadline = time.monotonic() + 10
        while s.stats().in_flight < 8 and time.monotonic() < deadline:
            time.sleep(0.005)  # wait until requests are in flight
        # exit without close(): requests are in flight when the interpreter exits
        """,
        emulator,
    )
    assert result.returncode == 0, result.stderr
    assert arrived(emulator, "purchase", 48) == Arrived(distinct=48, duplicates=0, missing=0)
