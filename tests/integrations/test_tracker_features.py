"""before_send, sampling, debug, top-level flush/close and the DirectSender warning."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

import gbtrack
from gbtrack import Event, EventDraft, InMemorySender, Tracker, TrackingError
from gbtrack.emulator import GameballEmulator
from gbtrack.senders import BackgroundSender, BaseSender, DirectSender


def test_fast_path_only_when_no_feature_is_configured() -> None:
    sender = BackgroundSender(api_key="k", base_url="http://127.0.0.1:9")
    try:
        tracker = Tracker(sender)
        assert tracker.gate is not None
        # The BackgroundSender applies before_send in its worker: the fast path stays.
        tracker.configure(before_send=lambda e: e)  # type: ignore[arg-type]
        assert tracker.gate is not None
        tracker.configure(before_send=None)
        for on, off in [
            ({"sample": {"x": 0.5}}, {"sample": {}}),
            ({"debug": True}, {"debug": False}),
        ]:
            tracker.configure(**on)  # type: ignore[arg-type]
            assert tracker.gate is None
            tracker.configure(**off)  # type: ignore[arg-type]
            assert tracker.gate is not None
        tracker.configure(sample={"x": 1.0})  # a rate of 1 samples nothing out
        assert tracker.gate is not None
    finally:
        sender.close(0)


def test_before_send_scrubs_and_drops() -> None:
    def scrub(event: Event) -> Event | None:
        if event.name == "internal":
            return None
        return event.model_copy(update={"email": None, "metadata": {"n": 1}})

    tracker = Tracker(InMemorySender(), before_send=scrub)
    tracker.emit("signed_up", customer_id="c-1", email="a@example.com", metadata={"pw": "x"})
    assert tracker.emit("internal", customer_id="c-1") is None
    [event] = tracker.sender.events
    assert (event.name, event.email, event.metadata) == ("signed_up", None, {"n": 1})
    assert tracker.stats.dropped == {"before_send": 1}


def test_before_send_on_a_draft_taking_sender_sees_validated_events() -> None:
    seen: list[Event] = []

    def hook(event: Event) -> Event:
        seen.append(event)
        return event

    with GameballEmulator() as gameball:
        tracker = Tracker(
            BackgroundSender(api_key=gameball.api_key, base_url=gameball.url), before_send=hook
        )
        tracker.emit("a", customer_id="c-1", metadata={"k": 1})
        assert tracker.flush(10)
        tracker.close(5)
        assert [(e.name, e.customer_id) for e in gameball.events] == [("a", "c-1")]
    assert [type(e) for e in seen] == [Event]


def test_a_raising_hook_drops_with_a_reason_and_never_reaches_the_caller() -> None:
    errors: list[TrackingError] = []

    def broken(event: Event) -> Event:
        raise KeyError("boom")

    tracker = Tracker(InMemorySender(), before_send=broken, on_error=errors.append)

    @tracker.track("paid", customer_id="customer_id")
    def pay(customer_id: str) -> str:
        return "ok"

    assert pay("c-1") == "ok"
    assert tracker.sender.events == []
    assert tracker.stats.dropped == {"before_send_error": 1}
    assert [e.reason for e in errors] == ["before_send_error"]
    assert isinstance(errors[0].__cause__, KeyError)


def test_a_hook_returning_garbage_or_an_invalid_copy_drops() -> None:
    tracker = Tracker(InMemorySender(), before_send=lambda e: "nope")  # type: ignore[arg-type,return-value]
    tracker.emit("a", customer_id="c-1")
    tracker.before_send = lambda e: e.model_copy(update={"metadata": {"bad": [1]}})
    tracker.emit("a", customer_id="c-1")
    assert tracker.sender.events == []
    assert tracker.stats.dropped == {"before_send_error": 1, "invalid_event": 1}


def test_before_send_must_be_callable() -> None:
    with pytest.raises(gbtrack.ConfigurationError):
        Tracker(InMemorySender(), before_send=42)  # type: ignore[arg-type]


def test_sampling_per_event_name() -> None:
    tracker = Tracker(InMemorySender(), sample={"page_viewed": 0.0, "clicked": 0.5})
    for _ in range(400):
        tracker.emit("page_viewed", customer_id="c-1")
        tracker.emit("clicked", customer_id="c-1")
        tracker.emit("purchase", customer_id="c-1")
    names = [e.name for e in tracker.sender.events]
    assert names.count("page_viewed") == 0
    assert names.count("purchase") == 400
    assert 120 < names.count("clicked") < 280  # ~200; the odds of leaving this are < 1e-15
    assert tracker.stats.dropped == {"sampled_out": 400 + (400 - names.count("clicked"))}


@pytest.mark.parametrize("rates", [{"a": 1.5}, {"a": -0.1}, {"a": "0.5"}, {"": 0.5}])
def test_bad_sampling_rates_are_refused(rates: dict[str, object]) -> None:
    with pytest.raises(gbtrack.ConfigurationError):
        Tracker(InMemorySender(), sample=rates)  # type: ignore[arg-type]


def test_debug_logs_one_line_per_event_without_secrets(caplog: pytest.LogCaptureFixture) -> None:
    tracker = Tracker(InMemorySender(), debug=True)
    try:
        with caplog.at_level(logging.INFO, logger="gbtrack"):
            tracker.emit(
                "signed_up",
                customer_id="c-1",
                email="nour@example.com",
                session_token="tok-secret",
                metadata={"plan": "gold-secret-value"},
            )
        lines = [r.getMessage() for r in caplog.records if r.name == "gbtrack"]
        assert len(lines) == 1
        [line] = lines
        assert "'signed_up'" in line
        assert "'c-1'" in line
        assert "plan" in line
        assert "nour@example.com" not in line
        assert "tok-secret" not in line
        assert "gold-secret-value" not in line
        assert logging.getLogger("gbtrack.gameball").isEnabledFor(logging.DEBUG)
    finally:
        tracker.debug = False
    assert not logging.getLogger("gbtrack.gameball").isEnabledFor(logging.DEBUG)


def test_debug_logs_each_gameball_request(caplog: pytest.LogCaptureFixture) -> None:
    with GameballEmulator() as gameball:
        tracker = Tracker(DirectSender(api_key=gameball.api_key, base_url=gameball.url))
        tracker.debug = True
        try:
            with caplog.at_level(logging.INFO, logger="gbtrack"):
                tracker.emit("a", customer_id="c-1")
        finally:
            tracker.debug = False
            tracker.close(5)
    records = [r for r in caplog.records if r.name == "gbtrack.gameball"]
    assert [r.levelno for r in records] == [logging.INFO]  # seen by INFO-level handlers
    requests = [r.getMessage() for r in records]
    assert len(requests) == 1
    assert "200" in requests[0]
    assert gameball.api_key.get_secret_value() not in requests[0]


def test_top_level_flush_and_close_act_on_the_default_tracker() -> None:
    with GameballEmulator() as gameball:
        tracker = gbtrack.configure(api_key=gameball.api_key, base_url=gameball.url)
        sender = tracker.sender
        tracker.emit("a", customer_id="c-1")
        assert gbtrack.flush(10)
        assert gameball.event_count == 1
        assert gbtrack.close(5)
        assert sender.closed
        closed = tracker.stats.dropped.get("closed", 0)  # the default tracker's counts add up
        tracker.emit("b", customer_id="c-1")
        assert tracker.stats.dropped["closed"] == closed + 1


async def test_direct_sender_on_a_running_loop_warns_once() -> None:
    with GameballEmulator() as gameball:
        tracker = Tracker(DirectSender(api_key=gameball.api_key, base_url=gameball.url))
        try:
            with pytest.warns(RuntimeWarning, match="running asyncio event loop"):
                tracker.emit("a", customer_id="c-1")
            tracker.emit("a", customer_id="c-1")  # once per sender: no second warning
            await asyncio.to_thread(tracker.emit, "a", customer_id="c-1")  # no loop there
        finally:
            tracker.close(5)
        assert gameball.event_count == 3


class HookingSender(BaseSender):
    """A draft-taking sender that applies the tracker's before_send where it validates."""

    accepts_drafts = True
    before_send: Callable[[list[Event]], list[Event]] | None = None

    def __init__(self) -> None:
        super().__init__()
        self.queue: list[Event | EventDraft] = []
        self.events: list[Event] = []

    def send(self, item: Event | EventDraft) -> None:  # type: ignore[override]
        self.queue.append(item)

    def flush(self, timeout: float | None = None) -> bool:
        events = self.validated(self.queue)  # "the worker": validated() applies the hook
        self.queue.clear()
        self.events += events
        return True


