"""The background sender's requests, key gate and I/O threads, unit by unit.

Cases mutation testing found unpinned (``nox -s mutate``): what a request carries and
how it splits, which requests a batch job takes and how its fates group, when a
refused key lets a probe go and what reopens it, and how the I/O threads report.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
from typing import Any

import pytest
from tests.senders import delivered, event, rejected, unavailable

from gbtrack._errors import AuthenticationError
from gbtrack._protocol import EventBatch, Outcome, OutcomeKind, client_failure, coalesce
from gbtrack.senders._requests import (
    BulkRequest,
    IOPool,
    KeyGate,
    Request,
    key_refused,
    marks,
    time_left,
)


def refused(kind: OutcomeKind = OutcomeKind.PERMANENT) -> Outcome:
    return Outcome(kind, status=401, error=AuthenticationError("401", status=401, code=1001))


def request(customer: str = "c-1", *names: str, mark: int = 0) -> Request:
    events = [event(name, customer) for name in names or ("purchase",)]
    (batch,) = coalesce(events)
    return Request(batch, mark)


# --- key_refused ---------------------------------------------------------------------------
def test_a_permanent_authentication_error_refuses_the_key() -> None:
    assert key_refused(refused())


def test_a_retryable_authentication_error_does_not_refuse_the_key() -> None:
    assert not key_refused(refused(OutcomeKind.RETRYABLE))


def test_other_permanent_errors_do_not_refuse_the_key() -> None:
    assert not key_refused(rejected())
    assert not key_refused(delivered())


def test_a_client_that_raised_an_authentication_error_does_not_refuse_the_key() -> None:
    # A raise is a bug of the client, not Gameball's answer about the key.
    outcome = client_failure(AuthenticationError("401", status=401, code=1001))
    assert outcome.permanent
    assert not key_refused(outcome)


# --- Request -------------------------------------------------------------------------------
def test_a_request_carries_its_customer_events_and_mark() -> None:
    job = request("c-7", "a", "b", "c", mark=42)
    assert job.key == "c-7"
    assert job.n == 3
    assert job.mark == 42
    assert job.attempts == 0
    assert job.direct is False
    assert job.probe is False


def test_split_makes_one_direct_request_per_event_with_the_same_mark() -> None:
    job = request("c-1", "a", "b", mark=5)
    singles = job.split()
    assert [s.batch.events for s in singles] == [(e,) for e in job.batch.events]
    assert all(s.direct for s in singles)
    assert all(s.mark == 5 and s.n == 1 and s.key == "c-1" for s in singles)
    assert all(not s.probe and s.attempts == 0 for s in singles)


def test_age_counts_from_the_oldest_event() -> None:
    old = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
    events = [
        event("a", "c-1", timestamp=old + dt.timedelta(seconds=30)),
        event("b", "c-1", timestamp=old),
        event("c", "c-1", timestamp=old + dt.timedelta(seconds=10)),
    ]
    job = Request(EventBatch("c-1", None, None, None, tuple(events)), 0)
    assert job.age(old.timestamp() + 100.0) == pytest.approx(100.0)


def test_marks_lists_each_request_mark_in_order() -> None:
    assert list(marks([request(mark=3), request(mark=1), request(mark=3)])) == [3, 1, 3]


# --- BulkRequest ---------------------------------------------------------------------------
def test_choose_leaves_out_busy_customers_and_direct_requests() -> None:
    a, b, c, d = (request(f"c-{i}", mark=i) for i in range(4))
    c.direct = True
    taken, left = BulkRequest.choose([a, b, c, d], busy={"c-1"})
    assert taken == [a, d]
    assert left == [b, c]


def test_choose_takes_one_request_per_customer() -> None:
    first, second = request("c-1", "a"), request("c-1", "b")
    taken, left = BulkRequest.choose([first, second], busy=set())
    assert taken == [first]
    assert left == [second]


def _state(job: Request) -> tuple[object, ...]:
    return (job.records, job.mark, job.attempts, job.key, job.n, job.direct, job.probe)


def test_a_bulk_request_keeps_plain_entries_and_makes_its_requests_again() -> None:
    jobs = [request("c-1", mark=3), request("c-2", "a", "b", mark=4)]
    jobs[1].attempts = 2
    bulk = BulkRequest(jobs)
    assert bulk.entries == [(j.records, j.mark, j.attempts) for j in jobs]
    assert [_state(j) for j in bulk.jobs] == [_state(j) for j in jobs]  # attempts kept
    assert list(bulk.job.items) == [j.batch for j in jobs]
    assert bulk.job.items[1:] == [jobs[1].batch]
    assert bulk.batches() == [j.batch for j in jobs]


def test_fates_group_requests_sharing_one_outcome_in_order() -> None:
    jobs = [request(f"c-{i}") for i in range(4)]
    bulk = BulkRequest(jobs)
    ok, failed = delivered(), unavailable()
    fates = list(bulk.fates([ok, failed, ok, failed]))
    entries = bulk.entries
    assert [(outcome, group) for outcome, group in fates] == [
        (ok, [entries[0], entries[2]]),
        (failed, [entries[1], entries[3]]),
    ]


def test_equal_but_distinct_outcomes_are_separate_fates() -> None:
    bulk = BulkRequest([request("c-1"), request("c-2")])
    fates = list(bulk.fates([delivered(), delivered()]))
    assert [group for _, group in fates] == [[bulk.entries[0]], [bulk.entries[1]]]


def test_fates_need_one_outcome_per_request() -> None:
    with pytest.raises(ValueError):
        list(BulkRequest([request("c-1"), request("c-2")]).fates([delivered()]))


# --- KeyGate -------------------------------------------------------------------------------
def test_an_open_gate_lets_a_probe_go_at_once() -> None:
    gate = KeyGate()
    assert not gate.refused
    assert gate.probe_wait(time.monotonic()) is None


def test_refuse_logs_one_error_the_first_time_only(caplog: pytest.LogCaptureFixture) -> None:
    gate = KeyGate()
    with caplog.at_level(logging.ERROR, logger="gbtrack"):
        assert gate.refuse(refused(), 2.5, "in the outbox") is True
        assert gate.refuse(refused(), 2.5, "in the outbox") is False
    assert gate.refused
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].getMessage() == (
        "gbtrack: Gameball refused the API key "
        "(HTTP 401, code 1001, AuthenticationError (permanent)): "
        "sending is stopped and events are kept (in the outbox); a probe every 2.5s "
        "resumes when the key works, or configure() a new key"
    )


def test_a_refused_key_waits_one_interval_before_a_probe() -> None:
    gate = KeyGate()
    before = time.monotonic()
    gate.refuse(refused(), 30.0, "kept")
    after = time.monotonic()
    wait = gate.probe_wait(after)
    assert wait is not None
    assert 30.0 - (after - before) <= wait <= 30.0
    assert gate.probe_wait(after + 30.0) is None  # due: the probe may go
    assert gate.probe_wait(gate.probe_at) is None  # exactly due counts as due


def test_each_refusal_pushes_the_next_probe_back() -> None:
    gate = KeyGate()
    gate.refuse(refused(), 1.0, "kept")
    gate.refuse(refused(), 60.0, "kept")
    wait = gate.probe_wait(time.monotonic())
    assert wait is not None
    assert wait > 59.0


def test_no_second_probe_while_one_is_out() -> None:
    gate = KeyGate()
    gate.refuse(refused(), 0.0, "kept")
    gate.probing = True
    assert gate.probe_wait(time.monotonic() + 1000.0) == float("inf")


def test_a_delivered_probe_reopens_the_gate(caplog: pytest.LogCaptureFixture) -> None:
    gate = KeyGate()
    gate.refuse(refused(), 5.0, "kept")
    gate.probing = True
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gbtrack"):
        assert gate.answered(delivered()) is True
    assert not gate.refused
    assert not gate.probing
    assert [r.getMessage() for r in caplog.records] == [
        "gbtrack: Gameball accepts the API key again; sending resumed"
    ]
    assert caplog.records[0].levelno == logging.WARNING
    # Open again: the next refusal is a first one (logged, True).
    assert gate.refuse(refused(), 5.0, "kept") is True


def test_a_failed_probe_keeps_the_gate_shut_and_allows_the_next() -> None:
    gate = KeyGate()
    gate.refuse(refused(), 0.0, "kept")
    gate.probing = True
    assert gate.answered(refused()) is False
    assert gate.refused
    assert not gate.probing
    assert gate.probe_wait(time.monotonic() + 1.0) is None


def test_a_delivered_answer_on_an_open_gate_reopens_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate = KeyGate()
    with caplog.at_level(logging.WARNING, logger="gbtrack"):
        assert gate.answered(delivered()) is False
    assert not caplog.records


# --- time_left -----------------------------------------------------------------------------
def test_time_left_without_a_deadline_is_none() -> None:
    assert time_left(None) is None


def test_time_left_counts_down_and_never_goes_negative() -> None:
    left = time_left(time.monotonic() + 10.0)
    assert left is not None
    assert 9.0 < left <= 10.0
    assert time_left(time.monotonic() - 10.0) == 0.0


# --- IOPool --------------------------------------------------------------------------------
class Pool:
    def __init__(self, size: int) -> None:
        self.done: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.wake = threading.Event()
        self.pool = IOPool(size, "test", self.done, self.wake)

    def result(self) -> Any:
        return self.done.get(timeout=10)

    def close(self) -> None:
        self.pool.shutdown(10)


@pytest.fixture
def pool() -> Any:
    pools: list[Pool] = []

    def make(size: int) -> Pool:
        pools.append(Pool(size))
        return pools[-1]

    yield make
    for p in pools:
        p.close()


def test_a_submitted_call_reports_its_result_and_wakes_the_worker(pool: Any) -> None:
    p = pool(2)
    obj = object()
    p.pool.submit("send", obj, lambda: 7, in_flight=1)
    assert p.result() == ("send", obj, 7)
    assert p.wake.wait(10)


def test_a_raising_call_reports_the_exception_and_the_thread_lives_on(pool: Any) -> None:
    p = pool(1)
    error = RuntimeError("client bug")

    def boom() -> Any:
        raise error

    p.pool.submit("send", 1, boom, in_flight=1)
    assert p.result() == ("send", 1, error)
    p.pool.submit("poll", 2, lambda: "ok", in_flight=1)
    assert p.result() == ("poll", 2, "ok")


def test_threads_start_as_requests_need_them_up_to_size(pool: Any) -> None:
    p = pool(3)
    gate = threading.Event()
    p.pool.submit("a", 0, gate.wait, in_flight=1)
    assert [t.name for t in p.pool.threads] == ["test-io-1"]
    p.pool.submit("a", 1, gate.wait, in_flight=1)  # one in flight: one thread will do
    assert len(p.pool.threads) == 1
    for i in range(2, 7):
        p.pool.submit("a", i, gate.wait, in_flight=i)
    assert [t.name for t in p.pool.threads] == ["test-io-1", "test-io-2", "test-io-3"]
    assert all(t.daemon for t in p.pool.threads)
    gate.set()
    assert sorted(p.result()[1] for _ in range(7)) == list(range(7))


def test_shutdown_stops_every_thread(pool: Any) -> None:
    p = pool(2)
    p.pool.submit("a", 0, lambda: None, in_flight=2)
    p.pool.submit("a", 1, lambda: None, in_flight=2)
    p.result()
    p.result()
    p.pool.shutdown(10)
    assert len(p.pool.threads) == 2
    assert not any(t.is_alive() for t in p.pool.threads)


def test_shutdown_waits_at_most_its_timeout_for_a_hung_call(pool: Any) -> None:
    p = pool(1)
    hang = threading.Event()
    p.pool.submit("a", 0, hang.wait, in_flight=1)
    began = time.monotonic()
    p.pool.shutdown(0.2)
    took = time.monotonic() - began
    assert p.pool.threads[0].is_alive()
    assert took < 5.0
    hang.set()
    assert p.result() == ("a", 0, True)
    p.pool.threads[0].join(10)
    assert not p.pool.threads[0].is_alive()  # the stop request still reaches it


def test_shutdown_without_a_timeout_waits_for_the_threads(pool: Any) -> None:
    p = pool(1)
    release = threading.Event()
    p.pool.submit("a", 0, release.wait, in_flight=1)
    threading.Timer(0.05, release.set).start()
    p.pool.shutdown(None)
    assert not p.pool.threads[0].is_alive()
    assert p.result() == ("a", 0, True)
