"""Gameball's resources: one frozen description per endpoint family (events, orders).

The delivery engine treats events and orders as two resources of one API. Each
:class:`Resource` says where it goes (a path per version and a batch path), which
keys it needs, its own rate bucket, whether items of one customer may be merged into
one request, how its answer is read and which answers mean "already there". httpx-free,
like the rest of :mod:`gbtrack._protocol`.

UNCONFIRMED (see the design notes, ``gameball-orders.md`` §1.4-1.5): Gameball documents
that a duplicate ``orderId`` "is rejected" but not how. The default duplicate code is
9004 ("Transaction ID Already Exists"); it is configuration
(:attr:`gbtrack.senders.RetryPolicy.duplicate_order_codes`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from gbtrack._protocol._outcome import Outcome

__all__ = [
    "DUPLICATE_ORDER_CODES",
    "EVENTS",
    "ORDERS",
    "Resource",
    "is_duplicate",
    "order_result",
]

DUPLICATE_ORDER_CODES: Final = frozenset({9004})
"""Gameball codes that mean "this order already exists" (UNCONFIRMED, configurable)."""

_EMPTY: Mapping[str, Any] = MappingProxyType({})

# The parts of an order's answer worth returning (OAS 200 body, and the POS guide's).
_ORDER_FIELDS: Final = ("rewardedPoints", "redeemedPoints", "pointsEarned", "customerId", "status")


def _no_result(body: object) -> Mapping[str, Any]:
    return _EMPTY


def order_result(body: object) -> Mapping[str, Any]:
    """The parsed subset of an order's answer: ``rewardedPoints``, ``redeemedPoints``, ...

    Parsed defensively (the documented shapes differ): only the known keys present in a
    JSON object are kept, plus ``lineItems`` when it is a list. Anything else gives an
    empty mapping.
    """
    if not isinstance(body, Mapping):
        return _EMPTY
    result = {key: body[key] for key in _ORDER_FIELDS if key in body}
    items = body.get("lineItems")
    if isinstance(items, list):
        result["lineItems"] = items
    return MappingProxyType(result)


@dataclass(frozen=True)
class Resource:
    """One Gameball endpoint family, as the delivery engine needs to know it.

    Attributes:
        name: ``"events"`` or ``"orders"`` (also the rate bucket's name).
        item: What one item is called in outcomes: ``"event"`` or ``"order"``.
        paths: The path per API version (``"4.0"``, ``"4.1"``).
        batch_path: The batch-create path (jobs polled like events').
        needs_secret: Whether both keys are required on every version.
        limits: Gameball's rate limits for the bucket, ``(limit, seconds)`` pairs.
        merge: Whether one customer's items may share one request (events: yes).
        duplicate_codes: Codes that mean "already processed" (a natural key).
    """

    name: str
    item: str
    paths: Mapping[str, str]
    batch_path: str
    needs_secret: bool
    limits: tuple[tuple[int, float], ...]
    merge: bool
    duplicate_codes: frozenset[int]

    def path(self, secure: bool) -> str:
        """The path of one request: v4.1 when ``secure`` (or a session token), else v4.0."""
        return self.paths["4.1" if secure else "4.0"]

    def result(self, body: object) -> Mapping[str, Any]:
        """The parsed subset of a delivered answer (empty for events)."""
        return order_result(body) if self.name == "orders" else _no_result(body)


EVENTS: Final = Resource(
    name="events",
    item="event",
    paths=MappingProxyType(
        {"4.0": "/api/v4.0/integrations/events", "4.1": "/api/v4.1/integrations/events"}
    ),
    batch_path="/api/v4.0/integrations/batch/events",
    needs_secret=False,
    limits=((100, 1.0), (1200, 30.0)),
    merge=True,
    duplicate_codes=frozenset(),
)
"""Customer events: several names per request, merged per customer; no natural key."""

ORDERS: Final = Resource(
    name="orders",
    item="order",
    paths=MappingProxyType(
        {"4.0": "/api/v4.0/integrations/orders", "4.1": "/api/v4.1/integrations/orders"}
    ),
    batch_path="/api/v4.0/integrations/batch/orders",
    needs_secret=True,
    limits=((30, 1.0), (360, 30.0)),
    merge=False,
    duplicate_codes=DUPLICATE_ORDER_CODES,
)
"""Orders: both keys always, one order per request, ``orderId`` the natural key."""


def is_duplicate(outcome: Outcome, codes: frozenset[int]) -> bool:
    """Whether a refused answer says the item already exists (its code or status in ``codes``)."""
    if outcome.delivered or outcome.retryable or not codes:
        return False
    error = outcome.error
    code = getattr(error, "code", None)
    return (code is not None and code in codes) or (
        outcome.status is not None and outcome.status in codes
    )
