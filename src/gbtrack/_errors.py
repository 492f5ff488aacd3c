"""The gbtrack exception tree.

Every exception gbtrack raises derives from :class:`GbtrackError`::

    GbtrackError
    ├── ExpressionError        decoration time: a path expression, root or option is invalid
    ├── InvalidEventError      an event does not satisfy the Gameball contract (also ValueError)
    ├── TrackingError          call time, raised only when strict; also what on_error receives
    ├── ConfigurationError     a setting is invalid or missing (e.g. an unwritable outbox path)
    ├── OutboxError            the outbox file failed at run time (damaged, disk full, I/O error)
    └── DeliveryError          a request to Gameball failed (carries status, code, type, requestId)
        ├── AuthenticationError    401 / 403 (codes 1000, 1001, 1002)
        ├── RateLimitError         429
        ├── PayloadError           400 / 404 / 415 / 422 payload codes (3000, 3001, 3003, 3013, ...)
        ├── ConflictError          422 code 2001: a concurrent request for the same customer
        ├── ServerError            5xx (5000, 5003, ...)
        └── TransportError         no HTTP answer: refused, reset, timed out

Business code never sees these unless it opts into ``strict=True`` or calls the
Gameball client directly.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthenticationError",
    "ConfigurationError",
    "ConflictError",
    "DeliveryError",
    "ExpressionError",
    "GbtrackError",
    "InvalidEventError",
    "OutboxError",
    "PayloadError",
    "RateLimitError",
    "ServerError",
    "TrackingError",
    "TransportError",
]


class GbtrackError(Exception):
    """Base class of every exception raised by gbtrack."""


class ExpressionError(GbtrackError, ValueError):
    """A tracking expression or option is invalid; raised when the decorator is applied.

    Attributes:
        function: The qualified name of the decorated function, if known.
        expression: The offending expression text, if any.
        suggestions: The nearest valid names, best first.
    """

    def __init__(
        self,
        message: str,
        *,
        function: str | None = None,
        expression: str | None = None,
        suggestions: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.function = function
        self.expression = expression
        self.suggestions = suggestions


class InvalidEventError(GbtrackError, ValueError):
    """An event violates the Gameball contract (empty name or id, bad metadata value).

    Attributes:
        field: The field or metadata key at fault, e.g. ``"metadata['amount']"``.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class TrackingError(GbtrackError):
    """An event could not be tracked or delivered.

    Raised into business code only when the tracker is ``strict``; otherwise it is
    logged on the ``gbtrack`` logger and passed to the ``on_error`` hook.

    Attributes:
        reason: A short stable code, the key under which the drop is counted in
            ``stats.dropped`` (``"no_customer_id"``, ``"invalid_event"``,
            ``"resolver_error"``, ``"queue_overflow"``, ``"rejected"``, ...).
        event: The :class:`~gbtrack.Event` concerned, when one was built (typed
            ``Any`` here: this module, the bottom of the house, imports no other).
        function: The qualified name of the tracked function, when there is one.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        event: Any = None,
        function: str | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.event = event
        self.function = function


class ConfigurationError(GbtrackError, ValueError):
    """A configuration value is invalid or unusable."""


class OutboxError(GbtrackError):
    """An operation on the outbox file failed (damaged file, disk full, I/O error).

    Raised by :class:`~gbtrack.outbox.OutboxStore` instead of SQLite's own exceptions
    (chained as ``__cause__``); the outbox *sender* never raises it: what it could not
    write is dropped and counted as ``outbox_error``.
    """


class DeliveryError(GbtrackError):
    """Gameball refused a request, or no answer came back.

    Attributes:
        status: The HTTP status, or ``None`` when there was no HTTP answer.
        code: Gameball's numeric error code from the body, when present.
        type: Gameball's error type (e.g. ``"AUTHENTICATION_ERROR"``), when present.
        request_id: Gameball's ``requestId``, when present.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | None = None,
        type: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.type = type
        self.request_id = request_id

    def __repr__(self) -> str:
        fields: dict[str, Any] = {
            "status": self.status,
            "code": self.code,
            "type": self.type,
            "request_id": self.request_id,
        }
        shown = ", ".join(f"{k}={v!r}" for k, v in fields.items() if v is not None)
        return f"{type(self).__name__}({str(self)!r}{', ' if shown else ''}{shown})"


class AuthenticationError(DeliveryError):
    """The API key or secret key was refused (401/403; codes 1000, 1001, 1002)."""


class RateLimitError(DeliveryError):
    """Gameball answered 429: the account's rate limit was exceeded."""


class PayloadError(DeliveryError):
    """Gameball refused the body (400, 404, 415, 422 codes such as 3000, 3003, 3013, 3016)."""


class ConflictError(DeliveryError):
    """Gameball answered 422 code 2001: a request for the same customer was in progress."""


class ServerError(DeliveryError):
    """Gameball answered with a 5xx status."""


class TransportError(DeliveryError):
    """No HTTP answer: the connection was refused, reset, or timed out."""


# Tracebacks and reprs name each exception's public home (``gbtrack.ExpressionError``),
# not this private module; pickle finds them there too (tests/test_messages.py).
for _name in __all__:
    globals()[_name].__module__ = "gbtrack.outbox" if _name == "OutboxError" else "gbtrack"
del _name
