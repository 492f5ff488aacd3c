"""What one request carries (:class:`EventBatch`) and coalescing.

An :class:`EventBatch` is one customer's events for one request to
``/integrations/events``: Gameball takes several events per request as the keys of
``events``, so an event name can appear at most once. :func:`coalesce` groups a stream
of events into such batches, :func:`coalesce_records` a stream of light records (the
built-in delivery path, which builds no :class:`~gbtrack.Event` models: a batch's
:attr:`EventBatch.events` are built from its records when first read).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from pydantic import SecretStr

from gbtrack._event import Event, Record, events_of, mask, record_of, wire_of

__all__ = [
    "DEFAULT_BASE_URL",
    "MAX_BATCH_ITEMS",
    "EventBatch",
    "coalesce",
    "coalesce_records",
    "group_records",
    "stored_body",
    "wire_body",
]

_new = object.__new__

DEFAULT_BASE_URL = "https://api.gameball.co"
"""Gameball's production API."""
MAX_BATCH_ITEMS = 1000
"""At most this many customer objects in one batch-create request."""


def _token_value(token: SecretStr | None) -> str | None:
    return None if token is None else token.get_secret_value()


def wire_body(events: Sequence[Event], *, copy: bool = True) -> dict[str, Any]:
    """The Gameball request body of one customer's events.

    ``{"customerId", "events": {name: metadata, ...}}`` plus ``email`` and ``mobile``
    when set; the identity is the first event's (an :class:`EventBatch`'s events share
    it). The session token is a header, never part of the body. The batch endpoint
    sends a list of these; the outbox stores one event's plus its id and time
    (:func:`stored_body`). Its twin over light records is
    :func:`gbtrack._event.wire_of` (the same body; tests hold them equal).

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


class EventBatch:
    """One customer's events for one request: the unit the Gameball client sends.

    Build batches with :func:`coalesce` (or :meth:`from_event`); the constructor checks
    the invariants and raises ``ValueError`` when they do not hold, since that is a
    programming error. Treat a batch as immutable.

    Attributes:
        customer_id: Gameball's ``customerId``, shared by every event.
        email: The shared email, or ``None``.
        mobile: The shared mobile, or ``None``.
        session_token: The shared session token (sent as ``X-GB-TOKEN``), or ``None``.
        records: The events as light records (:data:`gbtrack._event.Record`), in
            order: what the built-in client serialises.
    """

    # Slots, no __dict__: one object per request for the cyclic GC, not two.
    __slots__ = ("_events", "customer_id", "email", "mobile", "records", "session_token")

    customer_id: str
    email: str | None
    mobile: str | None
    session_token: SecretStr | None
    records: tuple[Record, ...]
    _events: tuple[Event, ...] | None

    def __init__(
        self,
        customer_id: str,
        email: str | None,
        mobile: str | None,
        session_token: SecretStr | None,
        events: tuple[Event, ...],
    ) -> None:
        if not customer_id:
            raise ValueError("EventBatch needs a non-empty customer_id")
        if not events:
            raise ValueError("EventBatch needs at least one event")
        names = {event.name for event in events}
        if len(names) != len(events):
            raise ValueError("EventBatch carries an event name more than once")
        token = _token_value(session_token)
        for event in events:
            if (
                event.customer_id != customer_id
                or event.email != email
                or event.mobile != mobile
                or _token_value(event.session_token) != token
            ):
                raise ValueError(
                    f"event {event.name!r} does not share the batch's identity "
                    "(customer id, email, mobile and session token)"
                )
        self.customer_id = customer_id
        self.email = email
        self.mobile = mobile
        self.session_token = session_token
        self._events = events = tuple(events)
        self.records = tuple(record_of(event) for event in events)

    @property
    def events(self) -> tuple[Event, ...]:
        """The events, in order; each event name appears at most once.

        Built from :attr:`records` on first read (a record made from an event gives
        that event back), then kept: every reader sees the same models.
        """
        events = self._events
        if events is None:
            records = self.records
            events = self._events = tuple(events_of(records))
            if any(record[8] is None for record in records):
                # From now on the records carry their events (a split keeps them).
                self.records = tuple(
                    (*record[:8], event) for record, event in zip(records, events, strict=True)
                )
        return events

    @classmethod
    def from_records(cls: type[_Batch], records: tuple[Record, ...]) -> _Batch:
        """A batch of ``records`` that are known to share one identity and distinct names.

        Trusted: nothing is checked (:func:`group_records` groups so). For the senders'
        own batches, which may be subclasses carrying their delivery state.
        """
        first = records[0]
        batch: _Batch = _new(cls)
        batch.customer_id = first[1]
        batch.email = first[2]
        batch.mobile = first[3]
        batch.session_token = first[4]
        batch.records = records
        batch._events = None
        return batch

    @classmethod
    def from_event(cls, event: Event) -> EventBatch:
        """Return a batch holding ``event`` alone, with its identity."""
        return cls(event.customer_id, event.email, event.mobile, event.session_token, (event,))

    def body(self) -> dict[str, Any]:
        """Return the request body (:func:`wire_body` of the events, a fresh copy)."""
        return wire_of(self.records)

    def oldest(self) -> float:
        """The earliest event's timestamp (``time.time()``)."""
        return min(record[7] for record in self.records)

    def __len__(self) -> int:
        return len(self.records)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EventBatch):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple[Any, ...]:
        return (self.customer_id, self.email, self.mobile, self.session_token, self.events)

    def __repr__(self) -> str:
        # Email and mobile masked, the token hidden by SecretStr, events by name only.
        return (
            f"EventBatch(customer_id={self.customer_id!r}, email={mask('email', self.email)!r}, "
            f"mobile={mask('mobile', self.mobile)!r}, session_token={self.session_token!r}, "
            f"events={tuple(record[0] for record in self.records)!r})"
        )


