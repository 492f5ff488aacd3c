"""A local Gameball: a real HTTP/1.1 server that speaks the events and Order APIs.

:class:`GameballEmulator` serves Gameball's event and order endpoints on loopback
(stdlib ``http.server``, keep-alive, one thread per connection), checks keys and bodies
with the documented codes, enforces the rate limits (one bucket per resource), runs
batch jobs, records every accepted event and order (with the points it earned), and
injects faults on demand::

    from gbtrack.emulator import GameballEmulator

    with GameballEmulator() as emulator:          # 127.0.0.1, ephemeral port
        client = GameballClient(emulator.api_key, secret_key=emulator.secret_key,
                                base_url=emulator.url)
        ...
        assert emulator.wait_for_events(3, timeout=5)
        print(emulator.events)

Without sockets, ``emulator.transport()`` / ``emulator.async_transport()`` give httpx
transports that run the same request path in-process (faults raise the httpx
exceptions a real connection would); the emulator need not be started for them.

It also runs as ``gbtrack emulator --port 8080`` (or ``python -m gbtrack.emulator``),
and the pytest fixture ``gameball_emulator`` (from the ``gbtrack_emulator`` plugin, see
:mod:`gbtrack.emulator.pytest_plugin`) yields a running emulator on an ephemeral port.

Endpoints
---------
==============================================  ==========================================
``POST /api/v4.0/integrations/events``          ``APIKey``; also ``SecretKey`` when
                                                ``high_security=True``
``POST /api/v4.1/integrations/events``          ``APIKey`` and ``SecretKey``; ``X-GB-TOKEN``
                                                is accepted (its presence is recorded, its
                                                value never kept)
``POST /api/v4.0/integrations/batch/events``    both keys; ``{"body": [...]}`` -> ``{"jobId"}``
``POST /api/v4.0/integrations/orders``          ``APIKey`` and ``SecretKey`` (always)
``POST /api/v4.1/integrations/orders``          ``APIKey`` and ``SecretKey``; ``X-GB-TOKEN``
                                                accepted (presence recorded)
``POST /api/v4.0/integrations/batch/orders``    both keys; ``{"body": [order, ...]}``
``GET  /api/v4.0/integrations/batches/{id}/status``  both keys (event and order jobs)
``POST /api/v4.0/integrations/batches/{id}/stop``    both keys
==============================================  ==========================================

Orders (Gameball's ``trackOrder``; see :mod:`gbtrack.emulator._orders` for every rule):
a tracked order answers ``200 {"customerId", "redeemedPoints", "rewardedPoints",
"lineItems"}`` with ``rewardedPoints = floor(totalPaid * points_per_unit)`` (1 by
default), is recorded in ``emulator.orders``, adds its points to ``emulator.points``
and, unless ``auto_place_order=False``, records a ``place_order`` event for its
customer in ``emulator.system_events`` (Gameball fires it itself; it is kept apart from
``emulator.events``, which holds what clients sent). Order checks, after the faults,
both keys (401/1001 without ``SecretKey``, on v4.0 too), ``min_version`` and the orders
rate limit: 415/3013, 400/3016 as for events; ``customerId`` absent 412/2000 (Gameball's
own example of that code); another required field (``orderId``, ``orderDate``,
``totalPaid``) absent 400/3000, ``null`` 422/3001; a wrong type, an ``orderDate`` that
is not an RFC 3339 date-time, a ``channel`` outside ``mobile|pos|web|callcenter``, a
``returnWindow`` outside 0-7300, an ``extra`` value that is not a string or number:
422/3003. An ``orderId`` already recorded (case-sensitive) is refused with 422/9004
(``duplicate_orders="reject"``, the default; status and code configurable: Gameball
documents no answer, so this is UNCONFIRMED), or recorded and awarded again
(``duplicate_orders="accept"``). Batch order jobs validate each item the same way
(duplicates become item errors with the duplicate code); a processed item's result is
``{"index", "customerId", "orderId", "rewardedPoints", "status": "processed"}``
(UNCONFIRMED: Gameball types ``results`` as an untyped array).

Header names are case-insensitive. A success answers ``200 {"success": true, "message":
"Events processed"}``. Errors answer Gameball's v4 envelope ``{"code", "type",
"message", "documentationUrl", "requestId"}``; every answer carries ``X-Request-Id``.

Checks, in order (a request stops at the first that fails):

1. An armed one-shot fault (see below).
2. ``APIKey`` missing or wrong: 401/1000. Where the secret key is needed: missing
   ``SecretKey`` 401/1001, wrong ``SecretKey`` 401/1000. v4.0 ignores ``SecretKey``
   unless ``high_security``. With ``min_version="4.1"`` (the account's minimum API
   version), v4.0 events answer 403/1003 (Gameball documents no code: UNCONFIRMED).
3. The rate limit of the request's bucket. Events (v4.0, v4.1 and batch create
   together) default to 100 per second and 1,200 per 30 seconds; orders (v4.0, v4.1
   and batch orders) to 30 per second and 360 per 30 seconds, counted apart. Exact
   sliding windows over the arrival times of admitted requests, stamped when the
   request line is read and checked whatever order the handler threads get there in:
   429 with code 429 (Gameball documents no code), ``Retry-After`` only with
   ``rate_limit_retry_after=True``.
4. ``Content-Type`` not ``application/json``: 415/3013.
5. Malformed JSON (NaN and Infinity included), or a body that is not an object:
   400/3016.
6. ``customerId`` or ``events`` absent: 400/3000; either ``null``: 422/3001.
7. Invalid values, 422/3003: ``customerId`` not a non-blank string; ``events`` not an
   object or empty; a blank event name; metadata not an object; a metadata value that
   is not a string, number or boolean; ``email``/``mobile`` present but not a string.
   Anything else (extra fields, metadata keys, sizes) is accepted, as the OpenAPI
   ``EventRequest`` schema accepts it.

Batch jobs: ``body`` absent 400/3000, ``null`` 422/3001, not a non-empty array
422/3003, more than 1,000 items 422/3011. A job is processed at once (``batch_delay=0``,
so it is ``completed`` before ``jobId`` is answered) or after ``batch_delay`` seconds on
a worker thread (``pending`` until then). Each item is validated like a single request;
an invalid item becomes an ``errors`` entry ``{"index", "customerId", "code",
"message"}`` and records nothing, valid items are recorded. The status answers
``{batchId, status, progress (percent), totalItems, processedItems (items done with,
failed ones included), failedItems, results: [{"index", "customerId", "status":
"processed"}], errors}``; ``status`` is ``failed`` when every item failed, else
``completed``. Stopping a pending (or running) job answers ``{"batchId", "status":
"stopped", "message"}``; the items not yet processed become errors with code 5003
("stopped before this item was processed": safe to resend) and the job ends ``failed``.
Stopping a finished job changes nothing. An unknown job answers 404/3017, an unknown
path 404/3017, a wrong method 405/3013.

Faults (:class:`FaultPlan`, ``emulator.faults``; they apply to POSTs to the event and
order endpoints, one armed one-shot fault per request in arming order; ``route="events"``
or ``route="orders"`` keeps a fault for one resource's requests):

- ``fail_next(n, status=503, code=None, message=None, retry_after=None)``: answer the
  envelope instead of processing (code defaults per status: 503->5003, 500->5000,
  422->2001, 429->429, ...).
- ``drop_next(n, when=...)``: close the connection without answering; nothing is
  processed, except with ``"after_processing"``. ``"after_body"`` (the default): the
  request is read, then a clean close (httpx ``RemoteProtocolError``).
  ``"before_body"``: a TCP reset right after the headers, the body unread (httpx:
  ``RemoteProtocolError`` or ``ReadError``, by timing). ``"reset"``: the request is
  read, then a TCP reset (httpx ``ReadError``).
  ``"after_processing"``: the request is processed as usual (events recorded), then
  a clean close without an answer: the ambiguous case where a retry duplicates.
  Dropped requests count as status 0.
- ``set_latency(seconds, count=None)``: process, record, then wait before answering.
- ``fail_batch_items(customer_ids=..., next_items=n, code=5003)``: per-item failures.
- ``clear()``; ``emulator.set_rate_limits(...)``; ``emulator.reset()``.

HTTP control and inspection (no auth; answered only to loopback peers, 403/1002
otherwise): ``GET /_emulator/events``, ``/_emulator/orders``,
``/_emulator/system-events``, ``/_emulator/points``, ``/_emulator/stats``,
``/_emulator/requests``, ``/_emulator/health``, ``/_emulator/batches/{id}``;
``POST /_emulator/reset``, ``/_emulator/faults/fail`` ``{"count", "status", "code",
"message", "retryAfter", "route"}``, ``/_emulator/faults/drop`` ``{"count", "when",
"route"}``, ``/_emulator/faults/latency``
``{"seconds", "count"}``, ``/_emulator/faults/batch-items`` ``{"customerIds",
"nextItems", "code", "message"}``, ``/_emulator/faults/clear``,
``/_emulator/rate-limits`` ``{"limits": [[100, 1], [1200, 30]] | null, "bucket":
"events" | "orders"}``, ``/_emulator/config`` ``{"highSecurity", "batchDelay",
"minVersion", "pointsPerUnit", "duplicateOrders", "duplicateOrderStatus",
"duplicateOrderCode", "autoPlaceOrder"}``, ``/_emulator/batches/run``
(process pending batch jobs now, like ``emulator.run_pending_batches()``).

The live page, ``GET /`` (also ``/_emulator``): one HTML document with inline CSS and
JavaScript (no external assets) that polls ``GET /_emulator/live?customer=&limit=``
every second and shows the events newest first (customer, name, metadata, API version,
batch job and item, session token, what became of the request), the orders beside them
(customer, order id, total paid, points, line items, API, batch, token, status; an
accepted duplicate is marked), the armed and injected
faults (``emulator.injected_faults``) and the counters, with a customer filter. Values
from requests are written with ``textContent`` only, under a Content-Security-Policy
that runs only the page's own script. Both answer loopback peers sending a loopback
``Host`` only (403/1002 otherwise), and neither is recorded in the request log.
"""

