"""span(): manual events with ``with`` and ``async with``."""

from __future__ import annotations

import pytest

from gbtrack import (
    GbtrackError,
    InMemorySender,
    Span,
    SpanContext,
    Tracker,
    TrackingError,
    identify,
    span,
)
from gbtrack.testing import capture_events


def test_span_collects_and_sends_on_exit(tracker: Tracker, sender: InMemorySender) -> None:
    context = tracker.span("checkout", customer_id="c-1", metadata={"step": "start"})
    assert isinstance(context, SpanContext)
    with context as handle:
        assert isinstance(handle, Span)
        handle.set("items", 3)
        handle["total"] = 9.5
        handle.update({"currency": "EGP"}, coupon="X", step="done")
        handle.identify(email="a@example.com", mobile="+20123456789")
        assert sender.events == []
    (event,) = sender.events
    assert event.customer_id == "c-1"
    assert (event.email, event.mobile) == ("a@example.com", "+20123456789")
    assert event.metadata == {
        "step": "done",
        "items": 3,
        "total": 9.5,
        "currency": "EGP",
        "coupon": "X",
    }
    assert handle.event is not None
    assert handle.event.metadata == event.metadata  # the draft handed to the tracker
    assert "ended" in repr(handle)


def test_span_identify_sets_customer_and_token(tracker: Tracker, sender: InMemorySender) -> None:
    with tracker.span("e") as handle:
        handle.identify("late-id", session_token="tok")
    event = sender.events[0]
    assert event.customer_id == "late-id"
    assert event.session_token is not None
    assert event.session_token.get_secret_value() == "tok"


def test_span_uses_ambient_identity(tracker: Tracker, sender: InMemorySender) -> None:
    with identify("amb", email="x@example.com"), tracker.span("e"):
        pass
    assert (sender.events[0].customer_id, sender.events[0].email) == ("amb", "x@example.com")


def test_span_without_customer_is_dropped(tracker: Tracker, sender: InMemorySender) -> None:
    with tracker.span("e"):
        pass
    assert sender.events == []
    assert tracker.stats.dropped == {"no_customer_id": 1}


def test_span_cancel(tracker: Tracker, sender: InMemorySender) -> None:
    with tracker.span("e", customer_id="c") as handle:
        handle.cancel()
    assert sender.events == []
    assert "cancelled" in repr(handle)


@pytest.mark.parametrize(
    ("on", "ok_sent", "error_sent"),
    [("success", True, False), ("error", False, True), ("always", True, True)],
)
def test_span_on(
    tracker: Tracker, sender: InMemorySender, on: str, ok_sent: bool, error_sent: bool
) -> None:
    with tracker.span("ok", customer_id="c", on=on):
        pass
    with pytest.raises(KeyError), tracker.span("failed", customer_id="c", on=on):
        raise KeyError("x")
    names = [e.name for e in sender.events]
    assert names == [n for n, sent in (("ok", ok_sent), ("failed", error_sent)) if sent]


def test_span_ignores_base_exceptions(tracker: Tracker, sender: InMemorySender) -> None:
    with pytest.raises(KeyboardInterrupt), tracker.span("e", customer_id="c", on="always"):
        raise KeyboardInterrupt
    assert sender.events == []


def test_span_never_sent_twice(tracker: Tracker, sender: InMemorySender) -> None:
    context = tracker.span("e", customer_id="c")
    with context as handle:
        pass
    with pytest.raises(GbtrackError, match="already used"), context:
        pass  # pragma: no cover
    with pytest.raises(GbtrackError, match="already ended"):
        handle.set("k", 1)
    assert len(sender.events) == 1
    assert "ended" in repr(context)


def test_span_invalid_metadata(tracker: Tracker, strict_tracker: Tracker) -> None:
    with tracker.span("e", customer_id="c") as handle:
        handle["bad"] = object()
    assert tracker.stats.dropped == {"invalid_event": 1}
    with pytest.raises(TrackingError, match="bad"), strict_tracker.span("e", customer_id="c") as h:
        h["bad"] = [1]


def test_span_invalid_on() -> None:
    with pytest.raises(GbtrackError, match="on must be"):
        span("e", on="later")  # type: ignore[arg-type]


def test_span_disabled_tracker(tracker: Tracker, sender: InMemorySender) -> None:
    tracker.enabled = False
    with tracker.span("e", customer_id="c"):
        pass
    assert sender.events == []


async def test_async_span(tracker: Tracker, sender: InMemorySender) -> None:
    async with tracker.span("a", customer_id="c") as handle:
        handle["k"] = "v"
    with pytest.raises(ValueError):
        async with tracker.span("b", customer_id="c", on="error"):
            raise ValueError
    assert [(e.name, e.metadata) for e in sender.events] == [("a", {"k": "v"}), ("b", {})]


def test_module_span_uses_default_tracker() -> None:
    with capture_events() as events, span("cart_checked", customer_id="c-1") as handle:
        handle["items"] = 3
    events.assert_tracked("cart_checked", customer_id="c-1", items=3)
