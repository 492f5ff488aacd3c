"""BackgroundSender against the local Gameball emulator over real loopback HTTP."""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections import Counter
from collections.abc import Callable

import pytest
from tests.senders import API_KEY, SECRET_KEY

from gbtrack import Event, TrackingError
from gbtrack.emulator import GameballEmulator
from gbtrack.gameball import coalesce
from gbtrack.senders import BackgroundSender, RateLimiter, RetryPolicy

FAST = RetryPolicy(base_delay=0.01, max_delay=0.05)


@pytest.fixture
def make(emulator: GameballEmulator, make_sender: Callable[..., BackgroundSender]):
    """``make(**options)``: a sender to ``emulator``, per-event (no secret key) by default."""
    return functools.partial(make_sender, emulator, retry=FAST, flush_interval=0.05)


def ev(seq: int, customer: str | None = None, name: str = "purchase", **kw) -> Event:
    return Event(
        name=name, customer_id=customer or f"c-{seq}", metadata={"seq": seq, "amount": 1.5}, **kw
    )


def seqs(emulator: GameballEmulator) -> Counter[int]:
    return Counter(e.metadata["seq"] for e in emulator.events)


def test_delivery_and_coalescing(emulator, make) -> None:
    sender = make(flush_interval=60)
    events = [
        ev(0, "alice", "viewed"),
        ev(1, "alice", "purchase"),
        ev(2, "bob", "viewed"),
        ev(3, "alice", "viewed"),  # repeated name: a second request for alice
        ev(4, "carol", "viewed", email="carol@example.com", mobile="+201001234567"),
    ]
    for e in events:
        sender.send(e)
    assert sender.flush(10)
    assert seqs(emulator) == Counter(range(5))
    assert emulator.requests.get(("v4.0/events", 200)) == len(coalesce(events)) == 4
    got = {e.metadata["seq"]: e for e in emulator.events}
    assert got[4].email == "carol@example.com"
    assert got[4].mobile == "+201001234567"
    assert got[0].name == "viewed"
    assert got[0].customer_id == "alice"
    assert got[0].metadata == {"seq": 0, "amount": 1.5}
    assert sender.stats().delivered == 5


def test_retries_under_503_429_and_dropped_connections_lose_nothing(emulator, make) -> None:
    emulator.faults.fail_next(3, status=503)
    emulator.faults.fail_next(2, status=429)
    emulator.faults.fail_next(2, status=422, code=2001)
    emulator.faults.drop_next(2, when="before_body")
    emulator.faults.drop_next(2, when="after_body")
    sender = make(concurrency=4)
    for i in range(30):
        sender.send(ev(i))
    assert sender.flush(30)
    # Every event exactly once: the faults processed nothing, and every retry went through.
    assert seqs(emulator) == Counter(range(30))
    stats = sender.stats()
    assert stats.delivered == 30
    assert stats.total_dropped == 0
    assert stats.retried >= 11


def test_permanent_errors_not_retried_and_reported(emulator, make, caplog) -> None:
    errors: list[TrackingError] = []
    emulator.faults.fail_next(1, status=400, code=3000)
    sender = make(on_error=errors.append, concurrency=1)
    bad = ev(0)
    sender.send(bad)
    assert not sender.flush(10)  # settled, but an event was dropped (defect 5)
    sender.send(ev(1))
    assert sender.flush(10)
    assert seqs(emulator) == Counter([1])
    assert sum(n for (ep, _), n in emulator.requests.items() if ep == "v4.0/events") == 2
    assert [(e.reason, e.event) for e in errors] == [("rejected", bad)]
    assert "400" in str(errors[0])
    assert "3000" in str(errors[0])

    # A wrong key (401 / 1000) stops sending and keeps the events (issue 9, defect 6):
    # flush() says they were not delivered; close() counts them.
    wrong = make(api_key="not-the-key", on_error=errors.append)
    wrong.send(ev(2))
    assert not wrong.flush(10)
    assert wrong.stats().dropped == {}
    assert "1000" in (wrong.stats().last_error or "")
    assert not wrong.close(0)
    assert wrong.stats().dropped == {"closed": 1}


