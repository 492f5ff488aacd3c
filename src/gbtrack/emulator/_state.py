"""The emulator's behaviour, independent of sockets: auth, validation, limits, jobs, records.

:class:`EmulatorState` turns one parsed request into one :class:`Response` and records
what it accepted. The HTTP layer (``_server.py``) only reads requests, applies dropped
connections and latency, and writes answers. Everything here is thread-safe: one lock
guards the records, counters, rate windows and jobs, and it is never held while JSON is
parsed or a batch is validated.
"""

from __future__ import annotations

import bisect
import heapq
import hmac
import itertools
import json
import math
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pydantic import SecretStr

from gbtrack.emulator._faults import DropFault, DropWhen, FailFault, Fault, FaultPlan

__all__ = [
    "BATCH_CREATE",
    "BATCH_STATUS",
    "BATCH_STOP",
    "CONTROL",
    "DEFAULT_RATE_LIMITS",
    "EVENTS_V40",
    "EVENTS_V41",
    "MAX_BATCH_ITEMS",
    "NOT_FOUND",
    "EmulatorState",
    "Incoming",
    "RateLimits",
    "ReceivedEvent",
    "RequestRecord",
    "Response",
    "error_response",
]

# Endpoint names: the keys of the request counters.
EVENTS_V40: Final = "v4.0/events"
EVENTS_V41: Final = "v4.1/events"
BATCH_CREATE: Final = "batch/events"
BATCH_STATUS: Final = "batch/status"
BATCH_STOP: Final = "batch/stop"
CONTROL: Final = "_emulator"
NOT_FOUND: Final = "unknown"

RATE_LIMITED_ENDPOINTS: Final = frozenset({EVENTS_V40, EVENTS_V41, BATCH_CREATE})
MAX_BATCH_ITEMS: Final = 1000
"""The most customer objects one batch-create request may carry (more: 422, code 3011)."""

RateLimits = Sequence[tuple[int, float]]
"""Sliding windows as ``(max requests, window seconds)`` pairs."""

DEFAULT_RATE_LIMITS: Final[tuple[tuple[int, float], ...]] = ((100, 1.0), (1200, 30.0))
"""Gameball's documented limits: 100 requests a second and 1,200 every 30 seconds."""

API_VERSIONS: Final = ("4.0", "4.1")
"""The events API versions, oldest first (the values ``min_version`` takes)."""
MIN_VERSION_STATUS: Final = 403
MIN_VERSION_CODE: Final = 1003  # UNCONFIRMED: Gameball documents none

_DOCS_URL: Final = "https://docs.gameball.co/api-reference/errors"

# code -> (type, default message); the envelope of every error answer.
_ERRORS: Final[dict[int, tuple[str, str]]] = {
    429: ("RATE_LIMIT_ERROR", "Too many requests: the rate limit is exceeded."),
    1000: ("AUTHENTICATION_ERROR", "Unauthorized access. Check your API key."),
    1001: ("AUTHENTICATION_ERROR", "Secret key required."),
    1002: ("AUTHORIZATION_ERROR", "Forbidden."),
    # UNCONFIRMED: Gameball documents no code for a call below the minimum API version.
    1003: ("API_VERSION_ERROR", "This API version is below the account's minimum API version."),
    2000: ("PRECONDITION_FAILED", "Precondition failed."),
    2001: ("CONFLICT_ERROR", "A concurrent request is in progress for this customer."),
    3000: ("VALIDATION_ERROR", "Missing arguments."),
    3001: ("VALIDATION_ERROR", "Null arguments."),
    3003: ("VALIDATION_ERROR", "Invalid value."),
    3011: ("VALIDATION_ERROR", "Limit exceeded."),
    3013: ("VALIDATION_ERROR", "Not supported."),
    3016: ("VALIDATION_ERROR", "Invalid payload."),
    3017: ("NOT_FOUND", "Not found."),
    5000: ("SERVER_ERROR", "Internal server error."),
    5003: ("SERVICE_UNAVAILABLE", "Service unavailable."),
    6000: ("GAMEBALL_DISABLED", "Gameball is disabled for this account."),
}

_SUCCESS_BODY: Final = b'{"success":true,"message":"Events processed"}'
_MISSING: Final[Any] = object()
_STOPPED_MESSAGE: Final = "batch job stopped before this item was processed"
_INJECTED_KEPT: Final = 1000  # the injected-fault log keeps the newest this many


