"""Orders through the delivery engine, against the emulator over loopback HTTP.

BackgroundSender and DirectSender carry orders beside events: their own rate bucket,
one line per customer across resources, effectively-once delivery of ambiguous orders,
and a :class:`~gbtrack.DeliveryOutcome` per item for the tracker's and the order's hooks.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from tests.senders import API_KEY, SECRET_KEY, Outcomes

from gbtrack import DeliveryOutcome, Event, Tracker
from gbtrack._order import OrderDraft, order_draft
from gbtrack.emulator import GameballEmulator
from gbtrack.gameball import GameballClient
from gbtrack.outbox import OutboxSender
from gbtrack.senders import BackgroundSender, DirectSender, RateLimiter, RetryPolicy

FAST = RetryPolicy(base_delay=0.01, max_delay=0.05)


def order(
    order_id: str,
    customer: str = "c-1",
    paid: float = 100,
    hook: Callable[[Any], object] | None = None,
    function: str | None = "shop.checkout",
) -> OrderDraft:
    return order_draft(
        customer_id=customer,
        order_id=order_id,
        total_paid=paid,
        order_date="2024-10-16T08:13:29.290Z",
        function=function,
        now=time.time(),
        on_outcome=hook,
    )


def emulator_with(**options: Any) -> GameballEmulator:
    return GameballEmulator(api_key=API_KEY, secret_key=SECRET_KEY, **options).start()


@pytest.fixture
def emulators() -> Iterator[Callable[..., GameballEmulator]]:
    started: list[GameballEmulator] = []

    def factory(**options: Any) -> GameballEmulator:
        emu = emulator_with(**options)
        started.append(emu)
        return emu

    yield factory
    for emu in started:
        emu.stop()


@pytest.fixture
def make(make_sender: Callable[..., BackgroundSender]) -> Callable[..., BackgroundSender]:
    """``make(emulator, **options)``: a sender with both keys (orders), quick to retry."""
    return functools.partial(make_sender, secret_key=SECRET_KEY, retry=FAST, flush_interval=0.02)


def tracked(sender: Any, hook: Outcomes | None) -> Tracker:
    """A tracker that attaches ``sender`` with ``hook`` as its on_outcome."""
    tracker = Tracker(sender)
    tracker.configure(on_outcome=hook)
    return tracker


def test_orders_are_delivered_with_their_points_in_the_outcome(
    emulators: Callable[..., GameballEmulator], make: Callable[..., BackgroundSender]
) -> None:
    emulator = emulators()
    sender = make(emulator)
    hook, own = Outcomes(), Outcomes()
    tracked(sender, hook)
    assert sender.accepts_orders
    sender.send(order("A-1", "c-1", 120.5, hook=own))
    sender.send(order("A-2", "c-2", 30))
    assert sender.flush(10)
    assert sorted(o.order_id for o in emulator.orders) == ["A-1", "A-2"]
    assert emulator.points == {"c-1": 120, "c-2": 30}
    first = hook.of("A-1")[0]
    assert first == own.items[0]  # the order's own hook sees the same outcome
    assert (first.resource, first.status, first.customer_id) == ("order", "delivered", "c-1")
    assert first.result["rewardedPoints"] == 120
    assert first.duplicate is False
    assert first.function == "shop.checkout"
    assert first.reason is None
    assert [o.result["rewardedPoints"] for o in hook.of("A-2")] == [30]
    assert len(hook.items) == 2
    assert len(own.items) == 1
    assert threading.current_thread().name not in hook.threads | own.threads
    assert sender.stats().delivered == 2
    # Both keys on every order request, to v4.1 (a secret key is configured).
    log = [r for r in emulator.request_log if r.endpoint.endswith("orders")]
    assert {r.endpoint for r in log} == {"v4.1/orders"}
    assert all(r.has_api_key and r.has_secret_key for r in log)


def test_without_a_secret_key_the_sender_takes_no_orders(
    emulators: Callable[..., GameballEmulator], make: Callable[..., BackgroundSender]
) -> None:
    emulator = emulators()
    sender = make(emulator, secret_key=None)
    assert not sender.accepts_orders
    tracker = Tracker(sender)
    assert tracker._traits.takes_orders is False
    with_key = make(emulator)
    assert Tracker(with_key)._traits.takes_orders is True
    # Sent anyway (code that calls send() itself): a counted, reported drop, never a loss.
    hook = Outcomes()
    sender.send(order("N-1", hook=hook))
    assert not sender.flush(5)
    assert sender.stats().dropped == {"rejected": 1}
    assert hook.items[0].status == "dropped"
    assert "secret_key" in (hook.items[0].error or "")
    assert emulator.order_count == 0


def test_an_ambiguous_order_is_retried_and_its_duplicate_answer_is_delivered(
    emulators: Callable[..., GameballEmulator], make: Callable[..., BackgroundSender]
) -> None:
    emulator = emulators()
    # The first order request is processed, then its connection is dropped: the answer is lost.
    emulator.faults.drop_next(when="after_processing", route="orders")
    sender = make(emulator, retry=RetryPolicy(base_delay=0.01, retry_ambiguous=False))
    hook = Outcomes()
    tracked(sender, hook)
    sender.send(order("AMB-1", "c-9", 50))
    assert sender.flush(10)
    [outcome] = hook.items
    assert outcome.status == "delivered"
    assert outcome.duplicate is True
    assert outcome.result == {}  # Gameball's duplicate answer carries no points
    assert [o.order_id for o in emulator.orders] == ["AMB-1"]  # recorded once
    assert emulator.points == {"c-9": 50}  # awarded once
    stats = sender.stats()
    assert stats.delivered == 1
    assert stats.retried == 1
    assert not stats.dropped
    codes = [r.code for r in emulator.request_log if r.endpoint.endswith("orders")]
    assert codes == [None, 9004]  # the lost answer, then the duplicate refusal


def test_in_accept_mode_the_retry_awards_twice(
    emulators: Callable[..., GameballEmulator], make: Callable[..., BackgroundSender]
) -> None:
    emulator = emulators(duplicate_orders="accept")
    emulator.faults.drop_next(when="after_processing", route="orders")
    sender = make(emulator)
    hook = Outcomes()
    tracked(sender, hook)
    sender.send(order("AMB-2", "c-8", 40))
    assert sender.flush(10)
    assert [o.duplicate for o in emulator.orders] == [False, True]
    assert emulator.points == {"c-8": 80}  # the double award the dedup assumption avoids
    [outcome] = hook.items
    assert outcome.status == "delivered"
    assert outcome.result["rewardedPoints"] == 40


def test_an_order_sent_twice_is_a_duplicate_drop(
    emulators: Callable[..., GameballEmulator], make: Callable[..., BackgroundSender]
) -> None:
    emulator = emulators()
    sender = make(emulator)
    errors: list[Any] = []
    sender.reporter.on_error = errors.append
    hook = Outcomes()
    tracked(sender, hook)
    sender.send(order("DUP-1"))
    assert sender.flush(10)
    sender.send(order("DUP-1"))
    assert not sender.flush(10)
    assert sender.stats().dropped == {"duplicate": 1}
    assert [o.status for o in hook.items] == ["delivered", "dropped"]
    assert hook.items[1].reason == "duplicate"
    assert not hook.items[1].duplicate
    assert "9004" in (hook.items[1].error or "")
    assert emulator.order_count == 1
    assert errors
    assert errors[0].reason == "duplicate"
    assert "DUP-1" in str(errors[0])


def test_duplicate_codes_are_configuration(
    emulators: Callable[..., GameballEmulator], make: Callable[..., BackgroundSender]
) -> None:
    emulator = emulators()
    # With no code meaning "duplicate", Gameball's 9004 is a plain rejection.
    sender = make(emulator, retry=RetryPolicy(base_delay=0.01, duplicate_order_codes=frozenset()))
    sender.send(order("CFG-1"))
    sender.send(order("CFG-1"))
    assert not sender.flush(10)
    assert sender.stats().dropped == {"rejected": 1}


def test_one_customers_events_and_orders_go_in_the_order_they_were_accepted(
    emulators: Callable[..., GameballEmulator], make: Callable[..., BackgroundSender]
) -> None:
    emulator = emulators()
    # The first request's answer waits: nothing of that customer may overtake it.
    emulator.faults.set_latency(0.3, count=1)
    sender = make(emulator, flush_interval=0.2, bulk=False)
    sender.send(Event(name="cart", customer_id="c-1", metadata={"n": 1}))
    sender.send(order("SEQ-1", "c-1"))
    sender.send(Event(name="review", customer_id="c-1", metadata={"n": 2}))
    sender.send(order("SEQ-2", "c-1"))
    sender.send(Event(name="other", customer_id="c-2"))  # another customer is not held
    assert sender.flush(10)
    log = [r for r in emulator.request_log if r.endpoint != "_emulator"]
    kinds = [r.endpoint.split("/")[1] for r in log]
    # "cart" and "review" were not merged across the order between them.
    assert kinds.count("events") == 3
    assert kinds.count("orders") == 2
    names = [e.name for e in emulator.events if e.customer_id == "c-1"]
    assert names == ["cart", "review"]
    arrivals = {r.request_id: r.received_at for r in log}
    cart = next(e for e in emulator.events if e.name == "cart")
    review = next(e for e in emulator.events if e.name == "review")
    first, second = (
        next(o for o in emulator.orders if o.order_id == i) for i in ("SEQ-1", "SEQ-2")
    )
    times = [
        arrivals[cart.request_id],
        arrivals[first.request_id],
        arrivals[review.request_id],
        arrivals[second.request_id],
    ]
    assert times == sorted(times)
    # The other customer went while c-1's first request waited.
    other = next(e for e in emulator.events if e.name == "other")
    assert arrivals[other.request_id] < arrivals[first.request_id]


def test_both_buckets_run_at_their_limits_without_a_429(
    emulators: Callable[..., GameballEmulator], make: Callable[..., BackgroundSender]
) -> None:
    emulator = emulators(rate_limits=[(6, 1.0)], order_rate_limits=[(3, 1.0)])
    sender = make(
        emulator,
        rate_limiter=RateLimiter([(6, 1.0)]),
        order_rate_limiter=RateLimiter([(3, 1.0)]),
        bulk=False,
    )
    for n in range(12):
        sender.send(Event(name="e", customer_id=f"e-{n}"))
        if n % 2 == 0:
            sender.send(order(f"B-{n}", f"o-{n}"))
    began = time.monotonic()
    assert sender.flush(30)
    took = time.monotonic() - began
    assert emulator.rate_limited == 0
    assert emulator.event_count == 12
    assert emulator.order_count == 6
    # Six orders at three per second need a second window: the orders bucket was used
    # apart (twelve events at six per second run alongside).
    assert took >= 1.0
    assert emulator.max_requests_in_window(1.0, admitted_only=True, bucket="orders") <= 3


def test_on_outcome_once_per_item_and_a_raising_hook_breaks_nothing(
    emulators: Callable[..., GameballEmulator],
    make: Callable[..., BackgroundSender],
    caplog: pytest.LogCaptureFixture,
) -> None:
    emulator = emulators()
    sender = make(emulator)
    calls = Outcomes()

    def hook(outcome: DeliveryOutcome) -> None:
        calls(outcome)
        raise RuntimeError("a broken hook")

    tracked(sender, hook)  # type: ignore[arg-type]
    for n in range(5):
        sender.send(Event(name=f"e{n}", customer_id=f"c-{n % 2}"))
        sender.send(order(f"H-{n}", f"c-{n % 2}"))
    assert sender.flush(10)
    assert emulator.event_count == 5
    assert emulator.order_count == 5
    assert sorted(o.reference or "" for o in calls.items) == sorted(
        [f"e{n}" for n in range(5)] + [f"H-{n}" for n in range(5)]
    )
    assert {o.resource for o in calls.items} == {"event", "order"}
    assert all(o.status == "delivered" for o in calls.items)
    assert threading.current_thread().name not in calls.threads
    assert sender.reporter.get("outcome_hook_errors") == 10
    assert sum("on_outcome hook" in r.getMessage() for r in caplog.records) == 1


def test_drops_reach_on_outcome_with_their_reason(
    emulators: Callable[..., GameballEmulator], make: Callable[..., BackgroundSender]
) -> None:
    emulator = emulators()
    emulator.faults.fail_next(1, status=422, code=3003, route="events")
    sender = make(emulator)
    hook = Outcomes()
    tracked(sender, hook)
    sender.send(Event(name="refused", customer_id="c-1"))
    long_id = "X" * 5000
    sender.send(order(long_id, "c-2"))
    assert not sender.flush(10)
    by_reason = {o.reason: o for o in hook.items}
    assert by_reason["rejected"].resource == "event"
    invalid = by_reason["invalid_order"]
    assert invalid.resource == "order"
    assert invalid.status == "dropped"
    assert "order_id" in (invalid.error or "")
    assert sender.stats().dropped == {"rejected": 1, "invalid_order": 1}


def test_an_invalid_order_names_the_field_and_the_function(
    emulators: Callable[..., GameballEmulator], make: Callable[..., BackgroundSender]
) -> None:
    emulator = emulators()
    sender = make(emulator)
    errors: list[Any] = []
    sender.reporter.on_error = errors.append
    sender.send(order("Y" * 5000, function="shop.checkout"))
    assert not sender.flush(10)
    [error] = errors
    assert error.reason == "invalid_order"
    assert error.function == "shop.checkout"
    assert "order_id" in str(error)
    assert "max_string_length" in str(error)


class _EventsOnlySpill:
    """A spill that stores events only (no ``spill_orders``)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def spill(self, events: Sequence[Event], reason: str) -> int:
        self.events.extend(events)
        return len(events)


