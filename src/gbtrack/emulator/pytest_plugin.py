"""Pytest plugin ``gbtrack_emulator``: a running Gameball emulator per test.

Installed with gbtrack through the ``pytest11`` entry point, so the fixtures are
available in any test suite::

    def test_delivery(gameball_emulator):
        client = GameballClient(gameball_emulator.api_key,
                                secret_key=gameball_emulator.secret_key,
                                base_url=gameball_emulator.url)
        ...
        assert gameball_emulator.wait_for_events(1, timeout=5)
        assert gameball_emulator.orders == []  # orders, points and system events too

- ``gameball_emulator``: function scope; a :class:`~gbtrack.emulator.GameballEmulator`
  with the default keys (``test-api-key``, ``test-secret-key``) and Gameball's rate
  limits (events 100/1 s and 1,200/30 s, orders 30/1 s and 360/30 s) on 127.0.0.1 and
  an ephemeral port, stopped after the test.
- ``gameball_emulator_factory``: function scope; call it with
  :class:`~gbtrack.emulator.GameballEmulator` keyword arguments (e.g.
  ``rate_limits=None``) to start more emulators; all are stopped after the test.

Both fail the test at teardown if an emulator recorded an internal error (a bug in the
emulator, never a client's fault).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gbtrack.emulator._server import GameballEmulator

__all__ = ["gameball_emulator", "gameball_emulator_factory"]


@pytest.fixture
def gameball_emulator_factory() -> Iterator[Callable[..., GameballEmulator]]:
    """Start emulators with custom settings; every one is stopped after the test."""
    started: list[GameballEmulator] = []

    def start(**options: Any) -> GameballEmulator:
        options.setdefault("host", "127.0.0.1")
        options.setdefault("port", 0)
        emulator = GameballEmulator(**options).start()
        started.append(emulator)
        return emulator

    try:
        yield start
    finally:
        for emulator in reversed(started):
            emulator.stop()
    errors = [error for emulator in started for error in emulator.internal_errors]
    if errors:  # an emulator bug must not pass for a client bug, nor go unnoticed
        pytest.fail(f"the Gameball emulator hit internal errors: {errors}")


@pytest.fixture
def gameball_emulator(
    gameball_emulator_factory: Callable[..., GameballEmulator],
) -> GameballEmulator:
    """A running local Gameball emulator on 127.0.0.1 and an ephemeral port."""
    return gameball_emulator_factory()