@dataclass(frozen=True)
class ReceivedEvent:
    """One event the emulator accepted.

    Attributes:
        customer_id: The ``customerId`` it was sent for.
        name: The event name (a key of ``events``).
        metadata: The event's metadata, as received.
        email: The request's ``email``, if any.
        mobile: The request's ``mobile``, if any.
        has_session_token: Whether an ``X-GB-TOKEN`` header came with it (its value is
            never kept).
        version: ``"v4.0"``, ``"v4.1"`` or ``"batch"`` (the endpoint that received it).
        request_id: The emulator's id of the request that carried it.
        received_at: When it was received (``time.time()``).
        batch_job_id: The batch job that recorded it, for ``"batch"`` events.
        batch_index: Its item's position in the batch body, for ``"batch"`` events.
    """

    customer_id: str
    name: str
    metadata: dict[str, Any]
    email: str | None
    mobile: str | None
    has_session_token: bool
    version: str
    request_id: str
    received_at: float
    batch_job_id: int | None = None
    batch_index: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the event as the JSON object ``GET /_emulator/events`` lists."""
        return {
            "customerId": self.customer_id,
            "name": self.name,
            "metadata": self.metadata,
            "email": self.email,
            "mobile": self.mobile,
            "hasSessionToken": self.has_session_token,
            "version": self.version,
            "requestId": self.request_id,
            "receivedAt": self.received_at,
            "batchJobId": self.batch_job_id,
            "batchIndex": self.batch_index,
        }


@dataclass(frozen=True)
class RequestRecord:
    """One request the emulator answered (or dropped), without secrets.

    Attributes:
        endpoint: The endpoint name, e.g. ``"v4.0/events"`` or ``"batch/status"``.
        method: The HTTP method.
        path: The request path.
        status: The HTTP status answered; 0 when the connection was dropped.
        code: The Gameball error code answered, if any.
        request_id: The emulator's request id (also the ``X-Request-Id`` header).
        received_at: When the request arrived (``time.time()``).
        has_api_key: Whether an ``APIKey`` header was present.
        has_secret_key: Whether a ``SecretKey`` header was present.
        has_session_token: Whether an ``X-GB-TOKEN`` header was present.
        agent: The ``x-gb-agent`` header, if any.
        lang: The ``lang`` header, if any.
    """

    endpoint: str
    method: str
    path: str
    status: int
    code: int | None
    request_id: str
    received_at: float
    has_api_key: bool
    has_secret_key: bool
    has_session_token: bool
    agent: str | None
    lang: str | None

    def to_dict(self) -> dict[str, Any]:
        """Return the record as a JSON object."""
        return {
            "endpoint": self.endpoint,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "code": self.code,
            "requestId": self.request_id,
            "receivedAt": self.received_at,
            "hasApiKey": self.has_api_key,
            "hasSecretKey": self.has_secret_key,
            "hasSessionToken": self.has_session_token,
            "agent": self.agent,
            "lang": self.lang,
        }


@dataclass
class Response:
    """What the HTTP layer writes back.

    Attributes:
        status: The HTTP status.
        body: The JSON body, already encoded.
        headers: Extra headers.
        code: The Gameball error code, for the records.
        content_type: The ``Content-Type`` header (JSON except for the live page).
    """

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    code: int | None = None
    content_type: str = "application/json"


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()


def error_response(
    status: int,
    code: int,
    request_id: str,
    message: str | None = None,
    *,
    retry_after: float | None = None,
) -> Response:
    """Build an error answer in Gameball's v4 envelope.

    Args:
        status: The HTTP status.
        code: The Gameball code.
        request_id: The request id echoed as ``requestId``.
        message: The message; the code's default when ``None``.
        retry_after: Seconds for a ``Retry-After`` header (rounded up), if any.

    Returns:
        The response with body ``{"code", "type", "message", "documentationUrl",
        "requestId"}``.
    """
    kind, default = _ERRORS.get(code, ("ERROR", "Error."))
    body = _dumps(
        {
            "code": code,
            "type": kind,
            "message": message or default,
            "documentationUrl": _DOCS_URL,
            "requestId": request_id,
        }
    )
    headers: tuple[tuple[str, str], ...] = ()
    if retry_after is not None:
        headers = (("Retry-After", str(max(0, math.ceil(retry_after)))),)
    return Response(status, body, headers, code)


def _json_response(payload: Any, status: int = 200) -> Response:
    return Response(status, _dumps(payload))


@dataclass
class Incoming:
    """One request in flight: what the HTTP layer learnt from its request line and headers.

    Attributes:
        endpoint: The endpoint name.
        method: The HTTP method.
        path: The path, without the query string.
        query: The query string.
        headers: The headers, names lower-cased.
        request_id: The emulator's id for this request.
        received_at: ``time.time()`` at arrival.
        arrived: The emulator's monotonic clock at arrival (when the request line was
            read): the time the rate windows count.
        fault: The one-shot fault this request consumed, if any.
        latency: Seconds to wait before answering.
    """

    endpoint: str
    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    request_id: str
    received_at: float
    arrived: float = 0.0
    fault: Fault | None = None
    latency: float = 0.0

    @property
    def drop(self) -> str | None:
        """How this request's connection is dropped (see ``FaultPlan.drop_next``), if it is."""
        return self.fault.when if isinstance(self.fault, DropFault) else None


# An arrival checked this much later than the newest one is still checked exactly
# (threads answer in any order); older log entries are forgotten.
_LATE_ARRIVAL = 60.0


