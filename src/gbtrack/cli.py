"""The ``gbtrack`` command: ``emulator``, ``outbox``, ``relay`` and ``events``.

Each subcommand lives beside the code it drives and registers itself through a
``register(subparsers)`` function, so this module only dispatches.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "main"]

# (module, help): each module defines register(subparsers) -> None, setting `func`.
_SUBCOMMANDS: tuple[tuple[str, str], ...] = (
    ("gbtrack.emulator._cli", "run the local Gameball emulator"),
    ("gbtrack.outbox._cli", "inspect and operate the durable outbox"),
    ("gbtrack.outbox._relay", "deliver the SQL outbox to Gameball"),
    ("gbtrack._catalog", "list every tracked event and flag inconsistencies"),
)


def build_parser() -> argparse.ArgumentParser:
    """Return the ``gbtrack`` argument parser with every available subcommand."""
    import importlib

    from gbtrack import __version__

    parser = argparse.ArgumentParser(
        prog="gbtrack", description="gbtrack: declarative customer-event tracking for Gameball."
    )
    parser.add_argument("--version", action="version", version=f"gbtrack {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name, _help in _SUBCOMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:  # a subcommand not built yet in this tree
            if exc.name != module_name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``gbtrack`` command; return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    return int(func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
