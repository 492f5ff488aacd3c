"""The synchronous Gameball client, and the request building shared with the async one.

:class:`_ClientCore` holds everything that does not depend on how bytes travel:
configuration checks, headers, endpoint choice, body serialisation and the mapping of
answers to outcomes. :class:`GameballClient` and
:class:`~gbtrack.gameball.AsyncGameballClient` only add the httpx call.
"""

from __future__ import annotations

import json
import logging
import os
import re
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from importlib.metadata import PackageNotFoundError, version
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from gbtrack._errors import ConfigurationError, TransportError
from gbtrack._event import ascii_only, wire_json, wire_of
from gbtrack._protocol import (
    DEFAULT_BASE_URL,
    MAX_BATCH_ITEMS,
    ORDERS,
    EventBatch,
    Outcome,
    OutcomeKind,
)
from gbtrack.gameball._outcome import outcome_from_exception, outcome_from_response

__all__ = [
    "BATCH_EVENTS_PATH",
    "BATCH_STATUS_PATH",
    "BATCH_STOP_PATH",
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_CONNECTIONS",
    "EVENTS_PATH",
    "MAX_BATCH_ITEMS",
    "SECURE_EVENTS_PATH",
    "GameballClient",
]

DEFAULT_MAX_CONNECTIONS = 20
"""Default cap on requests in flight at once (~100 ms round trips reach 100 requests/s)."""

EVENTS_PATH = "/api/v4.0/integrations/events"
SECURE_EVENTS_PATH = "/api/v4.1/integrations/events"
BATCH_EVENTS_PATH = "/api/v4.0/integrations/batch/events"
BATCH_STATUS_PATH = "/api/v4.0/integrations/batches/{job_id}/status"
BATCH_STOP_PATH = "/api/v4.0/integrations/batches/{job_id}/stop"

logger = logging.getLogger("gbtrack.gameball")

try:
    _VERSION = version("gbtrack")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    _VERSION = "0.0.0"
AGENT = f"gbtrack/{_VERSION}"
"""The ``x-gb-agent`` (and ``User-Agent``) header value."""

# Header values must be visible ASCII: anything else would fail (or be mangled) on the wire.
_HEADER_VALUE = re.compile(r"[\x21-\x7e]+")
_JSON = {"Content-Type": "application/json"}


def _secret(name: str, value: str | SecretStr | None, *, required: bool) -> SecretStr | None:
    if value is None:
        if required:
            raise ConfigurationError(f"{name} is required")
        return None
    if isinstance(value, SecretStr):
        raw = value.get_secret_value()
    elif isinstance(value, str):
        raw = value
    else:
        raise ConfigurationError(f"{name} must be a str or SecretStr, got {type(value).__name__}")
    raw = raw.strip()  # keys pasted into env files often carry a newline
    if not raw:
        if required:
            raise ConfigurationError(f"{name} is empty")
        return None
    if not _HEADER_VALUE.fullmatch(raw):
        # Never echo the value: it is a key.
        raise ConfigurationError(f"{name} must be visible ASCII characters without spaces")
    return SecretStr(raw)


def _base_url(value: str) -> str:
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ConfigurationError(f"base_url {value!r} is not a valid URL") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(f"base_url {value!r} must be an http:// or https:// URL")
    return str(url).rstrip("/")


# One compact serialisation per request, sent as bytes (no second pass by httpx); text
# goes out as UTF-8. Records of the plain path (ASCII text, exact scalars: the built-in
# delivery path's) are written as JSON text directly, the same bytes without building
# the body's dicts (wire_json).
_ENCODE_UTF8 = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def _dumps(body: Any) -> bytes:
    return _ENCODE_UTF8(body).encode()


@dataclass(frozen=True)
class _Request:
    """One prepared request: everything the transport needs, plus what messages need."""

    method: str
    path: str
    content: bytes | None = None
    headers: dict[str, str] | None = None
    secrets: tuple[str, ...] = ()

    @property
    def what(self) -> str:
        return f"{self.method} {self.path}"


