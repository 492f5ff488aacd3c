"""The emulator's behaviour, independent of sockets: auth, validation, limits, jobs, records.

:class:`EmulatorState` turns one parsed request into one :class:`Response` and records
what it accepted in its :class:`~gbtrack.emulator._records.Records`: events, and
orders with the points they earned (the order rules live in
:mod:`gbtrack.emulator._orders`, the rate buckets in :mod:`gbtrack.emulator._rate`).
The HTTP layer (``_server.py``) only reads requests, applies dropped connections and
latency, and writes answers. Everything here is thread-safe: one lock guards the
counters, request log, rate windows and jobs (the records keep their own), and neither
is held while JSON is parsed or a batch is validated.
"""

from __future__ import annotations

import heapq
import hmac
import itertools
import json
import math
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from pydantic import SecretStr

from gbtrack.emulator._faults import DropFault, DropWhen, FailFault, Fault, FaultPlan
from gbtrack.emulator._orders import (
    DEFAULT_DUPLICATE_ORDER_CODE,
    DEFAULT_DUPLICATE_ORDER_STATUS,
    DEFAULT_POINTS_PER_UNIT,
    DuplicateOrders,
    ReceivedOrder,
    check_duplicate_orders,
    check_order,
    check_points_per_unit,
    order_answer,
    status_for_code,
)
from gbtrack.emulator._rate import (
    DEFAULT_ORDER_RATE_LIMITS,
    DEFAULT_RATE_LIMITS,
    EVENTS_BUCKET,
    ORDERS_BUCKET,
    RateBucket,
    RateLimits,
    check_bucket,
    max_in_window,
)
from gbtrack.emulator._records import ReceivedEvent, Records

__all__ = [
    "BATCH_CREATE",
    "BATCH_ORDERS",
    "BATCH_STATUS",
    "BATCH_STOP",
    "CONTROL",
    "DEFAULT_ORDER_RATE_LIMITS",
    "DEFAULT_RATE_LIMITS",
    "EVENTS_V40",
    "EVENTS_V41",
    "MAX_BATCH_ITEMS",
    "NOT_FOUND",
    "ORDERS_V40",
    "ORDERS_V41",
    "EmulatorState",
    "Incoming",
    "RateLimits",
    "ReceivedEvent",
    "ReceivedOrder",
    "RequestRecord",
    "Response",
    "error_response",
]

# Endpoint names: the keys of the request counters.
EVENTS_V40: Final = "v4.0/events"
EVENTS_V41: Final = "v4.1/events"
BATCH_CREATE: Final = "batch/events"
ORDERS_V40: Final = "v4.0/orders"
ORDERS_V41: Final = "v4.1/orders"
BATCH_ORDERS: Final = "batch/orders"
BATCH_STATUS: Final = "batch/status"
BATCH_STOP: Final = "batch/stop"
CONTROL: Final = "_emulator"
NOT_FOUND: Final = "unknown"

# The resource endpoints (POST only), each counted in its resource's rate bucket.
BUCKET_OF: Final[Mapping[str, str]] = {
    EVENTS_V40: EVENTS_BUCKET,
    EVENTS_V41: EVENTS_BUCKET,
    BATCH_CREATE: EVENTS_BUCKET,
    ORDERS_V40: ORDERS_BUCKET,
    ORDERS_V41: ORDERS_BUCKET,
    BATCH_ORDERS: ORDERS_BUCKET,
}
RATE_LIMITED_ENDPOINTS: Final = frozenset(BUCKET_OF)
_BATCH_ENDPOINTS: Final = frozenset({BATCH_CREATE, BATCH_ORDERS})
_ROUTES: Final[Mapping[str, str]] = {
    "/api/v4.0/integrations/events": EVENTS_V40,
    "/api/v4.1/integrations/events": EVENTS_V41,
    "/api/v4.0/integrations/batch/events": BATCH_CREATE,
    "/api/v4.0/integrations/orders": ORDERS_V40,
    "/api/v4.1/integrations/orders": ORDERS_V41,
    "/api/v4.0/integrations/batch/orders": BATCH_ORDERS,
}
MAX_BATCH_ITEMS: Final = 1000
"""The most objects one batch-create request (events or orders) may carry (more: 3011)."""

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
    # UNCONFIRMED for orders: the code Gameball documents for a duplicate transaction id.
    9004: ("TRANSACTIONS_ERROR", "Transaction ID already exists."),
}

