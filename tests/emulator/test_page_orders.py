"""The live feed and page list orders beside events (the browser test is in the next file)."""

from __future__ import annotations

import httpx
import pytest

from gbtrack.emulator import GameballEmulator

from .conftest import BATCH_ORDERS, ORDERS_V40, ORDERS_V41, V40, order


def test_feed_lists_orders_newest_first_with_their_fate(
    gameball_emulator: GameballEmulator, client: httpx.Client
) -> None:
    gameball_emulator.duplicate_orders = "accept"
    client.post(ORDERS_V40, json=order("A", "c-1", totalPaid=10.5, email="a@b.c"))
    client.post(ORDERS_V41, json=order("A", "c-1", totalPaid=10.5), headers={"X-GB-TOKEN": "t"})
    client.post(BATCH_ORDERS, json={"body": [order("B", "c-2", totalPaid=3)]})
    gameball_emulator.faults.drop_next(when="after_processing", route="orders")
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(ORDERS_V40, json=order("C", "c-3", lineItems=[{"price": 1}, {}]))
    client.post(V40, json={"customerId": "c-9", "events": {"e": {}}})
    data = client.get("/_emulator/live").json()
    orders = data["orders"]
    assert [(o["orderId"], o["customerId"], o["rewardedPoints"]) for o in orders] == [
        ("C", "c-3", 100),
        ("B", "c-2", 3),
        ("A", "c-1", 10),
        ("A", "c-1", 10),
    ]
    assert [(o["version"], o["batched"], o["status"], o["ok"], o["duplicate"]) for o in orders] == [
        ("v4.0", False, "processed, answer dropped", False, False),
        ("batch", True, "batch job completed", True, False),
        ("v4.1", False, "200 answered", True, True),
        ("v4.0", False, "200 answered", True, False),
    ]
    assert orders[0]["body"]["lineItems"] == [{"price": 1}, {}]
    assert orders[2]["hasSessionToken"] is True
    assert orders[3]["email"] == "a@b.c"
    assert (data["ordersMatching"], data["ordersPoints"]) == (4, 123)
    assert [e["customerId"] for e in data["events"]] == ["c-9"]  # orders are not events
    assert (data["stats"]["orders"], data["stats"]["points"]) == (4, 123)


def test_feed_filters_and_limits_orders_like_events(
    gameball_emulator: GameballEmulator, client: httpx.Client
) -> None:
    for n, customer in enumerate(("alice-1", "bob-1", "ALICE-2")):
        client.post(ORDERS_V40, json=order(f"o-{n}", customer, totalPaid=n + 1))
        client.post(V40, json={"customerId": customer, "events": {"e": {}}})
    data = client.get("/_emulator/live", params={"customer": "alice"}).json()
    assert [o["customerId"] for o in data["orders"]] == ["ALICE-2", "alice-1"]
    assert (data["ordersMatching"], data["ordersPoints"], data["matching"]) == (2, 4, 2)
    data = client.get("/_emulator/live", params={"limit": 1}).json()
    assert ([o["orderId"] for o in data["orders"]], data["ordersMatching"]) == (["o-2"], 3)


def test_the_page_has_an_orders_table(bare: httpx.Client) -> None:
    html = bare.get("/").text
    assert '<tbody id="orders-body"></tbody>' in html
    assert "No order received yet." in html
    assert "innerHTML" not in html
