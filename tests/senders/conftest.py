"""Fixtures shared by the sender tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.senders import API_KEY, SECRET_KEY

from gbtrack.emulator import GameballEmulator


@pytest.fixture
def emulator() -> Iterator[GameballEmulator]:
    """A Gameball emulator on 127.0.0.1 that accepts ``API_KEY`` and ``SECRET_KEY``."""
    emu = GameballEmulator(api_key=API_KEY, secret_key=SECRET_KEY).start()
    try:
        yield emu
    finally:
        emu.stop()
