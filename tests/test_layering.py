"""Floors: no import loop in src/gbtrack, and no import running back up a floor.

The graph is read from the source (tests/_imports.py), so every import counts: at
module level, under ``TYPE_CHECKING`` and inside functions. One fresh interpreter checks
that the outbox, imported where it is used, stays out of ``import gbtrack``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests._imports import IMPORTS, SRC, reaches


def _package(module: str) -> str:
    """``gbtrack.senders._background`` -> ``gbtrack.senders``; a top module is its own."""
    return ".".join(module.split(".")[:2])


def _package_imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, imports in IMPORTS.items():
        package = _package(module)
        graph.setdefault(package, set()).update(
            _package(name) for name in imports if _package(name) != package
        )
    return graph


PACKAGE_IMPORTS = _package_imports()
"""Each package (or top module) of gbtrack: the others it imports."""

FLOORS = (
    "gbtrack._protocol",  # resources, wire bodies, outcomes: no httpx
    "gbtrack.gameball",  # the client
    "gbtrack.senders",  # the senders and the delivery engine
    "gbtrack.outbox",  # OutboxSender is a senders.BaseSender
    "gbtrack._delivery",  # sender_from_config: a BackgroundSender and its outbox
    "gbtrack._pipeline",  # the tracker's route and its default sender
    "gbtrack._tracker",
    "gbtrack",  # the public face
)
"""Floors, lowest first: each may import the ones below it, never one above."""


def test_the_graph_is_read() -> None:
    # The rules below cannot pass on an empty graph: the known edges are there.
    assert "gbtrack.senders" in PACKAGE_IMPORTS["gbtrack.outbox"]
    assert {"gbtrack.senders", "gbtrack.outbox"} <= PACKAGE_IMPORTS["gbtrack._delivery"]
    assert "gbtrack._delivery" in IMPORTS["gbtrack"]
    assert set(FLOORS) <= set(PACKAGE_IMPORTS)


def test_no_module_import_loop() -> None:
    assert [module for module in sorted(IMPORTS) if reaches(module, module)] == []


def test_no_package_import_loop() -> None:
    loops = [p for p in sorted(PACKAGE_IMPORTS) if reaches(p, p, PACKAGE_IMPORTS)]
    assert loops == []


def test_no_floor_imports_one_above_it() -> None:
    upward = [
        (lower, upper)
        for i, lower in enumerate(FLOORS)
        for upper in FLOORS[i + 1 :]
        if reaches(lower, upper, PACKAGE_IMPORTS)
    ]
    assert upward == []


def test_the_errors_are_the_ground_floor() -> None:
    assert PACKAGE_IMPORTS["gbtrack._errors"] == set()


def test_nothing_imports_the_top_floor() -> None:
    # The public namespaces built on the public face (`python -m gbtrack` runs the CLI).
    top = {"gbtrack.integrations", "gbtrack.testing", "gbtrack.cli"}
    assert {
        package: sorted(imports & top)
        for package, imports in PACKAGE_IMPORTS.items()
        if imports & top and package != "gbtrack.__main__"
    } == {}


def test_the_senders_import_nothing_from_the_outbox() -> None:
    senders = {m: imports for m, imports in IMPORTS.items() if _package(m) == "gbtrack.senders"}
    assert "gbtrack.senders._background" in senders
    assert {
        module: sorted(name for name in imports if _package(name) == "gbtrack.outbox")
        for module, imports in senders.items()
        if any(_package(name) == "gbtrack.outbox" for name in imports)
    } == {}


_PROBE = textwrap.dedent(
    """
    import sys

    import gbtrack

    def outbox_loaded():
        return "gbtrack.outbox" in sys.modules

    print("import", outbox_loaded())
    sender = gbtrack.sender_from_config(api_key="k", base_url="http://127.0.0.1:9")
    print("no outbox", outbox_loaded(), sender.spill is None)
    sender.close(timeout=1)
    sender = gbtrack.sender_from_config(
        api_key="k", base_url="http://127.0.0.1:9", outbox=sys.argv[1]
    )
    print("outbox", outbox_loaded(), type(sender.spill).__name__)
    sender.close(timeout=1)
    """
)


def test_the_outbox_is_loaded_only_when_one_is_configured(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GBTRACK_", "GAMEBALL_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC.parent), env.get("PYTHONPATH")]))
    run = subprocess.run(
        [sys.executable, "-c", _PROBE, str(tmp_path / "o.sqlite3")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "import False",
        "no outbox False True",
        "outbox True OutboxSender",
    ]
