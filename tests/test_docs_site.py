"""The docs site: built strictly, an API reference with every public name, CLI pages equal
to the real ``--help``, and pages that work offline in a real browser.

The site is built once per run with this interpreter's ``mkdocs`` (the ``docs`` extra)
into a temporary directory, in the background from the run's start (``_docs_site.py``).
The browser tests serve it on 127.0.0.1 and drive the OS's headless Chromium over CDP
(``_chromium.py``); screenshots are kept in ``build/test-artifacts/docs/``.
"""

from __future__ import annotations

import argparse
import functools
import html
import http.server
import importlib
import importlib.util
import json
import logging
import os
import pkgutil
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from tests._chromium import Browser, Page, find_chromium
from tests._docs_site import built_site

import gbtrack
from gbtrack.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
REFERENCE = DOCS / "reference"
ARTIFACTS = ROOT / "build" / "test-artifacts" / "docs"
CHROMIUM = find_chromium()
NEEDS = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")
MISSING = [name for name in NEEDS if importlib.util.find_spec(name.split(".")[0]) is None]

needs_mkdocs = pytest.mark.skipif(
    bool(MISSING),
    reason=f"{', '.join(MISSING)} not installed (pip install -e '.[docs]')",
)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium is not installed (apt-get install chromium; .ci/run does)",
)


def _load(filename: str) -> ModuleType:
    """Import one of the site's build-time Python files under docs/."""
    spec = importlib.util.spec_from_file_location(f"gbtrack_docs_{filename[:-3]}", DOCS / filename)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hooks = _load("hooks.py")


def public_modules() -> list[str]:
    """Every importable public module of gbtrack: no ``_`` in its path, no ``__main__``."""
    found = ["gbtrack"]
    for info in pkgutil.walk_packages(gbtrack.__path__, "gbtrack."):
        parts = info.name.split(".")
        if not any(part.startswith("_") for part in parts):
            found.append(info.name)
    return sorted(found)


def documented_modules() -> set[str]:
    """The modules the reference pages render with a ``::: module`` directive."""
    found: set[str] = set()
    for page in REFERENCE.rglob("*.md"):
        found.update(re.findall(r"^::: ([\w.]+)\s*$", page.read_text(), re.M))
    return found


def test_every_public_module_has_a_reference_directive() -> None:
    modules = public_modules()
    assert "gbtrack.integrations.flask" in modules  # the walk finds subpackages' modules
    missing = sorted(set(modules) - documented_modules())
    assert not missing, f"add a '::: module' directive under docs/reference/ for {missing}"


def test_every_public_module_declares_its_names() -> None:
    for name in public_modules():
        module = importlib.import_module(name)
        if name == "gbtrack.integrations":  # a namespace of modules, nothing of its own
            continue
        assert isinstance(getattr(module, "__all__", None), list), f"{name} has no __all__"


