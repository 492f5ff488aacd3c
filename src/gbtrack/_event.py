"""Event and Identity: the validated models, metadata conversion, and the wire body.

Metadata values must be ``str``, ``int``, ``float`` (finite) or ``bool`` (the Gameball
contract). Common scalars are converted predictably, always the same way:

=====================  =====================================================
input                  sent as
=====================  =====================================================
``bool``               itself (checked before ``int``)
``int`` / ``str``      itself
``float``              itself; NaN and infinities are refused
``decimal.Decimal``    ``float(value)``; NaN and infinities are refused
``enum.Enum``          its ``.value``, converted by these same rules
``uuid.UUID``          ``str(value)``, the canonical hyphenated form
``datetime.datetime``  ``value.isoformat()`` (timezone kept as given)
``datetime.date``      ``value.isoformat()`` (``YYYY-MM-DD``)
``None``               the key is left out (a missing value)
anything else          :class:`~gbtrack.InvalidEventError` naming the key
=====================  =====================================================
"""

from __future__ import annotations

import datetime as _dt
import enum
import itertools
import math
import os
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from gbtrack._errors import InvalidEventError

__all__ = [
    "Event",
    "EventDraft",
    "Identity",
    "MetadataValue",
    "check_event_name",
    "mask_email",
    "mask_mobile",
    "new_event_id",
    "normalize_customer_id",
    "normalize_metadata",
    "normalize_value",
    "optional_text",
]

MetadataValue = str | int | float | bool
"""The types Gameball accepts as metadata values."""

_UTC = _dt.timezone.utc


# --- event ids: unique per process without the cost of uuid4 on the hot path -------------
class _IdSource:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        # A random per-process prefix plus a counter: unique across processes and forks.
        self.prefix = secrets.token_hex(8)
        self.counter = itertools.count(1)


_ids = _IdSource()
if hasattr(os, "register_at_fork"):  # pragma: no branch - absent only on Windows
    os.register_at_fork(after_in_child=_ids.reset)


def new_event_id() -> str:
    """Return a new event id, unique across processes (random prefix and a counter)."""
    return f"{_ids.prefix}-{next(_ids.counter):x}"


# --- conversion --------------------------------------------------------------------------
def normalize_value(key: str, value: object) -> MetadataValue | None:
    """Convert one metadata value by the documented rules.

    Args:
        key: The metadata key, named in the error message.
        value: The raw value.

    Returns:
        The converted value, or ``None`` when the value is missing (``None``).

    Raises:
        InvalidEventError: If the value cannot be sent to Gameball.
    """
    cls = type(value)
    if cls is str or cls is int or cls is bool:
        return value  # type: ignore[return-value]
    if cls is float:
        if math.isfinite(value):  # type: ignore[arg-type]
            return value  # type: ignore[return-value]
        raise InvalidEventError(
            f"metadata[{key!r}] is {value!r}; Gameball accepts only finite numbers",
            field=f"metadata[{key!r}]",
        )
    if value is None:
        return None
    if isinstance(value, enum.Enum):
        return normalize_value(key, value.value)
    if isinstance(value, bool | int | str):  # subclasses (IntEnum handled above)
        return value
    if isinstance(value, float | Decimal):
        converted = float(value)
        if math.isfinite(converted):
            return converted
        raise InvalidEventError(
            f"metadata[{key!r}] is {value!r}; Gameball accepts only finite numbers",
            field=f"metadata[{key!r}]",
        )
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, _dt.date):  # datetime is a subclass of date
        return value.isoformat()
    raise InvalidEventError(
        f"metadata[{key!r}] is a {cls.__name__}; Gameball accepts str, int, float or bool "
        "(Decimal, Enum, UUID, date and datetime are converted)",
        field=f"metadata[{key!r}]",
    )


