"""v4.0 / v4.1 events: auth rules, validation codes, recording."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from gbtrack.emulator import GameballEmulator

from .conftest import API_KEY, BATCH, KEYS, SECRET_KEY, V40, V41, assert_envelope

EVENT = {"customerId": "c-1", "events": {"purchase": {"amount": 9.5, "sku": "A", "gift": False}}}


def test_v40_accepts_and_records(gameball_emulator: GameballEmulator, bare: httpx.Client) -> None:
    body = {
        "customerId": "c-1",
        "email": "john@example.com",
        "mobile": "+1234567890",
        "events": {"purchase": {"amount": 149.99, "n": 2, "ok": True}, "review": {}},
    }
    response = bare.post(V40, json=body, headers={"apikey": API_KEY, "x-gb-agent": "gbtrack/1"})
    assert response.status_code == 200
    assert response.json() == {"success": True, "message": "Events processed"}
    assert gameball_emulator.wait_for_events(2, timeout=5)
    purchase, review = gameball_emulator.events
    assert (purchase.customer_id, purchase.name, purchase.metadata) == (
        "c-1",
        "purchase",
        {"amount": 149.99, "n": 2, "ok": True},
    )
    assert (review.name, review.metadata) == ("review", {})
    assert purchase.email == "john@example.com"
    assert purchase.mobile == "+1234567890"
    assert purchase.version == "v4.0"
    assert not purchase.has_session_token
    assert purchase.request_id == response.headers["x-request-id"]
    assert purchase.batch_job_id is None
    (record,) = gameball_emulator.request_log
    assert record.agent == "gbtrack/1"
    assert record.has_api_key
    assert not record.has_secret_key
    assert gameball_emulator.requests == {("v4.0/events", 200): 1}


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, 1000),
        ({"APIKey": "wrong"}, 1000),
        ({"APIKey": ""}, 1000),
        ({"SecretKey": SECRET_KEY}, 1000),
    ],
)
def test_v40_needs_the_api_key(
    gameball_emulator: GameballEmulator, bare: httpx.Client, headers: dict[str, str], code: int
) -> None:
    body = assert_envelope(bare.post(V40, json=EVENT, headers=headers), 401, code)
    assert body["type"] == "AUTHENTICATION_ERROR"
    assert gameball_emulator.events == []


def test_header_names_are_case_insensitive(bare: httpx.Client) -> None:
    response = bare.post(V41, json=EVENT, headers={"APIKEY": API_KEY, "secretKEY": SECRET_KEY})
    assert response.status_code == 200


def test_v40_ignores_a_wrong_secret_key_unless_high_security(
    gameball_emulator: GameballEmulator, bare: httpx.Client
) -> None:
    headers = {"APIKey": API_KEY, "SecretKey": "wrong"}
    assert bare.post(V40, json=EVENT, headers=headers).status_code == 200
    gameball_emulator.high_security = True
    assert_envelope(bare.post(V40, json=EVENT, headers={"APIKey": API_KEY}), 401, 1001)
    assert_envelope(bare.post(V40, json=EVENT, headers=headers), 401, 1000)
    ok = {"APIKey": API_KEY, "SecretKey": SECRET_KEY}
    assert bare.post(V40, json=EVENT, headers=ok).status_code == 200
    assert gameball_emulator.event_count == 2


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, 1000),
        ({"APIKey": "wrong", "SecretKey": SECRET_KEY}, 1000),
        ({"APIKey": API_KEY}, 1001),
        ({"APIKey": API_KEY, "SecretKey": ""}, 1001),
        ({"APIKey": API_KEY, "SecretKey": "wrong"}, 1000),
    ],
)
def test_v41_needs_both_keys(
    gameball_emulator: GameballEmulator, bare: httpx.Client, headers: dict[str, str], code: int
) -> None:
    assert_envelope(bare.post(V41, json=EVENT, headers=headers), 401, code)
    assert gameball_emulator.event_count == 0


def test_emulator_without_secret_key_refuses_v41(
    gameball_emulator_factory: object,
) -> None:
    emulator = gameball_emulator_factory(secret_key=None)  # type: ignore[operator]
    headers = {"APIKey": API_KEY, "SecretKey": SECRET_KEY}
    with httpx.Client(base_url=emulator.url) as http:
        assert_envelope(http.post(V41, json=EVENT, headers=headers), 401, 1000)


def test_v41_records_the_token_presence_never_its_value(
    gameball_emulator: GameballEmulator, client: httpx.Client
) -> None:
    token = "eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0.secret-token-value"
    response = client.post(V41, json=EVENT, headers={"X-GB-TOKEN": token})
    assert response.status_code == 200
    (event,) = gameball_emulator.events
    assert event.version == "v4.1"
    assert event.has_session_token
    assert gameball_emulator.request_log[0].has_session_token
    dumped = json.dumps(client.get("/_emulator/events").json())
    dumped += json.dumps(client.get("/_emulator/requests").json())
    dumped += json.dumps(client.get("/_emulator/stats").json())
    dumped += repr(gameball_emulator.events) + repr(gameball_emulator.request_log)
    assert "secret-token-value" not in dumped
    assert SECRET_KEY not in dumped
    assert API_KEY not in dumped
    assert API_KEY not in repr(gameball_emulator)
    assert SECRET_KEY not in repr(gameball_emulator)


def test_content_type_must_be_json(client: httpx.Client) -> None:
    body = json.dumps(EVENT).encode()
    assert_envelope(
        client.post(V40, content=body, headers={"content-type": "text/plain"}), 415, 3013
    )
    assert_envelope(client.post(V40, content=body), 415, 3013)  # no content type at all
    utf8 = {"content-type": "Application/JSON; charset=utf-8"}
    assert client.post(V40, content=body, headers=utf8).status_code == 200


@pytest.mark.parametrize(
    "raw",
    [b"{", b"", b"not json", b'{"customerId": "c", "events": {"e": {"v": NaN}}}', b"\xff\xfe{"],
)
def test_malformed_json_is_400_3016(client: httpx.Client, raw: bytes) -> None:
    headers = {"content-type": "application/json"}
    assert_envelope(client.post(V40, content=raw, headers=headers), 400, 3016)


@pytest.mark.parametrize("body", [[], "text", 3, None])
def test_a_body_that_is_not_an_object_is_400_3016(client: httpx.Client, body: object) -> None:
    raw = json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    assert_envelope(client.post(V40, content=raw, headers=headers), 400, 3016)


@pytest.mark.parametrize(
    "body",
    [{"events": {"e": {}}}, {"customerId": "c"}, {}, {"email": "a@b.c"}],
)
def test_missing_fields_are_400_3000(client: httpx.Client, body: object) -> None:
    assert_envelope(client.post(V40, json=body), 400, 3000)


@pytest.mark.parametrize(
    "body", [{"customerId": None, "events": {"e": {}}}, {"customerId": "c", "events": None}]
)
def test_null_fields_are_422_3001(client: httpx.Client, body: object) -> None:
    assert_envelope(client.post(V40, json=body), 422, 3001)


@pytest.mark.parametrize(
    "body",
    [
        {"customerId": "", "events": {"e": {}}},
        {"customerId": "   ", "events": {"e": {}}},
        {"customerId": 42, "events": {"e": {}}},
        {"customerId": "c", "events": {}},
        {"customerId": "c", "events": ["e"]},
        {"customerId": "c", "events": "e"},
        {"customerId": "c", "events": {"": {}}},
        {"customerId": "c", "events": {"e": None}},
        {"customerId": "c", "events": {"e": "meta"}},
        {"customerId": "c", "events": {"e": [1]}},
        {"customerId": "c", "events": {"e": {"k": None}}},
        {"customerId": "c", "events": {"e": {"k": [1, 2]}}},
        {"customerId": "c", "events": {"e": {"k": {"nested": 1}}}},
        {"customerId": "c", "events": {"e": {}}, "email": 5},
        {"customerId": "c", "events": {"e": {}}, "mobile": ["1"]},
    ],
)
def test_invalid_values_are_422_3003(
    gameball_emulator: GameballEmulator, client: httpx.Client, body: object
) -> None:
    envelope = assert_envelope(client.post(V41, json=body), 422, 3003)
    assert envelope["type"] == "VALIDATION_ERROR"
    assert gameball_emulator.event_count == 0


def test_extra_fields_and_null_email_are_accepted(
    gameball_emulator: GameballEmulator, client: httpx.Client
) -> None:
    body = {"customerId": "c", "events": {"e": {"": "empty key ok"}}, "email": None, "x": [1]}
    assert client.post(V40, json=body).status_code == 200
    (event,) = gameball_emulator.events
    assert event.email is None
    assert event.metadata == {"": "empty key ok"}


def test_unknown_paths_and_methods(client: httpx.Client) -> None:
    assert_envelope(client.post("/api/v4.0/integrations/nothing", json=EVENT), 404, 3017)
    assert_envelope(client.get(V40), 405, 3013)
    assert_envelope(client.put(V41, json=EVENT), 405, 3013)


def test_chunked_bodies_are_read(gameball_emulator: GameballEmulator, client: httpx.Client) -> None:
    payload = json.dumps(EVENT).encode()

    def chunks() -> object:
        yield payload[:10]
        yield payload[10:]

    response = client.post(
        V40,
        content=chunks(),
        headers={"content-type": "application/json"},  # type: ignore[arg-type]
    )
    assert response.status_code == 200
    assert gameball_emulator.event_count == 1


def test_keep_alive_serves_many_requests_on_one_connection(
    gameball_emulator: GameballEmulator, client: httpx.Client
) -> None:
    for i in range(20):
        assert (
            client.post(V40, json={"customerId": f"c{i}", "events": {"e": {}}}).status_code == 200
        )
    assert gameball_emulator.wait_for_events(20, timeout=5)
    assert [e.customer_id for e in gameball_emulator.events] == [f"c{i}" for i in range(20)]


def test_wait_for_events_times_out(gameball_emulator: GameballEmulator) -> None:
    assert gameball_emulator.wait_for_events(1, timeout=0.05) is False


def test_wait_for_events_wakes_on_arrival_from_another_thread(
    gameball_emulator: GameballEmulator, client: httpx.Client
) -> None:
    import threading

    thread = threading.Thread(target=lambda: client.post(V40, json=EVENT))
    thread.start()
    try:
        assert gameball_emulator.wait_for_events(1, timeout=10)
    finally:
        thread.join()


def test_max_events_keeps_the_newest_and_exact_counts(gameball_emulator_factory: object) -> None:
    emulator: GameballEmulator = gameball_emulator_factory(max_events=3)  # type: ignore[operator]
    with httpx.Client(base_url=emulator.url, headers={"APIKey": API_KEY}) as http:
        for i in range(5):
            http.post(V40, json={"customerId": f"c{i}", "events": {"e": {}}})
    assert emulator.event_count == 5
    assert [e.customer_id for e in emulator.events] == ["c2", "c3", "c4"]


def test_min_version_refuses_v40_events_only(gameball_emulator_factory: Any) -> None:
    emulator = gameball_emulator_factory(min_version="4.1")
    assert emulator.min_version == "4.1"
    with httpx.Client(base_url=emulator.url, headers=KEYS) as http:
        body = assert_envelope(http.post(V40, json=EVENT), 403, 1003)
        assert "minimum API version" in str(body["message"])
        # The keys are checked first: a wrong key is still reported as such.
        assert_envelope(http.post(V40, json=EVENT, headers={"APIKey": "nope"}), 401, 1000)
        assert http.post(V41, json=EVENT).status_code == 200
        assert http.post(BATCH, json={"body": [EVENT]}).status_code == 200
    assert [e.version for e in emulator.events] == ["v4.1", "batch"]
    assert emulator.stats()["minVersion"] == "4.1"


def test_min_version_values(gameball_emulator_factory: Any) -> None:
    for ok in (None, "4.0", "v4.1"):
        gameball_emulator_factory(min_version=ok)
    with pytest.raises(ValueError, match="min_version"):
        gameball_emulator_factory(min_version="5")
