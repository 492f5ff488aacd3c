"""Run Python code in a new process that starts with gbtrack already imported (a fork server).

Some tests run many short programs, each in a process of its own so that nothing of the
test process (its default tracker, its registered call sites) leaks in: a docs page's
code blocks, a ``gbtrack events`` command. Most of such a process's time is the start of
the interpreter and ``import gbtrack``. A :class:`ForkServer` does both once: it is a
Python process, started with the environment the programs need, that imports the given
modules and then, for each request, forks a child. The child is a fresh process as far as
the program can tell: its own ``sys.argv``, working directory, standard streams and
exit code, nothing configured or imported of the program's modules yet, and it exits
the way an interpreter does (``atexit`` handlers, non-daemon threads joined).

The server forks from a single thread, before any program ran: nothing is half-locked.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# The server's loop: one JSON request per line on stdin; per request "pid\n" then
# "status\n" on stdout. The child dup2()s its streams onto the request's files, runs the
# code as __main__ and leaves by SystemExit, the interpreter's own way out.
_SERVER = """
import importlib, json, os, sys
for name in json.loads(sys.argv[1]):
    importlib.import_module(name)
reply = sys.stdout
for line in sys.stdin:
    request = json.loads(line)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        break
    reply.write(f"{pid}\\n")
    reply.flush()
    _, status = os.waitpid(pid, 0)
    reply.write(f"{os.waitstatus_to_exitcode(status)}\\n")
    reply.flush()
else:
    sys.exit(0)
# The child.
os.chdir(request["cwd"])
for fd, (path, mode) in enumerate(
    [(request["stdin"], os.O_RDONLY), (request["stdout"], os.O_WRONLY),
     (request["stderr"], os.O_WRONLY)]
):
    opened = os.open(path, mode)
    os.dup2(opened, fd)
    os.close(opened)
sys.stdin = open(0, closefd=False)  # the old object read ahead in the server's pipe
sys.argv = request["argv"]
sys.path[0] = request["cwd"]  # the working directory, where `python -c` or `-m` look first
exec(compile(request["code"], "<string>", "exec"), {"__name__": "__main__"})
sys.exit(0)
"""


@dataclass
class Completed:
    """What a program did: its exit code and its output."""

    returncode: int
    stdout: str
    stderr: str


class ForkServer:
    """A process that imports ``modules`` once and forks a child to run each program.

    Args:
        modules: What to import before forking (e.g. ``["gbtrack"]``).
        env: The environment of the server and so of every program.
        workdir: A directory for the programs' standard streams.
    """

    def __init__(self, modules: list[str], env: dict[str, str], workdir: Path) -> None:
        self._workdir = workdir
        self._count = 0
        self._buffer = b""
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _SERVER, json.dumps(modules)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
        )

    def _line(self, timeout: float) -> str | None:
        """The server's next line, or ``None`` after ``timeout`` seconds."""
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 4096)
            if not chunk:
                raise EOFError(f"the fork server exited ({self._proc.wait()})")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def run(
        self, code: str, argv: list[str], cwd: Path, stdin: str = "", timeout: float = 120
    ) -> Completed:
        """Run ``code`` as ``__main__`` in a new child; its ``sys.argv`` is ``argv``."""
        assert self._proc.stdin is not None
        self._count += 1
        files = {
            name: self._workdir / f"{self._count}.{name}" for name in ("stdin", "stdout", "stderr")
        }
        files["stdin"].write_text(stdin)
        files["stdout"].write_text("")
        files["stderr"].write_text("")
        request = {"code": code, "argv": argv, "cwd": str(cwd)}
        request.update({name: str(path) for name, path in files.items()})
        self._proc.stdin.write(json.dumps(request).encode() + b"\n")
        self._proc.stdin.flush()
        pid = self._line(30)
        assert pid is not None, "the fork server did not fork"
        status = self._line(timeout)
        if status is None:
            os.kill(int(pid), signal.SIGKILL)  # the child this request forked
            self._line(30)
            raise TimeoutError(f"{argv} ran longer than {timeout}s")
        return Completed(int(status), files["stdout"].read_text(), files["stderr"].read_text())

    def close(self) -> None:
        """Stop the server (it exits when its input ends)."""
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
