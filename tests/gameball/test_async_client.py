"""AsyncGameballClient: the same requests and outcomes as the sync client, awaited."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

import gbtrack
from gbtrack import ConfigurationError, Event, ServerError, TransportError
from gbtrack.gameball import (
    AsyncGameballClient,
    EventBatch,
    GameballClient,
    OutcomeKind,
    coalesce,
)

API_KEY = "api-KEY-async-1"
SECRET_KEY = "sec-KEY-async-2"
TOKEN = "session.TOKEN.async"


class AsyncRecorder:
    """An async MockTransport handler: records requests, answers from a script."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        await asyncio.sleep(0)  # yield, as a real transport would
        answer = self.answers.pop(0) if self.answers else httpx.Response(200)
        if isinstance(answer, Exception):
            raise answer
        return answer


def make(recorder: AsyncRecorder, **options: Any) -> AsyncGameballClient:
    options.setdefault("base_url", "https://gb.test")
    return AsyncGameballClient(API_KEY, transport=httpx.MockTransport(recorder), **options)


def batch(name: str = "purchase", customer: str = "c1", **kw: Any) -> EventBatch:
    return EventBatch.from_event(Event(name=name, customer_id=customer, **kw))


async def test_send_headers_and_body() -> None:
    rec = AsyncRecorder()
    async with make(rec, secret_key=SECRET_KEY, lang="en") as client:
        b = batch(metadata={"amount": 3})
        outcome = await client.send(b)
    assert outcome.delivered
    assert outcome.body is None  # an empty 200 is fine
    request = rec.requests[0]
    assert request.url.path == "/api/v4.1/integrations/events"  # a secret key: v4.1
    assert request.headers["APIKey"] == API_KEY
    assert request.headers["SecretKey"] == SECRET_KEY
    assert request.headers["lang"] == "en"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["x-gb-agent"] == f"gbtrack/{gbtrack.__version__}"
    assert request.content == json.dumps(b.body(), separators=(",", ":")).encode()


async def test_secure_mode_and_session_token_routing() -> None:
    rec = AsyncRecorder()
    async with make(rec, secret_key=SECRET_KEY, secure=True) as client:
        await client.send(batch())
    async with make(rec) as client:
        await client.send(batch(session_token=SecretStr(TOKEN)))
        await client.send(batch())
    secure, token, plain = rec.requests
    assert secure.url.path == "/api/v4.1/integrations/events"
    assert "X-GB-TOKEN" not in secure.headers
    assert token.url.path == "/api/v4.1/integrations/events"
    assert token.headers["X-GB-TOKEN"] == TOKEN
    assert plain.url.path == "/api/v4.0/integrations/events"


def test_secure_mode_requires_secret_key() -> None:
    with pytest.raises(ConfigurationError):
        AsyncGameballClient(API_KEY, secure=True)


async def test_version_follows_the_secret_key_unless_overridden() -> None:
    rec = AsyncRecorder()
    async with make(rec, secret_key=SECRET_KEY, secure=False) as client:
        assert not client.secure
        await client.send(batch())
    async with make(rec) as client:
        assert not client.secure
        await client.send(batch())
    forced, plain = rec.requests
    assert forced.url.path == "/api/v4.0/integrations/events"
    assert plain.url.path == "/api/v4.0/integrations/events"


async def test_batch_endpoints() -> None:
    rec = AsyncRecorder(
        httpx.Response(200, json={"jobId": 7}),
        httpx.Response(200, json={"batchId": "7", "status": "processing", "progress": 50}),
        httpx.Response(200, json={"batchId": "7", "status": "stopped", "message": "ok"}),
    )
    async with make(rec, secret_key=SECRET_KEY) as client:
        created = await client.create_batch([batch(customer="c1"), batch(customer="c2")])
        assert created.job_id == "7"
        status = await client.batch_status(created.job_id)
        stopped = await client.stop_batch("7")
        with pytest.raises(ValueError, match="at most"):
            await client.create_batch([batch()] * 1001)
    assert [(r.method, r.url.path) for r in rec.requests] == [
        ("POST", "/api/v4.0/integrations/batch/events"),
        ("GET", "/api/v4.0/integrations/batches/7/status"),
        ("POST", "/api/v4.0/integrations/batches/7/stop"),
    ]
    assert status.batch_status is not None
    assert not status.batch_status.done
    assert status.batch_status.progress == 50.0
    assert stopped.delivered


