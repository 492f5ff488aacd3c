"""@track on generator and async-generator functions: the event follows the iteration."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Generator

import pytest
from tests._paths import call_path  # noqa: F401 - runs every test on both call paths

from gbtrack import ExpressionError, InMemorySender, Tracker


def test_generator_event_after_exhaustion_with_return_value(
    tracker: Tracker, sender: InMemorySender
) -> None:
    @tracker.track("exported", customer_id="uid", metadata={"rows": "result"})
    def export(uid: str, n: int) -> Generator[int, None, int]:
        yield from range(n)
        return n

    assert inspect.isgeneratorfunction(export)
    gen = export("u", 3)
    assert next(gen) == 0
    assert sender.events == []
    assert list(gen) == [1, 2]
    (event,) = sender.events
    assert event.metadata == {"rows": 3}


def test_generator_send_and_throw_are_forwarded(tracker: Tracker, sender: InMemorySender) -> None:
    @tracker.track("acc", customer_id="uid", metadata={"total": "result"})
    def accumulate(uid: str) -> Generator[int, int, int]:
        total = 0
        while True:
            try:
                value = yield total
            except KeyError:
                return total
            total += value

    gen = accumulate("u")
    next(gen)
    assert gen.send(2) == 2
    assert gen.send(5) == 7
    with pytest.raises(StopIteration) as stop:
        gen.throw(KeyError("stop"))
    assert stop.value.value == 7
    assert sender.events[0].metadata == {"total": 7}


def test_generator_error(tracker: Tracker, sender: InMemorySender) -> None:
    @tracker.track("broke", customer_id="uid", metadata={"e": "error.args[0]"}, on="error")
    def gen(uid: str) -> Generator[int, None, None]:
        yield 1
        raise RuntimeError("half way")

    g = gen("u")
    assert next(g) == 1
    with pytest.raises(RuntimeError, match="half way"):
        next(g)
    assert sender.events[0].metadata == {"e": "half way"}


def test_generator_closed_early_sends_nothing(tracker: Tracker, sender: InMemorySender) -> None:
    closed: list[bool] = []

    @tracker.track("e", customer_id="uid", on="always")
    def gen(uid: str) -> Generator[int, None, None]:
        try:
            yield 1
            yield 2
        finally:
            closed.append(True)

    g = gen("u")
    next(g)
    g.close()
    assert closed == [True]
    assert sender.events == []


def test_generator_disabled(tracker: Tracker, sender: InMemorySender) -> None:
    @tracker.track("e", customer_id="uid")
    def gen(uid: str) -> Generator[int, None, None]:
        yield 1

    tracker.enabled = False
    assert list(gen("u")) == [1]
    assert sender.events == []


async def test_async_generator(tracker: Tracker, sender: InMemorySender) -> None:
    @tracker.track("streamed", customer_id="uid", metadata={"n": "n"})
    async def stream(uid: str, n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    assert inspect.isasyncgenfunction(stream)
    assert not inspect.iscoroutinefunction(stream)
    agen = stream("u", 3)
    assert await agen.__anext__() == 0
    assert sender.events == []
    assert [x async for x in agen] == [1, 2]
    assert sender.events[0].metadata == {"n": 3}


async def test_async_generator_asend_athrow(tracker: Tracker, sender: InMemorySender) -> None:
    @tracker.track("acc", customer_id="uid")
    async def acc(uid: str) -> AsyncIterator[int]:
        total = 0
        while True:
            try:
                value = yield total
            except KeyError:
                yield -1
                return
            total += value

    agen = acc("u")
    assert await agen.__anext__() == 0
    assert await agen.asend(4) == 4
    assert await agen.athrow(KeyError("x")) == -1
    with pytest.raises(StopAsyncIteration):
        await agen.__anext__()
    assert len(sender.events) == 1


async def test_async_generator_error_and_early_close(
    tracker: Tracker, sender: InMemorySender
) -> None:
    @tracker.track("e", customer_id="uid", metadata={"why": "error.args[0]"}, on="error")
    async def broken(uid: str) -> AsyncIterator[int]:
        yield 1
        raise ValueError("bad row")

    agen = broken("u")
    assert await agen.__anext__() == 1
    with pytest.raises(ValueError, match="bad row"):
        await agen.__anext__()
    assert len(sender.events) == 1
    assert sender.events[0].metadata == {"why": "bad row"}

    closed: list[bool] = []

    @tracker.track("x", customer_id="uid", on="always")
    async def endless(uid: str) -> AsyncIterator[int]:
        try:
            while True:
                yield 1
        finally:
            closed.append(True)

    agen2 = endless("u")
    await agen2.__anext__()
    await agen2.aclose()
    assert closed == [True]
    assert [e.name for e in sender.events] == ["e"]


async def test_async_generator_empty_and_disabled(tracker: Tracker, sender: InMemorySender) -> None:
    @tracker.track("e", customer_id="uid")
    async def empty(uid: str) -> AsyncIterator[int]:
        return
        yield  # pragma: no cover

    assert [x async for x in empty("u")] == []
    assert len(sender.events) == 1
    tracker.enabled = False
    assert [x async for x in empty("u")] == []
    assert len(sender.events) == 1


def test_async_generator_result_refused() -> None:
    with pytest.raises(ExpressionError, match="async generator has no return value"):

        @Tracker(InMemorySender()).track("e", metadata={"r": "result"})
        async def agen() -> AsyncIterator[int]:
            yield 1