class _ClientCore:
    """Configuration, headers, request building and answer mapping (no I/O)."""

    def __init__(
        self,
        api_key: str | SecretStr,
        *,
        secret_key: str | SecretStr | None = None,
        base_url: str = DEFAULT_BASE_URL,
        lang: str | None = None,
        secure: bool | None = None,
        timeout: float | httpx.Timeout = 10.0,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        api = _secret("api_key", api_key, required=True)
        assert api is not None
        self._api_key: SecretStr = api
        self._secret_key = _secret("secret_key", secret_key, required=False)
        if secure and self._secret_key is None:
            raise ConfigurationError(
                "secure=True (Gameball v4.1 Secure Integration Mode) requires a secret_key"
            )
        if lang is not None and not _HEADER_VALUE.fullmatch(lang):
            raise ConfigurationError(f"lang {lang!r} must be a language code such as 'en'")
        if isinstance(max_connections, bool) or not isinstance(max_connections, int):
            raise ConfigurationError("max_connections must be an int")
        if max_connections < 1:
            raise ConfigurationError("max_connections must be at least 1")
        if not isinstance(timeout, httpx.Timeout) and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
        ):
            raise ConfigurationError("timeout must be a positive number or an httpx.Timeout")
        self.base_url: str = _base_url(base_url)
        self.lang = lang
        # v4.1 whenever a secret key is configured: an account's minimum API version may
        # refuse v4.0, and v4.1 takes the secret key. ``secure=False`` keeps v4.0.
        self.secure: bool = self._secret_key is not None if secure is None else bool(secure)
        self.max_connections = max_connections
        self._timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self._closed = False
        secrets = [self._api_key.get_secret_value()]
        if self._secret_key is not None:
            secrets.append(self._secret_key.get_secret_value())
        self._secrets = tuple(secrets)

    # --- configuration ---------------------------------------------------------------------
    @property
    def api_key(self) -> SecretStr:
        """The API key, as a ``SecretStr`` (masked in reprs and logs).

        It names the Gameball account, e.g. to key a
        :class:`~gbtrack.senders.RedisRateLimiter` shared by the account's processes.
        """
        return self._api_key

    @property
    def has_secret_key(self) -> bool:
        """Whether a secret key is configured (needed by v4.1 and the batch endpoints)."""
        return self._secret_key is not None

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def _headers(self) -> dict[str, str]:
        headers = {
            "APIKey": self._api_key.get_secret_value(),
            "Accept": "application/json",
            "x-gb-agent": AGENT,
            "User-Agent": AGENT,
        }
        if self._secret_key is not None:
            headers["SecretKey"] = self._secret_key.get_secret_value()
        if self.lang is not None:
            headers["lang"] = self.lang
        return headers

    def _limits(self) -> httpx.Limits:
        return httpx.Limits(
            max_connections=self.max_connections, max_keepalive_connections=self.max_connections
        )

    def _client_options(self) -> dict[str, Any]:
        # HTTP/1.1 with keep-alive; redirects are answers, not something to follow with a body.
        return {
            "base_url": self.base_url,
            "headers": self._headers(),
            "timeout": self._timeout,
            "follow_redirects": False,
        }

    def _require_secret_key(self, what: str) -> None:
        if self._secret_key is None:
            raise ConfigurationError(f"{what} needs a secret_key (Gameball batch endpoints)")

    def __repr__(self) -> str:
        # Keys are never shown: the address and the mode only.
        mode = "secure" if self.secure else "standard"
        return f"<{type(self).__name__} base_url={self.base_url!r} mode={mode!r}>"

    # --- request building ------------------------------------------------------------------
    def _send_request(self, batch: EventBatch) -> _Request:
        if not isinstance(batch, EventBatch):
            raise TypeError(f"send() takes an EventBatch, got {type(batch).__name__}")
        secrets = self._secrets
        headers = _JSON
        path = SECURE_EVENTS_PATH if self.secure else EVENTS_PATH
        if batch.session_token is not None:
            token = batch.session_token.get_secret_value()
            # The contract: a session token is forwarded as X-GB-TOKEN, routed to v4.1.
            headers = {**_JSON, "X-GB-TOKEN": token}
            path = SECURE_EVENTS_PATH
            secrets = (*secrets, token)
        # The wire body straight from the batch's records: no Event model is built.
        records = batch.records
        if ascii_only(records):
            content = wire_json((records,))[0].encode("ascii")
        else:
            content = _dumps(wire_of(records, copy=False))
        return _Request("POST", path, content, headers, secrets)

    def _create_batch_request(self, batches: Sequence[EventBatch]) -> _Request:
        self._require_secret_key("create_batch()")
        if not batches:
            raise ValueError("create_batch() needs at least one EventBatch")
        if len(batches) > MAX_BATCH_ITEMS:
            raise ValueError(
                f"create_batch() takes at most {MAX_BATCH_ITEMS} batches, got {len(batches)}"
            )
        for batch in batches:
            if not isinstance(batch, EventBatch):
                raise TypeError(
                    f"create_batch() takes EventBatch items, got {type(batch).__name__}"
                )
        # Session tokens are per-request headers; the batch endpoint uses APIKey + SecretKey.
        if all(ascii_only(batch.records) for batch in batches):
            items = wire_json([batch.records for batch in batches])
            content = ('{"body":[' + ",".join(items) + "]}").encode("ascii")
        else:
            content = _dumps({"body": [wire_of(batch.records, copy=False) for batch in batches]})
        return _Request("POST", BATCH_EVENTS_PATH, content, _JSON, self._secrets)

    def _order_request(
        self, body: Mapping[str, Any], session_token: str | SecretStr | None
    ) -> _Request:
        # Orders need both keys on every version (OAS security: apikey AND secretkey).
        if self._secret_key is None:
            raise ConfigurationError(
                "send_order() needs a secret_key: Gameball's Order API requires both keys"
            )
        if not isinstance(body, Mapping):
            raise TypeError(f"send_order() takes the order's body, got {type(body).__name__}")
        secrets = self._secrets
        headers = _JSON
        secure = self.secure
        if session_token is not None:
            token = (
                session_token.get_secret_value()
                if isinstance(session_token, SecretStr)
                else session_token
            )
            # As for events: a session token is a header, and routes to v4.1.
            headers = {**_JSON, "X-GB-TOKEN": token}
            secure = True
            secrets = (*secrets, token)
        return _Request("POST", ORDERS.path(secure), _dumps(body), headers, secrets)

    def _order_batch_request(self, bodies: Sequence[Mapping[str, Any]]) -> _Request:
        self._require_secret_key("create_order_batch()")
        if not bodies:
            raise ValueError("create_order_batch() needs at least one order")
        if len(bodies) > MAX_BATCH_ITEMS:
            raise ValueError(
                f"create_order_batch() takes at most {MAX_BATCH_ITEMS} orders, got {len(bodies)}"
            )
        for body in bodies:
            if not isinstance(body, Mapping):
                raise TypeError(
                    f"create_order_batch() takes order bodies, got {type(body).__name__}"
                )
        content = _dumps({"body": [dict(body) for body in bodies]})
        return _Request("POST", ORDERS.batch_path, content, _JSON, self._secrets)

    @staticmethod
    def _with_result(outcome: Outcome) -> Outcome:
        """An order's outcome with the parsed answer (:attr:`Outcome.result`)."""
        if not outcome.delivered:
            return outcome
        return replace(outcome, result=ORDERS.result(outcome.body))

    def _job_request(self, method: str, template: str, job_id: str, what: str) -> _Request:
        self._require_secret_key(what)
        if not isinstance(job_id, str) or not job_id.strip():
            raise ValueError(f"{what} needs a non-empty job id string")
        path = template.format(job_id=quote(job_id.strip(), safe=""))
        return _Request(method, path, None, _JSON if method == "POST" else None, self._secrets)

    def _status_request(self, job_id: str) -> _Request:
        return self._job_request("GET", BATCH_STATUS_PATH, job_id, "batch_status()")

    def _stop_request(self, job_id: str) -> _Request:
        return self._job_request("POST", BATCH_STOP_PATH, job_id, "stop_batch()")

    # --- answers ---------------------------------------------------------------------------
    def _closed_outcome(self, request: _Request) -> Outcome:
        return Outcome(
            OutcomeKind.PERMANENT,
            error=TransportError(f"{request.what} not sent: {type(self).__name__} is closed"),
        )

    def _from_response(self, request: _Request, response: httpx.Response, began: float) -> Outcome:
        outcome = outcome_from_response(
            request.what,
            response.status_code,
            response.headers,
            response.content,
            secrets=request.secrets,
        )
        self._log(request, outcome, began)
        return outcome

    def _from_exception(self, request: _Request, exc: Exception, began: float) -> Outcome:
        outcome = outcome_from_exception(request.what, exc, secrets=request.secrets)
        self._log(request, outcome, began)
        return outcome

    @staticmethod
    def _log(request: _Request, outcome: Outcome, began: float) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            # Method, path, status and kind only: no body (PII) and no headers (keys).
            logger.debug(
                "%s -> %s %s in %.3fs",
                request.what,
                outcome.status if outcome.status is not None else "no answer",
                outcome.kind.value,
                time.perf_counter() - began,
            )


