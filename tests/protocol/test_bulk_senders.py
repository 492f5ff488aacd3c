"""Both senders act on the one batch-job state machine's steps the same way.

What each create and status answer *means* is tested once, at the machine
(``test_bulk_job.py``); here, against the emulator, each step is acted on by the
background sender and by the outbox: a failed create finishes every item at once (and
the retry brings them), a refused create falls back to one request per customer and
pauses the batch endpoint, and a refused key on the create stops sending without
dropping anything.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import pytest
from tests.senders import ScriptedClient

from gbtrack import AuthenticationError, Event
from gbtrack.emulator import GameballEmulator
from gbtrack.gameball import EventBatch, GameballClient, Outcome, OutcomeKind
from gbtrack.outbox import OutboxDrainer, OutboxStore
from gbtrack.senders import BackgroundSender, RateLimiter, RetryPolicy

N = 20
POLICY = RetryPolicy(base_delay=0.0, max_delay=0.0)
FAST = RateLimiter(((10_000, 1.0),))


def _events() -> list[Event]:
    return [Event(name="purchase", customer_id=f"c-{i}", metadata={"seq": i}) for i in range(N)]


def _client(emulator: GameballEmulator) -> GameballClient:
    return GameballClient(emulator.api_key, secret_key=emulator.secret_key, base_url=emulator.url)


def _seqs(emulator: GameballEmulator) -> list[int]:
    return sorted(int(e.metadata["seq"]) for e in emulator.events)


def _count(emulator: GameballEmulator, endpoint: str) -> int:
    return sum(n for (name, _), n in emulator.requests.items() if name == endpoint)


def _background(
    emulator: GameballEmulator, retry: RetryPolicy = POLICY
) -> tuple[int, int, dict[str, int]]:
    """Deliver N events through a BackgroundSender in bulk mode: (delivered, retried, dropped)."""
    with _client(emulator) as client:
        sender = BackgroundSender(
            client, retry=retry, rate_limiter=FAST, bulk_threshold=5, flush_interval=60
        )
        for event in _events():
            sender.send(event)
        assert sender.flush(timeout=20)
        sender.close(timeout=5)
    stats = sender.stats()
    return stats.delivered, stats.retried, dict(stats.dropped)


def _outbox(
    emulator: GameballEmulator, path: str, retry: RetryPolicy = POLICY
) -> tuple[int, int, dict[str, int]]:
    """The same N events through the outbox's drainer, bulk first, until none is left."""
    delivered = retried = 0
    dead: dict[str, int] = {}
    with OutboxStore(path) as store, _client(emulator) as client:
        store.append(_events())
        drainer = OutboxDrainer(
            store, client, retry=retry, limiter=FAST, poll_interval=0.05, bulk_threshold=5
        )
        try:
            while True:
                result = drainer.run_once()
                if not result.claimed:
                    break
                delivered += result.delivered
                retried += result.retried
                if result.dead:
                    dead["dead"] = dead.get("dead", 0) + result.dead
        finally:
            drainer.close()
        assert store.count() == 0
    return delivered, retried, dead


Deliver = Callable[..., tuple[int, int, dict[str, int]]]


@pytest.fixture(params=["background", "outbox"])
def deliver(request: pytest.FixtureRequest, tmp_path: object) -> Deliver:
    if request.param == "background":
        return _background
    return lambda emulator, **kw: _outbox(emulator, f"{tmp_path}/outbox.sqlite3", **kw)


@pytest.mark.parametrize(("status", "code"), [(503, 5003), (429, 429), (500, 5000)])
def test_a_failed_create_finishes_every_item_and_the_retry_delivers(
    gameball_emulator: GameballEmulator, deliver: Deliver, status: int, code: int
) -> None:
    gameball_emulator.faults.fail_next(1, status=status, code=code)
    delivered, retried, dropped = deliver(gameball_emulator)
    assert (delivered, retried, dropped) == (N, N, {})
    assert _seqs(gameball_emulator) == list(range(N))
    assert _count(gameball_emulator, "batch/events") == 2  # the failed create, then its retry


def test_a_refused_create_falls_back_to_one_request_per_customer(
    gameball_emulator: GameballEmulator, deliver: Deliver
) -> None:
    # Before the engine, the background sender dropped every event of a refused create
    # as "rejected"; the outbox sent each alone. The machine says: fall back.
    gameball_emulator.faults.fail_next(1, status=422, code=3003)
    # One attempt allowed: the refusal is not the events' fault and counts none.
    delivered, _, dropped = deliver(gameball_emulator, retry=RetryPolicy(max_attempts=1))
    assert (delivered, dropped) == (N, {})
    assert _seqs(gameball_emulator) == list(range(N))
    assert _count(gameball_emulator, "batch/events") == 1  # the batch endpoint rests
    assert _count(gameball_emulator, "v4.1/events") == N
    assert _count(gameball_emulator, "batch/status") == 0  # no job, no poll


class _CreateRefusesTheKey(ScriptedClient):
    """The batch create answers 401 (code 1000) until ``fixed`` is set."""

    def __init__(self) -> None:
        super().__init__(secret_key=True)
        self.fixed = threading.Event()
        self.creates = 0

    def create_batch(self, batches: Sequence[EventBatch]) -> Outcome:
        self.creates += 1
        if not self.fixed.is_set():
            error = AuthenticationError("wrong key", status=401, code=1000)
            return Outcome(OutcomeKind.PERMANENT, status=401, error=error)
        return super().create_batch(batches)


def test_a_key_refused_on_the_create_stops_sending_and_keeps_the_events(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = _CreateRefusesTheKey()
    sender = BackgroundSender(
        client,
        retry=POLICY,
        rate_limiter=FAST,
        bulk_threshold=5,
        flush_interval=60,
        auth_probe_interval=0.2,
    )
    try:
        for event in _events():
            sender.send(event)
        assert not sender.flush(10)  # answers at once: nothing settles while refused
        assert sender.stats().dropped == {}  # kept, not dropped nor sent alone
        assert client.creates == 1
        assert not client.sent
        client.fixed.set()  # the probe (one request) is accepted: sending resumes
        # Resumed once the worker has read the probe's answer (it logs so), not when the
        # client has answered: a flush in between still finds the key refused.
        deadline = time.monotonic() + 10
        while "sending resumed" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.01)
        assert client.sent
        assert sender.flush(10)
        assert len(client.delivered_events) == N
        assert sender.stats().delivered == N
        assert sender.stats().dropped == {}
    finally:
        sender.close(5)