def test_a_sender_that_applies_the_hook_keeps_the_fast_path() -> None:
    calls: list[str] = []

    def hook(event: Event) -> Event | None:
        calls.append(event.name)
        if event.name == "boom":
            raise ValueError("hook bug")
        return None if event.name == "drop" else event

    sender = HookingSender()
    tracker = Tracker(sender, before_send=hook)
    assert sender.before_send is not None
    assert tracker.gate is not None  # drafts go straight to the sender
    for name in ("keep", "drop", "boom"):
        tracker.emit(name, customer_id="c-1")
    assert calls == []  # nothing on the caller's thread
    assert all(type(item) is EventDraft for item in sender.queue)
    sender.flush()
    assert calls == ["keep", "drop", "boom"]
    assert [e.name for e in sender.events] == ["keep"]
    assert tracker.stats.dropped == {"before_send": 1, "before_send_error": 1}
    tracker.before_send = None
    assert sender.before_send is None


def test_strict_with_a_hooking_sender_validates_inline_and_hooks_once() -> None:
    calls: list[str] = []
    sender = HookingSender()
    tracker = Tracker(sender, before_send=lambda e: calls.append(e.name) or e, strict=True)
    tracker.emit("a", customer_id="c-1")
    sender.flush()
    assert calls == ["a"]
    assert [e.name for e in sender.events] == ["a"]
