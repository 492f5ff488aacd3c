"""GameballClient: requests, headers, routing, batch endpoints, outcomes, and secrecy.

Unit tests drive the client through ``httpx.MockTransport``; a few run real HTTP on
127.0.0.1 to check what only a socket can show (refused, cut, silent, keep-alive).
"""

from __future__ import annotations

import contextlib
import gc
import http.server
import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

import gbtrack
from gbtrack import (
    AuthenticationError,
    ConfigurationError,
    Event,
    RateLimitError,
    TransportError,
)
from gbtrack.gameball import (
    DEFAULT_BASE_URL,
    MAX_BATCH_ITEMS,
    EventBatch,
    GameballClient,
    OutcomeKind,
    coalesce,
)

API_KEY = "api-KEY-1234567890"
SECRET_KEY = "sec-KEY-0987654321"
TOKEN = "jwe.session.TOKEN"

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport handler that records requests and answers from a script."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = (
            self.answers.pop(0) if self.answers else httpx.Response(200, json={"success": True})
        )
        if isinstance(answer, Exception):
            raise answer
        return answer

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


def make(recorder: Handler, **options: Any) -> GameballClient:
    options.setdefault("base_url", "https://gb.test")
    return GameballClient(
        options.pop("api_key", API_KEY), transport=httpx.MockTransport(recorder), **options
    )


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


def batch(name: str = "purchase", customer: str = "c1", **kw: Any) -> EventBatch:
    return EventBatch.from_event(Event(name=name, customer_id=customer, **kw))


# --- requests and headers ---------------------------------------------------------------------
def test_send_v40_headers_and_body(rec: Recorder) -> None:
    with make(rec) as client:
        b = batch(metadata={"amount": 9.5, "currency": "USD"}, email="j@example.com")
        outcome = client.send(b)
    assert outcome.delivered
    assert outcome.body == {"success": True}
    request = rec.last
    assert request.method == "POST"
    assert str(request.url) == "https://gb.test/api/v4.0/integrations/events"
    assert request.headers["APIKey"] == API_KEY
    assert "SecretKey" not in request.headers
    assert "X-GB-TOKEN" not in request.headers
    assert "lang" not in request.headers
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["x-gb-agent"] == f"gbtrack/{gbtrack.__version__}"
    # One compact serialisation, sent as bytes.
    assert request.content == json.dumps(b.body(), separators=(",", ":")).encode()
    assert json.loads(request.content) == {
        "customerId": "c1",
        "email": "j@example.com",
        "events": {"purchase": {"amount": 9.5, "currency": "USD"}},
    }


def test_non_ascii_metadata_is_utf8(rec: Recorder) -> None:
    with make(rec) as client:
        client.send(batch(metadata={"city": "Cairo — القاهرة"}))
    assert json.loads(rec.last.content.decode("utf-8"))["events"]["purchase"]["city"] == (
        "Cairo — القاهرة"
    )


def test_secret_key_and_lang_headers(rec: Recorder) -> None:
    # With a secret key, events go to v4.1 by default: a merchant's minimum API version
    # may refuse v4.0, and every v4.1 integration endpoint takes the secret key.
    with make(rec, secret_key=SECRET_KEY, lang="ar") as client:
        assert client.has_secret_key
        assert client.secure
        client.send(batch())
    assert rec.last.url.path == "/api/v4.1/integrations/events"
    assert rec.last.headers["SecretKey"] == SECRET_KEY
    assert rec.last.headers["lang"] == "ar"


def test_secure_false_keeps_v40_with_a_secret_key(rec: Recorder) -> None:
    # The explicit override: v4.0 (High Security Mode sends the SecretKey there too).
    with make(rec, secret_key=SECRET_KEY, secure=False) as client:
        assert not client.secure
        client.send(batch())
    assert rec.last.url.path == "/api/v4.0/integrations/events"
    assert rec.last.headers["SecretKey"] == SECRET_KEY


def test_secure_mode_uses_v41(rec: Recorder) -> None:
    with make(rec, secret_key=SecretStr(SECRET_KEY), secure=True) as client:
        assert client.secure
        client.send(batch())
    assert rec.last.url.path == "/api/v4.1/integrations/events"
    assert rec.last.headers["SecretKey"] == SECRET_KEY
    assert rec.last.headers["APIKey"] == API_KEY


def test_secure_mode_requires_secret_key() -> None:
    with pytest.raises(ConfigurationError, match="secret_key"):
        GameballClient(API_KEY, secure=True)


