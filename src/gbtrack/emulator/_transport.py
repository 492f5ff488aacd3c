"""In-process httpx transports that drive an emulator without sockets.

They run the same request path as the HTTP server (auth, limits, validation, faults,
records), so ``httpx.Client(transport=emulator.transport())`` behaves like the real
server minus the network: handy for fast unit tests. Faults map to the exceptions
httpx raises over real sockets: a dropped connection raises
``httpx.RemoteProtocolError`` (``"before_body"``, ``"after_body"``,
``"after_processing"``, the last after processing the request) or
``httpx.ReadError`` (``"reset"``); latency longer than the request's read timeout
raises ``httpx.ReadTimeout`` after the request was processed (the ambiguous case).
"""

from __future__ import annotations

import asyncio
import time

import httpx

from gbtrack.emulator._control import serve_control
from gbtrack.emulator._state import CONTROL, EmulatorState, Incoming, Response

__all__ = ["AsyncEmulatorTransport", "EmulatorTransport"]

_DISCONNECTED = "Server disconnected without sending a response."
_RESET = "[Errno 104] Connection reset by peer"


class _Core:
    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    def begin(self, request: httpx.Request) -> Incoming:
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in request.headers.raw
        }
        target = request.url.raw_path.decode("ascii")
        return self.state.begin(request.method, target, headers)

    def drop_before_body(self, incoming: Incoming, request: httpx.Request) -> None:
        if incoming.drop == "before_body":
            self.state.complete(incoming, 0, None)
            raise httpx.RemoteProtocolError(_DISCONNECTED, request=request)

    def answer(self, incoming: Incoming, request: httpx.Request, body: bytes) -> Response:
        drop = incoming.drop
        if drop == "after_processing":
            self.state.handle(incoming, body)  # processed and recorded; the answer is lost
            raise httpx.RemoteProtocolError(_DISCONNECTED, request=request)
        if drop is not None:
            self.state.complete(incoming, 0, None)
            if drop == "reset":
                raise httpx.ReadError(_RESET, request=request)
            raise httpx.RemoteProtocolError(_DISCONNECTED, request=request)
        if incoming.endpoint == CONTROL:
            return serve_control(self.state, incoming, body, trusted=True)
        return self.state.handle(incoming, body)

    @staticmethod
    def wait(incoming: Incoming, request: httpx.Request) -> tuple[float, bool]:
        """Return how long to wait, and whether the read times out meanwhile."""
        read_timeout = request.extensions.get("timeout", {}).get("read")
        if read_timeout is not None and incoming.latency > read_timeout:
            return float(read_timeout), True
        return incoming.latency, False

    @staticmethod
    def response(incoming: Incoming, response: Response) -> httpx.Response:
        headers = [
            ("Content-Type", response.content_type),
            ("X-Request-Id", incoming.request_id),
            *response.headers,
        ]
        return httpx.Response(response.status, headers=headers, content=response.body)


class EmulatorTransport(httpx.BaseTransport):
    """A sync httpx transport answering from an emulator in this process.

    Made by :meth:`GameballEmulator.transport() <gbtrack.emulator.GameballEmulator.transport>`.

    Args:
        state: The emulator's state (the emulator need not be started).

    Example::

        with httpx.Client(transport=emulator.transport(), base_url="http://gameball") as http:
            http.post("/api/v4.0/integrations/events", json=..., headers=...)
    """

    def __init__(self, state: EmulatorState) -> None:
        self._core = _Core(state)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Answer one request as the emulator's HTTP server would."""
        core = self._core
        incoming = core.begin(request)
        core.drop_before_body(incoming, request)
        response = core.answer(incoming, request, request.read())
        if incoming.latency:
            seconds, timed_out = core.wait(incoming, request)
            time.sleep(seconds)
            if timed_out:
                raise httpx.ReadTimeout("timed out", request=request)
        return core.response(incoming, response)


class AsyncEmulatorTransport(httpx.AsyncBaseTransport):
    """An async httpx transport answering from an emulator in this process.

    Requests are processed on the event loop (a batch of 1,000 items takes a few
    milliseconds); latency is an ``asyncio.sleep``.

    Made by :meth:`GameballEmulator.async_transport()
    <gbtrack.emulator.GameballEmulator.async_transport>`.

    Args:
        state: The emulator's state (the emulator need not be started).
    """

    def __init__(self, state: EmulatorState) -> None:
        self._core = _Core(state)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Answer one request as the emulator's HTTP server would."""
        core = self._core
        incoming = core.begin(request)
        core.drop_before_body(incoming, request)
        response = core.answer(incoming, request, await request.aread())
        if incoming.latency:
            seconds, timed_out = core.wait(incoming, request)
            await asyncio.sleep(seconds)
            if timed_out:
                raise httpx.ReadTimeout("timed out", request=request)
        return core.response(incoming, response)
