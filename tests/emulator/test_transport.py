"""In-process transports: the same behaviour as the HTTP server, without sockets."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from gbtrack.emulator import GameballEmulator

from .conftest import BATCH, KEYS, V40, V41, assert_envelope, batch_path

EVENT = {"customerId": "c", "events": {"e": {"n": 1}}}
BASE = "http://gameball.emulator"


@pytest.fixture
def emulator() -> Iterator[GameballEmulator]:
    emulator = GameballEmulator(rate_limits=[(2, 60.0)])  # never started: no sockets
    yield emulator
    emulator.stop()  # stops the batch worker a delayed job may have started


def test_sync_transport_speaks_the_same_api(emulator: GameballEmulator) -> None:
    with httpx.Client(transport=emulator.transport(), base_url=BASE, headers=KEYS) as http:
        ok = http.post(V40, json=EVENT)
        assert ok.status_code == 200
        assert ok.json() == {"success": True, "message": "Events processed"}
        assert ok.headers["x-request-id"] == emulator.events[0].request_id
        assert_envelope(http.post(V41, json=EVENT, headers={"SecretKey": ""}), 401, 1001)
        job_id = http.post(BATCH, json={"body": [EVENT, {"customerId": "x"}]}).json()["jobId"]
        status = http.get(batch_path(job_id, "status")).json()
        assert (status["status"], status["failedItems"]) == ("completed", 1)
        assert_envelope(http.post(V40, json=EVENT), 429, 429)  # 2 per 60 s; 401s do not count
        assert http.get("/_emulator/stats").json()["events"] == 2
    assert not emulator.running
    assert emulator.requests[("v4.0/events", 429)] == 1


def test_sync_transport_faults(emulator: GameballEmulator) -> None:
    emulator.set_rate_limits(None)
    faults = emulator.faults
    with httpx.Client(transport=emulator.transport(), base_url=BASE, headers=KEYS) as http:
        faults.fail_next(status=503, retry_after=1)
        response = http.post(V40, json=EVENT)
        assert_envelope(response, 503, 5003)
        assert response.headers["retry-after"] == "1"
        for when in ("before_body", "after_body"):
            faults.drop_next(when=when)  # type: ignore[arg-type]
            with pytest.raises(httpx.RemoteProtocolError):
                http.post(V40, json=EVENT)
        faults.drop_next(when="reset")
        with pytest.raises(httpx.ReadError):
            http.post(V40, json=EVENT)
        assert emulator.event_count == 0
        faults.set_latency(0.3, count=1)
        with pytest.raises(httpx.ReadTimeout):
            http.post(V40, json=EVENT, timeout=httpx.Timeout(5.0, read=0.05))
        assert emulator.event_count == 1  # processed although the client timed out
        faults.set_latency(0.01, count=1)
        assert http.post(V40, json=EVENT).status_code == 200
        faults.drop_next(when="after_processing")
        with pytest.raises(httpx.RemoteProtocolError):
            http.post(V40, json=EVENT)
        assert emulator.event_count == 3  # processed, then no answer
    assert emulator.requests[("v4.0/events", 0)] == 4


async def test_async_transport(emulator: GameballEmulator) -> None:
    transport = emulator.async_transport()
    async with httpx.AsyncClient(transport=transport, base_url=BASE, headers=KEYS) as http:
        assert (await http.post(V41, json=EVENT, headers={"X-GB-TOKEN": "t"})).status_code == 200
        emulator.faults.drop_next(when="reset")
        with pytest.raises(httpx.ReadError):
            await http.post(V40, json=EVENT)
        emulator.faults.set_latency(0.3, count=1)
        with pytest.raises(httpx.ReadTimeout):
            await http.post(V40, json=EVENT, timeout=httpx.Timeout(5.0, read=0.05))
        await_reset = await http.post("/_emulator/reset")
        assert await_reset.json() == {"ok": True}
    assert emulator.event_count == 0


def test_delayed_batches_in_process(emulator: GameballEmulator) -> None:
    emulator.batch_delay = 0.1
    with httpx.Client(transport=emulator.transport(), base_url=BASE, headers=KEYS) as http:
        job_id = http.post(BATCH, json={"body": [EVENT]}).json()["jobId"]
        assert emulator.wait_for_events(1, timeout=10)
        assert http.get(batch_path(job_id, "status")).json()["status"] == "completed"
