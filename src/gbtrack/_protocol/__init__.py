"""The Gameball protocol without the network: wire bodies, outcomes and their meaning.

httpx-free, so that senders and the outbox decide with it without loading the clients:

- :mod:`._wire`: :func:`wire_body`, the one builder of a request body (the outbox
  stores it plus id and time: :func:`stored_body`), :class:`EventBatch` (one
  customer's events for one request), :func:`coalesce` and :func:`coalesce_records`;
- :mod:`._status`: a batch job's parsed status (:class:`BatchStatus`,
  :class:`BatchItemError`), at the bottom;
- :mod:`._jobs`: which batches a job carries (:func:`job_items`) and its one state
  machine (:class:`BulkJob`, deciding :class:`JobStep` s, on the one poll schedule
  :func:`poll_delay`);
- :mod:`._resources`: one frozen :class:`Resource` per Gameball endpoint family
  (:data:`EVENTS`, :data:`ORDERS`): paths, keys, rate bucket, merging, answers, duplicates;
- :mod:`._outcome`: :class:`Outcome` and :func:`classify` / :func:`classify_item`, the
  one place where answers and batch-item codes acquire a kind.

The public names are re-exported by :mod:`gbtrack.gameball`.
"""

from gbtrack._protocol._jobs import (
    FALL_BACK_PAUSE,
    FIRST_POLL,
    JOB_TIMEOUT,
    LONGEST_POLL,
    MAX_POLL_FAILURES,
    BulkJob,
    JobAction,
    JobStep,
    job_items,
    poll_delay,
)
from gbtrack._protocol._outcome import (
    GAMEBALL_CODES,
    MIN_VERSION_CODE,
    ClientFailure,
    Outcome,
    OutcomeKind,
    call_client,
    classify,
    classify_item,
    client_failure,
    client_raised,
    describe_outcome,
    item_status,
    refuses_version,
    safe_error,
)
from gbtrack._protocol._resources import (
    DUPLICATE_ORDER_CODES,
    EVENTS,
    ORDERS,
    Resource,
    is_duplicate,
    order_result,
)
from gbtrack._protocol._status import BatchItemError, BatchStatus, as_int
from gbtrack._protocol._wire import (
    DEFAULT_BASE_URL,
    MAX_BATCH_ITEMS,
    EventBatch,
    coalesce,
    coalesce_records,
    group_records,
    stored_body,
    wire_body,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "DUPLICATE_ORDER_CODES",
    "EVENTS",
    "ORDERS",
    "Resource",
    "is_duplicate",
    "order_result",
    "FALL_BACK_PAUSE",
    "FIRST_POLL",
    "JOB_TIMEOUT",
    "LONGEST_POLL",
    "MAX_POLL_FAILURES",
    "GAMEBALL_CODES",
    "MAX_BATCH_ITEMS",
    "MIN_VERSION_CODE",
    "BatchItemError",
    "BatchStatus",
    "BulkJob",
    "ClientFailure",
    "EventBatch",
    "JobAction",
    "JobStep",
    "Outcome",
    "OutcomeKind",
    "as_int",
    "call_client",
    "classify",
    "classify_item",
    "client_failure",
    "client_raised",
    "coalesce",
    "coalesce_records",
    "describe_outcome",
    "group_records",
    "item_status",
    "job_items",
    "poll_delay",
    "refuses_version",
    "safe_error",
    "stored_body",
    "wire_body",
]
