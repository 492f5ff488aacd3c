"""What the emulator accepted: events, orders, the points they earned, Gameball's own events.

:class:`Records` keeps them behind its own lock, so a test can wait for them and read
them while handler threads add more. An order is admitted here, under that lock, so
that two requests with one ``orderId`` can never both be awarded in reject mode.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

from gbtrack.emulator._orders import DuplicateOrders, ReceivedOrder, order_points

__all__ = ["ReceivedEvent", "Records"]


@dataclass(frozen=True)
class ReceivedEvent:
    """One event the emulator accepted.

    Attributes:
        customer_id: The ``customerId`` it was sent for.
        name: The event name (a key of ``events``).
        metadata: The event's metadata, as received.
        email: The request's ``email``, if any.
        mobile: The request's ``mobile``, if any.
        has_session_token: Whether an ``X-GB-TOKEN`` header came with it (its value is
            never kept).
        version: ``"v4.0"``, ``"v4.1"`` or ``"batch"`` (the endpoint that received it).
        request_id: The emulator's id of the request that carried it.
        received_at: When it was received (``time.time()``).
        batch_job_id: The batch job that recorded it, for ``"batch"`` events.
        batch_index: Its item's position in the batch body, for ``"batch"`` events.
    """

    customer_id: str
    name: str
    metadata: dict[str, Any]
    email: str | None
    mobile: str | None
    has_session_token: bool
    version: str
    request_id: str
    received_at: float
    batch_job_id: int | None = None
    batch_index: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the event as the JSON object ``GET /_emulator/events`` lists."""
        return {
            "customerId": self.customer_id,
            "name": self.name,
            "metadata": self.metadata,
            "email": self.email,
            "mobile": self.mobile,
            "hasSessionToken": self.has_session_token,
            "version": self.version,
            "requestId": self.request_id,
            "receivedAt": self.received_at,
            "batchJobId": self.batch_job_id,
            "batchIndex": self.batch_index,
        }


class Records:
    """The accepted events and orders, thread-safe.

    Args:
        max_kept: Keep only the newest this many events, orders and system events
            (counts and points stay exact); ``None`` keeps everything.
    """

    def __init__(self, max_kept: int | None = None) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._events: deque[ReceivedEvent] = deque(maxlen=max_kept)
        self._event_count = 0
        self._orders: deque[ReceivedOrder] = deque(maxlen=max_kept)
        self._order_count = 0
        self._order_ids: Counter[str] = Counter()  # orderId -> times accepted
        self._points: Counter[str] = Counter()  # customerId -> points awarded
        self._system_events: deque[ReceivedEvent] = deque(maxlen=max_kept)

    def add_events(self, events: list[ReceivedEvent]) -> None:
        """Record accepted events."""
        if not events:
            return
        with self._lock:
            self._events.extend(events)
            self._event_count += len(events)
            self._changed.notify_all()

    def admit_order(
        self,
        item: dict[str, Any],
        *,
        points_per_unit: float,
        duplicates: DuplicateOrders,
        place_order: bool,
        version: str,
        request_id: str,
        received_at: float,
        has_token: bool,
        job_id: int | None = None,
        index: int | None = None,
    ) -> ReceivedOrder | None:
        """Record a valid order and award its points, or refuse a duplicate.

        Args:
            item: The validated order object.
            points_per_unit: Points per unit of ``totalPaid``.
            duplicates: ``"reject"``: an ``orderId`` accepted before is refused.
            place_order: Whether to record Gameball's ``place_order`` for it.
            version: ``"v4.0"``, ``"v4.1"`` or ``"batch"``.
            request_id: The request that carried it.
            received_at: When that request arrived (``time.time()``).
            has_token: Whether an ``X-GB-TOKEN`` came with it.
            job_id: The batch job, for batch orders.
            index: The item's position in the batch body, for batch orders.

        Returns:
            The recorded order, or ``None`` for a refused duplicate.
        """
        order_id: str = item["orderId"]
        customer_id: str = item["customerId"]
        points = order_points(item["totalPaid"], points_per_unit)
        email, mobile = item.get("email"), item.get("mobile")
        with self._lock:
            seen = self._order_ids[order_id] > 0
            if seen and duplicates == "reject":
                return None
            order = ReceivedOrder(
                customer_id,
                order_id,
                item["orderDate"],
                item["totalPaid"],
                points,
                item,
                email,
                mobile,
                has_token,
                version,
                request_id,
                received_at,
                job_id,
                index,
                seen,
            )
            self._order_ids[order_id] += 1
            self._orders.append(order)
            self._order_count += 1
            self._points[customer_id] += points
            if place_order:
                # Gameball's Order API fires place_order itself; kept apart from sent events.
                metadata = {"orderId": order_id, "totalPaid": item["totalPaid"], "points": points}
                self._system_events.append(
                    ReceivedEvent(
                        customer_id,
                        "place_order",
                        metadata,
                        email,
                        mobile,
                        has_token,
                        version,
                        request_id,
                        received_at,
                        job_id,
                        index,
                    )
                )
            self._changed.notify_all()
        return order

    @property
    def events(self) -> list[ReceivedEvent]:
        """A copy of the recorded events, oldest first."""
        with self._lock:
            return list(self._events)

    @property
    def event_count(self) -> int:
        """How many events were accepted since the start or the last reset."""
        with self._lock:
            return self._event_count

    @property
    def orders(self) -> list[ReceivedOrder]:
        """A copy of the recorded orders, oldest first."""
        with self._lock:
            return list(self._orders)

    @property
    def order_count(self) -> int:
        """How many orders were accepted since the start or the last reset."""
        with self._lock:
            return self._order_count

    @property
    def points(self) -> dict[str, int]:
        """The points awarded for orders, by customer id."""
        with self._lock:
            return dict(self._points)

    @property
    def system_events(self) -> list[ReceivedEvent]:
        """The events Gameball fires itself (``place_order`` per accepted order), oldest first."""
        with self._lock:
            return list(self._system_events)

    def wait_for_events(self, count: int, timeout: float | None = None) -> bool:
        """Wait until at least ``count`` events were accepted; return whether they were."""
        with self._changed:
            return self._changed.wait_for(lambda: self._event_count >= count, timeout)

    def wait_for_orders(self, count: int, timeout: float | None = None) -> bool:
        """Wait until at least ``count`` orders were accepted; return whether they were."""
        with self._changed:
            return self._changed.wait_for(lambda: self._order_count >= count, timeout)

    def counts(self) -> dict[str, int]:
        """The counters ``GET /_emulator/stats`` shows for the records."""
        with self._lock:
            return {
                "events": self._event_count,
                "storedEvents": len(self._events),
                "orders": self._order_count,
                "storedOrders": len(self._orders),
                "points": sum(self._points.values()),
                "systemEvents": len(self._system_events),
            }

    def reset(self) -> None:
        """Forget every event, order, order id, point and system event."""
        with self._lock:
            self._events.clear()
            self._event_count = 0
            self._orders.clear()
            self._order_count = 0
            self._order_ids.clear()
            self._points.clear()
            self._system_events.clear()
