"""Outcomes, and the one place where Gameball's answers and item codes get a meaning.

:func:`classify` decides the kind of every failure, whether it came as an HTTP answer
(a status and maybe a Gameball code) or as a failed item of a batch job (a code only,
read as the status it stands for, see :func:`item_status`):

==========================================  ==========  ========================
answer or item code                         kind        error
==========================================  ==========  ========================
429 (status or item code)                   retryable   RateLimitError
503, or code 5003                           retryable   ServerError
code 2001 with a 4xx: concurrent request    retryable   ConflictError
500, 502, 504, other 5xx; code 5000         ambiguous   ServerError
a failed item without a code                ambiguous   ServerError
401, 403; a 4xx with code 1000-1999         permanent   AuthenticationError
400, 404, 415, 422 and any other 4xx        permanent   PayloadError
(codes 2000, 3000-3017, 6000, ...)
1xx, 3xx (unexpected)                       permanent   DeliveryError
==========================================  ==========  ========================

"Retryable" means the request surely was not processed; "ambiguous" means it may have
been, and since Gameball has no idempotency key for events a retry may count twice.
Transport failures (no answer at all) are classified by the client
(:func:`gbtrack.gameball._outcome.outcome_from_exception`): connect failures are
retryable, anything after the body may have left is ambiguous.

This module imports neither httpx nor the clients: senders and the outbox use it
without loading the network stack.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from gbtrack._errors import (
    AuthenticationError,
    ConflictError,
    DeliveryError,
    PayloadError,
    RateLimitError,
    ServerError,
)
from gbtrack._protocol._status import BatchStatus, as_int

__all__ = [
    "GAMEBALL_CODES",
    "ClientFailure",
    "call_client",
    "client_failure",
    "client_raised",
    "MIN_VERSION_CODE",
    "Outcome",
    "OutcomeKind",
    "classify",
    "classify_item",
    "describe_outcome",
    "item_status",
    "refuses_version",
    "safe_error",
]

GAMEBALL_CODES: Final[Mapping[int, tuple[int, str]]] = {
    1000: (401, "Unauthorized"),
    1001: (401, "Secret Key Required"),
    1002: (403, "Forbidden"),
    2000: (412, "Precondition Failed"),
    2001: (422, "Concurrent Request In Progress"),
    3000: (400, "Missing Arguments"),
    3001: (422, "Null Arguments"),
    3003: (422, "Invalid Value"),
    3011: (422, "Limit Exceed"),
    3013: (415, "Not Supported"),
    3016: (400, "Invalid Payload"),
    3017: (404, "Event Not Found"),
    5000: (500, "Internal Server Error"),
    5003: (503, "Service Unavailable"),
    6000: (422, "Gameball Disabled"),
}
"""Gameball's documented error codes for events: code -> (HTTP status, meaning)."""

MIN_VERSION_CODE: Final = 1003
"""The code the emulator answers when the account's minimum API version refuses the call.

Gameball does not document one (UNCONFIRMED); a 4xx whose message or type names a
minimum version is read as the same refusal (:func:`refuses_version`)."""

_MIN_VERSION = re.compile(
    r"minimum\W+(?:\w+\W+){0,3}?version|version\W+(?:\w+\W+){0,3}?minimum", re.I
)


class OutcomeKind(str, enum.Enum):
    """The four kinds of outcome a request can have."""

    DELIVERED = "delivered"
    """Gameball accepted the request (any 2xx)."""
    RETRYABLE = "retryable"
    """The request surely was not processed; sending it again is safe."""
    AMBIGUOUS = "ambiguous"
    """The request may have been processed; sending it again may count it twice."""
    PERMANENT = "permanent"
    """Gameball refused the request; sending it again cannot help."""


