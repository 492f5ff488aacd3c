"""The Gameball client: requests, outcomes and batch jobs over httpx.

- :class:`GameballClient` / :class:`AsyncGameballClient`: send one customer's events
  per request (v4.1 with a secret key or a session token, else v4.0), and create,
  poll and stop batch jobs. They return an :class:`Outcome` and never raise for an
  answer or a network failure.
- :class:`Outcome` / :class:`OutcomeKind`: delivered, retryable, ambiguous, permanent.
- :class:`EventBatch` and :func:`coalesce`: one customer's events for one request.
- :class:`BatchStatus` / :class:`BatchItemError`: a batch job's parsed status.
- The :class:`DeliveryError` family (also exported by :mod:`gbtrack`), the errors
  that outcomes carry.

Example::

    from gbtrack.gameball import GameballClient, coalesce

    with GameballClient(api_key="...") as client:
        for batch in coalesce(events):
            outcome = client.send(batch)
"""

from gbtrack._errors import (
    AuthenticationError,
    ConflictError,
    DeliveryError,
    PayloadError,
    RateLimitError,
    ServerError,
    TransportError,
)
from gbtrack._protocol import (
    BatchItemError,
    BatchStatus,
    EventBatch,
    Outcome,
    OutcomeKind,
    coalesce,
)
from gbtrack.gameball._async_client import AsyncGameballClient
from gbtrack.gameball._client import (
    DEFAULT_BASE_URL,
    DEFAULT_MAX_CONNECTIONS,
    MAX_BATCH_ITEMS,
    GameballClient,
)
from gbtrack.gameball._outcome import parse_retry_after

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_CONNECTIONS",
    "MAX_BATCH_ITEMS",
    "AsyncGameballClient",
    "AuthenticationError",
    "BatchItemError",
    "BatchStatus",
    "ConflictError",
    "DeliveryError",
    "EventBatch",
    "GameballClient",
    "Outcome",
    "OutcomeKind",
    "PayloadError",
    "RateLimitError",
    "ServerError",
    "TransportError",
    "coalesce",
    "parse_retry_after",
]