def _outbox(emulator: GameballEmulator, path: Path, **options: Any) -> OutboxSender:
    """An outbox that delivers to ``emulator`` once its worker runs (``deliver``)."""
    client = GameballClient(API_KEY, secret_key=SECRET_KEY, base_url=emulator.url)
    return OutboxSender(client, path=path, retry=FAST, close_client=True, **options)


def test_an_order_that_would_be_spilled_is_persisted_then_delivered_by_the_outbox(
    emulators: Callable[..., GameballEmulator],
    make: Callable[..., BackgroundSender],
    tmp_path: Path,
) -> None:
    emulator = emulators()
    emulator.faults.fail_next(2, status=503)
    spill = _outbox(emulator, tmp_path / "outbox.db", deliver=False)
    sender = make(emulator, spill=spill, retry=RetryPolicy(max_attempts=1))
    hook = Outcomes()
    tracked(sender, hook)
    sender.send(Event(name="kept", customer_id="c-1"))
    sender.send(order("SP-1", "c-2", paid=70))
    assert sender.flush(10)  # spilled, not dropped
    assert sender.stats().dropped == {}
    rows = {(r.kind, r.name) for r in spill.store.rows()}
    assert rows == {("event", "kept"), ("order", "SP-1")}
    statuses = {(o.resource, o.status, o.reason) for o in hook.items}
    assert statuses == {
        ("event", "persisted", "retries_exhausted"),
        ("order", "persisted", "retries_exhausted"),
    }
    assert emulator.order_count == 0
    spill.close()
    with _outbox(emulator, tmp_path / "outbox.db") as outbox:  # a later start delivers
        assert outbox.flush(10)
    assert [o.order_id for o in emulator.orders] == ["SP-1"]
    assert emulator.points == {"c-2": 70}


