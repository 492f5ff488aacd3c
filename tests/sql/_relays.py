"""Start ``gbtrack relay`` subprocesses against an emulator, and read what they said."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import IO

import gbtrack
from gbtrack.emulator import GameballEmulator

SRC = str(Path(gbtrack.__file__).resolve().parent.parent)


class RelayProcess:
    """One ``python -m gbtrack relay`` child; stderr goes to a file (no pipe to fill)."""

    def __init__(
        self, url: str, emulator: GameballEmulator, log: Path, *args: str, secret: bool = True
    ) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GAMEBALL_", "GBTRACK_"))}
        env.update(
            PYTHONPATH=SRC,
            GAMEBALL_API_KEY=emulator.api_key.get_secret_value(),
            GAMEBALL_BASE_URL=emulator.url,
        )
        if secret and emulator.secret_key is not None:
            env["GAMEBALL_SECRET_KEY"] = emulator.secret_key.get_secret_value()
        self.log = log
        self._err: IO[bytes] = open(log, "wb")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gbtrack", "relay", "--url", url, *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=self._err,
        )

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.stderr())
            if found:
                return found
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"relay never said {pattern!r}; stderr:\n{self.stderr()}")

    def terminate(self, timeout: float = 30.0) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        self.proc.kill()
        self.wait(10)

    def wait(self, timeout: float = 30.0) -> tuple[int, str]:
        out, _ = self.proc.communicate(timeout=timeout)
        self._err.close()
        return self.proc.returncode, out.decode()


def seqs(emulator: GameballEmulator) -> Counter[int]:
    """How many times each ``seq`` reached the emulator."""
    return Counter(int(e.metadata["seq"]) for e in emulator.events)


def wait_until(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