@dataclass(frozen=True)
class Outcome:
    """What became of one request. Clients return outcomes and never raise for answers.

    Attributes:
        kind: Delivered, retryable, ambiguous or permanent.
        status: The HTTP status; ``None`` when there was no HTTP answer.
        error: The failure, a :class:`~gbtrack.DeliveryError` subclass; ``None`` when
            delivered.
        retry_after: Seconds to wait, from a ``Retry-After`` header when present.
        body: The parsed JSON body, when there was one.
        result: The resource's parsed subset of a delivered answer (an order's
            ``rewardedPoints``, ``redeemedPoints``, ...); ``None`` when not parsed.
    """

    kind: OutcomeKind
    status: int | None = None
    error: DeliveryError | None = None
    retry_after: float | None = None
    body: Any = None
    result: Mapping[str, Any] | None = None

    @property
    def delivered(self) -> bool:
        """Whether Gameball accepted the request."""
        return self.kind is OutcomeKind.DELIVERED

    @property
    def retryable(self) -> bool:
        """Whether the request surely was not processed and may be sent again."""
        return self.kind is OutcomeKind.RETRYABLE

    @property
    def ambiguous(self) -> bool:
        """Whether the request may or may not have been processed."""
        return self.kind is OutcomeKind.AMBIGUOUS

    @property
    def permanent(self) -> bool:
        """Whether Gameball refused the request for good."""
        return self.kind is OutcomeKind.PERMANENT

    @property
    def job_id(self) -> str | None:
        """The job id of a delivered batch-create answer (``jobId``, as a string)."""
        if not self.delivered or not isinstance(self.body, Mapping):
            return None
        fields = {str(key).lower(): value for key, value in self.body.items()}
        raw = fields.get("jobid")
        number = as_int(raw)
        if number is not None:
            return str(number)
        return raw if isinstance(raw, str) and raw.strip() else None

    @property
    def batch_status(self) -> BatchStatus | None:
        """The parsed batch status of a delivered batch-status answer, else ``None``."""
        return BatchStatus.parse(self.body) if self.delivered else None

    def __repr__(self) -> str:
        shown = [f"kind={self.kind.value!r}"]
        if self.status is not None:
            shown.append(f"status={self.status}")
        if self.error is not None:
            shown.append(f"error={self.error!r}")
        if self.retry_after is not None:
            shown.append(f"retry_after={self.retry_after}")
        return f"Outcome({', '.join(shown)})"


# --- classification ----------------------------------------------------------------------------
def item_status(code: int | None) -> int:
    """The HTTP status a failed batch item's Gameball code stands for.

    A documented code maps to its documented status (:data:`GAMEBALL_CODES`); an HTTP
    status given as the code is itself; other codes by range: 1000-1999 are
    authentication (401), 5000-5999 server errors (500), the rest payload errors (422).
    A failed item without a code is read as a 500: it reached Gameball, which may have
    processed it.
    """
    if code is None:
        return 500
    known = GAMEBALL_CODES.get(code)
    if known is not None:
        return known[0]
    if 100 <= code < 600:
        return code
    if 1000 <= code < 2000:
        return 401
    if 5000 <= code < 6000:
        return 500
    return 422


def classify(status: int | None, code: int | None) -> tuple[OutcomeKind, type[DeliveryError]]:
    """The kind and error class of a failed answer (``status``) or batch item (``None``).

    Args:
        status: The HTTP status of a non-2xx answer; ``None`` for a failed batch item,
            which is classified by the status its ``code`` stands for.
        code: Gameball's error code, when given.
    """
    if status is None:
        status = item_status(code)
    if status == 429:
        return OutcomeKind.RETRYABLE, RateLimitError
    if status == 503 or code == 5003:
        return OutcomeKind.RETRYABLE, ServerError
    if code == 2001 and 400 <= status < 500:
        return OutcomeKind.RETRYABLE, ConflictError
    if status >= 500:
        return OutcomeKind.AMBIGUOUS, ServerError
    if status in (401, 403) or (400 <= status < 500 and code is not None and 1000 <= code < 2000):
        return OutcomeKind.PERMANENT, AuthenticationError
    if 400 <= status < 500:
        return OutcomeKind.PERMANENT, PayloadError
    # 1xx/3xx: we do not follow redirects, and repeating the request would repeat the answer.
    return OutcomeKind.PERMANENT, DeliveryError


