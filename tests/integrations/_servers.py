"""Real servers for the integration tests: gunicorn in a subprocess, a load driver, counts."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from gbtrack.emulator import GameballEmulator

SRC = Path(__file__).resolve().parents[2] / "src"
_LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")


@dataclass
class Server:
    """A running server subprocess and what it logged."""

    proc: subprocess.Popen[str]
    port: int = 0
    log: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def text(self) -> str:
        return "".join(self.log)


def emulator_env(emulator: GameballEmulator, **extra: str) -> dict[str, str]:
    """The environment of a server process: the emulator's address and keys, src first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GAMEBALL_", "GBTRACK_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])])
    env["EMU_URL"] = emulator.url
    env["EMU_API_KEY"] = emulator.api_key.get_secret_value()
    env.update(extra)
    return env


@contextmanager
def gunicorn(
    args: Sequence[str], cwd: Path, env: dict[str, str], workers: int = 2, timeout: float = 30
) -> Iterator[Server]:
    """Run gunicorn on 127.0.0.1 (a free port) until its workers booted; SIGTERM after."""
    cmd = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "python:gbtrack.integrations.gunicorn",
        "-b",
        "127.0.0.1:0",
        "-w",
        str(workers),
        "--graceful-timeout",
        "30",
        *args,
    ]
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stderr=subprocess.STDOUT, stdout=subprocess.PIPE, text=True
    )
    server = Server(proc)
    booted = threading.Event()

    def drain() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            server.log.append(line)
            match = _LISTENING.search(line)
            if match:
                server.port = int(match.group(1))
            if server.port and server.text().count("Booting worker") >= workers:
                booted.set()
        booted.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        assert booted.wait(timeout), server.text()
        assert proc.poll() is None, server.text()
        assert server.port, server.text()
        _wait_until_serving(server.url)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()


def stop(server: Server, timeout: float = 60) -> int:
    """SIGTERM the server (a graceful shutdown: workers run worker_exit) and wait for it."""
    server.proc.send_signal(signal.SIGTERM)
    return server.proc.wait(timeout=timeout)


def _wait_until_serving(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url + "/health", timeout=2)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@dataclass
class Load:
    """What a load run saw: answers per request number and the worker pids."""

    answers: dict[int, dict[str, object]]
    failures: list[str]


def drive(url: str, paths: Sequence[str], customers: Sequence[str], threads: int = 16) -> Load:
    """POST ``paths[n]`` as customer ``customers[n]`` (header ``X-Customer-Id``), concurrently."""
    answers: dict[int, dict[str, object]] = {}
    failures: list[str] = []
    limits = httpx.Limits(max_connections=threads, max_keepalive_connections=threads)
    with httpx.Client(base_url=url, timeout=30, limits=limits) as client:

        def one(n: int) -> None:
            try:
                response = client.post(paths[n], headers={"X-Customer-Id": customers[n]})
                response.raise_for_status()
                answers[n] = response.json()
            except Exception as exc:
                failures.append(f"{paths[n]}: {exc!r}")

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, range(len(paths))))
    return Load(answers, failures)


def check_delivery(
    emulator: GameballEmulator, name: str, customers: Sequence[str]
) -> tuple[Counter[int], list[str]]:
    """Count ``name`` events at the emulator by request number; list identity mismatches."""
    seen: Counter[int] = Counter()
    wrong: list[str] = []
    for event in emulator.events:
        if event.name != name:
            continue
        n = int(event.metadata["n"])
        seen[n] += 1
        if event.customer_id != customers[n]:
            wrong.append(f"n={n}: sent for {event.customer_id!r}, expected {customers[n]!r}")
    return seen, wrong
