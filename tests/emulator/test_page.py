"""The live page (``GET /``) and its feed (``GET /_emulator/live``), without a browser."""

from __future__ import annotations

import re
from types import SimpleNamespace

import httpx
import pytest

from gbtrack.emulator import GameballEmulator
from gbtrack.emulator._server import _Handler, _is_loopback_host

from .conftest import BATCH, V40, V41, assert_envelope

HOSTILE = "<script>alert(1)</script>"


def test_page_is_self_contained_html(bare: httpx.Client) -> None:
    page = bare.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["x-content-type-options"] == "nosniff"
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "connect-src 'self'" in csp
    assert re.search(r"script-src 'sha256-[A-Za-z0-9+/=]+'$", csp.split(";")[1].strip())
    html = page.text
    # No external assets: every src/href is a data: URL; no script or style from elsewhere.
    assert re.findall(r'(?:src|href)="([^"]*)"', html) == ["data:,"]
    assert "innerHTML" not in html
    assert "insertAdjacentHTML" not in html
    assert "document.write" not in html
    assert "textContent" in html
    assert bare.get("/_emulator").text == html  # the page also answers at /_emulator


def test_feed_lists_events_newest_first_with_their_fate(
    gameball_emulator: GameballEmulator, client: httpx.Client
) -> None:
    client.post(V40, json={"customerId": "c-1", "email": "a@b.c", "events": {"a": {"n": 1}}})
    client.post(V41, json={"customerId": "c-2", "events": {"b": {}}}, headers={"X-GB-TOKEN": "t"})
    client.post(BATCH, json={"body": [{"customerId": "c-3", "events": {"c": {"x": True}}}]})
    gameball_emulator.faults.drop_next(when="after_processing")
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(V40, json={"customerId": "c-4", "events": {"d": {}}})
    feed = client.get("/_emulator/live")
    assert feed.status_code == 200
    assert feed.headers["content-type"] == "application/json"
    data = feed.json()
    events = data["events"]
    assert [(e["customerId"], e["name"]) for e in events] == [
        ("c-4", "d"),
        ("c-3", "c"),
        ("c-2", "b"),
        ("c-1", "a"),
    ]
    assert [(e["version"], e["batched"], e["status"], e["ok"]) for e in events] == [
        ("v4.0", False, "processed, answer dropped", False),
        ("batch", True, "batch job completed", True),
        ("v4.1", False, "200 answered", True),
        ("v4.0", False, "200 answered", True),
    ]
    assert events[1]["batchJobId"] == 1
    assert events[2]["hasSessionToken"] is True
    assert events[3]["metadata"] == {"n": 1}
    assert events[3]["email"] == "a@b.c"
    assert data["matching"] == 4
    assert data["customer"] == ""
    assert data["stats"]["events"] == 4
    assert [(f["endpoint"], f["fault"], f["status"]) for f in data["injected"]] == [
        ("v4.0/events", "drop after_processing", 0)
    ]


def test_feed_filters_by_customer_and_limits(
    gameball_emulator: GameballEmulator, client: httpx.Client
) -> None:
    for customer in ("alice-1", "bob-1", "ALICE-2", "carol"):
        client.post(V40, json={"customerId": customer, "events": {"e": {}}})
    data = client.get("/_emulator/live", params={"customer": " alice "}).json()
    assert [e["customerId"] for e in data["events"]] == ["ALICE-2", "alice-1"]
    assert (data["matching"], data["customer"]) == (2, "alice")
    data = client.get("/_emulator/live", params={"limit": 1}).json()
    assert ([e["customerId"] for e in data["events"]], data["matching"]) == (["carol"], 4)
    assert client.get("/_emulator/live", params={"limit": 0}).json()["events"] == []
    assert_envelope(client.get("/_emulator/live", params={"limit": "x"}), 400, 3003)


def test_page_and_feed_are_not_counted(
    gameball_emulator: GameballEmulator, bare: httpx.Client
) -> None:
    for _ in range(3):
        assert bare.get("/").status_code == 200
        assert bare.get("/_emulator/live").status_code == 200
    assert gameball_emulator.requests == {}
    assert gameball_emulator.request_log == []
    bare.get("/_emulator/stats")
    assert gameball_emulator.requests == {("_emulator", 200): 1}


