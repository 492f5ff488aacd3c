"""Validation off the caller's thread: BackgroundSender takes drafts and validates in its worker.

Against the emulator over real loopback HTTP (issue 8: "Full validation into Event runs
where events are serialised: in the delivery worker").
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from tests.senders import API_KEY

from gbtrack import EventDraft, InMemorySender, Limits, Tracker, TrackingError, identify
from gbtrack.emulator import GameballEmulator
from gbtrack.senders import BackgroundSender, RetryPolicy


@pytest.fixture
def sender(emulator: GameballEmulator) -> Iterator[BackgroundSender]:
    s = BackgroundSender(
        api_key=API_KEY,
        base_url=emulator.url,
        flush_interval=0.05,
        retry=RetryPolicy(base_delay=0.01, max_delay=0.05),
    )
    try:
        yield s
    finally:
        s.close(timeout=10)


class _Spy(BackgroundSender):
    """Records what send() receives and on which thread validation happens."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.received: list[object] = []
        self.validated_on: set[str] = set()

    def send(self, event: Any) -> None:
        self.received.append(event)
        super().send(event)

    def records(self, items: Any) -> Any:  # where the worker checks drafts
        self.validated_on.add(threading.current_thread().name)
        return super().records(items)


def test_the_tracker_hands_drafts_and_the_worker_validates(emulator: GameballEmulator) -> None:
    spy = _Spy(api_key=API_KEY, base_url=emulator.url, flush_interval=0.05)
    tracker = Tracker(spy)
    try:

        @tracker.track("purchase", customer_id="cid", metadata={"amount": "amount"})
        def buy(cid: str, amount: float) -> None: ...

        buy("c-1", 9.5)
        assert [type(x) for x in spy.received] == [EventDraft]
        assert spy.limits is tracker.limits  # the tracker shares its limits
        assert tracker.flush(10)
    finally:
        tracker.close(10)
    assert spy.validated_on  # the drafts were checked...
    assert threading.current_thread().name not in spy.validated_on  # ...off this thread
    (got,) = emulator.events
    assert (got.customer_id, got.name, got.metadata) == ("c-1", "purchase", {"amount": 9.5})


def test_an_invalid_draft_is_counted_in_the_worker_and_the_rest_delivered(
    emulator: GameballEmulator, sender: BackgroundSender
) -> None:
    errors: list[TrackingError] = []
    tracker = Tracker(sender, on_error=errors.append)

    @tracker.track("purchase", customer_id="cid", metadata={"note": "note"})
    def buy(cid: str, note: str) -> None: ...

    buy("c-1", "fine")
    buy("c-2", "bad \ud800 surrogate")  # accepted on the caller's thread, refused by the worker
    buy("c-3", "x" * 5_000)  # over Limits.max_string_length
    assert not tracker.flush(10)  # settled, but an event was dropped (defect 5)
    assert sorted(e.customer_id for e in emulator.events) == ["c-1"]
    assert tracker.stats.dropped == {"invalid_event": 2}
    assert {e.reason for e in errors} == {"invalid_event"}
    assert all(e.function is not None and e.function.endswith("buy") for e in errors)
    assert any("max_string_length" in str(e) for e in errors)


def test_the_trackers_limits_reach_the_worker(
    emulator: GameballEmulator, sender: BackgroundSender
) -> None:
    tracker = Tracker(sender, limits=Limits(max_string_length=3))
    tracker.emit("e", customer_id="c-1", metadata={"k": "abc"})
    tracker.emit("e", customer_id="c-2", metadata={"k": "abcd"})
    assert not tracker.flush(10)  # settled, but an event was dropped (defect 5)
    assert [e.customer_id for e in emulator.events] == ["c-1"]
    assert tracker.stats.dropped == {"invalid_event": 1}
    tracker.limits = Limits()  # a new setting reaches the sender too
    assert sender.limits is tracker.limits


