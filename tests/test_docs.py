"""The docs cannot rot: every ```python block of README.md and docs/*.md runs.

The blocks of one page run in order, in one namespace, in a fresh process (so they never
touch this process's default tracker; one with gbtrack already imported, forked from
``_forkserver.py``), with warnings as errors and without any ``GAMEBALL_*``/``GBTRACK_*``
variable of the caller's environment. A block right
after an ``<!-- skip-test -->`` line is not run (for snippets that need a real key).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests._forkserver import ForkServer

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]  # docs/integrations/ too
SKIP_MARK = "<!-- skip-test -->"

# Pages owned elsewhere whose blocks are not runnable yet: page -> why.
NOT_RUNNABLE: dict[str, str] = {}

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)[ \t]*(?P<info>[^\n`]*)$")


@dataclass
class Block:
    """One fenced code block."""

    line: int  # 1-based line of the first code line
    lang: str
    code: str
    skipped: bool


def blocks_of(text: str) -> list[Block]:
    """Return the fenced blocks of a Markdown text, in order."""
    lines = text.splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        fence, indent = match["fence"], match["indent"]
        lang = match["info"].strip().split(" ")[0] if match["info"].strip() else ""
        previous = next((ln.strip() for ln in reversed(lines[:i]) if ln.strip()), "")
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence[0] * len(fence)):
            line = lines[j]
            body.append(line[len(indent) :] if line.startswith(indent) else line)
            j += 1
        if j == len(lines):
            raise AssertionError(f"unclosed code fence at line {i + 1}")
        out.append(Block(i + 2, lang, "\n".join(body) + "\n", previous == SKIP_MARK))
        i = j + 1
    return out


_RUNNER = """
import json, sys, traceback
blocks = json.loads(sys.stdin.read())
namespace = {"__name__": "__main__"}
for line, code in blocks:
    try:
        exec(compile(code, f"{sys.argv[1]}:{line}", "exec"), namespace)
    except BaseException:
        print(f"block at {sys.argv[1]}:{line} failed:", file=sys.stderr)
        traceback.print_exc()
        sys.exit(1)
"""


def _page_id(page: Path) -> str:
    return page.name if page.parent == DOCS else page.relative_to(ROOT).as_posix()


def test_block_parser() -> None:
    text = "x\n<!-- skip-test -->\n```python\na = 1\n```\n\n```python\nb = 2\n```\n```\nsh\n```\n"
    found = blocks_of(text)
    assert [(b.line, b.lang, b.code, b.skipped) for b in found] == [
        (4, "python", "a = 1\n", True),
        (8, "python", "b = 2\n", False),
        (11, "", "sh\n", False),
    ]


def _runnable(page: Path) -> list[Block]:
    return [b for b in blocks_of(page.read_text()) if b.lang == "python" and not b.skipped]


# Only pages with something to run become tests: a page of prose and shell commands is
# not a skipped test (a skip is for something the user could make run).
RUNNABLE_PAGES = [page for page in PAGES if _runnable(page)]


def test_runnable_pages_are_the_pages_with_python() -> None:
    assert ROOT / "README.md" in RUNNABLE_PAGES
    for page in PAGES:
        assert (page in RUNNABLE_PAGES) == bool(_runnable(page)), page


@pytest.fixture(scope="session")
def fresh_interpreters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForkServer]:
    """New processes with gbtrack imported and nothing else of a test (``_forkserver.py``):
    without the caller's ``GAMEBALL_*``/``GBTRACK_*`` variables, warnings as errors
    except the one-time "no delivery configured" notice."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GAMEBALL_", "GBTRACK_"))}
    env["PYTHONWARNINGS"] = "error,default:gbtrack:RuntimeWarning"
    # gbtrack and httpx (the client's and the emulator's), imported once; no other
    # module of gbtrack: a page must import what it uses, as a reader's program would.
    modules = ["gbtrack", "httpx"]
    server = ForkServer(modules, env, tmp_path_factory.mktemp("docs-streams"))
    yield server
    server.close()


@pytest.mark.parametrize("page", RUNNABLE_PAGES, ids=_page_id)
def test_python_blocks_run(page: Path, tmp_path: Path, fresh_interpreters: ForkServer) -> None:
    if page.name in NOT_RUNNABLE and page.parent == DOCS:
        pytest.skip(NOT_RUNNABLE[page.name])
    runnable = _runnable(page)
    proc = fresh_interpreters.run(
        _RUNNER,
        ["-c", _page_id(page)],
        cwd=tmp_path,  # files a snippet writes land in a temporary directory
        stdin=json.dumps([(b.line, b.code) for b in runnable]),
    )
    assert proc.returncode == 0, f"{proc.stderr}\n--- stdout ---\n{proc.stdout}"


def test_skips_are_rare() -> None:
    for page in PAGES:
        python = [b for b in blocks_of(page.read_text()) if b.lang == "python"]
        skipped = [b.line for b in python if b.skipped]
        assert len(skipped) <= max(1, len(python) // 4), f"{page.name}: too many skips {skipped}"


def test_mkdocs_nav_matches_the_pages() -> None:
    nav = re.findall(r"^\s*-\s*[^:]+:\s*(\S+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.M)
    assert sorted(nav) == sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))


def test_readme_links_every_docs_page_and_the_benchmarks() -> None:
    readme = (ROOT / "README.md").read_text()
    links = set(re.findall(r"\]\(([^)#\s]+)", readme))
    for page in DOCS.rglob("*.md"):
        path = f"docs/{page.relative_to(DOCS).as_posix()}"
        assert path in links, f"README does not link {path}"
    assert "benchmarks/README.md" in links
    assert "CHANGELOG.md" in links


# Written by the benchmarks work in parallel; checked as soon as it exists.
_PENDING = {ROOT / "benchmarks" / "README.md"}


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_relative_links_resolve(page: Path) -> None:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path = (page.parent / target).resolve()
        if path in _PENDING and not path.exists():
            continue
        assert path.exists(), f"{_page_id(page)} links a missing {target}"


def _quick_start() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Quick start")
    section = readme[start : readme.index("\n## ", start + 1)]
    return [
        line.split("#")[0].strip()
        for b in blocks_of(section)
        for line in b.code.splitlines()
        if line.strip()
    ]


def test_readme_quick_start_has_exactly_the_two_commands() -> None:
    assert _quick_start() == ["./nox -s demo", "./nox -s tests"]
    assert os.access(ROOT / "nox", os.X_OK)  # git keeps the mode: ./nox runs as written


def test_ci_runs_the_readme_commands_verbatim() -> None:
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    demo, tests = _quick_start()
    assert demo in ci
    # the same command, its output kept to refuse a run in which no test passed
    assert f"{tests} | tee .ci-tests.log" in ci
    assert ci.index(demo) < ci.index(f"{tests} | tee .ci-tests.log")
    assert not [line for line in ci if "pip install" in line]  # ./nox does the installing


def test_changelog_has_a_dated_entry_per_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## (.*)$", text, re.M)
    assert headings[0] == "[Unreleased]"
    for heading in headings[1:]:
        assert re.fullmatch(r"\[\d+\.\d+\.\d+\] - \d{4}-\d{2}-\d{2}", heading), heading
    version = re.search(r'^version = "(.+)"$', (ROOT / "pyproject.toml").read_text(), re.M)
    assert version is not None
    assert any(h.startswith(f"[{version[1]}] - ") for h in headings), "no entry for the version"
