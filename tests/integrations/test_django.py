"""The Django integration in-process: middleware (sync and async), settings, lifespan."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import pytest

import gbtrack
from gbtrack import InMemorySender, Tracker

django = pytest.importorskip("django")
from tests.integrations._django_settings import configure_django  # noqa: E402

configure_django()

from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.test import RequestFactory, override_settings  # noqa: E402

from gbtrack.integrations.django import (  # noqa: E402
    GBTrackConfig,
    GBTrackMiddleware,
    configure_from_settings,
    request_user_identity,
    with_lifespan,
)


@dataclass
class User:
    pk: Any
    email: str = ""
    is_authenticated: bool = True


def _view(request: Any) -> HttpResponse:
    return HttpResponse(gbtrack.current_identity().customer_id or "-")


async def _aview(request: Any) -> HttpResponse:
    await asyncio.sleep(0)
    return HttpResponse(gbtrack.current_identity().customer_id or "-")


def _request(user: Any = None) -> Any:
    request = RequestFactory().get("/")
    if user is not None:
        request.user = user

        async def auser() -> Any:
            return user

        request.auser = auser
    return request


def test_sync_middleware_identifies_from_request_user() -> None:
    middleware = GBTrackMiddleware(_view)
    assert not middleware.is_async
    assert middleware(_request(User(42, "a@example.com"))).content == b"42"
    assert middleware(_request(User(42, is_authenticated=False))).content == b"-"
    assert middleware(_request()).content == b"-"
    assert gbtrack.current_identity().customer_id is None


async def test_async_middleware_isolates_concurrent_requests() -> None:
    middleware = GBTrackMiddleware(_aview)
    assert middleware.is_async
    responses = await asyncio.gather(*(middleware(_request(User(f"c-{n}"))) for n in range(20)))
    assert [r.content.decode() for r in responses] == [f"c-{n}" for n in range(20)]


async def test_async_middleware_runs_a_sync_identity_function_off_the_loop() -> None:
    middleware = GBTrackMiddleware(_aview, identity=lambda request: request.GET.get("c"))
    request = RequestFactory().get("/?c=c-9")
    assert (await middleware(request)).content == b"c-9"


def test_identity_from_settings_and_failures_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    with override_settings(GBTRACK={"IDENTITY": f"{__name__}.from_query"}):
        middleware = GBTrackMiddleware(_view)
    assert middleware(RequestFactory().get("/?c=c-3")).content == b"c-3"
    with caplog.at_level(logging.WARNING, logger="gbtrack"):
        assert middleware(RequestFactory().get("/?c=boom")).content == b"-"
    assert "raised RuntimeError" in caplog.text
    with (
        override_settings(GBTRACK={"IDENTITY": "no.such.module"}),
        pytest.raises(ImproperlyConfigured, match="IDENTITY"),
    ):
        GBTrackMiddleware(_view)


def from_query(request: Any) -> str | None:
    customer: str | None = request.GET.get("c")
    if customer == "boom":
        raise RuntimeError("boom")
    return customer


def test_request_user_identity() -> None:
    assert request_user_identity(_request(User(5, "e@example.com"))) == {
        "customer_id": 5,
        "email": "e@example.com",
    }
    assert request_user_identity(_request(User(None))) is None
    assert request_user_identity(_request()) is None


def test_settings_configure_the_tracker() -> None:
    tracker = Tracker(InMemorySender())
    with override_settings(
        GBTRACK={"API_KEY": "k", "BASE_URL": "http://127.0.0.1:9", "WORKERS": 2, "identity": "x"}
    ):
        assert configure_from_settings(tracker) is tracker
    try:
        assert tracker.sender.rate_limiter.limits == ((50, 1.0), (600, 30.0))
    finally:
        tracker.close(timeout=1)
    with override_settings(GBTRACK={"IDENTITY": "x"}):
        assert configure_from_settings(tracker) is None
    with override_settings(GBTRACK={"API_KEYS": "k"}), pytest.raises(ImproperlyConfigured):
        configure_from_settings(tracker)
    with override_settings(GBTRACK=["api_key"]), pytest.raises(ImproperlyConfigured):
        configure_from_settings(tracker)
    assert GBTrackConfig.label == "gbtrack"


async def test_with_lifespan_closes_the_tracker_at_shutdown() -> None:
    sender = InMemorySender()
    tracker = Tracker(sender)
    calls: list[str] = []

    async def django_app(scope: Any, receive: Any, send: Any) -> None:
        calls.append(scope["type"])

    app = with_lifespan(django_app, tracker=tracker)
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: Any) -> None:
        sent.append(message)

    await app({"type": "lifespan"}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    tracker.emit("after_close", customer_id="c-1")
    assert tracker.stats.dropped == {"closed": 1}  # the sender was closed at shutdown
    assert sender.events == []
    await app({"type": "http"}, receive, send)
    assert calls == ["http"]
