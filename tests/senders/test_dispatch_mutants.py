"""The dispatcher on its own: a worker thread between an :class:`EventQueue` and a client.

Cases mutation testing found unpinned (``nox -s mutate``). The dispatcher runs on its
thread against a fake sender (client double, rate limiter double, a reporter), without
the :class:`~gbtrack.senders.BackgroundSender` around it; every wait is bounded.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest
from tests.senders import ScriptedClient, delivered, event, rejected, unavailable

from gbtrack._errors import AuthenticationError, PayloadError
from gbtrack._event import Event, EventDraft, Record, record_of
from gbtrack._protocol import Outcome, OutcomeKind, describe_outcome
from gbtrack._report import Reporter
from gbtrack.gameball import EventBatch
from gbtrack.senders import RetryPolicy
from gbtrack.senders._dispatch import Dispatcher
from gbtrack.senders._queue import EventQueue

FAST = RetryPolicy(base_delay=0.001, max_delay=0.01)


class Limiter:
    """A rate limiter double: ``deny`` reservations are refused first; records the rest."""

    def __init__(self, deny: int = 0, wait: float = 0.01) -> None:
        self.deny = deny
        self.wait = wait
        self.lock = threading.Lock()
        self.stamps = 0
        self.times: list[float] = []  # when each reservation was asked for
        self.restamped: list[float] = []
        self.noted: list[Outcome] = []

    def reserve(self) -> tuple[float, float | None]:
        with self.lock:
            self.times.append(time.monotonic())
            if self.deny:
                self.deny -= 1
                return self.wait, None
            self.stamps += 1
            return 0.0, float(self.stamps)

    def restamp(self, stamp: float) -> None:
        with self.lock:
            self.restamped.append(stamp)

    def note(self, outcome: Outcome) -> None:
        with self.lock:
            self.noted.append(outcome)


class Owner:
    """The sender's side of the dispatcher: options, validation, where given-up events go."""

    def __init__(self, client: Any, **options: Any) -> None:
        self.client = client
        self.rate_limiter = options.pop("limiter", None) or Limiter()
        self.retry = options.pop("retry", FAST)
        self.spill = options.pop("spill", None)
        self.reporter = Reporter()
        # Long: a test that waits for no timer sees whether the worker wakes on its own.
        self.flush_interval = options.pop("flush_interval", 60.0)
        self.concurrency = options.pop("concurrency", 4)
        self.bulk = options.pop("bulk", False)
        self.bulk_threshold = options.pop("bulk_threshold", 100)
        self.auth_probe_interval = options.pop("auth_probe_interval", 0.05)
        assert not options, options
        self.given_up: list[tuple[str, list[Event]]] = []
        self.messages: list[str] = []
        self.errors: list[BaseException | None] = []

    def records(self, items: Sequence[Event | EventDraft]) -> list[Record]:
        return [record_of(item if isinstance(item, Event) else item.to_event()) for item in items]

    def give_up(
        self, events: list[Event], reason: str, message: str, exc: BaseException | None = None
    ) -> None:
        self.given_up.append((reason, list(events)))
        self.messages.append(message)
        self.errors.append(exc)


class Harness:
    def __init__(self, client: Any, capacity: int = 1000, batch_size: int = 100, **options: Any):
        self.owner = Owner(client, **options)
        self.queue = EventQueue(
            capacity, batch_size, "drop_newest", 0.0, self.owner.reporter, lambda e: False
        )
        self.wake = threading.Event()
        self.dispatcher = Dispatcher(self.owner, self.queue, self.wake)
        self.thread = threading.Thread(target=self.dispatcher.run, daemon=True)
        self.thread.start()

    def send(self, *events: Event) -> None:
        self.queue.items.extend(events)
        self.wake.set()

    def flush(self, timeout: float = 10.0) -> bool:
        target = self.queue.flush_target()
        if target is None:
            return True
        self.wake.set()
        return self.queue.wait_flushed(target, timeout, lambda: self.dispatcher.gate.refused)

    def stop(self) -> None:
        self.dispatcher.stopping = True
        self.wake.set()
        self.thread.join(10)
        assert not self.thread.is_alive()
        # The dispatcher has given up what was in flight: let a request held at the
        # client's gate end now, rather than wait out the pool's shutdown timeout (a late
        # answer must change nothing the tests check afterwards).
        gate = getattr(self.owner.client, "gate", None)
        if gate is not None:
            gate.set()
        # As BackgroundSender's shutdown does: no idle I/O thread outlives its test.
        self.dispatcher.pool.shutdown(10)


