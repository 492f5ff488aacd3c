"""Batch jobs at their edges: the cases mutation testing found unpinned.

Each test names the regression it catches (``nox -s mutate`` reports the rest).
"""

from __future__ import annotations

from typing import Any

import pytest

from gbtrack import Event, PayloadError
from gbtrack._protocol import (
    BatchItemError,
    BatchStatus,
    BulkJob,
    EventBatch,
    JobAction,
    JobStep,
    Outcome,
    OutcomeKind,
    as_int,
)

D, A, P = OutcomeKind.DELIVERED, OutcomeKind.AMBIGUOUS, OutcomeKind.PERMANENT


def _items(*customers: str) -> list[EventBatch]:
    return [EventBatch.from_event(Event(name="purchase", customer_id=c)) for c in customers]


def _created(job_id: Any = 42) -> Outcome:
    return Outcome(D, status=200, body={"jobId": job_id})


def _status(state: str, errors: list[Any] | None = None, **extra: Any) -> Outcome:
    return Outcome(
        D, status=200, body={"batchId": "42", "status": state, "errors": errors or [], **extra}
    )


def _finish(job: BulkJob, errors: list[Any], **extra: Any) -> JobStep:
    job.on_created(_created(), 0.0)
    return job.on_status(_status("completed", errors, **extra), 1.0)


def _kinds(step: JobStep) -> list[OutcomeKind]:
    return [o.kind for o in step.outcomes]


# --- parsing ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "number"),
    [("-3", -3), (" 7 ", 7), ("12", 12), (2.0, 2), (5, 5), ("3.5", None), ("--3", None)],
)
def test_as_int_reads_negative_and_padded_digit_strings(raw: object, number: int | None) -> None:
    assert as_int(raw) == number


def test_long_item_messages_are_cut_at_500_characters() -> None:
    assert BatchItemError.parse("x" * 600).message == "x" * 500
    assert BatchItemError.parse("x" * 500).message == "x" * 500
    shown = BatchItemError.parse(["y" * 600]).message
    assert shown is not None
    assert len(shown) == 500
    assert shown.startswith("['yyy")


def test_numeric_ids_are_read_as_the_text_they_stand_for() -> None:
    # Gameball may send customerId or batchId as numbers; 42.0 is customer "42".
    assert BatchItemError.parse({"customerId": 42.0}).customer_id == "42"
    assert BatchItemError.parse({"customerId": 42}).customer_id == "42"
    assert BatchItemError.parse({"customerId": 4.5}).customer_id == "4.5"
    assert BatchItemError.parse({"customerId": True}).customer_id is None
    status = BatchStatus.parse({"batchId": 7.0, "status": "Completed"})
    assert status is not None
    assert (status.batch_id, status.status) == ("7", "completed")


def test_an_error_naming_a_numeric_customer_id_reaches_that_item() -> None:
    step = _finish(BulkJob(_items("41", "42")), [{"customerId": 42.0, "code": 3003}])
    assert _kinds(step) == [D, P]


# --- attributing errors -----------------------------------------------------------------
def test_the_first_item_is_attributed_by_index_zero() -> None:
    step = _finish(BulkJob(_items("a", "b", "c")), [{"index": 0, "code": 3003}], failedItems=1)
    assert _kinds(step) == [P, D, D]
    assert isinstance(step.outcomes[0].error, PayloadError)


def test_an_index_past_the_last_item_identifies_nothing() -> None:
    items = _items("a", "b", "c")
    assert _kinds(_finish(BulkJob(items), [{"index": 3, "code": 3003}])) == [A, A, A]
    # ... unless the error names a customer, which then decides.
    step = _finish(BulkJob(items), [{"index": 3, "customerId": "b", "code": 3003}])
    assert _kinds(step) == [D, P, D]


def test_unattributed_failures_say_how_many_failed() -> None:
    step = _finish(BulkJob(_items("a", "b")), [], failedItems=2)
    assert str(step.outcomes[0].error) == (
        "batch job 42: completed with 2 failed item(s) that its errors do not identify"
    )


# --- the state machine ------------------------------------------------------------------
def test_a_job_has_no_id_until_a_create_answer_gives_one() -> None:
    job = BulkJob(_items("a"))
    assert job.job_id is None
    job.on_created(Outcome(P, status=422, error=PayloadError("no", status=422)), 0.0)
    assert job.job_id is None
    created = BulkJob(_items("a"))
    created.on_created(_created(" 42 "), 0.0)
    assert created.job_id == "42"


def test_a_2xx_without_a_job_id_delivers_every_item_with_its_status() -> None:
    step = BulkJob(_items("a", "b")).on_created(Outcome(D, status=201, body={}), 0.0)
    assert [(o.kind, o.status) for o in step.outcomes] == [(D, 201), (D, 201)]


def test_polls_are_spaced_by_the_jobs_own_longest_poll() -> None:
    job = BulkJob(_items("a"), longest_poll=0.15)
    step = job.on_created(_created(), 10.0)
    times = [step.poll_at]
    for _ in range(3):
        now = step.poll_at
        assert now is not None
        step = job.on_status(_status("processing"), now)
        times.append(step.poll_at)
    assert times == pytest.approx([10.05, 10.15, 10.3, 10.45])
    assert job.polls == 4


def test_ambiguous_endings_say_why() -> None:
    job = BulkJob(_items("a"), max_poll_failures=2)
    job.on_created(_created(), 0.0)
    broken = Outcome(A, error=PayloadError("x"))
    job.on_status(broken, 0.1)
    step = job.on_status(broken, 0.2)
    assert str(step.outcomes[0].error) == "batch job 42: status unknown after 2 failed poll(s)"
    open_job = BulkJob(_items("a"))
    open_job.on_created(_created(), 0.0)
    step = open_job.abandon("the sender is closing")
    assert str(step.outcomes[0].error) == "batch job 42: the sender is closing"


def test_misuse_is_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match=r"^a batch job needs at least one item$"):
        BulkJob([])
    job = BulkJob(_items("a"))
    with pytest.raises(RuntimeError, match=r"^on_status\(\) without a poll to answer$"):
        job.on_status(_status("completed"), 0.0)
    job.on_created(_created(), 0.0)
    with pytest.raises(RuntimeError, match=r"^on_created\(\) was already called for this job$"):
        job.on_created(_created(), 0.0)
    assert job.on_status(_status("completed"), 0.1).action is JobAction.FINISHED


@pytest.mark.parametrize("bad", ["--3", "²", "-", "3²", "1_000", ""])
def test_malformed_numbers_never_make_parsing_raise(bad: str) -> None:
    # Bug found by mutation testing: as_int("--3") and as_int("²") raised ValueError
    # (str.isdigit accepts what int() refuses), so one odd field in a status or create
    # answer raised out of the parser that promises never to.
    assert as_int(bad) is None
    status = BatchStatus.parse(
        {"batchId": "1", "status": "completed", "failedItems": bad, "errors": [{"code": bad}]}
    )
    assert status is not None
    assert status.errors[0].code is None
    assert Outcome(D, status=200, body={"jobId": bad}).job_id == (bad or None)
