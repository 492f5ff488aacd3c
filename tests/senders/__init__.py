"""Tests of the delivery senders, with a scripted client double for the unit tests."""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from gbtrack import DeliveryOutcome, Event
from gbtrack._errors import PayloadError, RateLimitError, ServerError, TransportError
from gbtrack.gameball import EventBatch, Outcome, OutcomeKind

Script = Callable[[EventBatch, int], Outcome]


def delivered(**body: Any) -> Outcome:
    return Outcome(OutcomeKind.DELIVERED, status=200, body=body or None)


def unavailable() -> Outcome:
    return Outcome(
        OutcomeKind.RETRYABLE, status=503, error=ServerError("503", status=503, code=5003)
    )


def rate_limited(retry_after: float | None = None) -> Outcome:
    return Outcome(
        OutcomeKind.RETRYABLE,
        status=429,
        error=RateLimitError("429", status=429),
        retry_after=retry_after,
    )


def timed_out() -> Outcome:
    return Outcome(OutcomeKind.AMBIGUOUS, error=TransportError("read timeout"))


def rejected(code: int = 3003) -> Outcome:
    return Outcome(
        OutcomeKind.PERMANENT,
        status=422,
        error=PayloadError("invalid", status=422, code=code, type="VALIDATION_ERROR"),
    )


def event(name: str = "purchase", customer: str = "c-1", **kw: Any) -> Event:
    return Event(name=name, customer_id=customer, **kw)


class ScriptedClient:
    """A DeliveryClient double: answers from a script, records every call.

    ``script(batch, attempt)`` answers a send (attempt counts sends of that batch's
    first event id, from 1). ``gate``, when set, holds every request until it is set.
    Batch jobs are kept in memory: ``job_errors(batches)`` gives a job's ``errors``
    and ``failedItems``; a job is ``processing`` for ``polls_until_done`` polls.
    """

    def __init__(
        self,
        script: Script | None = None,
        *,
        secret_key: bool = False,
        job_errors: Callable[[Sequence[EventBatch]], tuple[list[Any], int]] | None = None,
        polls_until_done: int = 1,
        gate: threading.Event | None = None,
    ) -> None:
        self.script = script or (lambda batch, attempt: delivered())
        self.has_secret_key = secret_key
        self.secure = False
        self.job_errors = job_errors or (lambda batches: ([], 0))
        self.polls_until_done = polls_until_done
        self.gate = gate
        self.lock = threading.Lock()
        self.sent: list[EventBatch] = []
        self.outcomes: list[Outcome] = []
        self.jobs: dict[str, list[EventBatch]] = {}
        self.job_polls: dict[str, int] = {}
        self.status_calls = 0
        self.attempts: dict[str, int] = {}
        self.active = 0
        self.max_active = 0
        self.active_customers: set[str] = set()
        self.customer_overlap = False
        self.closed = False
        self.started = threading.Event()
        self._ids = itertools.count(1)

    def _enter(self, customers: Sequence[str]) -> None:
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            for c in customers:
                if c in self.active_customers:
                    self.customer_overlap = True
                self.active_customers.add(c)
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(30), "gate never opened"

    def _leave(self, customers: Sequence[str]) -> None:
        with self.lock:
            self.active -= 1
            for c in customers:
                self.active_customers.discard(c)

    def send(self, batch: EventBatch) -> Outcome:
        self._enter([batch.customer_id])
        try:
            with self.lock:
                key = batch.events[0].event_id
                attempt = self.attempts[key] = self.attempts.get(key, 0) + 1
            outcome = self.script(batch, attempt)
            with self.lock:
                self.outcomes.append(outcome)
                if outcome.delivered:
                    self.sent.append(batch)
            return outcome
        finally:
            self._leave([batch.customer_id])

    @property
    def delivered_events(self) -> list[Event]:
        with self.lock:
            return [e for b in self.sent for e in b.events]

    def create_batch(self, batches: Sequence[EventBatch]) -> Outcome:
        assert self.has_secret_key
        assert 1 <= len(batches) <= 1000
        customers = [b.customer_id for b in batches]
        self._enter([])
        try:
            job_id = str(next(self._ids))
            with self.lock:
                self.jobs[job_id] = list(batches)
                self.job_polls[job_id] = 0
            return delivered(jobId=int(job_id))
        finally:
            self._leave(customers[:0])

    def batch_status(self, job_id: str) -> Outcome:
        with self.lock:
            self.status_calls += 1
            self.job_polls[job_id] += 1
            batches = self.jobs[job_id]
            done = self.job_polls[job_id] >= self.polls_until_done
        if not done:
            return delivered(batchId=job_id, status="processing", totalItems=len(batches))
        errors, failed = self.job_errors(batches)
        failed_idx = {e.get("index") for e in errors if isinstance(e, dict)}
        failed_cid = {
            e.get("customerId") for e in errors if isinstance(e, dict) and "index" not in e
        }
        with self.lock:
            for i, b in enumerate(batches):
                if i not in failed_idx and b.customer_id not in failed_cid:
                    self.sent.append(b)
        return delivered(
            batchId=job_id,
            status="completed",
            totalItems=len(batches),
            processedItems=len(batches),
            failedItems=failed,
            results=[],
            errors=errors,
        )

    def stop_batch(self, job_id: str) -> Outcome:
        return delivered()

    def close(self) -> None:
        self.closed = True


class RecordingSpill:
    """A Spill double that stores everything (or nothing with ``capacity=0``)."""

    def __init__(self, capacity: int | None = None) -> None:
        self.capacity = capacity
        self.lock = threading.Lock()
        self.stored: list[tuple[Event, str]] = []

    def spill(self, events: Sequence[Event], reason: str) -> int:
        with self.lock:
            room = (
                len(events) if self.capacity is None else max(0, self.capacity - len(self.stored))
            )
            take = list(events)[:room]
            self.stored.extend((e, reason) for e in take)
            return len(take)


API_KEY = "gb-api-KEY-4242-abcdef"
SECRET_KEY = "gb-secret-KEY-4242-ghijkl"


def bounded(call: Callable[[], Any], bound: float = 10.0) -> tuple[Any, float]:
    """Run ``call`` in a thread; fail if it has not returned within ``bound`` seconds.

    Returns ``call``'s result and the seconds it took.
    """
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    began = time.monotonic()
    thread.start()
    thread.join(bound)
    assert not thread.is_alive(), f"still blocked after {bound} s"
    return result[0], time.monotonic() - began


class Outcomes:
    """An ``on_outcome`` hook that records each outcome and the thread it ran on."""

    def __init__(self) -> None:
        self.items: list[DeliveryOutcome] = []
        self.threads: set[str] = set()
        self.lock = threading.Lock()

    def __call__(self, outcome: DeliveryOutcome) -> None:
        with self.lock:
            self.items.append(outcome)
            self.threads.add(threading.current_thread().name)

    def of(self, reference: str) -> list[DeliveryOutcome]:
        """The outcomes told about one event or order (its reference)."""
        return [o for o in self.items if o.reference == reference]

    def seen(self) -> set[tuple[str | None, str, str | None]]:
        """Every ``(reference, status, reason)`` told."""
        return {(o.reference, o.status, o.reason) for o in self.items}


def child_report(pid: int, read_fd: int, write_fd: int) -> dict[str, Any]:
    """The JSON a forked child wrote to its pipe (``write_fd``), once it has exited 0."""
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, data
    report: dict[str, Any] = json.loads(data)
    return report
