from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import logging
import threading
import time
import weakref

import pytest
from tests.senders import (
    RecordingSpill,
    ScriptedClient,
    delivered,
    event,
    rate_limited,
    rejected,
    timed_out,
    unavailable,
)

from gbtrack import TrackingError
from gbtrack.gameball import EventBatch, Outcome, coalesce
from gbtrack.senders import BackgroundSender, RateLimiter, RetryPolicy

FAST = RetryPolicy(base_delay=0.001, max_delay=0.01)


@pytest.fixture
def make():
    senders: list[BackgroundSender] = []

    def factory(client=None, **options):
        options.setdefault("retry", FAST)
        options.setdefault("flush_interval", 0.05)
        sender = BackgroundSender(client if client is not None else ScriptedClient(), **options)
        senders.append(sender)
        return sender

    yield factory
    for sender in senders:
        gate = getattr(sender.client, "gate", None)
        if gate is not None:
            gate.set()
        sender.close(timeout=10)


def test_delivers_and_coalesces(make) -> None:
    client = ScriptedClient()
    sender = make(client)
    events = [
        event("a", "c-1"),
        event("b", "c-1"),
        event("a", "c-2"),
        event("a", "c-1"),  # the same name again: a second request for c-1
        event("c", "c-2", email="x@example.com"),  # another identity
    ]
    for e in events:
        sender.send(e)
    assert sender.flush(timeout=10)
    assert sorted(len(b) for b in client.sent) == sorted(len(b) for b in coalesce(events))
    assert len(client.sent) == 4
    for batch in client.sent:
        assert len({e.name for e in batch.events}) == len(batch.events)
    assert sorted(e.event_id for e in client.delivered_events) == sorted(e.event_id for e in events)
    stats = sender.stats()
    assert stats.delivered == 5
    assert stats.total_dropped == 0
    assert stats.in_queue == 0
    assert stats.in_flight == 0


def test_send_starts_one_named_daemon_worker_lazily(make) -> None:
    sender = make()
    names = lambda: [t for t in threading.enumerate() if t.name == "gbtrack-sender"]  # noqa: E731
    before = len(names())
    sender.flush(1)
    assert len(names()) == before  # nothing queued: nothing started
    sender.send(event())
    workers = names()
    assert len(workers) == before + 1
    assert all(t.daemon for t in workers)
    assert sender.flush(10)


@pytest.mark.slow
def test_retryable_outcomes_are_retried_without_loss(make) -> None:
    def script(batch: EventBatch, attempt: int) -> Outcome:
        return (
            [unavailable(), rate_limited(), timed_out()][attempt - 1]
            if attempt <= 3
            else delivered()
        )

    client = ScriptedClient(script)
    sender = make(client, rate_limiter=RateLimiter([(1000, 1.0)]))
    events = [event("e", f"c-{i}") for i in range(20)]
    for e in events:
        sender.send(e)
    assert sender.flush(timeout=30)
    assert sorted(e.event_id for e in client.delivered_events) == sorted(e.event_id for e in events)
    stats = sender.stats()
    assert stats.delivered == 20
    assert stats.retried == 60
    assert stats.total_dropped == 0


def test_429_defers_the_rate_limiter(make) -> None:
    deferred: list[float] = []

    class Limiter(RateLimiter):
        def defer(self, seconds: float) -> None:
            deferred.append(seconds)
            super().defer(0)

    def script(batch: EventBatch, attempt: int) -> Outcome:
        return rate_limited(0.25) if attempt == 1 else delivered()

    sender = make(ScriptedClient(script), rate_limiter=Limiter())
    sender.send(event())
    assert sender.flush(10)
    assert deferred == [0.25]


def test_permanent_errors_are_not_retried_and_reported(make, caplog) -> None:
    errors: list[TrackingError] = []
    client = ScriptedClient(lambda b, a: rejected(3003))
    sender = make(client, on_error=errors.append)
    e = event("bad", "c-9", email="john.doe@example.com", mobile="+201234567890")
    sender.send(e)
    assert not sender.flush(10)  # settled, but an event was dropped (defect 5)
    assert client.attempts == {e.event_id: 1}
    assert sender.stats().dropped == {"rejected": 1}
    assert [(x.reason, x.event) for x in errors] == [("rejected", e)]
    assert "422" in str(errors[0])
    assert "3003" in str(errors[0])
    logged = caplog.text
    assert "rejected" in logged
    assert "john.doe@example.com" not in logged
    assert "1234567890" not in logged


