"""Drops the tracker decides before its sender reach the ``on_outcome`` hooks too.

``on_outcome`` is a superset of ``on_error``: an event without a customer, a value
that cannot be read, an order the sender cannot take, an event refused under
``strict``... each is told once, as ``dropped`` with its reason, to the item's own hook
and the tracker's, on the sender's thread (never the caller's), against the emulator.
"""

from __future__ import annotations

import threading

import pytest
from tests.senders import API_KEY

from gbtrack import DeliveryOutcome, Tracker, TrackerSettings, TrackingError
from gbtrack.emulator import GameballEmulator
from gbtrack.senders import BackgroundSender, DirectSender


class Heard:
    """A hook that records each outcome with the thread it ran on."""

    def __init__(self) -> None:
        self.items: list[tuple[DeliveryOutcome, str]] = []
        self.lock = threading.Lock()

    def __call__(self, outcome: DeliveryOutcome) -> None:
        with self.lock:
            self.items.append((outcome, threading.current_thread().name))

    def seen(self) -> list[tuple[str, str, str | None, str | None, str | None]]:
        return [(o.resource, o.customer_id, o.reference, o.status, o.reason) for o, _ in self.items]


def _broken(call: object) -> str:
    raise LookupError("the coupon service is down")


def test_drops_before_the_sender_are_told_on_the_worker(emulator: GameballEmulator) -> None:
    heard, errors, own = Heard(), [], Heard()
    sender = BackgroundSender(api_key=API_KEY, base_url=emulator.url)  # no secret: no orders
    tracker = Tracker(sender)
    tracker.configure(on_outcome=heard, on_error=errors.append)

    @tracker.track("paid", customer_id="customer_id")
    def pay(customer_id: str | None) -> None: ...

    @tracker.track("coupon", customer_id="cid", metadata={"code": _broken}, on_outcome=own)
    def coupon(cid: str) -> None: ...

    pay(None)  # no customer_id
    coupon("c-2")  # a value that cannot be read
    tracker.order(customer_id="c-3", order_id="o-1", total_paid=10)  # no secret key
    pay("c-4")  # delivered
    assert tracker.flush(timeout=10)
    tracker.close()
    assert heard.seen() == [
        ("event", "", "paid", "dropped", "no_customer_id"),
        ("event", "", "coupon", "dropped", "resolver_error"),
        ("order", "c-3", "o-1", "dropped", "orders_unsupported"),
        ("event", "c-4", "paid", "delivered", None),
    ]
    assert own.seen() == [("event", "", "coupon", "dropped", "resolver_error")]
    assert len(errors) == 3  # on_outcome hears every drop on_error hears, and more
    caller = threading.current_thread().name
    assert {thread for _, thread in heard.items + own.items} == {"gbtrack-sender"} != {caller}


def test_strict_tells_the_hook_before_it_raises(emulator: GameballEmulator) -> None:
    heard = Heard()
    sender = DirectSender(api_key=API_KEY, base_url=emulator.url)  # blocking: told inline
    tracker = Tracker(sender)
    tracker.use_settings(TrackerSettings(strict=True, on_outcome=heard))
    with pytest.raises(TrackingError):
        tracker.emit("bad", customer_id="c-1", metadata={"n": "\ud800"})
    sender.close()
    assert heard.seen() == [("event", "c-1", "bad", "dropped", "invalid_event")]


def test_no_hook_no_outcome_built(
    emulator: GameballEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gbtrack._pipeline as pipeline

    def never(*args: object) -> None:
        raise AssertionError("an outcome was built without a hook")

    monkeypatch.setattr(pipeline, "dropped_outcome", never)
    sender = BackgroundSender(api_key=API_KEY, base_url=emulator.url)
    tracker = Tracker(sender)

    @tracker.track("paid", customer_id="customer_id")
    def pay(customer_id: str | None) -> None: ...

    pay(None)
    assert tracker.stats.dropped == {"no_customer_id": 1}
    tracker.close()


def test_a_told_outcome_after_close_runs_at_once(emulator: GameballEmulator) -> None:
    heard = Heard()
    sender = BackgroundSender(api_key=API_KEY, base_url=emulator.url)
    tracker = Tracker(sender)
    tracker.configure(on_outcome=heard)
    sender.close()
    tracker.emit("late", customer_id=None)  # type: ignore[arg-type]
    assert heard.seen()[-1][2:] == ("late", "dropped", "no_customer_id")