async def test_batch_endpoints_need_a_secret_key() -> None:
    async with make(AsyncRecorder()) as client:
        with pytest.raises(ConfigurationError):
            await client.create_batch([batch()])
        with pytest.raises(ConfigurationError):
            await client.batch_status("1")


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (httpx.Response(503, json={"code": 5003, "message": "unavailable"}), OutcomeKind.RETRYABLE),
        (httpx.Response(502, text="<html>bad gateway</html>"), OutcomeKind.AMBIGUOUS),
        (httpx.Response(400, json={"code": 3016}), OutcomeKind.PERMANENT),
        (httpx.ConnectTimeout("connect"), OutcomeKind.RETRYABLE),
        (httpx.WriteTimeout("write"), OutcomeKind.AMBIGUOUS),
        (httpx.ReadError("reset"), OutcomeKind.AMBIGUOUS),
    ],
)
async def test_outcomes(answer: httpx.Response | Exception, kind: OutcomeKind) -> None:
    async with make(AsyncRecorder(answer)) as client:
        outcome = await client.send(batch())
    assert outcome.kind is kind
    assert outcome.error is not None


async def test_server_error_fields() -> None:
    rec = AsyncRecorder(
        httpx.Response(500, json={"code": 5000, "type": "SERVER_ERROR", "requestId": "r-9"})
    )
    async with make(rec) as client:
        outcome = await client.send(batch())
    assert isinstance(outcome.error, ServerError)
    assert (outcome.error.status, outcome.error.code, outcome.error.request_id) == (
        500,
        5000,
        "r-9",
    )


async def test_concurrent_sends() -> None:
    rec = AsyncRecorder()
    events = [Event(name="e", customer_id=f"c{i}") for i in range(25)]
    async with make(rec) as client:
        outcomes = await asyncio.gather(*(client.send(b) for b in coalesce(events)))
    assert all(o.delivered for o in outcomes)
    assert sorted(json.loads(r.content)["customerId"] for r in rec.requests) == sorted(
        f"c{i}" for i in range(25)
    )


async def test_close_is_idempotent_and_final() -> None:
    rec = AsyncRecorder()
    client = make(rec)
    await client.aclose()
    await client.close()
    assert client.closed
    outcome = await client.send(batch())
    assert outcome.kind is OutcomeKind.PERMANENT
    assert isinstance(outcome.error, TransportError)
    assert rec.requests == []


async def test_repr_hides_keys() -> None:
    async with make(AsyncRecorder(), secret_key=SECRET_KEY) as client:
        text = repr(client)
    # A secret key means v4.1 ("secure") by default.
    assert text == "<AsyncGameballClient base_url='https://gb.test' mode='secure'>"


def _sync_requests(**options: Any) -> list[httpx.Request]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"jobId": 1})

    with GameballClient(
        API_KEY, base_url="https://gb.test", transport=httpx.MockTransport(handler), **options
    ) as client:
        client.send(batch(session_token=SecretStr(TOKEN)))
        client.create_batch([batch()])
        client.batch_status("1")
        client.stop_batch("1")
    return seen


async def test_same_requests_as_the_sync_client() -> None:
    rec = AsyncRecorder(*[httpx.Response(200, json={"jobId": 1}) for _ in range(4)])
    async with make(rec, secret_key=SECRET_KEY, lang="fr") as client:
        await client.send(batch(session_token=SecretStr(TOKEN)))
        await client.create_batch([batch()])
        await client.batch_status("1")
        await client.stop_batch("1")
    sync = _sync_requests(secret_key=SECRET_KEY, lang="fr")

    def shape(r: httpx.Request) -> tuple[Any, ...]:
        return (r.method, str(r.url), r.content, sorted(r.headers.items()))

    assert [shape(r) for r in rec.requests] == [shape(r) for r in sync]


async def test_connection_refused_on_loopback_is_retryable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with AsyncGameballClient(API_KEY, base_url=f"http://127.0.0.1:{port}") as client:
        outcome = await client.send(batch())
    assert outcome.kind is OutcomeKind.RETRYABLE
    assert isinstance(outcome.error, TransportError)