@pytest.mark.slow
def test_rate_limiter_never_exceeds_its_limit(emulator, make) -> None:
    emulator.set_rate_limits([(10, 1.0)])
    sender = make(rate_limiter=RateLimiter([(10, 1.0)]), concurrency=8)
    for i in range(35):
        sender.send(ev(i))
    assert sender.flush(30)
    assert seqs(emulator) == Counter(range(35))
    assert emulator.rate_limited == 0
    assert emulator.max_requests_in_window(1.0) <= 10


def test_429_storm_is_absorbed(emulator, make) -> None:
    # The emulator is stricter than our limiter: its 429s defer the limiter, and
    # everything still arrives once.
    emulator.set_rate_limits([(5, 1.0)])
    sender = make(rate_limiter=RateLimiter([(50, 1.0)]), retry=RetryPolicy(base_delay=0.05))
    for i in range(12):
        sender.send(ev(i))
    assert sender.flush(60)
    assert seqs(emulator) == Counter(range(12))
    assert sender.stats().total_dropped == 0


def test_close_delivers_everything_queued(emulator, make) -> None:
    sender = make(flush_interval=60)
    for i in range(200):
        sender.send(ev(i, f"c-{i % 20}", name=f"e{i // 20}"))
    assert sender.close(timeout=30)
    assert seqs(emulator) == Counter(range(200))
    sender.send(ev(999))
    assert sender.stats().dropped == {"closed": 1}


def test_long_outage_bounded_memory_and_counted_drops(emulator, make) -> None:
    emulator.faults.fail_next(1_000_000, status=503)
    sender = make(
        max_queue_size=100,
        retry=RetryPolicy(max_attempts=10_000, base_delay=0.01, max_delay=0.05),
        concurrency=4,
        rate_limiter=RateLimiter([(1000, 1.0)]),
    )
    peak = 0
    for i in range(1000):
        sender.send(ev(i))
        stats = sender.stats()
        peak = max(peak, stats.in_queue + stats.in_flight)
    assert peak <= 100
    assert sender.stats().dropped == {"queue_overflow": 900}
    assert sender.flush(0.2) is False  # Gameball is still down
    emulator.faults.clear()
    assert sender.flush(30)
    stats = sender.stats()
    assert stats.delivered == 100
    assert stats.dropped == {"queue_overflow": 900}
    assert seqs(emulator) == Counter(range(100))


def test_bulk_mode_with_item_errors(emulator, make) -> None:
    emulator.faults.fail_batch_items(customer_ids=["c-7"], code=3003)
    emulator.faults.fail_batch_items(next_items=3, code=5003)
    errors: list[TrackingError] = []
    sender = make(
        secret_key=SECRET_KEY, bulk_threshold=50, flush_interval=60, on_error=errors.append
    )
    for i in range(400):
        sender.send(ev(i))
    assert not sender.flush(30)  # settled, but an event was dropped (defect 5)
    received = seqs(emulator)
    assert received == Counter(i for i in range(400) if i != 7)
    versions = Counter(e.version for e in emulator.events)
    assert versions["batch"] > 0
    assert [(e.reason, e.event.customer_id if e.event else None) for e in errors] == [
        ("rejected", "c-7")
    ]
    stats = sender.stats()
    assert stats.delivered == 399
    assert stats.retried >= 3


def test_bulk_returns_to_per_request_when_backlog_is_small(emulator, make) -> None:
    sender = make(secret_key=SECRET_KEY, bulk_threshold=50, flush_interval=60)
    for i in range(5):
        sender.send(ev(i))
    assert sender.flush(10)
    assert Counter(e.version for e in emulator.events) == Counter({"v4.1": 5})  # secret key


def test_thread_and_asyncio_producers_at_once(emulator, make) -> None:
    sender = make()

    def produce(k: int) -> None:
        for i in range(50):
            sender.send(ev(k * 1000 + i, f"t{k}-{i % 5}", name=f"e{i}"))

    async def aproduce() -> None:
        for i in range(50):
            sender.send(ev(9000 + i, f"a-{i % 5}", name=f"e{i}"))
            await asyncio.sleep(0)
        assert await sender.aflush(30)

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    asyncio.run(aproduce())
    for t in threads:
        t.join()
    assert sender.flush(30)
    expected = Counter(
        [k * 1000 + i for k in range(3) for i in range(50)] + [9000 + i for i in range(50)]
    )
    assert seqs(emulator) == expected


