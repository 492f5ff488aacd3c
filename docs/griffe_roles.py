"""Griffe extension: Sphinx roles in docstrings become links in the API reference.

gbtrack's docstrings name other objects the Sphinx way (``:class:`~gbtrack.Limits```),
which mkdocstrings would print as is. This turns each role into the name in code,
linked to its page when that object is documented: the target is resolved from the
docstring's own scope (``:meth:`close``` in a class means that class's ``close``) and
handed to mkdocs-autorefs as an optional reference, so a private target stays plain
code instead of failing the strict build.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

LITERAL_BLOCK = re.compile(r"(\S)::\n\n")
ROLE = re.compile(r":(?:class|meth|func|mod|attr|exc|data|obj|const):`(?P<target>[^`]+)`")


def _reference(obj: Any, target: str) -> str:
    shorten = target.startswith("~")
    path = target.lstrip("~.")
    shown = path.rsplit(".", 1)[-1] if shorten else path
    first, _, rest = path.partition(".")
    if first != "gbtrack":
        try:
            resolved = obj.resolve(first)
        except (griffe.NameResolutionError, KeyError, AttributeError):
            resolved = None
        if resolved is not None:
            path = f"{resolved}.{rest}" if rest else resolved
    return (
        f'<autoref optional identifier="{html.escape(path)}">'
        f"<code>{html.escape(shown)}</code></autoref>"
    )


def _rewrite(obj: griffe.Object) -> None:
    docstring = obj.docstring
    if docstring is not None:
        value = ROLE.sub(lambda m: _reference(obj, m["target"]), docstring.value)
        # reST's "text::" before a literal block reads "text:" (the block stays code).
        value = LITERAL_BLOCK.sub(r"\1:\n\n", value)
        if value != docstring.value:
            docstring.value = value
            docstring.__dict__.pop("parsed", None)  # parsed lazily; drop a stale parse
    for member in obj.members.values():
        if not member.is_alias:
            _rewrite(member)  # type: ignore[arg-type]


class SphinxRoles(griffe.Extension):
    """Rewrites the Sphinx roles of every docstring into autorefs references."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Rewrite every docstring of a package once it is fully loaded."""
        _rewrite(pkg)