@pytest.fixture
def harness() -> Any:
    made: list[Harness] = []

    def make(client: Any = None, **options: Any) -> Harness:
        made.append(Harness(client if client is not None else ScriptedClient(), **options))
        return made[-1]

    yield make
    for h in made:
        gate = getattr(h.owner.client, "gate", None)
        if gate is not None:
            gate.set()
        h.stop()


def wait_until(condition: Any, bound: float = 10.0) -> None:
    deadline = time.monotonic() + bound
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.002)


# --- draining and coalescing ---------------------------------------------------------------
def test_one_request_per_customer_carries_its_events(harness: Any) -> None:
    h = harness()
    events = [event("a", "c-1"), event("b", "c-2"), event("c", "c-1")]
    h.send(*events)
    assert h.flush()
    assert sorted((b.customer_id, [e.name for e in b.events]) for b in h.owner.client.sent) == [
        ("c-1", ["a", "c"]),
        ("c-2", ["b"]),
    ]
    assert h.owner.reporter.get("delivered") == 3
    assert h.queue.settled == 3
    assert h.queue.held == 0


def test_a_full_batch_drains_without_waiting_for_the_timer(harness: Any) -> None:
    h = harness(batch_size=3, flush_interval=60.0)
    h.send(*(event("a", f"c-{i}") for i in range(3)))
    wait_until(lambda: len(h.owner.client.sent) == 3)


def test_a_lone_event_goes_when_the_timer_is_due(harness: Any) -> None:
    h = harness(batch_size=100, flush_interval=0.05)
    h.send(event("a"))
    wait_until(lambda: len(h.owner.client.sent) == 1)


def test_a_lone_event_waits_for_the_timer(harness: Any) -> None:
    h = harness(batch_size=100, flush_interval=60.0)
    h.send(event("a"))
    time.sleep(0.2)
    assert h.owner.client.sent == []
    assert h.flush()  # a flush does not wait for the timer
    assert len(h.owner.client.sent) == 1


def test_invalid_drafts_are_settled_without_a_request(harness: Any) -> None:
    h = harness()
    good = EventDraft("signup", "c-1", None, None, None, (), (), None, time.time())
    bad = EventDraft("", "c-2", None, None, None, (), (), None, time.time())
    owner = h.owner

    def records(items: Sequence[Event | EventDraft]) -> list[Record]:
        return [record_of(i.to_event()) for i in items if isinstance(i, EventDraft) and i.name]

    owner.records = records
    h.queue.items.extend([good, bad])
    assert h.flush()
    assert [b.customer_id for b in owner.client.sent] == ["c-1"]
    assert h.queue.settled == 2
    assert h.queue.held == 0


# --- answers -------------------------------------------------------------------------------
def test_a_retryable_answer_is_retried_until_delivered(harness: Any) -> None:
    client = ScriptedClient(lambda b, n: unavailable() if n < 3 else delivered())
    h = harness(client)
    h.send(event("a"), event("b"))
    assert h.flush()
    assert h.owner.reporter.get("retried") == 4  # two failed sends of two events
    assert h.owner.reporter.last_error == describe_outcome(unavailable())
    assert h.owner.reporter.get("delivered") == 2
    assert h.owner.given_up == []
    assert len(h.owner.rate_limiter.noted) == 3


def test_a_permanent_answer_gives_the_events_up(harness: Any) -> None:
    client = ScriptedClient(lambda b, n: rejected())
    h = harness(client)
    events = [event("a"), event("b")]
    h.send(*events)
    assert h.flush()
    assert h.owner.given_up == [("rejected", events)]
    assert h.owner.messages == [
        "Gameball rejected the request: HTTP 422, code 3003, type VALIDATION_ERROR, "
        "PayloadError (permanent)"
    ]
    (error,) = h.owner.errors
    assert isinstance(error, PayloadError)
    assert error.code == 3003
    assert h.owner.reporter.get("delivered") == 0
    assert h.queue.held == 0


