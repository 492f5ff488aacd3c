"""gbtrack's import graph, read from the source with ``ast`` (nothing is imported).

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
"""Each module of src/gbtrack: the modules of src/gbtrack it imports."""


def reaches(start: str, target: str, graph: dict[str, set[str]] = IMPORTS) -> bool:
    """Whether ``start`` imports ``target``, directly or through other modules."""
    seen: set[str] = set()
    todo = list(graph[start])
    while todo:
        module = todo.pop()
        if module == target:
            return True
        if module not in seen:
            seen.add(module)
            todo.extend(graph[module])
    return False


def importers(module: str) -> set[str]:
    """The modules that import ``module`` directly."""
    return {name for name, imports in IMPORTS.items() if module in imports}
