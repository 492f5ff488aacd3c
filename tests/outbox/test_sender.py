"""OutboxSender: durable before accepted, delivery, retries, dead letter, restart."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import SecretStr

from gbtrack import Event, TrackingError
from gbtrack.gameball import GameballClient
from gbtrack.outbox import OutboxSender, OutboxStore
from gbtrack.senders._policy import RateLimiter, RetryPolicy

from .conftest import FakeGameball, make_events


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Poll ``predicate`` until true or ``timeout``: a synchronisation, not a fixed sleep."""
    done = threading.Event()
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        done.wait(0.01)
    return True


FAST = RetryPolicy(base_delay=0.01, max_delay=0.05, max_attempts=5)


def test_every_event_is_durable_when_send_returns(outbox_path: Path) -> None:
    sender = OutboxSender(path=outbox_path, sync="every_event")
    with OutboxStore(outbox_path) as reader:
        for i, event in enumerate(make_events(20)):
            sender.send(event)
            # A second connection (another process, in effect) sees it at once.
            assert reader.count() == i + 1
    assert sender.close()
    assert sender.stats().persisted == 0  # closed store: gauge reads 0


def test_batch_mode_commits_on_commit(outbox_path: Path) -> None:
    with OutboxSender(path=outbox_path, sync="batch", commit_interval=30) as sender:
        for event in make_events(7):
            sender.send(event)
        assert sender.commit(timeout=30)
        with OutboxStore(outbox_path) as reader:
            assert reader.count() == 7
        assert sender.stats().persisted == 7


def test_batch_mode_commits_by_count(outbox_path: Path) -> None:
    with OutboxSender(path=outbox_path, commit_interval=60, commit_events=5) as sender:
        for event in make_events(5):
            sender.send(event)
        # The fifth event wakes the writer long before the 60 s interval.
        assert sender.commit(timeout=30)
        assert sender.stats().persisted == 5


@pytest.mark.parametrize("sync", ["batch", "every_event"])
def test_delivers_everything_and_empties_the_outbox(
    outbox_path: Path, client: GameballClient, fake_gameball: FakeGameball, sync: str
) -> None:
    sender = OutboxSender(client, path=outbox_path, sync=sync, retry=FAST)  # type: ignore[arg-type]
    for event in make_events(60, customers=7):
        sender.send(event)
    assert sender.flush(timeout=60)
    assert sorted(fake_gameball.seqs()) == list(range(60))
    stats = sender.stats()
    assert stats.delivered == 60
    assert stats.persisted == 0
    assert sender.close(timeout=30)


def test_retryable_failures_are_retried_without_loss(
    outbox_path: Path, client: GameballClient, fake_gameball: FakeGameball
) -> None:
    fake_gameball.script = [(503, {"code": 5003, "message": "down"})] * 3 + [
        (429, {"code": 429, "message": "slow down"})
    ]
    with OutboxSender(client, path=outbox_path, retry=FAST, concurrency=1) as sender:
        for event in make_events(10, customers=2):
            sender.send(event)
        assert sender.flush(timeout=60)
        assert sorted(fake_gameball.seqs()) == list(range(10))
        assert sender.stats().retried >= 4
        assert sender.store.count("dead") == 0


def test_permanent_failure_goes_to_dead_letter(
    outbox_path: Path, client: GameballClient, fake_gameball: FakeGameball
) -> None:
    fake_gameball.fail_all = (422, {"code": 3003, "message": "Invalid Value"})
    errors: list[TrackingError] = []
    with OutboxSender(client, path=outbox_path, retry=FAST, on_error=errors.append) as sender:
        for event in make_events(3, customers=1):
            sender.send(event)
        assert not sender.flush(timeout=60)  # settled, but an event was dropped (defect 5)
        dead = sender.store.rows("dead")
        assert len(dead) == 3
        assert {(d.status, d.code) for d in dead} == {(422, 3003)}
        assert all(d.message and "rejected" in d.message for d in dead)
        assert sender.store.count("pending") == 0
        assert sender.stats().total_dropped == 0  # kept on disk, not lost
    assert errors
    assert errors[0].reason == "rejected"
    assert fake_gameball.received == []
    assert len(fake_gameball.requests) == 1  # coalesced into one request, never retried


def test_restart_resumes_the_backlog(
    outbox_path: Path, client: GameballClient, fake_gameball: FakeGameball
) -> None:
    offline = OutboxSender(path=outbox_path)  # no client: store only
    for event in make_events(25):
        offline.send(event)
    assert offline.close()
    with OutboxStore(outbox_path) as reader:
        assert reader.count() == 25
    with OutboxSender(client, path=outbox_path, retry=FAST) as online:
        assert online.flush(timeout=60)
    assert sorted(fake_gameball.seqs()) == list(range(25))


