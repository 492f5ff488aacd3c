"""Typing examples checked by mypy (never run): decorated callables keep their types."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from typing_extensions import assert_type

from gbtrack import Call, InMemorySender, Span, SpanContext, Tracker, literal, span, track
from gbtrack.testing import CapturedEvents, capture_events


@track("checkout", customer_id="customer_id", metadata={"total": "result", "src": literal("web")})
def checkout(customer_id: str, total: float, *, coupon: str | None = None) -> float:
    return total


assert_type(checkout("c", 1.0, coupon="x"), float)


@track("paid", customer_id=lambda call: call.arguments["uid"], on="always")
async def pay(uid: str) -> int:
    return 1


async def use_pay() -> None:
    assert_type(await pay("u"), int)


@track("rows")
def rows() -> Iterator[int]:
    yield 1


assert_type(rows(), Iterator[int])


@track("stream")
async def stream() -> AsyncIterator[str]:
    yield "x"


def resolver(call: Call) -> object:
    return call.result


class Shop:
    @track("method", customer_id="self.owner", metadata={"n": resolver})
    def method(self, n: int) -> str:
        return str(n)

    @track("cls", customer_id="cls.tenant")
    @classmethod
    def make(cls, tenant: str) -> Shop:
        return cls()

    @staticmethod
    @track("static", customer_id="who")
    def helper(who: str) -> bool:
        return True


assert_type(Shop().method(3), str)
assert_type(Shop.make("t"), Shop)
assert_type(Shop.helper("w"), bool)

tracker = Tracker(InMemorySender())


@tracker.track("explicit", customer_id="uid")
def explicit(uid: str) -> None: ...


explicit("u")

context: SpanContext = span("manual", customer_id="c")
with context as handle:
    assert_type(handle, Span)
    handle["k"] = 1
    handle.update(a=1)

with capture_events() as events:
    assert_type(events, CapturedEvents)
    events.assert_tracked("checkout", customer_id="c", total=1.0)

# The signatures survive: wrong calls are errors (an unused ignore would fail mypy --strict).
checkout(1, 1.0)  # type: ignore[arg-type]
checkout("c", 1.0, coupn="x")  # type: ignore[call-arg]
Shop().method("3")  # type: ignore[arg-type]
Shop.helper(1)  # type: ignore[arg-type]
