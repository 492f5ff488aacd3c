"""gbtrack.integrations.asgi against FastAPI under a real uvicorn server and the emulator.

Concurrent requests for different customers: every event reaches the emulator once,
for the customer of its own request, whether the identity comes from the middleware
or from a dependency (sync or async), and whether the endpoint is async or sync.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Iterator
from typing import Annotated

import httpx
import pytest
from fastapi import BackgroundTasks, Depends, FastAPI, Header, Request
from tests.integrations._uvicorn import serve

import gbtrack
from gbtrack import Identity, identify, track
from gbtrack.emulator import GameballEmulator
from gbtrack.integrations.asgi import GbtrackMiddleware, identity_dependency, lifespan

CUSTOMERS = [f"cust-{i}" for i in range(12)]
PER_ROUTE = 40  # requests per route, spread over the customers


@track("page_viewed", metadata={"n": "n", "route": "route"})
def viewed(n: int, route: str) -> None:
    """No customer_id: the ambient identity of the request."""


async def pause() -> None:
    await asyncio.sleep(random.random() * 0.01)  # let other requests interleave


def header_customer(connection: object) -> str | None:
    return connection.headers.get("x-customer")  # type: ignore[attr-defined,no-any-return]


def sync_from_header(x_customer: str = Header()) -> Identity:
    # A sync dependency: FastAPI runs it in a worker thread.
    return Identity(customer_id=x_customer, email=f"{x_customer}@example.com")


async def async_from_header(request: Request) -> str:
    await pause()
    return request.headers["x-customer"]


AsyncIdentity = Annotated[identify | None, Depends(identity_dependency(async_from_header))]


def build_app(gameball: GameballEmulator) -> FastAPI:
    app = FastAPI(
        lifespan=lifespan(api_key=gameball.api_key, base_url=gameball.url, flush_interval=0.05)
    )

    @app.get("/mw/async")
    async def mw_async(n: int) -> dict[str, str | None]:
        await pause()
        viewed(n, "mw/async")
        return {"customer": gbtrack.current_identity().customer_id}

    @app.get("/mw/sync")
    def mw_sync(n: int) -> dict[str, str | None]:
        viewed(n, "mw/sync")
        return {"customer": gbtrack.current_identity().customer_id}

    @app.get("/mw/background")
    async def mw_background(n: int, tasks: BackgroundTasks) -> dict[str, str | None]:
        tasks.add_task(viewed, n, "mw/background")  # runs after the response is sent
        return {"customer": gbtrack.current_identity().customer_id}

    # Routes under /dep bind the identity from a dependency; the middleware's header is
    # deliberately a different customer there, and the dependency wins (it is nested).
    @app.get("/dep/sync", dependencies=[Depends(identity_dependency(sync_from_header))])
    def dep_sync(n: int) -> dict[str, str | None]:
        viewed(n, "dep/sync")
        return {"customer": gbtrack.current_identity().customer_id}

    @app.get("/dep/async")
    async def dep_async(n: int, block: AsyncIdentity) -> dict[str, str | None]:
        await pause()
        viewed(n, "dep/async")
        assert block is not None
        return {"customer": block.customer_id}

    @app.get("/anonymous")
    async def anonymous(n: int) -> dict[str, str | None]:
        viewed(n, "anonymous")  # no identity: dropped as no_customer_id
        return {"customer": gbtrack.current_identity().customer_id}

    def middleware_identity(connection: object) -> str | None:
        if connection.url.path.startswith("/dep"):  # type: ignore[attr-defined]
            return "someone-else"
        return header_customer(connection)

    app.add_middleware(GbtrackMiddleware, identity=middleware_identity)
    return app


@pytest.fixture
def gameball() -> Iterator[GameballEmulator]:
    with GameballEmulator(rate_limits=None) as emulator:
        yield emulator


ROUTES = ["mw/async", "mw/sync", "mw/background", "dep/sync", "dep/async"]


async def _hammer(url: str) -> dict[int, tuple[str, str]]:
    """Fire every request at once; return n -> (route, customer)."""
    expected: dict[int, tuple[str, str]] = {}
    jobs = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        n = 0
        for route in ROUTES:
            for _ in range(PER_ROUTE):
                customer = random.choice(CUSTOMERS)
                expected[n] = (route, customer)
                jobs.append(
                    client.get(f"/{route}", params={"n": n}, headers={"x-customer": customer})
                )
                n += 1
        answers = await asyncio.gather(*jobs)
        anonymous = await client.get("/anonymous", params={"n": -1})
    for (route, customer), answer in zip(expected.values(), answers, strict=True):
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"customer": customer}, route
    assert anonymous.json() == {"customer": None}
    return expected


def test_identity_per_request_under_concurrency(gameball: GameballEmulator) -> None:
    tracker = gbtrack.get_tracker()
    before = tracker.stats.dropped.get("no_customer_id", 0)  # the default tracker's counts add up
    with serve(build_app(gameball)) as url:
        expected = asyncio.run(_hammer(url))
    # The lifespan closed the tracker at shutdown: everything is settled by now.
    assert tracker.sender.closed
    received = gameball.events
    counts = Counter(int(e.metadata["n"]) for e in received)
    assert len(received) == len(expected), "lost or duplicated events"
    assert set(counts) == set(expected)
    assert max(counts.values()) == 1, "duplicated events"
    for event in received:
        route, customer = expected[int(event.metadata["n"])]
        assert (event.name, event.metadata["route"], event.customer_id) == (
            "page_viewed",
            route,
            customer,
        )
        if route == "dep/sync":
            assert event.email == f"{customer}@example.com"
    stats = tracker.stats
    assert stats.delivered == len(expected)  # the sender the lifespan configured
    assert stats.dropped["no_customer_id"] == before + 1  # the anonymous request
    assert gameball.internal_errors == []