def normalize_metadata(metadata: Mapping[str, object] | None) -> dict[str, MetadataValue]:
    """Validate and convert a metadata mapping; ``None`` values are left out.

    Raises:
        InvalidEventError: For a key that is not a non-empty string or a bad value.
    """
    out: dict[str, MetadataValue] = {}
    if not metadata:
        return out
    for key, raw in metadata.items():
        if type(key) is not str or not key:
            raise InvalidEventError(
                f"metadata keys must be non-empty strings, got {key!r}", field="metadata"
            )
        value = normalize_value(key, raw)
        if value is not None:
            out[key] = value
    return out


def normalize_customer_id(value: object) -> str | None:
    """Return the customer id as a non-empty string, or ``None`` when missing or blank.

    Integers are stringified; other types are refused.

    Raises:
        InvalidEventError: If the value is neither ``str`` nor ``int`` (booleans included).
    """
    if value is None:
        return None
    cls = type(value)
    if cls is str:
        text: str = value  # type: ignore[assignment]
        return text if text.strip() else None
    if cls is int or (isinstance(value, int) and cls is not bool):
        return str(value)
    if isinstance(value, str):
        return str(value) if value.strip() else None
    if isinstance(value, uuid.UUID):
        return str(value)
    raise InvalidEventError(
        f"customer_id must be a str or int, got {cls.__name__}", field="customer_id"
    )


def check_event_name(value: object) -> str:
    """Return ``value`` if it is a non-blank string.

    Raises:
        InvalidEventError: Otherwise.
    """
    if not isinstance(value, str) or not value.strip():
        raise InvalidEventError(
            f"event name must be a non-empty string, got {value!r}", field="name"
        )
    return value


