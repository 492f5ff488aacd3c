"""The servers the benchmarks deliver to, each in its own process on 127.0.0.1."""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

__all__ = [
    "closed_port_url",
    "emulator",
    "emulator_events",
    "emulator_stats",
    "segment_sink",
    "sink_events",
    "wait_for",
]

_URL = re.compile(r"http://127\.0\.0\.1:\d+")


@contextlib.contextmanager
def _server(argv: list[str], what: str) -> Iterator[str]:
    """Run ``argv``, yield the first loopback URL it prints, terminate it on exit."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        url = None
        for line in proc.stdout:
            found = _URL.search(line)
            if found:
                url = found.group(0)
                break
        if url is None:
            raise RuntimeError(f"the {what} did not start")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def emulator(*options: str) -> contextlib.AbstractContextManager[str]:
    """Run ``python -m gbtrack.emulator --port 0 OPTIONS`` and yield its URL."""
    argv = [sys.executable, "-m", "gbtrack.emulator", "--port", "0", *options]
    return _server(argv, "emulator")


def segment_sink() -> contextlib.AbstractContextManager[str]:
    """Run the loopback Segment batch sink (``benchmarks._segment_sink``); yield its URL."""
    return _server([sys.executable, "-m", "benchmarks._segment_sink", "--port", "0"], "sink")


def emulator_stats(url: str, client: Any) -> dict[str, Any]:
    """``GET /_emulator/stats`` through ``client`` (an open ``httpx.Client``)."""
    stats: dict[str, Any] = client.get(f"{url}/_emulator/stats").json()
    return stats


def emulator_events(url: str, client: Any) -> int:
    """How many events the emulator has accepted."""
    return int(emulator_stats(url, client)["events"])


def sink_events(url: str, client: Any) -> int:
    """How many events the Segment sink has counted."""
    return int(client.get(f"{url}/stats").json()["events"])


def wait_for(count: Callable[[], int], expected: int, timeout: float = 30.0) -> int:
    """Poll ``count()`` until it reaches ``expected`` or ``timeout`` passes; return it."""
    deadline = time.monotonic() + timeout
    seen = count()
    while seen < expected and time.monotonic() < deadline:
        time.sleep(0.02)  # another process: nothing to synchronise on
        seen = count()
    return seen


def closed_port_url() -> str:
    """A loopback URL nobody listens on (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