@pytest.mark.parametrize("secret_key", [None, SECRET_KEY])
def test_session_token_routes_to_v41(rec: Recorder, secret_key: str | None) -> None:
    with make(rec, secret_key=secret_key) as client:
        client.send(batch(session_token=SecretStr(TOKEN)))
        client.send(batch())
    with_token, without = rec.requests
    assert with_token.url.path == "/api/v4.1/integrations/events"
    assert with_token.headers["X-GB-TOKEN"] == TOKEN
    assert TOKEN.encode() not in with_token.content
    assert ("SecretKey" in with_token.headers) is (secret_key is not None)
    # Without a token: v4.1 when a secret key is configured, else v4.0.
    expected = "/api/v4.1/integrations/events" if secret_key else "/api/v4.0/integrations/events"
    assert without.url.path == expected
    assert "X-GB-TOKEN" not in without.headers


@pytest.mark.parametrize("base_url", ["http://127.0.0.1:9/gb", "http://127.0.0.1:9/gb/"])
def test_base_url_with_a_path_prefix(rec: Recorder, base_url: str) -> None:
    with make(rec, base_url=base_url) as client:
        client.send(batch())
    assert str(rec.last.url) == "http://127.0.0.1:9/gb/api/v4.0/integrations/events"


def test_defaults() -> None:
    with GameballClient(SecretStr(API_KEY)) as client:
        assert client.base_url == DEFAULT_BASE_URL
        assert not client.has_secret_key
        assert not client.secure
        assert client.max_connections == 20


def test_send_takes_an_event_batch(rec: Recorder) -> None:
    with make(rec) as client, pytest.raises(TypeError, match="EventBatch"):
        client.send(Event(name="a", customer_id="c"))  # type: ignore[arg-type]


# --- configuration checks -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"api_key": ""}, "api_key is empty"),
        ({"api_key": "   "}, "api_key is empty"),
        ({"api_key": "has space-" + API_KEY}, "api_key must be visible ASCII"),
        ({"api_key": API_KEY + "é"}, "api_key must be visible ASCII"),
        ({"api_key": 123}, "api_key must be a str"),
        ({"secret_key": "bad\nkey-" + SECRET_KEY}, "secret_key must be visible ASCII"),
        ({"base_url": "ftp://gb.test"}, "http:// or https://"),
        ({"base_url": "not a url"}, "base_url"),
        ({"lang": "e n"}, "lang"),
        ({"max_connections": 0}, "max_connections"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": "10"}, "timeout"),
    ],
)
def test_configuration_errors(kwargs: dict[str, Any], match: str) -> None:
    options: dict[str, Any] = {"api_key": API_KEY, **kwargs}
    api_key = options.pop("api_key")
    with pytest.raises(ConfigurationError, match=match) as info:
        GameballClient(api_key, **options)
    # The offending key is never echoed.
    assert API_KEY not in str(info.value)
    assert SECRET_KEY not in str(info.value)


def test_keys_are_stripped(rec: Recorder) -> None:
    with make(rec, api_key=f"  {API_KEY}\n", secret_key=f"{SECRET_KEY}\n") as client:
        client.send(batch())
    assert rec.last.headers["APIKey"] == API_KEY
    assert rec.last.headers["SecretKey"] == SECRET_KEY


def test_blank_secret_key_means_none(rec: Recorder) -> None:
    with make(rec, secret_key="") as client:
        assert not client.has_secret_key


def test_httpx_timeout_accepted(rec: Recorder) -> None:
    with make(rec, timeout=httpx.Timeout(3.0, connect=1.0)) as client:
        assert client.send(batch()).delivered
    assert rec.last.extensions["timeout"]["connect"] == 1.0
    assert rec.last.extensions["timeout"]["read"] == 3.0


# --- batch endpoints ------------------------------------------------------------------------------
def test_create_batch(rec: Recorder) -> None:
    rec.answers.append(httpx.Response(200, json={"jobId": 4242}))
    items = coalesce(
        [
            Event(name="a", customer_id="c1", session_token=SecretStr(TOKEN)),
            Event(name="b", customer_id="c2", mobile="+201000000000"),
        ]
    )
    with make(rec, secret_key=SECRET_KEY) as client:
        outcome = client.create_batch(items)
    assert outcome.delivered
    assert outcome.job_id == "4242"
    request = rec.last
    assert request.method == "POST"
    assert request.url.path == "/api/v4.0/integrations/batch/events"
    assert request.headers["APIKey"] == API_KEY
    assert request.headers["SecretKey"] == SECRET_KEY
    assert request.headers["Content-Type"] == "application/json"
    assert "X-GB-TOKEN" not in request.headers
    assert json.loads(request.content) == {
        "body": [
            {"customerId": "c1", "events": {"a": {}}},
            {"customerId": "c2", "mobile": "+201000000000", "events": {"b": {}}},
        ]
    }


