"""What one request carries (:class:`EventBatch`), coalescing, and batch-job status.

An :class:`EventBatch` is one customer's events for one request to
``/integrations/events``: Gameball takes several events per request as the keys of
``events``, so an event name can appear at most once. :func:`coalesce` groups a stream
of events into such batches.

:class:`BatchStatus` is the parsed answer of ``GET /batches/{batchId}/status``. The
OpenAPI file leaves ``errors`` untyped; gbtrack expects items like
``{"index": 3, "customerId": "c-1", "code": 3003, "message": "..."}`` and parses
whatever comes defensively.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, SecretStr

from gbtrack._event import Event, mask_email, mask_mobile

__all__ = ["BatchItemError", "BatchStatus", "EventBatch", "coalesce"]


def _token_value(token: SecretStr | None) -> str | None:
    return None if token is None else token.get_secret_value()


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
        """Return the request body: ``{"customerId", "events": {name: metadata}, ...}``.

        ``email`` and ``mobile`` are present only when set. The session token is a
        header, never part of the body.
        """
        body: dict[str, Any] = {
            "customerId": self.customer_id,
            # A copy, so that a caller editing the body cannot change the events.
            "events": {event.name: dict(event.metadata) for event in self.events},
        }
        if self.email is not None:
            body["email"] = self.email
        if self.mobile is not None:
            body["mobile"] = self.mobile
        return body

    def _wire(self) -> dict[str, Any]:
        # body() without the defensive copies, for a body that is serialised at once.
        body: dict[str, Any] = {
            "customerId": self.customer_id,
            "events": {event.name: event.metadata for event in self.events},
        }
        if self.email is not None:
            body["email"] = self.email
        if self.mobile is not None:
            body["mobile"] = self.mobile
        return body

    def __len__(self) -> int:
        return len(self.events)

    def __repr__(self) -> str:
        # Email and mobile masked, the token hidden by SecretStr, events by name only.
        return (
            f"EventBatch(customer_id={self.customer_id!r}, email={mask_email(self.email)!r}, "
            f"mobile={mask_mobile(self.mobile)!r}, session_token={self.session_token!r}, "
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


# --- batch jobs ------------------------------------------------------------------------------
@dataclass(frozen=True)
class BatchItemError:
    """One failed item of a batch job, as far as the answer identifies it.

    Attributes:
        index: The item's position in the submitted ``body`` list, when given.
        customer_id: The item's ``customerId``, when given.
        code: Gameball's error code, when given.
        message: Gameball's message, when given.
    """

    index: int | None = None
    customer_id: str | None = None
    code: int | None = None
    message: str | None = None

    @classmethod
    def parse(cls, raw: object) -> BatchItemError:
        """Parse one entry of a status answer's ``errors``; never raises.

        A mapping is read by key (case-insensitively); a bare string becomes the
        message; anything else becomes its ``repr`` (shortened) as the message.
        """
        if isinstance(raw, Mapping):
            fields = {str(key).lower(): value for key, value in raw.items()}
            return cls(
                index=as_int(fields.get("index")),
                customer_id=_as_text(fields.get("customerid")),
                code=as_int(fields.get("code")),
                message=_as_text(fields.get("message")),
            )
        if isinstance(raw, str):
            return cls(message=raw[:500])
        return cls(message=repr(raw)[:500])


def as_int(value: object) -> int | None:
    """Return ``value`` as an ``int`` when it is one (or an integral float or digit string)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
    return None


def _as_float(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _as_text(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = as_int(value)
        return str(value if number is None else number)
    return None


class BatchStatus(BaseModel):
    """The status of a batch job, parsed defensively from Gameball's answer.

    Attributes:
        batch_id: The job id (``batchId``), as a string.
        status: ``pending``, ``processing``, ``completed`` or ``failed`` (any other
            string is kept as given).
        progress: The progress Gameball reports, when it does.
        total_items: How many items the job holds.
        processed_items: How many items were processed.
        failed_items: How many items failed.
        results: The ``results`` list, as given.
        errors: The ``errors`` list, each entry parsed as a :class:`BatchItemError`.
    """

    model_config = ConfigDict(frozen=True)

    batch_id: str
    status: Literal["pending", "processing", "completed", "failed"] | str
    progress: float | None = None
    total_items: int | None = None
    processed_items: int | None = None
    failed_items: int | None = None
    results: list[Any] = []
    errors: list[BatchItemError] = []

    @property
    def done(self) -> bool:
        """Whether the job has finished (``completed`` or ``failed``)."""
        return self.status in ("completed", "failed")

    @classmethod
    def parse(cls, body: object) -> BatchStatus | None:
        """Parse a status answer's body; ``None`` when it is not a status at all.

        Keys are matched case-insensitively; numbers given as strings or integral
        floats are accepted; a missing ``batchId`` or ``status`` means "not a status".
        """
        if not isinstance(body, Mapping):
            return None
        fields = {str(key).lower(): value for key, value in body.items()}
        batch_id = _as_text(fields.get("batchid"))
        status = fields.get("status")
        if batch_id is None or not isinstance(status, str):
            return None
        results = fields.get("results")
        errors = fields.get("errors")
        return cls(
            batch_id=batch_id,
            status=status.strip().lower(),
            progress=_as_float(fields.get("progress")),
            total_items=as_int(fields.get("totalitems")),
            processed_items=as_int(fields.get("processeditems")),
            failed_items=as_int(fields.get("faileditems")),
            results=list(results) if isinstance(results, list) else [],
            errors=[BatchItemError.parse(e) for e in errors] if isinstance(errors, list) else [],
        )

    def item_errors(self, items: Sequence[EventBatch]) -> dict[int, BatchItemError] | None:
        """Attribute this job's errors to the submitted items.

        Each error is matched by ``index`` first (a position in ``items``), then by
        ``customerId`` when exactly one item has it.

        Args:
            items: The batches submitted with :meth:`GameballClient.create_batch`, in order.

        Returns:
            Item position -> error for the failed items (empty when none failed), or
            ``None`` when the failures cannot be attributed: an error that identifies no
            single item, more failures counted than identified, or a ``failed`` job
            without any identified item. ``None`` means the whole job is ambiguous.
        """
        found: dict[int, BatchItemError] = {}
        for error in self.errors:
            index = error.index
            if index is not None and 0 <= index < len(items):
                found[index] = error
                continue
            if error.customer_id is not None:
                matches = [
                    i for i, item in enumerate(items) if item.customer_id == error.customer_id
                ]
                if len(matches) == 1:
                    found[matches[0]] = error
                    continue
            return None
        if self.failed_items is not None and self.failed_items > len(found):
            return None
        if self.status == "failed" and not found:
            return None
        return found
