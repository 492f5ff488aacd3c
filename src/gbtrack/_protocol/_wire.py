"""What one request carries (:class:`EventBatch`) and coalescing.

An :class:`EventBatch` is one customer's events for one request to
``/integrations/events``: Gameball takes several events per request as the keys of
``events``, so an event name can appear at most once. :func:`coalesce` groups a stream
of events into such batches.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from gbtrack._event import Event, mask

__all__ = [
    "DEFAULT_BASE_URL",
    "MAX_BATCH_ITEMS",
    "EventBatch",
    "coalesce",
    "stored_body",
    "wire_body",
]

DEFAULT_BASE_URL = "https://api.gameball.co"
"""Gameball's production API."""
MAX_BATCH_ITEMS = 1000
"""At most this many customer objects in one batch-create request."""


def _token_value(token: SecretStr | None) -> str | None:
    return None if token is None else token.get_secret_value()


def wire_body(events: Sequence[Event], *, copy: bool = True) -> dict[str, Any]:
    """The Gameball request body of one customer's events: the one builder of it.

    ``{"customerId", "events": {name: metadata, ...}}`` plus ``email`` and ``mobile``
    when set; the identity is the first event's (an :class:`EventBatch`'s events share
    it). The session token is a header, never part of the body. The batch endpoint
    sends a list of these; the outbox stores one event's plus its id and time
    (:func:`stored_body`).

    Args:
        events: One customer's events, each name at most once, oldest first.
        copy: Copy each metadata dict, so that a caller editing the body cannot change
            the events; ``False`` for a body serialised at once.
    """
    first = events[0]
    body: dict[str, Any] = {
        "customerId": first.customer_id,
        "events": {e.name: dict(e.metadata) if copy else e.metadata for e in events},
    }
    if first.email is not None:
        body["email"] = first.email
    if first.mobile is not None:
        body["mobile"] = first.mobile
    return body


def stored_body(event: Event) -> dict[str, Any]:
    """What the outbox stores for ``event``: its :func:`wire_body` plus id and time.

    ``{"customerId", "events": {name: metadata}, "email"?, "mobile"?, "eventId",
    "timestamp"}``; the session token is never stored.
    """
    body = wire_body((event,), copy=False)
    body["eventId"] = event.event_id
    body["timestamp"] = event.timestamp.isoformat()
    return body


@dataclass(frozen=True)
class EventBatch:
    """One customer's events for one request: the unit the Gameball client sends.

    Build batches with :func:`coalesce` (or :meth:`from_event`); the constructor checks
    the invariants and raises ``ValueError`` when they do not hold, since that is a
    programming error.

    Attributes:
        customer_id: Gameball's ``customerId``, shared by every event.
        email: The shared email, or ``None``.
        mobile: The shared mobile, or ``None``.
        session_token: The shared session token (sent as ``X-GB-TOKEN``), or ``None``.
        events: The events, in order; each event name appears at most once.
    """

    customer_id: str
    email: str | None
    mobile: str | None
    session_token: SecretStr | None
    events: tuple[Event, ...]

    def __post_init__(self) -> None:
        if not self.customer_id:
            raise ValueError("EventBatch needs a non-empty customer_id")
        if not self.events:
            raise ValueError("EventBatch needs at least one event")
        names = {event.name for event in self.events}
        if len(names) != len(self.events):
            raise ValueError("EventBatch carries an event name more than once")
        token = _token_value(self.session_token)
        for event in self.events:
            if (
                event.customer_id != self.customer_id
                or event.email != self.email
                or event.mobile != self.mobile
                or _token_value(event.session_token) != token
            ):
                raise ValueError(
                    f"event {event.name!r} does not share the batch's identity "
                    "(customer id, email, mobile and session token)"
                )

    @classmethod
    def from_event(cls, event: Event) -> EventBatch:
        """Return a batch holding ``event`` alone, with its identity."""
        return cls(event.customer_id, event.email, event.mobile, event.session_token, (event,))

    def body(self) -> dict[str, Any]:
        """Return the request body (:func:`wire_body` of the events, a fresh copy)."""
        return wire_body(self.events)

    def __len__(self) -> int:
        return len(self.events)

    def __repr__(self) -> str:
        # Email and mobile masked, the token hidden by SecretStr, events by name only.
        return (
            f"EventBatch(customer_id={self.customer_id!r}, email={mask('email', self.email)!r}, "
            f"mobile={mask('mobile', self.mobile)!r}, session_token={self.session_token!r}, "
            f"events={tuple(event.name for event in self.events)!r})"
        )


def coalesce(events: Iterable[Event], *, max_events: int | None = None) -> list[EventBatch]:
    """Group events into per-request batches.

    Events are grouped by (customer id, email, mobile, session token value). An event
    name appears at most once per group, so a repeated name opens another group for
    that identity, and later events of that identity join the newest group; read in
    order, one identity's groups therefore hold its events in their original order.
    Groups are returned in order of first appearance.

    Args:
        events: The events, oldest first.
        max_events: At most this many events per group (``None``: no limit).

    Returns:
        The batches, each ready for :meth:`GameballClient.send`.

    Raises:
        ValueError: If ``max_events`` is smaller than 1.
    """
    if max_events is not None and max_events < 1:
        raise ValueError("max_events must be at least 1")
    groups: list[list[Event]] = []
    names: list[set[str]] = []
    newest: dict[tuple[str, str | None, str | None, str | None], int] = {}
    for event in events:
        token = event.session_token
        key = (
            event.customer_id,
            event.email,
            event.mobile,
            None if token is None else token.get_secret_value(),
        )
        at = newest.get(key)
        if (
            at is None
            or event.name in names[at]
            or (max_events is not None and len(groups[at]) >= max_events)
        ):
            at = newest[key] = len(groups)
            groups.append([])
            names.append(set())
        groups[at].append(event)
        names[at].add(event.name)
    # Every group meets EventBatch's invariants by construction (one identity key, each
    # name once, events that passed Event's checks), so the checks are not run again.
    return [_trusted_batch(g) for g in groups]


def _trusted_batch(group: list[Event]) -> EventBatch:
    """An :class:`EventBatch` of events known to share one identity and distinct names."""
    first = group[0]
    batch: EventBatch = object.__new__(EventBatch)
    # A frozen dataclass refuses setattr, not its instance dict.
    batch.__dict__.update(
        customer_id=first.customer_id,
        email=first.email,
        mobile=first.mobile,
        session_token=first.session_token,
        events=tuple(group),
    )
    return batch