def test_create_batch_limits(rec: Recorder) -> None:
    many = [batch(customer=f"c{i}") for i in range(MAX_BATCH_ITEMS + 1)]
    with make(rec, secret_key=SECRET_KEY) as client:
        with pytest.raises(ValueError, match="at most 1000"):
            client.create_batch(many)
        with pytest.raises(ValueError, match="at least one"):
            client.create_batch([])
        with pytest.raises(TypeError, match="EventBatch"):
            client.create_batch([object()])  # type: ignore[list-item]
        assert client.create_batch(many[:MAX_BATCH_ITEMS]).delivered
    assert len(json.loads(rec.last.content)["body"]) == MAX_BATCH_ITEMS


def test_batch_endpoints_need_a_secret_key(rec: Recorder) -> None:
    with make(rec) as client:
        with pytest.raises(ConfigurationError, match="secret_key"):
            client.create_batch([batch()])
        with pytest.raises(ConfigurationError, match="secret_key"):
            client.batch_status("1")
        with pytest.raises(ConfigurationError, match="secret_key"):
            client.stop_batch("1")
    assert rec.requests == []


def test_batch_status(rec: Recorder) -> None:
    rec.answers.append(
        httpx.Response(
            200,
            json={
                "batchId": "4242",
                "status": "completed",
                "progress": 100,
                "totalItems": 2,
                "processedItems": 2,
                "failedItems": 1,
                "results": [],
                "errors": [{"index": 1, "customerId": "c2", "code": 3003, "message": "bad"}],
            },
        )
    )
    with make(rec, secret_key=SECRET_KEY) as client:
        outcome = client.batch_status("4242")
    assert rec.last.method == "GET"
    assert rec.last.url.path == "/api/v4.0/integrations/batches/4242/status"
    assert rec.last.headers["SecretKey"] == SECRET_KEY
    assert rec.last.content == b""
    status = outcome.batch_status
    assert status is not None
    assert status.done
    assert status.item_errors([batch(customer="c1"), batch(customer="c2")]) == {1: status.errors[0]}


def test_stop_batch_and_job_id_quoting(rec: Recorder) -> None:
    rec.answers.append(httpx.Response(200, json={"batchId": "a/b", "status": "stopped"}))
    with make(rec, secret_key=SECRET_KEY) as client:
        outcome = client.stop_batch("a/b")
        with pytest.raises(ValueError, match="job id"):
            client.stop_batch("")
    assert outcome.delivered
    assert rec.last.method == "POST"
    assert rec.last.url.raw_path == b"/api/v4.0/integrations/batches/a%2Fb/stop"


# --- outcomes through the client ----------------------------------------------------------
def test_error_answer_maps_to_outcome(rec: Recorder) -> None:
    rec.answers.append(
        httpx.Response(
            429, headers={"Retry-After": "2"}, json={"code": 429, "message": "slow down"}
        )
    )
    rec.answers.append(
        httpx.Response(
            401,
            json={"code": 1000, "type": "AUTHENTICATION_ERROR", "message": "Unauthorized access."},
        )
    )
    with make(rec) as client:
        limited = client.send(batch())
        refused = client.send(batch())
    assert limited.kind is OutcomeKind.RETRYABLE
    assert isinstance(limited.error, RateLimitError)
    assert limited.retry_after == 2.0
    assert refused.kind is OutcomeKind.PERMANENT
    assert isinstance(refused.error, AuthenticationError)
    assert refused.error.type == "AUTHENTICATION_ERROR"
    assert "/api/v4.0/integrations/events" in str(refused.error)


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (httpx.ConnectError("refused"), OutcomeKind.RETRYABLE),
        (httpx.ReadTimeout("slow"), OutcomeKind.AMBIGUOUS),
        (httpx.RemoteProtocolError("Server disconnected"), OutcomeKind.AMBIGUOUS),
        (ConnectionResetError("reset"), OutcomeKind.AMBIGUOUS),
    ],
)
def test_transport_errors_become_outcomes(exc: Exception, kind: OutcomeKind) -> None:
    with make(Recorder(exc)) as client:
        outcome = client.send(batch())
    assert outcome.kind is kind
    assert isinstance(outcome.error, TransportError)


