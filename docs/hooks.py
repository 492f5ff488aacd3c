"""MkDocs hooks: the command-line pages, and links to the repository's files.

A line ``<!-- cli: outbox drain -->`` in a page becomes the help of ``gbtrack outbox
drain``, captured in-process from the argparse parser of this checkout when the site is
built, so the pages can never go stale. A marker naming an unknown command, and a
command no page shows, fail the strict build.

The pages link files outside ``docs/`` (``../../examples/fastapi_app.py``) so that they
work on GitHub; the site gets a generated page with that file's source under
``source/`` and the link is pointed at it.
"""

from __future__ import annotations

import argparse
import logging
import os
import posixpath
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# The checkout's own code, ahead of any installed gbtrack (as mkdocstrings' `paths`).
_SRC = str(Path(__file__).resolve().parent.parent / "src")
if _SRC not in sys.path:
    sys.path.insert(0, _SRC)

from gbtrack.cli import build_parser  # noqa: E402

log = logging.getLogger("mkdocs.plugins.gbtrack_cli")

MARKER = re.compile(r"^<!-- cli:(?P<command>[ \w-]*)-->[ \t]*$", re.M)
# What the terminal width and colour of the reader's shell would otherwise change.
HELP_ENV = {"COLUMNS": "80", "NO_COLOR": "1", "TERM": "dumb"}

_shown: set[tuple[str, ...]] = set()

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\]\((?P<target>[^)\s#:]+)(?P<anchor>#[^)\s]*)?\)")
LANGUAGES = {".py": "python", ".toml": "toml", ".yml": "yaml", ".yaml": "yaml"}
_sources: dict[Path, str] = {}  # a repository file outside docs/ -> its page's src_uri


def commands(parser: argparse.ArgumentParser | None = None) -> dict[tuple[str, ...], Any]:
    """Every command of ``gbtrack``, top level first: its words mapped to its parser."""
    found: dict[tuple[str, ...], Any] = {}

    def walk(node: argparse.ArgumentParser, words: tuple[str, ...]) -> None:
        found[words] = node
        for action in node._actions:  # argparse has no public accessor for subparsers
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk(child, (*words, name))

    walk(parser or build_parser(), ())
    return found


@contextmanager
def _help_environment() -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in HELP_ENV}
    os.environ.update(HELP_ENV)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def cli_help(words: tuple[str, ...]) -> str:
    """The ``--help`` text of ``gbtrack <words>``, as a shell 80 columns wide prints it.

    Raises:
        KeyError: If there is no such command.
    """
    with _help_environment():
        text: str = commands()[words].format_help()
    return text


def render(markdown: str, page: str = "<page>") -> str:
    """Replace every ``<!-- cli: ... -->`` marker of ``markdown`` with a help block."""

    def replace(match: re.Match[str]) -> str:
        words = tuple(match["command"].split())
        try:
            text = cli_help(words)
        except KeyError:
            log.warning("%s: no command 'gbtrack %s'", page, " ".join(words))
            return match[0]
        _shown.add(words)
        return f"```text\n$ {' '.join(('gbtrack', *words, '--help'))}\n{text.rstrip()}\n```"

    return MARKER.sub(replace, markdown)


def on_pre_build(config: Any) -> None:
    """Start a build with no command shown yet."""
    _shown.clear()


def _outside_docs(page: Path, target: str, docs: Path) -> Path | None:
    """The repository file a relative link of ``page`` names, if it is outside ``docs``."""
    path = (page.parent / target).resolve()
    if path.is_relative_to(docs) or not path.is_relative_to(ROOT) or not path.is_file():
        return None
    return path


def on_files(files: Any, config: Any) -> Any:
    """Add a page with the source of each repository file the pages link."""
    from mkdocs.structure.files import File

    docs = Path(config["docs_dir"]).resolve()
    _sources.clear()
    for page in list(files.documentation_pages()):
        for match in LINK.finditer(Path(page.abs_src_path).read_text(encoding="utf-8")):
            path = _outside_docs(Path(page.abs_src_path), match["target"], docs)
            if path is None or path in _sources:
                continue
            name = path.relative_to(ROOT).as_posix()
            language = LANGUAGES.get(path.suffix, "text")
            code = path.read_text(encoding="utf-8").rstrip()
            content = (
                f"# `{name}`\n\nThis file of the repository, as of this build of the site."
                f"\n\n````{language}\n{code}\n````\n"
            )
            _sources[path] = f"source/{name}.md"
            files.append(File.generated(config, _sources[path], content=content))
    return files


def relink(markdown: str, page_path: Path, page_uri: str, docs: Path) -> str:
    """Point links to repository files outside ``docs`` at their generated pages."""

    def replace(match: re.Match[str]) -> str:
        path = _outside_docs(page_path, match["target"], docs)
        if path is None or path not in _sources:
            return match[0]
        target = posixpath.relpath(_sources[path], posixpath.dirname(page_uri) or ".")
        return f"]({target}{match['anchor'] or ''})"

    return LINK.sub(replace, markdown)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Expand the CLI markers of one page and point its repository links at the site."""
    if page.file.abs_src_path is not None:
        docs = Path(config["docs_dir"]).resolve()
        markdown = relink(markdown, Path(page.file.abs_src_path), page.file.src_uri, docs)
    return render(markdown, page.file.src_uri)


def on_post_build(config: Any) -> None:
    """Warn (failing a strict build) about every command no page shows."""
    for words in commands():
        if words not in _shown:
            log.warning("no docs page shows 'gbtrack %s --help'", " ".join(words))
