"""The emulator's HTTP/1.1 server (stdlib ``http.server``) and :class:`GameballEmulator`."""

from __future__ import annotations

import contextlib
import io
import ipaddress
import socket
import struct
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from pydantic import SecretStr

from gbtrack.emulator._control import is_page_route, serve_control
from gbtrack.emulator._faults import FaultPlan
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
    EVENTS_BUCKET,
    ORDERS_BUCKET,
    RateLimits,
)
from gbtrack.emulator._state import (
    CONTROL,
    EmulatorState,
    Incoming,
    ReceivedEvent,
    RequestRecord,
    Response,
    error_response,
)
from gbtrack.emulator._transport import AsyncEmulatorTransport, EmulatorTransport

__all__ = ["GameballEmulator"]

_MAX_BODY = 32 * 1024 * 1024  # far above 1,000 batch items; refuses runaway bodies
_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a TCP reset


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "GameballEmulator"
    sys_version = ""
    disable_nagle_algorithm = True  # answers are written in one send; never wait for ACKs
    server: _Server
    _arrived: float | None = None

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: no per-request logging (throughput, and no PII in logs)."""

    def do_GET(self) -> None:
        """Dispatch a GET request."""
        self._dispatch()

    def parse_request(self) -> bool:
        """Stamp the request's arrival (its line was just read), then parse it."""
        self._arrived = self.server.state.clock()
        return super().parse_request()

    def do_POST(self) -> None:
        """Dispatch a POST request."""
        self._dispatch()

    def do_PUT(self) -> None:
        """Dispatch a PUT request (answered 405)."""
        self._dispatch()

    def do_DELETE(self) -> None:
        """Dispatch a DELETE request."""
        self._dispatch()

    def _dispatch(self) -> None:
        if self.server.stopping.is_set():
            # Read from a connection's buffer after stop() began: the server is gone, so
            # nothing is processed (the client sees the connection closed, no answer).
            self.close_connection = True
            return
        state = self.server.state
        headers = {name.lower(): value for name, value in self.headers.items()}
        incoming = state.begin(self.command, self.path, headers, self._arrived)
        try:
            if incoming.drop == "before_body":
                state.complete(incoming, 0, None)
                self._reset_connection()
                return
            body = self._read_body(incoming)
            if body is None:
                return
            if incoming.drop == "after_body":
                state.complete(incoming, 0, None)
                self._close_without_answer()
                return
            if incoming.drop == "reset":
                state.complete(incoming, 0, None)
                self._reset_connection()
                return
            if incoming.endpoint == CONTROL:
                response = self._control(incoming, body)
            else:
                response = state.handle(incoming, body)
            if incoming.drop == "after_processing":
                self._close_without_answer()  # processed and recorded; the answer is lost
                return
            if incoming.latency and self.server.stopping.wait(incoming.latency):
                self.close_connection = True  # the emulator stops: answer now and close
            self._send(response, incoming.request_id)
        except OSError:  # the client went away mid-request; nothing to answer
            self.close_connection = True

    def _read_body(self, incoming: Incoming) -> bytes | None:
        """Read the body (Content-Length or chunked); answer and return ``None`` if bad."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked(incoming)
        raw_length = self.headers.get("Content-Length")
        if raw_length is None:
            return b""
        try:
            length = int(raw_length)
        except ValueError:
            length = -1
        if length < 0 or length > _MAX_BODY:
            self._refuse_body(incoming, 400 if length < 0 else 413, "bad Content-Length")
            return None
        return self.rfile.read(length) if length else b""

    def _read_chunked(self, incoming: Incoming) -> bytes | None:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self._refuse_body(incoming, 400, "malformed chunked body")
                return None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            total += size
            if total > _MAX_BODY:
                self._refuse_body(incoming, 413, "body too large")
                return None
            parts.append(self.rfile.read(size))
            self.rfile.readline(8)  # the CRLF after each chunk

    def _refuse_body(self, incoming: Incoming, status: int, message: str) -> None:
        self.close_connection = True  # the unread body would desynchronise the connection
        response = error_response(status, 3016, incoming.request_id, message)
        self.server.state.complete(incoming, status, 3016)
        self._send(response, incoming.request_id)

    def _send(self, response: Response, request_id: str) -> None:
        reason = self.responses.get(response.status, ("",))[0]
        lines = [
            f"{self.protocol_version} {response.status} {reason}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(response.body)}",
            f"X-Request-Id: {request_id}",
            f"Server: {self.server_version}",
            f"Date: {self.date_time_string()}",
        ]
        lines.extend(f"{name}: {value}" for name, value in response.headers)
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head + response.body)  # one write: no Nagle/delayed-ACK stalls

    def _reset_connection(self) -> None:
        """Close with a TCP reset (SO_LINGER 0), whatever was read or not."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        self.rfile.close()  # drops the makefile reference, so close() below is the real one
        self.connection.close()
        self.wfile = io.BytesIO()  # the stdlib flushes wfile after every request

    def _close_without_answer(self) -> None:
        """Close cleanly (FIN) after the whole request was read, answering nothing."""
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def finish(self) -> None:
        """Flush and close the stream unless the connection was already closed."""
        if not self.wfile.closed:
            with contextlib.suppress(OSError):
                super().finish()

    # --- control endpoints -----------------------------------------------------------------
    def _control(self, incoming: Incoming, body: bytes) -> Response:
        trusted = _is_loopback(self.client_address[0])
        if trusted and is_page_route(incoming):
            # DNS rebinding: a web page the developer visits may resolve its own name to
            # 127.0.0.1; the browser then sends that name as Host. Answer loopback names only.
            trusted = _is_loopback_host(incoming.headers.get("host", ""))
        return serve_control(self.server.emulator._state, incoming, body, trusted=trusted)