class _Pool:
    """One thread's connection pool; when its thread ends, a finalizer closes it."""

    def __init__(self, transport: httpx.HTTPTransport) -> None:
        self.transport = transport


class _SlotReleasingStream(httpx.SyncByteStream):
    """A response body that gives its connection slot back when closed (once)."""

    def __init__(self, stream: httpx.SyncByteStream, release: Callable[[], None]) -> None:
        self._stream = stream
        self._release: Callable[[], None] | None = release

    def __iter__(self) -> Iterator[bytes]:
        yield from self._stream

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()


class _ThreadConfinedTransport(httpx.BaseTransport):
    """Keep-alive HTTP/1.1 with one connection pool per thread, ``max_connections`` at once.

    Why not one shared pool: httpcore 1.0's sync pool, when it tidies up, checks that a
    connection is idle and then whether its socket is readable. Between the two, another
    thread may start a request on that connection and its answer may arrive; the pool
    then takes the answer for a server hang-up and closes the socket under the request,
    which turns a delivered request into an ambiguous ``ReadError`` (and a retry into a
    double count). A pool used by one thread only cannot race with itself. (Seen with
    httpcore 1.0.9; a related race is reported as encode/httpcore#1110.)

    Args:
        max_connections: Requests in flight at once, across threads.
        pool_timeout: Seconds to wait for a free slot (``None``: forever).
        tls: Whether the base URL is ``https``. Without TLS the pools get a bare client
            context (certificate checks still required, no CA loaded): loading the CA
            bundle costs tens of milliseconds of CPU that a plain-HTTP address (a local
            emulator, a sidecar) never uses, and nothing could be verified through it.
    """

    def __init__(
        self, max_connections: int, pool_timeout: float | None, *, tls: bool = True
    ) -> None:
        self._max_connections = max_connections
        self._pool_timeout = pool_timeout
        self._tls = tls
        self._lock = threading.Lock()
        self._finalizers: list[weakref.finalize[[], _Pool]] = []
        self._closed = False
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._slots = threading.BoundedSemaphore(self._max_connections)
        self._local = threading.local()
        self._ssl_context: ssl.SSLContext | None = None

    def _pool(self) -> httpx.HTTPTransport:
        pool: _Pool | None = getattr(self._local, "pool", None)
        if pool is not None:
            return pool.transport
        with self._lock:
            # Loading the CA bundle costs milliseconds of CPU: one context serves every
            # thread's pool (the same context each HTTPTransport would build for itself).
            if self._ssl_context is None:
                self._ssl_context = (
                    httpx.create_ssl_context()
                    if self._tls
                    else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                )
            context = self._ssl_context
        # A thread does one request at a time: one keep-alive connection is all it needs.
        transport = httpx.HTTPTransport(
            verify=context,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            http1=True,
            http2=False,
        )
        pool = _Pool(transport)
        with self._lock:
            if self._closed:
                transport.close()
                raise httpx.LocalProtocolError("the client is closed")
            self._finalizers = [f for f in self._finalizers if f.alive]
            self._finalizers.append(weakref.finalize(pool, transport.close))
        self._local.pool = pool
        return transport

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if os.getpid() != self._pid:
            # A forked child must not share the parent's sockets, nor wait for its slots.
            with self._lock:
                if os.getpid() != self._pid:
                    self._finalizers = []
                    self._reset()
        timeout = -1.0 if self._pool_timeout is None else self._pool_timeout
        if not self._slots.acquire(timeout=timeout):
            raise httpx.PoolTimeout("no connection slot free in time", request=request)
        try:
            response = self._pool().handle_request(request)
        except BaseException:
            self._slots.release()
            raise
        assert isinstance(response.stream, httpx.SyncByteStream)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_SlotReleasingStream(response.stream, self._slots.release),
            extensions=response.extensions,
        )

    def close(self) -> None:
        with self._lock:
            self._closed = True
            finalizers, self._finalizers = self._finalizers, []
        for finalizer in finalizers:
            finalizer()  # closes that thread's pool, once


