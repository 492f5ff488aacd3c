"""Orders: the emulator accepts what the ``trackOrder`` schema accepts, answers in its shapes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema  # type: ignore[import-untyped]
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gbtrack.emulator import GameballEmulator

from .conftest import BATCH_ORDERS, KEYS, ORDERS_V40, ORDERS_V41, batch_path
from .test_openapi import DOCUMENT, schema

_JSON = "/content/application~1json/schema"
_ORDERS = "/paths/~1api~1v4.0~1integrations~1orders/post"
_BATCH_ORDERS = "/paths/~1api~1v4.0~1integrations~1batch~1orders/post"
_STATUS = "/paths/~1api~1v4.0~1integrations~1batches~1{batchId}~1status/get"

ORDER_REQUEST = schema(_ORDERS + "/requestBody" + _JSON)
ORDER_ANSWER = schema(_ORDERS + "/responses/200" + _JSON)
BATCH_REQUEST = schema(_BATCH_ORDERS + "/requestBody" + _JSON)
BATCH_CREATED = schema(_BATCH_ORDERS + "/responses/200" + _JSON)
BATCH_STATUS = schema(_STATUS + "/responses/200" + _JSON)

_PROPERTIES = DOCUMENT["paths"]["/api/v4.0/integrations/orders"]["post"]["requestBody"]["content"][
    "application/json"
]["schema"]["properties"]


def _example(properties: dict[str, Any]) -> dict[str, Any]:
    """The schema's own ``example`` of every property, nested objects and arrays included."""
    built: dict[str, Any] = {}
    for name, spec in properties.items():
        if "example" in spec:
            built[name] = spec["example"]
        elif spec.get("type") == "object":
            built[name] = _example(spec.get("properties", {}))
        elif spec.get("type") == "array":
            built[name] = [_example(spec["items"].get("properties", {}))]
    return built


SCHEMA_EXAMPLE = _example(_PROPERTIES)


@pytest.fixture
def open_client(gameball_emulator_factory: Any) -> Iterator[tuple[GameballEmulator, httpx.Client]]:
    emulator: GameballEmulator = gameball_emulator_factory(order_rate_limits=None)
    with httpx.Client(base_url=emulator.url, headers=KEYS) as http:
        yield emulator, http


def test_the_schema_lists_what_the_emulator_checks() -> None:
    required = DOCUMENT["paths"]["/api/v4.0/integrations/orders"]["post"]["requestBody"]["content"][
        "application/json"
    ]["schema"]["required"]
    assert required == ["customerId", "orderId", "orderDate", "totalPaid"]
    assert _PROPERTIES["channel"]["enum"] == ["mobile", "pos", "web", "callcenter"]
    window = _PROPERTIES["cashbackConfigurations"]["properties"]["returnWindow"]
    assert (window["minimum"], window["maximum"]) == (0, 7300)
    # Every property of the example is one the schema declares, each filled in.
    assert set(SCHEMA_EXAMPLE) == set(_PROPERTIES)


def test_the_schemas_own_example_is_tracked_on_both_versions(
    open_client: tuple[GameballEmulator, httpx.Client],
) -> None:
    emulator, http = open_client
    ORDER_REQUEST.validate(SCHEMA_EXAMPLE)
    for path, order_id in ((ORDERS_V40, "ORD12345"), (ORDERS_V41, "ORD12346")):
        response = http.post(path, json={**SCHEMA_EXAMPLE, "orderId": order_id})
        assert response.status_code == 200, response.text
        ORDER_ANSWER.validate(response.json())
        assert response.json()["rewardedPoints"] == 250  # floor(250.75)
    assert emulator.order_count == 2


def test_batch_orders_answer_in_the_documented_shapes(
    open_client: tuple[GameballEmulator, httpx.Client],
) -> None:
    emulator, http = open_client
    items = [
        {
            "customerId": f"c-{n}",
            "orderId": f"B-{n}",
            "orderDate": "2024-10-16T08:13:29.290Z",
            "totalPaid": n,
        }
        for n in range(3)
    ]
    body = {"body": items}
    BATCH_REQUEST.validate(body)
    created = http.post(BATCH_ORDERS, json=body)
    BATCH_CREATED.validate(created.json())
    status = http.get(batch_path(created.json()["jobId"], "status")).json()
    BATCH_STATUS.validate(status)
    assert status["failedItems"] == 0
    assert emulator.order_count == 3


