"""Fault injection: failed answers, dropped connections, latency, ordering."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest

from gbtrack.emulator import FailFault, FaultPlan, GameballEmulator

from .conftest import BATCH, KEYS, V40, V41, assert_envelope, batch_path

EVENT = {"customerId": "c", "events": {"e": {"n": 1}}}


@pytest.mark.parametrize(
    ("status", "code", "expected_code"),
    [(503, None, 5003), (500, None, 5000), (429, None, 429), (422, 2001, 2001), (422, None, 2001)],
)
def test_fail_next_answers_the_envelope_then_recovers(
    gameball_emulator: GameballEmulator,
    client: httpx.Client,
    status: int,
    code: int | None,
    expected_code: int,
) -> None:
    gameball_emulator.faults.fail_next(2, status=status, code=code)
    assert gameball_emulator.faults.pending == 2
    assert_envelope(client.post(V40, json=EVENT), status, expected_code)
    assert_envelope(client.post(V41, json=EVENT), status, expected_code)
    assert client.post(V40, json=EVENT).status_code == 200
    assert gameball_emulator.event_count == 1
    assert gameball_emulator.faults.pending == 0


def test_fail_next_with_retry_after_and_message(
    gameball_emulator: GameballEmulator, client: httpx.Client
) -> None:
    gameball_emulator.faults.fail_next(status=503, retry_after=2.5, message="maintenance")
    response = client.post(BATCH, json={"body": [EVENT]})
    body = assert_envelope(response, 503, 5003)
    assert response.headers["retry-after"] == "3"
    assert body["message"] == "maintenance"


def test_faults_precede_auth_and_skip_non_event_endpoints(
    gameball_emulator: GameballEmulator, client: httpx.Client, bare: httpx.Client
) -> None:
    job_id = client.post(BATCH, json={"body": [EVENT]}).json()["jobId"]
    gameball_emulator.faults.fail_next(status=500)
    assert client.get(batch_path(job_id, "status")).status_code == 200  # not consumed
    assert client.get("/_emulator/stats").status_code == 200  # not consumed
    assert_envelope(bare.post(V40, json=EVENT), 500, 5000)  # before the key check


def test_faults_are_consumed_in_arming_order(
    gameball_emulator: GameballEmulator, client: httpx.Client
) -> None:
    faults = gameball_emulator.faults
    faults.fail_next(status=503)
    faults.drop_next(when="reset")
    faults.fail_next(status=422, code=2001)
    assert client.post(V40, json=EVENT).status_code == 503
    with pytest.raises(httpx.ReadError):
        client.post(V40, json=EVENT)
    assert client.post(V40, json=EVENT).status_code == 422
    assert client.post(V40, json=EVENT).status_code == 200


def test_drop_after_body_closes_without_answer(
    gameball_emulator: GameballEmulator, client: httpx.Client
) -> None:
    gameball_emulator.faults.drop_next(when="after_body")
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(V40, json=EVENT)
    assert gameball_emulator.event_count == 0
    assert client.post(V40, json=EVENT).status_code == 200  # a fresh connection works
    assert gameball_emulator.requests == {("v4.0/events", 0): 1, ("v4.0/events", 200): 1}
    assert gameball_emulator.stats()["dropped"] == 1


def test_drop_before_body_resets_the_connection(
    gameball_emulator: GameballEmulator, client: httpx.Client
) -> None:
    gameball_emulator.faults.drop_next(2, when="before_body")
    # What httpx reports depends on how much of the body was written when the reset
    # arrived (it swallows a write error to look for an answer), but never an answer.
    no_answer = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
    with pytest.raises(no_answer):
        client.post(V40, json=EVENT)
    big = {"customerId": "c", "events": {"e": {"blob": "x" * 4_000_000}}}
    with pytest.raises(no_answer):
        client.post(V40, json=big)
    assert gameball_emulator.event_count == 0
    assert client.post(V40, json=EVENT).status_code == 200
    assert gameball_emulator.requests[("v4.0/events", 0)] == 2


def test_drop_reset_raises_read_error(
    gameball_emulator: GameballEmulator, client: httpx.Client
) -> None:
    gameball_emulator.faults.drop_next(when="reset")
    with pytest.raises(httpx.ReadError):
        client.post(BATCH, json={"body": [EVENT]})
    assert gameball_emulator.event_count == 0
    assert gameball_emulator.stats()["batchJobs"]["total"] == 0


def test_latency_delays_the_answer_after_recording(
    gameball_emulator: GameballEmulator, client: httpx.Client
) -> None:
    gameball_emulator.faults.set_latency(1.0, count=1)
    with pytest.raises(httpx.ReadTimeout):
        client.post(V40, json=EVENT, timeout=httpx.Timeout(10.0, read=0.2))
    # the ambiguous case: the client timed out, yet the event was recorded
    assert gameball_emulator.wait_for_events(1, timeout=5)
    assert gameball_emulator.faults.take_latency() == 0.0  # count=1: spent
    assert client.post(V40, json=EVENT).status_code == 200


def test_latency_for_every_request_until_cleared(
    gameball_emulator: GameballEmulator, client: httpx.Client
) -> None:
    gameball_emulator.faults.set_latency(0.15)
    for _ in range(2):
        started = time.monotonic()
        assert client.post(V40, json=EVENT).status_code == 200
        assert time.monotonic() - started >= 0.15
    gameball_emulator.faults.clear()
    assert gameball_emulator.faults.take_latency() == 0.0


def test_latency_range_draws_each_delay_between_its_bounds() -> None:
    from gbtrack.emulator._faults import FaultPlan

    plan = FaultPlan()
    plan.set_latency(0.2, up_to=3.0, count=200)
    delays = [plan.take_latency() for _ in range(200)]
    assert all(0.2 <= d <= 3.0 for d in delays)
    assert len(set(delays)) > 100  # drawn, not one value
    assert plan.take_latency() == 0.0  # count spent
    plan.set_latency(0.0, up_to=0.5)  # from zero up
    assert 0.0 <= plan.take_latency() <= 0.5
    with pytest.raises(ValueError, match="up_to"):
        plan.set_latency(1.0, up_to=0.5)


def test_stop_does_not_wait_for_latency(gameball_emulator_factory: Any) -> None:
    emulator: GameballEmulator = gameball_emulator_factory()
    emulator.faults.set_latency(60.0)
    errors: list[BaseException] = []
    entered = threading.Event()

    def call() -> None:
        with httpx.Client(base_url=emulator.url, headers=KEYS) as http:
            entered.set()
            try:
                http.post(V40, json=EVENT)
            except httpx.HTTPError as exc:
                errors.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    assert entered.wait(5)
    assert emulator.wait_for_events(1, timeout=10)  # the request is inside its latency
    started = time.monotonic()
    emulator.stop()
    thread.join(10)
    assert not thread.is_alive()
    assert time.monotonic() - started < 10


def test_fault_plan_validates_arguments() -> None:
    plan = FaultPlan()
    with pytest.raises(ValueError, match="count"):
        plan.fail_next(-1)
    with pytest.raises(ValueError, match="status"):
        plan.fail_next(status=200)
    with pytest.raises(ValueError, match="when"):
        plan.drop_next(when="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seconds"):
        plan.set_latency(-1)
    with pytest.raises(ValueError, match="count"):
        plan.fail_batch_items(next_items=-2)
    plan.fail_next(0)  # arming nothing is allowed
    assert plan.pending == 0
    assert plan.take() is None
    plan.fail_next(status=503)
    assert plan.take() == FailFault(503, 5003)


def test_fault_plan_is_thread_safe() -> None:
    plan = FaultPlan()
    plan.fail_next(1000, status=503)
    taken: list[object] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(300):
            fault = plan.take()
            if fault is not None:
                with lock:
                    taken.append(fault)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(taken) == 1000
    assert plan.pending == 0


def test_drop_after_processing_records_then_closes_without_answer(
    gameball_emulator: GameballEmulator,
) -> None:
    # The realistic ambiguous case over real loopback HTTP: Gameball processed the
    # request (its events count), then the answer was lost.
    from gbtrack import Event
    from gbtrack.gameball import GameballClient, coalesce

    gameball_emulator.faults.drop_next(when="after_processing")
    [batch] = coalesce(
        [
            Event(name="purchase", customer_id="c-9", metadata={"amount": 5}),
            Event(name="review", customer_id="c-9"),
        ]
    )
    with GameballClient(
        gameball_emulator.api_key, base_url=gameball_emulator.url, timeout=5.0
    ) as gameball:
        outcome = gameball.send(batch)
        assert outcome.ambiguous, outcome
        assert outcome.status is None
        assert gameball_emulator.wait_for_events(2, timeout=5)
        assert sorted(e.name for e in gameball_emulator.events) == ["purchase", "review"]
        assert {e.customer_id for e in gameball_emulator.events} == {"c-9"}
        # Sending again (what a retry of the ambiguous outcome does) is the duplicate.
        assert gameball.send(batch).delivered
    assert gameball_emulator.event_count == 4
    dropped = gameball_emulator.stats()["dropped"]
    assert dropped == 1
    assert gameball_emulator.requests[("v4.0/events", 0)] == 1


def test_drop_after_processing_over_the_control_endpoint(
    gameball_emulator: GameballEmulator, client: httpx.Client
) -> None:
    answer = client.post("/_emulator/faults/drop", json={"when": "after_processing"})
    assert answer.json() == {"ok": True}
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(V41, json=EVENT)
    received = client.get("/_emulator/events").json()
    assert [(e["customerId"], e["name"], e["version"]) for e in received] == [("c", "e", "v4.1")]
