"""gbtrack.integrations.asgi in process: errors, the lifespan's composition.

What an identity function may return is tested for every integration at once, in
test_identity_values.py.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

import gbtrack
from gbtrack import InMemorySender, Tracker
from gbtrack.integrations.asgi import GbtrackMiddleware, identity_dependency, lifespan


async def whoami(request: Request) -> JSONResponse:
    identity = gbtrack.current_identity()
    return JSONResponse(
        {
            "customer": identity.customer_id,
            "email": identity.email,
            "token": identity.session_token is not None,
        }
    )


def starlette_app(identity: Any, tracker: Tracker | None = None) -> Any:
    app = Starlette(routes=[Route("/", whoami)])
    return GbtrackMiddleware(app, identity=identity, tracker=tracker)


async def get(app: Any, path: str = "/", **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        return await c.get(path, headers=headers)


async def test_async_identity_function_reads_headers_and_state() -> None:
    async def from_header(connection: Any) -> str:
        return connection.headers["x-user"]

    answer = await get(starlette_app(from_header), **{"x-user": "u-9"})
    assert answer.json()["customer"] == "u-9"


@pytest.mark.parametrize("returned", [True, 1.5, ["c-1"], object()])
async def test_a_bad_identity_runs_the_request_anonymously(
    returned: object, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="gbtrack"):
        answer = await get(starlette_app(lambda connection: returned))
    assert answer.status_code == 200
    assert answer.json()["customer"] is None
    assert "runs without an identity" in caplog.text


async def test_a_raising_identity_function_never_breaks_the_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(connection: Any) -> str:
        return connection.state.user  # no such state: AttributeError

    with caplog.at_level(logging.WARNING, logger="gbtrack"):
        answer = await get(starlette_app(broken))
    assert answer.json()["customer"] is None
    assert "broken raised AttributeError" in caplog.text


async def test_strict_raises_the_identity_error() -> None:
    tracker = Tracker(InMemorySender(), strict=True)
    with pytest.raises(gbtrack.TrackingError, match="raised ZeroDivisionError"):
        await get(starlette_app(lambda connection: 1 / 0, tracker))


async def test_lifespan_and_other_scopes_pass_through() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    middleware = GbtrackMiddleware(app, identity=lambda connection: 1 / 0)
    await middleware({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan"]


def test_identity_must_be_callable() -> None:
    with pytest.raises(TypeError):
        GbtrackMiddleware(lambda *a: None, identity="c-1")  # type: ignore[arg-type,arg-type]


async def test_dependency_with_a_bad_value_runs_anonymously(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = FastAPI()

    @app.get("/", dependencies=[Depends(identity_dependency(lambda: 3.5))])
    async def endpoint() -> dict[str, Any]:
        return {"customer": gbtrack.current_identity().customer_id}

    with caplog.at_level(logging.WARNING, logger="gbtrack"):
        answer = await get(app)
    assert answer.json() == {"customer": None}
    assert "identity dependency" in caplog.text


async def test_dependency_resets_the_identity_when_the_endpoint_raises() -> None:
    app = FastAPI()

    async def user() -> str:
        return "c-7"

    @app.get("/", dependencies=[Depends(identity_dependency(user))])
    async def endpoint() -> None:
        assert gbtrack.current_identity().customer_id == "c-7"
        raise RuntimeError("business failure")

    with pytest.raises(RuntimeError, match="business failure"):
        await get(app)
    assert gbtrack.current_identity().customer_id is None


async def test_lifespan_configures_runs_the_apps_own_and_closes() -> None:
    tracker = Tracker(InMemorySender())
    events: list[str] = []

    @asynccontextmanager
    async def own(app: Any) -> AsyncIterator[dict[str, str]]:
        events.append("start")
        yield {"db": "connected"}
        events.append("stop")

    app = Starlette()
    async with lifespan(own, tracker=tracker, sample={"x": 0.5}, close_timeout=1)(app) as state:
        assert state == {"db": "connected"}
        assert tracker.sample == {"x": 0.5}
        assert not tracker.sender.closed
    assert events == ["start", "stop"]
    assert tracker.sender.closed


async def test_lifespan_warns_when_events_are_left_at_shutdown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Stuck(InMemorySender):
        def close(self, timeout: float | None = None) -> bool:
            super().close(timeout)
            return False

    tracker = Tracker(Stuck())
    with caplog.at_level(logging.WARNING, logger="gbtrack"):
        async with lifespan(tracker=tracker)(Starlette()) as state:
            assert state is None
    assert "not every event was settled" in caplog.text


async def test_debug_logs_the_customer_of_each_request(caplog: pytest.LogCaptureFixture) -> None:
    tracker = Tracker(InMemorySender(), debug=True)
    try:
        with caplog.at_level(logging.INFO, logger="gbtrack"):
            await get(
                starlette_app(lambda c: c.headers.get("x-user"), tracker),
                "/?token=secret",
                **{"x-user": "u-1"},
            )
            await get(starlette_app(lambda c: None, tracker))
    finally:
        tracker.debug = False
    lines = [r.getMessage() for r in caplog.records if "runs as" in r.getMessage()]
    assert lines == [
        "gbtrack: GET / runs as customer 'u-1'",
        "gbtrack: GET / runs as customer None",
    ]


async def test_a_websocket_session_runs_inside_the_identity() -> None:
    seen: list[str | None] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(gbtrack.current_identity().customer_id)

    middleware = GbtrackMiddleware(app, identity=lambda c: c.query_params.get("user"))
    scope = {"type": "websocket", "path": "/ws", "query_string": b"user=u-3", "headers": []}
    await middleware(scope, None, None)  # type: ignore[arg-type]
    assert seen == ["u-3"]
    assert gbtrack.current_identity().customer_id is None
