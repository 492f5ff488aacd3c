"""A FastAPI shop whose events carry the customer of each request, under uvicorn.

What it shows, all on 127.0.0.1 and in one process:

1. ``lifespan(...)`` configures the default tracker at start-up (here against a local
   :class:`~gbtrack.emulator.GameballEmulator`) and closes it at shutdown, bounded and
   in a worker thread, so queued events are delivered before the process ends;
2. ``GbtrackMiddleware`` binds the customer of the request's session (looked up on the
   server, never a customer id the client sends: any client could name another
   customer) for the whole request: the ``@track``-ed functions need no
   ``customer_id``, in async and sync endpoints and in background tasks alike;
3. ``identity_dependency`` does the same from a FastAPI dependency (a sync one here,
   reading a bearer token), for identities other dependencies know;
4. concurrent requests for different customers; the script prints what the emulator
   received and exits 1 if an event was lost, duplicated or sent for the wrong customer.

Run: ``python examples/fastapi_app.py`` (needs ``pip install gbtrack[fastapi]``).
"""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
from collections import Counter
from typing import Annotated

import httpx
import uvicorn
from fastapi import BackgroundTasks, Depends, FastAPI, Header, HTTPException

import gbtrack
from gbtrack import identify, track
from gbtrack.emulator import GameballEmulator
from gbtrack.integrations.asgi import GbtrackMiddleware, identity_dependency, lifespan

TOKENS = {"token-of-c-3": "c-3", "token-of-c-4": "c-4"}  # a stand-in for real auth
SESSIONS = {"session-of-c-1": "c-1", "session-of-c-2": "c-2"}  # the server's, set at login


@track("product_viewed", metadata={"sku": "sku"})
def view_product(sku: str) -> None:
    """No customer_id: the request's customer, bound by the middleware."""


@track("order_placed", metadata={"order_id": "result", "sku": "sku"})
def place_order(sku: str, n: int) -> str:
    return f"ord-{n}"


@track("receipt_emailed", metadata={"order_id": "order_id"})
def email_receipt(order_id: str) -> None:
    """Runs as a background task, after the response: still the same customer."""


def customer_from_token(authorization: Annotated[str, Header()]) -> str:
    """A sync FastAPI dependency (run in a worker thread): the customer of a bearer token."""
    customer = TOKENS.get(authorization.removeprefix("Bearer "))
    if customer is None:
        raise HTTPException(status_code=401)
    return customer


Customer = Annotated[identify | None, Depends(identity_dependency(customer_from_token))]


def build_app(gameball: GameballEmulator) -> FastAPI:
    app = FastAPI(lifespan=lifespan(api_key=gameball.api_key, base_url=gameball.url))

    @app.get("/products/{sku}")
    async def product(sku: str) -> dict[str, str]:
        await asyncio.sleep(0.001)  # other requests run meanwhile
        view_product(sku)
        return {"sku": sku}

    @app.post("/orders/{sku}")
    def order(sku: str, n: int, tasks: BackgroundTasks) -> dict[str, str]:  # sync: a thread
        order_id = place_order(sku, n)
        tasks.add_task(email_receipt, order_id)
        return {"order_id": order_id}

    @app.get("/me")
    async def me(customer: Customer) -> dict[str, str | None]:
        view_product("profile")
        return {"customer": customer.customer_id if customer else None}

    # The middleware reads the session; anonymous requests (no session) are not tracked.
    app.add_middleware(
        GbtrackMiddleware, identity=lambda c: SESSIONS.get(c.cookies.get("session", ""))
    )
    return app


async def shop(url: str) -> list[tuple[str, str]]:
    """Concurrent requests for several customers; returns the (customer, event) expected."""
    expected: list[tuple[str, str]] = []
    calls = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for n in range(20):
            customer = f"c-{n % 2 + 1}"
            headers = {"cookie": f"session=session-of-{customer}"}
            calls.append(client.get(f"/products/sku-{n}", headers=headers))
            calls.append(client.post(f"/orders/sku-{n}", params={"n": n}, headers=headers))
            expected += [(customer, "product_viewed"), (customer, "order_placed")]
            expected.append((customer, "receipt_emailed"))
        for token, customer in TOKENS.items():
            calls.append(client.get("/me", headers={"authorization": f"Bearer {token}"}))
            expected.append((customer, "product_viewed"))
        answers = await asyncio.gather(*calls)
    assert all(answer.status_code == 200 for answer in answers)
    return expected


def serve_and_shop(app: FastAPI) -> list[tuple[str, str]]:
    """Run ``app`` under uvicorn on a free loopback port, shop, and shut it down."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", ws="none", http="h11", loop="asyncio")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]})
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        return asyncio.run(shop(f"http://127.0.0.1:{sock.getsockname()[1]}"))
    finally:
        server.should_exit = True  # the lifespan shutdown closes the tracker
        thread.join()
        sock.close()


def main() -> int:
    with GameballEmulator() as gameball:
        expected = serve_and_shop(build_app(gameball))
        received = [(e.customer_id, e.name) for e in gameball.events]
    for (customer, name), count in sorted(Counter(received).items()):
        print(f"{customer:5} {name:16} x{count}")
    stats = gbtrack.get_tracker().stats
    print(
        f"{len(received)} events received; tracker.stats: sent={stats.sent} "
        f"delivered={stats.delivered} dropped={dict(stats.dropped)}"
    )
    if Counter(received) != Counter(expected):
        print("LOST, DUPLICATED OR MISATTRIBUTED events")
        return 1
    print("every event arrived once, for the customer of its request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
