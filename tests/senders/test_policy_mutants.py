"""The retry policy and the rate limiter at their edges: cases mutation testing found unpinned.

Each test names the regression it catches (``nox -s mutate`` reports the rest). Tests
of blocking calls run them in a thread with a bound, so that a limiter that never gives
up fails the test at once instead of hanging it.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest
from tests.senders import bounded, delivered, rate_limited, rejected, unavailable

from gbtrack._fork import forget, reset_after_fork
from gbtrack._protocol import Outcome, OutcomeKind, call_client
from gbtrack.senders import RateLimiter, RetryPolicy


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def refused(limiter: RateLimiter) -> float:
    """The wait ``reserve()`` answers; fails if it took a slot instead."""
    wait, stamp = limiter.reserve()
    assert stamp is None
    return wait


# --- RetryPolicy ------------------------------------------------------------------------
def test_retry_policy_accepts_the_smallest_valid_settings() -> None:
    policy = RetryPolicy(max_attempts=1, max_age=0.5, base_delay=0.0, max_delay=0.0)
    assert policy.decide(unavailable(), 1, 0.0).reason == "retries_exhausted"
    assert policy.delay(3) == 0.0


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be at least 1"),
        ({"max_age": 0.0}, "max_age must be positive and delays non-negative"),
        ({"base_delay": -0.1}, "max_age must be positive and delays non-negative"),
        ({"max_delay": -0.1}, "max_age must be positive and delays non-negative"),
    ],
)
def test_retry_policy_refuses_each_invalid_setting(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        RetryPolicy(**settings)


def test_every_decision_says_why() -> None:
    policy = RetryPolicy(base_delay=0.0)
    assert policy.decide(delivered(), 1, 0.0).message == "delivered"
    retry = policy.decide(unavailable(), 1, 0.0)
    assert retry.retry
    assert retry.message == "HTTP 503, code 5003, ServerError (retryable)"
    raised = call_client(lambda: 1 / 0)
    assert policy.decide(raised, 1, 0.0).message == (
        "the Gameball client raised ZeroDivisionError; not retried: "
        "no HTTP answer, ClientFailure (permanent)"
    )


def test_a_permanent_outcome_is_never_retried_whatever_the_settings() -> None:
    policy = RetryPolicy(max_attempts=100, max_age=1e9, retry_ambiguous=True)
    for attempts in (1, 2, 50):
        assert policy.decide(rejected(), attempts, 0.0).reason == "rejected"


# --- RateLimiter: construction ----------------------------------------------------------
def test_default_margin_is_50_ms() -> None:
    clock = FakeClock()
    limiter = RateLimiter([(1, 1.0)], clock=clock)
    assert limiter.try_acquire() == 0.0
    clock.now += 1.0
    assert limiter.try_acquire() == pytest.approx(0.05)
    clock.now += 0.05
    assert limiter.try_acquire() == 0.0


@pytest.mark.parametrize("window", [(1, 0.0), (1, -1.0), (0, 1.0)])
def test_rate_limiter_refuses_an_empty_window(window: tuple[int, float]) -> None:
    with pytest.raises(ValueError, match=r"^invalid rate limit window \("):
        RateLimiter([window])


def test_rate_limiter_refuses_a_negative_margin_and_shows_its_windows() -> None:
    with pytest.raises(ValueError, match=r"^margin must not be negative$"):
        RateLimiter(margin=-0.01)
    assert repr(RateLimiter()) == "<RateLimiter 100/1s, 1200/30s>"
    assert repr(RateLimiter([(5, 0.5)])) == "<RateLimiter 5/0.5s>"


# --- RateLimiter: reserve, defer, restamp -----------------------------------------------
def test_a_slot_frees_exactly_one_period_after_its_answer_and_only_one() -> None:
    clock = FakeClock()
    limiter = RateLimiter([(1, 1.0)], clock=clock, margin=0)
    wait, stamp = limiter.reserve()
    assert wait == 0.0
    assert stamp is not None
    limiter.restamp(stamp)
    clock.now += 1.0
    wait, stamp = limiter.reserve()  # the old slot left the window ...
    assert wait == 0.0
    assert stamp is not None
    assert refused(limiter) == pytest.approx(1.0)  # ... and the new one, in flight, fills it


def test_a_slot_is_free_when_the_clock_reads_zero_and_when_a_gate_ends() -> None:
    clock = FakeClock(0.0)
    limiter = RateLimiter([(10, 1.0)], clock=clock, margin=0)
    assert limiter.reserve()[1] is not None
    limiter.defer(2.0)
    clock.now = 1.5
    assert refused(limiter) == pytest.approx(0.5)
    clock.now = 2.0  # the gate ends at 2.0: the slot is free then, not a moment later
    assert limiter.reserve()[1] is not None


def test_restamp_ends_the_slot_in_every_window() -> None:
    clock = FakeClock(0.0)
    limiter = RateLimiter([(1, 1.0), (2, 10.0)], clock=clock, margin=0)
    first = limiter.reserve()[1]
    assert first is not None
    clock.now = 1.5
    assert refused(limiter) == pytest.approx(1.0)  # in flight: counts however old
    clock.now = 5.0
    limiter.restamp(first)  # its answer came at 5.0: both windows count it from there
    assert refused(limiter) == pytest.approx(1.0)
    clock.now = 6.0
    second = limiter.reserve()[1]
    assert second is not None
    limiter.restamp(second)
    clock.now = 10.2
    assert refused(limiter) == pytest.approx(4.8)  # the 10 s window holds both answers
    clock.now = 15.0
    assert limiter.reserve()[1] is not None


def test_restamp_never_takes_a_second_slot() -> None:
    clock = FakeClock()
    limiter = RateLimiter([(2, 1.0)], clock=clock, margin=0)
    stamp = limiter.reserve()[1]
    assert stamp is not None
    clock.now += 0.5
    limiter.restamp(stamp)
    limiter.restamp(stamp - 5)  # an unknown stamp is ignored
    assert limiter.reserve()[1] is not None
    assert limiter.reserve()[1] is None


def test_note_gates_one_second_on_a_429_without_retry_after() -> None:
    clock = FakeClock()
    limiter = RateLimiter([(10, 1.0)], clock=clock, margin=0)
    limiter.note(rate_limited(None))
    assert refused(limiter) == pytest.approx(1.0)
    limiter.note(Outcome(OutcomeKind.AMBIGUOUS, status=502, retry_after=3.0))
    assert refused(limiter) == pytest.approx(3.0)
    clock.now += 3.0
    limiter.note(delivered())  # a plain answer gates nothing
    assert limiter.reserve()[1] is not None


# --- RateLimiter: blocking --------------------------------------------------------------
def test_acquire_gives_up_at_its_timeout() -> None:
    limiter = RateLimiter([(1, 60.0)])
    assert limiter.acquire(timeout=0.5)
    taken, waited = bounded(lambda: limiter.acquire(timeout=0.05))
    assert taken is False
    assert waited < 2.0
    stamp, waited = bounded(lambda: limiter.take(timeout=0))
    assert stamp is None
    assert waited < 2.0


def test_take_with_a_stop_event_still_takes_the_slot_when_it_frees() -> None:
    limiter = RateLimiter([(1, 0.2)], margin=0)
    stop = threading.Event()
    first = limiter.take(stop=stop)
    assert first is not None
    limiter.restamp(first)
    answered = time.monotonic()
    stamp, waited = bounded(lambda: limiter.take(stop=stop))
    assert stamp is not None
    assert time.monotonic() - answered >= 0.2 - 1e-6  # it waited for the slot to free ...
    assert waited < 2.0  # ... and no longer
    full = RateLimiter([(1, 60.0)])
    assert full.take(stop=stop) is not None
    stamp, waited = bounded(lambda: full.take(0.05, stop=stop))
    assert stamp is None  # and gives up at its timeout with a stop event
    assert waited < 2.0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # 3.12+: fork with threads
def test_a_forked_child_takes_slots_though_the_parent_held_the_lock() -> None:
    # The parent forks while another thread is inside reserve() (its clock blocks there),
    # so the child inherits a held lock; the fork hook must give the child a fresh one.
    holding, release = threading.Event(), threading.Event()

    def clock() -> float:
        if threading.current_thread().name == "holder":
            holding.set()
            release.wait(10)
        return time.monotonic()

    limiter = RateLimiter([(5, 1.0)], clock=clock)
    reset_after_fork(limiter)  # as its owners do
    holder = threading.Thread(target=limiter.reserve, name="holder", daemon=True)
    holder.start()
    try:
        assert holding.wait(5)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                code = 0 if limiter.reserve()[1] is not None else 2
            finally:
                os._exit(code)
        deadline = time.monotonic() + 5
        status = None
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.02)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the child deadlocked on the parent's lock")
        assert os.WIFEXITED(status)
        assert os.WEXITSTATUS(status) == 0
    finally:
        release.set()
        holder.join(5)
        forget(limiter)
