"""Answers to outcomes: the httpx side of :mod:`gbtrack._protocol`.

The sync and async clients map every HTTP answer with :func:`outcome_from_response` and
every transport exception with :func:`outcome_from_exception`. Which kind an answer is
(delivered, retryable, ambiguous, permanent) is decided in one place,
:func:`gbtrack._protocol.classify`, whose docstring holds the table; this module adds
only what needs httpx: parsing the answer and the transport's exceptions:

==========================================  ==========  ========================
no HTTP answer                              kind        error
==========================================  ==========  ========================
connection refused, DNS, connect timeout    retryable   TransportError
read/write timeout, reset after sending     ambiguous   TransportError
a request our side could not build          permanent   TransportError
==========================================  ==========  ========================

A merchant can set a minimum API version that refuses v4.0 calls. Gameball does not
document the answer (UNCONFIRMED): a 4xx with code 1003 (the emulator's choice), or
whose message or type names a minimum version, is read as that refusal
(:func:`gbtrack._protocol.refuses_version`), a configuration problem like a wrong key,
with a message saying "minimum API version" and what to do.
"""

from __future__ import annotations

import datetime
import email.utils
import json
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from gbtrack._errors import AuthenticationError, TransportError
from gbtrack._protocol import (
    Outcome,
    OutcomeKind,
    as_int,
    classify,
    refuses_version,
)

__all__ = [
    "Outcome",
    "OutcomeKind",
    "outcome_from_exception",
    "outcome_from_response",
    "parse_retry_after",
]

_MAX_MESSAGE = 300  # characters of Gameball's message kept in an error

_MIN_VERSION_HINT = (
    "; the account's minimum API version refuses this endpoint: configure the secret key"
    " so that events go to v4.1 (and do not force secure=False), or lower the minimum"
    " API version in Gameball's settings"
)


# --- parsing helpers ---------------------------------------------------------------------------
def parse_retry_after(value: str | None, *, now: Callable[[], float] = time.time) -> float | None:
    """Parse a ``Retry-After`` header: delay seconds or an HTTP-date.

    Args:
        value: The header value, or ``None``.
        now: The wall clock (seconds since the epoch), for HTTP-dates.

    Returns:
        Seconds to wait (never negative), or ``None`` when absent or unreadable.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
        if when.tzinfo is None:  # "-0000" parses as naive; an HTTP-date is GMT by definition
            when = when.replace(tzinfo=datetime.timezone.utc)
        return max(0.0, when.timestamp() - now())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _parse_json(content: bytes) -> Any:
    if not content or not content.strip():
        return None
    try:
        return json.loads(content)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or absurdly nested: no body
        return None


def _error_fields(body: Any) -> dict[str, Any]:
    """Return the lower-cased fields of an error envelope (v4, old ``{code,message}``, nested)."""
    if not isinstance(body, Mapping):
        return {}
    fields = {str(key).lower(): value for key, value in body.items()}
    nested = fields.get("error")
    if isinstance(nested, Mapping):
        inner = {str(key).lower(): value for key, value in nested.items()}
        return {**fields, **inner}
    return fields


class _Redactor:
    """Replace secret values in text built from a server's answer, so none can leak."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        self.secrets = tuple(s for s in secrets if s)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text


def _clean(value: object, redact: _Redactor, limit: int) -> str | None:
    """Return a non-blank string field, secrets redacted, then shortened to ``limit``."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = redact(value)
    return text if len(text) <= limit else text[:limit] + "..."


def outcome_from_response(
    what: str,
    status: int,
    headers: httpx.Headers,
    content: bytes,
    *,
    secrets: tuple[str, ...] = (),
    now: Callable[[], float] = time.time,
) -> Outcome:
    """Map an HTTP answer to an :class:`Outcome`; never raises.

    Args:
        what: The request, for messages (``"POST /api/v4.0/integrations/events"``).
        status: The HTTP status.
        headers: The answer's headers.
        content: The answer's body bytes.
        secrets: Values that must never appear in an error message.
        now: The wall clock, for ``Retry-After`` dates.
    """
    body = _parse_json(content)
    retry_after = parse_retry_after(headers.get("retry-after"), now=now)
    if 200 <= status < 300:
        return Outcome(OutcomeKind.DELIVERED, status=status, retry_after=retry_after, body=body)
    fields = _error_fields(body)
    code = as_int(fields.get("code"))
    kind, cls = classify(status, code)
    version_refused = refuses_version(status, code, fields)
    if version_refused:
        kind, cls = OutcomeKind.PERMANENT, AuthenticationError
    # Redact first, then shorten: a cut must never leave part of a secret behind.
    redact = _Redactor(secrets)
    error_type = _clean(fields.get("type"), redact, 100)
    request_id = _clean(fields.get("requestid"), redact, 100) or _clean(
        headers.get("x-request-id"), redact, 100
    )
    message = None
    for key in ("message", "detail", "title", "error"):
        message = _clean(fields.get(key), redact, _MAX_MESSAGE)
        if message is not None:
            break
    reason = httpx.codes.get_reason_phrase(status)  # "" for an unknown status
    parts = [f"{what} answered {status}{' ' + reason if reason else ''}"]
    if code is not None or error_type is not None:
        parts.append(" (" + " ".join(str(x) for x in (code, error_type) if x is not None) + ")")
    if message is not None:
        parts.append(f": {message}")
    if version_refused:
        parts.append(_MIN_VERSION_HINT)
    error = cls(
        redact("".join(parts)), status=status, code=code, type=error_type, request_id=request_id
    )
    return Outcome(kind, status=status, error=error, retry_after=retry_after, body=body)


# Exceptions raised before anything reached the server: the request surely was not processed.
_NOT_SENT: tuple[type[Exception], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
)
# Our own side refused to build the request (bad header value, unsupported URL): permanent.
_REFUSED_LOCALLY: tuple[type[Exception], ...] = (
    httpx.LocalProtocolError,
    httpx.UnsupportedProtocol,
    httpx.InvalidURL,
)


def outcome_from_exception(what: str, exc: Exception, *, secrets: tuple[str, ...] = ()) -> Outcome:
    """Map a transport exception (no HTTP answer) to an :class:`Outcome`; never raises.

    Connect failures (refused, DNS, connect or pool timeout, proxy) are retryable;
    anything after the request may have left (read/write timeouts and errors, a
    server that disconnected, an undecodable answer, other ``OSError``) is ambiguous;
    a request our side could not even build is permanent.

    Args:
        what: The request, for messages.
        exc: The exception raised by the transport.
        secrets: Values that must never appear in an error message.
    """
    if isinstance(exc, _NOT_SENT):
        kind, where = OutcomeKind.RETRYABLE, "could not connect"
    elif isinstance(exc, _REFUSED_LOCALLY):
        kind, where = OutcomeKind.PERMANENT, "could not be sent"
    else:
        kind, where = OutcomeKind.AMBIGUOUS, "got no complete answer"
    detail = str(exc) or type(exc).__name__
    message = _Redactor(secrets)(f"{what} {where}: {type(exc).__name__}: {detail}")
    # Not chained to ``exc``: its request object holds the key headers.
    return Outcome(kind, error=TransportError(message))