def test_strict_validates_on_the_callers_thread(sender: BackgroundSender) -> None:
    tracker = Tracker(sender, strict=True)
    with pytest.raises(TrackingError, match="surrogate"):
        tracker.emit("e", customer_id="c-1", metadata={"k": "\udfff"})


def test_senders_that_do_not_take_drafts_get_validated_events() -> None:
    memory = InMemorySender()
    assert memory.accepts_drafts is False
    tracker = Tracker(memory)
    tracker.emit("e", customer_id="c-1", metadata={"k": "v"})
    tracker.emit("e", customer_id="c-2", metadata={"k": "\ud800"})
    assert [e.customer_id for e in memory.events] == ["c-1"]
    assert tracker.stats.dropped == {"invalid_event": 1}


def test_queued_drafts_are_validated_when_the_sender_closes(emulator: GameballEmulator) -> None:
    # Closing with drafts still queued: each is validated before it is dropped or spilled.
    spilled: list[Any] = []

    class Spill:
        def spill(self, events: Any, reason: str) -> int:
            spilled.extend(events)
            return len(events)

    s = BackgroundSender(
        api_key=API_KEY, base_url="http://127.0.0.1:9", flush_interval=60, spill=Spill()
    )
    tracker = Tracker(s)
    tracker.emit("e", customer_id="c-1")
    tracker.emit("e", customer_id="c-2", metadata={"k": "\ud800"})
    s.close(timeout=0.5)
    assert [e.customer_id for e in spilled] == ["c-1"]
    assert tracker.stats.dropped.get("invalid_event") == 1


def test_before_send_runs_in_the_worker_and_the_caller_keeps_its_fast_path(
    emulator: GameballEmulator, sender: BackgroundSender
) -> None:
    threads: set[str] = set()

    def scrub(event: Any) -> Any:
        threads.add(threading.current_thread().name)
        if event.name == "internal":
            return None
        return event.model_copy(update={"email": None})

    tracker = Tracker(sender, before_send=scrub)
    assert tracker.gate is not None  # nothing extra on the caller's thread
    tracker.emit("purchase", customer_id="c-1", email="a@example.com")
    tracker.emit("internal", customer_id="c-2")
    assert tracker.flush(10)
    assert threading.current_thread().name not in threads
    assert [(e.customer_id, e.email) for e in emulator.events] == [("c-1", None)]
    assert tracker.stats.dropped.get("before_send") == 1


def test_a_token_that_cannot_be_a_header_is_invalid_and_never_logged(
    emulator: GameballEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    # Issue 18 item 7: a CR/LF token reached httpcore's DEBUG log ("Illegal header value
    # b'...'") and was reported as "Gameball rejected the request", though Gameball never
    # saw it. It is an invalid event, refused before any request, its value logged nowhere.
    secret = "s3cr3t-session"
    errors: list[TrackingError] = []
    sender = BackgroundSender(
        api_key=API_KEY, secret_key=emulator.secret_key, base_url=emulator.url, flush_interval=0.05
    )
    tracker = Tracker(sender, on_error=errors.append)
    with caplog.at_level("DEBUG"):  # every logger: httpx's and httpcore's too
        with identify("c-1", session_token=f"{secret}\r\nX-Evil: 1"):
            tracker.emit("purchase")
        tracker.emit("purchase", customer_id="c-2", session_token="eyJ.a-b_c~d.e")
        assert not tracker.flush(10)  # one dropped
    tracker.close(10)
    assert sender.stats().dropped == {"invalid_event": 1}
    assert [(e.customer_id, e.has_session_token) for e in emulator.events] == [("c-2", True)]
    assert len(emulator.request_log) == 1  # the bad token never left
    (error,) = errors
    assert error.reason == "invalid_event"
    assert "session_token holds a line break (CR or LF) at index 14" in str(error)
    texts = [caplog.text, str(error), repr(error), str(tracker.stats)]
    texts += [r.exc_text or "" for r in caplog.records]
    assert not [t for t in texts if secret in t or "X-Evil" in t]
