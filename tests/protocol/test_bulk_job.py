"""The one bulk-job state machine: every path from a create answer ends, on one schedule.

:class:`gbtrack._protocol.BulkJob` is fed outcomes and times and answers decisions;
these tests drive it without a network, a thread or a clock.
"""

from __future__ import annotations

from typing import Any

import pytest

from gbtrack import AuthenticationError, Event, PayloadError, RateLimitError, ServerError
from gbtrack._protocol import (
    FIRST_POLL,
    BulkJob,
    ClientFailure,
    EventBatch,
    JobAction,
    JobStep,
    Outcome,
    OutcomeKind,
    classify_item,
    job_items,
    poll_delay,
)

D, R, A, P = (
    OutcomeKind.DELIVERED,
    OutcomeKind.RETRYABLE,
    OutcomeKind.AMBIGUOUS,
    OutcomeKind.PERMANENT,
)


def _items(n: int) -> list[EventBatch]:
    return [EventBatch.from_event(Event(name="purchase", customer_id=f"c-{i}")) for i in range(n)]


def _created(job_id: Any = 42) -> Outcome:
    return Outcome(D, status=200, body={"jobId": job_id})


def _status(state: str, errors: list[dict[str, Any]] | None = None, **extra: Any) -> Outcome:
    body = {"batchId": "42", "status": state, "errors": errors or [], **extra}
    return Outcome(D, status=200, body=body)


def _kinds(step: JobStep) -> list[OutcomeKind]:
    return [o.kind for o in step.outcomes]


def test_one_poll_schedule_from_50_ms_doubling_to_the_longest() -> None:
    assert [poll_delay(n) for n in range(8)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]
    assert [poll_delay(n, 0.3) for n in range(4)] == [0.05, 0.1, 0.2, 0.3]
    assert poll_delay(10_000) == 1.0  # no overflow however long a job runs


def test_a_created_job_is_polled_on_the_schedule_until_it_completes() -> None:
    job = BulkJob(_items(3))
    step = job.on_created(_created(), now=100.0)
    assert (step.action, step.poll_at, job.job_id) == (JobAction.POLL, 100.0 + FIRST_POLL, "42")
    times = []
    now = 100.0
    for _ in range(6):
        now = step.poll_at or now
        times.append(round(now - 100.0, 2))
        step = job.on_status(_status("processing"), now)
    assert times == [0.05, 0.15, 0.35, 0.75, 1.55, 2.55]
    assert not job.done
    step = job.on_status(_status("completed"), now)
    assert step.action is JobAction.FINISHED
    assert job.done
    assert _kinds(step) == [D, D, D]
    assert len({id(o) for o in step.outcomes}) == 1  # one delivered outcome, settled together


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (Outcome(R, status=503, error=ServerError("down", status=503)), R),
        (Outcome(R, status=429, error=RateLimitError("slow down", status=429)), R),
        (Outcome(A, error=ServerError("read timeout")), A),
        (Outcome(A, status=500, error=ServerError("oops", status=500)), A),
    ],
)
def test_a_failed_create_finishes_every_item_at_once(answer: Outcome, kind: OutcomeKind) -> None:
    # Mutation testing found this path untested: a failed create must never leave the
    # job (and its events) waiting for a poll that will never come.
    job = BulkJob(_items(4))
    step = job.on_created(answer, now=0.0)
    assert step.action is JobAction.FINISHED
    assert job.done
    assert step.poll_at is None
    assert step.outcomes == (answer,) * 4
    assert _kinds(step) == [kind] * 4
    with pytest.raises(RuntimeError):
        job.on_status(_status("completed"), 1.0)


@pytest.mark.parametrize(
    "answer",
    [
        Outcome(P, status=422, error=PayloadError("bad item", status=422, code=3003)),
        Outcome(P, status=401, error=AuthenticationError("no secret", status=401, code=1001)),
        Outcome(P, error=ClientFailure("the Gameball client raised ValueError")),
    ],
)
def test_a_refused_create_falls_back_to_one_request_per_item(answer: Outcome) -> None:
    job = BulkJob(_items(2))
    step = job.on_created(answer, now=0.0)
    assert (step.action, step.cause, step.outcomes) == (JobAction.FALL_BACK, answer, ())
    assert job.done


def test_a_2xx_without_a_job_id_counts_as_delivered() -> None:
    job = BulkJob(_items(2))
    step = job.on_created(Outcome(D, status=200, body=None), now=0.0)
    assert step.action is JobAction.FINISHED
    assert _kinds(step) == [D, D]