# What a transport may raise for one request: httpx's errors, a bad URL, and socket errors
# that a custom transport did not wrap. Anything else is a bug and propagates.
_TRANSPORT_ERRORS = (httpx.HTTPError, httpx.InvalidURL, OSError)


class GameballClient(_ClientCore):
    """A synchronous Gameball client: one customer's events per request, and batch jobs.

    Every method returns an :class:`~gbtrack.gameball.Outcome` and never raises for an
    answer or a network failure; only programming errors raise (a wrong argument type,
    too many batch items, a batch call without a secret key).

    Args:
        api_key: The account's API key (sent as ``APIKey``).
        secret_key: The secret key (sent as ``SecretKey`` whenever configured); needed
            for secure mode and the batch endpoints.
        base_url: The API address (default ``https://api.gameball.co``).
        lang: A language code sent as the ``lang`` header.
        secure: The events endpoint: ``None`` (default) sends to v4.1 "Secure
            Integration Mode" when a ``secret_key`` is configured, else to v4.0;
            ``True`` requires v4.1 (and a ``secret_key``); ``False`` keeps v4.0 even
            with a secret key (then sent as ``SecretKey``, for High Security Mode).
        timeout: Seconds (or an ``httpx.Timeout``) for connect, read, write and pool.
        transport: An httpx transport to use instead of the network (tests, emulator).
        max_connections: Requests in flight at once, across threads.

    The client is thread-safe. Over the network it speaks HTTP/1.1 with keep-alive,
    one kept-alive connection per calling thread (a pool shared by threads can close a
    connection under a request; see ``_ThreadConfinedTransport``); a thread's
    connection is closed when the thread ends, and a forked child opens its own.

    Raises:
        ConfigurationError: For a missing or malformed key, base URL, language, timeout
            or pool size, or ``secure=True`` without a secret key.
    """

    def __init__(
        self,
        api_key: str | SecretStr,
        *,
        secret_key: str | SecretStr | None = None,
        base_url: str = DEFAULT_BASE_URL,
        lang: str | None = None,
        secure: bool | None = None,
        timeout: float | httpx.Timeout = 10.0,
        transport: httpx.BaseTransport | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        super().__init__(
            api_key,
            secret_key=secret_key,
            base_url=base_url,
            lang=lang,
            secure=secure,
            timeout=timeout,
            max_connections=max_connections,
        )
        if transport is None:
            transport = _ThreadConfinedTransport(
                max_connections, self._timeout.pool, tls=self.base_url.startswith("https:")
            )
        self._http = httpx.Client(transport=transport, **self._client_options())

    def _request(self, request: _Request) -> Outcome:
        if self._closed:
            return self._closed_outcome(request)
        began = time.perf_counter()
        try:
            response = self._http.request(
                request.method, request.path, content=request.content, headers=request.headers
            )
        except _TRANSPORT_ERRORS as exc:
            return self._from_exception(request, exc, began)
        return self._from_response(request, response, began)

    def send(self, batch: EventBatch) -> Outcome:
        """Send one customer's events to ``/integrations/events``.

        v4.1 when a secret key is configured (unless ``secure=False``), else v4.0; v4.1
        also whenever the batch carries a session token, sent as ``X-GB-TOKEN``.

        Args:
            batch: The events, e.g. one item of :func:`~gbtrack.gameball.coalesce`.

        Returns:
            The outcome; never raises for an answer or a network failure.
        """
        return self._request(self._send_request(batch))

    def create_batch(self, batches: Sequence[EventBatch]) -> Outcome:
        """Create an asynchronous batch job (``POST /batch/events``).

        Args:
            batches: 1 to :data:`MAX_BATCH_ITEMS` batches, one customer object each.
                Session tokens are not sent: the batch endpoint authenticates with the
                API key and secret key.

        Returns:
            The outcome; when delivered, :attr:`Outcome.job_id` holds the job id.

        Raises:
            ValueError: If ``batches`` is empty or holds more than 1,000 items.
            ConfigurationError: If no secret key is configured.
        """
        return self._request(self._create_batch_request(batches))

    def send_order(
        self, body: Mapping[str, Any], *, session_token: str | SecretStr | None = None
    ) -> Outcome:
        """Send one order to ``POST /api/v{4.0|4.1}/integrations/orders``.

        Both keys are sent (the Order API requires them on every version); v4.1 when
        the client is secure, or whenever ``session_token`` is given (``X-GB-TOKEN``).

        Args:
            body: The order's wire body, e.g. :meth:`gbtrack.OrderDraft.to_body`.
            session_token: The customer's session token, if any.

        Returns:
            The outcome; when delivered, :attr:`Outcome.result` holds the parsed answer
            (``rewardedPoints``, ``redeemedPoints``, ...). Never raises for an answer
            or a network failure.

        Raises:
            ConfigurationError: If no secret key is configured.
        """
        return self._with_result(self._request(self._order_request(body, session_token)))

    def create_order_batch(self, bodies: Sequence[Mapping[str, Any]]) -> Outcome:
        """Create a batch job of orders (``POST /api/v4.0/integrations/batch/orders``).

        Poll it with :meth:`batch_status`, as an events job.

        Args:
            bodies: 1 to :data:`MAX_BATCH_ITEMS` order bodies.

        Returns:
            The outcome; when delivered, :attr:`Outcome.job_id` holds the job id.

        Raises:
            ValueError: If ``bodies`` is empty or holds more than 1,000 orders.
            ConfigurationError: If no secret key is configured.
        """
        return self._request(self._order_batch_request(bodies))

    def batch_status(self, job_id: str) -> Outcome:
        """Fetch a batch job's status (``GET /batches/{job_id}/status``).

        Returns:
            The outcome; when delivered, :attr:`Outcome.batch_status` holds the status.

        Raises:
            ValueError: If ``job_id`` is empty.
            ConfigurationError: If no secret key is configured.
        """
        return self._request(self._status_request(job_id))

    def stop_batch(self, job_id: str) -> Outcome:
        """Stop a batch job (``POST /batches/{job_id}/stop``).

        Raises:
            ValueError: If ``job_id`` is empty.
            ConfigurationError: If no secret key is configured.
        """
        return self._request(self._stop_request(job_id))

    def close(self) -> None:
        """Close the connection pool; idempotent. Later requests end as permanent failures."""
        self._closed = True
        self._http.close()

    def __enter__(self) -> GameballClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