def test_programming_errors_in_a_transport_propagate() -> None:
    with make(Recorder(ZeroDivisionError("bug"))) as client, pytest.raises(ZeroDivisionError):
        client.send(batch())


def test_closed_client(rec: Recorder) -> None:
    client = make(rec)
    client.close()
    client.close()  # idempotent
    assert client.closed
    outcome = client.send(batch())
    assert outcome.kind is OutcomeKind.PERMANENT
    assert isinstance(outcome.error, TransportError)
    assert "closed" in str(outcome.error)
    assert rec.requests == []


def test_exported_names() -> None:
    import gbtrack.gameball as public

    assert public.__all__ == [
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
    for name in public.__all__:
        assert getattr(public, name) is not None
    assert public.DEFAULT_BASE_URL == "https://api.gameball.co"
    assert public.MAX_BATCH_ITEMS == 1000
    assert public.DeliveryError is gbtrack.DeliveryError


# --- secrecy ----------------------------------------------------------------------------------
def test_repr_shows_address_and_mode_only() -> None:
    with GameballClient(
        API_KEY, secret_key=SECRET_KEY, secure=True, base_url="https://gb.test"
    ) as c:
        text = repr(c)
    assert text == "<GameballClient base_url='https://gb.test' mode='secure'>"
    assert API_KEY not in str(vars(c).get("_api_key"))


def test_keys_never_logged_nor_in_errors(caplog: pytest.LogCaptureFixture) -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        # A hostile or buggy server echoing every header back in its error message.
        leaked = " ".join(f"{k}={v}" for k, v in request.headers.items())
        return httpx.Response(
            401, json={"code": 1000, "type": leaked, "message": leaked, "requestId": leaked}
        )

    caplog.set_level(logging.DEBUG)
    with make(echo, secret_key=SECRET_KEY, secure=True) as client:
        outcomes = [
            client.send(batch(session_token=SecretStr(TOKEN), email="john@example.com")),
            client.create_batch([batch()]),
            client.batch_status("1"),
        ]
    with make(Recorder(httpx.ConnectError(f"refused {API_KEY}")), secret_key=SECRET_KEY) as client:
        outcomes.append(client.send(batch()))
    assert caplog.records, "the client logs each request at DEBUG"
    texts = [caplog.text]
    for outcome in outcomes:
        assert outcome.error is not None
        texts += [str(outcome.error), repr(outcome.error), repr(outcome)]
        texts += [str(outcome.error.type), str(outcome.error.request_id)]
    for text in texts:
        for secret in (API_KEY, SECRET_KEY, TOKEN, "john@example.com"):
            assert secret not in text


# --- real sockets on 127.0.0.1 ------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_connection_refused_is_retryable() -> None:
    with GameballClient(API_KEY, base_url=f"http://127.0.0.1:{_free_port()}") as client:
        outcome = client.send(batch())
    assert outcome.kind is OutcomeKind.RETRYABLE
    assert outcome.status is None
    assert isinstance(outcome.error, TransportError)


class _RawServer:
    """Accept one connection, read the request, then cut it or stay silent until released."""

    def __init__(self, *, silent: bool) -> None:
        self.silent = silent
        self.release = threading.Event()
        self.received = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.sock.settimeout(30)
        self.port: int = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:  # the test ended without connecting (timeout or closed socket)
            return
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            self.received.set()
            if self.silent:
                self.release.wait(30)

    def close(self) -> None:
        self.release.set()
        self.thread.join(30)
        self.sock.close()


@pytest.fixture
def raw_server(request: pytest.FixtureRequest) -> Iterator[_RawServer]:
    server = _RawServer(silent=request.param)
    try:
        yield server
    finally:
        server.close()


@pytest.mark.parametrize("raw_server", [False], indirect=True)
def test_cut_after_sending_is_ambiguous(raw_server: _RawServer) -> None:
    with GameballClient(API_KEY, base_url=f"http://127.0.0.1:{raw_server.port}") as client:
        outcome = client.send(batch())
    assert raw_server.received.is_set()
    assert outcome.kind is OutcomeKind.AMBIGUOUS
    assert isinstance(outcome.error, TransportError)


@pytest.mark.parametrize("raw_server", [True], indirect=True)
def test_read_timeout_is_ambiguous(raw_server: _RawServer) -> None:
    timeout = httpx.Timeout(30.0, read=0.3)
    with GameballClient(
        API_KEY, base_url=f"http://127.0.0.1:{raw_server.port}", timeout=timeout
    ) as client:
        outcome = client.send(batch())
    assert raw_server.received.is_set()
    assert outcome.kind is OutcomeKind.AMBIGUOUS
    assert "ReadTimeout" in str(outcome.error)


class _KeepAliveHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = -1  # one write per answer (no Nagle / delayed-ACK stalls between two)
    state: _ServerState

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.state.enter(self.client_address)
        try:
            if self.state.barrier is not None:
                # Hold each request until another one is in flight too (or give up).
                with contextlib.suppress(threading.BrokenBarrierError):
                    self.state.barrier.wait(10)
        finally:
            self.state.leave()
        body = b'{"success":true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ServerState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.peers: list[tuple[str, int]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.barrier: threading.Barrier | None = None

    def enter(self, peer: tuple[str, int]) -> None:
        with self.lock:
            self.peers.append(peer)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        with self.lock:
            self.in_flight -= 1


@pytest.fixture
def http_server() -> Iterator[tuple[int, _ServerState]]:
    """A real HTTP/1.1 keep-alive server on 127.0.0.1; yields its port and what it saw."""
    state = _ServerState()
    handler = type("H", (_KeepAliveHandler,), {"state": state})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(30)


def test_connections_are_kept_alive(http_server: tuple[int, _ServerState]) -> None:
    port, state = http_server
    with GameballClient(API_KEY, base_url=f"http://127.0.0.1:{port}") as client:
        outcomes = [client.send(batch(customer=f"c{i}")) for i in range(3)]
    assert all(o.delivered for o in outcomes)
    assert len(state.peers) == 3
    assert len(set(state.peers)) == 1  # one connection, reused


def test_max_connections_bounds_requests_in_flight(http_server: tuple[int, _ServerState]) -> None:
    port, state = http_server
    state.barrier = threading.Barrier(2)
    with (
        GameballClient(API_KEY, base_url=f"http://127.0.0.1:{port}", max_connections=2) as client,
        ThreadPoolExecutor(6) as pool,
    ):
        outcomes = list(pool.map(lambda i: client.send(batch(customer=f"c{i}")), range(12)))
    assert [o for o in outcomes if not o.delivered] == []
    assert state.max_in_flight == 2  # two at once (the barrier needs it), never more
    assert not state.barrier.broken
    assert len(set(state.peers)) <= 6  # at most one kept-alive connection per thread


def test_many_threads_one_client_no_spurious_failures(
    http_server: tuple[int, _ServerState],
) -> None:
    # Regression: httpcore's shared sync pool could close a connection that another
    # thread had just started using, turning delivered requests into ambiguous ReadErrors.
    port, _ = http_server
    with (
        GameballClient(API_KEY, base_url=f"http://127.0.0.1:{port}", max_connections=3) as client,
        ThreadPoolExecutor(6) as pool,
    ):
        outcomes = list(pool.map(lambda i: client.send(batch(customer=f"c{i}")), range(600)))
    assert [o for o in outcomes if not o.delivered] == []


def test_a_finished_threads_pool_is_closed(http_server: tuple[int, _ServerState]) -> None:
    port, _ = http_server
    with GameballClient(API_KEY, base_url=f"http://127.0.0.1:{port}") as client:
        transport = client._http._transport
        results: list[bool] = []
        worker = threading.Thread(target=lambda: results.append(client.send(batch()).delivered))
        worker.start()
        worker.join(30)
        del worker
        gc.collect()
        assert results == [True]
        # The thread's pool was finalised (closed) when its thread-local state went away.
        assert not any(f.alive for f in transport._finalizers)  # type: ignore[attr-defined]
        assert client.send(batch()).delivered  # this thread gets a pool of its own


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_opens_its_own_connection(http_server: tuple[int, _ServerState]) -> None:
    port, state = http_server
    with GameballClient(API_KEY, base_url=f"http://127.0.0.1:{port}") as client:
        assert client.send(batch(customer="parent")).delivered
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its exit code
            code = 1
            try:
                code = 0 if client.send(batch(customer="child")).delivered else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert client.send(batch(customer="parent")).delivered
    first, child, again = state.peers
    assert child != first  # the child did not write into the parent's socket
    assert again == first  # and the parent's connection is still good