def test_session_token_is_stripped_and_counted(
    outbox_path: Path, client: GameballClient, fake_gameball: FakeGameball
) -> None:
    with OutboxSender(client, path=outbox_path, retry=FAST) as sender:
        sender.send(Event(name="e", customer_id="c", session_token=SecretStr("tok-1")))
        assert sender.flush(timeout=60)
        assert sender.reporter.get("session_token_stripped") == 1
    (request,) = fake_gameball.requests
    assert "x-gb-token" not in request.headers
    assert request.url.path == "/api/v4.0/integrations/events"


def test_send_after_close_is_dropped_and_counted(outbox_path: Path) -> None:
    sender = OutboxSender(path=outbox_path)
    sender.close()
    assert sender.close()  # idempotent
    sender.send(make_events(1)[0])
    assert sender.stats().dropped == {"closed": 1}


def test_rate_limiter_is_used(
    outbox_path: Path, client: GameballClient, fake_gameball: FakeGameball
) -> None:
    ticks = [0.0]
    limiter = RateLimiter(((3, 1.0),), clock=lambda: ticks[0])
    with OutboxSender(client, path=outbox_path, rate_limiter=limiter, concurrency=1) as sender:
        for i in range(5):
            sender.send(Event(name="e", customer_id=f"c-{i}", metadata={"seq": i}))
        # Three requests pass; the limiter's (frozen) clock holds back the rest.
        assert wait_until(lambda: len(fake_gameball.requests) >= 3)
        assert not sender.flush(timeout=0.3)
        assert len(fake_gameball.requests) == 3
        ticks[0] = 10.0
        assert sender.flush(timeout=60)
    assert sorted(fake_gameball.seqs()) == list(range(5))


def test_fork_child_does_not_resend_parent_buffer(outbox_path: Path) -> None:
    import os
    import warnings

    sender = OutboxSender(path=outbox_path, commit_interval=60, commit_events=10_000)
    sender.send(make_events(1)[0])
    with warnings.catch_warnings():
        # 3.12+ warns about fork with threads; the sender's fork hook is what is tested.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            sender.send(make_events(1, start=1)[0])
            code = 0 if sender.commit(timeout=30) else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert sender.close()
    with OutboxStore(outbox_path) as reader:
        seqs = sorted(r.event().metadata["seq"] for r in reader.rows())
    assert seqs == [0, 1]  # the parent's event once, the child's own once


@pytest.mark.parametrize(("retry_ambiguous", "copies", "dead"), [(True, 2, 0), (False, 1, 1)])
def test_duplicate_window_is_the_ambiguous_outcome(
    gameball_emulator: object, outbox_path: Path, retry_ambiguous: bool, copies: int, dead: int
) -> None:
    # The emulator records the event, then answers too late: the client sees a read
    # timeout (ambiguous). A retry then delivers a second copy; without retry it is dead.
    from gbtrack.emulator import GameballEmulator

    emulator: GameballEmulator = gameball_emulator  # type: ignore[assignment]
    emulator.faults.set_latency(3.0, count=1)
    policy = RetryPolicy(retry_ambiguous=retry_ambiguous, base_delay=0.01, max_delay=0.02)
    with (
        GameballClient("test-api-key", base_url=emulator.url, timeout=0.3) as gb,
        OutboxSender(gb, path=outbox_path, retry=policy) as sender,
    ):
        sender.send(Event(name="purchase", customer_id="c-1", metadata={"seq": 1}))
        # Settled either way; a dead letter makes flush() answer False (defect 5).
        assert sender.flush(timeout=60) is (dead == 0)
        assert sender.store.count("dead") == dead
    assert [e.metadata["seq"] for e in emulator.events] == [1] * copies


def test_close_during_an_outage_is_bounded_and_keeps_rows(
    outbox_path: Path, client: GameballClient, fake_gameball: FakeGameball
) -> None:
    fake_gameball.fail_all = (503, {"code": 5003, "message": "down"})
    slow = RetryPolicy(base_delay=30, max_delay=30, max_attempts=100)
    sender = OutboxSender(client, path=outbox_path, retry=slow, close_timeout=0.5)
    for event in make_events(5):
        sender.send(event)
    assert not sender.close()  # gives up after close_timeout, not forever
    with OutboxStore(outbox_path) as store:
        rows = store.rows()
        assert len(rows) == 5
        assert all(r.claimed_by is None for r in rows)  # released for the next start


def test_send_never_raises_when_the_store_fails(outbox_path: Path) -> None:
    sender = OutboxSender(path=outbox_path, sync="every_event")
    sender.store.close()  # the file is gone from under the sender
    sender.send(make_events(1)[0])
    assert sender.stats().dropped == {"outbox_error": 1}
    sender.close()
