"""The docs site for the tests: built once per run, in the background from the run's start.

``mkdocs build --strict`` takes seconds of CPU. A run that has tests needing the site
starts the build as soon as its first test starts (``tests/conftest.py``), so the build
overlaps with other tests instead of holding a worker that waits for it. Under
pytest-xdist the workers share one build in the run's shared temporary directory: the
building process holds an exclusive lock on ``docs-site.lock`` until it is done, and
:func:`built_site` takes that lock, so it returns only a finished site; if no build
ran (or it failed), it builds in the foreground and reports mkdocs' output.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The build, run in a child: lock, build unless built, mark success, unlock (at exit).
# A strict build that fails has written pages all the same: only the mark says it passed.
_BUILDER = """
import fcntl, os, subprocess, sys
lock, out, config = sys.argv[1:4]
with open(lock, "w") as held:
    fcntl.flock(held, fcntl.LOCK_EX)
    if not os.path.isfile(out + ".built"):
        done = subprocess.run(
            [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", config,
             "--site-dir", out],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300, check=False,
        )
        if done.returncode == 0:
            open(out + ".built", "w").close()
"""


def run_directory(basetemp: Path) -> Path:
    """The temporary directory the run's workers share (xdist: the parent of theirs)."""
    return basetemp.parent if os.environ.get("PYTEST_XDIST_WORKER") else basetemp


def _env() -> dict[str, str]:
    return {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's banner: a clean log


def start_build(basetemp: Path) -> subprocess.Popen[bytes] | None:
    """Start the build in the background, unless a worker of this run already did.

    Returns:
        The builder process to wait for at the end of the session, or ``None``.
    """
    if importlib.util.find_spec("mkdocs") is None:
        return None  # the tests that need the site skip, saying why
    base = run_directory(basetemp)
    try:
        os.close(os.open(base / "docs-site.started", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return None  # another worker's
    return subprocess.Popen(
        [sys.executable, "-c", _BUILDER, str(base / "docs-site.lock"),
         str(base / "docs-site"), str(ROOT / "mkdocs.yml")],
        cwd=ROOT,
        env=_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a group of its own: stopped with its mkdocs if unused
    )  # fmt: skip


def built_site(basetemp: Path) -> Path:
    """The built site: waits for a build in progress; builds here if none succeeded."""
    base = run_directory(basetemp)
    out = base / "docs-site"
    with (base / "docs-site.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (base / "docs-site.built").is_file():
            shutil.rmtree(out, ignore_errors=True)  # what a failed build left
            proc = subprocess.run(
                [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                 str(ROOT / "mkdocs.yml"), "--site-dir", str(out)],
                cwd=ROOT,
                env=_env(),
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )  # fmt: skip
            assert proc.returncode == 0, (
                f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
            )
            (base / "docs-site.built").touch()
    return out
