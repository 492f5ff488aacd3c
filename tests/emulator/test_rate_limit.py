"""Rate limits: exact sliding windows over event and batch-create requests."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gbtrack.emulator import DEFAULT_RATE_LIMITS, GameballEmulator

from .conftest import BATCH, KEYS, V40, V41, assert_envelope, batch_path

EVENT = {"customerId": "c", "events": {"e": {}}}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_gameball_limits_are_on_by_default(gameball_emulator: GameballEmulator) -> None:
    assert gameball_emulator.rate_limits == DEFAULT_RATE_LIMITS == ((100, 1.0), (1200, 30.0))


def test_a_burst_past_the_limit_gets_429_and_admits_exactly_the_limit(
    gameball_emulator_factory: Any,
) -> None:
    # A 30 s window: the burst surely fits in it, however slow the machine.
    emulator: GameballEmulator = gameball_emulator_factory(rate_limits=[(5, 30.0)])
    with httpx.Client(base_url=emulator.url, headers=KEYS) as http:
        statuses = [http.post(V40 if i % 2 else V41, json=EVENT).status_code for i in range(12)]
        limited = http.post(BATCH, json={"body": [EVENT]})
    assert statuses == [200] * 5 + [429] * 7
    body = assert_envelope(limited, 429, 429)
    assert body["type"] == "RATE_LIMIT_ERROR"
    assert "retry-after" not in limited.headers
    assert emulator.event_count == 5
    assert emulator.rate_limited == 8
    assert emulator.max_requests_in_window(30.0, admitted_only=True) == 5
    assert emulator.max_requests_in_window(30.0) == 13


def test_per_second_window_never_admits_more_than_the_limit(gameball_emulator_factory: Any) -> None:
    emulator: GameballEmulator = gameball_emulator_factory(rate_limits=[(5, 1.0)])
    with httpx.Client(base_url=emulator.url, headers=KEYS) as http:
        statuses = [http.post(V40, json=EVENT).status_code for _ in range(25)]
    assert statuses.count(200) >= 5
    assert emulator.max_requests_in_window(1.0, admitted_only=True) <= 5
    assert emulator.max_requests_in_window(1.0) >= emulator.max_requests_in_window(
        1.0, admitted_only=True
    )
    assert statuses.count(429) == emulator.rate_limited


def test_windows_slide_exactly_with_an_injected_clock(gameball_emulator_factory: Any) -> None:
    clock = FakeClock()
    emulator: GameballEmulator = gameball_emulator_factory(
        rate_limits=[(2, 1.0), (3, 10.0)], rate_limit_retry_after=True, clock=clock
    )
    with httpx.Client(base_url=emulator.url, headers=KEYS) as http:

        def post() -> httpx.Response:
            return http.post(V40, json=EVENT)

        assert post().status_code == 200
        clock.now += 0.5
        assert post().status_code == 200
        clock.now += 0.4
        refused = post()  # 2 in the last second
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"  # 0.1 s, rounded up
        clock.now += 0.1  # the first request leaves the 1 s window exactly now
        assert post().status_code == 200
        clock.now += 2.0
        refused = post()  # 3 in the last 10 s
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "7"  # the first leaves the 10 s window in 7 s
        clock.now = 1010.0
        assert post().status_code == 200
    assert emulator.max_requests_in_window(1.0, admitted_only=True) == 2
    assert emulator.max_requests_in_window(10.0, admitted_only=True) == 3
    assert emulator.max_requests_in_window(1.0) == 3


def test_status_and_stop_are_not_rate_limited(gameball_emulator_factory: Any) -> None:
    emulator: GameballEmulator = gameball_emulator_factory(rate_limits=[(1, 60.0)])
    with httpx.Client(base_url=emulator.url, headers=KEYS) as http:
        job_id = http.post(BATCH, json={"body": [EVENT]}).json()["jobId"]
        for _ in range(5):
            assert http.get(batch_path(job_id, "status")).status_code == 200
        assert http.post(batch_path(job_id, "stop")).status_code == 200
        assert http.post(V40, json=EVENT).status_code == 429


def test_auth_failures_do_not_use_the_limit(gameball_emulator_factory: Any) -> None:
    emulator: GameballEmulator = gameball_emulator_factory(rate_limits=[(1, 60.0)])
    with httpx.Client(base_url=emulator.url) as http:
        for _ in range(3):
            assert http.post(V40, json=EVENT).status_code == 401
        assert http.post(V40, json=EVENT, headers=KEYS).status_code == 200


def test_limits_toggle_at_run_time(gameball_emulator_factory: Any) -> None:
    emulator: GameballEmulator = gameball_emulator_factory(rate_limits=[(1, 60.0)])
    with httpx.Client(base_url=emulator.url, headers=KEYS) as http:
        assert http.post(V40, json=EVENT).status_code == 200
        assert http.post(V40, json=EVENT).status_code == 429
        emulator.set_rate_limits(None)
        assert emulator.rate_limits is None
        assert [http.post(V40, json=EVENT).status_code for _ in range(5)] == [200] * 5
        emulator.set_rate_limits([(2, 60.0)])  # fresh windows
        assert [http.post(V40, json=EVENT).status_code for _ in range(3)] == [200, 200, 429]


@pytest.mark.parametrize("limits", [[(0, 1.0)], [(1, 0.0)], [(1, -1.0)]])
def test_invalid_limits_are_refused(limits: list[tuple[int, float]]) -> None:
    with pytest.raises(ValueError, match="rate limit"):
        GameballEmulator(rate_limits=limits)


def test_concurrent_clients_never_exceed_the_limit(gameball_emulator_factory: Any) -> None:
    import threading

    emulator: GameballEmulator = gameball_emulator_factory(rate_limits=[(7, 30.0)])
    statuses: list[int] = []
    lock = threading.Lock()

    def hammer() -> None:
        with httpx.Client(base_url=emulator.url, headers=KEYS) as http:
            for _ in range(5):
                status = http.post(V40, json=EVENT).status_code
                with lock:
                    statuses.append(status)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] * 7 + [429] * 13
    assert emulator.event_count == 7


def test_windows_count_arrivals_whatever_order_their_checks_run_in(
    gameball_emulator_factory: Any,
) -> None:
    # A request that arrived first but whose body came late is checked last: the windows
    # must count it at its arrival, against arrivals on both sides of it.
    import json
    import socket
    import time

    clock = FakeClock()
    emulator: GameballEmulator = gameball_emulator_factory(rate_limits=[(2, 1.0)], clock=clock)
    body = json.dumps(EVENT).encode()
    head = (
        f"POST {V40} HTTP/1.1\r\nHost: x\r\nAPIKey: {KEYS['APIKey']}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()

    def arrivals_seen(count: int) -> None:
        deadline = time.monotonic() + 10
        while emulator.max_requests_in_window(100.0) < count:
            assert time.monotonic() < deadline
            time.sleep(0.005)

    with httpx.Client(base_url=emulator.url, headers=KEYS) as http:
        assert http.post(V40, json=EVENT).status_code == 200  # arrives at 1000.0
        clock.now = 1000.5
        with socket.create_connection((emulator.host, emulator.port), timeout=10) as slow:
            slow.sendall(head)  # arrives at 1000.5; its body is still to come
            arrivals_seen(2)
            clock.now = 1000.9
            # 2 in the last second, counted from 1000.9 back: admitted.
            assert http.post(V40, json=EVENT).status_code == 200
            clock.now = 1001.2
            slow.sendall(body)  # checked now, but it arrived between the other two
            answer = slow.recv(65536).split(b"\r\n", 1)[0]
    assert answer == b"HTTP/1.1 429 Too Many Requests"
    assert emulator.max_requests_in_window(1.0, admitted_only=True) == 2
