"""The bodies gbtrack puts on the wire validate against Gameball's published OpenAPI file.

The file is found through ``$GBTRACK_OPENAPI``, else ``../shared/gameball-openapi.json``
beside the repository, else the copy in ``tests/data`` (so this never skips).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import jsonschema  # type: ignore[import-untyped]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from gbtrack import Event
from gbtrack.gameball import EventBatch, GameballClient, coalesce

REPO = Path(__file__).resolve().parents[2]
DOC_URI = "urn:gameball:openapi"
_JSON_BODY = "/requestBody/content/application~1json/schema"
EVENTS_SCHEMA = "/paths/~1api~1v4.0~1integrations~1events/post" + _JSON_BODY
BATCH_SCHEMA = "/paths/~1api~1v4.0~1integrations~1batch~1events/post" + _JSON_BODY


def openapi_path() -> Path:
    candidates = [
        os.environ.get("GBTRACK_OPENAPI"),
        REPO.parent / "shared" / "gameball-openapi.json",
        REPO / "tests" / "data" / "gameball-openapi.json",
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise AssertionError("gameball-openapi.json not found (tests/data holds a copy)")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(openapi_path().read_text(encoding="utf-8"))
    return doc


def validator(document: dict[str, Any], pointer: str) -> jsonschema.Draft202012Validator:
    # OpenAPI 3.1 schemas are JSON Schema 2020-12; refs resolve inside the whole document.
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(DOC_URI, resource)
    return jsonschema.Draft202012Validator({"$ref": f"{DOC_URI}#{pointer}"}, registry=registry)


@pytest.fixture(scope="module")
def events_validator(document: dict[str, Any]) -> jsonschema.Draft202012Validator:
    return validator(document, EVENTS_SCHEMA)


@pytest.fixture(scope="module")
def batch_validator(document: dict[str, Any]) -> jsonschema.Draft202012Validator:
    return validator(document, BATCH_SCHEMA)


def test_the_env_var_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = tmp_path / "openapi.json"
    chosen.write_text("{}", encoding="utf-8")
    monkeypatch.setenv("GBTRACK_OPENAPI", str(chosen))
    assert openapi_path() == chosen
    monkeypatch.setenv("GBTRACK_OPENAPI", str(tmp_path / "missing.json"))
    assert openapi_path() != chosen
    assert openapi_path().name == "gameball-openapi.json"


def _upstream() -> Path | None:
    """The spec this copy was taken from: $GBTRACK_OPENAPI_UPSTREAM, else a shared/ folder
    beside the checkout or one of its parents (a worktree sits deeper)."""
    chosen = os.environ.get("GBTRACK_OPENAPI_UPSTREAM")
    if chosen:
        return Path(chosen)
    for parent in REPO.parents:
        candidate = parent / "shared" / "gameball-openapi.json"
        if candidate.is_file():
            return candidate
    return None


def test_the_copy_matches_the_shared_file() -> None:
    shared = _upstream()
    if shared is None:
        pytest.skip(
            "the upstream Gameball spec is not here (shared/gameball-openapi.json beside "
            "the checkout); set GBTRACK_OPENAPI_UPSTREAM=/path/to/gameball-openapi.json "
            "to compare tests/data's copy with it"
        )
    copy = REPO / "tests" / "data" / "gameball-openapi.json"
    assert json.loads(copy.read_text("utf-8")) == json.loads(shared.read_text("utf-8"))


def test_events_schema_is_event_request(document: dict[str, Any]) -> None:
    post = document["paths"]["/api/v4.0/integrations/events"]["post"]
    schema = post["requestBody"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/EventRequest"}


def test_the_validators_can_fail(
    events_validator: jsonschema.Draft202012Validator,
    batch_validator: jsonschema.Draft202012Validator,
) -> None:
    assert not events_validator.is_valid({"events": {"a": {}}})
    assert not events_validator.is_valid({"customerId": "c", "events": {"a": 1}})
    assert not events_validator.is_valid({"customerId": 5, "events": {}})
    assert not batch_validator.is_valid({"body": [{"customerId": "c"}]})
    assert not batch_validator.is_valid({"body": {"customerId": "c", "events": {}}})


def _wire_bodies(batches: list[EventBatch]) -> tuple[list[Any], list[Any]]:
    """Send through a real client over MockTransport; return the JSON bodies it put on the wire."""
    events: list[Any] = []
    bulk: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        target = bulk if request.url.path.endswith("/batch/events") else events
        target.append(json.loads(request.content))
        return httpx.Response(200, json={"jobId": 1})

    with GameballClient(
        "key", secret_key="secret", transport=httpx.MockTransport(handler)
    ) as client:
        for batch in batches:
            assert client.send(batch).delivered
        assert client.create_batch(batches).delivered
    return events, bulk


# Keys never hold control characters (refused at decoration and by validation alike).
_text = st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=12)
_value = st.one_of(
    st.text(max_size=20),
    st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1),  # Limits' default range
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
)


@st.composite
def _events(draw: st.DrawFn) -> Event:
    return Event(
        name=draw(st.sampled_from(["purchase", "review", "login", "ساعة"])),
        customer_id=draw(st.sampled_from(["c1", "c2", "12345"])),
        email=draw(st.sampled_from([None, "j@example.com"])),
        mobile=draw(st.sampled_from([None, "+201000000000"])),
        metadata=draw(st.dictionaries(_text, _value, max_size=4)),
        session_token=draw(st.sampled_from([None, SecretStr("tok")])),
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(_events(), min_size=1, max_size=20))
def test_wire_bodies_validate(
    events_validator: jsonschema.Draft202012Validator,
    batch_validator: jsonschema.Draft202012Validator,
    events: list[Event],
) -> None:
    batches = coalesce(events)
    sent, bulk = _wire_bodies(batches)
    assert len(sent) == len(batches)
    for body in sent:
        events_validator.validate(body)
    assert len(bulk) == 1
    batch_validator.validate(bulk[0])
    assert len(bulk[0]["body"]) == len(batches)
