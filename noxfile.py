"""Developer tasks: `./nox -s tests`, `lint`, `typecheck`, `demo`, `build`, `bench`, `docs`,
`mutate` (`./nox` runs nox from `.venv`; `python -m nox` works where nox is installed)."""

from __future__ import annotations

import glob
import os
import shutil
import zipfile
from pathlib import Path

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


def _test_workers() -> int:
    """Two pytest-xdist workers per CPU this process may run on, at most 16."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        cpus = os.cpu_count() or 1
    return min(2 * cpus, 16)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the test suite (pytest) on two workers per CPU; extra arguments go to pytest.

    ``-- -n 0`` runs it in one process (e.g. with ``--pdb``).
    """
    session.install("-e", ".[test]")
    # pytest-xdist: two workers per core (at most 16), since the suite waits more than it
    # computes (real servers, paced rate limits, processes restarted): on 2 idle cores
    # one worker per core kept the CPU half idle and took 178 s, two per core 118-130 s
    # (three per core: 109 s). Each worker starts its servers (PostgreSQL, Redis) once.
    # A worker takes one test at a time (--maxschedchunk 1) from a queue that starts
    # with the slow ones (tests/conftest.py), so the run ends evenly. The slowest tests
    # are printed, so a slow newcomer shows (mark it slow).
    # pytest keeps its rewritten test modules as .pyc files: with PYTHONDONTWRITEBYTECODE
    # set, each worker would rewrite all of them on every run (seconds of CPU each).
    session.run(
        "pytest",
        "-n",
        str(_test_workers()),
        "--maxschedchunk",
        "1",
        "--durations=15",
        *session.posargs,
        env={"PYTHONDONTWRITEBYTECODE": ""},
    )


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


# What the wheel must carry (issue 20): the typing marker, the emulator's live page, the CLI.
_WHEEL_MUST_HAVE = ("gbtrack/py.typed", "gbtrack/emulator/_page.py", "gbtrack/cli.py")


@nox.session(python=PYTHON)
def build(session: nox.Session) -> None:
    """Build the sdist and wheel into dist/, check them (twine, contents), then test the wheel.

    The ``wheel`` session runs next: it installs the wheel into a fresh virtual
    environment and runs the demo from it.
    """
    shutil.rmtree("dist", ignore_errors=True)
    session.install("build>=1.2", "twine>=5")
    session.run("python", "-m", "build", "--outdir", "dist")
    dists = sorted(glob.glob("dist/*"))
    session.run("twine", "check", "--strict", *dists)
    (wheel_path,) = glob.glob("dist/*.whl")
    with zipfile.ZipFile(wheel_path) as wheel_zip:
        names = set(wheel_zip.namelist())
        missing = [name for name in _WHEEL_MUST_HAVE if name not in names]
        entry_points = next((n for n in names if n.endswith(".dist-info/entry_points.txt")), "")
        scripts = wheel_zip.read(entry_points).decode() if entry_points else ""
    if missing:
        session.error(f"the wheel lacks {', '.join(missing)}")
    if "gbtrack = gbtrack.cli:main" not in scripts:
        session.error("the wheel declares no gbtrack command (gbtrack = gbtrack.cli:main)")
    session.log(f"{wheel_path}: {len(names)} files, py.typed, the emulator page, the CLI")
    session.notify("wheel")


@nox.session(python=PYTHON, reuse_venv=False)
def wheel(session: nox.Session) -> None:
    """Install the wheel that ``build`` made into a fresh virtual environment; run the demo."""
    wheels = glob.glob("dist/*.whl")
    if len(wheels) != 1:
        session.error("no single wheel in dist/: run `./nox -s build`")
    session.install(wheels[0])
    root = Path.cwd()
    session.chdir(session.create_tmp())  # nothing of the checkout on sys.path
    session.run(
        "python",
        "-c",
        "import gbtrack, sys; sys.exit('site-packages' not in gbtrack.__file__)",
    )
    session.run("gbtrack", "--version")
    help_text = session.run("gbtrack", "emulator", "--help", silent=True) or ""
    if "live page" not in str(help_text):
        session.error("`gbtrack emulator --help` does not mention the live page")
    session.run("python", "-c", _LIVE_PAGE_CHECK)
    session.run("python", str(root / "examples" / "demo.py"))


# The installed emulator serves its live page (the HTML lives in gbtrack/emulator/_page.py).
_LIVE_PAGE_CHECK = """
import httpx
from gbtrack.emulator import GameballEmulator
with GameballEmulator() as emulator:
    page = httpx.get(emulator.url + "/")
assert page.status_code == 200 and "Gameball emulator: live" in page.text, page.status_code
print("the installed emulator serves its live page")
"""


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
    "_pipeline": "gbtrack._pipeline.*",
    "_settings": "gbtrack._settings.*",
    "_order": "gbtrack._order.*",
    "_outcomes": "gbtrack._outcomes.*",
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
