"""The event catalog: ``gbtrack events MODULE...`` lists every tracked event.

It imports the given modules (a package: every module under it), takes the ``@track``
sites they registered (:func:`gbtrack._checks.sites`), checks them as
:func:`gbtrack.check` does (so forward references are resolved and the metadata types
are known), and prints, per event name: each call site's function, ``file:line``,
``on=``, identity fields and metadata keys with their types.

It flags inconsistencies, and exits 1 when there is one, so that it can run in CI:

- ``keys``: the same event sent with different metadata key sets at two sites;
- ``types``: the same event and key with different types at two sites;
- ``spelling``: two keys that differ by a typo (``amount`` / ``amout``), anywhere;
- ``synonym``: two known synonyms (``amount`` / ``price`` / ``total``) used across
  sites, where one name would do;
- ``check``: a site that :func:`gbtrack.check` refuses;
- ``place_order``: a ``@track("place_order")`` beside a ``@track_order``: the Order
  API fires ``place_order`` itself, so campaigns would see it twice.

``@track_order`` sites are listed apart, as orders (kind ``"order"``), with the
argument each order field is computed from.

Expressions the checks cannot prove right or wrong (no annotation, ``Any``, a class
with ``__getattr__`` ...) are listed as *unchecked*, with the reason: never an
inconsistency. Names, keys and paths are printed escaped: a control character in a
module's strings cannot drive the terminal.

Importing a module runs its code: an exception of any kind there (``SystemExit``,
``KeyboardInterrupt`` included) ends the command with exit 2 and one line naming the
module, never a silent or green exit.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import importlib
import json
import os
import pkgutil
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gbtrack._checks import Site, Unchecked, sites
from gbtrack._typecheck import type_name

__all__ = ["Catalog", "ImportFailed", "Inconsistency", "build", "escape", "register"]

SYNONYMS: tuple[frozenset[str], ...] = (
    frozenset({"amount", "price", "total", "value", "cost", "sum"}),
    frozenset({"quantity", "qty", "count"}),
    frozenset({"order_id", "order_number", "order_no"}),
    frozenset({"product_id", "sku", "item_id"}),
    frozenset({"currency", "currency_code"}),
)
"""Groups of metadata keys that mean the same thing; two of a group across sites are flagged."""

_TYPO_RATIO = 0.8


@dataclass(frozen=True)
class Inconsistency:
    """One problem of the catalog.

    Attributes:
        kind: ``keys``, ``types``, ``spelling``, ``synonym`` or ``check``.
        message: What is wrong, naming the events, keys and sites.
        sites: The ``file:line`` of the sites concerned.
    """

    kind: str
    message: str
    sites: tuple[str, ...]


@dataclass
class Catalog:
    """Every tracked event of some modules, and what is inconsistent between them.

    Attributes:
        events: Event name -> its sites, in the order of decoration.
        orders: The ``@track_order`` sites, in the order of decoration.
        inconsistencies: What was found wrong.
    """

    events: dict[str, list[Site]] = field(default_factory=dict)
    orders: list[Site] = field(default_factory=list)
    inconsistencies: list[Inconsistency] = field(default_factory=list)
    unchecked: list[Unchecked] = field(default_factory=list)
    paths: int = 0


class ImportFailed(Exception):
    """Importing a module raised: any exception, ``SystemExit`` included.

    Attributes:
        module: The module being imported.
        cause: What it raised.
    """

    def __init__(self, module: str, cause: BaseException) -> None:
        super().__init__(module)
        self.module = module
        self.cause = cause

    def __str__(self) -> str:
        what = type(self.cause).__name__
        detail = "\n".join(escape(line) for line in str(self.cause).splitlines())
        if isinstance(self.cause, SystemExit):
            detail = f"it called sys.exit({self.cause.code!r})"
        hint = ""
        if isinstance(self.cause, ImportError) and self.module.endswith(".py"):
            name = self.module[:-3].replace(os.sep, ".").replace("/", ".").lstrip(".")
            hint = f"; give a module name, not a file: gbtrack events {escape(name)}"
        return f"importing {escape(self.module)} failed: {what}: {detail}{hint}"


def escape(text: str) -> str:
    r"""``text`` with its control characters escaped, for a terminal.

    Printable text is returned as is; a control character is shown as Python would
    (``\n``, ``\x1b``, ``\x00``), so a hostile name cannot move the cursor, colour
    the terminal or hide the lines before it.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def _where(site: Site) -> str:
    path = site.file
    try:
        relative = os.path.relpath(path)
    except ValueError:  # pragma: no cover - another drive on Windows
        relative = path
    if not relative.startswith(".."):
        path = relative
    return f"{path}:{site.line}"