def test_item_errors_are_classified_like_single_answers() -> None:
    job = BulkJob(_items(4))
    job.on_created(_created(), 0.0)
    errors = [
        {"index": 1, "customerId": "c-1", "code": 3003},
        {"customerId": "c-2", "code": 2001},
        {"index": 3, "code": 5000},
    ]
    step = job.on_status(_status("completed", errors, failedItems=3), 1.0)
    assert _kinds(step) == [D, P, R, A]
    for i in (1, 2, 3):
        expected = classify_item(errors[i - 1]["code"], f"batch job 42 item {i} failed")
        assert type(step.outcomes[i].error) is type(expected.error)
        assert step.outcomes[i].error.code == errors[i - 1]["code"]  # type: ignore[union-attr]
        assert str(step.outcomes[i].error) == str(expected.error)


@pytest.mark.parametrize(
    "status",
    [
        _status("completed", [{"message": "something failed"}]),  # identifies no item
        _status("completed", failedItems=2),  # more failures counted than identified
        _status("failed"),  # failed without any identified item
    ],
)
def test_unattributed_failures_make_every_item_ambiguous(status: Outcome) -> None:
    job = BulkJob(_items(3))
    job.on_created(_created(), 0.0)
    step = job.on_status(status, 1.0)
    assert step.action is JobAction.FINISHED
    assert _kinds(step) == [A, A, A]
    assert isinstance(step.outcomes[0].error, ServerError)


def test_failing_polls_end_ambiguous_after_the_limit() -> None:
    job = BulkJob(_items(2), max_poll_failures=3)
    step = job.on_created(_created(), 0.0)
    broken = Outcome(R, status=503, error=ServerError("down", status=503))
    actions = []
    for _ in range(3):
        step = job.on_status(broken, step.poll_at or 0.0)
        actions.append(step.action)
    assert actions == [JobAction.POLL, JobAction.POLL, JobAction.FINISHED]
    assert _kinds(step) == [A, A]
    assert step.outcomes[0].error is not None
    assert step.outcomes[0].error.__cause__ is broken.error


def test_a_refused_poll_ends_ambiguous_at_once() -> None:
    job = BulkJob(_items(1))
    job.on_created(_created(), 0.0)
    refused = Outcome(P, status=404, error=PayloadError("no such job", status=404, code=3017))
    step = job.on_status(refused, 0.1)
    assert _kinds(step) == [A]


def test_a_poll_answer_that_is_no_status_is_a_failed_poll() -> None:
    job = BulkJob(_items(1), max_poll_failures=2)
    job.on_created(_created(), 0.0)
    assert job.on_status(Outcome(D, status=200, body={"hello": 1}), 0.1).action is JobAction.POLL
    assert _kinds(job.on_status(Outcome(D, status=200, body=[]), 0.2)) == [A]


def test_a_job_unfinished_past_the_timeout_is_ambiguous() -> None:
    job = BulkJob(_items(2), timeout=5.0)
    job.on_created(_created(), 100.0)
    assert job.on_status(_status("pending"), 104.9).action is JobAction.POLL
    step = job.on_status(_status("pending"), 105.0)
    assert _kinds(step) == [A, A]
    assert "not finished within 5 s" in str(step.outcomes[0].error)


def test_abandon_makes_an_open_job_ambiguous_and_keeps_a_finished_one() -> None:
    job = BulkJob(_items(2))
    job.on_created(_created(), 0.0)
    step = job.abandon("the drainer stopped")
    assert _kinds(step) == [A, A]
    assert job.done
    finished = BulkJob(_items(1))
    done = finished.on_created(Outcome(D, status=200, body={}), 0.0)
    assert finished.abandon("late") is done


def test_misuse_is_refused() -> None:
    with pytest.raises(ValueError):
        BulkJob([])
    job = BulkJob(_items(1))
    with pytest.raises(RuntimeError):
        job.on_status(_status("completed"), 0.0)
    job.on_created(_created(), 0.0)
    with pytest.raises(RuntimeError):
        job.on_created(_created(), 0.0)


def test_a_job_carries_each_customer_once_no_token_and_at_most_the_limit() -> None:
    batches = [
        EventBatch.from_event(Event(name="a", customer_id="c-1")),
        EventBatch.from_event(Event(name="a", customer_id="c-2")),
        EventBatch.from_event(Event(name="a", customer_id="c-1")),  # c-1 again: later
        EventBatch.from_event(Event(name="a", customer_id="c-3", session_token="t")),
        EventBatch.from_event(Event(name="a", customer_id="c-4")),
        EventBatch.from_event(Event(name="a", customer_id="c-5")),
    ]
    assert job_items(batches) == ([0, 1, 4, 5], [2, 3])
    assert job_items(batches, skip=lambda b: b.customer_id == "c-2") == ([0, 4, 5], [1, 2, 3])
    assert job_items(batches, limit=2) == ([0, 1], [2, 3, 4, 5])
