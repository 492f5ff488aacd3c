from __future__ import annotations

import json
import os
import threading

import pytest
from tests.senders import ScriptedClient, child_report, event

from gbtrack.senders import BackgroundSender, RetryPolicy

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    # Python 3.12+ warns about fork() in a process with threads; forking is the point.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


def _run_child(sender: BackgroundSender, client: ScriptedClient, write_fd: int) -> None:
    """In the child: report the inherited state, send one event, report what was sent."""
    code = 1
    try:
        # The parent's threads do not exist here: the double's gate and lock are the
        # parent's; give the child its own.
        client.gate = None
        client.lock = threading.Lock()
        client.sent = []
        inherited = sender.stats()
        mine = event("child_event", "child-customer")
        sender.send(mine)
        ok = sender.flush(10)
        report = {
            "in_queue": inherited.in_queue,
            "in_flight": inherited.in_flight,
            "ok": ok,
            "sent": [e.event_id for e in client.delivered_events],
            "mine": mine.event_id,
            "worker": sender._worker is not None and sender._worker.is_alive(),
        }
        sender.close(5)
        os.write(write_fd, json.dumps(report).encode())
        code = 0
    finally:
        os._exit(code)


def test_child_starts_empty_and_never_resends_the_parents_queue() -> None:
    gate = threading.Event()
    client = ScriptedClient(gate=gate)
    sender = BackgroundSender(client, concurrency=1, retry=RetryPolicy(base_delay=0.001))
    try:
        parent_events = [event("e", f"p-{i}") for i in range(5)]
        for e in parent_events:
            sender.send(e)
        assert client.started.wait(10)  # one request held at the gate, the rest waiting
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            os.close(read_fd)
            _run_child(sender, client, write_fd)
        report = child_report(pid, read_fd, write_fd)
        assert report["in_queue"] == 0
        assert report["in_flight"] == 0
        assert report["ok"] is True
        assert report["sent"] == [report["mine"]]  # only its own event, none of the parent's
        assert report["worker"] is True  # a fresh worker was started in the child
        # The parent is unaffected: it still delivers its own events, once each.
        gate.set()
        assert sender.flush(10)
        delivered = [e.event_id for e in client.delivered_events]
        assert sorted(delivered) == sorted(e.event_id for e in parent_events)
    finally:
        gate.set()
        sender.close(10)


def test_forked_child_delivers_with_its_own_client_over_http() -> None:
    from gbtrack import Event
    from gbtrack.emulator import GameballEmulator

    with GameballEmulator() as emulator:
        sender = BackgroundSender(
            api_key=emulator.api_key, base_url=emulator.url, flush_interval=60
        )
        try:
            parent_client = sender.client
            # Queued, not yet sent, when the process forks.
            for i in range(5):
                sender.send(Event(name="parent", customer_id=f"p-{i}"))
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child
                code = 1
                try:
                    fresh = sender.client is not parent_client
                    sender.send(Event(name="child", customer_id="kid"))
                    ok = sender.close(10)
                    code = 0 if (ok and fresh) else 2
                finally:
                    os._exit(code)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
            assert sender.flush(10)
            names = sorted(e.name for e in emulator.events)
            # The parent's five once (not re-sent by the child), the child's one.
            assert names == ["child"] + ["parent"] * 5
        finally:
            sender.close(10)
