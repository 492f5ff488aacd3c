"""Stopping the emulator: nothing is processed once ``stop()`` began, or after it returned.

Found by the orders end-to-end test (tests/senders/test_orders_e2e.py), which takes
Gameball down mid-run: a request already in a connection's buffer was processed by its
handler thread (a daemon, which ``server_close()`` does not join) after ``stop()`` had
returned, and its answer lost: an order or event recorded by a server that was down.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

from tests.emulator.conftest import API_KEY, V40

from gbtrack.emulator import GameballEmulator


def raw_request(customer: str) -> bytes:
    """One keep-alive HTTP/1.1 POST of one event, as bytes."""
    body = json.dumps({"customerId": customer, "events": {"e": {}}}).encode()
    head = (
        f"POST {V40} HTTP/1.1\r\nHost: 127.0.0.1\r\nAPIKey: {API_KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def read_answer(conn: socket.socket) -> bytes:
    """The bytes until the end of one answer's head (or until the server closes)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_a_request_read_once_stop_began_is_not_processed() -> None:
    emulator = GameballEmulator(api_key=API_KEY).start()
    try:
        with socket.create_connection((emulator.host, emulator.port), timeout=5) as conn:
            conn.sendall(raw_request("before"))
            assert read_answer(conn).startswith(b"HTTP/1.1 200")
            # The server is stopping; this connection's handler has not read the next
            # request yet (as a handler starved of CPU when stop() is called).
            assert emulator._server is not None
            emulator._server.stopping.set()
            conn.sendall(raw_request("during"))
            assert read_answer(conn) == b""  # closed, no answer
    finally:
        emulator.stop()
    assert [event.customer_id for event in emulator.events] == ["before"]


def test_stop_returns_once_every_handler_is_done() -> None:
    emulator = GameballEmulator(api_key=API_KEY).start()
    state: Any = emulator._state
    handle = state.handle
    entered, release = threading.Event(), threading.Event()

    def slow_handle(incoming: Any, body: bytes) -> Any:
        entered.set()
        release.wait(5)  # a handler still processing when stop() is called
        return handle(incoming, body)

    state.handle = slow_handle

    def client() -> None:
        with socket.create_connection((emulator.host, emulator.port), timeout=5) as conn:
            conn.sendall(raw_request("slow"))
            read_answer(conn)

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    try:
        assert entered.wait(5)
        threading.Timer(0.3, release.set).start()
        began = time.monotonic()
        emulator.stop()
        # The handler was waited for: what it recorded is there when stop() returns.
        assert time.monotonic() - began >= 0.25
        assert emulator.event_count == 1
    finally:
        release.set()
        emulator.stop()
        thread.join(5)