_Batch = TypeVar("_Batch", bound=EventBatch)


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
    return coalesce_records([record_of(event) for event in events], max_events=max_events)


def coalesce_records(
    records: Iterable[Record], *, max_events: int | None = None
) -> list[EventBatch]:
    """Group checked records into per-request batches, as :func:`coalesce` groups events.

    Raises:
        ValueError: If ``max_events`` is smaller than 1.
    """
    # Every group meets EventBatch's invariants by construction (one identity key, each
    # name once, records that passed Event's checks), so the checks are not run again.
    return [EventBatch.from_records(group) for group in group_records(records, max_events)]


def group_records(
    records: Iterable[Record], max_events: int | None = None
) -> list[tuple[Record, ...]]:
    """The records of each request, by :func:`coalesce`'s rule, in order of first appearance.

    Raises:
        ValueError: If ``max_events`` is smaller than 1.
    """
    if max_events is not None and max_events < 1:
        raise ValueError("max_events must be at least 1")
    limit = sys.maxsize if max_events is None else max_events
    # A group is its first record until a second one joins (then a dict of name ->
    # record: each name once): most requests of a burst carry one event, and neither
    # a dict nor a key tuple is made for them. A customer's first identity (email,
    # mobile, token) is found by its id alone; only another identity of the same
    # customer is keyed by the whole identity.
    groups: list[Any] = []
    heads: list[Record] = []  # each group's first record: its identity
    newest: dict[str, int] = {}  # customer id -> newest group of its first identity
    others: dict[tuple[object, ...], int] = {}  # any other identity -> its newest group
    for record in records:
        name = record[0]
        customer_id = record[1]
        at = newest.get(customer_id)
        key: tuple[object, ...] | None = None
        if at is not None:
            head = heads[at]
            if (
                head[2] != record[2]
                or head[3] != record[3]
                or _token_value(head[4]) != _token_value(record[4])
            ):
                key = (customer_id, record[2], record[3], _token_value(record[4]))
                at = others.get(key)
        if at is not None:
            group = groups[at]
            if type(group) is tuple:  # one record so far
                if group[0] != name and limit > 1:
                    groups[at] = {group[0]: group, name: record}
                    continue
            elif name not in group and len(group) < limit:
                group[name] = record
                continue
        # A new group: the first of its identity, a name again, or the limit reached.
        at = len(groups)
        groups.append(record)
        heads.append(record)
        if key is None:
            newest[customer_id] = at
        else:
            others[key] = at
    return [(group,) if type(group) is tuple else tuple(group.values()) for group in groups]