_SUCCESS_BODY: Final = b'{"success":true,"message":"Events processed"}'
_MISSING: Final[Any] = object()
_STOPPED_MESSAGE: Final = "batch job stopped before this item was processed"
_INJECTED_KEPT: Final = 1000  # the injected-fault log keeps the newest this many


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


class _Job:
    """A batch job (of events or of orders): its items until processed, then its outcome."""

    __slots__ = (
        "due",
        "endpoint",
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
        self,
        job_id: int,
        items: list[Any],
        request_id: str,
        received_at: float,
        has_token: bool,
        endpoint: str = BATCH_CREATE,
    ) -> None:
        self.id = job_id
        self.endpoint = endpoint  # BATCH_CREATE or BATCH_ORDERS
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


class EmulatorState:
    """The Gameball emulator's logic and records; the HTTP layer feeds it requests.

    Args:
        api_key: The ``APIKey`` every request must carry.
        secret_key: The ``SecretKey`` v4.1, batch, orders and high-security v4.0 requests
            carry.
        high_security: Whether v4.0 events also need the ``SecretKey`` (401/1001).
        min_version: The account's minimum API version: ``"4.1"`` refuses v4.0 event
            and order calls (403/1003, after the key checks); ``None`` or ``"4.0"``
            accepts both.
        rate_limits: The events bucket's sliding windows, or ``None`` for no limit.
        order_rate_limits: The orders bucket's sliding windows, or ``None``.
        rate_limit_retry_after: Whether a 429 carries ``Retry-After`` (Gameball documents
            none; off by default).
        batch_delay: Seconds a batch job stays ``pending`` before it is processed.
        max_events: Keep only the newest this many events, orders and request records
            (counts stay exact).
        clock: The monotonic clock of the rate windows and arrival timestamps.
        points_per_unit: Points an order earns per unit of ``totalPaid`` (floored).
        duplicate_orders: ``"reject"`` an ``orderId`` already recorded, or ``"accept"``
            it and award it again.
        duplicate_order_status: The HTTP status of a rejected duplicate (UNCONFIRMED).
        duplicate_order_code: The Gameball code of a rejected duplicate (UNCONFIRMED).
        auto_place_order: Whether each accepted order records a ``place_order`` system
            event for its customer, as Gameball's Order API fires one.

    Attributes:
        records: What was accepted: events, orders, points, system events.
        faults: The armed faults.
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
        order_rate_limits: RateLimits | None = DEFAULT_ORDER_RATE_LIMITS,
        points_per_unit: float = DEFAULT_POINTS_PER_UNIT,
        duplicate_orders: DuplicateOrders = "reject",
        duplicate_order_status: int = DEFAULT_DUPLICATE_ORDER_STATUS,
        duplicate_order_code: int = DEFAULT_DUPLICATE_ORDER_CODE,
        auto_place_order: bool = True,
    ) -> None:
        self._api_key = _secret_bytes(api_key)
        self._secret_key = None if secret_key is None else _secret_bytes(secret_key)
        self.high_security = high_security
        self.min_version = min_version
        self.rate_limit_retry_after = rate_limit_retry_after
        self.batch_delay = batch_delay
        self.points_per_unit = points_per_unit
        self.duplicate_orders = duplicate_orders
        self.duplicate_order_status = duplicate_order_status
        self.duplicate_order_code = int(duplicate_order_code)
        self.auto_place_order = bool(auto_place_order)
        self.clock = clock
        self.faults = FaultPlan()
        self.records = Records(max_events)
        self._lock = threading.Lock()
        self._jobs_changed = threading.Condition(self._lock)
        self._requests: Counter[tuple[str, int]] = Counter()
        self._request_log: deque[RequestRecord] = deque(maxlen=max_events)
        self._buckets = {
            EVENTS_BUCKET: RateBucket(rate_limits),
            ORDERS_BUCKET: RateBucket(order_rate_limits),
        }
        self._dropped = 0
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
    def min_version(self) -> str | None:
        """The account's minimum API version (``"4.1"`` refuses v4.0 calls), or ``None``."""
        return self._min_version

    @min_version.setter
    def min_version(self, value: str | None) -> None:
        self._min_version = check_min_version(value)

    @property
    def batch_delay(self) -> float:
        """Seconds new batch jobs stay pending before processing."""
        return self._batch_delay

    @batch_delay.setter
    def batch_delay(self, value: float) -> None:
        if not float(value) >= 0:
            raise ValueError("batch_delay must be >= 0")
        self._batch_delay = float(value)

    @property
    def points_per_unit(self) -> float:
        """Points an order earns per unit of ``totalPaid``."""
        return self._points_per_unit

    @points_per_unit.setter
    def points_per_unit(self, value: float) -> None:
        self._points_per_unit = check_points_per_unit(value)

    @property
    def duplicate_orders(self) -> DuplicateOrders:
        """``"reject"`` (an ``orderId`` seen before is refused) or ``"accept"``."""
        return self._duplicate_orders

    @duplicate_orders.setter
    def duplicate_orders(self, value: DuplicateOrders) -> None:
        self._duplicate_orders = check_duplicate_orders(value)

    @property
    def duplicate_order_status(self) -> int:
        """The HTTP status a rejected duplicate order answers (UNCONFIRMED; 422)."""
        return self._duplicate_order_status

    @duplicate_order_status.setter
    def duplicate_order_status(self, value: int) -> None:
        if not 400 <= int(value) <= 599:
            raise ValueError(f"duplicate_order_status must be 400-599, got {value!r}")
        self._duplicate_order_status = int(value)

    @property
    def rate_limits(self) -> tuple[tuple[int, float], ...] | None:
        """The events bucket's sliding windows, or ``None`` when it is not limited."""
        return self.rate_limits_of(EVENTS_BUCKET)

    def rate_limits_of(self, bucket: str) -> tuple[tuple[int, float], ...] | None:
        """A bucket's sliding windows (``"events"`` or ``"orders"``), or ``None`` when off.

        Raises:
            ValueError: If the bucket is unknown.
        """
        name = check_bucket(bucket)
        with self._lock:
            return self._buckets[name].limits

    def set_rate_limits(self, limits: RateLimits | None, bucket: str = EVENTS_BUCKET) -> None:
        """Replace a bucket's rate limits (fresh windows), or turn them off with ``None``.

        Raises:
            ValueError: If the bucket is unknown or a window is invalid.
        """
        name = check_bucket(bucket)
        replacement = RateBucket(limits)  # validates before anything changes
        with self._lock:
            self._buckets[name].windows = replacement.windows

    # --- request path ------------------------------------------------------------------
    def begin(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        arrived: float | None = None,
    ) -> Incoming:
        """Classify a request from its line and headers; consume faults for resource endpoints.

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
        bucket = BUCKET_OF.get(incoming.endpoint)
        if bucket is not None and method == "POST":
            with self._lock:
                self._buckets[bucket].arrive(arrived)
            incoming.fault = self.faults.take(bucket)
            incoming.latency = self.faults.take_latency()
        return incoming

    def handle(self, incoming: Incoming, body: bytes) -> Response:
        """Answer a request whose body has been read (control endpoints excepted)."""
        endpoint = incoming.endpoint
        try:
            if endpoint in RATE_LIMITED_ENDPOINTS:
                if incoming.method != "POST":
                    response = self._method_not_allowed(incoming)
                elif endpoint in _BATCH_ENDPOINTS:
                    response = self._batch_create(incoming, body)
                elif endpoint in (ORDERS_V40, ORDERS_V41):
                    response = self._post_order(incoming, body)
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
        self.records.add_events(
            _item_events(payload, version, incoming.request_id, incoming.received_at, has_token)
        )
        return Response(200, _SUCCESS_BODY)

    def _post_order(self, incoming: Incoming, body: bytes) -> Response:
        version = "v4.1" if incoming.endpoint == ORDERS_V41 else "v4.0"
        refusal = self._refuse(
            incoming,
            need_secret=True,  # orders always need both keys, on v4.0 too
            refuse_version=version == "v4.0" and self.min_version == "4.1",
        )
        if refusal is not None:
            return refusal
        payload, refusal = self._payload(incoming, body)
        if refusal is not None:
            return refusal
        rid = incoming.request_id
        problem = check_order(payload)
        if problem is not None:
            code, message = problem
            if code == 3003 and type(payload) is not dict:
                code = 3016
            return error_response(status_for_code(code), code, rid, message)
        rate = self.points_per_unit
        order = self.records.admit_order(
            payload,
            points_per_unit=rate,
            duplicates=self.duplicate_orders,
            place_order=self.auto_place_order,
            version=version,
            request_id=rid,
            received_at=incoming.received_at,
            has_token=_has_token(incoming.headers),
        )
        if order is None:
            return self._duplicate_refusal(rid, payload["orderId"])
        return _json_response(order_answer(payload, order.rewarded_points, rate))

    def _duplicate_refusal(self, request_id: str, order_id: str) -> Response:
        return error_response(
            self.duplicate_order_status,
            self.duplicate_order_code,
            request_id,
            f"Transaction ID already exists: orderId {order_id!r} was tracked before.",
        )

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
            next(self._job_ids),
            items,
            rid,
            incoming.received_at,
            _has_token(incoming.headers),
            incoming.endpoint,
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
        bucket = BUCKET_OF.get(incoming.endpoint)
        if bucket is not None:
            with self._lock:
                wait = self._buckets[bucket].try_admit(incoming.arrived)
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
        accepted, errors, stopped_at, item_injected = self._validate_items(job, items)
        # Recorded first, then the job settles: a client that saw it completed finds them.
        if job.endpoint == BATCH_ORDERS:
            results = self._admit_batch_orders(job, accepted, errors)
        else:
            results = self._admit_batch_events(job, accepted)
        errors.sort(key=lambda error: int(error["index"]))
        with self._lock:
            self._injected.extend(item_injected)
            job.errors.extend(errors)
            job.results.extend(results)
            job.processed += len(items) if stopped_at is None else stopped_at
            job.failed += len(errors)
            if stopped_at is not None:
                self._finish_stopped(job, stopped_at)
            else:
                job.items = None
                job.status = "failed" if job.failed == job.total else "completed"

    def _admit_batch_events(
        self, job: _Job, accepted: list[tuple[int, dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        """Record a job's valid event items; return their results."""
        recorded: list[ReceivedEvent] = []
        for index, item in accepted:
            recorded.extend(
                _item_events(
                    item, "batch", job.request_id, job.received_at, job.has_token, job.id, index
                )
            )
        self.records.add_events(recorded)
        return [_item_result(item, index) for index, item in accepted]

    def _admit_batch_orders(
        self,
        job: _Job,
        accepted: list[tuple[int, dict[str, Any]]],
        errors: list[dict[str, Any]],
    ) -> list[dict[str, Any]]:
        """Record a job's valid orders (duplicates become ``errors``); return their results."""
        results: list[dict[str, Any]] = []
        rate, duplicates, place_order = (
            self.points_per_unit,
            self.duplicate_orders,
            self.auto_place_order,
        )
        for index, item in accepted:
            order = self.records.admit_order(
                item,
                points_per_unit=rate,
                duplicates=duplicates,
                place_order=place_order,
                version="batch",
                request_id=job.request_id,
                received_at=job.received_at,
                has_token=job.has_token,
                job_id=job.id,
                index=index,
            )
            if order is None:
                message = f"Transaction ID already exists: orderId {item['orderId']!r}."
                code = self.duplicate_order_code
                errors.append(_item_error(item, index, code, message, order=True))
            else:
                results.append(_item_result(item, index, order.rewarded_points))
        return results

    def _validate_items(
        self, job: _Job, items: list[Any]
    ) -> tuple[
        list[tuple[int, dict[str, Any]]], list[dict[str, Any]], int | None, list[dict[str, Any]]
    ]:
        """Check a job's items and apply item faults.

        Returns:
            ``(accepted, errors, stopped_at, injected)``: the valid items with their
            index, the invalid ones' error entries, the index a stop request ended the
            loop at (``None`` when it ran through), the injected item faults.
        """
        check = check_order if job.endpoint == BATCH_ORDERS else _check_item
        faults = self.faults
        item_faults = faults.has_item_faults
        accepted: list[tuple[int, dict[str, Any]]] = []
        errors: list[dict[str, Any]] = []
        injected: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            if job.stop_requested:
                return accepted, errors, index, injected
            problem = check(item)
            if problem is None and item_faults:
                customer_id = item.get("customerId")
                taken = faults.take_item_fault(str(customer_id))
                if taken is not None:
                    code, message = taken
                    problem = code, message or _ERRORS.get(code, ("", "item failed"))[1]
                    injected.append(
                        {
                            "requestId": job.request_id,
                            "endpoint": job.endpoint,
                            "receivedAt": job.received_at,
                            "fault": f"batch item {index} ({customer_id}) failed with {code}",
                            "status": None,
                        }
                    )
            if problem is None:
                accepted.append((index, item))
            else:
                code, message = problem
                errors.append(_item_error(item, index, code, message, order=check is check_order))
        return accepted, errors, None, injected

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
        """How many requests the rate limits refused (429), every bucket together."""
        with self._lock:
            return sum(bucket.rate_limited for bucket in self._buckets.values())

    def rate_limited_in(self, bucket: str) -> int:
        """How many requests one bucket's rate limit refused (429).

        Raises:
            ValueError: If the bucket is unknown.
        """
        name = check_bucket(bucket)
        with self._lock:
            return self._buckets[name].rate_limited

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

    def max_requests_in_window(
        self, window: float, *, admitted_only: bool = False, bucket: str = EVENTS_BUCKET
    ) -> int:
        """The most of one bucket's requests that arrived in any ``window`` seconds.

        Args:
            window: The window length, in seconds of the emulator's clock.
            admitted_only: Count only requests the rate limit admitted, instead of every
                request that reached one of the bucket's endpoints (v4.0, v4.1, batch
                create).
            bucket: ``"events"`` (default) or ``"orders"``.

        Raises:
            ValueError: If the bucket is unknown.
        """
        name = check_bucket(bucket)
        with self._lock:
            chosen = self._buckets[name]
            times = sorted(chosen.admitted if admitted_only else chosen.arrivals)
        return max_in_window(times, window)

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
            buckets = self._buckets
            stats: dict[str, Any] = {
                **self.records.counts(),
                "requests": by_endpoint,
                "rateLimited": sum(bucket.rate_limited for bucket in buckets.values()),
                "rateLimitedByBucket": {name: b.rate_limited for name, b in buckets.items()},
                "dropped": self._dropped,
                "batchJobs": {"total": len(self._jobs), **dict(sorted(jobs.items()))},
                "rateLimits": _limits_json(buckets[EVENTS_BUCKET].limits),
                "orderRateLimits": _limits_json(buckets[ORDERS_BUCKET].limits),
                "highSecurity": self.high_security,
                "minVersion": self.min_version,
                "batchDelay": self.batch_delay,
                "pointsPerUnit": self.points_per_unit,
                "duplicateOrders": self.duplicate_orders,
                "duplicateOrderStatus": self.duplicate_order_status,
                "duplicateOrderCode": self.duplicate_order_code,
                "autoPlaceOrder": self.auto_place_order,
                "internalErrors": len(self._internal_errors),
            }
        stats["faults"] = self.faults.snapshot()
        return stats

    def reset(self) -> None:
        """Forget events, orders, points, requests, counters, rate windows, jobs and faults."""
        self.faults.clear()
        self.records.reset()
        with self._lock:
            self._requests.clear()
            self._request_log.clear()
            self._dropped = 0
            for bucket in self._buckets.values():
                bucket.reset()
            self._jobs.clear()
            self._due.clear()
            self._internal_errors.clear()
            self._injected.clear()