def test_old_events_expire(make) -> None:
    client = ScriptedClient(lambda b, a: unavailable())
    sender = make(client, retry=RetryPolicy(max_age=60.0, base_delay=0.001, max_delay=0.001))
    old = event(timestamp=dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5))
    sender.send(old)
    assert not sender.flush(10)  # settled, but an event was dropped (defect 5)
    assert client.attempts[old.event_id] == 1
    assert sender.stats().dropped == {"expired": 1}


def test_concurrency_bounds_requests_in_flight_and_one_per_customer(make) -> None:
    gate = threading.Event()
    client = ScriptedClient(gate=gate)
    sender = make(client, concurrency=4)
    for i in range(40):
        sender.send(event(f"e{i % 3}", f"c-{i % 10}"))
    assert sender.flush(0.3) is False  # held at the gate
    gate.set()
    assert sender.flush(10)
    assert client.max_active == 4
    assert client.customer_overlap is False
    assert sender.stats().delivered == 40


def test_rate_limiter_slot_per_request(make) -> None:
    taken: list[int] = []

    class Counting(RateLimiter):
        def reserve(self) -> tuple[float, float | None]:
            wait, stamp = super().reserve()
            if stamp is not None:
                taken.append(1)
            return wait, stamp

    client = ScriptedClient()
    sender = make(client, rate_limiter=Counting([(5, 0.2)]))
    for i in range(12):
        sender.send(event("e", f"c-{i}"))
    assert sender.flush(30)
    assert len(taken) == len(client.sent) == 12


def test_overflow_drop_newest_counts_every_event_and_logs_little(make, caplog) -> None:
    gate = threading.Event()
    client = ScriptedClient(gate=gate)
    errors: list[TrackingError] = []
    sender = make(client, max_queue_size=10, on_error=errors.append, concurrency=1)
    caplog.set_level(logging.WARNING, logger="gbtrack")
    first = [event("e", f"c-{i}") for i in range(10)]
    for e in first:
        sender.send(e)
    for i in range(500):
        sender.send(event("late", f"x-{i}"))
    assert sender.stats().dropped == {"queue_overflow": 500}
    lines = [r for r in caplog.records if "queue_overflow" in r.getMessage()]
    assert len(lines) <= 1
    gate.set()
    assert not sender.flush(10)  # settled, but an event was dropped (defect 5)
    stats = sender.stats()
    assert stats.delivered == 10
    assert stats.dropped == {"queue_overflow": 500}
    assert sum(r.getMessage().count("queue_overflow") for r in caplog.records) <= 2
    assert all(x.reason == "queue_overflow" for x in errors)
    assert sorted(e.event_id for e in client.delivered_events) == sorted(e.event_id for e in first)


def test_overflow_block_waits_for_room(make) -> None:
    gate = threading.Event()
    client = ScriptedClient(gate=gate)
    sender = make(client, max_queue_size=2, overflow="block", block_timeout=20, concurrency=1)
    sender.send(event("a", "c-1"))
    sender.send(event("a", "c-2"))
    done = threading.Event()

    def producer() -> None:
        sender.send(event("a", "c-3"))
        done.set()

    thread = threading.Thread(target=producer)
    thread.start()
    assert not done.wait(0.3)  # blocked: the queue is full
    gate.set()
    assert done.wait(20)
    thread.join()
    assert sender.flush(10)
    assert sender.stats().delivered == 3
    assert sender.stats().total_dropped == 0


def test_overflow_block_times_out_then_drops(make) -> None:
    gate = threading.Event()
    sender = make(ScriptedClient(gate=gate), max_queue_size=1, overflow="block", block_timeout=0.05)
    sender.send(event("a", "c-1"))
    sender.send(event("a", "c-2"))
    assert sender.stats().dropped == {"queue_overflow": 1}


def test_spill_takes_overflow_and_failed_events(make) -> None:
    gate = threading.Event()
    spill = RecordingSpill()
    fail = {"c-bad"}

    def script(batch: EventBatch, attempt: int) -> Outcome:
        return unavailable() if batch.customer_id in fail else delivered()

    client = ScriptedClient(script, gate=gate)
    policy = RetryPolicy(max_attempts=2, base_delay=0.001, max_delay=0.001)
    sender = make(client, max_queue_size=2, spill=spill, retry=policy, concurrency=1)
    bad = event("e", "c-bad")
    sender.send(bad)
    sender.send(event("e", "c-ok"))
    over = event("e", "c-over")
    sender.send(over)
    gate.set()
    assert sender.flush(10)
    assert (over, "queue_overflow") in spill.stored
    assert (bad, "retries_exhausted") in spill.stored
    assert sender.spilled == 2
    assert sender.stats().total_dropped == 0


