"""Run a behaviour test module through both call paths of ``@track``'s generated wrappers.

Import :func:`call_path` into a test module (``from tests._paths import call_path``):
each of its tests then runs twice, with the wrappers it decorates generated

- ``generated``: the straight-line path taken whenever its guards hold, delivering
  through ``tracker.submit`` when the gate is closed (the tests' in-memory senders keep
  it closed), so the generated reads and guards meet every behaviour test;
- ``general``: the plan's general path only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from gbtrack import _codegen
from gbtrack._expr import _KIND_CACHE


@pytest.fixture(autouse=True, params=["generated", "general"])
def call_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Which path the wrappers decorated in this test take (see the module docstring)."""
    path: str = request.param
    monkeypatch.setattr(_codegen, "mode", "submit" if path == "generated" else "general")
    with forgetting_classes():
        yield path


@contextlib.contextmanager
def forgetting_classes() -> Iterator[None]:
    """Forget the classes the path language learnt meanwhile.

    It remembers the classes it read, which keeps a test's local classes (and the
    functions decorated in them, and their registered sites) alive; a test run twice
    would leave two sites alike for ``gbtrack.check()`` to find.
    """
    known = set(_KIND_CACHE)
    try:
        yield
    finally:
        for cls in set(_KIND_CACHE) - known:
            del _KIND_CACHE[cls]