def test_a_spill_that_stores_events_only_leaves_orders_dropped_with_their_reason(
    emulators: Callable[..., GameballEmulator], make: Callable[..., BackgroundSender]
) -> None:
    emulator = emulators()
    emulator.faults.fail_next(2, status=503)
    spill = _EventsOnlySpill()
    sender = make(emulator, spill=spill, retry=RetryPolicy(max_attempts=1))
    hook = Outcomes()
    tracked(sender, hook)
    sender.send(Event(name="kept", customer_id="c-1"))
    sender.send(order("SP-1", "c-2"))
    assert not sender.flush(10)
    assert [e.name for e in spill.events] == ["kept"]
    assert sender.stats().dropped == {"retries_exhausted": 1}
    statuses = {(o.resource, o.status, o.reason) for o in hook.items}
    assert statuses == {
        ("event", "persisted", "retries_exhausted"),
        ("order", "dropped", "retries_exhausted"),
    }


def test_direct_sender_sends_orders_inline(
    emulators: Callable[..., GameballEmulator],
) -> None:
    emulator = emulators()
    emulator.faults.drop_next(when="after_processing", route="orders")
    sender = DirectSender(
        api_key=API_KEY, secret_key=SECRET_KEY, base_url=emulator.url, retry=FAST, timeout=5
    )
    try:
        hook, own = Outcomes(), Outcomes()
        tracked(sender, hook)
        sender.send(order("D-1", "c-1", 70, hook=own))  # type: ignore[arg-type]
        sender.send(order("D-2", "c-1", 10))  # type: ignore[arg-type]
        sender.send(order("D-2", "c-1", 10))  # type: ignore[arg-type]
        assert [(o.reference, o.status, o.duplicate, o.reason) for o in hook.items] == [
            ("D-1", "delivered", True, None),
            ("D-2", "delivered", False, None),
            ("D-2", "dropped", False, "duplicate"),
        ]
        assert hook.items[1].result["rewardedPoints"] == 10
        assert own.items == hook.items[:1]
        assert emulator.points == {"c-1": 80}
    finally:
        sender.close()


