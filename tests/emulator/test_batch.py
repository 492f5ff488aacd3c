"""Batch jobs: create, per-item errors, status, stop, delayed processing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gbtrack.emulator import MAX_BATCH_ITEMS, GameballEmulator

from .conftest import API_KEY, BATCH, KEYS, SECRET_KEY, V40, assert_envelope, batch_path


def item(customer_id: Any, **events: dict[str, Any]) -> dict[str, Any]:
    return {"customerId": customer_id, "events": events or {"e": {}}}


def create(client: httpx.Client, items: list[Any]) -> int:
    response = client.post(BATCH, json={"body": items})
    assert response.status_code == 200, response.text
    job_id = response.json()["jobId"]
    assert isinstance(job_id, int)
    return job_id


def test_batch_records_valid_items_and_reports_invalid_ones(
    gameball_emulator: GameballEmulator, client: httpx.Client
) -> None:
    items = [
        item("c-0", purchase={"amount": 1}, login={}),
        {"customerId": "c-1"},  # missing events
        item("", e={}),  # invalid customerId
        item("c-3", e={"bad": [1]}),  # invalid metadata value
        {**item("c-4"), "email": "d@e.f"},
        "not an object",
        {"customerId": None, "events": {"e": {}}},
    ]
    job_id = create(client, items)
    status = client.get(batch_path(job_id, "status")).json()
    assert status["batchId"] == str(job_id)
    assert status["status"] == "completed"
    assert status["progress"] == 100.0
    assert (status["totalItems"], status["processedItems"], status["failedItems"]) == (7, 7, 5)
    assert [(e["index"], e["customerId"], e["code"]) for e in status["errors"]] == [
        (1, "c-1", 3000),
        (2, "", 3003),
        (3, "c-3", 3003),
        (5, None, 3003),
        (6, None, 3001),
    ]
    assert all(isinstance(e["message"], str) and e["message"] for e in status["errors"])
    assert [(r["index"], r["customerId"]) for r in status["results"]] == [(0, "c-0"), (4, "c-4")]
    events = gameball_emulator.events
    assert [(e.customer_id, e.name) for e in events] == [
        ("c-0", "purchase"),
        ("c-0", "login"),
        ("c-4", "e"),
    ]
    assert {e.version for e in events} == {"batch"}
    assert {e.batch_job_id for e in events} == {job_id}
    assert [e.batch_index for e in events] == [0, 0, 4]
    assert events[2].email == "d@e.f"
    assert gameball_emulator.batch_status(job_id) == status


def test_job_ids_are_distinct_numbers(client: httpx.Client) -> None:
    ids = [create(client, [item("c")]) for _ in range(3)]
    assert len(set(ids)) == 3


def test_a_job_where_every_item_fails_is_failed(client: httpx.Client) -> None:
    job_id = create(client, [{"customerId": "x"}, item(" ")])
    status = client.get(batch_path(job_id, "status")).json()
    assert status["status"] == "failed"
    assert status["failedItems"] == 2


def test_batch_size_limits(client: httpx.Client) -> None:
    assert create(client, [item(f"c{i}") for i in range(MAX_BATCH_ITEMS)])
    too_many = {"body": [item(f"c{i}") for i in range(MAX_BATCH_ITEMS + 1)]}
    assert_envelope(client.post(BATCH, json=too_many), 422, 3011)
    assert_envelope(client.post(BATCH, json={}), 400, 3000)
    assert_envelope(client.post(BATCH, json={"body": None}), 422, 3001)
    assert_envelope(client.post(BATCH, json={"body": []}), 422, 3003)
    assert_envelope(client.post(BATCH, json={"body": {"customerId": "c"}}), 422, 3003)
    assert_envelope(client.post(BATCH, json=[item("c")]), 400, 3016)
    assert_envelope(
        client.post(BATCH, content=b"{", headers={"content-type": "application/json"}), 400, 3016
    )
    assert_envelope(
        client.post(BATCH, content=b"{}", headers={"content-type": "text/plain"}), 415, 3013
    )


@pytest.mark.parametrize(
    ("headers", "code"),
    [({}, 1000), ({"APIKey": API_KEY}, 1001), ({"APIKey": API_KEY, "SecretKey": "no"}, 1000)],
)
def test_batch_endpoints_need_both_keys(
    gameball_emulator: GameballEmulator, client: httpx.Client, headers: dict[str, str], code: int
) -> None:
    job_id = create(client, [item("c")])
    with httpx.Client(base_url=gameball_emulator.url, headers=headers) as bare:
        assert_envelope(bare.post(BATCH, json={"body": [item("c")]}), 401, code)
        assert_envelope(bare.get(batch_path(job_id, "status")), 401, code)
        assert_envelope(bare.post(batch_path(job_id, "stop")), 401, code)


def test_unknown_job_is_404_3017(client: httpx.Client) -> None:
    assert_envelope(client.get(batch_path(999999, "status")), 404, 3017)
    assert_envelope(client.get(batch_path("not-a-number", "status")), 404, 3017)
    assert_envelope(client.post(batch_path(999999, "stop")), 404, 3017)
    assert_envelope(client.post(batch_path(1, "status")), 405, 3013)
    assert_envelope(client.get(batch_path(1, "stop")), 405, 3013)


def test_delayed_job_is_pending_until_run(gameball_emulator_factory: Any) -> None:
    emulator: GameballEmulator = gameball_emulator_factory(batch_delay=600.0)
    with httpx.Client(base_url=emulator.url, headers=KEYS) as http:
        job_id = create(http, [item("c-0"), item("c-1")])
        status = http.get(batch_path(job_id, "status")).json()
        assert (status["status"], status["processedItems"], status["progress"]) == (
            "pending",
            0,
            0.0,
        )
        assert emulator.event_count == 0
        assert http.post("/_emulator/batches/run").json() == {"processed": 1}
        status = http.get(batch_path(job_id, "status")).json()
        assert (status["status"], status["processedItems"]) == ("completed", 2)
        assert emulator.event_count == 2
        assert emulator.run_pending_batches() == 0


def test_delayed_job_completes_on_its_own(gameball_emulator_factory: Any) -> None:
    emulator: GameballEmulator = gameball_emulator_factory(batch_delay=0.05)
    with httpx.Client(base_url=emulator.url, headers=KEYS) as http:
        job_id = create(http, [item("c-0"), item("c-1")])
        assert emulator.wait_for_events(2, timeout=30)
        status = http.get(batch_path(job_id, "status")).json()
        assert (status["status"], status["processedItems"]) == ("completed", 2)


def test_stopping_a_pending_job_processes_none_of_it(gameball_emulator_factory: Any) -> None:
    emulator: GameballEmulator = gameball_emulator_factory(batch_delay=60.0)
    with httpx.Client(
        base_url=emulator.url, headers={"APIKey": API_KEY, "SecretKey": SECRET_KEY}
    ) as http:
        job_id = create(http, [item("c-0"), item("c-1")])
        stopped = http.post(batch_path(job_id, "stop"))
        assert stopped.status_code == 200
        assert stopped.json() == {
            "batchId": str(job_id),
            "status": "stopped",
            "message": "Batch job stopped",
        }
        status = http.get(batch_path(job_id, "status")).json()
        assert status["status"] == "failed"
        assert (status["processedItems"], status["failedItems"]) == (2, 2)
        assert [(e["index"], e["customerId"], e["code"]) for e in status["errors"]] == [
            (0, "c-0", 5003),
            (1, "c-1", 5003),
        ]
        again = http.post(batch_path(job_id, "stop")).json()
        assert again["status"] == "failed"
        assert "already" in again["message"]
    assert emulator.events == []


def test_stopping_a_finished_job_changes_nothing(
    gameball_emulator: GameballEmulator, client: httpx.Client
) -> None:
    job_id = create(client, [item("c")])
    answer = client.post(batch_path(job_id, "stop")).json()
    assert answer["batchId"] == str(job_id)
    assert answer["status"] == "completed"
    assert client.get(batch_path(job_id, "status")).json()["status"] == "completed"
    assert gameball_emulator.event_count == 1


def test_injected_item_failures(gameball_emulator: GameballEmulator, client: httpx.Client) -> None:
    gameball_emulator.faults.fail_batch_items(customer_ids=["c-bad"], code=3003, message="nope")
    gameball_emulator.faults.fail_batch_items(next_items=2)
    items = [item("c-0"), item("c-bad"), {"customerId": "x"}, item("c-1"), item("c-2"), item("c-3")]
    job_id = create(client, items)
    status = client.get(batch_path(job_id, "status")).json()
    assert [(e["index"], e["customerId"], e["code"]) for e in status["errors"]] == [
        (0, "c-0", 5003),  # the next two valid items fail
        (1, "c-bad", 3003),  # by customer id, without consuming the "next" budget
        (2, "x", 3000),  # invalid items keep their own code
        (3, "c-1", 5003),
    ]
    assert status["errors"][1]["message"] == "nope"
    assert [e.customer_id for e in gameball_emulator.events] == ["c-2", "c-3"]
    # the customer-id rule stays armed; the "next" budget is spent
    job_id = create(client, [item("c-bad"), item("c-4")])
    errors = client.get(batch_path(job_id, "status")).json()["errors"]
    assert [e["index"] for e in errors] == [0]


def test_batch_and_single_requests_share_the_records(
    gameball_emulator: GameballEmulator, client: httpx.Client
) -> None:
    client.post(V40, json=item("single"))
    create(client, [item("bulk")])
    assert [e.version for e in gameball_emulator.events] == ["v4.0", "batch"]
    assert gameball_emulator.requests == {
        ("v4.0/events", 200): 1,
        ("batch/events", 200): 1,
    }


def test_stopping_a_running_job_fails_the_rest(
    gameball_emulator_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gbtrack.emulator import _state

    emulator: GameballEmulator = gameball_emulator_factory(batch_delay=600.0)
    check = _state._check_item
    answers: list[dict[str, Any]] = []
    with httpx.Client(base_url=emulator.url, headers=KEYS) as http:
        job_id = create(http, [item(f"c-{i}") for i in range(4)])

        def check_then_stop(value: Any) -> Any:
            if value["customerId"] == "c-1":  # a stop arrives while the job runs
                answers.append(http.post(batch_path(job_id, "stop")).json())
            return check(value)

        monkeypatch.setattr(_state, "_check_item", check_then_stop)
        assert emulator.run_pending_batches() == 1
        status = http.get(batch_path(job_id, "status")).json()
    assert answers == [
        {"batchId": str(job_id), "status": "stopped", "message": "Batch job stopped"}
    ]
    assert status["status"] == "failed"
    assert (status["processedItems"], status["failedItems"]) == (4, 2)
    assert [(e["index"], e["code"]) for e in status["errors"]] == [(2, 5003), (3, 5003)]
    assert [e.customer_id for e in emulator.events] == ["c-0", "c-1"]
