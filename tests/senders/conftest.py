"""Fixtures shared by the sender tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from tests.senders import API_KEY, SECRET_KEY

from gbtrack.emulator import GameballEmulator
from gbtrack.senders import BackgroundSender


@pytest.fixture
def emulator() -> Iterator[GameballEmulator]:
    """A Gameball emulator on 127.0.0.1 that accepts ``API_KEY`` and ``SECRET_KEY``."""
    emu = GameballEmulator(api_key=API_KEY, secret_key=SECRET_KEY).start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def make_sender() -> Iterator[Callable[..., BackgroundSender]]:
    """``make_sender(emulator, **options)``: a ``BackgroundSender`` delivering to ``emulator``.

    ``API_KEY``, the emulator's URL and a 5 s timeout unless ``options`` say otherwise;
    a module adds its own defaults with :func:`functools.partial`. Every sender made is
    closed after the test.
    """
    senders: list[BackgroundSender] = []

    def factory(emulator: GameballEmulator, **options: Any) -> BackgroundSender:
        options.setdefault("api_key", API_KEY)
        options.setdefault("base_url", emulator.url)
        options.setdefault("timeout", 5.0)
        sender = BackgroundSender(**options)
        senders.append(sender)
        return sender

    yield factory
    for sender in senders:
        sender.close(timeout=10)