def test_an_order_waiting_for_its_bucket_holds_its_customers_later_events(
    emulators: Callable[..., GameballEmulator], make: Callable[..., BackgroundSender]
) -> None:
    emulator = emulators(order_rate_limits=[(1, 1.0)])
    sender = make(emulator, order_rate_limiter=RateLimiter([(1, 1.0)]), bulk=False)
    sender.send(order("W-1", "c-0"))
    sender.send(order("W-2", "c-1"))  # waits about a second for the orders bucket
    sender.send(Event(name="after", customer_id="c-1"))  # must not overtake W-2
    sender.send(Event(name="free", customer_id="c-2"))  # another customer goes at once
    assert sender.flush(10)
    assert emulator.rate_limited == 0
    arrivals = {r.request_id: r.received_at for r in emulator.request_log}
    at = {o.order_id: arrivals[o.request_id] for o in emulator.orders}
    events = {e.name: arrivals[e.request_id] for e in emulator.events}
    assert at["W-1"] < at["W-2"] < events["after"]
    assert events["free"] < at["W-2"]


def test_on_outcome_is_a_setting_passed_to_the_sender(
    emulators: Callable[..., GameballEmulator], make: Callable[..., BackgroundSender]
) -> None:
    from gbtrack import ConfigurationError, InMemorySender

    with pytest.raises(ConfigurationError, match="on_outcome must be callable"):
        Tracker(InMemorySender()).configure(on_outcome=42)  # type: ignore[arg-type]
    sender = make(emulators())
    hook = Outcomes()
    tracker = tracked(sender, hook)
    assert tracker.settings.on_outcome is hook
    assert sender.outcomes.tracker_hook is hook
    tracker.configure(on_outcome=None)
    assert sender.outcomes.tracker_hook is None
    tracker.configure(strict=False)  # other changes keep the hook as it is
    assert tracker.settings.on_outcome is None


