from __future__ import annotations

import threading

import pytest
from tests.senders import (
    RecordingSpill,
    ScriptedClient,
    delivered,
    rate_limited,
    rejected,
    timed_out,
    unavailable,
)

from gbtrack.senders import DeliveryClient, RateLimiter, RetryPolicy, Spill


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- RetryPolicy ---------------------------------------------------------------------------
def test_retry_policy_defaults() -> None:
    policy = RetryPolicy()
    assert (policy.max_attempts, policy.max_age, policy.base_delay, policy.max_delay) == (
        8,
        3600.0,
        0.5,
        60.0,
    )
    assert policy.retry_ambiguous is True


# RetryPolicy.decide is the one retry decision of every sender (the background sender,
# DirectSender and the outbox only call it): its rules are tested here, once.
@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (delivered(), "delivered"),
        (rejected(), "rejected"),
        (unavailable(), None),
        (rate_limited(), None),
        (timed_out(), None),
    ],
)
def test_decide_by_kind(outcome, expected) -> None:
    decision = RetryPolicy(base_delay=0.0).decide(outcome, 1, 0.0)
    assert decision.reason == expected
    assert decision.retry is (expected is None)
    # The older names are the same decision.
    assert RetryPolicy().give_up_reason(outcome, 1, 0.0) == expected
    assert RetryPolicy().should_retry(outcome, 1, 0.0) is (expected is None)


def test_ambiguous_not_retried_when_disabled() -> None:
    policy = RetryPolicy(retry_ambiguous=False)
    decision = policy.decide(timed_out(), 1, 0.0)
    assert decision.reason == "ambiguous"
    assert decision.message.startswith("delivery uncertain and retry_ambiguous is off")
    # Retryable outcomes are still retried: the request surely did not take effect.
    assert policy.decide(unavailable(), 1, 0.0).retry


def test_limits_attempts_and_age() -> None:
    policy = RetryPolicy(max_attempts=3, max_age=10.0)
    assert policy.decide(unavailable(), 2, 9.9).retry
    exhausted = policy.decide(unavailable(), 3, 0.0)
    assert exhausted.reason == "retries_exhausted"
    assert exhausted.message.startswith("3 attempt(s) failed, the last: HTTP 503, code 5003")
    expired = policy.decide(unavailable(), 1, 10.0)
    assert expired.reason == "expired"
    assert expired.message.startswith("older than max_age=10s")
    # Age is checked before attempts: an old event is "expired" even at its last attempt.
    assert policy.decide(unavailable(), 3, 10.0).reason == "expired"


def test_decision_delay_is_the_policys_backoff() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=5.0)
    delays = [policy.decide(unavailable(), 3, 0.0).delay for _ in range(200)]
    assert all(0.0 <= d <= 4.0 for d in delays)
    assert max(delays) > 2.0
    assert policy.decide(rate_limited(7.5), 1, 0.0).delay == 7.5
    assert policy.decide(rejected(), 1, 0.0).delay == 0.0  # giving up waits for nothing


def test_decision_message_has_no_gameball_text() -> None:
    # Gameball's free text may echo input: status, code, type and class only.
    message = RetryPolicy().decide(rejected(), 1, 0.0).message
    assert message == (
        "Gameball rejected the request: HTTP 422, code 3003, type VALIDATION_ERROR, "
        "PayloadError (permanent)"
    )
    assert "invalid" not in message


def test_delay_full_jitter_within_exponential_cap() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=5.0)
    for attempts, cap in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (40, 5.0), (10_000, 5.0)]:
        delays = [policy.delay(attempts) for _ in range(300)]
        assert all(0.0 <= d <= cap for d in delays)
        # Full jitter: spread over the whole range, not a fixed backoff.
        assert min(delays) < cap * 0.25
        assert max(delays) > cap * 0.75


def test_delay_honours_retry_after() -> None:
    policy = RetryPolicy(base_delay=0.01, max_delay=0.02)
    assert all(policy.delay(1, rate_limited(7.5)) == 7.5 for _ in range(50))
    assert policy.delay(1, rate_limited(None)) <= 0.02