def test_spill_partial_store_drops_the_rest(make) -> None:
    spill = RecordingSpill(capacity=0)
    gate = threading.Event()
    sender = make(ScriptedClient(gate=gate), max_queue_size=1, spill=spill)
    sender.send(event("a", "c-1"))
    sender.send(event("a", "c-2"))
    assert sender.stats().dropped == {"queue_overflow": 1}


def test_flush_waits_for_retries_and_reports_timeout(make) -> None:
    client = ScriptedClient(lambda b, a: rate_limited(1.0) if a == 1 else delivered())
    sender = make(client)
    # Retry-After: 1 s, so the retry cannot happen before then: a short flush says "not yet".
    sender.send(event())
    assert client.started.wait(10)
    assert sender.flush(0.2) is False
    assert sender.stats().in_queue + sender.stats().in_flight == 1
    assert sender.flush(30)
    assert sender.stats().delivered == 1


def test_close_delivers_queued_then_drops_later_sends(make) -> None:
    client = ScriptedClient()
    sender = make(client, flush_interval=60)  # only close() makes it drain
    events = [event("e", f"c-{i}") for i in range(50)]
    for e in events:
        sender.send(e)
    assert sender.close(timeout=10)
    assert len(client.delivered_events) == 50
    assert client.closed is False  # a client passed in is not ours to close
    assert sender.close(timeout=1)  # idempotent
    sender.send(event("late"))
    assert sender.stats().dropped == {"closed": 1}


def test_close_with_timeout_drops_unfinished_as_closed(make) -> None:
    gate = threading.Event()
    errors: list[TrackingError] = []
    client = ScriptedClient(gate=gate)
    sender = make(client, concurrency=1, on_error=errors.append)
    for i in range(3):
        sender.send(event("e", f"c-{i}"))
    assert client.started.wait(10)
    stats = sender.stats()
    assert stats.in_flight == 1  # one request at the gate (concurrency=1)
    assert stats.in_queue == 2
    assert sender.close(timeout=0.2) is False
    stats = sender.stats()
    assert stats.dropped.get("closed") == 3
    assert {e.reason for e in errors} == {"closed"}
    gate.set()


def test_close_closes_a_client_it_built() -> None:
    sender = BackgroundSender(api_key="test-api-key", base_url="http://127.0.0.1:9")
    client = sender.client
    assert sender.close(timeout=1)
    assert getattr(client, "closed", None) is True


def test_key_absent_from_repr() -> None:
    sender = BackgroundSender(api_key="sk-very-secret-1", secret_key="sk-very-secret-2")
    try:
        text = repr(sender) + repr(sender.client) + repr(sender.stats())
        assert "sk-very-secret" not in text
    finally:
        sender.close(1)


def test_needs_a_client_or_key() -> None:
    with pytest.raises(ValueError):
        BackgroundSender()
    with pytest.raises(ValueError):
        BackgroundSender(ScriptedClient(), overflow="drop_oldest")  # type: ignore[arg-type]


def test_bulk_mode_for_a_large_backlog(make) -> None:
    client = ScriptedClient(secret_key=True, polls_until_done=2)
    sender = make(client, bulk_threshold=50, flush_interval=60)
    events = [event("e", f"c-{i}") for i in range(300)]
    for e in events:
        sender.send(e)
    assert sender.flush(30)
    assert client.jobs, "the batch endpoint was used"
    assert all(len(b) <= 1000 for b in client.jobs.values())
    assert client.status_calls >= len(client.jobs) * 2
    assert sorted(e.event_id for e in client.delivered_events) == sorted(e.event_id for e in events)
    assert sender.stats().delivered == 300


def test_no_bulk_without_secret_key_or_below_threshold(make) -> None:
    client = ScriptedClient(secret_key=False)
    sender = make(client, bulk_threshold=5, flush_interval=60)
    for i in range(50):
        sender.send(event("e", f"c-{i}"))
    assert sender.flush(30)
    assert not client.jobs
    assert len(client.sent) == 50

    small = ScriptedClient(secret_key=True)
    sender = make(small, bulk_threshold=100)
    for i in range(5):
        sender.send(event("e", f"c-{i}"))
    assert sender.flush(30)
    assert not small.jobs