def _limits_json(limits: tuple[tuple[int, float], ...] | None) -> list[list[float]] | None:
    return None if limits is None else [[count, period] for count, period in limits]


def _classify(path: str) -> str:
    endpoint = _ROUTES.get(path)
    if endpoint is not None:
        return endpoint
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


def _item_result(item: dict[str, Any], index: int, points: int | None = None) -> dict[str, Any]:
    """A batch status ``results`` entry; an order's carries its id and points (UNCONFIRMED)."""
    result: dict[str, Any] = {"index": index, "customerId": item["customerId"]}
    if points is not None:
        result["orderId"] = item["orderId"]
        result["rewardedPoints"] = points
    result["status"] = "processed"
    return result


def _item_error(
    item: Any, index: int, code: int, message: str, *, order: bool = False
) -> dict[str, Any]:
    """A batch status ``errors`` entry (an order's carries its ``orderId`` when it has one)."""
    customer_id = item.get("customerId") if type(item) is dict else None
    error: dict[str, Any] = {
        "index": index,
        "customerId": customer_id if type(customer_id) is str else None,
    }
    order_id = item.get("orderId") if order and type(item) is dict else None
    if type(order_id) is str:
        error["orderId"] = order_id
    error["code"] = code
    error["message"] = message
    return error


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
