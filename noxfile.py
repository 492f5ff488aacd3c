"""Developer tasks: `python -m nox -s tests`, `lint`, `typecheck`, `demo`, `bench`, `docs`."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False

PYTHON = None  # the interpreter nox itself runs on: Python 3.10+
# Material prints a banner about its successor on every build; the build log stays clean.
_QUIET_MKDOCS = {"NO_MKDOCS_2_WARNING": "1"}
# The site's build hooks are Python beside the pages (docs/ itself: ruff would format
# the pages' code blocks too).
_LINTED = (
    "src",
    "tests",
    "examples",
    "benchmarks",
    "docs/hooks.py",
    "docs/griffe_roles.py",
    "noxfile.py",
)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the test suite (pytest); extra arguments go to pytest."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Ruff: lint and formatting check."""
    session.install("-e", ".[lint]")
    session.run("ruff", "check", *_LINTED)
    session.run("ruff", "format", "--check", *_LINTED)


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """Mypy --strict on src/ and tests/typing/."""
    session.install("-e", ".[typecheck]")
    session.run("mypy")


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """Run the example checkout service against the local Gameball emulator."""
    session.install("-e", ".")
    session.run("python", "examples/demo.py", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Run the benchmarks and print the results table (not part of the tests)."""
    session.install("-e", ".[bench]")
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the MkDocs site in strict mode into build/site (any warning fails)."""
    session.install("-e", ".[docs]")
    session.run("mkdocs", "build", "--strict", "--site-dir", "build/site", env=_QUIET_MKDOCS)
