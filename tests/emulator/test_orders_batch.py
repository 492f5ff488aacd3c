"""Batch orders: both keys, per-item errors and duplicates, job polling, stop, item faults."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from gbtrack.emulator import MAX_BATCH_ITEMS, GameballEmulator

from .conftest import (
    API_KEY,
    BATCH,
    BATCH_ORDERS,
    KEYS,
    ORDERS_V40,
    assert_envelope,
    batch_path,
    order,
)


def create(client: httpx.Client, items: list[Any]) -> int:
    response = client.post(BATCH_ORDERS, json={"body": items})
    assert response.status_code == 200, response.text
    job_id = response.json()["jobId"]
    assert isinstance(job_id, int)
    return job_id


def poll(client: httpx.Client, job_id: int, timeout: float = 10.0) -> dict[str, Any]:
    """Poll the status endpoint, as a client does, until the job is no longer pending."""
    deadline = time.monotonic() + timeout
    while True:
        status: dict[str, Any] = client.get(batch_path(job_id, "status")).json()
        if status["status"] not in ("pending", "processing") or time.monotonic() > deadline:
            return status
        time.sleep(0.02)


def test_a_batch_records_valid_orders_and_reports_the_others(
    gameball_emulator: GameballEmulator, client: httpx.Client
) -> None:
    client.post(ORDERS_V40, json=order("SEEN", totalPaid=1))
    items = [
        order("B-0", "c-0", totalPaid=20.5),
        order("B-1", "c-1", totalPaid="20"),  # a wrong type
        {"orderId": "B-2", "orderDate": "2024-10-16T08:13:29Z", "totalPaid": 1},  # no customer
        order("SEEN", "c-3"),  # tracked before
        order("B-0", "c-4"),  # a duplicate of an earlier item of this batch
        "not an order",
        order("B-6", "c-6", totalPaid=3, lineItems=[{"productId": "p", "price": 3}]),
        order("B-7", "c-7", orderDate=None),
    ]
    job_id = create(client, items)
    status = poll(client, job_id)
    assert status["status"] == "completed"
    assert (status["totalItems"], status["processedItems"], status["failedItems"]) == (8, 8, 6)
    assert [
        (e["index"], e["customerId"], e.get("orderId"), e["code"]) for e in status["errors"]
    ] == [
        (1, "c-1", "B-1", 3003),
        (2, None, "B-2", 2000),
        (3, "c-3", "SEEN", 9004),
        (4, "c-4", "B-0", 9004),
        (5, None, None, 3003),
        (7, "c-7", "B-7", 3001),
    ]
    assert all(isinstance(e["message"], str) and e["message"] for e in status["errors"])
    assert status["results"] == [
        {
            "index": 0,
            "customerId": "c-0",
            "orderId": "B-0",
            "rewardedPoints": 20,
            "status": "processed",
        },
        {
            "index": 6,
            "customerId": "c-6",
            "orderId": "B-6",
            "rewardedPoints": 3,
            "status": "processed",
        },
    ]
    batched = gameball_emulator.orders[1:]
    assert [(o.order_id, o.version, o.batch_job_id, o.batch_index) for o in batched] == [
        ("B-0", "batch", job_id, 0),
        ("B-6", "batch", job_id, 6),
    ]
    assert batched[1].body == items[6]
    assert gameball_emulator.points == {"c-1": 1, "c-0": 20, "c-6": 3}
    fired = gameball_emulator.system_events[1:]
    assert [(e.customer_id, e.version, e.batch_job_id) for e in fired] == [
        ("c-0", "batch", job_id),
        ("c-6", "batch", job_id),
    ]
    assert gameball_emulator.events == []
    assert gameball_emulator.requests == {
        ("v4.0/orders", 200): 1,
        ("batch/orders", 200): 1,
        ("batch/status", 200): 1,
    }


def test_accepting_duplicates_awards_batch_items_again(gameball_emulator_factory: Any) -> None:
    emulator: GameballEmulator = gameball_emulator_factory(duplicate_orders="accept")
    with httpx.Client(base_url=emulator.url, headers=KEYS) as http:
        job_id = create(http, [order("D", totalPaid=5)] * 3)
        status = poll(http, job_id)
    assert (status["failedItems"], len(status["results"])) == (0, 3)
    assert [o.duplicate for o in emulator.orders] == [False, True, True]
    assert emulator.points == {"c-1": 15}


def test_delayed_jobs_are_polled_until_completed(gameball_emulator_factory: Any) -> None:
    emulator: GameballEmulator = gameball_emulator_factory(batch_delay=0.2)
    with httpx.Client(base_url=emulator.url, headers=KEYS) as http:
        job_id = create(http, [order(f"P-{n}", f"c-{n}") for n in range(3)])
        first = http.get(batch_path(job_id, "status")).json()
        assert first["status"] == "pending"  # 0.2 s is far longer than one answer takes
        assert (first["processedItems"], first["progress"]) == (0, 0.0)
        assert emulator.orders == []
        status = poll(http, job_id)
    assert status["status"] == "completed"
    assert (status["processedItems"], status["failedItems"], status["progress"]) == (3, 0, 100.0)
    assert emulator.wait_for_orders(3, timeout=5)
    assert sorted(o.order_id for o in emulator.orders) == ["P-0", "P-1", "P-2"]


def test_events_and_orders_jobs_share_the_status_endpoint(
    gameball_emulator_factory: Any,
) -> None:
    emulator: GameballEmulator = gameball_emulator_factory(batch_delay=600.0)
    with httpx.Client(base_url=emulator.url, headers=KEYS) as http:
        events_job = http.post(BATCH, json={"body": [{"customerId": "c", "events": {"e": {}}}]})
        orders_job = create(http, [order("J-1"), order("J-2")])
        assert orders_job == events_job.json()["jobId"] + 1  # one id space
        assert emulator.run_pending_batches() == 2
        assert http.get(batch_path(orders_job, "status")).json()["status"] == "completed"
    assert emulator.event_count == 1
    assert [o.order_id for o in emulator.orders] == ["J-1", "J-2"]


def test_stopping_a_pending_order_job_records_nothing(gameball_emulator_factory: Any) -> None:
    emulator: GameballEmulator = gameball_emulator_factory(batch_delay=600.0)
    with httpx.Client(base_url=emulator.url, headers=KEYS) as http:
        job_id = create(http, [order("S-1"), order("S-2")])
        stopped = http.post(batch_path(job_id, "stop")).json()
        status = http.get(batch_path(job_id, "status")).json()
        assert stopped == {
            "batchId": str(job_id),
            "status": "stopped",
            "message": "Batch job stopped",
        }
        # The ids were never used: the same orders go through afterwards.
        assert http.post(ORDERS_V40, json=order("S-1")).status_code == 200
    assert status["status"] == "failed"
    assert [(e["index"], e["code"]) for e in status["errors"]] == [(0, 5003), (1, 5003)]
    assert [o.order_id for o in emulator.orders] == ["S-1"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 400, 3000),
        ({"body": None}, 422, 3001),
        ({"body": []}, 422, 3003),
        ({"body": order()}, 422, 3003),
        ({"body": [order(f"o-{n}") for n in range(MAX_BATCH_ITEMS + 1)]}, 422, 3011),
    ],
)
def test_a_bad_batch_body_is_refused(
    gameball_emulator: GameballEmulator,
    client: httpx.Client,
    body: dict[str, Any],
    status: int,
    code: int,
) -> None:
    assert_envelope(client.post(BATCH_ORDERS, json=body), status, code)
    assert gameball_emulator.orders == []


def test_a_thousand_orders_fit_in_one_batch(
    gameball_emulator: GameballEmulator, client: httpx.Client
) -> None:
    job_id = create(client, [order(f"K-{n}", f"c-{n % 7}", totalPaid=n) for n in range(1000)])
    status = poll(client, job_id)
    assert (status["processedItems"], status["failedItems"]) == (1000, 0)
    assert gameball_emulator.order_count == 1000
    assert sum(gameball_emulator.points.values()) == sum(range(1000))


@pytest.mark.parametrize(
    ("headers", "code"), [({"APIKey": API_KEY}, 1001), ({"APIKey": "x", "SecretKey": "y"}, 1000)]
)
def test_batch_orders_need_both_keys(
    gameball_emulator: GameballEmulator, bare: httpx.Client, headers: dict[str, str], code: int
) -> None:
    assert_envelope(bare.post(BATCH_ORDERS, json={"body": [order()]}, headers=headers), 401, code)
    assert gameball_emulator.orders == []


def test_item_faults_fail_order_items_too(
    gameball_emulator: GameballEmulator, client: httpx.Client
) -> None:
    gameball_emulator.faults.fail_batch_items(customer_ids=["vip"], code=5000)
    job_id = create(client, [order("F-1", "vip"), order("F-2", "c-2")])
    status = poll(client, job_id)
    assert [(e["index"], e["orderId"], e["code"]) for e in status["errors"]] == [(0, "F-1", 5000)]
    assert [o.order_id for o in gameball_emulator.orders] == ["F-2"]
    (injected,) = gameball_emulator.injected_faults
    assert injected["endpoint"] == "batch/orders"
    assert injected["fault"] == "batch item 0 (vip) failed with 5000"
    # The failed item's id was not used up: resending it succeeds.
    assert client.post(ORDERS_V40, json=order("F-1", "vip")).status_code == 200
