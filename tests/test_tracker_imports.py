"""The tracker's floor: no import loop through it, and no import running back up to it.

Every import counts: at module level, under ``TYPE_CHECKING`` and inside functions.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import gbtrack

SRC = Path(gbtrack.__file__).resolve().parent


def _module(path: Path) -> str:
    parts = ("gbtrack", *path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(path): path for path in SRC.rglob("*.py")}


def _imported(module: str, path: Path) -> Iterator[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            yield base
            # `from gbtrack import _tracker` imports a module, not a name
            yield from (f"{base}.{alias.name}" for alias in node.names)


IMPORTS = {
    module: {name for name in _imported(module, path) if name in MODULES and name != module}
    for module, path in MODULES.items()
}


def _reaches(start: str, target: str) -> bool:
    seen: set[str] = set()
    todo = list(IMPORTS[start])
    while todo:
        module = todo.pop()
        if module == target:
            return True
        if module not in seen:
            seen.add(module)
            todo.extend(IMPORTS[module])
    return False


def _importers(module: str) -> set[str]:
    return {name for name, imports in IMPORTS.items() if module in imports}


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
    assert [module for module in floor if _reaches(module, module)] == []


def test_nothing_below_the_tracker_imports_it() -> None:
    allowed = {"gbtrack", "gbtrack.testing"}  # the public face and the test helpers
    above = {m for m in _importers("gbtrack._tracker") if not m.startswith("gbtrack.integrations")}
    assert above <= allowed
    assert _importers("gbtrack._pipeline") == {"gbtrack._tracker"}
    assert _importers("gbtrack._settings") <= {"gbtrack", "gbtrack._tracker", "gbtrack._pipeline"}