def _handler_for(emulator: GameballEmulator, peer: str) -> SimpleNamespace:
    """What ``_Handler._control`` reads: the peer address and the server's emulator."""
    return SimpleNamespace(client_address=(peer, 50000), server=SimpleNamespace(emulator=emulator))


@pytest.mark.parametrize("path", ["/", "/_emulator/live", "/_emulator/stats"])
@pytest.mark.parametrize("peer", ["10.0.0.7", "192.168.1.2", "2001:db8::1", "::ffff:10.0.0.7"])
def test_non_loopback_peers_get_403(path: str, peer: str) -> None:
    emulator = GameballEmulator()
    incoming = emulator._state.begin("GET", path, {"host": "127.0.0.1:8080"})
    response = _Handler._control(_handler_for(emulator, peer), incoming, b"")  # type: ignore[arg-type]
    assert (response.status, response.code) == (403, 1002)
    assert b"<" not in response.body  # a JSON envelope, never the page
    assert emulator.requests == {("_emulator", 403): 1}  # refusals are counted


@pytest.mark.parametrize("peer", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"])
def test_loopback_peers_get_the_page(peer: str) -> None:
    emulator = GameballEmulator()
    incoming = emulator._state.begin("GET", "/", {"host": "localhost:8080"})
    response = _Handler._control(_handler_for(emulator, peer), incoming, b"")  # type: ignore[arg-type]
    assert response.status == 200
    assert response.content_type == "text/html; charset=utf-8"


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "10.0.0.1:80", ""])
def test_page_refuses_non_loopback_host_names(bare: httpx.Client, host: str) -> None:
    """DNS rebinding: a loopback peer whose browser names another site gets 403."""
    for path in ("/", "/_emulator/live"):
        assert_envelope(bare.get(path, headers={"Host": host}), 403, 1002)
    assert bare.get("/_emulator/stats", headers={"Host": "evil.example"}).status_code == 200


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1:8080", True),
        ("127.0.0.1", True),
        ("localhost:1", True),
        ("LOCALHOST", True),
        ("app.localhost:1", True),
        ("[::1]:8080", True),
        ("[::1]", True),
        ("::1", True),
        ("[::1", False),
        ("localhost.evil.example", False),
        ("10.0.0.1", False),
        ("gameball", False),
    ],
)
def test_loopback_host_names(host: str, loopback: bool) -> None:
    assert _is_loopback_host(host) is loopback


def test_in_process_transport_serves_the_page() -> None:
    emulator = GameballEmulator()
    with httpx.Client(transport=emulator.transport(), base_url="http://gameball") as http:
        page = http.get("/")
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert "content-security-policy" in page.headers
        assert http.get("/_emulator/live").json()["events"] == []


def test_hostile_values_stay_data_in_the_feed(
    gameball_emulator: GameballEmulator, client: httpx.Client
) -> None:
    client.post(V40, json={"customerId": HOSTILE, "events": {HOSTILE: {HOSTILE: HOSTILE}}})
    event = client.get("/_emulator/live").json()["events"][0]
    assert (event["customerId"], event["name"], event["metadata"]) == (
        HOSTILE,
        HOSTILE,
        {HOSTILE: HOSTILE},
    )


def test_injected_faults_are_recorded(gameball_emulator: GameballEmulator) -> None:
    emulator = gameball_emulator
    emulator.faults.fail_next(status=503)
    emulator.faults.set_latency(0.01, count=1)
    emulator.faults.fail_batch_items(customer_ids=["c-9"])
    keys = {"APIKey": "test-api-key", "SecretKey": "test-secret-key"}
    with httpx.Client(base_url=emulator.url, headers=keys) as http:
        http.post(V40, json={"customerId": "c-1", "events": {"e": {}}})
        body = [
            {"customerId": "c-1", "events": {"e": {}}},
            {"customerId": "c-9", "events": {"e": {}}},
        ]
        http.post(BATCH, json={"body": body})
    assert [(f["endpoint"], f["fault"], f["status"]) for f in emulator.injected_faults] == [
        ("v4.0/events", "fail 503/5003, latency 0.01 s", 503),
        ("batch/events", "batch item 1 (c-9) failed with 5003", None),
    ]
    emulator.reset()
    assert emulator.injected_faults == []