def test_bulk_item_errors_by_index_and_customer(make) -> None:
    failed_once: set[str] = set()

    def job_errors(batches):
        errors = []
        for i, b in enumerate(batches):
            if b.customer_id == "c-3":
                errors.append(
                    {"index": i, "customerId": b.customer_id, "code": 3003, "message": "bad"}
                )
            if b.customer_id == "c-7" and "c-7" not in failed_once:
                failed_once.add("c-7")
                errors.append({"customerId": "c-7", "code": 2001, "message": "busy"})
        return errors, len(errors)

    client = ScriptedClient(secret_key=True, job_errors=job_errors)
    errors: list[TrackingError] = []
    sender = make(client, bulk_threshold=5, flush_interval=60, on_error=errors.append)
    events = [event("e", f"c-{i}") for i in range(20)]
    for e in events:
        sender.send(e)
    assert not sender.flush(30)  # settled, but an event was dropped (defect 5)
    stats = sender.stats()
    assert stats.dropped == {"rejected": 1}
    assert errors[0].event is not None
    assert errors[0].event.customer_id == "c-3"
    assert stats.delivered == 19
    delivered_ids = {e.customer_id for e in client.delivered_events}
    assert "c-7" in delivered_ids
    assert "c-3" not in delivered_ids


def test_session_token_batches_skip_bulk(make) -> None:
    client = ScriptedClient(secret_key=True)
    sender = make(client, bulk_threshold=5, flush_interval=60)
    for i in range(20):
        sender.send(event("e", f"c-{i}", session_token="tok"))
    assert sender.flush(30)
    assert not client.jobs
    assert len(client.sent) == 20
    assert all(b.session_token is not None for b in client.sent)


async def test_thread_and_asyncio_producers(make) -> None:
    client = ScriptedClient()
    sender = make(client, rate_limiter=RateLimiter([(10_000, 1.0)]))

    def produce(prefix: str) -> None:
        for i in range(200):
            sender.send(event("e", f"{prefix}-{i}"))

    async def aproduce() -> None:
        for i in range(200):
            sender.send(event("e", f"a-{i}"))
            if i % 50 == 0:
                await asyncio.sleep(0)

    threads = [threading.Thread(target=produce, args=(f"t{k}",)) for k in range(3)]
    for t in threads:
        t.start()
    await aproduce()
    for t in threads:
        t.join()
    assert await sender.aflush(30)
    assert sender.stats().delivered == 800
    assert len({e.event_id for e in client.delivered_events}) == 800


def test_unstarted_sender_is_garbage_collected() -> None:
    sender = BackgroundSender(ScriptedClient())
    ref = weakref.ref(sender)
    del sender
    gc.collect()
    assert ref() is None


def test_atexit_hook_flushes_and_is_unregistered_on_close(monkeypatch) -> None:
    import atexit

    registered = []
    unregistered = []
    monkeypatch.setattr(atexit, "register", lambda f, *a, **k: registered.append(f) or f)
    monkeypatch.setattr(atexit, "unregister", unregistered.append)
    client = ScriptedClient()
    sender = BackgroundSender(client, flush_interval=60)
    sender.send(event())
    [hook] = registered
    hook()  # what the interpreter runs at exit
    assert len(client.sent) == 1
    sender.close(1)
    assert unregistered == [hook]


def test_dropped_errors_carry_status_and_code_but_not_gameballs_text(make) -> None:
    from gbtrack import PayloadError

    errors: list[TrackingError] = []

    def script(batch, attempt):
        outcome = rejected(3003)
        assert outcome.error is not None
        text = "Invalid value for email john.doe@example.com"
        return Outcome(
            outcome.kind,
            status=422,
            error=PayloadError(text, status=422, code=3003, request_id="r-1"),
        )

    sender = make(ScriptedClient(script), on_error=errors.append)
    sender.send(event())
    assert not sender.flush(10)  # rejected: dropped (defect 5)
    [error] = errors
    cause = error.__cause__
    assert isinstance(cause, PayloadError)
    assert (cause.status, cause.code, cause.request_id) == (422, 3003, "r-1")
    assert "john.doe" not in str(cause)
    assert "john.doe" not in str(error)


def test_flush_from_an_on_error_hook_does_not_deadlock(make) -> None:
    results: list[bool] = []
    holder: list[BackgroundSender] = []

    def hook(error: TrackingError) -> None:
        results.append(holder[0].flush(5))

    sender = make(ScriptedClient(lambda b, a: rejected()), on_error=hook)
    holder.append(sender)
    sender.send(event())
    assert not sender.flush(10)  # settled, but an event was dropped (defect 5)
    assert results == [False]


def test_close_from_an_on_error_hook_does_not_deadlock(make) -> None:
    holder: list[BackgroundSender] = []
    results: list[bool] = []

    def hook(error: TrackingError) -> None:
        if error.reason == "rejected":
            results.append(holder[0].close(5))

    sender = make(ScriptedClient(lambda b, a: rejected()), on_error=hook)
    holder.append(sender)
    sender.send(event())
    assert not sender.flush(10)  # settled, but an event was dropped (defect 5)
    assert results == [False]
    assert sender.closed