_text = st.text(max_size=12)
_id = st.text(min_size=1, max_size=20).filter(lambda s: s.strip() != "")
_number = st.integers(min_value=-(10**9), max_value=10**9) | st.floats(
    min_value=-1e9, max_value=1e9, allow_nan=False
)
_date = st.datetimes(
    min_value=dt.datetime(1970, 1, 1),
    max_value=dt.datetime(2100, 1, 1),
    timezones=st.just(dt.timezone.utc),
).map(lambda d: d.isoformat(timespec="milliseconds").replace("+00:00", "Z"))
_extra = st.dictionaries(_text, _text | _number, max_size=3)
_line = st.fixed_dictionaries(
    {},
    optional={
        "productId": _text,
        "sku": _text,
        "title": _text,
        "vendor": _text,
        "quantity": _number,
        "price": _number,
        "weight": _number,
        "taxes": _number,
        "discount": _number,
        "tags": st.lists(_text, max_size=3),
        "category": st.lists(_text, max_size=3),
        "collection": st.lists(_text, max_size=3),
        "extra": _extra,
    },
)
_orders = st.fixed_dictionaries(
    {"customerId": _id, "orderId": _id, "orderDate": _date, "totalPaid": _number},
    optional={
        "email": _text,
        "mobile": _text,
        "totalPrice": _number,
        "totalDiscount": _number,
        "totalShipping": _number,
        "totalTax": _number,
        "lineItems": st.lists(_line, max_size=3),
        "redemption": st.fixed_dictionaries(
            {},
            optional={
                "pointsHoldReference": _text,
                "couponsLockReference": _text,
                "couponCodes": st.lists(_text, max_size=2),
            },
        ),
        "extra": _extra,
        "merchant": st.fixed_dictionaries(
            {},
            optional={
                "uniqueId": _text,
                "name": _text,
                "branch": st.fixed_dictionaries({}, optional={"uniqueId": _text, "name": _text}),
            },
        ),
        "guest": st.booleans(),
        "channel": st.sampled_from(["mobile", "pos", "web", "callcenter"]),
        "cartId": _text,
        "cashbackConfigurations": st.fixed_dictionaries(
            {}, optional={"returnWindow": st.integers(min_value=0, max_value=7300)}
        ),
    },
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=_orders)
def test_generated_schema_valid_orders_are_tracked(
    open_client: tuple[GameballEmulator, httpx.Client], body: dict[str, Any]
) -> None:
    emulator, http = open_client
    ORDER_REQUEST.validate(body)  # the generator makes only what the schema accepts
    emulator.reset()
    response = http.post(ORDERS_V41, json=body)
    assert response.status_code == 200, response.text
    ORDER_ANSWER.validate(response.json())
    (tracked,) = emulator.orders
    assert (tracked.order_id, tracked.body) == (body["orderId"], body)
    assert len(response.json()["lineItems"]) == len(body.get("lineItems", []))


_breakages = st.sampled_from(
    [
        ("totalPaid", "12"),
        ("totalPaid", None),
        ("orderId", 5),
        ("customerId", ["c"]),
        ("orderDate", 20241016),
        ("guest", "yes"),
        ("channel", "fax"),
        ("lineItems", "none"),
        ("lineItems", [{"quantity": "2"}]),
        ("lineItems", [{"tags": [1]}]),
        ("redemption", {"couponCodes": [None]}),
        ("merchant", {"branch": []}),
        ("cashbackConfigurations", {"returnWindow": 7301}),
        ("cashbackConfigurations", {"returnWindow": 0.5}),
    ]
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=_orders, breakage=_breakages)
def test_orders_the_schema_refuses_are_refused(
    open_client: tuple[GameballEmulator, httpx.Client],
    body: dict[str, Any],
    breakage: tuple[str, Any],
) -> None:
    emulator, http = open_client
    name, value = breakage
    broken = {**body, name: value}
    with pytest.raises(jsonschema.ValidationError):
        ORDER_REQUEST.validate(broken)
    emulator.reset()
    response = http.post(ORDERS_V40, json=broken)
    assert response.status_code in (400, 412, 422), response.text
    assert emulator.orders == []