def optional_text(value: object, field: str) -> str | None:
    """Return an optional text field (email, mobile): ``None`` when missing or blank.

    Raises:
        InvalidEventError: If the value is not a string.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return value if value.strip() else None
    raise InvalidEventError(f"{field} must be a str, got {type(value).__name__}", field=field)


def mask_email(email: str | None) -> str | None:
    """Mask an email for logs: ``john@example.com`` -> ``j***@example.com``."""
    if not email:
        return email
    local, sep, domain = email.partition("@")
    return f"{local[:1]}***{sep}{domain}" if sep else "***"


def mask_mobile(mobile: str | None) -> str | None:
    """Mask a phone number for logs, keeping the last 4 digits: ``***7890``."""
    if not mobile:
        return mobile
    return f"***{mobile[-4:]}" if len(mobile) > 4 else "***"


def _utcnow() -> _dt.datetime:
    return _dt.datetime.now(_UTC)


@dataclass(frozen=True)
class Limits:
    """Interim limits (replaced by the full set)."""

    max_string_length: int = 2_000


DEFAULT_LIMITS = Limits()


# --- the draft: what the caller's thread hands the tracker ---------------------------------
class EventDraft(NamedTuple):
    """An event as read on the caller's thread, before validation.

    The decorator, :func:`gbtrack.span` and :meth:`gbtrack.Tracker.emit` build one per
    tracked call and hand it to :meth:`gbtrack.Tracker.submit`. It holds plain values
    only (read at call time, so later changes to business objects do not leak in),
    with the cheap conversions done: ints and UUIDs are strings, metadata values are
    exact ``str``, ``int``, ``float`` or ``bool`` (Decimal, Enum, UUID, date and
    datetime already converted). Everything else (blank names, sizes, lone surrogates,
    number ranges) is checked where events are serialised, by :meth:`to_event`.

    Metadata is two parallel tuples so that the record holds no dict: the cyclic GC
    does not have to scan queued drafts. A ``None`` value means "left out".

    Attributes:
        name: The event name.
        customer_id: The customer id (the ambient one already applied).
        email: Optional email for channel merging.
        mobile: Optional mobile for channel merging.
        session_token: Optional session token, sent as ``X-GB-TOKEN``.
        keys: Metadata keys.
        values: Metadata values, one per key; ``None`` leaves the key out.
        function: The tracked function's qualified name, for messages; ``None`` for
            spans and ``emit``.
        timestamp: When the call happened (``time.time()``).
    """

    name: str
    customer_id: str
    email: str | None
    mobile: str | None
    session_token: SecretStr | None
    keys: tuple[str, ...]
    values: tuple[MetadataValue | None, ...]
    function: str | None
    timestamp: float

    @property
    def metadata(self) -> dict[str, MetadataValue]:
        """The metadata as a dict, without the keys whose value is ``None``."""
        return {k: v for k, v in zip(self.keys, self.values, strict=True) if v is not None}

    def to_event(self, limits: Limits | None = None) -> Event:
        """Validate this draft into an :class:`Event` (interim: the model's own checks).

        Raises:
            InvalidEventError: Naming the field that is wrong.
        """
        try:
            return Event(
                name=self.name,
                customer_id=self.customer_id,
                email=self.email,
                mobile=self.mobile,
                session_token=self.session_token,
                metadata=self.metadata,
                timestamp=_dt.datetime.fromtimestamp(self.timestamp, _UTC),
            )
        except ValidationError as exc:
            cause = exc.errors()[0].get("ctx", {}).get("error")
            if isinstance(cause, InvalidEventError):
                raise cause from None
            raise InvalidEventError(str(exc)) from None

    def __repr__(self) -> str:
        return (
            f"EventDraft(name={self.name!r}, customer_id={self.customer_id!r}, "
            f"email={mask_email(self.email)!r}, mobile={mask_mobile(self.mobile)!r}, "
            f"session_token={'None' if self.session_token is None else '**********'}, "
            f"metadata={self.metadata!r}, function={self.function!r})"
        )


# --- models ------------------------------------------------------------------------------
class Identity(BaseModel):
    """Who an event is about: the ambient identity set by :func:`gbtrack.identify`.

    Attributes:
        customer_id: Gameball's ``customerId``; ints are stringified.
        email: Optional email, sent for channel merging.
        mobile: Optional mobile number, sent for channel merging.
        session_token: Optional Gameball session token, forwarded as ``X-GB-TOKEN``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    customer_id: str | None = None
    email: str | None = None
    mobile: str | None = None
    session_token: SecretStr | None = None

    @field_validator("customer_id", mode="before")
    @classmethod
    def _check_customer_id(cls, value: object) -> str | None:
        return normalize_customer_id(value)

    @field_validator("email", "mobile", mode="before")
    @classmethod
    def _check_text(cls, value: object) -> str | None:
        return optional_text(value, "email/mobile")

    def __repr_args__(self) -> Any:
        for key, value in super().__repr_args__():
            if key == "email":
                value = mask_email(value)
            elif key == "mobile":
                value = mask_mobile(value)
            yield key, value


class Event(BaseModel):
    """One customer event, validated against the Gameball contract.

    Build it directly, or let :func:`gbtrack.track`, :func:`gbtrack.span` and
    :meth:`gbtrack.Tracker.emit` build it. Invalid input raises
    :class:`~gbtrack.InvalidEventError` (a ``ValueError``) naming the field, wrapped by
    pydantic in a ``ValidationError`` when the constructor is used.

    Attributes:
        name: The event name (Gameball's key in ``events``); non-empty.
        customer_id: Gameball's ``customerId``; non-empty, ints are stringified.
        email: Optional email for channel merging (masked in reprs and logs).
        mobile: Optional mobile for channel merging (masked in reprs and logs).
        metadata: Event metadata: ``str``, ``int``, finite ``float`` or ``bool`` values.
        session_token: Optional session token sent as ``X-GB-TOKEN``; never shown.
        event_id: A process-unique id, for logs and de-duplication on our side only.
        timestamp: When the event was created (UTC).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    customer_id: str
    email: str | None = None
    mobile: str | None = None
    metadata: dict[str, MetadataValue] = Field(default_factory=dict)
    session_token: SecretStr | None = None
    event_id: str = Field(default_factory=new_event_id)
    timestamp: _dt.datetime = Field(default_factory=_utcnow)

    @field_validator("name", mode="before")
    @classmethod
    def _check_name(cls, value: object) -> str:
        return check_event_name(value)

    @field_validator("customer_id", mode="before")
    @classmethod
    def _check_customer_id(cls, value: object) -> str:
        customer_id = normalize_customer_id(value)
        if customer_id is None:
            raise InvalidEventError("customer_id must be a non-empty string", field="customer_id")
        return customer_id

    @field_validator("email", "mobile", mode="before")
    @classmethod
    def _check_text(cls, value: object) -> str | None:
        return optional_text(value, "email/mobile")

    @field_validator("metadata", mode="before")
    @classmethod
    def _check_metadata(cls, value: object) -> dict[str, MetadataValue]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise InvalidEventError(
                f"metadata must be a mapping, got {type(value).__name__}", field="metadata"
            )
        return normalize_metadata(value)

    @property
    def identity(self) -> Identity:
        """The event's identity (customer id, email, mobile, session token)."""
        return Identity(
            customer_id=self.customer_id,
            email=self.email,
            mobile=self.mobile,
            session_token=self.session_token,
        )

    def to_payload(self) -> dict[str, Any]:
        """Return the Gameball request body for this event alone.

        Returns:
            ``{"customerId": ..., "events": {name: metadata}}`` plus ``email`` and
            ``mobile`` when set. The session token is a header, never in the body.
        """
        body: dict[str, Any] = {
            "customerId": self.customer_id,
            "events": {self.name: dict(self.metadata)},
        }
        if self.email is not None:
            body["email"] = self.email
        if self.mobile is not None:
            body["mobile"] = self.mobile
        return body

    def __repr_args__(self) -> Any:
        for key, value in super().__repr_args__():
            if key == "email":
                value = mask_email(value)
            elif key == "mobile":
                value = mask_mobile(value)
            yield key, value


# --- trusted constructors (the hot path) --------------------------------------------------
# BaseModel keeps its state in four slots; their descriptors' __set__ is cheaper than four
# object.__setattr__ lookups, and it is exactly what pydantic's own model_construct sets.
_set_dict = BaseModel.__dict__["__dict__"].__set__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__
_new = object.__new__
_now = _dt.datetime.now
_EVENT_FIELDS: frozenset[str] = frozenset(Event.model_fields)
_IDENTITY_FIELDS: frozenset[str] = frozenset(Identity.model_fields)


def _new_event(
    name: str,
    customer_id: str,
    email: str | None,
    mobile: str | None,
    metadata: dict[str, MetadataValue],
    session_token: SecretStr | None,
) -> Event:
    """Build an :class:`Event` from values already checked by the caller (the hot path).

    Equivalent to the constructor for valid input, without pydantic's validation
    pass: the tracker normalises each value with the same functions first.
    """
    event: Event = _new(Event)
    ids = _ids
    _set_dict(
        event,
        {
            "name": name,
            "customer_id": customer_id,
            "email": email,
            "mobile": mobile,
            "metadata": metadata,
            "session_token": session_token,
            "event_id": f"{ids.prefix}-{next(ids.counter):x}",
            "timestamp": _now(_UTC),
        },
    )
    _set_fields_set(event, _EVENT_FIELDS)
    _set_extra(event, None)
    _set_private(event, None)
    return event


def _new_identity(
    customer_id: str | None,
    email: str | None,
    mobile: str | None,
    session_token: SecretStr | None,
) -> Identity:
    """Build an :class:`Identity` from values already valid for it (``identify`` blocks).

    ``customer_id`` must be normalised, ``email``/``mobile`` non-blank strings or ``None``.
    """
    identity: Identity = _new(Identity)
    _set_dict(
        identity,
        {
            "customer_id": customer_id,
            "email": email,
            "mobile": mobile,
            "session_token": session_token,
        },
    )
    _set_fields_set(identity, _IDENTITY_FIELDS)
    _set_extra(identity, None)
    _set_private(identity, None)
    return identity
