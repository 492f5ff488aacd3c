"""Plain values: the cheap conversions done on the caller's thread.

A tracked call reads business objects that may change (or be hostile) after it returns,
so the caller's thread turns every value into an exact ``str``, ``int``, ``float`` or
``bool`` before anything is queued. Subclasses are copied to their exact base type
through the base type's own slot (``str.__str__``, ``int.__int__``, ...), so no method a
subclass overrides runs here or later in the worker; types are tested with ``issubclass``
on ``type(value)``, because ``isinstance`` may read a hostile ``__class__``. The full
checks (blank names, sizes, lone surrogates, number ranges) run where events are
serialised (:meth:`gbtrack.EventDraft.to_event`).

Every function here raises :class:`~gbtrack.InvalidEventError` (or whatever a hostile
object raises); the callers fence them and count the event as dropped.
"""

from __future__ import annotations

import datetime as _dt
import enum
import math
import uuid
from decimal import Decimal
from typing import Any

from pydantic import SecretStr

from gbtrack._errors import InvalidEventError

__all__ = ["MetadataValue", "plain_customer_id", "plain_text", "plain_token", "plain_value"]

MetadataValue = str | int | float | bool
"""The types Gameball accepts as metadata values."""

_str_copy = str.__str__  # an exact str from a str subclass, without its overrides
_int_copy = int.__int__
_float_copy = float.__float__
_int_text = int.__repr__  # decimal digits of an int (subclass overrides bypassed)


def plain_value(key: str, value: Any) -> MetadataValue | None:  # Any: narrowed by type()
    """Convert one metadata value by the documented rules (see :mod:`gbtrack._event`).

    Returns:
        An exact ``str``, ``int``, finite ``float`` or ``bool``; ``None`` for ``None``.

    Raises:
        InvalidEventError: If the value cannot be sent to Gameball.
    """
    cls = type(value)
    if cls is str or cls is int or cls is bool:
        return value  # type: ignore[no-any-return]
    if cls is float:
        if math.isfinite(value):
            return value  # type: ignore[no-any-return]
        raise _not_finite(key, value)
    if value is None:
        return None
    if issubclass(cls, enum.Enum):
        return plain_value(key, value.value)
    if issubclass(cls, str):
        return _str_copy(value)
    if issubclass(cls, int):  # bool cannot be subclassed
        return _int_copy(value)
    if issubclass(cls, float):
        return plain_value(key, _float_copy(value))
    # The base types' own methods, so a subclass (pendulum, arrow ...) converts the same.
    if issubclass(cls, Decimal):
        converted = Decimal.__float__(value)
        if math.isfinite(converted):
            return converted
        raise _not_finite(key, value)
    if issubclass(cls, uuid.UUID):
        return uuid.UUID.__str__(value)
    if issubclass(cls, _dt.datetime):
        return _dt.datetime.isoformat(value)
    if issubclass(cls, _dt.date):
        return _dt.date.isoformat(value)
    raise InvalidEventError(
        f"metadata[{key!r}] is a {cls.__name__}; Gameball accepts str, int, float or bool "
        "(Decimal, Enum, UUID, date and datetime are converted)",
        field=f"metadata[{key!r}]",
    )


def _not_finite(key: str, value: object) -> InvalidEventError:
    return InvalidEventError(
        f"metadata[{key!r}] is not a finite number; Gameball accepts only finite numbers",
        field=f"metadata[{key!r}]",
    )


def plain_customer_id(value: object) -> str | None:
    """The customer id as an exact, non-blank ``str``; ``None`` when missing or blank.

    ``int`` and ``uuid.UUID`` are stringified; ``bool`` and other types are refused.

    Raises:
        InvalidEventError: For any other type.
    """
    cls = type(value)
    if cls is str:
        return value if value.strip() else None  # type: ignore[attr-defined,return-value]
    if value is None:
        return None
    if cls is int:
        return _int_text(value)
    if issubclass(cls, str):
        return plain_customer_id(_str_copy(value))
    if issubclass(cls, int) and cls is not bool:
        return _int_text(value)
    if issubclass(cls, uuid.UUID):
        return uuid.UUID.__str__(value)
    raise InvalidEventError(
        f"customer_id must be a str, int or UUID, got {cls.__name__}", field="customer_id"
    )


def plain_text(value: object, field: str) -> str | None:
    """An optional text field (email, mobile) as an exact ``str``; ``None`` when blank.

    Raises:
        InvalidEventError: If the value is not a string.
    """
    cls = type(value)
    if cls is str:
        return value if value.strip() else None  # type: ignore[attr-defined,return-value]
    if value is None:
        return None
    if issubclass(cls, str):
        return plain_text(_str_copy(value), field)
    raise InvalidEventError(f"{field} must be a str, got {cls.__name__}", field=field)


def plain_token(value: object) -> SecretStr | None:
    """A session token as a :class:`~pydantic.SecretStr` holding an exact ``str``.

    Raises:
        InvalidEventError: If the value is neither ``str``, ``SecretStr`` nor ``None``.
    """
    cls = type(value)
    if value is None:
        return None
    if cls is SecretStr:
        secret = value.get_secret_value()  # type: ignore[attr-defined]
        return value if type(secret) is str else SecretStr(_str_copy(secret))  # type: ignore[return-value]
    if issubclass(cls, str):
        return SecretStr(_str_copy(value))
    raise InvalidEventError(
        f"session_token must be a str, got {type(value).__name__}", field="session_token"
    )
