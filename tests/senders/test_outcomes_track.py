"""``@track(on_outcome=...)`` and ``Tracker.emit(on_outcome=...)``: an event's own hook.

Against the emulator over loopback HTTP, through BackgroundSender and DirectSender: the
own hook hears each of its events once (delivered, dropped with its reason,
persisted), before the tracker's hook, on the sender's thread; events without a hook
never reach it; a raising hook breaks nothing; and the call path without a hook is the
generated source it always was.
"""

from __future__ import annotations

import functools
import gc
import linecache
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from tests._drafts import DraftSender
from tests.senders import API_KEY, SECRET_KEY, Outcomes

from gbtrack import ConfigurationError, DeliveryOutcome, Event, EventDraft, Tracker
from gbtrack._outcomes import EVENT_HOOKS, item_hook
from gbtrack.emulator import GameballEmulator
from gbtrack.senders import BackgroundSender, DirectSender, RetryPolicy

FAST = RetryPolicy(base_delay=0.01, max_delay=0.05, max_attempts=2)


@dataclass
class Customer:
    id: str
    email: str | None = None


@dataclass
class Order:
    id: str
    total: float


@pytest.fixture
def make(
    emulator: GameballEmulator, make_sender: Callable[..., BackgroundSender]
) -> Callable[..., BackgroundSender]:
    """``make(**options)``: a sender to ``emulator`` with both keys, quick to give up."""
    return functools.partial(
        make_sender, emulator, secret_key=SECRET_KEY, retry=FAST, flush_interval=0.02
    )


def checkout_pair(
    tracker: Tracker, own: Callable[[DeliveryOutcome], object]
) -> tuple[Callable[[Customer, str], Order], Callable[[Customer, str], Order]]:
    """The benchmark's shape tracked twice: with its own hook, and without."""

    @tracker.track(
        "purchase",
        customer_id="customer.id",
        email="customer.email",
        metadata={"order_id": "result.id", "amount": "result.total"},
        on_outcome=own,
    )
    def hooked(customer: Customer, order_id: str) -> Order:
        return Order(order_id, 10.5)

    @tracker.track(
        "browse",
        customer_id="customer.id",
        metadata={"order_id": "result.id", "amount": "result.total"},
    )
    def plain(customer: Customer, order_id: str) -> Order:
        return Order(order_id, 1.0)

    return hooked, plain


def test_each_event_of_the_function_is_told_once_on_the_sender_thread(
    emulator: GameballEmulator, make: Callable[..., BackgroundSender]
) -> None:
    sender = make()
    tracker, everything, own = Tracker(sender), Outcomes(), Outcomes()
    tracker.configure(on_outcome=everything)
    assert tracker.gate is not None  # the generated wrapper's straight-line path
    hooked, plain = checkout_pair(tracker, own)
    for n in range(6):
        hooked(Customer(f"c-{n % 3}", "a@example.com"), f"o-{n}")
        plain(Customer(f"c-{n % 3}"), f"b-{n}")
    assert tracker.flush(10)
    assert emulator.event_count == 12
    assert len(own.items) == 6
    assert {(o.reference, o.status, o.resource) for o in own.items} == {
        ("purchase", "delivered", "event")
    }
    assert sorted(o.customer_id for o in own.items) == ["c-0", "c-0", "c-1", "c-1", "c-2", "c-2"]
    # The tracker's hook hears every event, the hooked ones as their own hook did.
    assert len(everything.items) == 12
    assert [o for o in everything.items if o.reference == "purchase"] == own.items
    assert threading.current_thread().name not in own.threads | everything.threads


def test_the_own_hook_works_without_a_tracker_hook_and_through_the_general_path(
    emulator: GameballEmulator, make: Callable[..., BackgroundSender]
) -> None:
    sender = make()
    tracker, own = Tracker(sender, sample={"nothing": 0.5}), Outcomes()  # the gate closed
    assert tracker.gate is None
    hooked, plain = checkout_pair(tracker, own)
    hooked(Customer("c-1"), "o-1")
    plain(Customer("c-1"), "b-1")
    assert tracker.emit("signup", customer_id="c-2", on_outcome=own) is not None
    assert tracker.flush(10)
    assert sorted(own.seen()) == [
        ("purchase", "delivered", None),
        ("signup", "delivered", None),
    ]