def test_overflow_outcomes_run_on_the_worker_not_the_caller(
    emulators: Callable[..., GameballEmulator], make: Callable[..., BackgroundSender]
) -> None:
    emulator = emulators()
    sender = make(emulator, max_queue_size=1, flush_interval=5.0)
    hook, own = Outcomes(), Outcomes()
    tracked(sender, hook)
    sender.send(Event(name="kept", customer_id="c-1"))
    sender.send(Event(name="lost", customer_id="c-1"))
    sender.send(order("LOST-1", "c-1", hook=own))
    # Decided on this thread, run by the worker (which may already have run them: the
    # thread check below is the property, not the timing).
    assert not sender.flush(10)
    assert {(o.reference, o.status, o.reason) for o in hook.items} == {
        ("kept", "delivered", None),
        ("lost", "dropped", "queue_overflow"),
        ("LOST-1", "dropped", "queue_overflow"),
    }
    assert [o.reference for o in own.items] == ["LOST-1"]
    assert threading.current_thread().name not in hook.threads | own.threads
    assert sender.stats().dropped == {"queue_overflow": 2}


def test_a_backlog_of_orders_goes_as_batch_jobs(
    emulators: Callable[..., GameballEmulator], make: Callable[..., BackgroundSender]
) -> None:
    emulator = emulators()
    sender = make(emulator, flush_interval=0.2)
    sender.order_bulk_threshold = 5
    hook = Outcomes()
    tracked(sender, hook)
    for n in range(20):
        sender.send(order(f"J-{n}", f"c-{n}", 10))
    sender.send(order("J-20", "c-0", 10))  # a second order of c-0 waits for the first
    sender.send(order("J-0", "c-0", 10))  # the same order again: a duplicate item
    assert not sender.flush(15)
    assert sorted(o.order_id for o in emulator.orders) == sorted(f"J-{n}" for n in range(21))
    assert sum(o.version == "batch" for o in emulator.orders) >= 19
    assert emulator.points["c-0"] == 20
    assert emulator.rate_limited == 0
    delivered = [o for o in hook.items if o.status == "delivered"]
    assert len(delivered) == 21
    assert not any(o.duplicate for o in delivered)
    [dropped] = [o for o in hook.items if o.status == "dropped"]
    assert (dropped.reference, dropped.reason) == ("J-0", "duplicate")
    assert sender.stats().dropped == {"duplicate": 1}
    # c-0's orders were accepted in this order, and arrived in it.
    c0 = [o.order_id for o in emulator.orders if o.customer_id == "c-0"]
    assert c0 == ["J-0", "J-20"]