def test_v41_secure_mode_and_session_token_routing(emulator, make) -> None:
    # v4.0 only when explicitly asked for (secure=False); a session token still routes to v4.1.
    plain = make(secret_key=SECRET_KEY, secure=False)
    plain.send(ev(0))
    plain.send(ev(1, session_token="customer-session-token-xyz"))
    assert plain.flush(10)
    by_seq = {e.metadata["seq"]: e for e in emulator.events}
    assert (by_seq[0].version, by_seq[0].has_session_token) == ("v4.0", False)
    assert (by_seq[1].version, by_seq[1].has_session_token) == ("v4.1", True)

    secure = make(secret_key=SECRET_KEY, secure=True)
    secure.send(ev(2))
    assert secure.flush(10)
    assert {e.metadata["seq"]: e for e in emulator.events}[2].version == "v4.1"

    default = make(secret_key=SECRET_KEY)  # a secret key alone: v4.1 (issue 9, defect 14)
    default.send(ev(3))
    assert default.flush(10)
    assert {e.metadata["seq"]: e for e in emulator.events}[3].version == "v4.1"


def test_keys_tokens_and_pii_absent_from_logs(emulator, make, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[TrackingError] = []
    emulator.faults.fail_next(1, status=503)
    emulator.faults.fail_next(1, status=400, code=3000)
    sender = make(secret_key=SECRET_KEY, on_error=errors.append, concurrency=1)
    token = "session-TOKEN-7777-secret"
    for i in range(3):
        sender.send(
            ev(i, email="john.doe@example.com", mobile="+201009998877", session_token=token)
        )
    assert not sender.flush(10)  # settled, but an event was dropped (defect 5)
    broken = make(api_key="wrong-KEY-31337", secret_key=SECRET_KEY, on_error=errors.append)
    broken.send(ev(9, email="john.doe@example.com"))
    assert not broken.flush(10)  # settled, but an event was dropped (defect 5)
    assert errors, "some failures were reported"
    text = caplog.text + "".join(repr(e) + str(e) for e in errors)
    text += repr(sender) + repr(sender.stats()) + repr(broken.stats())
    for secret in (
        API_KEY,
        SECRET_KEY,
        token,
        "wrong-KEY-31337",
        "john.doe@example.com",
        "9998877",
    ):
        assert secret not in text


def test_atexit_flush_delivers_what_a_script_left_queued(emulator) -> None:
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        f"""
        from gbtrack import Event
        from gbtrack.senders import BackgroundSender

        sender = BackgroundSender(
            api_key={API_KEY!r}, base_url={emulator.url!r}, flush_interval=60
        )
        for i in range(10):
            sender.send(Event(name="exit", customer_id=f"c-{{i}}", metadata={{"seq": i}}))
        # No flush, no close: the atexit hook must deliver them.
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert emulator.wait_for_events(10, timeout=10)
    assert seqs(emulator) == Counter(range(10))


def test_tracker_emit_through_background_sender(emulator, make) -> None:
    from gbtrack import Tracker, identify

    tracker = Tracker(make(flush_interval=60))
    with identify(customer_id="cust-1", email="ann@example.com"):
        tracker.emit("signed_up", metadata={"seq": 1, "plan": "gold"})
        tracker.emit("logged_in", metadata={"seq": 2})
    assert tracker.flush(10)
    got = sorted((e.name, e.customer_id, e.email, e.metadata["seq"]) for e in emulator.events)
    assert got == [
        ("logged_in", "cust-1", "ann@example.com", 2),
        ("signed_up", "cust-1", "ann@example.com", 1),
    ]
    # Both events of one customer went in one request.
    assert emulator.requests.get(("v4.0/events", 200)) == 1
    stats = tracker.stats
    assert stats.sent == 2
    assert stats.delivered == 2