def _type(tp: Any) -> str:
    name = type_name(tp)
    return "unknown" if name == "Any" else name


def import_modules(names: Iterable[str]) -> list[str]:
    """Import each module, and every module of each package; return their names.

    Raises:
        ImportFailed: When importing a module raises anything, ``SystemExit`` and
            ``KeyboardInterrupt`` included (the module's own code ran).
    """
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: local packages are found
    imported: list[str] = []
    for name in names:
        module = _import(name)
        imported.append(module.__name__)
        path = getattr(module, "__path__", None)
        if path is not None:
            try:
                # Each module is yielded before walk_packages imports it: _import runs
                # it first, so a failure names the module.
                for info in pkgutil.walk_packages(path, f"{module.__name__}."):
                    _import(info.name)
                    imported.append(info.name)
            except ImportFailed:
                raise
            except BaseException as exc:  # walking the package ran its code
                raise ImportFailed(module.__name__, exc) from exc
    return imported


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except BaseException as exc:  # the module's code may raise anything
        raise ImportFailed(name, exc) from exc


def build(modules: Sequence[str]) -> Catalog:
    """The catalog of the ``@track`` sites of ``modules`` (and their submodules).

    The modules must be imported already (see :func:`import_modules`).
    """
    catalog = Catalog()
    chosen = [
        site
        for site in sites()
        if any(site.module == m or site.module.startswith(f"{m}.") for m in modules)
    ]
    for site in chosen:
        problems = site.run(final=True)
        if problems and site.error is not None:
            catalog.inconsistencies.append(Inconsistency("check", str(site.error), (_where(site),)))
        if site.kind == "order":
            catalog.orders.append(site)
        else:
            catalog.events.setdefault(site.event, []).append(site)
        catalog.paths += len(site.paths)
        catalog.unchecked.extend(
            dataclasses.replace(u, where=_where(site)) for u in site.unchecked_items()
        )
    catalog.inconsistencies.extend(_same_event(catalog.events))
    catalog.inconsistencies.extend(_spellings([s for s in chosen if s.kind == "event"]))
    if catalog.orders and "place_order" in catalog.events:
        where = tuple(_where(s) for s in (*catalog.events["place_order"], *catalog.orders))
        catalog.inconsistencies.append(
            Inconsistency(
                "place_order",
                "@track('place_order') is sent beside @track_order; the Order API fires "
                "place_order itself, so campaigns would count it twice: remove the @track",
                where,
            )
        )
    return catalog


def _same_event(events: dict[str, list[Site]]) -> Iterable[Inconsistency]:
    for name, group in events.items():
        first = group[0]
        first_keys = set(first.metadata)
        first_types = {k: _type(t) for k, t in first.metadata_types.items()}
        for other in group[1:]:
            keys = set(other.metadata)
            where = (_where(first), _where(other))
            if keys != first_keys:
                only_first = ", ".join(sorted(first_keys - keys)) or "-"
                only_other = ", ".join(sorted(keys - first_keys)) or "-"
                yield Inconsistency(
                    "keys",
                    f"event {name!r} has different metadata keys at {where[0]} "
                    f"(only there: {only_first}) and {where[1]} (only there: {only_other})",
                    where,
                )
            types = {k: _type(t) for k, t in other.metadata_types.items()}
            for key in sorted(keys & first_keys):
                a, b = first_types.get(key, "unknown"), types.get(key, "unknown")
                if a != b and "unknown" not in (a, b):
                    yield Inconsistency(
                        "types",
                        f"event {name!r}: metadata[{key!r}] is {a} at {where[0]} "
                        f"but {b} at {where[1]}",
                        where,
                    )