def _is_loopback_host(host: str) -> bool:
    """Whether a ``Host`` header names loopback: ``localhost``, ``127.x.y.z``, ``[::1]``."""
    name = host.strip().lower()
    if name.startswith("["):
        name = name[1 : name.find("]")] if "]" in name else ""
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    if name == "localhost" or name.endswith(".localhost"):
        return True
    return _is_loopback(name)


def _is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


class _Server(ThreadingHTTPServer):
    """A threading server that knows its connections, so stopping closes them all."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], emulator: GameballEmulator, family: socket.AddressFamily
    ) -> None:
        self.address_family = family
        self.emulator = emulator
        self.state = emulator._state
        self.stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._all_closed = threading.Condition(self._connections_lock)
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Track the connection, then serve it on its own thread."""
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        """Forget and close a finished connection."""
        super().shutdown_request(request)
        with self._connections_lock:
            self._connections.discard(request)
            if not self._connections:
                self._all_closed.notify_all()

    def close_connections(self) -> None:
        """Shut every open connection down so that its handler thread ends."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def wait_closed(self, timeout: float) -> None:
        """Wait until every connection's handler is done, at most ``timeout`` seconds.

        The handlers are daemon threads, which ``server_close()`` does not join.
        """
        with self._all_closed:
            self._all_closed.wait_for(lambda: not self._connections, timeout)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Keep errors out of stderr; clients going away is normal, anything else is kept."""
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            return
        self.state.note_internal_error(f"{type(exc).__name__}: {exc}")