class _RateWindows:
    """Exact sliding windows over arrival times: at most ``limit`` in any ``period`` seconds.

    Arrivals are stamped when a request's line is read, and checked when its handler
    thread gets there, which may be after a later arrival was: each window keeps its
    admitted arrivals sorted, and an arrival is admitted only if, with it, no
    ``limit + 1`` admitted arrivals lie within less than ``period`` of each other, in
    whatever order they were checked.
    """

    def __init__(self, limits: RateLimits) -> None:
        checked: list[tuple[int, float]] = []
        for limit, period in limits:
            if int(limit) < 1 or not float(period) > 0:
                raise ValueError(
                    f"a rate limit needs limit >= 1 and period > 0, got {limit}/{period}"
                )
            checked.append((int(limit), float(period)))
        self.limits = tuple(checked)
        self._logs: list[list[float]] = [[] for _ in checked]
        self._newest = -math.inf

    def try_admit(self, arrived: float) -> float:
        """Admit an arrival and return 0.0, or return the seconds until one would be."""
        self._newest = max(self._newest, arrived)
        wait = 0.0
        for (limit, period), log in zip(self.limits, self._logs, strict=True):
            forget = bisect.bisect_right(log, self._newest - period - _LATE_ARRIVAL)
            if forget:
                del log[:forget]
            wait = max(wait, _crowding(log, arrived, limit, period))
        if wait > 0:
            return max(wait, 1e-6)
        for log in self._logs:
            bisect.insort(log, arrived)
        return 0.0


def _crowding(log: list[float], t: float, limit: int, period: float) -> float:
    """How long after ``t`` an arrival would fit among ``log``'s (0.0: ``t`` fits now).

    ``t`` fits when no ``limit + 1`` of ``log`` and ``t`` together span less than ``period``.
    """
    k = bisect.bisect_right(log, t)

    def at(i: int) -> float:  # the sorted sequence with t inserted at k
        return log[i] if i < k else t if i == k else log[i - 1]

    wait = 0.0
    for start in range(max(0, k - limit), k + 1):
        end = start + limit
        if end <= len(log) and at(end) - at(start) < period:
            wait = max(wait, at(start) + period - t)
    return wait


class _Job:
    """A batch job: its items until processed, then its outcome."""

    __slots__ = (
        "due",
        "errors",
        "failed",
        "has_token",
        "id",
        "items",
        "processed",
        "received_at",
        "request_id",
        "results",
        "status",
        "stop_requested",
        "total",
    )

    def __init__(
        self, job_id: int, items: list[Any], request_id: str, received_at: float, has_token: bool
    ) -> None:
        self.id = job_id
        self.items: list[Any] | None = items
        self.total = len(items)
        self.request_id = request_id
        self.received_at = received_at
        self.has_token = has_token
        self.status = "pending"
        self.processed = 0
        self.failed = 0
        self.errors: list[dict[str, Any]] = []
        self.results: list[dict[str, Any]] = []
        self.stop_requested = False
        self.due = 0.0

    def status_body(self) -> dict[str, Any]:
        progress = 100.0 * self.processed / self.total if self.total else 100.0
        return {
            "batchId": str(self.id),
            "status": self.status,
            "progress": round(progress, 2),
            "totalItems": self.total,
            "processedItems": self.processed,
            "failedItems": self.failed,
            "results": list(self.results),
            "errors": list(self.errors),
        }


def _check_item(item: Any) -> tuple[int, str] | None:
    """Validate one ``{"customerId", "events", "email"?, "mobile"?}`` object.

    Returns:
        ``(code, message)`` for an invalid item, ``None`` for a valid one.
    """
    if type(item) is not dict:
        return 3003, "each request must be a JSON object"
    customer_id = item.get("customerId", _MISSING)
    events = item.get("events", _MISSING)
    if customer_id is _MISSING or events is _MISSING:
        missing = [n for n, v in (("customerId", customer_id), ("events", events)) if v is _MISSING]
        return 3000, f"missing required field(s): {', '.join(missing)}"
    if customer_id is None or events is None:
        return 3001, "customerId and events must not be null"
    if type(customer_id) is not str or not customer_id.strip():
        return 3003, "customerId must be a non-empty string"
    if type(events) is not dict or not events:
        return 3003, "events must be a non-empty object of event name -> metadata object"
    for name, metadata in events.items():
        if not name.strip():
            return 3003, "event names must be non-empty"
        if type(metadata) is not dict:
            return 3003, f"events[{name!r}] must be an object of metadata"
        for key, value in metadata.items():
            kind = type(value)
            if kind is not str and kind is not int and kind is not float and kind is not bool:
                return 3003, (
                    f"events[{name!r}][{key!r}] must be a string, number or boolean, "
                    f"got {_json_type(value)}"
                )
    for optional in ("email", "mobile"):
        value = item.get(optional)
        if value is not None and type(value) is not str:
            return 3003, f"{optional} must be a string"
    return None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_json(body: bytes) -> Any:
    """Parse a JSON body; NaN and Infinity are refused like any malformed JSON."""
    return json.loads(body, parse_constant=_reject_constant)


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    return content_type.partition(";")[0].strip().lower() == "application/json"