def classify_item(code: int | None, message: str) -> Outcome:
    """The outcome of one failed item of a batch job, from its Gameball code.

    Args:
        code: The item's Gameball code (``None`` when the answer gives none).
        message: The error's message (say which job and item; no PII).
    """
    kind, cls = classify(None, code)
    return Outcome(kind, error=cls(message, code=code))


def refuses_version(status: int, code: int | None, fields: Mapping[str, Any]) -> bool:
    """Whether a 4xx answer says the account's minimum API version refuses the call.

    Args:
        status: The HTTP status.
        code: Gameball's code, when given.
        fields: The error envelope's fields, lower-cased keys.
    """
    if not 400 <= status < 500 or status == 429 or code == 2001:
        return False
    if code == MIN_VERSION_CODE:
        return True
    texts = (fields.get(key) for key in ("message", "type", "detail", "title", "error"))
    return any(isinstance(text, str) and _MIN_VERSION.search(text) for text in texts)


# --- a client that raises ---------------------------------------------------------------------
class ClientFailure(DeliveryError):
    """The client raised instead of returning an outcome: a bug, not an answer."""


def call_client(call: Callable[..., Any], *args: Any) -> Outcome:
    """Call a client method; a raise (or a non-outcome) becomes a permanent outcome.

    Clients return outcomes and never raise for answers or network failures (that is
    their contract); one that raises has a bug, often one event it cannot serialise.
    Its outcome is permanent with a :class:`ClientFailure`, so that the event is
    counted and reported (``client_error``), never retried as if ambiguous: the same
    request would raise again. Senders send a multi-event request that raised again
    one event at a time (:func:`client_raised`), so that one poisoned event never
    holds back the others of its batch.
    """
    try:
        result = call(*args)
    except Exception as exc:
        return client_failure(exc)
    return client_failure(result)


def client_failure(result: object) -> Outcome:
    """``result`` if it is an outcome; else the permanent outcome of a client that raised.

    Args:
        result: What a client call gave: an outcome, or the exception it raised.
    """
    if isinstance(result, Outcome):
        return result
    if isinstance(result, BaseException):
        what = f"raised {type(result).__name__}"
    else:
        what = f"returned {type(result).__name__}, not an outcome"
    return Outcome(OutcomeKind.PERMANENT, error=ClientFailure(f"the Gameball client {what}"))


def client_raised(outcome: Outcome) -> bool:
    """Whether ``outcome`` stands for a client that raised (see :func:`call_client`)."""
    return isinstance(outcome.error, ClientFailure)


# --- describing outcomes for logs --------------------------------------------------------------
def describe_outcome(outcome: Outcome) -> str:
    """Describe a failed outcome for logs: status, Gameball code and type, error class.

    Never includes keys, tokens, or Gameball's free-text message (which may echo input).
    """
    error = outcome.error
    parts: list[str] = []
    status = outcome.status if outcome.status is not None else getattr(error, "status", None)
    parts.append(f"HTTP {status}" if status is not None else "no HTTP answer")
    if error is not None:
        if error.code is not None:
            parts.append(f"code {error.code}")
        if error.type:
            parts.append(f"type {error.type}")
        parts.append(type(error).__name__)
    return ", ".join(parts) + f" ({outcome.kind.value})"


def safe_error(outcome: Outcome) -> DeliveryError | None:
    """A copy of the outcome's error without Gameball's free text (which may echo PII).

    Same class, status, code, type and request id; the message is
    :func:`describe_outcome`. This is what drops chain and log.
    """
    error = outcome.error
    if error is None:
        return None
    return type(error)(
        describe_outcome(outcome),
        status=error.status,
        code=error.code,
        type=error.type,
        request_id=error.request_id,
    )