def test_overflow_into_the_outbox_persists_events_and_orders_then_delivers_them(
    emulators: Callable[..., GameballEmulator],
    make: Callable[..., BackgroundSender],
    tmp_path: Path,
) -> None:
    emulator = emulators()
    spill = _outbox(emulator, tmp_path / "outbox.db", deliver=False)
    sender = make(emulator, max_queue_size=1, flush_interval=5.0, spill=spill)
    hook = Outcomes()
    tracked(sender, hook)
    sender.send(Event(name="kept", customer_id="c-1"))
    sender.send(Event(name="spilled", customer_id="c-1"))
    sender.send(order("OV-1", "c-1", paid=40))
    assert sender.flush(10)
    assert [(r.kind, r.name) for r in spill.store.rows()] == [
        ("event", "spilled"),
        ("order", "OV-1"),
    ]
    assert {(o.reference, o.status, o.reason) for o in hook.items} == {
        ("kept", "delivered", None),
        ("spilled", "persisted", "queue_overflow"),
        ("OV-1", "persisted", "queue_overflow"),
    }
    assert sender.stats().dropped == {}
    assert emulator.order_count == 0
    spill.close()
    with _outbox(emulator, tmp_path / "outbox.db") as outbox:
        assert outbox.flush(10)
    assert [o.order_id for o in emulator.orders] == ["OV-1"]
    assert emulator.points == {"c-1": 40}
