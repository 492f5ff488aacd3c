"""The tracker's gate into a BackgroundSender: an append to the tracker's own inlet.

What the gate no longer does on the caller's thread (count, check the capacity, wake the
worker) still happens: the worker counts what it gathers, a full batch and the first
draft wake it, the capacity holds while the worker is stalled, and a forked child starts
afresh.
"""

from __future__ import annotations

import json
import os
import threading
import time

import pytest
from tests.senders import ScriptedClient, child_report

from gbtrack import Event, Tracker
from gbtrack.senders import BackgroundSender


def _wait_for(condition, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def test_a_full_batch_goes_long_before_the_interval() -> None:
    client = ScriptedClient()
    sender = BackgroundSender(client, max_batch_size=50, flush_interval=60, bulk=False)
    tracker = Tracker(sender)
    try:
        for i in range(50):
            tracker.emit("e", customer_id=f"c-{i}")
        # No flush: the 50th draft wakes the worker (the interval is a minute away).
        assert _wait_for(lambda: len(client.sent) == 50)
        assert tracker.stats.sent == 50
    finally:
        sender.close(5)


def test_the_first_draft_wakes_an_idle_worker_and_arms_its_timer() -> None:
    client = ScriptedClient()
    sender = BackgroundSender(client, flush_interval=0.05, bulk=False)
    tracker = Tracker(sender)
    try:
        tracker.emit("first", customer_id="c-1")
        assert _wait_for(lambda: len(client.sent) == 1)
        time.sleep(0.2)  # idle: the worker sleeps with no timer armed
        tracker.emit("second", customer_id="c-1")
        assert _wait_for(lambda: len(client.sent) == 2)
    finally:
        sender.close(5)


class Stall:
    """A ``before_send`` hook that holds the worker (it runs there, batch-wise) until released."""

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()

    def __call__(self, events: Event) -> Event:
        self.entered.set()
        assert self.release.wait(30)
        return events


def _small_sender() -> BackgroundSender:
    """Room for 20 events, batches of 5, one request per event."""
    return BackgroundSender(
        ScriptedClient(), max_queue_size=20, max_batch_size=5, flush_interval=0.01, bulk=False
    )


def test_the_capacity_holds_on_the_callers_thread_while_the_worker_is_stalled() -> None:
    stall = Stall()
    entered, release = stall.entered, stall.release
    sender = _small_sender()
    tracker = Tracker(sender, before_send=stall)
    try:
        assert tracker.gate is not None  # the sender applies the hook: the gate stays open
        tracker.emit("e", customer_id="first")
        assert entered.wait(10)  # the worker holds the first draft in the hook
        inlet = sender._inlets[0]
        longest = 0
        for i in range(500):
            tracker.emit("e", customer_id=f"c-{i}")
            longest = max(longest, len(inlet.items) + len(sender._queue) + sender._queue.held)
        assert longest <= 20  # never more than the capacity, with no worker looking
        release.set()
        assert sender.flush(10) is False  # drops since the last flush
        stats = tracker.stats
        assert stats.sent == 501
        assert stats.delivered == 20
        assert dict(stats.dropped) == {"queue_overflow": 481}
    finally:
        release.set()
        sender.close(5)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # 3.12+: fork() with threads
def test_a_forked_child_starts_its_own_worker_from_the_gate() -> None:
    client = ScriptedClient()
    sender = BackgroundSender(client, flush_interval=60, bulk=False)
    tracker = Tracker(sender)
    try:
        for i in range(3):
            tracker.emit("parent", customer_id=f"p-{i}")
        assert tracker.stats.sent == 3  # gathered and counted before the fork
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                os.close(read_fd)
                client.lock = threading.Lock()
                client.sent = []
                tracker.emit("child", customer_id="kid")
                started = sender._worker is not None  # by the gate's first draft
                ok = tracker.flush(10)
                report = {
                    "ok": ok,
                    "names": [e.name for e in client.delivered_events],
                    "sent": tracker.stats.sent,
                    "worker": started and sender._worker.is_alive(),
                }
                os.write(write_fd, json.dumps(report).encode())
                code = 0
            finally:
                os._exit(code)
        report = child_report(pid, read_fd, write_fd)
        assert report["ok"] is True
        assert report["names"] == ["child"]  # never the parent's drafts
        assert report["sent"] == 4  # the parent's three (the child's copy) and its own
        assert report["worker"] is True
        assert tracker.flush(10)
        assert sorted(e.name for e in client.delivered_events) == ["parent"] * 3
    finally:
        sender.close(5)


def test_two_trackers_on_a_stalled_sender_stay_bounded_and_count_their_own() -> None:
    stall = Stall()
    entered, release = stall.entered, stall.release
    sender = _small_sender()
    first, second = Tracker(sender, before_send=stall), Tracker(sender, before_send=stall)
    try:
        first.emit("e", customer_id="first")
        assert entered.wait(10)
        longest = 0
        for i in range(200):
            (first if i % 3 else second).emit("e", customer_id=f"c-{i}")
            held = sum(len(inlet.items) for inlet in sender._inlets)
            longest = max(longest, held + len(sender._queue) + sender._queue.held)
        assert longest < 2 * 20  # each gate's share of the room: less than twice the bound
        first_stats = first.stats  # gathers: what is past the capacity is trimmed
        assert len(sender._queue) + sender._queue.held <= 20
        release.set()
        sender.flush(10)
        assert (first.stats.sent, second.stats.sent) == (1 + 133, 67)
        stats = sender.stats()
        assert stats.delivered == 20
        assert stats.delivered + stats.total_dropped == 201
        assert first_stats.sent == 134
    finally:
        release.set()
        sender.close(5)
