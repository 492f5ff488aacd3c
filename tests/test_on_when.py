"""``on`` (success / error / always) and ``when``."""

from __future__ import annotations

from typing import Any

import pytest
from tests._paths import call_path  # noqa: F401 - runs every test on both call paths

from gbtrack import Call, InMemorySender, Tracker, TrackingError, literal


def build(tracker: Tracker, on: Any, **options: Any) -> Any:
    @tracker.track("e", customer_id=literal("c"), on=on, **options)
    def f(fail: bool) -> str:
        if fail:
            raise ValueError("nope")
        return "ok"

    return f


@pytest.mark.parametrize(
    ("on", "expected"),
    [("success", [False]), ("error", [True]), ("always", [False, True])],
)
def test_on(tracker: Tracker, sender: InMemorySender, on: str, expected: list[bool]) -> None:
    f = build(
        tracker,
        on,
        metadata={"failed": lambda call: call.error is not None},
    )
    assert f(False) == "ok"
    with pytest.raises(ValueError, match="nope"):
        f(True)
    assert [e.metadata["failed"] for e in sender.events] == expected


def test_always_result_and_error_roots(tracker: Tracker, sender: InMemorySender) -> None:
    f = build(tracker, "always", metadata={"result": "result", "error": "error.args[0]"})
    f(False)
    with pytest.raises(ValueError):
        f(True)
    assert [e.metadata for e in sender.events] == [{"result": "ok"}, {"error": "nope"}]


def test_error_reraised_untouched_even_when_tracking_fails(tracker: Tracker) -> None:
    def broken(call: Call) -> object:
        raise RuntimeError("resolver bug")

    f = build(tracker, "error", metadata={"x": broken})
    with pytest.raises(ValueError, match="nope") as info:
        f(True)
    assert info.value.__traceback__ is not None
    assert tracker.stats.dropped == {"resolver_error": 1}


def test_strict_error_event_failure_raises_tracking_error(strict_tracker: Tracker) -> None:
    f = build(strict_tracker, "error", metadata={"x": lambda call: 1 / 0})
    with pytest.raises(TrackingError) as info:
        f(True)
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    assert info.value.reason == "resolver_error"


def test_when_expression(tracker: Tracker, sender: InMemorySender) -> None:
    @tracker.track("big", customer_id="uid", when="order.big")
    def place(uid: str, order: dict[str, Any]) -> None: ...

    place("u", {"big": True})
    place("u", {"big": False})
    place("u", {})  # missing: falsy
    place("u", {"big": 0})
    assert len(sender.events) == 1
    stats = tracker.stats
    assert stats.sent == 1
    assert stats.dropped == {}  # skipped events are not drops
    assert tracker._reporter.get("skipped") == 3


def test_when_callable_and_constant(tracker: Tracker, sender: InMemorySender) -> None:
    @tracker.track("e", customer_id="uid", when=lambda call: call.result > 1)
    def f(uid: str, n: int) -> int:
        return n

    @tracker.track("never", customer_id="uid", when=False)  # type: ignore[arg-type]
    def g(uid: str) -> None: ...

    f("u", 1)
    f("u", 2)
    g("u")
    assert [e.name for e in sender.events] == ["e"]


def test_when_on_error(tracker: Tracker, sender: InMemorySender) -> None:
    f = build(tracker, "error", when="error.args[0]")
    with pytest.raises(ValueError):
        f(True)
    assert len(sender.events) == 1


def test_when_raising_is_a_resolver_error(tracker: Tracker, sender: InMemorySender) -> None:
    errors: list[TrackingError] = []
    tracker.on_error = errors.append
    f = build(tracker, "success", when=lambda call: 1 / 0)
    assert f(False) == "ok"
    assert sender.events == []
    assert "resolving when" in str(errors[0])


def test_path_that_raises_is_a_resolver_error(tracker: Tracker, sender: InMemorySender) -> None:
    class Order:
        @property
        def total(self) -> float:
            raise RuntimeError("lazy load failed")

    errors: list[TrackingError] = []
    tracker.on_error = errors.append

    @tracker.track("e", customer_id=literal("c"), metadata={"total": "order.total"})
    def f(order: Order) -> str:
        return "ok"

    assert f(Order()) == "ok"
    assert sender.events == []
    assert "resolving metadata['total'] (the path 'order.total') raised RuntimeError" in str(
        errors[0]
    )
    assert "lazy load failed" not in str(errors[0])  # values never in messages
