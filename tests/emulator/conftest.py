"""Fixtures for the emulator tests: the plugin's fixtures and an httpx client per test."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from gbtrack.emulator import GameballEmulator, pytest_plugin

# Until the gbtrack_emulator entry point is installed, take the fixtures from the plugin
# module itself; once it is, these definitions simply shadow the plugin's identical ones.
gameball_emulator = pytest_plugin.gameball_emulator
gameball_emulator_factory = pytest_plugin.gameball_emulator_factory

API_KEY = "test-api-key"
SECRET_KEY = "test-secret-key"
KEYS = {"APIKey": API_KEY, "SecretKey": SECRET_KEY}
V40 = "/api/v4.0/integrations/events"
V41 = "/api/v4.1/integrations/events"
BATCH = "/api/v4.0/integrations/batch/events"
ORDERS_V40 = "/api/v4.0/integrations/orders"
ORDERS_V41 = "/api/v4.1/integrations/orders"
BATCH_ORDERS = "/api/v4.0/integrations/batch/orders"


def order(order_id: str = "ORD-1", customer_id: str = "c-1", **fields: object) -> dict[str, object]:
    """A minimal valid order body (the four required fields), with ``fields`` added."""
    return {
        "customerId": customer_id,
        "orderId": order_id,
        "orderDate": "2024-10-16T08:13:29.290Z",
        "totalPaid": 100,
        **fields,
    }


def batch_path(job_id: object, action: str) -> str:
    return f"/api/v4.0/integrations/batches/{job_id}/{action}"


@pytest.fixture
def client(gameball_emulator: GameballEmulator) -> Iterator[httpx.Client]:
    """A keep-alive httpx client on the emulator, sending both keys."""
    with httpx.Client(base_url=gameball_emulator.url, headers=KEYS, timeout=10.0) as http:
        yield http


@pytest.fixture
def bare(gameball_emulator: GameballEmulator) -> Iterator[httpx.Client]:
    """An httpx client on the emulator sending no keys."""
    with httpx.Client(base_url=gameball_emulator.url, timeout=10.0) as http:
        yield http


def assert_envelope(response: httpx.Response, status: int, code: int) -> dict[str, object]:
    """Check an error answer: status, and the v4 envelope with this code."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "type", "message", "documentationUrl", "requestId"}
    assert body["code"] == code
    assert isinstance(body["type"], str)
    assert body["type"]
    assert isinstance(body["message"], str)
    assert body["message"]
    assert body["requestId"] == response.headers["x-request-id"]
    return body