def _spellings(chosen: list[Site]) -> Iterable[Inconsistency]:
    first_seen: dict[str, Site] = {}
    for site in chosen:
        for key in site.metadata:
            first_seen.setdefault(key, site)
    keys = sorted(first_seen)
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            where = (_where(first_seen[a]), _where(first_seen[b]))
            group = next((g for g in SYNONYMS if a in g and b in g), None)
            if group is not None:
                yield Inconsistency(
                    "synonym",
                    f"metadata keys {a!r} ({where[0]}) and {b!r} ({where[1]}) are synonyms; "
                    "one name would make campaigns simpler",
                    where,
                )
            elif (
                min(len(a), len(b)) >= 3
                and difflib.SequenceMatcher(None, a, b).ratio() >= _TYPO_RATIO
            ):
                yield Inconsistency(
                    "spelling",
                    f"metadata keys {a!r} ({where[0]}) and {b!r} ({where[1]}) differ by a "
                    "typo; is one of them misspelled?",
                    where,
                )


# --------------------------------------------------------------------------- output


def _site_dict(site: Site) -> dict[str, Any]:
    types = site.metadata_types
    return {
        "function": site.function,
        "module": site.module,
        "where": _where(site),
        "on": site.on,
        "identity": dict(site.identity),
        "metadata": {
            key: {"type": _type(types.get(key, Any)), "source": source}
            for key, source in site.metadata.items()
        },
    }


def _order_dict(site: Site) -> dict[str, Any]:
    return {
        "kind": "order",
        "function": site.function,
        "module": site.module,
        "where": _where(site),
        "on": site.on,
        "identity": dict(site.identity),
        "fields": {
            role: source
            for role, source in getattr(site, "fields", {}).items()
            if role not in ("customer_id", "email", "mobile")
        },
    }


def _unchecked_dict(item: Unchecked) -> dict[str, str]:
    return {
        "event": item.event,
        "function": item.function,
        "where": item.where,
        "role": item.role,
        "expression": item.expression,
        "reason": item.reason,
    }


def as_json(catalog: Catalog) -> str:
    """The catalog as JSON: ``{"events": [...], "inconsistencies": [...], "unchecked": ...}``."""
    data = {
        "events": [
            {"name": name, "sites": [_site_dict(s) for s in group]}
            for name, group in sorted(catalog.events.items())
        ],
        "orders": [_order_dict(s) for s in catalog.orders],
        "inconsistencies": [
            {"kind": i.kind, "message": i.message, "sites": list(i.sites)}
            for i in catalog.inconsistencies
        ],
        "checked": catalog.paths - len(catalog.unchecked),
        "unchecked": [_unchecked_dict(u) for u in catalog.unchecked],
    }
    return json.dumps(data, indent=2)  # ensure_ascii: control characters are escaped


def as_text(catalog: Catalog) -> str:
    """The catalog for a terminal."""
    lines: list[str] = []
    for name, group in sorted(catalog.events.items()):
        lines.append(f"{name}  ({len(group)} site{'s' if len(group) != 1 else ''})")
        for site in group:
            info = _site_dict(site)
            lines.append(f"  {info['function']}  {info['where']}  on={site.on}")
            identity = ", ".join(f"{k}={v}" for k, v in site.identity.items())
            lines.append(f"    identity: {identity}")
            for key, meta in info["metadata"].items():
                lines.append(f"    {key}: {meta['type']}  ({meta['source']})")
    if catalog.orders:
        lines.append(f"orders (Gameball Order API)  ({len(catalog.orders)} site"
                     f"{'s' if len(catalog.orders) != 1 else ''})")  # fmt: skip
        for site in catalog.orders:
            info = _order_dict(site)
            lines.append(f"  {info['function']}  {info['where']}  on={site.on}")
            identity = ", ".join(f"{k}={v}" for k, v in site.identity.items())
            lines.append(f"    identity: {identity}")
            lines.extend(f"    {role}: {source}" for role, source in info["fields"].items())
    lines.append("")
    checked = catalog.paths - len(catalog.unchecked)
    lines.append(f"{checked} expressions checked, {len(catalog.unchecked)} unchecked")
    lines.extend(f"  [unchecked] {u}" for u in catalog.unchecked)
    if catalog.inconsistencies:
        lines.append(f"{len(catalog.inconsistencies)} inconsistencies:")
        lines.extend(f"  [{i.kind}] {i.message}" for i in catalog.inconsistencies)
    else:
        lines.append("no inconsistencies")
    # Every line through escape(): names, keys and paths come from the modules' code.
    return "\n".join(escape(line) for line in lines)


