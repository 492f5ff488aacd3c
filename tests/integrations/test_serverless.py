"""gbtrack.integrations.serverless: a bounded flush at the end of every invocation."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import gbtrack
from gbtrack import InMemorySender, Tracker, track
from gbtrack.emulator import GameballEmulator
from gbtrack.integrations.serverless import serverless_function
from gbtrack.senders import BackgroundSender


@track("order_placed", metadata={"order": "order"})
def place(order: str) -> None:
    """Tracked for the ambient customer."""


class Context:
    """The part of a Lambda context the decorator reads."""

    def __init__(self, millis: int) -> None:
        self.millis = millis

    def get_remaining_time_in_millis(self) -> int:
        return self.millis


class Recording(InMemorySender):
    def __init__(self) -> None:
        super().__init__()
        self.flushes: list[float | None] = []

    def flush(self, timeout: float | None = None) -> bool:
        self.flushes.append(timeout)
        return super().flush(timeout)


def test_each_invocation_ends_with_a_flush_that_delivers() -> None:
    with GameballEmulator() as gameball:
        # A long interval: only the flush at the end of the invocation sends the events.
        sender = BackgroundSender(
            api_key=gameball.api_key, base_url=gameball.url, flush_interval=60
        )
        tracker = Tracker(sender)

        @serverless_function(tracker=tracker, identity=lambda event, context: event["user"])
        def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
            for order in event["orders"]:
                tracker.emit("order_placed", metadata={"order": order})
            return {"status": 200}

        assert handler({"user": "c-1", "orders": ["o-1", "o-2"]}, Context(30_000)) == {
            "status": 200
        }
        assert gameball.event_count == 2  # no waiting: delivered before the handler returned
        assert handler({"user": "c-2", "orders": ["o-3"]}, Context(30_000)) == {"status": 200}
        assert [(e.customer_id, e.metadata["order"]) for e in gameball.events] == [
            ("c-1", "o-1"),
            ("c-1", "o-2"),
            ("c-2", "o-3"),
        ]
        tracker.close(5)


def test_the_flush_is_bounded_by_the_remaining_time() -> None:
    sender = Recording()
    tracker = Tracker(sender)

    @serverless_function(tracker=tracker, timeout=2.0)
    def handler(event: object = None, context: object = None) -> None:
        return None

    handler({}, Context(30_000))
    handler({}, Context(1_000))  # 1 s left: 0.5 s for the flush
    handler({}, Context(100))  # nearly out of time: no wait at all
    handler({}, object())  # not a Lambda context: the timeout
    handler()  # no arguments at all
    assert sender.flushes == [2.0, 0.5, 0.0, 2.0, 2.0]


def test_a_raising_handler_still_flushes_and_raises_its_own_error() -> None:
    sender = Recording()

    @serverless_function(tracker=Tracker(sender))
    def handler(event: object, context: object) -> None:
        raise LookupError("business error")

    with pytest.raises(LookupError, match="business error"):
        handler({}, None)
    assert sender.flushes == [2.0]


def test_bare_decorator_uses_the_default_tracker() -> None:
    sender = Recording()
    gbtrack.configure(sender=sender)

    @serverless_function
    def handler(event: dict[str, str], context: object) -> str:
        with gbtrack.identify(event["user"]):
            place("o-9")
        return "done"

    assert handler({"user": "c-5"}, None) == "done"
    assert sender.flushes == [2.0]
    assert [(e.customer_id, e.name) for e in sender.events] == [("c-5", "order_placed")]
    assert handler.__name__ == "handler"


async def test_async_handlers_flush_off_the_event_loop() -> None:
    sender = Recording()

    @serverless_function(tracker=Tracker(sender), identity=lambda event, context: "c-3")
    async def handler(event: object, context: object) -> str | None:
        return gbtrack.current_identity().customer_id

    assert await handler({}, Context(10_000)) == "c-3"
    assert sender.flushes == [2.0]


def test_a_failing_identity_function_runs_anonymously(caplog: pytest.LogCaptureFixture) -> None:
    sender = Recording()

    @serverless_function(tracker=Tracker(sender), identity=lambda event, context: event["nope"])
    def handler(event: dict[str, str], context: object) -> str | None:
        return gbtrack.current_identity().customer_id

    with caplog.at_level(logging.WARNING, logger="gbtrack"):
        assert handler({}, None) is None
    assert "raised KeyError" in caplog.text


def test_an_unsettled_flush_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    class Slow(InMemorySender):
        def flush(self, timeout: float | None = None) -> bool:
            return False

    @serverless_function(tracker=Tracker(Slow()))
    def handler(event: object, context: object) -> int:
        return 7

    with caplog.at_level(logging.WARNING, logger="gbtrack"):
        assert handler({}, None) == 7
    assert "not every event was delivered" in caplog.text


def test_negative_timeout_is_refused() -> None:
    with pytest.raises(ValueError, match="timeout"):
        serverless_function(timeout=-1)
