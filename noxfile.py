"""Developer tasks: `python -m nox -s tests`, `lint`, `typecheck`, `demo`, `bench`, `docs`,
`mutate`."""

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


# Mutation testing (issue 9): the delivery engine's modules against the tests that exercise
# them; configured in pyproject.toml's [tool.mutmut] (files, test selection, workers).
# Module -> the mutants that count (mutmut's names; of _event.py only the masking helpers).
ENGINE_MUTANTS = {
    "_protocol._outcome": "gbtrack._protocol._outcome.*",
    "senders._policy": "gbtrack.senders._policy.*",
    "_protocol._jobs": "gbtrack._protocol._jobs.*",
    "_protocol._wire": "gbtrack._protocol._wire.*",
    "masking": "gbtrack._event.x_*mask*",
    "senders._requests": "gbtrack.senders._requests.*",
    "senders._queue": "gbtrack.senders._queue.*",
    "senders._dispatch": "gbtrack.senders._dispatch.*",
    "outbox._sql": "gbtrack.outbox._sql.*",
    "_transaction": "gbtrack._transaction.*",
}


@nox.session(python=PYTHON)
def mutate(session: nox.Session) -> None:
    """Mutation testing of the delivery engine and the SQL outbox (mutmut 3); score per module.

    Starts from scratch (``mutants/`` is removed) unless ``-- --keep`` is given; other
    arguments go to ``mutmut run`` instead of the engine's mutants (e.g. one mutant's name).
    """
    import fnmatch
    import shutil
    from collections import Counter

    args = [arg for arg in session.posargs if arg != "--keep"]
    if "--keep" not in session.posargs:
        shutil.rmtree("mutants", ignore_errors=True)
    session.install("-e", ".[test]", "mutmut>=3.3")
    session.run("mutmut", "run", *(args or ENGINE_MUTANTS.values()), silent=True)
    listing = session.run("mutmut", "results", "--all", "true", silent=True) or ""
    counts: dict[str, Counter[str]] = {module: Counter() for module in ENGINE_MUTANTS}
    for line in str(listing).splitlines():
        name, _, status = line.strip().rpartition(": ")
        for module, pattern in ENGINE_MUTANTS.items():
            if fnmatch.fnmatch(name, pattern) and status != "not checked":
                counts[module][status] += 1
                if status not in ("killed", "timeout"):
                    session.log(f"{status}: {name}")
    total = Counter[str]()
    for module, counted in counts.items():
        total.update(counted)
        caught = counted["killed"] + counted["timeout"]  # a mutant that hangs is caught too
        session.log(f"{module}: {caught}/{counted.total()} caught {dict(counted)}")
    caught = total["killed"] + total["timeout"]
    session.log(f"engine: {caught}/{total.total()} caught {dict(total)}")