def test_events_go_out_on_the_timer_without_flush(make) -> None:
    client = ScriptedClient()
    sender = make(client, flush_interval=0.05)
    sender.send(event("a", "c-1"))
    assert client.started.wait(10)  # sent by the worker's timer, nobody flushed


def test_events_within_the_interval_share_a_request(make) -> None:
    client = ScriptedClient()
    sender = make(client, flush_interval=60)
    sender.send(event("a", "c-1"))
    sender.send(event("b", "c-1"))
    assert not client.started.wait(0.2)  # waiting for company, not sent one by one
    assert sender.flush(10)
    assert [len(b) for b in client.sent] == [2]


async def test_aflush_does_not_block_the_event_loop(make) -> None:
    gate = threading.Event()
    sender = make(ScriptedClient(gate=gate))
    sender.send(event())
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            if ticks == 5:
                gate.set()  # the loop ran while aflush waited: now let delivery finish
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    try:
        assert await sender.aflush(10)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert ticks >= 5


class _SlowRetry(RetryPolicy):
    """Every retry waits 30 s: an event that failed once stays in backoff for the test."""

    def delay(self, attempts: int, outcome: Outcome | None = None) -> float:
        return 30.0


def test_flush_waits_for_an_older_event_in_backoff_despite_newer_deliveries() -> None:
    # flush() promises every event queued before the call; newer events delivered
    # meanwhile must not stand in for an older one that is still being retried.
    def script(batch: EventBatch, attempt: int) -> Outcome:
        return unavailable() if batch.customer_id == "old" and attempt == 1 else delivered()

    client = ScriptedClient(script)
    sender = BackgroundSender(client, retry=_SlowRetry(), flush_interval=0.01)
    try:
        sender.send(event(customer="old"))
        assert not sender.flush(timeout=0.2)  # the old event is in its 30 s backoff
        deadline = time.monotonic() + 30
        while not client.outcomes and time.monotonic() < deadline:  # tried once, failed
            time.sleep(0.01)
        assert client.outcomes

        def newer() -> None:
            time.sleep(0.2)  # after flush() below has taken its mark
            for i in range(3):
                sender.send(event(customer=f"new-{i}"))

        producer = threading.Thread(target=newer)
        producer.start()
        assert not sender.flush(timeout=1.5)
        producer.join()
        assert sender.flush(timeout=0.01) is False
        assert sorted(e.customer_id for e in client.delivered_events) == [
            "new-0",
            "new-1",
            "new-2",
        ]
    finally:
        sender.close(timeout=0)


def test_the_trackers_gate_is_the_senders_own_entry_and_behaves_as_send() -> None:
    """The gate (the tracker's inlet) queues, drops and counts exactly as send() + count."""
    from gbtrack import EventDraft, Tracker

    def draft(cid: str) -> EventDraft:
        return tuple.__new__(EventDraft, ("n", cid, None, None, None, (), (), None, 0.0))

    sender = BackgroundSender(
        api_key="k", base_url="http://127.0.0.1:9", max_queue_size=2, flush_interval=60
    )
    tracker = Tracker(sender)
    try:
        assert tracker.gate is sender._inlets[0].gate  # an append and a length test
        assert tracker.gate(draft("c-1")) is True
        sender.send(draft("c-2"))
        assert [d.customer_id for d in sender._items] == ["c-1", "c-2"]
        assert tracker.gate(draft("c-3")) is True  # the queue is full: dropped, not raised
        assert sender.stats().dropped == {"queue_overflow": 1}
        assert tracker.stats.sent == 2  # the gate counts what it took; send() does not
    finally:
        sender.close(0)  # the two queued are given up as closed
    assert tracker.gate(draft("c-4")) is True
    assert sender.stats().dropped == {"queue_overflow": 1, "closed": 3}
    assert tracker.stats.sent == 3


def test_two_trackers_sharing_a_sender_each_count_their_own() -> None:
    from gbtrack import Tracker

    sender = BackgroundSender(api_key="k", base_url="http://127.0.0.1:9", flush_interval=60)
    first, second = Tracker(sender), Tracker(sender, enabled=False)
    try:
        assert first.emit("a", customer_id="c-1") is not None
        second.enabled = True
        assert second.emit("b", customer_id="c-1") is not None
        assert first.emit("c", customer_id="c-1") is not None
        assert (first.stats.sent, second.stats.sent) == (2, 1)
    finally:
        sender.close(0)