def test_drops_reach_the_own_hook_with_their_reason(
    emulator: GameballEmulator, make: Callable[..., BackgroundSender]
) -> None:
    emulator.faults.fail_next(1, status=422, code=3003, route="events")
    sender = make(bulk=False)
    tracker, everything, own = Tracker(sender), Outcomes(), Outcomes()
    tracker.configure(on_outcome=everything)
    tracker.emit("refused", customer_id="c-1", on_outcome=own)
    assert not tracker.flush(10)  # the emulator refused it
    tracker.emit("too_long", customer_id="c-2", metadata={"note": "x" * 5000}, on_outcome=own)
    tracker.emit("fine", customer_id="c-3")  # no own hook: the tracker's alone
    assert not tracker.flush(10)
    assert own.seen() == {
        ("refused", "dropped", "rejected"),
        ("too_long", "dropped", "invalid_event"),
    }
    assert ("fine", "delivered", None) in everything.seen()
    assert len(everything.items) == 3
    invalid = next(o for o in own.items if o.reason == "invalid_event")
    assert "max_string_length" in (invalid.error or "")
    assert threading.current_thread().name not in own.threads


class _Spill:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def spill(self, events: Sequence[Event], reason: str) -> int:
        self.events.extend(events)
        return len(events)


def test_overflow_is_told_on_the_worker_and_a_spill_is_persisted(
    emulator: GameballEmulator, make: Callable[..., BackgroundSender]
) -> None:
    own, spilled = Outcomes(), Outcomes()
    sender = make(max_queue_size=1, flush_interval=5.0)
    tracker = Tracker(sender)
    tracker.emit("kept", customer_id="c-1", on_outcome=own)
    tracker.emit("lost", customer_id="c-1", on_outcome=own)  # the queue is full
    assert not tracker.flush(10)
    assert own.seen() == {("kept", "delivered", None), ("lost", "dropped", "queue_overflow")}
    assert threading.current_thread().name not in own.threads
    spill = _Spill()
    with_spill = Tracker(make(max_queue_size=1, flush_interval=5.0, spill=spill))
    with_spill.emit("kept", customer_id="c-1", on_outcome=spilled)
    with_spill.emit("spilled", customer_id="c-1", on_outcome=spilled)
    with_spill.flush(10)
    assert [e.name for e in spill.events] == ["spilled"]
    assert spilled.seen() == {
        ("kept", "delivered", None),
        ("spilled", "persisted", "queue_overflow"),
    }


def test_before_send_drops_and_copies_keep_the_own_hook(
    emulator: GameballEmulator, make: Callable[..., BackgroundSender]
) -> None:
    def before_send(event: Event) -> Event | None:
        if event.name == "private":
            return None
        return event.model_copy(update={"metadata": {"tagged": True}})

    sender = make()
    tracker, own = Tracker(sender, before_send=before_send), Outcomes()
    tracker.emit("private", customer_id="c-1", on_outcome=own)
    tracker.emit("public", customer_id="c-2", on_outcome=own)
    tracker.emit("other", customer_id="c-3")
    tracker.flush(10)
    assert own.seen() == {("private", "dropped", "before_send"), ("public", "delivered", None)}
    assert {e.name for e in emulator.events} == {"public", "other"}


