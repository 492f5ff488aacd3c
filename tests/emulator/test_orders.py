"""Orders (v4.0 / v4.1): both keys, validation codes, points, place_order, duplicates."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx
import pytest

from gbtrack.emulator import GameballEmulator

from .conftest import (
    API_KEY,
    KEYS,
    ORDERS_V40,
    ORDERS_V41,
    SECRET_KEY,
    V40,
    assert_envelope,
    order,
)

FULL_ORDER: dict[str, Any] = {
    "customerId": "cust_123456789",
    "email": "john.doe@example.com",
    "mobile": "+1234567890",
    "orderId": "ORD12345",
    "orderDate": "2024-10-16T08:13:29.290Z",
    "totalPaid": 250.75,
    "totalPrice": 300,
    "totalDiscount": 50,
    "totalShipping": 10,
    "totalTax": 15,
    "lineItems": [
        {
            "productId": "PROD98765",
            "quantity": 2,
            "price": 100,
            "sku": "SKU98765",
            "tags": ["electronics", "smartphone"],
            "category": ["mobile phones"],
            "weight": 0.5,
            "vendor": "TechVendor",
            "collection": ["latest gadgets"],
            "title": "Smartphone XYZ",
            "taxes": 7.5,
            "discount": 25,
            "extra": {"subClass": "SUBCLASS123", "size": 42},
        },
        {"productId": "PROD2", "price": 50.5},
    ],
    "redemption": {
        "pointsHoldReference": "HOLD123",
        "couponsLockReference": "LOCK123",
        "couponCodes": ["DISCOUNT10"],
    },
    "extra": {"paymentMethod": "CREDIT CARD", "giftWrap": 1},
    "merchant": {
        "uniqueId": "MERCH001",
        "name": "TechGadgetStore",
        "branch": {"uniqueId": "BRANCH001", "name": "Downtown Branch"},
    },
    "guest": False,
    "channel": "pos",
    "cartId": "CART98765",
    "cashbackConfigurations": {"returnWindow": 7},
}


def test_v40_tracks_an_order_awards_points_and_fires_place_order(
    gameball_emulator: GameballEmulator, client: httpx.Client
) -> None:
    response = client.post(ORDERS_V40, json=FULL_ORDER, headers={"x-gb-agent": "gbtrack/1"})
    assert response.status_code == 200, response.text
    # floor(250.75 * 1); per line: (price * quantity - discount) * 1.
    assert response.json() == {
        "customerId": "cust_123456789",
        "redeemedPoints": 0,
        "rewardedPoints": 250,
        "lineItems": [
            {
                "productId": "PROD98765",
                "quantity": 2,
                "decimalPoints": 175.0,
                "points": 175,
                "score": 0,
            },
            {"productId": "PROD2", "quantity": 1, "decimalPoints": 50.5, "points": 50, "score": 0},
        ],
    }
    assert gameball_emulator.wait_for_orders(1, timeout=5)
    (tracked,) = gameball_emulator.orders
    assert (tracked.customer_id, tracked.order_id, tracked.total_paid) == (
        "cust_123456789",
        "ORD12345",
        250.75,
    )
    assert tracked.order_date == "2024-10-16T08:13:29.290Z"
    assert tracked.rewarded_points == 250
    assert tracked.body == FULL_ORDER
    assert (tracked.email, tracked.mobile) == ("john.doe@example.com", "+1234567890")
    assert tracked.version == "v4.0"
    assert not tracked.has_session_token
    assert not tracked.duplicate
    assert tracked.request_id == response.headers["x-request-id"]
    assert gameball_emulator.order_count == 1
    assert gameball_emulator.points == {"cust_123456789": 250}
    # Gameball fires place_order itself: recorded apart from the events clients sent.
    (place_order,) = gameball_emulator.system_events
    assert (place_order.customer_id, place_order.name) == ("cust_123456789", "place_order")
    assert place_order.metadata == {"orderId": "ORD12345", "totalPaid": 250.75, "points": 250}
    assert place_order.request_id == tracked.request_id
    assert gameball_emulator.events == []
    (record,) = gameball_emulator.request_log
    assert (record.endpoint, record.status, record.agent) == ("v4.0/orders", 200, "gbtrack/1")
    assert record.has_api_key
    assert record.has_secret_key
    assert gameball_emulator.requests == {("v4.0/orders", 200): 1}


def test_v41_takes_a_session_token_and_records_its_presence_only(
    gameball_emulator: GameballEmulator, client: httpx.Client
) -> None:
    response = client.post(ORDERS_V41, json=order(), headers={"X-GB-TOKEN": "jwe.token.value"})
    assert response.status_code == 200, response.text
    assert response.json()["rewardedPoints"] == 100
    (tracked,) = gameball_emulator.orders
    assert tracked.version == "v4.1"
    assert tracked.has_session_token
    assert gameball_emulator.system_events[0].has_session_token
    assert "jwe.token.value" not in json.dumps(gameball_emulator.stats())
    assert "jwe.token.value" not in repr(gameball_emulator.request_log)
    assert gameball_emulator.requests == {("v4.1/orders", 200): 1}


@pytest.mark.parametrize("path", [ORDERS_V40, ORDERS_V41])
@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, 1000),
        ({"APIKey": "wrong", "SecretKey": SECRET_KEY}, 1000),
        ({"SecretKey": SECRET_KEY}, 1000),
        ({"APIKey": API_KEY}, 1001),  # the API key alone is not enough, on v4.0 too
        ({"APIKey": API_KEY, "SecretKey": ""}, 1001),
        ({"APIKey": API_KEY, "SecretKey": "wrong"}, 1000),
    ],
)
def test_orders_need_both_keys(
    gameball_emulator: GameballEmulator,
    bare: httpx.Client,
    path: str,
    headers: dict[str, str],
    code: int,
) -> None:
    body = assert_envelope(bare.post(path, json=order(), headers=headers), 401, code)
    assert body["type"] == "AUTHENTICATION_ERROR"
    assert gameball_emulator.orders == []
    assert gameball_emulator.points == {}


def test_header_names_are_case_insensitive(
    gameball_emulator: GameballEmulator, bare: httpx.Client
) -> None:
    headers = {"apikey": API_KEY, "SECRETKEY": SECRET_KEY}
    assert bare.post(ORDERS_V40, json=order(), headers=headers).status_code == 200


def test_an_emulator_without_a_secret_key_refuses_every_order(
    gameball_emulator_factory: Any,
) -> None:
    emulator: GameballEmulator = gameball_emulator_factory(secret_key=None)
    with httpx.Client(base_url=emulator.url, headers=KEYS) as http:
        assert_envelope(http.post(ORDERS_V40, json=order()), 401, 1000)
        assert http.post(V40, json={"customerId": "c", "events": {"e": {}}}).status_code == 200


def test_a_minimum_version_of_41_refuses_v40_orders(gameball_emulator_factory: Any) -> None:
    emulator: GameballEmulator = gameball_emulator_factory(min_version="4.1")
    with httpx.Client(base_url=emulator.url, headers=KEYS) as http:
        assert_envelope(http.post(ORDERS_V40, json=order("A")), 403, 1003)
        assert http.post(ORDERS_V41, json=order("A")).status_code == 200
    assert [o.order_id for o in emulator.orders] == ["A"]


_INVALID: list[tuple[str, dict[str, Any], int, int, str]] = [
    # (case, body, status, code, a word the message must contain)
    ("no customerId", {"customerId": None}, 412, 2000, "customerId"),
    ("no orderId", {"orderId": None}, 400, 3000, "orderId"),
    ("no orderDate", {"orderDate": None}, 400, 3000, "orderDate"),
    ("no totalPaid", {"totalPaid": None}, 400, 3000, "totalPaid"),
]
_NULLS = [
    (f"{name} null", {name: "null"}, 422, 3001, name)
    for name in ("customerId", "orderId", "orderDate", "totalPaid")
]
_VALUES: list[tuple[str, dict[str, Any], int, int, str]] = [
    ("blank customerId", {"customerId": " "}, 422, 3003, "customerId"),
    ("numeric customerId", {"customerId": 7}, 422, 3003, "customerId"),
    ("blank orderId", {"orderId": ""}, 422, 3003, "orderId"),
    ("numeric orderId", {"orderId": 17}, 422, 3003, "orderId"),
    ("totalPaid as text", {"totalPaid": "99.5"}, 422, 3003, "totalPaid"),
    ("totalPaid boolean", {"totalPaid": True}, 422, 3003, "totalPaid"),
    ("totalPrice as text", {"totalPrice": "1"}, 422, 3003, "totalPrice"),
    ("totalTax array", {"totalTax": [1]}, 422, 3003, "totalTax"),
    ("orderDate a number", {"orderDate": 1729066409}, 422, 3003, "orderDate"),
    ("orderDate a date only", {"orderDate": "2024-10-16"}, 422, 3003, "orderDate"),
    ("orderDate no offset", {"orderDate": "2024-10-16T08:13:29"}, 422, 3003, "orderDate"),
    ("orderDate no seconds", {"orderDate": "2024-10-16T08:13Z"}, 422, 3003, "orderDate"),
    ("orderDate month 13", {"orderDate": "2024-13-16T08:13:29Z"}, 422, 3003, "orderDate"),
    ("orderDate Feb 30", {"orderDate": "2024-02-30T08:13:29Z"}, 422, 3003, "orderDate"),
    ("orderDate hour 24", {"orderDate": "2024-10-16T24:00:00Z"}, 422, 3003, "orderDate"),
    ("orderDate prose", {"orderDate": "yesterday"}, 422, 3003, "orderDate"),
    ("email a number", {"email": 5}, 422, 3003, "email"),
    ("cartId an object", {"cartId": {}}, 422, 3003, "cartId"),
    ("guest as text", {"guest": "false"}, 422, 3003, "guest"),
    ("channel outside the enum", {"channel": "kiosk"}, 422, 3003, "channel"),
    ("channel in capitals", {"channel": "WEB"}, 422, 3003, "channel"),
    ("lineItems an object", {"lineItems": {}}, 422, 3003, "lineItems"),
    ("line item a string", {"lineItems": ["p"]}, 422, 3003, "lineItems[0]"),
    ("line price as text", {"lineItems": [{"price": "9"}]}, 422, 3003, "lineItems[0].price"),
    ("line quantity bool", {"lineItems": [{}, {"quantity": True}]}, 422, 3003, "lineItems[1]"),
    ("line productId number", {"lineItems": [{"productId": 1}]}, 422, 3003, "productId"),
    ("line tags a string", {"lineItems": [{"tags": "a"}]}, 422, 3003, "tags"),
    ("line category numbers", {"lineItems": [{"category": [1]}]}, 422, 3003, "category"),
    ("line extra a list", {"lineItems": [{"extra": {"k": [1]}}]}, 422, 3003, "extra"),
    ("extra a boolean value", {"extra": {"gift": True}}, 422, 3003, "extra"),
    ("extra an array", {"extra": ["x"]}, 422, 3003, "extra"),
    ("redemption a string", {"redemption": "HOLD"}, 422, 3003, "redemption"),
    ("couponCodes a string", {"redemption": {"couponCodes": "X"}}, 422, 3003, "couponCodes"),
    (
        "hold reference a number",
        {"redemption": {"pointsHoldReference": 1}},
        422,
        3003,
        "redemption",
    ),
    ("merchant a list", {"merchant": []}, 422, 3003, "merchant"),
    ("branch name a number", {"merchant": {"branch": {"name": 1}}}, 422, 3003, "branch"),
    (
        "returnWindow -1",
        {"cashbackConfigurations": {"returnWindow": -1}},
        422,
        3003,
        "returnWindow",
    ),
    ("returnWindow 7301", {"cashbackConfigurations": {"returnWindow": 7301}}, 422, 3003, "7300"),
    ("returnWindow 1.5", {"cashbackConfigurations": {"returnWindow": 1.5}}, 422, 3003, "integer"),
    ("returnWindow text", {"cashbackConfigurations": {"returnWindow": "7"}}, 422, 3003, "integer"),
    ("cashback a number", {"cashbackConfigurations": 7}, 422, 3003, "cashbackConfigurations"),
]


@pytest.mark.parametrize(
    ("changes", "status", "code", "word"),
    [pytest.param(c, s, k, w, id=case) for case, c, s, k, w in _INVALID + _NULLS + _VALUES],
)
def test_invalid_orders_get_gameballs_codes(
    gameball_emulator: GameballEmulator,
    client: httpx.Client,
    changes: dict[str, Any],
    status: int,
    code: int,
    word: str,
) -> None:
    body = order()
    for name, value in changes.items():
        if value is None:
            del body[name]  # absent
        else:
            body[name] = None if value == "null" else value
    envelope = assert_envelope(client.post(ORDERS_V41, json=body), status, code)
    assert word in str(envelope["message"])
    assert gameball_emulator.orders == []
    assert gameball_emulator.system_events == []
    assert gameball_emulator.points == {}


@pytest.mark.parametrize(
    "changes",
    [
        {"orderDate": "2024-10-16T08:13:29Z"},  # no fraction
        {"orderDate": "2024-10-16t08:13:29.123456+02:00"},  # an offset, micro-seconds
        {"orderDate": "2016-12-31T23:59:60Z"},  # a leap second
        {"totalPaid": 0},
        {"totalPaid": -5.5},  # the schema sets no minimum: accepted, earns nothing
        {"email": None, "mobile": None, "lineItems": None},  # null optionals read as absent
        {"lineItems": []},
        {"lineItems": [{}]},
        {"cashbackConfigurations": {"returnWindow": 0}},
        {"cashbackConfigurations": {"returnWindow": 7300.0}},  # an integral number
        {"cashbackConfigurations": {}},
        {"merchant": {"branch": {}}},
        {"channel": "callcenter", "guest": True},
        {"somethingNew": {"nested": [1, 2]}},  # properties the schema does not list
    ],
)
def test_what_the_schema_allows_is_accepted(
    gameball_emulator: GameballEmulator, client: httpx.Client, changes: dict[str, Any]
) -> None:
    response = client.post(ORDERS_V40, json=order(**changes))
    assert response.status_code == 200, response.text
    assert gameball_emulator.order_count == 1


def test_the_body_must_be_a_json_object(
    gameball_emulator: GameballEmulator, client: httpx.Client
) -> None:
    assert_envelope(client.post(ORDERS_V40, content=b"{", headers=_JSON), 400, 3016)
    assert_envelope(client.post(ORDERS_V40, content=b"[1]", headers=_JSON), 400, 3016)
    assert_envelope(
        client.post(ORDERS_V40, content=b'{"totalPaid": NaN}', headers=_JSON), 400, 3016
    )
    sent_as_text = client.post(ORDERS_V40, content=json.dumps(order()).encode())
    assert_envelope(sent_as_text, 415, 3013)
    assert_envelope(client.get(ORDERS_V40), 405, 3013)
    assert gameball_emulator.orders == []


_JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("rate", "paid", "points"),
    [
        (1.0, 99.99, 99),
        (1.0, 0.29, 0),
        (100.0, 0.29, 29),  # not 28: floating point is rounded before flooring
        (10.0, 50, 500),  # the OpenAPI's own example: 10 points per $1, a $50 order
        (0.5, 3, 1),
        (0.0, 1000, 0),
        (2.0, -10, 0),
        (10.0, 1e308, 2**53),  # inf: capped, never a 500
    ],
)
def test_points_per_unit_is_configurable(
    gameball_emulator_factory: Any, rate: float, paid: float, points: int
) -> None:
    emulator: GameballEmulator = gameball_emulator_factory(points_per_unit=rate)
    with httpx.Client(base_url=emulator.url, headers=KEYS) as http:
        response = http.post(ORDERS_V40, json=order(totalPaid=paid))
    assert response.json()["rewardedPoints"] == points
    assert emulator.points == {"c-1": points}


def test_points_add_up_per_customer_and_the_rate_can_change(
    gameball_emulator: GameballEmulator, client: httpx.Client
) -> None:
    client.post(ORDERS_V40, json=order("A", totalPaid=10))
    client.post(ORDERS_V40, json=order("B", totalPaid=5.5))
    gameball_emulator.points_per_unit = 3
    client.post(ORDERS_V41, json=order("C", "c-2", totalPaid=2))
    assert gameball_emulator.points == {"c-1": 15, "c-2": 6}
    assert [o.rewarded_points for o in gameball_emulator.orders] == [10, 5, 6]
    with pytest.raises(ValueError, match="points_per_unit"):
        gameball_emulator.points_per_unit = -1
    with pytest.raises(ValueError, match="points_per_unit"):
        GameballEmulator(points_per_unit=float("nan"))


def test_a_duplicate_order_id_is_rejected_by_default(
    gameball_emulator: GameballEmulator, client: httpx.Client
) -> None:
    assert gameball_emulator.duplicate_orders == "reject"
    first = client.post(ORDERS_V40, json=order("ORD-7", totalPaid=40))
    assert first.status_code == 200
    # The same id again, on the other version and with other content: still a duplicate.
    again = client.post(ORDERS_V41, json=order("ORD-7", "c-2", totalPaid=999))
    body = assert_envelope(again, 422, 9004)
    assert body["type"] == "TRANSACTIONS_ERROR"
    assert "ORD-7" in str(body["message"])
    # Ids are case-sensitive: another case is another order.
    assert client.post(ORDERS_V40, json=order("ord-7", totalPaid=1)).status_code == 200
    assert [o.order_id for o in gameball_emulator.orders] == ["ORD-7", "ord-7"]
    assert gameball_emulator.points == {"c-1": 41}
    assert len(gameball_emulator.system_events) == 2
    assert gameball_emulator.requests == {
        ("v4.0/orders", 200): 2,
        ("v4.1/orders", 422): 1,
    }


def test_the_duplicate_answer_is_configurable(gameball_emulator_factory: Any) -> None:
    emulator: GameballEmulator = gameball_emulator_factory(
        duplicate_order_status=409, duplicate_order_code=9003
    )
    with httpx.Client(base_url=emulator.url, headers=KEYS) as http:
        http.post(ORDERS_V40, json=order())
        assert_envelope(http.post(ORDERS_V40, json=order()), 409, 9003)
        emulator.duplicate_order_status = 400
        emulator.duplicate_order_code = 3003
        assert_envelope(http.post(ORDERS_V40, json=order()), 400, 3003)
    with pytest.raises(ValueError, match="400-599"):
        emulator.duplicate_order_status = 200


def test_accepting_duplicates_awards_twice(gameball_emulator_factory: Any) -> None:
    emulator: GameballEmulator = gameball_emulator_factory(duplicate_orders="accept")
    with httpx.Client(base_url=emulator.url, headers=KEYS) as http:
        answers = [http.post(ORDERS_V40, json=order("ORD-1", totalPaid=30)) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    assert [a.json()["rewardedPoints"] for a in answers] == [30, 30]
    assert [o.duplicate for o in emulator.orders] == [False, True]
    assert emulator.points == {"c-1": 60}
    assert [e.metadata["orderId"] for e in emulator.system_events] == ["ORD-1", "ORD-1"]
    emulator.duplicate_orders = "reject"  # the switch works at run time
    with httpx.Client(base_url=emulator.url, headers=KEYS) as http:
        assert_envelope(http.post(ORDERS_V40, json=order("ORD-1")), 422, 9004)
    with pytest.raises(ValueError, match="'reject' or 'accept'"):
        emulator.duplicate_orders = "ignore"  # type: ignore[assignment]


def test_concurrent_duplicates_are_admitted_exactly_once(gameball_emulator_factory: Any) -> None:
    emulator: GameballEmulator = gameball_emulator_factory(order_rate_limits=None)
    start = threading.Barrier(8)
    statuses: list[int] = []

    def send() -> None:
        with httpx.Client(base_url=emulator.url, headers=KEYS) as http:
            start.wait(10)
            statuses.append(http.post(ORDERS_V40, json=order("RACE")).status_code)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(statuses) == [200] + [422] * 7
    assert emulator.order_count == 1
    assert emulator.points == {"c-1": 100}


def test_place_order_can_be_turned_off(gameball_emulator_factory: Any) -> None:
    emulator: GameballEmulator = gameball_emulator_factory(auto_place_order=False)
    with httpx.Client(base_url=emulator.url, headers=KEYS) as http:
        assert http.post(ORDERS_V40, json=order()).status_code == 200
    assert emulator.order_count == 1
    assert emulator.system_events == []


def test_a_place_order_event_sent_by_hand_counts_the_purchase_twice(
    gameball_emulator: GameballEmulator, client: httpx.Client
) -> None:
    """The hazard the docs warn of: the Order API fires place_order itself."""
    client.post(ORDERS_V40, json=order("ORD-1"))
    client.post(V40, json={"customerId": "c-1", "events": {"place_order": {"orderId": "ORD-1"}}})
    fired = gameball_emulator.system_events + gameball_emulator.events
    assert [(e.name, e.metadata["orderId"]) for e in fired] == [("place_order", "ORD-1")] * 2


def test_reset_forgets_orders_points_and_order_ids(
    gameball_emulator: GameballEmulator, client: httpx.Client
) -> None:
    client.post(ORDERS_V40, json=order())
    gameball_emulator.reset()
    assert (gameball_emulator.orders, gameball_emulator.order_count) == ([], 0)
    assert (gameball_emulator.points, gameball_emulator.system_events) == ({}, [])
    assert client.post(ORDERS_V40, json=order()).status_code == 200  # no longer a duplicate


def test_control_endpoints_list_orders_and_switch_modes(
    gameball_emulator: GameballEmulator, client: httpx.Client
) -> None:
    client.post(ORDERS_V40, json=order("A", totalPaid=12.5))
    listed = client.get("/_emulator/orders").json()
    assert [(o["orderId"], o["rewardedPoints"], o["version"]) for o in listed] == [
        ("A", 12, "v4.0")
    ]
    assert listed[0]["body"] == order("A", totalPaid=12.5)
    assert client.get("/_emulator/points").json() == {"c-1": 12}
    (fired,) = client.get("/_emulator/system-events").json()
    assert (fired["name"], fired["customerId"]) == ("place_order", "c-1")
    config = {
        "duplicateOrders": "accept",
        "pointsPerUnit": 2,
        "duplicateOrderStatus": 409,
        "duplicateOrderCode": 9003,
        "autoPlaceOrder": False,
    }
    assert client.post("/_emulator/config", json=config).status_code == 200
    stats = client.get("/_emulator/stats").json()
    assert {key: stats[key] for key in config} == {**config, "pointsPerUnit": 2.0}
    assert (stats["orders"], stats["storedOrders"], stats["points"]) == (1, 1, 12)
    assert client.post(ORDERS_V40, json=order("A", totalPaid=12.5)).json()["rewardedPoints"] == 25
    assert gameball_emulator.points == {"c-1": 37}
    assert len(gameball_emulator.system_events) == 1
    for bad in ({"duplicateOrders": "maybe"}, {"pointsPerUnit": "lots"}, {"pointsPerUnit": -1}):
        assert_envelope(client.post("/_emulator/config", json=bad), 400, 3003)


def test_the_in_process_transport_tracks_orders() -> None:
    emulator = GameballEmulator()
    with httpx.Client(transport=emulator.transport(), base_url="http://gameball") as http:
        answer = http.post(ORDERS_V41, json=order(totalPaid=7), headers=KEYS)
        assert answer.json()["rewardedPoints"] == 7
        assert_envelope(http.post(ORDERS_V41, json=order(), headers=KEYS), 422, 9004)
        assert http.get("/_emulator/orders").json()[0]["orderId"] == "ORD-1"
    assert emulator.points == {"c-1": 7}


def test_absurd_line_amounts_answer_finite_points(
    gameball_emulator: GameballEmulator, client: httpx.Client
) -> None:
    line = {"productId": "p", "price": 1e308, "quantity": 1e308}
    answer = client.post(ORDERS_V40, json=order(totalPaid=1e308, lineItems=[line]))
    assert answer.status_code == 200, answer.text
    assert answer.json()["lineItems"][0]["points"] == 2**53
    assert gameball_emulator.internal_errors == []
