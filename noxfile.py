"""Developer tasks: `python -m nox -s tests`, `lint`, `typecheck`, `demo`, `bench`, `docs`."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False

PYTHON = None  # the interpreter nox itself runs on: Python 3.10+


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the test suite (pytest); extra arguments go to pytest."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Ruff: lint and formatting check."""
    session.install("-e", ".[lint]")
    session.run("ruff", "check", "src", "tests", "examples", "benchmarks", "noxfile.py")
    session.run("ruff", "format", "--check", "src", "tests", "examples", "benchmarks", "noxfile.py")


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
    """Build the MkDocs site in strict mode."""
    session.install("-e", ".", "mkdocs>=1.6")
    session.run("mkdocs", "build", "--strict", "--site-dir", "build/site")