from gbtrack.emulator._faults import DropFault, DropWhen, FailFault, Fault, FaultPlan
from gbtrack.emulator._orders import (
    DEFAULT_DUPLICATE_ORDER_CODE,
    DEFAULT_DUPLICATE_ORDER_STATUS,
    DEFAULT_POINTS_PER_UNIT,
    DuplicateOrders,
    ReceivedOrder,
)
from gbtrack.emulator._rate import (
    DEFAULT_ORDER_RATE_LIMITS,
    DEFAULT_RATE_LIMITS,
    RateLimits,
    parse_rate_limits,
)
from gbtrack.emulator._server import GameballEmulator
from gbtrack.emulator._state import MAX_BATCH_ITEMS, ReceivedEvent, RequestRecord
from gbtrack.emulator._transport import AsyncEmulatorTransport, EmulatorTransport

__all__ = [
    "AsyncEmulatorTransport",
    "DEFAULT_DUPLICATE_ORDER_CODE",
    "DEFAULT_DUPLICATE_ORDER_STATUS",
    "DEFAULT_ORDER_RATE_LIMITS",
    "DEFAULT_POINTS_PER_UNIT",
    "DEFAULT_RATE_LIMITS",
    "DropFault",
    "DropWhen",
    "DuplicateOrders",
    "EmulatorTransport",
    "FailFault",
    "Fault",
    "FaultPlan",
    "GameballEmulator",
    "MAX_BATCH_ITEMS",
    "RateLimits",
    "ReceivedEvent",
    "ReceivedOrder",
    "RequestRecord",
    "parse_rate_limits",
]