class GameballEmulator:
    """A local Gameball: a real HTTP/1.1 server on loopback that records what it accepts.

    Args:
        host: The interface to bind; loopback by default.
        port: The port; 0 picks a free ephemeral port.
        api_key: The ``APIKey`` every request must carry.
        secret_key: The ``SecretKey`` that v4.1, batch, orders and high-security v4.0
            need.
        high_security: Whether v4.0 events also need the ``SecretKey`` (401/1001).
        min_version: The account's minimum API version: ``"4.1"`` refuses v4.0 event
            and order calls with 403/1003 (Gameball documents no code: UNCONFIRMED);
            ``None`` (default) or ``"4.0"`` accepts both versions.
        rate_limits: The events bucket: ``(max requests, window seconds)`` sliding
            windows counted over event and event batch-create requests together;
            ``None`` turns it off.
        rate_limit_retry_after: Whether a 429 carries a ``Retry-After`` header.
        batch_delay: Seconds a batch job stays ``pending`` before it is processed;
            0 processes it before ``jobId`` is answered.
        max_events: Keep only the newest this many events, orders and request records
            (for long benchmarks); counts stay exact.
        clock: The monotonic clock of the rate windows and :meth:`max_requests_in_window`.
        order_rate_limits: The orders bucket (v4.0 and v4.1 orders, batch orders),
            counted apart from events; Gameball's 30 a second and 360 every 30 seconds
            by default; ``None`` turns it off.
        points_per_unit: Points an order earns per unit of ``totalPaid``:
            ``rewardedPoints = floor(totalPaid * points_per_unit)``; 1 by default.
        duplicate_orders: ``"reject"`` (default) answers an ``orderId`` already
            recorded with ``duplicate_order_status``/``duplicate_order_code``;
            ``"accept"`` records it again and awards its points again.
        duplicate_order_status: The HTTP status of a rejected duplicate (422 by
            default; Gameball documents none: UNCONFIRMED).
        duplicate_order_code: The Gameball code of a rejected duplicate (9004,
            "Transaction ID Already Exists", by default: UNCONFIRMED).
        auto_place_order: Whether an accepted order records a ``place_order`` event
            for its customer in :attr:`system_events`, as Gameball fires one itself.

    Example::

        with GameballEmulator() as emulator:
            httpx.post(f"{emulator.url}/api/v4.0/integrations/events", ...)
            assert emulator.wait_for_events(1, timeout=5)
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_key: str | SecretStr = "test-api-key",
        secret_key: str | SecretStr | None = "test-secret-key",  # noqa: S107 - test keys
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
        self._host = host
        self._port = port
        self._api_key = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
        self._secret_key = (
            secret_key
            if secret_key is None or isinstance(secret_key, SecretStr)
            else SecretStr(secret_key)
        )
        self._state = EmulatorState(
            api_key=self._api_key,
            secret_key=self._secret_key,
            high_security=high_security,
            min_version=min_version,
            rate_limits=rate_limits,
            rate_limit_retry_after=rate_limit_retry_after,
            batch_delay=batch_delay,
            max_events=max_events,
            clock=clock,
            order_rate_limits=order_rate_limits,
            points_per_unit=points_per_unit,
            duplicate_orders=duplicate_orders,
            duplicate_order_status=duplicate_order_status,
            duplicate_order_code=duplicate_order_code,
            auto_place_order=auto_place_order,
        )
        self._server: _Server | None = None
        self._bound_port = 0
        self._thread: threading.Thread | None = None
        self._lifecycle = threading.Lock()

    def __repr__(self) -> str:
        where = self.url if self._server is not None else "stopped"
        return f"<GameballEmulator {where}>"

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> GameballEmulator:
        """Bind and serve on a background thread; return ``self``.

        Raises:
            RuntimeError: If the emulator is already running.
            OSError: If the address cannot be bound.
        """
        with self._lifecycle:
            if self._server is not None:
                raise RuntimeError("the emulator is already running")
            family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
            server = _Server((self._host, self._port), self, family)
            self._server = server
            self._bound_port = int(server.server_address[1])
            self._thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.02},  # how long stop() waits for the loop
                name="gbtrack-emulator",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, close every connection and join the threads; idempotent.

        When it returns, no request is being processed and none will be: a request
        still unread in a connection's buffer when it was called is not processed (its
        client sees the connection closed without an answer, as when a server dies).
        """
        with self._lifecycle:
            server, self._server = self._server, None
            thread, self._thread = self._thread, None
            if server is not None:
                server.stopping.set()
                server.shutdown()
                server.close_connections()
                server.server_close()
                # No handler still runs when stop() returns: nothing is recorded after it.
                server.wait_closed(timeout)
            if thread is not None:
                thread.join(timeout)
            self._state.stop_worker(timeout)  # also started by in-process transports

    def __enter__(self) -> GameballEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the server is serving."""
        return self._server is not None

    @property
    def host(self) -> str:
        """The bound host."""
        return self._host

    @property
    def port(self) -> int:
        """The bound port (with ``port=0``, the ephemeral one of the last start).

        Raises:
            RuntimeError: If ``port=0`` and the emulator was never started.
        """
        if self._bound_port:
            return self._bound_port
        if self._port:
            return self._port
        raise RuntimeError("the emulator was never started")

    @property
    def url(self) -> str:
        """The base URL to give a Gameball client, e.g. ``http://127.0.0.1:54321``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    @property
    def api_key(self) -> SecretStr:
        """The API key clients must send."""
        return self._api_key

    @property
    def secret_key(self) -> SecretStr | None:
        """The secret key clients must send for v4.1, batch, orders and high security."""
        return self._secret_key

    # --- in-process use --------------------------------------------------------------------
    def transport(self) -> EmulatorTransport:
        """An httpx transport that answers from this emulator without sockets.

        The emulator need not be started; give the client any base URL::

            httpx.Client(transport=emulator.transport(), base_url="http://gameball")
        """
        return EmulatorTransport(self._state)

    def async_transport(self) -> AsyncEmulatorTransport:
        """An async httpx transport that answers from this emulator without sockets."""
        return AsyncEmulatorTransport(self._state)

    # --- behaviour at run time -------------------------------------------------------------
    @property
    def faults(self) -> FaultPlan:
        """The fault plan: arm failed answers, drops, latency and batch item failures."""
        return self._state.faults

    @property
    def high_security(self) -> bool:
        """Whether v4.0 events require the secret key too."""
        return self._state.high_security

    @high_security.setter
    def high_security(self, value: bool) -> None:
        self._state.high_security = bool(value)

    @property
    def min_version(self) -> str | None:
        """The account's minimum API version (``"4.1"`` refuses v4.0 events), or ``None``."""
        return self._state.min_version

    @min_version.setter
    def min_version(self, value: str | None) -> None:
        self._state.min_version = value

    @property
    def batch_delay(self) -> float:
        """Seconds new batch jobs stay pending before processing."""
        return self._state.batch_delay

    @batch_delay.setter
    def batch_delay(self, value: float) -> None:
        self._state.batch_delay = value

    @property
    def points_per_unit(self) -> float:
        """Points an order earns per unit of ``totalPaid`` (floored per order)."""
        return self._state.points_per_unit

    @points_per_unit.setter
    def points_per_unit(self, value: float) -> None:
        self._state.points_per_unit = value

    @property
    def duplicate_orders(self) -> DuplicateOrders:
        """``"reject"`` an ``orderId`` already recorded, or ``"accept"`` and award again."""
        return self._state.duplicate_orders

    @duplicate_orders.setter
    def duplicate_orders(self, value: DuplicateOrders) -> None:
        self._state.duplicate_orders = value

    @property
    def duplicate_order_status(self) -> int:
        """The HTTP status a rejected duplicate order answers (UNCONFIRMED; 422)."""
        return self._state.duplicate_order_status

    @duplicate_order_status.setter
    def duplicate_order_status(self, value: int) -> None:
        self._state.duplicate_order_status = value

    @property
    def duplicate_order_code(self) -> int:
        """The Gameball code a rejected duplicate order answers (UNCONFIRMED; 9004)."""
        return self._state.duplicate_order_code

    @duplicate_order_code.setter
    def duplicate_order_code(self, value: int) -> None:
        self._state.duplicate_order_code = int(value)

    @property
    def auto_place_order(self) -> bool:
        """Whether accepted orders record a ``place_order`` system event."""
        return self._state.auto_place_order

    @auto_place_order.setter
    def auto_place_order(self, value: bool) -> None:
        self._state.auto_place_order = bool(value)

    @property
    def rate_limits(self) -> tuple[tuple[int, float], ...] | None:
        """The events bucket's rate-limit windows, or ``None`` when off."""
        return self._state.rate_limits_of(EVENTS_BUCKET)

    @property
    def order_rate_limits(self) -> tuple[tuple[int, float], ...] | None:
        """The orders bucket's rate-limit windows, or ``None`` when off."""
        return self._state.rate_limits_of(ORDERS_BUCKET)

    def set_rate_limits(self, limits: RateLimits | None, *, bucket: str = EVENTS_BUCKET) -> None:
        """Replace a bucket's rate limits with fresh windows, or turn it off with ``None``.

        Args:
            limits: ``(max requests, window seconds)`` pairs, or ``None``.
            bucket: ``"events"`` (default) or ``"orders"``; the other is unchanged.

        Raises:
            ValueError: If a window has a limit below 1 or a non-positive period, or the
                bucket is unknown.
        """
        self._state.set_rate_limits(limits, bucket)

    def reset(self) -> None:
        """Forget events, orders, points, requests, counters, rate windows, jobs and faults."""
        self._state.reset()

    # --- inspection --------------------------------------------------------------------------
    @property
    def events(self) -> list[ReceivedEvent]:
        """A copy of the accepted events, oldest first."""
        return self._state.records.events

    @property
    def event_count(self) -> int:
        """How many events were accepted since the start or the last :meth:`reset`."""
        return self._state.records.event_count

    @property
    def orders(self) -> list[ReceivedOrder]:
        """A copy of the accepted orders, oldest first."""
        return self._state.records.orders

    @property
    def order_count(self) -> int:
        """How many orders were accepted since the start or the last :meth:`reset`."""
        return self._state.records.order_count

    @property
    def points(self) -> dict[str, int]:
        """The points awarded for accepted orders, by customer id."""
        return self._state.records.points

    @property
    def system_events(self) -> list[ReceivedEvent]:
        """Events Gameball fires itself: a ``place_order`` per accepted order, oldest first.

        Kept apart from :attr:`events` (what clients sent), so a test can show that an
        application sending its own ``place_order`` beside orders counts purchases twice.
        """
        return self._state.records.system_events

    @property
    def requests(self) -> dict[tuple[str, int], int]:
        """Requests counted by ``(endpoint, status)``; status 0 counts dropped connections.

        Endpoints: ``"v4.0/events"``, ``"v4.1/events"``, ``"batch/events"``,
        ``"v4.0/orders"``, ``"v4.1/orders"``, ``"batch/orders"``, ``"batch/status"``,
        ``"batch/stop"``, ``"_emulator"`` and ``"unknown"``.
        """
        return self._state.requests

    @property
    def request_log(self) -> list[RequestRecord]:
        """A copy of the request records (no secrets), oldest first."""
        return self._state.request_log

    @property
    def rate_limited(self) -> int:
        """How many requests the rate limits answered with 429, both buckets together."""
        return self._state.rate_limited

    def rate_limited_in(self, bucket: str) -> int:
        """How many requests one bucket (``"events"`` or ``"orders"``) answered with 429."""
        return self._state.rate_limited_in(bucket)

    @property
    def internal_errors(self) -> list[str]:
        """Unexpected emulator errors; an empty list unless the emulator has a bug."""
        return self._state.internal_errors

    @property
    def injected_faults(self) -> list[dict[str, Any]]:
        """The faults consumed so far, oldest first (the newest 1,000 are kept).

        Each is ``{"requestId", "endpoint", "receivedAt", "fault", "status"}``, where
        ``fault`` describes what was injected (``"fail 503/5003"``, ``"drop reset"``,
        ``"latency 0.5 s"``, ``"batch item 2 (c-9) failed with 5003"``) and ``status`` is
        the HTTP status answered (0 when dropped, ``None`` for a batch item). The live
        page lists them.
        """
        return self._state.injected_faults

    def wait_for_events(self, count: int, timeout: float | None = 5.0) -> bool:
        """Block until at least ``count`` events were accepted, or the timeout passes.

        Returns:
            Whether ``count`` events were reached.
        """
        return self._state.records.wait_for_events(count, timeout)

    def wait_for_orders(self, count: int, timeout: float | None = 5.0) -> bool:
        """Block until at least ``count`` orders were accepted, or the timeout passes.

        Returns:
            Whether ``count`` orders were reached.
        """
        return self._state.records.wait_for_orders(count, timeout)

    def max_requests_in_window(
        self, window_seconds: float, *, admitted_only: bool = False, bucket: str = EVENTS_BUCKET
    ) -> int:
        """The most of one bucket's requests that arrived within any ``window_seconds``.

        Counts POSTs to the bucket's v4.0, v4.1 and batch-create endpoints, including
        those answered 429 or failed by a fault, so a test can prove a client never
        exceeded a limit.

        Args:
            window_seconds: The window length.
            admitted_only: Count only the requests the rate limit admitted.
            bucket: ``"events"`` (default) or ``"orders"``.
        """
        return self._state.max_requests_in_window(
            window_seconds, admitted_only=admitted_only, bucket=bucket
        )

    def batch_status(self, job_id: int) -> dict[str, Any] | None:
        """A batch job's status body (as the status endpoint answers), or ``None``."""
        return self._state.batch_status(job_id)

    def stats(self) -> dict[str, Any]:
        """Counters as a JSON-ready mapping (``GET /_emulator/stats``)."""
        return self._state.stats()

    def run_pending_batches(self) -> int:
        """Process every pending batch job now, whatever ``batch_delay``; return how many.

        With a long ``batch_delay``, a test can see jobs ``pending``, then finish them
        deterministically instead of waiting.
        """
        return self._state.run_pending_jobs()
