"""@track on coroutines."""

from __future__ import annotations

import asyncio
import inspect

import pytest
from tests._paths import call_path  # noqa: F401 - runs every test on both call paths

from gbtrack import InMemorySender, Tracker, TrackingError, identify


async def test_coroutine_success(tracker: Tracker, sender: InMemorySender) -> None:
    @tracker.track("paid", customer_id="uid", metadata={"amount": "result"})
    async def pay(uid: str, amount: float) -> float:
        await asyncio.sleep(0)
        return amount

    assert inspect.iscoroutinefunction(pay)
    assert not inspect.isasyncgenfunction(pay)
    assert str(inspect.signature(pay)) == "(uid: 'str', amount: 'float') -> 'float'"
    assert await pay("u", 3.5) == 3.5
    (event,) = sender.events
    assert (event.name, event.customer_id, event.metadata) == ("paid", "u", {"amount": 3.5})


async def test_coroutine_error_on_error(tracker: Tracker, sender: InMemorySender) -> None:
    @tracker.track("failed", customer_id="uid", metadata={"why": "error.args[0]"}, on="error")
    async def pay(uid: str) -> None:
        raise ValueError("card declined")

    with pytest.raises(ValueError, match="card declined"):
        await pay("u")
    (event,) = sender.events
    assert event.metadata == {"why": "card declined"}


async def test_coroutine_nothing_sent_before_await(
    tracker: Tracker, sender: InMemorySender
) -> None:
    @tracker.track("e", customer_id="uid")
    async def f(uid: str) -> int:
        return 1

    coro = f("u")
    assert sender.events == []
    assert await coro == 1
    assert len(sender.events) == 1


async def test_coroutine_ambient_identity_of_the_task(
    tracker: Tracker, sender: InMemorySender
) -> None:
    @tracker.track("e")
    async def f() -> None:
        await asyncio.sleep(0)

    async def as_customer(cid: str) -> None:
        with identify(cid):
            await f()

    await asyncio.gather(*(as_customer(f"c{i}") for i in range(20)))
    assert sorted(e.customer_id for e in sender.events) == sorted(f"c{i}" for i in range(20))


async def test_coroutine_disabled(tracker: Tracker, sender: InMemorySender) -> None:
    @tracker.track("e", customer_id="uid")
    async def f(uid: str) -> int:
        return 2

    tracker.enabled = False
    assert await f("u") == 2
    assert sender.events == []


async def test_coroutine_strict_drop_raises(strict_tracker: Tracker) -> None:
    @strict_tracker.track("e")
    async def f() -> None: ...

    with pytest.raises(TrackingError):
        await f()


async def test_async_method(tracker: Tracker, sender: InMemorySender) -> None:
    class Repo:
        owner = "o-1"

        @tracker.track("saved", customer_id="self.owner", metadata={"key": "key"})
        async def save(self, key: str) -> str:
            return key

    assert await Repo().save("k") == "k"
    assert sender.events[0].customer_id == "o-1"
    assert sender.events[0].metadata == {"key": "k"}


async def test_cancellation_sends_nothing(tracker: Tracker, sender: InMemorySender) -> None:
    started = asyncio.Event()

    @tracker.track("e", customer_id="uid", on="always")
    async def slow(uid: str) -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(slow("u"))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sender.events == []
