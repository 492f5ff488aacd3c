"""Shared fixtures: a temporary outbox, events, and an in-process Gameball over MockTransport.

``FakeGameball`` answers the real :class:`~gbtrack.gameball.GameballClient` through
``httpx.MockTransport`` (the client's documented seam): it records accepted events,
fails scripted requests, and runs batch jobs with per-item failures. Tests that need a
server another process can reach use the emulator instead.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gbtrack import Event
from gbtrack.gameball import GameballClient
from gbtrack.outbox import OutboxStore


def make_events(
    n: int, *, customers: int = 5, name: str = "purchase", start: int = 0
) -> list[Event]:
    """``n`` events, spread over ``customers`` customers, each with a distinct ``seq``."""
    return [
        Event(
            name=f"{name}_{i}",
            customer_id=f"c-{i % customers}",
            email=f"user{i % customers}@example.com",
            metadata={"seq": i, "amount": 1.5},
        )
        for i in range(start, start + n)
    ]


class FakeGameball:
    """A scripted Gameball behind ``httpx.MockTransport``; thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[dict[str, Any]] = []  # one entry per accepted event
        self.requests: list[httpx.Request] = []
        self.script: list[tuple[int, dict[str, Any] | None]] = []  # next answers to /events
        self.fail_all: tuple[int, dict[str, Any] | None] | None = None
        self.jobs: dict[str, dict[str, Any]] = {}
        self.item_errors: dict[int, tuple[int, str]] = {}  # batch item index -> (code, message)
        self.unattributed_failures = 0  # failedItems without identifying errors
        self.batch_create_status: int | None = None
        self._ids = itertools.count(1)

    def seqs(self) -> list[int]:
        with self.lock:
            return [e["metadata"]["seq"] for e in self.received]

    def handler(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append(request)
            path = request.url.path
            if path.endswith("/integrations/events"):
                return self._events(request)
            if path.endswith("/batch/events"):
                return self._create(request)
            if path.endswith("/status"):
                job = self.jobs[path.split("/")[-2]]
                return httpx.Response(200, json=job)
        return httpx.Response(404, json={"code": 3017, "message": "not found"})

    def _events(self, request: httpx.Request) -> httpx.Response:
        answer = self.script.pop(0) if self.script else self.fail_all
        if answer is not None:
            status, body = answer
            return httpx.Response(status, json=body)
        body = json.loads(request.content)
        self._record(body)
        return httpx.Response(200, json={"success": True})

    def _record(self, body: dict[str, Any]) -> None:
        for name, metadata in body["events"].items():
            self.received.append(
                {"customerId": body["customerId"], "name": name, "metadata": metadata}
            )

    def _create(self, request: httpx.Request) -> httpx.Response:
        if self.batch_create_status is not None:
            return httpx.Response(self.batch_create_status, json={"code": 3000, "message": "no"})
        items = json.loads(request.content)["body"]
        job_id = str(next(self._ids))
        errors = []
        for index, item in enumerate(items):
            if index in self.item_errors:
                code, message = self.item_errors[index]
                errors.append(
                    {
                        "index": index,
                        "customerId": item["customerId"],
                        "code": code,
                        "message": message,
                    }
                )
            else:
                self._record(item)
        failed = len(errors) + self.unattributed_failures
        self.jobs[job_id] = {
            "batchId": job_id,
            "status": "completed",
            "progress": 100,
            "totalItems": len(items),
            "processedItems": len(items),
            "failedItems": failed,
            "results": [],
            "errors": errors,
        }
        return httpx.Response(200, json={"jobId": int(job_id)})


@pytest.fixture
def fake_gameball() -> FakeGameball:
    return FakeGameball()


@pytest.fixture
def client(fake_gameball: FakeGameball) -> Iterator[GameballClient]:
    with GameballClient("test-api-key", transport=httpx.MockTransport(fake_gameball.handler)) as c:
        yield c


@pytest.fixture
def secure_client(fake_gameball: FakeGameball) -> Iterator[GameballClient]:
    with GameballClient(
        "test-api-key",
        secret_key="test-secret-key",
        transport=httpx.MockTransport(fake_gameball.handler),
    ) as c:
        yield c


@pytest.fixture
def outbox_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "outbox.sqlite3"


@pytest.fixture
def store(outbox_path: Path) -> Iterator[OutboxStore]:
    with OutboxStore(outbox_path) as s:
        yield s


# The emulator's fixtures, for the tests that need a server other processes can reach.
from gbtrack.emulator.pytest_plugin import (  # noqa: E402
    gameball_emulator,
    gameball_emulator_factory,
)

__all__ = ["FakeGameball", "gameball_emulator", "gameball_emulator_factory", "make_events"]