def test_retry_policy_validates() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(max_age=0)


# --- RateLimiter ---------------------------------------------------------------------------
def test_rate_limiter_defaults_are_gameballs() -> None:
    assert RateLimiter().limits == ((100, 1.0), (1200, 30.0))


def test_sliding_window() -> None:
    clock = FakeClock()
    limiter = RateLimiter([(3, 1.0)], clock=clock, margin=0)
    assert [limiter.try_acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.try_acquire() == pytest.approx(1.0)
    clock.now += 0.4
    assert limiter.try_acquire() == pytest.approx(0.6)
    clock.now += 0.6
    assert limiter.try_acquire() == 0.0


def test_all_windows_apply() -> None:
    clock = FakeClock()
    limiter = RateLimiter([(2, 1.0), (3, 10.0)], clock=clock, margin=0)
    assert limiter.try_acquire() == 0.0
    assert limiter.try_acquire() == 0.0
    clock.now += 1.0
    assert limiter.try_acquire() == 0.0
    # The second window is full until the first acquisition is 10 s old.
    assert limiter.try_acquire() == pytest.approx(9.0)


def test_never_exceeds_limit_under_threads() -> None:
    clock = FakeClock()
    limiter = RateLimiter([(50, 1.0)], clock=clock)
    taken = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(100):
            if limiter.try_acquire() == 0.0:
                with lock:
                    taken.append(1)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(taken) == 50


def test_defer_gates_everything() -> None:
    clock = FakeClock()
    limiter = RateLimiter([(100, 1.0)], clock=clock)
    limiter.defer(5.0)
    assert limiter.try_acquire() == pytest.approx(5.0)
    limiter.defer(1.0)  # a shorter gate never shortens a longer one
    clock.now += 5.0
    assert limiter.try_acquire() == 0.0


def test_acquire_times_out() -> None:
    limiter = RateLimiter([(1, 60.0)])
    assert limiter.acquire(timeout=0.5)
    assert not limiter.acquire(timeout=0.01)


class CountingLimiter(RateLimiter):
    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.calls = 0

    def reserve(self):
        self.calls += 1
        return super().reserve()


def test_take_waits_without_spinning_and_gives_up_at_its_timeout() -> None:
    import time

    limiter = CountingLimiter([(1, 0.3)], margin=0)
    stamp = limiter.take()
    assert stamp is not None
    limiter.restamp(stamp)
    began = time.monotonic()
    assert limiter.take(timeout=0.1) is None  # gives up ...
    waited = time.monotonic() - began
    assert 0.09 <= waited < 0.25  # ... at its timeout, not at once nor much later
    assert limiter.calls <= 4  # slept on the window's wait, no busy loop
    assert limiter.take(timeout=1.0) is not None  # and takes the slot once it frees
    assert limiter.calls <= 8


def test_take_stops_on_the_stop_event() -> None:
    stop = threading.Event()
    limiter = RateLimiter([(1, 60.0)])
    assert limiter.take() is not None
    threading.Timer(0.05, stop.set).start()
    assert limiter.take(5.0, stop=stop) is None


def test_restamp_moves_the_slot_and_never_takes_a_second() -> None:
    clock = FakeClock()
    limiter = RateLimiter([(2, 1.0)], clock=clock, margin=0)
    stamp = limiter.take()
    assert stamp is not None
    clock.now += 0.5
    limiter.restamp(stamp)
    limiter.restamp(stamp)  # a second restamp of a moved slot changes nothing
    assert limiter.reserve()[1] is not None  # the second slot is still free ...
    assert limiter.reserve() == (pytest.approx(1.0), None)  # ... and then none


def test_rate_limiter_validates() -> None:
    with pytest.raises(ValueError):
        RateLimiter([(0, 1.0)])
    assert "100/1s" in repr(RateLimiter())


# --- protocols -----------------------------------------------------------------------------
def test_protocols_are_implemented_by_the_doubles_and_the_client() -> None:
    from gbtrack.gameball import GameballClient

    assert isinstance(ScriptedClient(), DeliveryClient)
    assert isinstance(RecordingSpill(), Spill)
    with GameballClient("k" * 8) as client:
        assert isinstance(client, DeliveryClient)


def test_margin_widens_every_window() -> None:
    clock = FakeClock()
    limiter = RateLimiter([(1, 1.0)], clock=clock, margin=0.25)
    assert limiter.try_acquire() == 0.0
    clock.now += 1.0
    assert limiter.try_acquire() == pytest.approx(0.25)
    clock.now += 0.25
    assert limiter.try_acquire() == 0.0
    with pytest.raises(ValueError):
        RateLimiter(margin=-1)


def test_a_slot_counts_while_in_flight_and_a_period_after_its_answer() -> None:
    clock = FakeClock()
    limiter = RateLimiter([(1, 1.0)], clock=clock, margin=0)
    wait, stamp = limiter.reserve()
    assert wait == 0.0
    assert stamp is not None
    # In flight, it counts however long: 5 s later the window is still full, for at
    # least a whole period (the earliest the slot can leave if answered now).
    clock.now += 5.0
    assert limiter.reserve() == (pytest.approx(1.0), None)
    clock.now += 0.5
    limiter.restamp(stamp)  # answered: the request arrived by now
    clock.now += 0.5
    assert limiter.reserve() == (pytest.approx(0.5), None)
    clock.now += 0.5
    assert limiter.reserve()[0] == 0.0
    limiter.restamp(12345.0)  # unknown stamps are ignored


def test_a_slot_without_an_answer_counts_hold_seconds_then_a_period() -> None:
    clock = FakeClock()
    limiter = RateLimiter([(1, 1.0)], clock=clock, margin=0, hold=10.0)
    stamp = limiter.reserve()[1]
    assert stamp is not None
    clock.now += 10.5  # held 10 s: answered then, it still counts 0.5 s
    assert limiter.reserve() == (pytest.approx(0.5), None)
    clock.now += 0.5
    assert limiter.reserve()[1] is not None
    limiter.restamp(stamp)  # the late answer of a slot already ended changes nothing
    with pytest.raises(ValueError, match="hold"):
        RateLimiter(hold=0)


def test_note_gates_on_429_and_retry_after_only() -> None:
    from gbtrack.gameball import Outcome, OutcomeKind

    clock = [0.0]
    limiter = RateLimiter(((1000, 1.0),), clock=lambda: clock[0])
    limiter.note(Outcome(OutcomeKind.RETRYABLE, status=503))  # no back-pressure asked
    assert limiter.try_acquire() == 0.0
    limiter.note(Outcome(OutcomeKind.RETRYABLE, status=429))  # 429 without Retry-After: 1 s
    assert limiter.try_acquire() == pytest.approx(1.0)
    clock[0] = 1.0
    limiter.note(Outcome(OutcomeKind.RETRYABLE, status=503, retry_after=7.0))
    assert limiter.try_acquire() == pytest.approx(7.0)


@pytest.mark.parametrize("limits", [[(5, 1.0), (10, 30.0)], [(10, 30.0), (5, 1.0)]])
def test_ages_are_the_longest_windows_answered_slots_and_those_in_flight(
    limits: list[tuple[int, float]],
) -> None:
    """What a RedisRateLimiter whose Redis is back takes over from its local fallback."""
    clock = FakeClock()
    start = clock.now
    limiter = RateLimiter(limits, clock=clock, margin=0.5)
    first = limiter.take(0)
    assert first is not None
    limiter.restamp(first)  # answered at start
    clock.now = start + 10
    second = limiter.take(0)
    assert second is not None
    limiter.restamp(second)  # answered at start + 10
    clock.now = start + 15
    assert limiter.take(0) is not None  # in flight: age 0
    clock.now = start + 20
    assert limiter.ages() == pytest.approx([20.0, 10.0, 0.0])
    clock.now = start + 30.4  # the first is still inside 30 s + margin
    assert limiter.ages() == pytest.approx([30.4, 20.4, 0.0])
    clock.now = start + 30.6  # ... and now it is not
    assert limiter.ages() == pytest.approx([20.6, 0.0])