def _cell(text: str) -> str:
    return escape(text.replace("|", "\\|"))


def as_markdown(catalog: Catalog) -> str:
    """The catalog as Markdown, for the people who configure Gameball campaigns."""
    lines = ["# Tracked events", ""]
    for name, group in sorted(catalog.events.items()):
        lines += [f"## `{_cell(name)}`", "", "| key | type | source | site |", "|---|---|---|---|"]
        for site in group:
            info = _site_dict(site)
            for key, meta in info["metadata"].items():
                lines.append(
                    f"| `{_cell(key)}` | {_cell(meta['type'])} | `{_cell(meta['source'])}` "
                    f"| {_cell(info['where'])} |"
                )
        lines.append("")
        for site in group:
            identity = ", ".join(f"{k}: `{_cell(v)}`" for k, v in site.identity.items())
            lines.append(
                f"- `{_cell(site.function)}` at {_cell(_where(site))}, on={site.on}; {identity}"
            )
        lines.append("")
    if catalog.orders:
        lines += [
            "## Orders (Gameball Order API)",
            "",
            "| field | source | site |",
            "|---|---|---|",
        ]
        for site in catalog.orders:
            info = _order_dict(site)
            for role, source in info["fields"].items():
                lines.append(f"| `{_cell(role)}` | `{_cell(source)}` | {_cell(info['where'])} |")
        lines.append("")
    lines += ["## Inconsistencies", ""]
    if catalog.inconsistencies:
        lines += [f"- **{i.kind}**: {_cell(i.message)}" for i in catalog.inconsistencies]
    else:
        lines.append("None.")
    checked = catalog.paths - len(catalog.unchecked)
    lines += ["", "## Unchecked", "", f"{checked} expressions checked, "]
    lines[-1] += f"{len(catalog.unchecked)} unchecked."
    if catalog.unchecked:
        lines.append("")
        lines += [f"- {_cell(str(u))}" for u in catalog.unchecked]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- the command


def register(subparsers: Any) -> None:
    """Add ``gbtrack events`` to the ``gbtrack`` command."""
    parser = subparsers.add_parser(
        "events",
        help="list every tracked event of some modules, and flag inconsistencies",
        description=(
            "Import the given modules or packages and print every event tracked with "
            "@track (and every order sent with @track_order): name, metadata keys and "
            "types, identity fields, on=, and the file:line of each call site, and the "
            "expressions the checks could not check. Exit 1 when an inconsistency is "
            "found, 2 when importing a module raises (anything, sys.exit() included)."
        ),
    )
    parser.add_argument("modules", nargs="+", metavar="MODULE", help="modules or packages")
    parser.add_argument(
        "--format", choices=["text", "json", "markdown"], default="text", help="output format"
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        imported = import_modules(args.modules)
    except ImportFailed as exc:  # anything, SystemExit included, or a @track refused
        print(f"gbtrack events: {exc}", file=sys.stderr)
        return 2
    catalog = build(imported)
    render = {"json": as_json, "markdown": as_markdown}.get(args.format, as_text)
    print(render(catalog))
    return 1 if catalog.inconsistencies else 0
