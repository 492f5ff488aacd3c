"""Hot-path benchmarks: what ``@track``, ``span()`` and ``identify()`` cost per call.

Every figure is a ratio against a baseline measured in the same run, interleaved:
the tracked call's overhead over the undecorated function, divided by the overhead of
a bare ``wrapt`` pass-through decorator on the same function.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Coroutine
from typing import Any

import wrapt

from benchmarks._harness import Result, Table, per_call_ns
from gbtrack import Event, Tracker, identify
from gbtrack._event import _new_event

TRACKED_LIMIT = 2.5
DISABLED_LIMIT = 1.2


class NullSender:
    """A sender that accepts and forgets: isolates the tracking cost from delivery."""

    def send(self, event: Event) -> None:
        pass

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def close(self, timeout: float | None = None) -> bool:
        return True


class Customer:
    def __init__(self) -> None:
        self.id = "cust-42"
        self.email = "c42@example.com"


class Order:
    def __init__(self) -> None:
        self.id = "ORD-1"
        self.total = 149.99
        self.currency = "USD"


@wrapt.decorator
def passthrough(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    return wrapped(*args, **kwargs)


TRACK_OPTIONS: dict[str, Any] = {
    "customer_id": "customer.id",
    "metadata": {"order_id": "result.id", "amount": "result.total", "currency": "result.currency"},
}


def _ratio(tracked: float, wrapped: float, plain: float) -> tuple[float, float, float]:
    over_tracked = tracked - plain
    over_wrapt = wrapped - plain
    return over_tracked, over_wrapt, over_tracked / over_wrapt


def _row(
    table: Table, name: str, times: dict[str, float], limit: float, key: str = "tracked"
) -> None:
    over_tracked, over_wrapt, ratio = _ratio(times[key], times["wrapt"], times["plain"])
    table.add(
        Result(
            benchmark=name,
            measured=f"+{over_tracked:.0f} ns/call",
            baseline=f"bare wrapt +{over_wrapt:.0f} ns/call (plain {times['plain']:.0f} ns)",
            ratio=ratio,
            target=f"<= {limit}x",
            ok=ratio <= limit,
        )
    )


def bench_sync(table: Table, tracker: Tracker) -> None:
    def checkout(customer: Customer, cart: object) -> Order:
        return Order()

    tracked = tracker.track("purchase_completed", **TRACK_OPTIONS)(checkout)
    bare = passthrough(checkout)
    customer = Customer()
    sender = tracker.sender
    metadata = {"order_id": "ORD-1", "amount": 149.99, "currency": "USD"}

    def floor() -> None:
        # What every tracked call must do whatever the code around it: build the
        # validated pydantic Event (the design's unit) the cheapest way, hand it over.
        sender.send(_new_event("purchase_completed", "cust-42", None, None, metadata, None))

    times = per_call_ns(
        {
            "plain": lambda: checkout(customer, None),
            "wrapt": lambda: bare(customer, None),
            "tracked": lambda: tracked(customer, None),
            "floor": floor,
        }
    )
    _row(table, "@track sync function (id + 3 metadata paths)", times, TRACKED_LIMIT)
    over_wrapt = times["wrapt"] - times["plain"]
    table.add(
        Result(
            benchmark="floor: trusted pydantic Event + send() alone",
            measured=f"{times['floor']:.0f} ns/call",
            baseline=f"bare wrapt +{over_wrapt:.0f} ns/call",
            ratio=(over_wrapt + times["floor"]) / over_wrapt,
        )
    )


def _drive(coro: Coroutine[Any, Any, Any]) -> Any:
    # Run a coroutine that never awaits anything pending, without an event loop's cost.
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    raise RuntimeError("coroutine suspended")


def bench_async(table: Table, tracker: Tracker) -> None:
    async def checkout(customer: Customer, cart: object) -> Order:
        return Order()

    tracked = tracker.track("purchase_completed", **TRACK_OPTIONS)(checkout)
    bare = passthrough(checkout)
    customer = Customer()
    times = per_call_ns(
        {
            "plain": lambda: _drive(checkout(customer, None)),
            "wrapt": lambda: _drive(bare(customer, None)),
            "tracked": lambda: _drive(tracked(customer, None)),
        }
    )
    _row(table, "@track async def", times, TRACKED_LIMIT)


def bench_method(table: Table, tracker: Tracker) -> None:
    class Service:
        def checkout(self, customer: Customer, cart: object) -> Order:
            return Order()

        @passthrough
        def checkout_wrapt(self, customer: Customer, cart: object) -> Order:
            return Order()

        @tracker.track("purchase_completed", **TRACK_OPTIONS)
        def checkout_tracked(self, customer: Customer, cart: object) -> Order:
            return Order()

    service = Service()
    customer = Customer()
    times = per_call_ns(
        {
            "plain": lambda: service.checkout(customer, None),
            "wrapt": lambda: service.checkout_wrapt(customer, None),
            "tracked": lambda: service.checkout_tracked(customer, None),
        }
    )
    _row(table, "@track instance method", times, TRACKED_LIMIT)


def bench_disabled(table: Table) -> None:
    tracker = Tracker(NullSender(), enabled=False)

    def checkout(customer: Customer, cart: object) -> Order:
        return Order()

    tracked = tracker.track("purchase_completed", **TRACK_OPTIONS)(checkout)
    bare = passthrough(checkout)
    customer = Customer()
    times = per_call_ns(
        {
            "plain": lambda: checkout(customer, None),
            "wrapt": lambda: bare(customer, None),
            "tracked": lambda: tracked(customer, None),
        }
    )
    _row(table, "@track, tracker disabled", times, DISABLED_LIMIT)


def bench_span(table: Table, tracker: Tracker) -> None:
    sink: dict[str, object] = {}

    def baseline() -> None:
        # The least a hand-written manual event could do: a context manager and 3 stores.
        with contextlib.nullcontext():
            sink["order_id"] = "ORD-1"
            sink["amount"] = 149.99
            sink["currency"] = "USD"

    def with_span() -> None:
        with tracker.span("purchase_completed", customer_id="cust-42") as s:
            s.set("order_id", "ORD-1")
            s.set("amount", 149.99)
            s.set("currency", "USD")

    times = per_call_ns({"baseline": baseline, "span": with_span})
    table.add(
        Result(
            benchmark="span() + 3 set() + send",
            measured=f"{times['span']:.0f} ns",
            baseline=f"nullcontext + 3 dict stores {times['baseline']:.0f} ns",
            ratio=times["span"] / times["baseline"],
        )
    )


def bench_identify(table: Table) -> None:
    var: contextvars.ContextVar[object] = contextvars.ContextVar("baseline", default=None)
    value = object()

    def baseline() -> None:
        token = var.set(value)
        var.reset(token)

    def with_identify() -> None:
        with identify("cust-42"):
            pass

    times = per_call_ns({"baseline": baseline, "identify": with_identify})
    table.add(
        Result(
            benchmark="identify() enter/exit",
            measured=f"{times['identify']:.0f} ns",
            baseline=f"ContextVar set/reset {times['baseline']:.0f} ns",
            ratio=times["identify"] / times["baseline"],
        )
    )


def run(table: Table) -> None:
    """Run every hot-path benchmark into ``table``."""
    tracker = Tracker(NullSender())
    bench_sync(table, tracker)
    bench_async(table, tracker)
    bench_method(table, tracker)
    bench_disabled(table)
    bench_span(table, tracker)
    bench_identify(table)