def test_a_raising_own_hook_breaks_nothing(
    emulator: GameballEmulator,
    make: Callable[..., BackgroundSender],
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = Outcomes()

    def broken(outcome: DeliveryOutcome) -> None:
        calls(outcome)
        raise RuntimeError("a broken hook")

    sender = make()
    tracker, everything = Tracker(sender), Outcomes()
    tracker.configure(on_outcome=everything)
    for n in range(4):
        tracker.emit(f"e{n}", customer_id=f"c-{n}", on_outcome=broken)
    assert tracker.flush(10)
    assert emulator.event_count == 4
    assert len(calls.items) == 4
    assert len(everything.items) == 4  # the tracker's hook still runs after it
    assert sender.reporter.get("outcome_hook_errors") == 4
    assert sum("on_outcome hook" in r.getMessage() for r in caplog.records) == 1


def test_direct_sender_tells_the_own_hook(emulator: GameballEmulator) -> None:
    emulator.faults.fail_next(1, status=422, code=3003, route="events")
    sender = DirectSender(api_key=API_KEY, base_url=emulator.url, retry=FAST, timeout=5)
    try:
        tracker, own = Tracker(sender), Outcomes()
        hooked, plain = checkout_pair(tracker, own)
        hooked(Customer("c-1"), "o-1")  # refused by the emulator
        hooked(Customer("c-1"), "o-2")
        plain(Customer("c-2"), "b-1")
        tracker.emit("bad", customer_id="c-3", metadata={"n": "\ud800"}, on_outcome=own)
    finally:
        sender.close()
    assert [(o.reference, o.status, o.reason) for o in own.items] == [
        ("purchase", "dropped", "rejected"),
        ("purchase", "delivered", None),
        ("bad", "dropped", "invalid_event"),  # dropped by the tracker, told all the same
    ]
    assert emulator.event_count == 2


def test_a_hook_that_is_not_callable_fails_at_decoration() -> None:
    tracker = Tracker(DraftSender())
    with pytest.raises(ConfigurationError, match=r"@track\('e'\) on .*pay: on_outcome must be"):

        @tracker.track("e", customer_id="cid", on_outcome=42)  # type: ignore[arg-type]
        def pay(cid: str) -> None: ...

    with pytest.raises(ConfigurationError, match="on_outcome must be callable"):
        tracker.emit("e", customer_id="c", on_outcome="nope")  # type: ignore[arg-type]


def _source(tracked: Any) -> str:
    return "".join(linecache.getlines(tracked._self_wrapper.__code__.co_filename))


def test_the_draft_carries_the_hook_and_the_plain_path_is_unchanged() -> None:
    sender = DraftSender()
    tracker = Tracker(sender)

    def hook(outcome: DeliveryOutcome) -> None: ...

    hooked, plain = checkout_pair(tracker, hook)
    hooked(Customer("c-1"), "o-1")
    plain(Customer("c-1"), "b-1")
    with_hook, without = sender.drafts
    assert len(with_hook) == 10
    assert with_hook.on_outcome is hook
    assert len(without) == 9
    assert without.on_outcome is None
    assert item_hook(with_hook) is hook
    assert item_hook(without) is None
    assert with_hook.with_outcome(None) == tuple(with_hook)[:9]
    assert without.with_outcome(hook).on_outcome is hook
    # The plain wrapper's source has no trace of the hook; the hooked one differs by it.
    assert "_hook" not in _source(plain)
    hooked_source = _source(hooked)
    assert "_now(), _hook))" in hooked_source
    assert "_now()))" in _source(plain)
    # Laid out alike, another hook: the same source, each wrapper its own hook.

    def other(outcome: DeliveryOutcome) -> None: ...

    again, _ = checkout_pair(tracker, other)
    assert _source(again) == hooked_source
    again(Customer("c-2"), "o-2")
    assert sender.drafts[-1].on_outcome is other


def test_an_event_keeps_its_hook_while_it_lives() -> None:
    def hook(outcome: DeliveryOutcome) -> None: ...

    draft = EventDraft("e", "c-1", None, None, None, (), (), "f", 1.7e9).with_outcome(hook)
    event = draft.to_event()
    assert item_hook(event) is hook
    assert item_hook(EventDraft("e", "c", None, None, None, (), (), None, 1.7e9).to_event()) is None
    key = id(event)
    del event
    gc.collect()
    assert key not in EVENT_HOOKS
