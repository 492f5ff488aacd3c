"""The tracker's floor: no import loop through it, and no import running back up to it.

Every import counts: at module level, under ``TYPE_CHECKING`` and inside functions.
"""

from __future__ import annotations

from tests._imports import IMPORTS, importers, reaches


def test_the_graph_is_read() -> None:
    assert "gbtrack._pipeline" in IMPORTS["gbtrack._tracker"]
    assert "gbtrack._tracker" in IMPORTS["gbtrack"]


def test_no_loop_runs_through_the_tracker_or_the_modules_it_stands_on() -> None:
    floor = [
        "gbtrack._tracker",
        "gbtrack._pipeline",
        "gbtrack._settings",
        "gbtrack._state",
        "gbtrack._span",
        "gbtrack._transaction",
        "gbtrack._decorator",
        "gbtrack.senders._base",
        "gbtrack.senders._direct",
    ]
    assert [module for module in floor if reaches(module, module)] == []


def test_nothing_below_the_tracker_imports_it() -> None:
    allowed = {"gbtrack", "gbtrack.testing"}  # the public face and the test helpers
    above = {m for m in importers("gbtrack._tracker") if not m.startswith("gbtrack.integrations")}
    assert above <= allowed
    assert importers("gbtrack._pipeline") == {"gbtrack._tracker"}
    assert importers("gbtrack._settings") <= {"gbtrack", "gbtrack._tracker", "gbtrack._pipeline"}
