"""Hot-path benchmarks: what ``@track``, ``span()`` and ``identify()`` cost the caller.

Measured as the CALLER THREAD's CPU (:func:`time.thread_time_ns` around a loop of calls),
with the tracker's sender a production :class:`~gbtrack.senders.BackgroundSender`
configured for delivery (API key, secret key: bulk mode) into the local emulator running
in another process. Its worker and I/O threads deliver while the loops run; their CPU is
not counted here (``bench_e2e`` counts the whole process). Calls cycle over 10,000
distinct pre-built customers.

Every figure is a ratio against a baseline measured in the same run, interleaved: the
tracked call's overhead over the undecorated function, divided by the overhead of a bare
``wrapt`` pass-through decorator on the same function. After the timed loops the sender
is flushed and every event must have been delivered (the table says so), so that a
sender that silently drops cannot look fast.

Public API only: the internals are being rewritten.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
from collections.abc import Coroutine
from typing import Any

import wrapt

from benchmarks._harness import Result, Table, caller_cpu_ns
from benchmarks._servers import (
    emulator,
    emulator_events,
    emulator_stats,
    segment_sink,
    sink_events,
    wait_for,
)
from benchmarks._workload import (
    API_KEY,
    EVENT,
    SECRET_KEY,
    TRACK_OPTIONS,
    Cart,
    Customer,
    Order,
    customer_args,
)
from gbtrack import Tracker, each, identify, track_order
from gbtrack.senders import BackgroundSender, RateLimiter

TRACKED_LIMIT = 2.5
SEGMENT_LIMIT = 0.1
DISABLED_LIMIT = 1.1
SPAN_LIMIT = 5.0
IDENTIFY_LIMIT = 3.5
_FLUSH_TIMEOUT = 120.0


@wrapt.decorator
def passthrough(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    return wrapped(*args, **kwargs)


def delivery_sender(url: str) -> BackgroundSender:
    """The production sender, configured for bulk delivery into the emulator at ``url``."""
    return BackgroundSender(
        api_key=API_KEY,
        secret_key=SECRET_KEY,  # bulk mode: the batch endpoint
        base_url=url,
        max_queue_size=2_000_000,  # nothing is dropped for overflow
        # The emulator runs without rate limits; so does the client's limiter.
        rate_limiter=RateLimiter(((100_000, 1.0),), margin=0.0),
    )


class _Delivery:
    """Counts what a tracker sent and what the emulator received, across resets."""

    def __init__(self, url: str, tracker: Tracker) -> None:
        import httpx

        self.url = url
        self.tracker = tracker
        self.http = httpx.Client(timeout=10.0)
        self.received = 0

    def settle(self) -> None:
        """Flush, wait for the emulator to count everything, then reset it (bounded memory)."""
        self.tracker.flush(timeout=_FLUSH_TIMEOUT)
        expected = self.tracker.stats.delivered - self.received
        self.received += wait_for(lambda: emulator_events(self.url, self.http), expected)
        self.http.post(f"{self.url}/_emulator/reset")


def _overhead_row(
    table: Table, name: str, times: dict[str, float], limit: float, key: str = "tracked"
) -> None:
    over_tracked = times[key] - times["plain"]
    over_wrapt = times["wrapt"] - times["plain"]
    ratio = over_tracked / over_wrapt
    table.add(
        Result(
            benchmark=name,
            measured=f"+{over_tracked:.0f} ns/call",
            baseline=f"bare wrapt +{over_wrapt:.0f} ns/call (plain {times['plain']:.0f} ns)",
            ratio=ratio,
            target=f"<= {limit:g}x",
            ok=ratio <= limit,
        )
    )


def bench_sync(table: Table, tracker: Tracker, args: list[Any], **kw: Any) -> None:
    def checkout(customer: Customer, cart: Cart) -> Order:
        return Order(cart)

    tracked = tracker.track(EVENT, **TRACK_OPTIONS)(checkout)
    bare = passthrough(checkout)
    times = caller_cpu_ns({"plain": checkout, "wrapt": bare, "tracked": tracked}, args, **kw)
    _overhead_row(
        table, "@track sync function (id + email + 4 metadata paths)", times, TRACKED_LIMIT
    )


def _drive(coro: Coroutine[Any, Any, Any]) -> Any:
    # Run a coroutine that never awaits anything pending, without an event loop's cost.
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    raise RuntimeError("coroutine suspended")


def bench_segment(table: Table, tracker: Tracker, args: list[Any], **kw: Any) -> None:
    """The tracked call beside the same event sent by hand with Segment's ``track()``.

    Segment's client (analytics-python, defaults, its consumer thread delivering into
    the loopback sink like the tracker's worker into the emulator) is created before
    timing; the sink's count is checked after the rounds, so that nothing is dropped.
    """
    import httpx
    from segment.analytics.client import Client

    def checkout(customer: Customer, cart: Cart) -> Order:
        return Order(cart)

    tracked = tracker.track(EVENT, **TRACK_OPTIONS)(checkout)
    with segment_sink() as url:
        failed: list[int] = []
        client = Client(
            "bench-write-key",
            host=url,
            max_queue_size=2_000_000,
            on_error=lambda error, batch: failed.append(len(batch)),
        )

        def by_hand(customer: Customer, cart: Cart) -> Order:
            order = Order(cart)
            client.track(
                customer.id,
                EVENT,
                {
                    "order_id": order.id,
                    "amount": order.total,
                    "currency": order.currency,
                    "items": order.items,
                },
            )
            return order

        times = caller_cpu_ns(
            {"plain": checkout, "segment": by_hand, "tracked": tracked},
            args,
            **kw,
        )
        client.flush()
        client.join()
        with httpx.Client(timeout=10.0) as http:
            counted = sink_events(url, http)
    over_tracked = times["tracked"] - times["plain"]
    over_segment = times["segment"] - times["plain"]
    ratio = over_tracked / over_segment
    table.add(
        Result(
            benchmark="@track sync vs Segment's track() (same event, by hand)",
            measured=f"+{over_tracked:.0f} ns/call",
            baseline=f"Segment track() +{over_segment:.0f} ns/call (sink counted {counted:,}"
            f"{', failed ' + str(sum(failed)) if failed else ''})",
            ratio=ratio,
            target=f"<= {SEGMENT_LIMIT:g}x",
            ok=ratio <= SEGMENT_LIMIT and not failed,
        )
    )


def bench_async(table: Table, tracker: Tracker, args: list[Any], **kw: Any) -> None:
    async def checkout(customer: Customer, cart: Cart) -> Order:
        return Order(cart)

    tracked = tracker.track(EVENT, **TRACK_OPTIONS)(checkout)
    bare = passthrough(checkout)
    times = caller_cpu_ns(
        {
            "plain": lambda c, k: _drive(checkout(c, k)),
            "wrapt": lambda c, k: _drive(bare(c, k)),
            "tracked": lambda c, k: _drive(tracked(c, k)),
        },
        args,
        **kw,
    )
    _overhead_row(table, "@track async def", times, TRACKED_LIMIT)


def bench_method(table: Table, tracker: Tracker, args: list[Any], **kw: Any) -> None:
    class Service:
        def checkout(self, customer: Customer, cart: Cart) -> Order:
            return Order(cart)

        @passthrough
        def checkout_wrapt(self, customer: Customer, cart: Cart) -> Order:
            return Order(cart)

        @tracker.track(EVENT, **TRACK_OPTIONS)
        def checkout_tracked(self, customer: Customer, cart: Cart) -> Order:
            return Order(cart)

    service = Service()
    # Attribute lookup and binding on every call, as in an application.
    times = caller_cpu_ns(
        {
            "plain": lambda c, k: service.checkout(c, k),
            "wrapt": lambda c, k: service.checkout_wrapt(c, k),
            "tracked": lambda c, k: service.checkout_tracked(c, k),
        },
        args,
        **kw,
    )
    _overhead_row(table, "@track instance method", times, TRACKED_LIMIT)


def bench_disabled(table: Table, sender: BackgroundSender, args: list[Any], **kw: Any) -> None:
    tracker = Tracker(sender, enabled=False)

    def checkout(customer: Customer, cart: Cart) -> Order:
        return Order(cart)

    tracked = tracker.track(EVENT, **TRACK_OPTIONS)(checkout)
    bare = passthrough(checkout)
    times = caller_cpu_ns({"plain": checkout, "wrapt": bare, "tracked": tracked}, args, **kw)
    _overhead_row(table, "@track, tracker disabled", times, DISABLED_LIMIT)


def bench_span(table: Table, tracker: Tracker, args: list[Any], **kw: Any) -> None:
    sink: dict[str, object] = {}

    def baseline(customer: Customer, cart: Cart) -> None:
        # The least a hand-written manual event could do: a context manager and 3 stores.
        with contextlib.nullcontext():
            sink["order_id"] = cart.id
            sink["amount"] = cart.total
            sink["currency"] = cart.currency

    def with_span(customer: Customer, cart: Cart) -> None:
        with tracker.span(EVENT, customer_id=customer.id) as s:
            s.set("order_id", cart.id)
            s.set("amount", cart.total)
            s.set("currency", cart.currency)

    times = caller_cpu_ns({"baseline": baseline, "span": with_span}, args, **kw)
    ratio = times["span"] / times["baseline"]
    table.add(
        Result(
            benchmark="span() + 3 set() (sent on exit)",
            measured=f"{times['span']:.0f} ns",
            baseline=f"nullcontext + 3 dict stores {times['baseline']:.0f} ns",
            ratio=ratio,
            target=f"<= {SPAN_LIMIT:g}x",
            ok=ratio <= SPAN_LIMIT,
        )
    )


def bench_identify(table: Table, args: list[Any], **kw: Any) -> None:
    var: contextvars.ContextVar[object] = contextvars.ContextVar("baseline", default=None)

    def baseline(customer: Customer, cart: Cart) -> None:
        token = var.set(customer)
        var.reset(token)

    def with_identify(customer: Customer, cart: Cart) -> None:
        with identify(customer.id):
            pass

    times = caller_cpu_ns({"baseline": baseline, "identify": with_identify}, args, **kw)
    ratio = times["identify"] / times["baseline"]
    table.add(
        Result(
            benchmark="identify() enter/exit",
            measured=f"{times['identify']:.0f} ns",
            baseline=f"ContextVar set/reset {times['baseline']:.0f} ns",
            ratio=ratio,
            target=f"<= {IDENTIFY_LIMIT:g}x",
            ok=ratio <= IDENTIFY_LIMIT,
        )
    )


def _delivery_row(table: Table, tracker: Tracker, delivery: _Delivery) -> None:
    stats = tracker.stats
    complete = (
        stats.total_dropped == 0
        and stats.delivered == stats.sent
        and delivery.received == stats.sent
        and stats.in_queue == 0
        and stats.in_flight == 0
    )
    dropped = dict(stats.dropped) or "none"
    table.add(
        Result(
            benchmark="hot-path sender: events delivered during the rows above",
            measured=f"{stats.delivered:,} of {stats.sent:,} delivered; dropped {dropped}",
            baseline=f"emulator counted {delivery.received:,}",
            ratio=None,
            target="all delivered",
            ok=complete,
        )
    )


def run(table: Table, *, quick: bool = False) -> None:
    """Run every hot-path benchmark into ``table``."""
    repeats = 5 if quick else 9
    args = customer_args()
    with emulator("--no-rate-limit") as url:
        sender = delivery_sender(url)
        tracker = Tracker(sender)
        delivery = _Delivery(url, tracker)
        # Untimed, after every interleaved round: the worker delivers the round's events
        # while the next candidates run, and memory stays bounded.
        kw: dict[str, Any] = {"repeats": repeats, "between": delivery.settle}
        try:
            bench_sync(table, tracker, args, **kw)
            bench_sync_hooked(table, tracker, args, **kw)
            bench_segment(table, tracker, args, **kw)
            bench_async(table, tracker, args, **kw)
            bench_method(table, tracker, args, **kw)
            bench_disabled(table, sender, args, **kw)
            bench_span(table, tracker, args, **kw)
            bench_identify(table, args, repeats=repeats)
            delivery.settle()
            _delivery_row(table, tracker, delivery)
            bench_track_order(table, args, repeats=repeats)
        finally:
            tracker.close(timeout=10)
            delivery.http.close()


# --- issue 22's rows: an event's own outcome hook, and @track_order ---------------------
def bench_sync_hooked(table: Table, tracker: Tracker, args: list[Any], **kw: Any) -> None:
    """The sync row's function tracked with ``on_outcome=`` beside the same without one.

    A function tracked without a hook runs the very generated source it ran before the
    feature (``tests/senders/test_outcomes_track.py`` holds the sources equal); this row
    shows, in one run, what a hook adds on the caller's thread: one more element in
    the draft (the worker builds and reports the outcomes, off this thread).
    """
    told = [0]

    def hook(outcome: object) -> None:
        told[0] += 1

    def checkout(customer: Customer, cart: Cart) -> Order:
        return Order(cart)

    tracked = tracker.track(EVENT, **TRACK_OPTIONS)(checkout)
    hooked = tracker.track(EVENT, on_outcome=hook, **TRACK_OPTIONS)(checkout)
    bare = passthrough(checkout)
    times = caller_cpu_ns(
        {"plain": checkout, "wrapt": bare, "tracked": tracked, "hooked": hooked}, args, **kw
    )
    over_hooked = times["hooked"] - times["plain"]
    over_tracked = times["tracked"] - times["plain"]
    over_wrapt = times["wrapt"] - times["plain"]
    expected = len(args) * (kw.get("repeats", 9) + 1)  # the warm-up pass, then the rounds
    table.add(
        Result(
            benchmark="@track sync, on_outcome= set (vs the same without a hook)",
            measured=f"+{over_hooked:.0f} ns/call ({over_hooked / over_wrapt:.2f}x bare wrapt)",
            baseline=f"no hook +{over_tracked:.0f} ns/call ({over_tracked / over_wrapt:.2f}x "
            f"bare wrapt +{over_wrapt:.0f}); hook told {told[0]:,} of {expected:,}",
            ratio=over_hooked / over_tracked,
            target="report (~1x)",
            ok=told[0] == expected,
        )
    )


class _Product:
    __slots__ = ("id", "name")

    def __init__(self, n: int) -> None:
        self.id = f"p-{n}"
        self.name = f"Product {n}"


class _Line:
    __slots__ = ("price", "product", "quantity")

    def __init__(self, n: int) -> None:
        self.product = _Product(n)
        self.quantity = 1 + n % 3
        self.price = 2.5 + n % 7


class _Placed:
    __slots__ = ("id", "lines", "total")

    def __init__(self, order_id: str, total: float, lines: list[_Line]) -> None:
        self.id = order_id
        self.total = total
        self.lines = lines


def bench_track_order(table: Table, args: list[Any], **kw: Any) -> None:
    """``@track_order``: a checkout returning an order with 3 line items via ``each()``.

    Its own emulator and BackgroundSender (secret key: orders; the orders bucket raised
    like the events one), so that the event rows' delivery check stays theirs. Each call
    places a new order id (a counter, paid by the baseline too): the emulator refuses a
    duplicate order.
    """
    import httpx

    lines = [[_Line(n), _Line(n + 1), _Line(n + 2)] for n in range(len(args))]
    carts = [(customer, lines[n]) for n, (customer, _cart) in enumerate(args)]
    numbers = itertools.count()

    def checkout(customer: Customer, basket: list[_Line]) -> _Placed:
        return _Placed(f"ORD-{next(numbers)}", 42.5, basket)

    with emulator("--no-rate-limit") as url:
        sender = BackgroundSender(
            api_key=API_KEY,
            secret_key=SECRET_KEY,
            base_url=url,
            max_queue_size=2_000_000,
            rate_limiter=RateLimiter(((100_000, 1.0),), margin=0.0),
            order_rate_limiter=RateLimiter(((100_000, 1.0),), margin=0.0),
        )
        tracker = Tracker(sender)
        tracked = track_order(
            customer_id="customer.id",
            email="customer.email",
            order_id="result.id",
            total_paid="result.total",
            line_items=each(
                "result.lines",
                product_id="product.id",
                title="product.name",
                quantity="quantity",
                price="price",
            ),
            tracker=tracker,
        )(checkout)
        bare = passthrough(checkout)
        http = httpx.Client(timeout=10.0)
        received = [0]

        def settle() -> None:
            tracker.flush(timeout=_FLUSH_TIMEOUT)
            expected = tracker.stats.delivered - received[0]
            received[0] += wait_for(
                lambda: int(emulator_stats(url, http)["orders"]), expected, _FLUSH_TIMEOUT
            )
            http.post(f"{url}/_emulator/reset")

        try:
            kw = {**kw, "between": settle}
            times = caller_cpu_ns(
                {"plain": checkout, "wrapt": bare, "tracked": tracked}, carts, **kw
            )
            settle()
            stats = tracker.stats
        finally:
            tracker.close(timeout=10)
            http.close()
    over_tracked = times["tracked"] - times["plain"]
    over_wrapt = times["wrapt"] - times["plain"]
    complete = stats.total_dropped == 0 and stats.delivered == stats.sent == received[0]
    table.add(
        Result(
            benchmark="@track_order (id + email + 2 paths + 3 line items via each())",
            measured=f"+{over_tracked:.0f} ns/call; {stats.delivered:,} of {stats.sent:,} "
            f"orders delivered, dropped {dict(stats.dropped) or 'none'}",
            baseline=f"bare wrapt +{over_wrapt:.0f} ns/call (plain {times['plain']:.0f} ns); "
            f"emulator counted {received[0]:,}",
            ratio=over_tracked / over_wrapt,
            target="report",
            ok=complete,
        )
    )
