"""The /_emulator inspection and control endpoints, and the Python inspection API."""

from __future__ import annotations

import httpx
import pytest

from gbtrack.emulator import GameballEmulator

from .conftest import BATCH, V40, V41, assert_envelope, batch_path

EVENT = {"customerId": "c-1", "email": "a@b.c", "events": {"e": {"n": 1}}}


def test_events_and_stats_endpoints(
    gameball_emulator: GameballEmulator, client: httpx.Client
) -> None:
    client.post(V40, json=EVENT)
    client.post(V41, json=EVENT, headers={"X-GB-TOKEN": "tok"})
    client.post(V40, json={"customerId": ""})
    job_id = client.post(BATCH, json={"body": [EVENT]}).json()["jobId"]
    events = client.get("/_emulator/events").json()
    assert [(e["customerId"], e["name"], e["version"]) for e in events] == [
        ("c-1", "e", "v4.0"),
        ("c-1", "e", "v4.1"),
        ("c-1", "e", "batch"),
    ]
    assert events[0] == {**gameball_emulator.events[0].to_dict()}
    assert events[1]["hasSessionToken"] is True
    assert events[2]["batchJobId"] == job_id
    assert events[0]["metadata"] == {"n": 1}
    assert events[0]["email"] == "a@b.c"
    stats = client.get("/_emulator/stats").json()
    assert stats["events"] == 3
    assert stats["requests"]["v4.0/events"] == {"200": 1, "400": 1}
    assert stats["requests"]["v4.1/events"] == {"200": 1}
    assert stats["requests"]["batch/events"] == {"200": 1}
    assert stats["batchJobs"] == {"total": 1, "completed": 1}
    assert stats["rateLimits"] == [[100, 1.0], [1200, 30.0]]
    assert client.get(f"/_emulator/batches/{job_id}").json()["status"] == "completed"
    assert_envelope(client.get("/_emulator/batches/12345"), 404, 3017)
    records = client.get("/_emulator/requests").json()
    assert records[0]["endpoint"] == "v4.0/events"
    assert records[0]["status"] == 200
    assert records[2]["code"] == 3000
    assert client.get("/_emulator/health").json() == {"status": "ok"}


def test_control_needs_no_auth(gameball_emulator: GameballEmulator, bare: httpx.Client) -> None:
    assert bare.get("/_emulator/stats").status_code == 200
    assert bare.post("/_emulator/reset").status_code == 200


def test_fault_control_endpoints(gameball_emulator: GameballEmulator, client: httpx.Client) -> None:
    ok = {"ok": True}
    fail = {"count": 1, "status": 503, "retryAfter": 1}
    assert client.post("/_emulator/faults/fail", json=fail).json() == ok
    assert client.post("/_emulator/faults/fail", json={"status": 422, "code": 2001}).json() == ok
    assert client.post("/_emulator/faults/drop", json={"when": "reset"}).json() == ok
    assert client.post("/_emulator/faults/drop", json={"when": "after_body"}).json() == ok
    queue = client.get("/_emulator/stats").json()["faults"]["queue"]
    assert [entry["fault"]["kind"] for entry in queue] == ["fail", "fail", "drop", "drop"]
    response = client.post(V40, json=EVENT)
    assert_envelope(response, 503, 5003)
    assert response.headers["retry-after"] == "1"
    assert_envelope(client.post(V40, json=EVENT), 422, 2001)
    with pytest.raises(httpx.ReadError):
        client.post(V40, json=EVENT)
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(V40, json=EVENT)
    client.post("/_emulator/faults/fail", json={"count": 5})
    client.post("/_emulator/faults/latency", json={"seconds": 3, "count": 2})
    client.post("/_emulator/faults/batch-items", json={"customerIds": ["x"], "nextItems": 1})
    faults = client.get("/_emulator/stats").json()["faults"]
    assert faults["latency"] == 3.0
    assert faults["latencyRemaining"] == 2
    assert faults["batchItemCustomerIds"] == ["x"]
    assert faults["batchNextItems"] == 1
    assert client.post("/_emulator/faults/clear").json() == ok
    assert gameball_emulator.faults.pending == 0
    assert client.post(V40, json=EVENT).status_code == 200


def test_batch_item_faults_over_http(
    gameball_emulator: GameballEmulator, client: httpx.Client
) -> None:
    args = {"customerIds": ["c-1"], "code": 3003, "message": "refused"}
    client.post("/_emulator/faults/batch-items", json=args)
    job_id = client.post(BATCH, json={"body": [EVENT]}).json()["jobId"]
    (error,) = client.get(batch_path(job_id, "status")).json()["errors"]
    assert (error["code"], error["message"]) == (3003, "refused")


