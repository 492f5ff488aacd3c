"""GameballClient and AsyncGameballClient send orders and batch order jobs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from gbtrack import ConfigurationError
from gbtrack.emulator import GameballEmulator
from gbtrack.gameball import AsyncGameballClient, GameballClient, OutcomeKind

API_KEY = "gb-api-KEY-4242-abcdef"
SECRET_KEY = "gb-secret-KEY-4242-ghijkl"


def body(order_id: str, customer: str = "c-1", paid: float = 100) -> dict[str, object]:
    return {
        "customerId": customer,
        "orderId": order_id,
        "orderDate": "2024-10-16T08:13:29.290Z",
        "totalPaid": paid,
    }


@pytest.fixture
def emulator() -> Iterator[GameballEmulator]:
    emu = GameballEmulator(api_key=API_KEY, secret_key=SECRET_KEY, batch_delay=0.0).start()
    try:
        yield emu
    finally:
        emu.stop()


def test_send_order_returns_the_parsed_answer(emulator: GameballEmulator) -> None:
    with GameballClient(API_KEY, secret_key=SECRET_KEY, base_url=emulator.url) as client:
        outcome = client.send_order(body("O-1", paid=42.9))
    assert outcome.delivered
    assert outcome.status == 200
    assert outcome.result is not None
    assert outcome.result["rewardedPoints"] == 42
    assert outcome.result["customerId"] == "c-1"
    [record] = [r for r in emulator.request_log if r.endpoint.endswith("orders")]
    assert record.endpoint == "v4.1/orders"
    assert record.has_api_key
    assert record.has_secret_key


def test_send_order_paths_keys_and_session_token(emulator: GameballEmulator) -> None:
    with GameballClient(
        API_KEY, secret_key=SECRET_KEY, base_url=emulator.url, secure=False
    ) as client:
        assert client.send_order(body("O-1")).delivered
        assert client.send_order(body("O-2"), session_token="tok-1").delivered
        duplicate = client.send_order(body("O-1"))
    log = [r for r in emulator.request_log if r.endpoint.endswith("orders")]
    assert [r.endpoint for r in log] == ["v4.0/orders", "v4.1/orders", "v4.0/orders"]
    assert all(r.has_secret_key for r in log)  # both keys, on v4.0 too
    assert [r.has_session_token for r in log] == [False, True, False]
    assert duplicate.permanent
    assert duplicate.error is not None
    assert duplicate.error.code == 9004
    assert duplicate.result is None


def test_send_order_without_a_secret_key_is_a_configuration_error() -> None:
    with GameballClient(API_KEY, base_url="http://127.0.0.1:9") as client:
        with pytest.raises(ConfigurationError, match="secret_key"):
            client.send_order(body("O-1"))
        with pytest.raises(ConfigurationError, match="secret_key"):
            client.create_order_batch([body("O-1")])


def test_batch_orders_create_a_job_that_is_polled_like_events(emulator: GameballEmulator) -> None:
    with GameballClient(API_KEY, secret_key=SECRET_KEY, base_url=emulator.url) as client:
        created = client.create_order_batch([body(f"B-{n}", f"c-{n}", 10) for n in range(3)])
        assert created.delivered
        assert created.job_id is not None
        deadline = time.monotonic() + 10
        while True:
            status = client.batch_status(created.job_id).batch_status
            assert status is not None
            if status.done or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        with pytest.raises(ValueError, match="at most 1000"):
            client.create_order_batch([body(f"X-{n}") for n in range(1001)])
        with pytest.raises(ValueError, match="at least one"):
            client.create_order_batch([])
    assert status.done
    assert sorted(o.order_id for o in emulator.orders) == ["B-0", "B-1", "B-2"]
    assert {o.version for o in emulator.orders} == {"batch"}
    assert emulator.points == {"c-0": 10, "c-1": 10, "c-2": 10}


def test_the_async_client_mirrors_orders(emulator: GameballEmulator) -> None:
    async def main() -> tuple[object, object]:
        async with AsyncGameballClient(
            API_KEY, secret_key=SECRET_KEY, base_url=emulator.url
        ) as client:
            sent = await client.send_order(body("A-1", paid=7))
            created = await client.create_order_batch([body("A-2", "c-2")])
            return sent, created

    sent, created = asyncio.run(main())
    assert sent.kind is OutcomeKind.DELIVERED  # type: ignore[attr-defined]
    assert sent.result["rewardedPoints"] == 7  # type: ignore[attr-defined]
    assert created.job_id is not None  # type: ignore[attr-defined]
