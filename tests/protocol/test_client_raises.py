"""Defect 11: a client that raises is a counted permanent failure for that event only.

Never an ambiguous retry (the same request would raise again), and one poisoned event
never holds back the other events of its request or its batch job. The same rule in
the three senders, which all call :func:`gbtrack._protocol.call_client` and
:meth:`RetryPolicy.decide`.
"""

from __future__ import annotations

from collections.abc import Sequence

from tests.senders import ScriptedClient, delivered

from gbtrack import Event, TrackingError
from gbtrack._protocol import ClientFailure, EventBatch, Outcome, call_client, client_raised
from gbtrack.outbox import OutboxDrainer, OutboxStore
from gbtrack.senders import BackgroundSender, DirectSender, RateLimiter, RetryPolicy

POLICY = RetryPolicy(base_delay=5.0, max_delay=5.0)  # a retry would show as a 5 s wait
FAST = RateLimiter(((10_000, 1.0),))


def poisoned(batch: EventBatch, attempt: int) -> Outcome:
    if any(e.name == "poison" for e in batch.events):
        raise RuntimeError("cannot serialise")
    return delivered()


def one_customers_events() -> list[Event]:
    # Distinct names of one customer: coalesced into one request.
    return [Event(name=n, customer_id="c-1") for n in ("a", "poison", "b", "c")]


def test_call_client_turns_a_raise_into_a_permanent_outcome() -> None:
    def boom() -> Outcome:
        raise ValueError("x")

    outcome = call_client(boom)
    assert outcome.permanent
    assert isinstance(outcome.error, ClientFailure)
    assert client_raised(outcome)
    assert str(outcome.error) == "the Gameball client raised ValueError"
    assert client_raised(call_client(lambda: None))  # not an outcome either
    ok = delivered()
    assert call_client(lambda: ok) is ok
    assert not client_raised(ok)
    decision = RetryPolicy().decide(outcome, 1, 0.0)
    assert (decision.retry, decision.reason) == (False, "client_error")


def test_background_sender_isolates_the_poisoned_event() -> None:
    errors: list[TrackingError] = []
    client = ScriptedClient(poisoned)
    sender = BackgroundSender(client, retry=POLICY, rate_limiter=FAST, on_error=errors.append)
    for e in one_customers_events():
        sender.send(e)
    assert not sender.flush(2)  # settled well within 2 s (no backoff), one event lost
    stats = sender.stats()
    assert (stats.delivered, stats.retried, dict(stats.dropped)) == (3, 0, {"client_error": 1})
    assert sorted(e.name for e in client.delivered_events) == ["a", "b", "c"]
    assert [(x.reason, x.event.name if x.event else None) for x in errors] == [
        ("client_error", "poison")
    ]
    assert sender.flush(1)  # nothing lost since: True again
    sender.close(1)


def test_background_sender_sends_a_raising_batch_job_per_request() -> None:
    class BulkRaises(ScriptedClient):
        def create_batch(self, batches: Sequence[EventBatch]) -> Outcome:
            raise RuntimeError("bulk bug")

    client = BulkRaises(secret_key=True)
    sender = BackgroundSender(client, retry=POLICY, rate_limiter=FAST, bulk_threshold=2)
    for i in range(10):
        sender.send(Event(name="e", customer_id=f"c-{i}"))
    assert sender.flush(5)
    assert sender.stats().delivered == 10
    assert len(client.sent) == 10  # one request each, after the job raised
    sender.close(1)


def test_direct_sender_counts_the_raise() -> None:
    errors: list[TrackingError] = []
    client = ScriptedClient(poisoned)
    sender = DirectSender(client, retry=POLICY, rate_limiter=FAST, on_error=errors.append)
    sender.send(Event(name="poison", customer_id="c-1"))
    sender.send(Event(name="fine", customer_id="c-1"))
    assert [x.reason for x in errors] == ["client_error"]
    assert sender.stats().delivered == 1
    assert not sender.flush()
    assert sender.flush()


def test_outbox_buries_only_the_poisoned_event(tmp_path: object) -> None:
    client = ScriptedClient(poisoned)
    with OutboxStore(f"{tmp_path}/o.sqlite3") as store:
        store.append(one_customers_events())
        drainer = OutboxDrainer(store, client, retry=POLICY, limiter=FAST, concurrency=1)
        result = drainer.run_once(bulk=False)
        drainer.close()
        assert (result.delivered, result.dead, result.retried) == (3, 1, 0)
        (dead,) = store.rows("dead")
        assert dead.name == "poison"
        assert dead.message == "client_error: the Gameball client raised RuntimeError"
        assert store.count("pending") == 0  # nothing left leased or waiting