def test_rate_limit_and_config_control(
    gameball_emulator: GameballEmulator, client: httpx.Client
) -> None:
    client.post("/_emulator/rate-limits", json={"limits": [[1, 60]]})
    assert gameball_emulator.rate_limits == ((1, 60.0),)
    assert client.post(V40, json=EVENT).status_code == 200
    assert client.post(V40, json=EVENT).status_code == 429
    client.post("/_emulator/rate-limits", json={"limits": None})
    assert gameball_emulator.rate_limits is None
    assert client.post(V40, json=EVENT).status_code == 200
    client.post("/_emulator/config", json={"highSecurity": True, "batchDelay": 0.5})
    assert gameball_emulator.high_security
    assert gameball_emulator.batch_delay == 0.5
    assert_envelope(client.post(V40, json=EVENT, headers={"SecretKey": ""}), 401, 1001)
    client.post("/_emulator/config", json={"highSecurity": False, "minVersion": "4.1"})
    assert gameball_emulator.min_version == "4.1"
    assert_envelope(client.post(V40, json=EVENT), 403, 1003)
    client.post("/_emulator/config", json={"minVersion": None})
    assert client.post(V40, json=EVENT).status_code == 200


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/_emulator/faults/drop", {"when": "sometimes"}),
        ("/_emulator/faults/fail", {"status": 200}),
        ("/_emulator/faults/fail", {"count": "many"}),
        ("/_emulator/faults/latency", {"seconds": -1}),
        ("/_emulator/faults/batch-items", {"customerIds": "x"}),
        ("/_emulator/rate-limits", {}),
        ("/_emulator/config", {"minVersion": "3.0"}),
        ("/_emulator/rate-limits", {"limits": [[0, 1]]}),
        ("/_emulator/reset", [1]),
    ],
)
def test_bad_control_requests_are_400(client: httpx.Client, path: str, body: object) -> None:
    assert_envelope(client.post(path, json=body), 400, 3003)


def test_unknown_control_route(client: httpx.Client) -> None:
    assert_envelope(client.get("/_emulator/nothing"), 404, 3017)
    assert_envelope(client.post("/_emulator/events"), 404, 3017)


def test_reset_forgets_everything(
    gameball_emulator: GameballEmulator, client: httpx.Client
) -> None:
    client.post(V40, json=EVENT)
    client.post(BATCH, json={"body": [EVENT]})
    gameball_emulator.faults.fail_next(3)
    assert client.post("/_emulator/reset").status_code == 200
    assert gameball_emulator.events == []
    assert gameball_emulator.event_count == 0
    assert gameball_emulator.faults.pending == 0
    assert gameball_emulator.max_requests_in_window(60.0) == 0
    assert gameball_emulator.stats()["batchJobs"] == {"total": 0}
    # the reset request itself is the only one counted afterwards
    assert gameball_emulator.requests == {("_emulator", 200): 1}
    gameball_emulator.reset()
    assert gameball_emulator.requests == {}
    assert gameball_emulator.wait_for_events(0, timeout=0)


def test_control_is_refused_to_non_loopback_peers() -> None:
    from gbtrack.emulator._server import _is_loopback

    assert _is_loopback("127.0.0.1")
    assert _is_loopback("::1")
    assert _is_loopback("::ffff:127.0.0.1")
    assert not _is_loopback("10.0.0.1")
    assert not _is_loopback("192.168.1.2")
    assert not _is_loopback("localhost-ish")


def test_lifecycle(gameball_emulator_factory: object) -> None:
    emulator = GameballEmulator()
    assert not emulator.running
    assert "stopped" in repr(emulator)
    with pytest.raises(RuntimeError):
        _ = emulator.url
    with emulator:
        assert emulator.running
        assert emulator.url == f"http://127.0.0.1:{emulator.port}"
        assert emulator.url in repr(emulator)
        with pytest.raises(RuntimeError):
            emulator.start()
        with httpx.Client() as http:
            assert http.get(f"{emulator.url}/_emulator/health").status_code == 200
    assert not emulator.running
    emulator.stop()  # idempotent
    with pytest.raises(httpx.ConnectError), httpx.Client() as http:
        http.get(f"http://127.0.0.1:{emulator.port}/_emulator/health")


def test_stop_closes_idle_keep_alive_connections(gameball_emulator_factory: object) -> None:
    import threading

    emulator = GameballEmulator().start()
    with httpx.Client(base_url=emulator.url) as http:
        assert http.get("/_emulator/health").status_code == 200  # connection stays open
        before = threading.active_count()
        emulator.stop()
        assert threading.active_count() < before
    assert emulator.internal_errors == []


def test_ipv6_loopback(gameball_emulator_factory: object) -> None:
    import socket

    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        emulator = GameballEmulator("::1").start()
    except OSError:
        pytest.skip("IPv6 loopback unavailable")
    try:
        assert emulator.url.startswith("http://[::1]:")
        with httpx.Client(base_url=emulator.url) as http:
            assert http.get("/_emulator/health").status_code == 200
    finally:
        emulator.stop()
