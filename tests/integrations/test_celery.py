"""gbtrack.integrations.celery in-process: the signal handlers, without a broker.

The real worker (three pools, a Redis broker, the emulator) is in test_celery_worker.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("celery")

from celery import Celery, signals

from gbtrack import InMemorySender, Tracker, current_identity, identify, track
from gbtrack.integrations import celery as gb_celery
from gbtrack.integrations.celery import HEADER, instrument, is_instrumented, uninstrument


@pytest.fixture(autouse=True)
def _uninstrument() -> Iterator[None]:
    try:
        yield
    finally:
        uninstrument()


def _publish_headers() -> dict[str, Any]:
    headers: dict[str, Any] = {"task": "t", "id": "1"}
    signals.before_task_publish.send(sender="t", body=(), headers=headers, properties={})
    return headers


class FakeTask:
    """What the handlers read of a task: its request (hashable, as Celery's signals need)."""

    def __init__(self, request: SimpleNamespace) -> None:
        self.request = request


def _run(headers: dict[str, Any], body: Any = None, task_id: str = "1") -> Any:
    """Run ``body`` between task_prerun and task_postrun, as the worker's tracer does."""
    task = FakeTask(SimpleNamespace(**headers))
    signals.task_prerun.send(sender=task, task_id=task_id, task=task, args=(), kwargs={})
    try:
        return body() if body is not None else current_identity()
    finally:
        signals.task_postrun.send(sender=task, task_id=task_id, task=task, retval=None)


class FlushCounter(InMemorySender):
    def __init__(self, answer: bool = True) -> None:
        super().__init__()
        self.flushes: list[float | None] = []
        self.answer = answer

    def flush(self, timeout: float | None = None) -> bool:
        self.flushes.append(timeout)
        return self.answer


# --- the publisher --------------------------------------------------------------------
def test_the_header_carries_id_email_and_mobile_but_not_the_token() -> None:
    instrument()
    with identify("cust-1", email="a@example.com", mobile="+201000000000", session_token="s3"):
        headers = _publish_headers()
    assert headers[HEADER] == {
        "customer_id": "cust-1",
        "email": "a@example.com",
        "mobile": "+201000000000",
    }


def test_the_token_travels_only_when_opted_in() -> None:
    instrument(session_token=True)
    with identify("cust-1", session_token="s3"):
        headers = _publish_headers()
    assert headers[HEADER] == {"customer_id": "cust-1", "session_token": "s3"}
    identity = _run(headers)
    assert identity.session_token is not None
    assert identity.session_token.get_secret_value() == "s3"


def test_no_identity_no_header_and_a_stale_one_is_removed() -> None:
    instrument()
    assert HEADER not in _publish_headers()
    headers = {HEADER: {"customer_id": "someone-else"}}
    signals.before_task_publish.send(sender="t", body=(), headers=headers, properties={})
    assert HEADER not in headers


def test_nothing_happens_before_instrument_or_after_uninstrument() -> None:
    assert not is_instrumented()
    with identify("cust-1"):
        assert HEADER not in _publish_headers()
    instrument()
    instrument(flush_timeout=1)  # idempotent: connected once, settings replaced
    assert is_instrumented()
    uninstrument()
    with identify("cust-1"):
        assert HEADER not in _publish_headers()
    assert _run({HEADER: {"customer_id": "cust-1"}}).customer_id is None


def test_a_negative_flush_timeout_is_refused() -> None:
    with pytest.raises(ValueError, match="flush_timeout"):
        instrument(flush_timeout=-1)


# --- the worker -----------------------------------------------------------------------
def test_the_identity_is_bound_for_the_task_and_restored_after() -> None:
    instrument()
    identity = _run({HEADER: {"customer_id": "cust-1", "email": "a@example.com"}})
    assert (identity.customer_id, identity.email, identity.mobile) == (
        "cust-1",
        "a@example.com",
        None,
    )
    assert current_identity().customer_id is None
    assert gb_celery._blocks == {}


def test_a_token_in_the_header_is_ignored_unless_opted_in() -> None:
    instrument()
    identity = _run({HEADER: {"customer_id": "cust-1", "session_token": "s3"}})
    assert identity.customer_id == "cust-1"
    assert identity.session_token is None


def test_events_tracked_in_a_task_go_to_the_published_customer() -> None:
    sender = InMemorySender()
    tracker = Tracker(sender)

    @track("purchase_completed", metadata={"n": "n"}, tracker=tracker)
    def purchase(n: int) -> None: ...

    instrument(tracker=tracker)
    with identify("cust-7", email="c7@example.com"):
        headers = _publish_headers()
    _run(headers, lambda: purchase(1))
    purchase(2)  # after the task: nobody, dropped
    assert [(e.customer_id, e.email, e.metadata) for e in sender.events] == [
        ("cust-7", "c7@example.com", {"n": 1})
    ]
    assert tracker.stats.dropped == {"no_customer_id": 1}


def test_a_header_nested_under_headers_is_read_too() -> None:
    instrument()
    identity = _run({"headers": {HEADER: {"customer_id": "cust-2"}}})
    assert identity.customer_id == "cust-2"


@pytest.mark.parametrize(
    "carried",
    [["cust-1"], {"customer_id": 3.5}, {"customer_id": "c", "email": 5}],
    ids=["not-a-mapping", "bad-id", "bad-email"],
)
def test_a_malformed_header_is_logged_and_the_task_runs_without_identity(
    carried: object, caplog: pytest.LogCaptureFixture
) -> None:
    instrument()
    with caplog.at_level(logging.ERROR, logger="gbtrack"):
        identity = _run({HEADER: carried})
    assert identity.customer_id is None
    assert "runs without an identity" in caplog.text


def test_a_task_without_header_keeps_no_identity() -> None:
    instrument()
    assert _run({}).customer_id is None


def test_interleaved_tasks_of_a_threads_pool_each_see_their_own() -> None:
    import threading

    instrument()
    seen: dict[int, str | None] = {}
    barrier = threading.Barrier(4)

    def task(n: int) -> None:
        def body() -> None:
            barrier.wait(timeout=5)  # all four tasks are running at once
            seen[n] = current_identity().customer_id

        _run({HEADER: {"customer_id": f"cust-{n}"}}, body, task_id=str(n))

    threads = [threading.Thread(target=task, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert seen == {n: f"cust-{n}" for n in range(4)}


# --- flushing -------------------------------------------------------------------------
def test_flush_at_process_exit_and_worker_shutdown_not_after_each_task() -> None:
    sender = FlushCounter()
    instrument(tracker=Tracker(sender), flush_timeout=2.5)
    _run({})
    assert sender.flushes == []
    signals.worker_process_shutdown.send(sender="host", pid=1, exitcode=0)
    signals.worker_shutdown.send(sender=None)
    assert sender.flushes == [2.5, 2.5]


def test_flush_after_each_task_when_asked() -> None:
    sender = FlushCounter()
    instrument(tracker=Tracker(sender), flush_timeout=1.0, flush_after_task=True)
    _run({})
    _run({})
    assert sender.flushes == [1.0, 1.0]


def test_the_default_tracker_is_looked_up_at_flush_time() -> None:
    from gbtrack import get_tracker

    instrument()
    sender = FlushCounter()
    previous = get_tracker().use_sender(sender)
    try:
        signals.worker_shutdown.send(sender=None)
    finally:
        get_tracker().restore_sender(previous)
    assert sender.flushes == [5.0]


def test_an_incomplete_flush_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    instrument(tracker=Tracker(FlushCounter(answer=False)))
    with caplog.at_level(logging.WARNING, logger="gbtrack"):
        signals.worker_process_shutdown.send(sender="host", pid=1, exitcode=0)
    assert "did not deliver everything" in caplog.text


def test_a_raising_flush_never_reaches_celery(caplog: pytest.LogCaptureFixture) -> None:
    class Raising(FlushCounter):
        def flush(self, timeout: float | None = None) -> bool:
            raise RuntimeError("boom")

    instrument(tracker=Tracker(Raising()))
    with caplog.at_level(logging.ERROR, logger="gbtrack"):
        signals.worker_shutdown.send(sender=None)
    assert "raised" in caplog.text


# --- eager mode -----------------------------------------------------------------------
def test_eager_tasks_run_in_the_callers_identity() -> None:
    app = Celery("eager", broker="memory://", backend="cache+memory://")
    app.conf.task_always_eager = True

    @app.task
    def who() -> str | None:
        return current_identity().customer_id

    instrument()
    with identify("cust-9"):
        assert who.delay().get() == "cust-9"
    app.close()
