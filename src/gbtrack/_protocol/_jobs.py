"""Batch jobs: which batches a job carries, and how a job progresses.

The job's parsed status (:class:`~gbtrack._protocol.BatchStatus`) lives in
:mod:`._status`, below the outcomes that carry it. :class:`BulkJob` is the one state
machine of a batch job, shared by every sender: fed the create answer and each status
answer (outcomes) with the time, it answers what to do next (:class:`JobStep`): poll
at a time, finished with one outcome per item, or fall back to one request per item. It
sends nothing, sleeps never and holds no lock; the caller owns the requests, the clock
and the threads.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

from gbtrack._errors import ServerError
from gbtrack._protocol._outcome import Outcome, OutcomeKind, classify_item, client_raised
from gbtrack._protocol._status import BatchStatus
from gbtrack._protocol._wire import MAX_BATCH_ITEMS, EventBatch

__all__ = [
    "FALL_BACK_PAUSE",
    "FIRST_POLL",
    "JOB_TIMEOUT",
    "LONGEST_POLL",
    "MAX_POLL_FAILURES",
    "BulkJob",
    "JobAction",
    "JobStep",
    "job_items",
    "poll_delay",
]

FIRST_POLL: Final = 0.05
"""Seconds from a job's creation to its first status poll."""
LONGEST_POLL: Final = 1.0
"""The longest wait between two status polls, by default."""
MAX_POLL_FAILURES: Final = 8
"""Status polls that may fail (no status in the answer) before the job is ambiguous."""
JOB_TIMEOUT: Final = 600.0
"""Seconds from creation after which an unfinished job is ambiguous, by default."""
FALL_BACK_PAUSE: Final = 300.0
"""Seconds the batch endpoint is left unused after a create was refused as a whole."""


_Batch = TypeVar("_Batch", bound=EventBatch)


# --- choosing a job's items -------------------------------------------------------------------
def job_items(
    batches: Sequence[_Batch],
    *,
    skip: Callable[[_Batch], bool] | None = None,
    limit: int = MAX_BATCH_ITEMS,
) -> tuple[list[int], list[int]]:
    """Choose the batches one job carries, in order: (positions taken, positions left).

    A job carries each customer at most once (its item errors stay attributable by
    ``customerId``, and Gameball never sees two requests for one customer at once, code
    2001), no batch with a session token (a per-request header the batch endpoint cannot
    carry), none that ``skip`` refuses (a sender's own reasons: a customer with a request
    in flight, a batch that must go alone), and at most ``limit`` (1,000) batches. What
    is left goes in a later job or as a request of its own.
    """
    taken: list[int] = []
    left: list[int] = []
    seen: set[str] = set()
    count = len(batches)
    for index, batch in enumerate(batches):
        if len(taken) >= limit:  # full: the rest is left as it is
            left.extend(range(index, count))
            break
        customer_id = batch.customer_id
        if (
            batch.session_token is not None
            or customer_id in seen
            or (skip is not None and skip(batch))
        ):
            left.append(index)
            continue
        seen.add(customer_id)
        taken.append(index)
    return taken, left


# --- the state machine of one batch job --------------------------------------------------------
def poll_delay(polls: int, longest: float = LONGEST_POLL) -> float:
    """Seconds before status poll number ``polls + 1``: the one poll schedule.

    50 ms after creation, doubling (0.05, 0.1, 0.2, 0.4, 0.8, ...) up to ``longest``: a
    fast job is not held for a whole interval (which would cap bulk delivery near
    1,000 events a second), a slow one is not polled more than once per ``longest``.
    """
    return min(longest, FIRST_POLL * (1 << min(polls, 32)))


class JobAction(str, enum.Enum):
    """What a batch job's owner does next."""

    POLL = "poll"
    """Ask for the job's status at :attr:`JobStep.poll_at`, then call :meth:`BulkJob.on_status`."""
    FINISHED = "finished"
    """The job is over: :attr:`JobStep.outcomes` holds one outcome per item."""
    FALL_BACK = "fall_back"
    """No job was made: send each item as a request of its own (:attr:`JobStep.cause`)."""


@dataclass(frozen=True)
class JobStep:
    """One decision of :class:`BulkJob`.

    Attributes:
        action: Poll, finished, or fall back to per-item requests.
        poll_at: ``POLL``: when to poll, on the clock the caller passes as ``now``.
        outcomes: ``FINISHED``: one outcome per item, in the items' order. Items that
            share a fate share one :class:`Outcome` object (one delivered outcome for
            all delivered items), so that a caller can settle them together.
        cause: ``FALL_BACK``: the create answer that made the job impossible.
    """

    action: JobAction
    poll_at: float | None = None
    outcomes: tuple[Outcome, ...] = ()
    cause: Outcome | None = None