def test_every_request_takes_a_limiter_slot_and_restamps_it(harness: Any) -> None:
    limiter = Limiter()
    h = harness(limiter=limiter)
    h.send(*(event("a", f"c-{i}") for i in range(5)))
    assert h.flush()
    assert limiter.stamps == 5
    assert sorted(limiter.restamped) == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_a_full_limiter_holds_the_request_until_a_slot_frees(harness: Any) -> None:
    limiter = Limiter(deny=3, wait=0.02)
    h = harness(limiter=limiter)
    h.send(event("a"))
    assert h.flush()
    assert limiter.deny == 0
    assert limiter.stamps == 1
    assert len(h.owner.client.sent) == 1


def test_one_request_per_customer_and_at_most_concurrency_in_flight(harness: Any) -> None:
    gate = threading.Event()
    client = ScriptedClient(gate=gate)
    h = harness(client, concurrency=2, flush_interval=0.01)
    h.send(*(event("a", f"c-{i % 3}") for i in range(6)))
    wait_until(lambda: client.active == 2)
    time.sleep(0.05)
    assert client.active == 2
    assert h.owner.rate_limiter.stamps == 2  # no slot for a request that cannot go yet
    gate.set()
    assert h.flush()
    assert client.max_active == 2
    assert not client.customer_overlap
    assert len(client.delivered_events) == 6
    # Slots are given back as answers come: a second round is bounded the same way.
    gate.clear()
    stamps = h.owner.rate_limiter.stamps
    h.send(*(event("b", f"c-{i}") for i in range(4)))
    wait_until(lambda: client.active == 2)
    time.sleep(0.05)
    assert h.owner.rate_limiter.stamps == stamps + 2
    gate.set()
    assert h.flush()
    assert len(client.delivered_events) == 10


# --- a refused key, a raising client -------------------------------------------------------
class KeyClient(ScriptedClient):
    """Refuses the key (401, code 1001) until ``fixed`` is set."""

    def __init__(self) -> None:
        self.fixed = threading.Event()
        super().__init__(lambda b, n: delivered() if self.fixed.is_set() else refused_key())


def refused_key() -> Outcome:
    return Outcome(
        OutcomeKind.PERMANENT, status=401, error=AuthenticationError("401", status=401, code=1001)
    )


REFUSAL = "HTTP 401, code 1001, AuthenticationError (permanent)"


def test_a_refused_key_keeps_the_events_and_a_probe_resumes(
    harness: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = KeyClient()
    h = harness(client, auth_probe_interval=0.05)
    events = [event("a", f"c-{i}") for i in range(3)]
    with caplog.at_level(logging.ERROR, logger="gbtrack"):
        h.send(*events)
        assert h.flush() is False  # nothing settles while the key is refused
    assert h.dispatcher.gate.refused
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        f"gbtrack: Gameball refused the API key ({REFUSAL}): sending is stopped and events"
        " are kept (in memory, then dropped as queue_overflow when the queue is full);"
        " a probe every 0.05s resumes when the key works, or configure() a new key"
    ]
    assert h.owner.reporter.last_error == f"API key refused: {REFUSAL}"
    wait_until(lambda: len(client.outcomes) >= 3)  # probes go, one at a time
    assert client.max_active == 1
    assert h.owner.given_up == []
    client.fixed.set()
    wait_until(lambda: not h.dispatcher.gate.refused)
    assert h.flush()
    assert sorted(e.customer_id for e in client.delivered_events) == ["c-0", "c-1", "c-2"]
    assert h.owner.given_up == []
    limiter = h.owner.rate_limiter
    # Every request took a slot, probes too, and each slot was restamped at its answer.
    assert sorted(limiter.restamped) == [float(i) for i in range(1, limiter.stamps + 1)]
    assert limiter.stamps == len(client.outcomes)