# --- the built site -------------------------------------------------------------------
@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once per test run (``tests/_docs_site.py``): started in the
    background when the run begins; under pytest-xdist the workers share it."""
    if MISSING:
        pytest.skip(f"{', '.join(MISSING)} not installed (pip install -e '.[docs]')")
    return built_site(tmp_path_factory.getbasetemp())


@needs_mkdocs
def test_every_public_name_is_in_the_built_reference(site: Path) -> None:
    ids: set[str] = set()
    for page in (site / "reference").rglob("index.html"):
        ids.update(re.findall(r'\bid="([\w.]+)"', page.read_text()))
    missing = [
        f"{name}.{member}"
        for name in public_modules()
        for member in getattr(importlib.import_module(name), "__all__", [])
        if f"{name}.{member}" not in ids
    ]
    assert not missing, f"public names missing from the API reference: {missing}"


@needs_mkdocs
def test_reference_links_docstring_cross_references(site: Path) -> None:
    # ":class:`~gbtrack.Limits`" in a docstring becomes a link, never raw reST.
    text = (site / "reference" / "gbtrack" / "index.html").read_text()
    assert ":class:" not in text
    assert ":func:" not in text
    assert re.search(r'<a class="autorefs autorefs-internal"[^>]*href="#gbtrack\.Limits"', text)


@needs_mkdocs
def test_roles_resolve_from_the_docstrings_scope() -> None:
    import griffe

    roles = _load("griffe_roles.py")
    package = griffe.load(
        "gbtrack",
        search_paths=[ROOT / "src"],
        extensions=griffe.load_extensions(roles.SphinxRoles()),
    )
    config = package["senders._config.DeliveryConfig"].docstring.value
    # ":meth:`resolve`" in the class: that class's method, shown as written.
    assert (
        '<autoref optional identifier="gbtrack.senders._config.DeliveryConfig.resolve">'
        "<code>resolve</code></autoref>"
    ) in config
    # ":class:`~gbtrack.ConfigurationError`": the full path, shown by its last name.
    assert (
        '<autoref optional identifier="gbtrack.ConfigurationError">'
        "<code>ConfigurationError</code></autoref>"
    ) in config
    assert ":class:" not in config
    assert ":meth:" not in config
    # reST's "result::" before a literal block reads "result:".
    assert "result:\n\n" in package.docstring.value


@needs_mkdocs
def test_site_loads_nothing_from_elsewhere(site: Path) -> None:
    for page in site.rglob("*.html"):
        text = page.read_text()
        external = re.findall(r'<(?:script|link|img)\b[^>]*(?:src|href)="(https?:)?//', text)
        assert not external, f"{page.relative_to(site)} loads an external asset"
        assert "fonts.googleapis" not in text
        assert "fonts.gstatic" not in text


@needs_mkdocs
def test_links_to_repository_files_get_a_page(site: Path) -> None:
    # A page linking ../../examples/x.py (right on GitHub) links a generated page with
    # the file's source on the site.
    links = [
        (page, path)
        for page in DOCS.rglob("*.md")
        for match in hooks.LINK.finditer(page.read_text())
        if (path := hooks._outside_docs(page, match["target"], DOCS.resolve())) is not None
    ]
    if not links:
        pytest.skip("no page links a repository file outside docs/")
    for page, path in links:
        name = path.relative_to(ROOT).as_posix()
        built_page = page.relative_to(DOCS).with_suffix("")
        built = site / (built_page.parent if built_page.name == "index" else built_page)
        href = os.path.relpath(site / "source" / name, built).replace(os.sep, "/")
        assert f'href="{href}/"' in (built / "index.html").read_text(), (page, name)
        source = _text((site / "source" / name / "index.html").read_text())
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        assert all(line.strip() in source for line in lines[:20]), name


# --- the CLI pages --------------------------------------------------------------------
# What `python -m gbtrack <words> --help` prints, for every command: one interpreter runs
# the package's __main__ as `-m` does (runpy, sys.argv as the shell gives it) once per
# command, instead of one interpreter per command (each costs an import of gbtrack).
_ALL_HELP = """
import contextlib, io, json, runpy, sys
texts = {}
for words in json.loads(sys.argv[1]):
    sys.argv = ["gbtrack", *words, "--help"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            runpy.run_module("gbtrack", run_name="__main__", alter_sys=True)
        except SystemExit as exited:
            assert exited.code in (0, None), (words, exited.code)
    texts[" ".join(words)] = out.getvalue()
print(json.dumps(texts))
"""


@functools.cache  # two tests compare each command's help: one subprocess for all
def _all_real_help() -> dict[str, str]:
    env = {**os.environ, **hooks.HELP_ENV}
    proc = subprocess.run(
        [sys.executable, "-c", _ALL_HELP, json.dumps(COMMANDS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    texts: dict[str, str] = json.loads(proc.stdout)
    return texts


def _real_help(words: tuple[str, ...]) -> str:
    return _all_real_help()[" ".join(words)]


COMMANDS = sorted(hooks.commands())


@pytest.mark.parametrize("words", COMMANDS, ids=lambda w: " ".join(("gbtrack", *w)))
def test_generated_help_is_the_real_help(words: tuple[str, ...]) -> None:
    assert hooks.cli_help(words) == _real_help(words)


def test_every_command_is_found() -> None:
    found = {" ".join(words) for words in COMMANDS}
    assert {"", "events", "emulator", "outbox", "outbox drain", "outbox retry"} <= found


def _markers() -> dict[tuple[str, ...], Path]:
    found: dict[tuple[str, ...], Path] = {}
    for page in (DOCS / "cli").rglob("*.md"):
        for match in hooks.MARKER.finditer(page.read_text()):
            found[tuple(match["command"].split())] = page
    return found


def test_every_command_has_a_page() -> None:
    assert sorted(_markers()) == COMMANDS


def test_a_marker_becomes_a_help_block() -> None:
    page = "intro\n<!-- cli: outbox drain -->\nafter\n"
    rendered = hooks.render(page)
    assert rendered.startswith("intro\n```text\n$ gbtrack outbox drain --help\nusage: ")
    assert hooks.cli_help(("outbox", "drain")).rstrip() in rendered
    assert rendered.endswith("\n```\nafter\n")


def test_an_unknown_command_fails_the_strict_build(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "mkdocs.plugins.gbtrack_cli"):
        assert hooks.render("<!-- cli: outbox nope -->", "x.md") == "<!-- cli: outbox nope -->"
    assert "x.md: no command 'gbtrack outbox nope'" in caplog.text


def test_a_command_without_a_page_fails_the_strict_build(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hooks.on_pre_build(None)
    hooks.render("<!-- cli: outbox -->")
    with caplog.at_level(logging.WARNING, "mkdocs.plugins.gbtrack_cli"):
        hooks.on_post_build(None)
    assert "no docs page shows 'gbtrack outbox drain --help'" in caplog.text
    assert "'gbtrack outbox --help'" not in caplog.text


def test_help_ignores_the_terminal_width(monkeypatch: pytest.MonkeyPatch) -> None:
    narrow = hooks.cli_help(("emulator",))
    monkeypatch.setenv("COLUMNS", "200")
    assert hooks.cli_help(("emulator",)) == narrow
    assert os.environ["COLUMNS"] == "200"  # put back


def _text(page_html: str) -> str:
    """The page's text: tags removed, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", page_html))


@needs_mkdocs
@pytest.mark.parametrize("words", COMMANDS, ids=lambda w: " ".join(("gbtrack", *w)))
def test_built_cli_page_shows_the_real_help(site: Path, words: tuple[str, ...]) -> None:
    page = _markers()[words].relative_to(DOCS).with_suffix("")
    built = site / (page.parent if page.name == "index" else page) / "index.html"
    assert _real_help(words).rstrip() in _text(built.read_text())


def test_parser_walk_matches_argparse() -> None:
    # The hook walks argparse's private subparser actions: the drain parser it finds
    # must be the one parse_args uses.
    parser = build_parser()
    args = parser.parse_args(["outbox", "drain", "--timeout", "3"])
    drain = hooks.commands(parser)[("outbox", "drain")]
    assert isinstance(drain, argparse.ArgumentParser)
    assert drain.parse_args(["--timeout", "3"]).timeout == args.timeout


# --- in a real browser ----------------------------------------------------------------
class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def served(site: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="docs-site", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


NAV_LINKS = "[...document.querySelectorAll('nav.md-nav--primary .md-nav__link')]"
HIGHLIGHTED = (
    "document.querySelectorAll('.highlight code span.k, .highlight code span.kn,"
    " .highlight code span.s2, .highlight code span.nf').length"
)


def _check_page(page: Page, screenshot: str) -> None:
    # Navigation: the primary nav lists the site's sections.
    titles = page.evaluate(f"JSON.stringify({NAV_LINKS}.map(a => a.textContent.trim()))")
    for expected in ("Troubleshooting", "Integrations", "API reference", "Command line"):
        assert expected in titles, titles
    # Highlighting: Pygments' token classes inside code blocks.
    assert page.evaluate(HIGHLIGHTED) > 0
    # Material's own JavaScript ran (it builds the search, a sign its bundle loaded).
    page.wait_for("document.querySelector('.md-search__input') !== null")
    page.wait_for("document.fonts.status === 'loaded'")
    page.screenshot(ARTIFACTS / screenshot, full_page=False)
    assert page.errors() == []
    # Offline: every resource the page fetched (scripts, styles, fonts, the search
    # index) came from the served site.
    origin = page.evaluate("location.origin")
    fetched = page.evaluate(
        "JSON.stringify(performance.getEntriesByType('resource').map(e => e.name))"
    )
    assert json.loads(fetched), "no resource loaded: the check would prove nothing"
    assert [url for url in json.loads(fetched) if not url.startswith(origin + "/")] == []


@needs_mkdocs
@needs_chromium
@pytest.mark.slow
@pytest.mark.parametrize(
    ("path", "screenshot", "heading"),
    [
        ("/", "home.png", "gbtrack"),
        ("/reference/gbtrack/", "reference-gbtrack.png", "gbtrack"),
        ("/integrations/asgi/", "integration-asgi.png", "FastAPI"),
        ("/troubleshooting/", "troubleshooting.png", "Troubleshooting"),
    ],
)
def test_page_in_a_real_browser(
    served: str, browser: Browser, path: str, screenshot: str, heading: str
) -> None:
    page = browser.open(served + path)
    assert heading in page.evaluate("document.querySelector('h1').textContent")
    _check_page(page, screenshot)


@needs_mkdocs
@needs_chromium
@pytest.mark.slow
def test_reference_page_has_rendered_signatures_and_links(served: str, browser: Browser) -> None:
    page = browser.open(served + "/reference/gbtrack/")
    # The Tracker's entry: an anchored heading, a highlighted signature, its docstring.
    assert page.evaluate("document.getElementById('gbtrack.Tracker') !== null")
    assert page.evaluate(
        "document.querySelector('[id=\"gbtrack.track\"]')"
        ".closest('.doc-object').querySelector('.doc-signature span.nf') !== null"
    )
    # A docstring cross-reference resolves to an anchor on the page.
    target = page.evaluate(
        "document.querySelector('a.autorefs-internal[href=\"#gbtrack.Limits\"]') !== null"
    )
    assert target
    assert page.errors() == []


@needs_mkdocs
@needs_chromium
@pytest.mark.slow
def test_search_works_offline(served: str, browser: Browser) -> None:
    page = browser.open(served + "/")
    page.evaluate(
        "(() => { const box = document.querySelector('.md-search__input');"
        " box.focus(); box.value = 'outbox';"
        " box.dispatchEvent(new Event('input', {bubbles: true})); return true; })()"
    )
    page.wait_for("document.querySelectorAll('.md-search-result__item').length > 0", 30)
    page.screenshot(ARTIFACTS / "search.png", full_page=False)
    assert page.errors() == []
