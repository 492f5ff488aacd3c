"""Shared fixtures: fresh trackers, and the global state restored after every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gbtrack import InMemorySender, Tracker, _resolvers, _tracker


@pytest.fixture(autouse=True)
def _restore_globals() -> Iterator[None]:
    """Put the default tracker and the resolver registry back as they were."""
    default = _tracker._default
    state = (default._sender, default.enabled, default.strict, default.on_error)
    registry = dict(_resolvers._registry)
    try:
        yield
    finally:
        _tracker._default = default
        default._sender, default.enabled, default.strict, default.on_error = state
        _resolvers._registry.clear()
        _resolvers._registry.update(registry)


@pytest.fixture
def sender() -> InMemorySender:
    """An in-memory sender."""
    return InMemorySender()


@pytest.fixture
def tracker(sender: InMemorySender) -> Tracker:
    """A lenient tracker (drops are counted, never raised) over ``sender``."""
    return Tracker(sender)


@pytest.fixture
def strict_tracker(sender: InMemorySender) -> Tracker:
    """A strict tracker over ``sender``: drops raise TrackingError."""
    return Tracker(sender, strict=True)
