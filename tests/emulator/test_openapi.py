"""The emulator accepts what Gameball's OpenAPI schemas accept and answers in their shapes."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema  # type: ignore[import-untyped]
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from gbtrack.emulator import GameballEmulator

from .conftest import BATCH, KEYS, V40, V41, batch_path

REPO = Path(__file__).resolve().parents[2]
DOC_URI = "urn:gameball:openapi"
_JSON = "/content/application~1json/schema"
_EVENTS = "/paths/~1api~1v4.0~1integrations~1events/post"
_BATCH = "/paths/~1api~1v4.0~1integrations~1batch~1events/post"
_STATUS = "/paths/~1api~1v4.0~1integrations~1batches~1{batchId}~1status/get"
_STOP = "/paths/~1api~1v4.0~1integrations~1batches~1{batchId}~1stop/post"


def _document() -> dict[str, Any]:
    for candidate in (
        os.environ.get("GBTRACK_OPENAPI"),
        REPO / "tests" / "data" / "gameball-openapi.json",
        REPO.parent / "shared" / "gameball-openapi.json",
    ):
        if candidate and Path(candidate).is_file():
            document: dict[str, Any] = json.loads(Path(candidate).read_text("utf-8"))
            return document
    raise AssertionError("gameball-openapi.json not found")


DOCUMENT = _document()
_REGISTRY: Registry[Any] = Registry().with_resource(
    DOC_URI, Resource.from_contents(DOCUMENT, default_specification=DRAFT202012)
)


def schema(pointer: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({"$ref": f"{DOC_URI}#{pointer}"}, registry=_REGISTRY)


EVENT_REQUEST = schema(_EVENTS + "/requestBody" + _JSON)
BATCH_REQUEST = schema(_BATCH + "/requestBody" + _JSON)
SUCCESS = schema(_EVENTS + "/responses/200" + _JSON)
BATCH_CREATED = schema(_BATCH + "/responses/200" + _JSON)
BATCH_STATUS = schema(_STATUS + "/responses/200" + _JSON)
BATCH_STOPPED = schema(_STOP + "/responses/200" + _JSON)

SAMPLES: list[dict[str, Any]] = [
    # the OpenAPI file's own example
    DOCUMENT["paths"]["/api/v4.0/integrations/events"]["post"]["requestBody"]["content"][
        "application/json"
    ]["examples"]["sample"]["value"],
    # the contract page's example, with email and mobile (extra properties are allowed)
    {
        "customerId": "customer-123",
        "email": "john@example.com",
        "mobile": "+1234567890",
        "events": {
            "purchase": {"order_id": "ORD-12345", "amount": 149.99, "currency": "USD"},
            "review_submitted": {},
        },
    },
    {"customerId": "x", "events": {"a": {"n": 0, "neg": -1.5e10, "t": True, "f": False, "s": ""}}},
    {"customerId": "üñí©ødé", "events": {"ünïcode event": {"κλειδί": "τιμή"}}, "extra": {"x": 1}},
]


@pytest.fixture
def open_client(gameball_emulator_factory: Any) -> Iterator[tuple[GameballEmulator, httpx.Client]]:
    emulator: GameballEmulator = gameball_emulator_factory(rate_limits=None)
    with httpx.Client(base_url=emulator.url, headers=KEYS) as http:
        yield emulator, http


@pytest.mark.parametrize("body", SAMPLES)
def test_schema_valid_samples_are_accepted_everywhere(
    open_client: tuple[GameballEmulator, httpx.Client], body: dict[str, Any]
) -> None:
    emulator, http = open_client
    EVENT_REQUEST.validate(body)
    for path in (V40, V41):
        response = http.post(path, json=body)
        assert response.status_code == 200, response.text
        SUCCESS.validate(response.json())
    batch = {"body": [body, body]}
    BATCH_REQUEST.validate(batch)
    created = http.post(BATCH, json=batch)
    BATCH_CREATED.validate(created.json())
    job_id = created.json()["jobId"]
    status = http.get(batch_path(job_id, "status")).json()
    BATCH_STATUS.validate(status)
    assert status["failedItems"] == 0
    stopped = http.post(batch_path(job_id, "stop")).json()
    BATCH_STOPPED.validate(stopped)
    assert emulator.event_count == 4 * len(body["events"])
    assert [e.metadata for e in emulator.events[: len(body["events"])]] == list(
        body["events"].values()
    )


_scalar = (
    st.text(max_size=20)
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.booleans()
)
_name = st.text(min_size=1, max_size=20).filter(lambda s: s.strip() != "")
_bodies = st.fixed_dictionaries(
    {
        "customerId": _name,
        "events": st.dictionaries(
            _name,
            st.dictionaries(st.text(max_size=10), _scalar, max_size=4),
            min_size=1,
            max_size=3,
        ),
    },
    optional={"email": st.emails(), "mobile": st.from_regex(r"\+[0-9]{8,14}", fullmatch=True)},
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=_bodies)
def test_generated_schema_valid_bodies_are_accepted(
    open_client: tuple[GameballEmulator, httpx.Client], body: dict[str, Any]
) -> None:
    emulator, http = open_client
    EVENT_REQUEST.validate(body)
    emulator.reset()
    response = http.post(V40, json=body)
    assert response.status_code == 200, response.text
    assert [(e.customer_id, e.name, e.metadata) for e in emulator.events] == [
        (body["customerId"], name, metadata) for name, metadata in body["events"].items()
    ]


def test_delayed_status_answers_validate(gameball_emulator_factory: Any) -> None:
    emulator: GameballEmulator = gameball_emulator_factory(batch_delay=60.0)
    with httpx.Client(base_url=emulator.url, headers=KEYS) as http:
        job_id = http.post(BATCH, json={"body": SAMPLES[:2]}).json()["jobId"]
        BATCH_STATUS.validate(http.get(batch_path(job_id, "status")).json())
        BATCH_STOPPED.validate(http.post(batch_path(job_id, "stop")).json())
        status = http.get(batch_path(job_id, "status")).json()
        BATCH_STATUS.validate(status)
        assert status["status"] == "failed"