class BulkJob:
    """One batch job, from its create answer to one outcome per item.

    Feed it :meth:`on_created` once, then :meth:`on_status` after each poll it asks
    for, until a step is ``FINISHED`` or ``FALL_BACK``; :meth:`abandon` ends it early.
    Every path ends: a failed create finishes at once (retryable and ambiguous answers
    apply to every item, a refusal falls back), failing polls end after
    ``max_poll_failures``, a job still unfinished after ``timeout`` seconds is
    ambiguous.

    ================================  ================================================
    create answer                     step
    ================================  ================================================
    2xx with a job id                 ``POLL`` after :func:`poll_delay` (50 ms)
    2xx without a job id              ``FINISHED``, every item delivered (a 2xx is
                                      success; nothing to poll)
    retryable or ambiguous            ``FINISHED``, that outcome for every item
    permanent (refused as a whole,    ``FALL_BACK``: each item as a request of its
    or the client raised)             own, where it gets its own answer
    ================================  ================================================

    ================================  ================================================
    status answer                     step
    ================================  ================================================
    pending / processing              ``POLL`` on the schedule; ``FINISHED`` ambiguous
                                      past ``timeout``
    completed / failed                ``FINISHED``: delivered, or
                                      :func:`~gbtrack._protocol.classify_item` of the
                                      item's error; ambiguous for every item when the
                                      errors cannot be attributed
                                      (:meth:`BatchStatus.item_errors`)
    no status (a failed poll)         ``POLL`` again; ``FINISHED`` ambiguous after
                                      ``max_poll_failures`` or a refusal
    ================================  ================================================

    Args:
        items: The batches submitted with the create request, in order (kept, not
            copied: not to be changed while the job runs).
        longest_poll: The longest wait between two polls.
        max_poll_failures: Failed polls before the job's fate counts as ambiguous.
        timeout: Seconds from creation after which an unfinished job is ambiguous.
    """

    __slots__ = (
        "_deadline",
        "_step",
        "items",
        "job_id",
        "longest_poll",
        "max_poll_failures",
        "poll_failures",
        "polls",
        "timeout",
    )

    def __init__(
        self,
        items: Sequence[EventBatch],
        *,
        longest_poll: float = LONGEST_POLL,
        max_poll_failures: int = MAX_POLL_FAILURES,
        timeout: float = JOB_TIMEOUT,
    ) -> None:
        if not items:
            raise ValueError("a batch job needs at least one item")
        # Kept as given, not copied: a sender may pass a view that builds each batch
        # only when read (the items are read only when a failure must be attributed).
        self.items = items
        self.longest_poll = longest_poll
        self.max_poll_failures = max_poll_failures
        self.timeout = timeout
        self.job_id: str | None = None
        self.polls = 0
        self.poll_failures = 0
        self._deadline = 0.0
        self._step: JobStep | None = None

    @property
    def done(self) -> bool:
        """Whether the job has ended (finished or fallen back)."""
        return self._step is not None and self._step.action is not JobAction.POLL

    def on_created(self, outcome: Outcome, now: float) -> JobStep:
        """Decide after the create answer (``outcome``) arrived at ``now``."""
        if self._step is not None:
            raise RuntimeError("on_created() was already called for this job")
        if outcome.permanent:
            return self._end(JobStep(JobAction.FALL_BACK, cause=outcome))
        if not outcome.delivered:
            return self._finish_all(outcome)
        job_id = outcome.job_id
        if job_id is None:
            return self._finish_all(Outcome(OutcomeKind.DELIVERED, status=outcome.status))
        self.job_id = job_id
        self._deadline = now + self.timeout
        return self._poll(now)

    def on_status(self, outcome: Outcome, now: float) -> JobStep:
        """Decide after a status answer (``outcome``) arrived at ``now``."""
        if self._step is None or self._step.action is not JobAction.POLL:
            raise RuntimeError("on_status() without a poll to answer")
        status = outcome.batch_status
        if status is None:
            self.poll_failures += 1
            refused = outcome.permanent and not client_raised(outcome)
            if refused or self.poll_failures >= self.max_poll_failures:
                return self._ambiguous(
                    f"status unknown after {self.poll_failures} failed poll(s)", outcome
                )
        elif status.done:
            return self._completed(status)
        if now >= self._deadline:
            return self._ambiguous(f"not finished within {self.timeout:g} s")
        return self._poll(now)

    def abandon(self, why: str) -> JobStep:
        """The owner stops waiting (shutting down): every item's fate is ambiguous."""
        if self.done:
            assert self._step is not None
            return self._step
        return self._ambiguous(why)

    # --- steps ------------------------------------------------------------------------------
    def _end(self, step: JobStep) -> JobStep:
        self._step = step
        return step

    def _poll(self, now: float) -> JobStep:
        at = now + poll_delay(self.polls, self.longest_poll)
        self.polls += 1
        return self._end(JobStep(JobAction.POLL, poll_at=at))

    def _finish_all(self, outcome: Outcome) -> JobStep:
        return self._end(JobStep(JobAction.FINISHED, outcomes=(outcome,) * len(self.items)))

    def _ambiguous(self, why: str, answer: Outcome | None = None) -> JobStep:
        error = ServerError(f"batch job {self.job_id}: {why}")
        if answer is not None and answer.error is not None:
            error.__cause__ = answer.error
        return self._finish_all(Outcome(OutcomeKind.AMBIGUOUS, error=error))

    def _completed(self, status: BatchStatus) -> JobStep:
        errors = status.item_errors(self.items)
        if errors is None:
            return self._ambiguous(
                f"{status.status} with {status.failed_items} failed item(s) "
                "that its errors do not identify"
            )
        delivered = Outcome(OutcomeKind.DELIVERED)
        outcomes: list[Outcome] = []
        for index in range(len(self.items)):
            error = errors.get(index)
            if error is None:
                outcomes.append(delivered)
            else:
                # Gameball's message may echo input: the job, the position and the code only.
                outcomes.append(
                    classify_item(error.code, f"batch job {self.job_id} item {index} failed")
                )
        return self._end(JobStep(JobAction.FINISHED, outcomes=tuple(outcomes)))