def _max_in_window(times: Sequence[float], window: float) -> int:
    best = 0
    start = 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


class EmulatorState:
    """The Gameball emulator's logic and records; the HTTP layer feeds it requests.

    Args:
        api_key: The ``APIKey`` every request must carry.
        secret_key: The ``SecretKey`` v4.1, batch and high-security v4.0 requests carry.
        high_security: Whether v4.0 events also need the ``SecretKey`` (401/1001).
        min_version: The account's minimum API version: ``"4.1"`` refuses v4.0 event
            calls (403/1003, after the key checks); ``None`` or ``"4.0"`` accepts both.
        rate_limits: The sliding windows, or ``None`` for no limit.
        rate_limit_retry_after: Whether a 429 carries ``Retry-After`` (Gameball documents
            none; off by default).
        batch_delay: Seconds a batch job stays ``pending`` before it is processed.
        max_events: Keep only the newest this many events (counts stay exact).
        clock: The monotonic clock of the rate windows and arrival timestamps.
    """

    def __init__(
        self,
        *,
        api_key: str | SecretStr,
        secret_key: str | SecretStr | None,
        high_security: bool = False,
        min_version: str | None = None,
        rate_limits: RateLimits | None = DEFAULT_RATE_LIMITS,
        rate_limit_retry_after: bool = False,
        batch_delay: float = 0.0,
        max_events: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api_key = _secret_bytes(api_key)
        self._secret_key = None if secret_key is None else _secret_bytes(secret_key)
        self.high_security = high_security
        self.min_version = check_min_version(min_version)
        self.rate_limit_retry_after = rate_limit_retry_after
        if batch_delay < 0:
            raise ValueError("batch_delay must be >= 0")
        self.batch_delay = float(batch_delay)
        self.clock = clock
        self.faults = FaultPlan()
        self._lock = threading.Lock()
        self._events_changed = threading.Condition(self._lock)
        self._jobs_changed = threading.Condition(self._lock)
        self._events: deque[ReceivedEvent] = deque(maxlen=max_events)
        self._event_count = 0
        self._requests: Counter[tuple[str, int]] = Counter()
        self._request_log: deque[RequestRecord] = deque(maxlen=max_events)
        self._rate: _RateWindows | None = None if rate_limits is None else _RateWindows(rate_limits)
        self._rate_limited = 0
        self._dropped = 0
        self._arrivals: list[float] = []
        self._admitted: list[float] = []
        self._jobs: dict[int, _Job] = {}
        self._due: list[tuple[float, int]] = []
        self._job_ids = itertools.count(1)
        self._request_ids = itertools.count(1)
        self._request_prefix = secrets.token_hex(4)
        self._internal_errors: list[str] = []
        self._injected: deque[dict[str, Any]] = deque(maxlen=_INJECTED_KEPT)
        self._worker: threading.Thread | None = None
        self._stopping = False

    # --- configuration -----------------------------------------------------------------
    @property
    def rate_limits(self) -> tuple[tuple[int, float], ...] | None:
        """The active sliding windows, or ``None`` when rate limiting is off."""
        with self._lock:
            return None if self._rate is None else self._rate.limits

    def set_rate_limits(self, limits: RateLimits | None) -> None:
        """Replace the rate limits (fresh windows), or turn them off with ``None``."""
        windows = None if limits is None else _RateWindows(limits)
        with self._lock:
            self._rate = windows

    # --- request path ------------------------------------------------------------------
    def begin(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        arrived: float | None = None,
    ) -> Incoming:
        """Classify a request from its line and headers; consume faults for event endpoints.

        Args:
            method: The HTTP method.
            target: The request target (path and query).
            headers: The headers, names lower-cased.
            arrived: The emulator clock's time when the request line was read (now when
                not given): the rate windows count arrivals at this time.
        """
        if arrived is None:
            arrived = self.clock()
        path, _, query = target.partition("?")
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/")
        incoming = Incoming(
            _classify(path),
            method,
            path,
            query,
            headers,
            f"emu-{self._request_prefix}-{next(self._request_ids):06x}",
            time.time(),
            arrived,
        )
        if incoming.endpoint in RATE_LIMITED_ENDPOINTS and method == "POST":
            with self._lock:
                self._arrivals.append(arrived)
            incoming.fault = self.faults.take()
            incoming.latency = self.faults.take_latency()
        return incoming

    def handle(self, incoming: Incoming, body: bytes) -> Response:
        """Answer a request whose body has been read (control endpoints excepted)."""
        endpoint = incoming.endpoint
        try:
            if endpoint in RATE_LIMITED_ENDPOINTS:
                if incoming.method != "POST":
                    response = self._method_not_allowed(incoming)
                elif endpoint == BATCH_CREATE:
                    response = self._batch_create(incoming, body)
                else:
                    response = self._post_events(incoming, body)
            elif endpoint in (BATCH_STATUS, BATCH_STOP):
                response = self._batch_job(incoming)
            else:
                response = error_response(
                    404, 3017, incoming.request_id, f"no route for {incoming.path}"
                )
        except Exception as exc:  # an emulator bug must not kill the connection silently
            self.note_internal_error(f"{type(exc).__name__}: {exc}")
            response = error_response(500, 5000, incoming.request_id, "emulator internal error")
        if incoming.drop == "after_processing":
            self.complete(incoming, 0, None)  # processed, but nothing is answered
        else:
            self.complete(incoming, response.status, response.code)
        return response

    def complete(self, incoming: Incoming, status: int, code: int | None) -> None:
        """Count and log one answered (status) or dropped (status 0) request."""
        headers = incoming.headers
        token = headers.get("x-gb-token")
        record = RequestRecord(
            incoming.endpoint,
            incoming.method,
            incoming.path,
            status,
            code,
            incoming.request_id,
            incoming.received_at,
            "apikey" in headers,
            "secretkey" in headers,
            bool(token and token.strip()),
            headers.get("x-gb-agent"),
            headers.get("lang"),
        )
        injected = _describe_fault(incoming)
        with self._lock:
            self._requests[(incoming.endpoint, status)] += 1
            self._request_log.append(record)
            if status == 0:
                self._dropped += 1
            if injected is not None:
                self._injected.append(
                    {
                        "requestId": incoming.request_id,
                        "endpoint": incoming.endpoint,
                        "receivedAt": incoming.received_at,
                        "fault": injected,
                        "status": status,
                    }
                )

    def note_internal_error(self, description: str) -> None:
        """Keep the description of an unexpected error in the emulator itself."""
        with self._lock:
            self._internal_errors.append(description)

    def _post_events(self, incoming: Incoming, body: bytes) -> Response:
        version = "v4.1" if incoming.endpoint == EVENTS_V41 else "v4.0"
        refusal = self._refuse(
            incoming,
            need_secret=version == "v4.1" or self.high_security,
            refuse_version=version == "v4.0" and self.min_version == "4.1",
        )
        if refusal is not None:
            return refusal
        payload, refusal = self._payload(incoming, body)
        if refusal is not None:
            return refusal
        problem = _check_item(payload)
        if problem is not None:
            code, message = problem
            if code == 3003 and type(payload) is not dict:
                code = 3016
            return error_response(
                400 if code in (3000, 3016) else 422, code, incoming.request_id, message
            )
        has_token = _has_token(incoming.headers)
        self._record(
            _item_events(payload, version, incoming.request_id, incoming.received_at, has_token)
        )
        return Response(200, _SUCCESS_BODY)

    def _batch_create(self, incoming: Incoming, body: bytes) -> Response:
        refusal = self._refuse(incoming, need_secret=True)
        if refusal is not None:
            return refusal
        payload, refusal = self._payload(incoming, body)
        if refusal is not None:
            return refusal
        rid = incoming.request_id
        if type(payload) is not dict:
            return error_response(400, 3016, rid, "the body must be a JSON object")
        items = payload.get("body", _MISSING)
        if items is _MISSING:
            return error_response(400, 3000, rid, "missing required field: body")
        if items is None:
            return error_response(422, 3001, rid, "body must not be null")
        if type(items) is not list or not items:
            return error_response(422, 3003, rid, "body must be a non-empty array of requests")
        if len(items) > MAX_BATCH_ITEMS:
            return error_response(
                422, 3011, rid, f"a batch holds at most {MAX_BATCH_ITEMS} items, got {len(items)}"
            )
        job = _Job(
            next(self._job_ids), items, rid, incoming.received_at, _has_token(incoming.headers)
        )
        delay = self.batch_delay
        if delay > 0:
            self.start_worker()  # idempotent; in-process transports have no start()
        with self._lock:
            self._jobs[job.id] = job
            if delay <= 0:
                job.status = "processing"  # processed below, before jobId is answered
            else:
                job.due = time.monotonic() + delay
                heapq.heappush(self._due, (job.due, job.id))
                self._jobs_changed.notify_all()
        if delay <= 0:
            self._process(job)
        return _json_response({"jobId": job.id})

    def _batch_job(self, incoming: Incoming) -> Response:
        rid = incoming.request_id
        wanted = "GET" if incoming.endpoint == BATCH_STATUS else "POST"
        if incoming.method != wanted:
            return self._method_not_allowed(incoming)
        refusal = self._refuse(incoming, need_secret=True)
        if refusal is not None:
            return refusal
        raw_id = incoming.path.split("/")[-2]
        job_id = int(raw_id) if raw_id.isdigit() else -1
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return error_response(404, 3017, rid, f"batch job {raw_id!r} not found")
            if incoming.endpoint == BATCH_STATUS:
                return _json_response(job.status_body())
            if job.status in ("completed", "failed"):
                message = "Batch job already finished"
                return _json_response(
                    {"batchId": str(job.id), "status": job.status, "message": message}
                )
            job.stop_requested = True
            if job.status == "pending":
                self._finish_stopped(job, 0)
        return _json_response(
            {"batchId": str(job.id), "status": "stopped", "message": "Batch job stopped"}
        )

    def _method_not_allowed(self, incoming: Incoming) -> Response:
        return error_response(
            405, 3013, incoming.request_id, f"{incoming.method} is not supported on {incoming.path}"
        )

    def _refuse(
        self, incoming: Incoming, *, need_secret: bool, refuse_version: bool = False
    ) -> Response | None:
        """Apply an injected failure, the auth rules, the minimum version and the rate limit."""
        fault = incoming.fault
        rid = incoming.request_id
        if isinstance(fault, FailFault):
            return error_response(
                fault.status, fault.code, rid, fault.message, retry_after=fault.retry_after
            )
        headers = incoming.headers
        if not _same(headers.get("apikey"), self._api_key):
            return error_response(401, 1000, rid)
        if need_secret:
            secret = headers.get("secretkey")
            if not secret:
                return error_response(401, 1001, rid)
            if self._secret_key is None or not _same(secret, self._secret_key):
                return error_response(401, 1000, rid, "Unauthorized access. Check your secret key.")
        if refuse_version:
            return error_response(
                MIN_VERSION_STATUS,
                MIN_VERSION_CODE,
                rid,
                f"API version 4.0 is below the minimum API version ({self.min_version}) set"
                " for this account.",
            )
        if incoming.endpoint in RATE_LIMITED_ENDPOINTS:
            arrived = incoming.arrived
            with self._lock:
                wait = 0.0 if self._rate is None else self._rate.try_admit(arrived)
                if wait:
                    self._rate_limited += 1
                else:
                    self._admitted.append(arrived)
            if wait:
                retry_after = wait if self.rate_limit_retry_after else None
                return error_response(429, 429, rid, retry_after=retry_after)
        return None

    def _payload(self, incoming: Incoming, body: bytes) -> tuple[Any, Response | None]:
        rid = incoming.request_id
        if not _is_json(incoming.headers.get("content-type")):
            return None, error_response(415, 3013, rid, "Content-Type must be application/json")
        try:
            return _parse_json(body), None
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            return None, error_response(400, 3016, rid, f"malformed JSON: {exc}")

    # --- batch processing ----------------------------------------------------------------
    def _process(self, job: _Job) -> None:
        """Validate and record a job's items (no lock held while validating)."""
        items = job.items or []
        faults = self.faults
        item_faults = faults.has_item_faults
        recorded: list[ReceivedEvent] = []
        errors: list[dict[str, Any]] = []
        results: list[dict[str, Any]] = []
        stopped_at: int | None = None
        item_injected: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            if job.stop_requested:
                stopped_at = index
                break
            problem = _check_item(item)
            customer_id = item.get("customerId") if type(item) is dict else None
            if problem is None and item_faults:
                injected = faults.take_item_fault(str(customer_id))
                if injected is not None:
                    code, message = injected
                    problem = code, message or _ERRORS.get(code, ("", "item failed"))[1]
                    item_injected.append(
                        {
                            "requestId": job.request_id,
                            "endpoint": BATCH_CREATE,
                            "receivedAt": job.received_at,
                            "fault": f"batch item {index} ({customer_id}) failed with {code}",
                            "status": None,
                        }
                    )
            if problem is not None:
                code, message = problem
                errors.append(
                    {
                        "index": index,
                        "customerId": customer_id if type(customer_id) is str else None,
                        "code": code,
                        "message": message,
                    }
                )
                continue
            results.append({"index": index, "customerId": customer_id, "status": "processed"})
            recorded.extend(
                _item_events(
                    item, "batch", job.request_id, job.received_at, job.has_token, job.id, index
                )
            )
        with self._lock:
            self._injected.extend(item_injected)
            job.errors.extend(errors)
            job.results.extend(results)
            done = len(items) if stopped_at is None else stopped_at
            job.processed += done
            job.failed += len(errors)
            if stopped_at is not None:
                self._finish_stopped(job, stopped_at)
            else:
                job.items = None
                job.status = "failed" if job.failed == job.total else "completed"
            if recorded:
                self._events.extend(recorded)
                self._event_count += len(recorded)
                self._events_changed.notify_all()

    def _finish_stopped(self, job: _Job, start: int) -> None:
        """Fail every item from ``start`` on as never processed (lock held)."""
        items = job.items or []
        for index in range(start, len(items)):
            item = items[index]
            customer_id = item.get("customerId") if type(item) is dict else None
            job.errors.append(
                {
                    "index": index,
                    "customerId": customer_id if type(customer_id) is str else None,
                    "code": 5003,
                    "message": _STOPPED_MESSAGE,
                }
            )
        stopped = len(items) - start
        job.processed += stopped
        job.failed += stopped
        job.items = None
        job.status = "failed"

    def run_pending_jobs(self) -> int:
        """Process every pending batch job now, on the calling thread; return how many."""
        with self._lock:
            jobs = [job for job in self._jobs.values() if job.status == "pending"]
            for job in jobs:
                job.status = "processing"  # the worker skips jobs no longer pending
        for job in jobs:
            self._process(job)
        return len(jobs)

    def start_worker(self) -> None:
        """Start the thread that processes delayed batch jobs, unless it runs already."""
        with self._lock:
            self._stopping = False
            if self._worker is not None:
                return
            worker = self._worker = threading.Thread(
                target=self._run_worker, name="gbtrack-emulator-batches", daemon=True
            )
        worker.start()

    def stop_worker(self, timeout: float | None = None) -> None:
        """Stop the batch thread; jobs still pending stay pending."""
        with self._lock:
            self._stopping = True
            worker, self._worker = self._worker, None
            self._jobs_changed.notify_all()
        if worker is not None:
            worker.join(timeout)

    def _run_worker(self) -> None:
        while True:
            with self._lock:
                job: _Job | None = None
                while job is None:
                    if self._stopping:
                        return
                    if not self._due:
                        self._jobs_changed.wait()
                        continue
                    due, job_id = self._due[0]
                    delay = due - time.monotonic()
                    if delay > 0:
                        self._jobs_changed.wait(delay)
                        continue
                    heapq.heappop(self._due)
                    candidate = self._jobs.get(job_id)
                    if candidate is not None and candidate.status == "pending":
                        candidate.status = "processing"
                        job = candidate
            try:
                self._process(job)
            except Exception as exc:  # keep the worker alive; report through the records
                self.note_internal_error(f"batch job {job.id}: {type(exc).__name__}: {exc}")

    # --- records -------------------------------------------------------------------------
    def _record(self, events: list[ReceivedEvent]) -> None:
        with self._lock:
            self._events.extend(events)
            self._event_count += len(events)
            self._events_changed.notify_all()

    @property
    def events(self) -> list[ReceivedEvent]:
        """A copy of the recorded events, oldest first."""
        with self._lock:
            return list(self._events)

    @property
    def event_count(self) -> int:
        """How many events were accepted since the start or the last reset."""
        with self._lock:
            return self._event_count

    @property
    def requests(self) -> dict[tuple[str, int], int]:
        """Answered requests counted by ``(endpoint, status)``; status 0 = dropped."""
        with self._lock:
            return dict(self._requests)

    @property
    def request_log(self) -> list[RequestRecord]:
        """A copy of the request records, oldest first."""
        with self._lock:
            return list(self._request_log)

    @property
    def rate_limited(self) -> int:
        """How many requests the rate limit refused (429)."""
        with self._lock:
            return self._rate_limited

    @property
    def internal_errors(self) -> list[str]:
        """Descriptions of unexpected emulator errors (should stay empty)."""
        with self._lock:
            return list(self._internal_errors)

    @property
    def injected_faults(self) -> list[dict[str, Any]]:
        """The faults requests and batch items consumed, oldest first (the newest 1,000).

        Each is ``{"requestId", "endpoint", "receivedAt", "fault", "status"}``: ``fault``
        describes it (``"fail 503/5003"``, ``"drop after_body"``, ``"latency 0.5 s"``,
        ``"batch item 2 (c-9) failed with 5003"``); ``status`` is the HTTP status
        answered (0 when dropped; ``None`` for a batch item).
        """
        with self._lock:
            return list(self._injected)

    def wait_for_events(self, count: int, timeout: float | None = None) -> bool:
        """Wait until at least ``count`` events were accepted; return whether they were."""
        with self._events_changed:
            return self._events_changed.wait_for(lambda: self._event_count >= count, timeout)

    def max_requests_in_window(self, window: float, *, admitted_only: bool = False) -> int:
        """The most rate-limited requests that arrived in any ``window`` seconds.

        Args:
            window: The window length, in seconds of the emulator's clock.
            admitted_only: Count only requests the rate limit admitted, instead of every
                request that reached an event endpoint (v4.0, v4.1, batch create).
        """
        with self._lock:
            times = sorted(self._admitted if admitted_only else self._arrivals)
        return _max_in_window(times, window)

    def batch_status(self, job_id: int) -> dict[str, Any] | None:
        """The status body of a batch job, as the status endpoint answers it, or ``None``."""
        with self._lock:
            job = self._jobs.get(job_id)
            return None if job is None else job.status_body()

    def stats(self) -> dict[str, Any]:
        """Counters as a JSON-ready mapping (what ``GET /_emulator/stats`` answers)."""
        with self._lock:
            by_endpoint: dict[str, dict[str, int]] = {}
            for (endpoint, status), count in sorted(self._requests.items()):
                by_endpoint.setdefault(endpoint, {})[str(status)] = count
            jobs = Counter(job.status for job in self._jobs.values())
            stats: dict[str, Any] = {
                "events": self._event_count,
                "storedEvents": len(self._events),
                "requests": by_endpoint,
                "rateLimited": self._rate_limited,
                "dropped": self._dropped,
                "batchJobs": {"total": len(self._jobs), **dict(sorted(jobs.items()))},
                "rateLimits": None if self._rate is None else [list(w) for w in self._rate.limits],
                "highSecurity": self.high_security,
                "minVersion": self.min_version,
                "batchDelay": self.batch_delay,
                "internalErrors": len(self._internal_errors),
            }
        stats["faults"] = self.faults.snapshot()
        return stats

    def reset(self) -> None:
        """Forget events, requests, counters, rate windows, jobs and faults."""
        self.faults.clear()
        with self._lock:
            self._events.clear()
            self._event_count = 0
            self._requests.clear()
            self._request_log.clear()
            self._rate_limited = 0
            self._dropped = 0
            self._arrivals.clear()
            self._admitted.clear()
            self._jobs.clear()
            self._due.clear()
            self._internal_errors.clear()
            self._injected.clear()
            if self._rate is not None:
                self._rate = _RateWindows(self._rate.limits)


def _classify(path: str) -> str:
    if path == "/api/v4.0/integrations/events":
        return EVENTS_V40
    if path == "/api/v4.1/integrations/events":
        return EVENTS_V41
    if path == "/api/v4.0/integrations/batch/events":
        return BATCH_CREATE
    if path.startswith("/api/v4.0/integrations/batches/"):
        parts = path.split("/")
        if len(parts) == 7 and parts[5]:
            if parts[6] == "status":
                return BATCH_STATUS
            if parts[6] == "stop":
                return BATCH_STOP
    if path in ("/", "/_emulator") or path.startswith("/_emulator/"):
        return CONTROL  # "/" is the live page, served with the control endpoints
    return NOT_FOUND


def _item_events(
    item: dict[str, Any],
    version: str,
    request_id: str,
    received_at: float,
    has_token: bool,
    job_id: int | None = None,
    index: int | None = None,
) -> list[ReceivedEvent]:
    customer_id = item["customerId"]
    email = item.get("email")
    mobile = item.get("mobile")
    return [
        ReceivedEvent(
            customer_id,
            name,
            metadata,
            email,
            mobile,
            has_token,
            version,
            request_id,
            received_at,
            job_id,
            index,
        )
        for name, metadata in item["events"].items()
    ]


def _describe_fault(incoming: Incoming) -> str | None:
    """Describe the one-shot fault and latency a request consumed, or ``None``."""
    parts: list[str] = []
    fault = incoming.fault
    if isinstance(fault, FailFault):
        parts.append(f"fail {fault.status}/{fault.code}")
    elif isinstance(fault, DropFault):
        parts.append(f"drop {fault.when}")
    if incoming.latency:
        parts.append(f"latency {incoming.latency:g} s")
    return ", ".join(parts) if parts else None


def _has_token(headers: Mapping[str, str]) -> bool:
    token = headers.get("x-gb-token")
    return bool(token and token.strip())


def _secret_bytes(value: str | SecretStr) -> SecretStr:
    return value if isinstance(value, SecretStr) else SecretStr(value)


def _same(given: str | None, expected: SecretStr) -> bool:
    if not given:
        return False
    return hmac.compare_digest(given.encode(), expected.get_secret_value().encode())


def parse_rate_limits(text: str) -> tuple[tuple[int, float], ...]:
    """Parse ``"100/1,1200/30"`` into ``((100, 1.0), (1200, 30.0))``.

    Raises:
        ValueError: For text that is not comma-separated ``count/seconds`` pairs.
    """
    limits: list[tuple[int, float]] = []
    for part in text.split(","):
        count, sep, seconds = part.strip().partition("/")
        if not sep:
            raise ValueError(f"expected COUNT/SECONDS, got {part.strip()!r}")
        limits.append((int(count), float(seconds)))
    _RateWindows(limits)  # validates
    return tuple(limits)


def check_min_version(value: object) -> str | None:
    """Check a ``min_version`` value: ``None``, ``"4.0"`` or ``"4.1"``.

    Raises:
        ValueError: For any other value.
    """
    if value is None:
        return None
    text = str(value).strip().removeprefix("v")
    if text not in API_VERSIONS:
        raise ValueError(f"min_version must be one of {', '.join(API_VERSIONS)}, got {value!r}")
    return text


def literal_when(value: object) -> DropWhen:
    """Check a ``when`` value from a control request."""
    if value == "before_body":
        return "before_body"
    if value == "after_body":
        return "after_body"
    if value == "reset":
        return "reset"
    if value == "after_processing":
        return "after_processing"
    raise ValueError(
        f"when must be 'before_body', 'after_body', 'reset' or 'after_processing', got {value!r}"
    )


def as_iterable_of_str(value: object) -> Iterable[str]:
    """Check a list of customer ids from a control request."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("customerIds must be an array of strings")
    return value