def test_a_refused_key_with_a_spill_gives_the_events_to_it(
    harness: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = KeyClient()
    h = harness(client, spill=object(), flush_interval=0.01, auth_probe_interval=0.05)
    events = [event("a"), event("b")]
    with caplog.at_level(logging.ERROR, logger="gbtrack"):
        h.send(*events)
        wait_until(lambda: h.owner.given_up != [])
    assert h.owner.given_up == [("unauthorized", events)]
    assert h.owner.messages == [f"Gameball refused the API key: {REFUSAL}"]
    (error,) = h.owner.errors
    assert isinstance(error, AuthenticationError)
    assert error.code == 1001
    assert "are kept (in the outbox); a probe every 0.05s" in caplog.records[0].getMessage()
    assert h.queue.held == 0
    # Nothing is left to probe with; a later event is the probe, spilled in turn.
    time.sleep(0.1)
    later = event("c", "c-2")
    h.send(later)
    wait_until(lambda: len(h.owner.given_up) == 2)
    assert h.owner.given_up[1] == ("unauthorized", [later])


def test_a_raising_client_fails_only_the_poisoned_event(
    harness: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def script(batch: Any, attempt: int) -> Outcome:
        if any(e.name == "bad" for e in batch.events):
            raise ValueError("cannot serialise")
        return delivered()

    h = harness(ScriptedClient(script))
    events = [event("a"), event("bad"), event("c")]
    with caplog.at_level(logging.ERROR, logger="gbtrack"):
        h.send(*events)
        assert h.flush()
    assert "gbtrack: the Gameball client raised ValueError instead of returning an outcome" in [
        r.getMessage() for r in caplog.records
    ]
    assert sorted(e.name for e in h.owner.client.delivered_events) == ["a", "c"]
    assert h.owner.given_up == [("client_error", [events[1]])]
    assert h.queue.held == 0


# --- batch jobs ------------------------------------------------------------------------------
def test_a_backlog_over_the_threshold_goes_in_a_batch_job(harness: Any) -> None:
    client = ScriptedClient(secret_key=True, polls_until_done=2)
    h = harness(client, bulk=True, bulk_threshold=2)
    events = [event("a", f"c-{i}") for i in range(5)]
    h.send(*events)
    assert h.flush()
    assert len(client.jobs) == 1
    assert client.status_calls == 2
    assert client.outcomes == []  # no request of its own
    assert h.owner.reporter.get("delivered") == 5
    assert len(h.owner.rate_limiter.noted) == 1  # the create answer


def test_a_backlog_at_the_threshold_goes_request_by_request(harness: Any) -> None:
    client = ScriptedClient(secret_key=True)
    h = harness(client, bulk=True, bulk_threshold=3)
    h.send(*(event("a", f"c-{i}") for i in range(3)))
    assert h.flush()
    assert client.jobs == {}
    assert len(client.outcomes) == 3


def test_no_batch_job_without_the_secret_key_or_with_bulk_off(harness: Any) -> None:
    for client, bulk in ((ScriptedClient(), True), (ScriptedClient(secret_key=True), False)):
        h = harness(client, bulk=bulk, bulk_threshold=1)
        h.send(*(event("a", f"c-{i}") for i in range(4)))
        assert h.flush()
        assert client.jobs == {}
        assert len(client.outcomes) == 4


def test_a_client_that_does_not_say_it_has_a_secret_key_gets_no_batch_job(
    harness: Any,
) -> None:
    """A custom client without ``has_secret_key`` is taken as having none."""

    class Unsaid(ScriptedClient):
        creates = 0

        def __getattribute__(self, name: str) -> Any:
            if name == "has_secret_key":
                raise AttributeError(name)
            return super().__getattribute__(name)

        def create_batch(self, batches: Sequence[EventBatch]) -> Outcome:
            self.creates += 1
            return super().create_batch(batches)

    client = Unsaid()
    h = harness(client, bulk=True, bulk_threshold=1)
    h.send(*(event("a", f"c-{i}") for i in range(4)))
    assert h.flush()
    assert client.creates == 0  # not even tried (a refused create would fall back)
    assert len(client.outcomes) == 4


def test_item_errors_settle_each_item_by_its_own_fate(harness: Any) -> None:
    def errors(batches: Any) -> tuple[list[Any], int]:
        return [{"index": 1, "code": 3003, "message": "invalid"}], 1

    client = ScriptedClient(secret_key=True, job_errors=errors)
    h = harness(client, bulk=True, bulk_threshold=1)
    events = [event("a", f"c-{i}") for i in range(3)]
    h.send(*events)
    assert h.flush()
    assert h.owner.reporter.get("delivered") == 2
    assert [es for _, es in h.owner.given_up] == [[events[1]]]


class RefusedCreate(ScriptedClient):
    def create_batch(self, batches: Any) -> Outcome:
        with self.lock:
            self.jobs[f"refused-{len(self.jobs)}"] = list(batches)
        return rejected(3003)


def test_a_refused_batch_create_falls_back_to_one_request_each(
    harness: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = RefusedCreate(secret_key=True)
    h = harness(client, bulk=True, bulk_threshold=1)
    with caplog.at_level(logging.WARNING, logger="gbtrack"):
        h.send(*(event("a", f"c-{i}") for i in range(3)))
        assert h.flush()
    assert len(client.jobs) == 1
    assert len(client.outcomes) == 3
    assert h.owner.reporter.get("delivered") == 3
    assert [r.getMessage() for r in caplog.records] == [
        "gbtrack: batch create refused (HTTP 422, code 3003, type VALIDATION_ERROR, "
        "PayloadError (permanent)); one request per customer for 300s"
    ]
    # The batch endpoint rests: a later backlog goes request by request too.
    h.send(*(event("b", f"c-{i}") for i in range(3)))
    assert h.flush()
    assert len(client.jobs) == 1
    assert len(client.outcomes) == 6


class KeyRefusedCreate(ScriptedClient):
    """Refuses the key on the batch endpoint and on sends until ``fixed`` is set."""

    def __init__(self) -> None:
        self.fixed = threading.Event()
        super().__init__(
            lambda b, n: delivered() if self.fixed.is_set() else refused_key(), secret_key=True
        )

    def create_batch(self, batches: Any) -> Outcome:
        if self.fixed.is_set():
            return super().create_batch(batches)
        with self.lock:
            self.jobs[f"refused-{len(self.jobs)}"] = list(batches)
        return refused_key()


def test_a_key_refused_on_a_batch_create_keeps_every_event(harness: Any) -> None:
    client = KeyRefusedCreate()
    h = harness(client, bulk=True, bulk_threshold=1, auth_probe_interval=0.05)
    h.send(*(event("a", f"c-{i}") for i in range(3)))
    assert h.flush() is False
    assert h.dispatcher.gate.refused
    assert h.owner.reporter.last_error == f"API key refused: {REFUSAL}"
    client.fixed.set()
    wait_until(lambda: not h.dispatcher.gate.refused)
    assert h.flush()
    assert h.owner.given_up == []
    assert sorted(e.customer_id for e in client.delivered_events) == ["c-0", "c-1", "c-2"]


# --- stopping ------------------------------------------------------------------------------
def test_stopping_gives_up_requests_in_flight_as_closed(harness: Any) -> None:
    gate = threading.Event()
    client = ScriptedClient(gate=gate)
    h = harness(client, flush_interval=0.01)
    e = event("a")
    h.send(e)
    wait_until(lambda: client.active == 1)
    h.stop()
    assert h.owner.given_up == [("closed", [e])]
    assert h.owner.messages == ["the sender closed before delivery finished"]
    assert h.queue.held == 0
    assert h.dispatcher.in_flight == 0


def test_stopping_gives_up_requests_waiting_to_retry(harness: Any) -> None:
    client = ScriptedClient(lambda b, n: unavailable())
    h = harness(client, retry=RetryPolicy(base_delay=30.0, max_delay=30.0), flush_interval=0.01)
    e = event("a")
    h.send(e)
    wait_until(lambda: len(client.outcomes) == 1)
    time.sleep(0.05)
    h.stop()
    assert h.owner.given_up == [("closed", [e])]
    assert h.queue.held == 0


def test_events_abandoned_by_close_are_settled_not_given_up_twice(harness: Any) -> None:
    gate = threading.Event()
    client = ScriptedClient(gate=gate)
    h = harness(client, flush_interval=0.01)
    h.send(event("a"))
    wait_until(lambda: client.active == 1)
    assert h.queue.claim_abandon() is True  # close() reported them already
    h.stop()
    assert h.owner.given_up == []
    assert h.queue.held == 0
    assert h.queue.flush_target() is None  # every job of the drain ended


def test_events_queued_after_the_worker_stopped_are_given_up(harness: Any) -> None:
    h = harness()
    h.stop()
    late = [event("a"), event("b")]
    h.queue.items.extend(late)
    h.dispatcher.abandon_queue()
    assert h.owner.given_up == [("closed", late)]
    assert h.owner.messages == ["the sender closed before delivery"]
    assert len(h.queue) == 0
    assert h.queue.held == 0
    assert h.queue.settled == 2


# --- what is in flight -----------------------------------------------------------------------
def test_a_customer_second_request_waits_for_the_first(harness: Any) -> None:
    gate = threading.Event()
    client = ScriptedClient(gate=gate)
    h = harness(client, concurrency=4, flush_interval=0.01)
    first, second = event("a", "c-1"), event("a", "c-1")  # the same name: two requests
    h.send(first, second, event("a", "c-2"))
    wait_until(lambda: client.active == 2)  # c-1's first request and c-2's
    assert h.dispatcher.in_flight == 2  # events in requests under way
    time.sleep(0.05)
    assert client.active == 2
    gate.set()
    assert h.flush()
    assert not client.customer_overlap
    assert len(client.outcomes) == 3
    assert h.dispatcher.in_flight == 0


class SlowCreate(ScriptedClient):
    """Holds every batch create until ``release`` is set; sends answer at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.created = threading.Event()
        super().__init__(secret_key=True)

    def create_batch(self, batches: Any) -> Outcome:
        self.created.set()
        assert self.release.wait(30)
        return super().create_batch(batches)


def test_a_batch_job_in_flight_holds_its_customers_and_nothing_else(harness: Any) -> None:
    client = SlowCreate()
    h = harness(client, bulk=True, bulk_threshold=2, flush_interval=0.01)
    h.send(*(event("a", f"c-{i}") for i in range(3)))
    assert client.created.wait(10)
    assert h.dispatcher.in_flight == 3
    # Below the threshold: requests of their own, while the job is still being created.
    h.send(event("b", "c-0"), event("b", "c-9"))
    wait_until(lambda: len(client.outcomes) == 1)
    assert [b.customer_id for b in client.sent] == ["c-9"]  # c-0 waits for its job
    client.release.set()
    assert h.flush()
    assert sorted(b.customer_id for b in client.sent) == ["c-0", "c-0", "c-1", "c-2", "c-9"]
    assert h.dispatcher.in_flight == 0
    limiter = h.owner.rate_limiter
    assert sorted(limiter.restamped) == [float(i) for i in range(1, limiter.stamps + 1)]
    assert limiter.stamps == 3  # the create and two sends; polls take no slot


def test_stopping_gives_up_a_batch_job_in_flight_and_the_requests_waiting(
    harness: Any,
) -> None:
    client = SlowCreate()
    h = harness(client, bulk=True, bulk_threshold=2, flush_interval=0.01)
    in_job = [event("a", f"c-{i}") for i in range(3)]
    h.send(*in_job)
    assert client.created.wait(10)
    waiting = event("b", "c-0")  # its customer is in the job: it waits
    h.send(waiting)
    time.sleep(0.05)
    h.dispatcher.stopping = True
    h.wake.set()
    h.thread.join(10)
    assert not h.thread.is_alive()
    client.release.set()
    ((reason, events),) = h.owner.given_up
    assert reason == "closed"
    assert sorted(events, key=lambda e: e.name) == [*in_job, waiting]
    assert h.queue.held == 0


def test_io_threads_are_named_for_the_sender(harness: Any) -> None:
    gate = threading.Event()
    client = ScriptedClient(gate=gate)
    h = harness(client, flush_interval=0.01)
    h.send(event("a"))
    wait_until(lambda: client.active == 1)
    assert [t.name for t in h.dispatcher.pool.threads] == ["gbtrack-sender-io-1"]
    gate.set()
    assert h.flush()


def test_the_worker_reports_overflow_drops_no_faster_than_the_queue_allows(
    harness: Any,
) -> None:
    gate = threading.Event()
    client = ScriptedClient(gate=gate)
    h = harness(client, capacity=1, flush_interval=0.01)
    errors: list[Any] = []
    h.owner.reporter.on_error = errors.append
    h.send(event("a"))
    wait_until(lambda: client.active == 1)  # held: the queue is full
    for name in ("b", "c", "d"):
        h.queue.make_room(event(name), lambda: False, h.wake.set)
    assert len(errors) == 1  # the first drop at once, the next ones throttled
    for _ in range(5):
        h.wake.set()
        time.sleep(0.01)
    assert len(errors) == 1
    assert h.queue.overflow_pending == 2
    gate.set()
    assert h.flush()


def test_a_crashed_worker_logs_and_notes_the_error(
    harness: Any, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness(flush_interval=0.01)

    def records(items: Sequence[Event | EventDraft]) -> list[Record]:
        raise RuntimeError("a bug")

    h.owner.records = records
    with caplog.at_level(logging.ERROR, logger="gbtrack"):
        h.send(event("a"))
        h.thread.join(10)
    assert not h.thread.is_alive()
    assert [r.getMessage() for r in caplog.records] == ["gbtrack: sender worker crashed"]
    assert h.owner.reporter.last_error == "sender worker crashed"


def test_the_drain_timer_restarts_after_each_drain(harness: Any) -> None:
    h = harness(batch_size=100, flush_interval=0.05)
    for n, name in enumerate("abc", start=1):
        h.send(event(name))
        wait_until(lambda n=n: len(h.owner.client.sent) == n)
    assert h.owner.given_up == []


def test_backoffs_are_waited_on_their_own_timers_not_a_fixed_tick(harness: Any) -> None:
    client = ScriptedClient(lambda b, n: unavailable() if n < 5 else delivered())
    h = harness(client)
    began = time.monotonic()
    h.send(event("a"))
    assert h.flush()
    # Four backoffs of at most 10 ms: generous room, far below a one-second tick each.
    assert time.monotonic() - began < 2.0
    assert h.owner.reporter.get("delivered") == 1


class TimedClient(ScriptedClient):
    """Records when each batch create and status poll arrived."""

    def __init__(self, **options: Any) -> None:
        super().__init__(secret_key=True, **options)
        self.calls: list[tuple[str, float]] = []

    def create_batch(self, batches: Any) -> Outcome:
        self.calls.append(("create", time.monotonic()))
        return super().create_batch(batches)

    def batch_status(self, job_id: str) -> Outcome:
        self.calls.append(("poll", time.monotonic()))
        return super().batch_status(job_id)


def test_status_polls_wait_for_their_time(harness: Any) -> None:
    client = TimedClient(polls_until_done=3)
    h = harness(client, bulk=True, bulk_threshold=1)
    h.send(*(event("a", f"c-{i}") for i in range(3)))
    assert h.flush()
    assert [what for what, _ in client.calls] == ["create", "poll", "poll", "poll"]
    gaps = [b - a for (_, a), (_, b) in itertools.pairwise(client.calls)]
    # 50 ms after the create, then doubling (at least: a busy machine only adds).
    assert gaps[0] >= 0.045
    assert gaps[1] >= 0.095
    assert gaps[2] >= 0.195


@pytest.mark.parametrize("bulk", [False, True], ids=["requests", "batch-job"])
def test_a_full_limiter_is_asked_again_only_after_its_wait(harness: Any, bulk: bool) -> None:
    limiter = Limiter(deny=2, wait=0.05)
    h = harness(ScriptedClient(secret_key=True), limiter=limiter, bulk=bulk, bulk_threshold=1)
    h.send(*(event("a", f"c-{i}") for i in range(3)))
    assert h.flush()
    first, second, third = limiter.times[:3]
    assert second - first >= 0.045
    assert third - second >= 0.045
    assert h.owner.reporter.get("delivered") == 3


def test_session_token_requests_go_alone_with_bulk_on(harness: Any) -> None:
    client = ScriptedClient(secret_key=True)
    h = harness(client, bulk=True, bulk_threshold=1)
    h.send(*(event("a", f"c-{i}", session_token="tok") for i in range(3)))
    assert h.flush()
    assert client.jobs == {}
    assert len(client.outcomes) == 3
    assert h.owner.given_up == []


def test_a_raising_two_event_request_is_split_too(harness: Any) -> None:
    def script(batch: Any, attempt: int) -> Outcome:
        if any(e.name == "bad" for e in batch.events):
            raise ValueError("cannot serialise")
        return delivered()

    h = harness(ScriptedClient(script))
    events = [event("good"), event("bad")]
    h.send(*events)
    assert h.flush()
    assert [e.name for e in h.owner.client.delivered_events] == ["good"]
    assert h.owner.given_up == [("client_error", [events[1]])]
