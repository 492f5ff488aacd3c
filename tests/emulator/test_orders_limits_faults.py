"""Separate rate buckets for events and orders, and faults that pick their resource."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gbtrack.emulator import DEFAULT_ORDER_RATE_LIMITS, DEFAULT_RATE_LIMITS, GameballEmulator

from .conftest import (
    BATCH,
    BATCH_ORDERS,
    KEYS,
    ORDERS_V40,
    ORDERS_V41,
    V40,
    V41,
    assert_envelope,
    order,
)

EVENT = {"customerId": "c", "events": {"e": {}}}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_gameballs_order_limits_are_on_by_default(gameball_emulator: GameballEmulator) -> None:
    assert (
        gameball_emulator.order_rate_limits == DEFAULT_ORDER_RATE_LIMITS == ((30, 1.0), (360, 30.0))
    )
    assert gameball_emulator.rate_limits == DEFAULT_RATE_LIMITS == ((100, 1.0), (1200, 30.0))
    stats = gameball_emulator.stats()
    assert stats["orderRateLimits"] == [[30, 1.0], [360, 30.0]]
    assert stats["rateLimits"] == [[100, 1.0], [1200, 30.0]]


def test_the_buckets_count_apart(gameball_emulator_factory: Any) -> None:
    # 30 s windows: each burst surely fits in one, however slow the machine.
    emulator: GameballEmulator = gameball_emulator_factory(
        rate_limits=[(3, 30.0)], order_rate_limits=[(2, 30.0)]
    )
    with httpx.Client(base_url=emulator.url, headers=KEYS) as http:
        orders = [http.post(ORDERS_V40, json=order(f"o-{n}")).status_code for n in range(2)]
        refused_order = http.post(ORDERS_V41, json=order("o-2"))
        refused_batch = http.post(BATCH_ORDERS, json={"body": [order("o-3")]})
        # The orders bucket is full; the events bucket has not been touched.
        events = [http.post(V40 if n % 2 else V41, json=EVENT).status_code for n in range(3)]
        refused_event = http.post(BATCH, json={"body": [EVENT]})
        # And a full events bucket leaves orders as they were: still refused, not more so.
        assert http.post(ORDERS_V40, json=order("o-4")).status_code == 429
    assert orders == [200, 200]
    assert_envelope(refused_order, 429, 429)
    assert_envelope(refused_batch, 429, 429)
    assert events == [200, 200, 200]
    assert_envelope(refused_event, 429, 429)
    assert [o.order_id for o in emulator.orders] == ["o-0", "o-1"]
    assert emulator.event_count == 3
    assert emulator.rate_limited_in("orders") == 3
    assert emulator.rate_limited_in("events") == 1
    assert emulator.rate_limited == 4
    assert emulator.stats()["rateLimitedByBucket"] == {"events": 1, "orders": 3}
    assert emulator.max_requests_in_window(30.0, admitted_only=True, bucket="orders") == 2
    assert emulator.max_requests_in_window(30.0, bucket="orders") == 5
    assert emulator.max_requests_in_window(30.0, admitted_only=True) == 3
    assert emulator.max_requests_in_window(30.0, bucket="events") == 4


def test_order_windows_slide_exactly_with_an_injected_clock(gameball_emulator_factory: Any) -> None:
    clock = FakeClock()
    emulator: GameballEmulator = gameball_emulator_factory(
        order_rate_limits=[(2, 1.0), (3, 10.0)],
        rate_limits=[(1, 1.0)],
        rate_limit_retry_after=True,
        clock=clock,
    )
    with httpx.Client(base_url=emulator.url, headers=KEYS) as http:
        ids = iter(range(100))

        def post() -> httpx.Response:
            return http.post(ORDERS_V40, json=order(f"w-{next(ids)}"))

        assert post().status_code == 200
        assert http.post(V40, json=EVENT).status_code == 200  # the events bucket: its own
        clock.now += 0.5
        assert post().status_code == 200
        assert http.post(V40, json=EVENT).status_code == 429  # events: 1 a second, apart
        clock.now += 0.4
        refused = post()  # 2 orders in the last second
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"  # 0.1 s, rounded up
        clock.now += 0.1  # the first order leaves the 1 s window exactly now
        assert post().status_code == 200
        clock.now += 2.0
        assert post().status_code == 429  # 3 orders in the last 10 s
        clock.now += 7.0  # the first order (t=0) left the 10 s window at t=10
        assert post().status_code == 200
    assert emulator.order_count == 4
    assert emulator.max_requests_in_window(1.0, admitted_only=True, bucket="orders") == 2
    assert emulator.max_requests_in_window(10.0, admitted_only=True, bucket="orders") == 3


def test_each_bucket_is_set_alone(
    gameball_emulator: GameballEmulator, client: httpx.Client
) -> None:
    gameball_emulator.set_rate_limits([(1, 60.0)], bucket="orders")
    assert gameball_emulator.order_rate_limits == ((1, 60.0),)
    assert gameball_emulator.rate_limits == DEFAULT_RATE_LIMITS
    gameball_emulator.set_rate_limits(None)  # the events bucket, as before orders existed
    assert gameball_emulator.rate_limits is None
    assert gameball_emulator.order_rate_limits == ((1, 60.0),)
    answer = client.post("/_emulator/rate-limits", json={"limits": [[5, 2]], "bucket": "orders"})
    assert answer.status_code == 200
    assert gameball_emulator.order_rate_limits == ((5, 2.0),)
    assert gameball_emulator.rate_limits is None
    client.post("/_emulator/rate-limits", json={"limits": None, "bucket": "orders"})
    assert gameball_emulator.order_rate_limits is None
    bad = client.post("/_emulator/rate-limits", json={"limits": None, "bucket": "customers"})
    assert_envelope(bad, 400, 3003)
    with pytest.raises(ValueError, match="bucket"):
        gameball_emulator.set_rate_limits(None, bucket="refunds")
    with pytest.raises(ValueError, match="limit >= 1"):
        gameball_emulator.set_rate_limits([(0, 1.0)], bucket="orders")
    assert gameball_emulator.order_rate_limits is None  # a refused change changes nothing


def test_reset_empties_both_buckets(gameball_emulator_factory: Any) -> None:
    emulator: GameballEmulator = gameball_emulator_factory(
        rate_limits=[(1, 60.0)], order_rate_limits=[(1, 60.0)]
    )
    with httpx.Client(base_url=emulator.url, headers=KEYS) as http:
        for _ in range(2):
            http.post(ORDERS_V40, json=order())
            http.post(V40, json=EVENT)
        assert emulator.rate_limited == 2
        emulator.reset()
        assert emulator.rate_limited == 0
        assert emulator.max_requests_in_window(60.0, bucket="orders") == 0
        assert http.post(ORDERS_V40, json=order()).status_code == 200
        assert http.post(V40, json=EVENT).status_code == 200
    assert emulator.order_rate_limits == ((1, 60.0),)


def test_faults_for_orders_skip_event_requests(
    gameball_emulator: GameballEmulator, client: httpx.Client
) -> None:
    faults = gameball_emulator.faults
    faults.fail_next(status=503, route="orders")
    faults.fail_next(status=500, route="events")
    assert client.post(V40, json=EVENT).status_code == 500  # skips the orders fault
    assert client.post(V40, json=EVENT).status_code == 200
    assert_envelope(client.post(ORDERS_V41, json=order()), 503, 5003)
    assert client.post(ORDERS_V41, json=order()).status_code == 200  # not processed before
    faults.fail_next(status=429)  # no route: the next request of any resource
    assert client.post(BATCH_ORDERS, json={"body": [order("x")]}).status_code == 429
    assert faults.pending == 0
    assert [f["endpoint"] for f in gameball_emulator.injected_faults] == [
        "v4.0/events",
        "v4.1/orders",
        "batch/orders",
    ]
    with pytest.raises(ValueError, match="bucket"):
        faults.fail_next(route="customers")


def test_an_order_answer_lost_after_processing_is_a_duplicate_when_resent(
    gameball_emulator: GameballEmulator, client: httpx.Client
) -> None:
    """The ambiguous case orders make safe: Gameball kept the order, the answer was lost."""
    gameball_emulator.faults.drop_next(when="after_processing", route="orders")
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(ORDERS_V40, json=order("AMB", totalPaid=10))
    resent = client.post(ORDERS_V40, json=order("AMB", totalPaid=10))
    assert_envelope(resent, 422, 9004)  # reject mode: the retry cannot award twice
    assert gameball_emulator.points == {"c-1": 10}
    assert gameball_emulator.requests == {("v4.0/orders", 0): 1, ("v4.0/orders", 422): 1}


@pytest.mark.parametrize("when", ["before_body", "after_body", "reset"])
def test_dropped_order_requests_are_not_processed(
    gameball_emulator: GameballEmulator, client: httpx.Client, when: str
) -> None:
    gameball_emulator.faults.drop_next(when=when, route="orders")  # type: ignore[arg-type]
    with pytest.raises(httpx.TransportError):
        client.post(ORDERS_V40, json=order())
    assert client.post(ORDERS_V40, json=order()).status_code == 200  # not a duplicate
    assert gameball_emulator.order_count == 1


def test_latency_applies_to_orders(gameball_emulator: GameballEmulator) -> None:
    gameball_emulator.faults.set_latency(2.0, count=1)
    with (
        httpx.Client(base_url=gameball_emulator.url, headers=KEYS, timeout=0.3) as http,
        pytest.raises(httpx.ReadTimeout),
    ):
        http.post(ORDERS_V40, json=order())
    assert gameball_emulator.wait_for_orders(1, timeout=5)  # processed before the wait


def test_route_faults_over_http(gameball_emulator: GameballEmulator, client: httpx.Client) -> None:
    armed = client.post("/_emulator/faults/fail", json={"status": 500, "route": "orders"})
    assert armed.status_code == 200
    dropped = client.post("/_emulator/faults/drop", json={"when": "reset", "route": "events"})
    assert dropped.status_code == 200
    queue = client.get("/_emulator/stats").json()["faults"]["queue"]
    assert [(q["fault"]["kind"], q["route"]) for q in queue] == [
        ("fail", "orders"),
        ("drop", "events"),
    ]
    assert_envelope(client.post(ORDERS_V40, json=order()), 500, 5000)
    with pytest.raises(httpx.ReadError):
        client.post(V40, json=EVENT)
    bad = client.post("/_emulator/faults/fail", json={"route": "refunds"})
    assert_envelope(bad, 400, 3003)
