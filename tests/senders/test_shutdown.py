"""Shutdown and exit: nothing delivered twice, nothing lost untold (issue 9).

Exit behaviour is tested in a subprocess (``python -c``) against an emulator started
by the test; the emulator counts what arrived: distinct, duplicates, missing.
"""

from __future__ import annotations

import gc
import pathlib
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
from tests.senders import API_KEY

from gbtrack.emulator import GameballEmulator


@dataclass
class Arrived:
    distinct: int
    duplicates: int
    missing: int


def arrived(emulator: GameballEmulator, name: str, expected: int) -> Arrived:
    seen = Counter(e.metadata["seq"] for e in emulator.events if e.name == name)
    return Arrived(
        distinct=len(seen),
        duplicates=sum(n - 1 for n in seen.values()),
        missing=len(set(range(expected)) - set(seen)),
    )


def run(
    script: str, emulator: GameballEmulator, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    prelude = textwrap.dedent(
        f"""
        import logging
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
        from gbtrack import Event
        from gbtrack.senders import BackgroundSender
        API_KEY, URL = {API_KEY!r}, {emulator.url!r}
        def ev(i, name="purchase"):
            return Event(name=name, customer_id=f"c-{{i}}", metadata={{"seq": i}})
        """
    )
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_requests_in_flight_at_exit_are_not_delivered_twice(emulator: GameballEmulator) -> None:
    # Defect 1: the transports closed (weakref.finalize) before the sender's exit flush,
    # so the requests in flight failed as ambiguous and were sent again.
    emulator.faults.set_latency(0.3)
    result = run(
        """
        s = BackgroundSender(api_key=API_KEY, base_url=URL, flush_interval=0.01,
                             concurrency=8, timeout=10, exit_timeout=30)
        s.send(ev(0, "warm_up"))
        assert s.flush(10)  # the connection pools exist before the exit
        for i in range(48):
            s.send(ev(i))
        import time
        deadline = time.monotonic() + 10
        while s.stats().in_flight < 8 and time.monotonic() < deadline:
            time.sleep(0.005)  # wait until requests are in flight
        # exit without close(): requests are in flight when the interpreter exits
        """,
        emulator,
    )
    assert result.returncode == 0, result.stderr
    assert arrived(emulator, "purchase", 48) == Arrived(distinct=48, duplicates=0, missing=0)


def test_events_pending_at_exit_are_counted_reported_and_summarised(
    emulator: GameballEmulator,
) -> None:
    # Defects 2 and 4: the exit hook ignored what flush() returned (nothing counted,
    # logged or reported), and the throttled drop line said 1 where 24 were lost.
    emulator.faults.set_latency(30)  # a server that does not answer before the exit
    result = run(
        """
        import atexit
        reported = []
        atexit.register(lambda: print("on_error", len(reported)))  # runs after the sender's
        s = BackgroundSender(api_key=API_KEY, base_url=URL, flush_interval=0.01,
                             timeout=30, exit_timeout=0.5, on_error=reported.append)
        for i in range(24):
            s.send(ev(i))
        """,
        emulator,
    )
    assert result.returncode == 0, result.stderr
    assert "on_error 24" in result.stdout
    summary = [line for line in result.stderr.splitlines() if "sender closed at exit" in line]
    assert len(summary) == 1, result.stderr
    assert "0 delivered, 0 spilled to the outbox, 24 dropped (closed 24)" in summary[0]


def test_close_summarises_true_totals(caplog: pytest.LogCaptureFixture) -> None:
    from gbtrack import Event
    from gbtrack.senders import BackgroundSender

    class Silent:  # a client that never gets to send: every event is closed unsent
        has_secret_key = False

        def send(self, batch: object) -> None:  # pragma: no cover - never called
            raise AssertionError

    sender = BackgroundSender(Silent(), flush_interval=60)  # type: ignore[arg-type]
    for i in range(5):
        sender.send(Event(name="pending", customer_id=f"c-{i}"))
    with caplog.at_level("WARNING", logger="gbtrack"):
        assert not sender.close(0)
    lines = [r.getMessage() for r in caplog.records if "sender closed at close" in r.getMessage()]
    assert lines == [
        "gbtrack: sender closed at close: 0 delivered, 0 spilled to the outbox, "
        "5 dropped (closed 5), 0 unsettled"
    ]


@pytest.mark.parametrize("timeout", [0.0, 0.5, 2.0])
def test_close_holds_its_timeout_against_a_server_that_never_answers(
    emulator: GameballEmulator, timeout: float
) -> None:
    # Defect 10: close(2) took 2.5 s (a 0.1 s floor per step, 0.5 s for the I/O threads).
    import time

    from gbtrack import Event
    from gbtrack.senders import BackgroundSender

    emulator.faults.set_latency(30)
    sender = BackgroundSender(
        api_key=API_KEY, base_url=emulator.url, flush_interval=0.01, timeout=30, concurrency=4
    )
    for i in range(10):
        sender.send(Event(name="purchase", customer_id=f"c-{i}", metadata={"seq": i}))
    deadline = time.monotonic() + 10
    while sender.stats().in_flight < 4 and time.monotonic() < deadline:
        time.sleep(0.005)  # wait until requests hang in flight
    began = time.monotonic()
    assert not sender.close(timeout)
    took = time.monotonic() - began
    # The promise is 100 ms (a few ms when idle); the margin absorbs a loaded machine.
    # Before the fix close() overran by 0.6 s: 0.1 s floors and 0.5 s for I/O threads.
    assert took < timeout + 0.3, took
    assert sender.stats().dropped == {"closed": 10}
    # The requests left hanging end when the emulator stops; wait for their threads
    # so that their sockets are closed in this test, not collected in another one.
    emulator.stop()
    for thread in threading.enumerate():
        if thread.name.startswith("gbtrack-sender-io"):
            thread.join(10)
    gc.collect()


def test_close_waits_for_the_count_of_a_worker_descheduled_while_abandoning(
    emulator: GameballEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The race behind a rare failure of the test above under load: the worker claimed
    # the abandonment (so close() does not count) and was descheduled before counting;
    # close() returned with dropped == {} and a closing line saying "0 dropped".
    import time

    from gbtrack import Event
    from gbtrack.senders import BackgroundSender
    from gbtrack.senders._dispatch import Dispatcher

    give_up = Dispatcher._give_up

    def descheduled(self: Dispatcher, *args: Any, **kwargs: Any) -> None:
        time.sleep(0.3)  # between the worker's claim and its count
        give_up(self, *args, **kwargs)

    monkeypatch.setattr(Dispatcher, "_give_up", descheduled)
    emulator.faults.set_latency(30)
    sender = BackgroundSender(
        api_key=API_KEY, base_url=emulator.url, flush_interval=0.01, timeout=30, concurrency=4
    )
    for i in range(10):
        sender.send(Event(name="purchase", customer_id=f"c-{i}"))
    deadline = time.monotonic() + 10
    while sender.stats().in_flight < 4 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert not sender.close(0.1)
    assert sender.stats().dropped == {"closed": 10}  # counted before close() returned
    emulator.stop()
    for thread in threading.enumerate():
        if thread.name.startswith("gbtrack-sender-io"):
            thread.join(10)
    gc.collect()


CHILD_SCRIPT = """
import multiprocessing, sys
from gbtrack import Event
from gbtrack.senders import BackgroundSender

API_KEY, URL, METHOD, KIND = {api_key!r}, {url!r}, {method!r}, {kind!r}
# Built at import: before the fork (fork), or again in each child (spawn).
sender = BackgroundSender(api_key=API_KEY, base_url=URL, flush_interval=0.05)


def track(first):
    for i in range(first, first + 10):
        sender.send(Event(name="purchase", customer_id=f"c-{{i}}", metadata={{"seq": i}}))
    return first  # no flush, no close: the child just ends


if __name__ == "__main__":
    ctx = multiprocessing.get_context(METHOD)
    if KIND == "process":
        children = [ctx.Process(target=track, args=(first,)) for first in (0, 10, 20)]
        for child in children:
            child.start()
        for child in children:
            child.join()
        sys.exit(max(child.exitcode for child in children))
    pool = ctx.Pool(2)
    pool.map(track, [0, 10, 20])
    pool.close()
    pool.join()
"""


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["process", "pool"])
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_multiprocessing_children_deliver_at_a_normal_exit(
    emulator: GameballEmulator, tmp_path: pathlib.Path, method: str, kind: str
) -> None:
    # Defect 3: a forked child ends with os._exit() (no atexit): every event was lost.
    script = tmp_path / "children.py"
    script.write_text(
        CHILD_SCRIPT.format(api_key=API_KEY, url=emulator.url, method=method, kind=kind)
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert arrived(emulator, "purchase", 30) == Arrived(distinct=30, duplicates=0, missing=0)


class SwitchableClient:
    """Delivers through ``current``: a client with a wrong key, then a good one."""

    def __init__(self, current: Any) -> None:
        self.current = current
        self.has_secret_key = False

    def send(self, batch: Any) -> Any:
        return self.current.send(batch)

    def close(self) -> None:
        self.current.close()


def test_a_refused_key_stops_sending_keeps_the_events_and_resumes(
    emulator: GameballEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    # Defect 6: a wrong key dropped every event, logged once at WARNING.
    from gbtrack import Event
    from gbtrack.gameball import GameballClient
    from gbtrack.senders import BackgroundSender

    wrong = GameballClient(api_key="wrong-key-0000", base_url=emulator.url, timeout=5)
    right = GameballClient(api_key=API_KEY, base_url=emulator.url, timeout=5)
    client = SwitchableClient(wrong)
    sender = BackgroundSender(
        client,  # type: ignore[arg-type]
        flush_interval=0.01,
        auth_probe_interval=0.2,
        concurrency=4,
    )
    try:
        with caplog.at_level("INFO", logger="gbtrack"):
            for i in range(20):
                sender.send(Event(name="purchase", customer_id=f"c-{i}", metadata={"seq": i}))
            assert not sender.flush(10)  # answers at once: the key is refused
            errors = [r for r in caplog.records if r.levelname == "ERROR"]
            assert len(errors) == 1
            assert "refused the API key" in errors[0].getMessage()
            assert "1000" in errors[0].getMessage()
            assert sender.stats().dropped == {}  # kept, not dropped
            # The requests in flight when it stopped, perhaps a probe; not one per event.
            assert sum(emulator.requests.values()) <= 4 + 1
            client.current = right  # the key is fixed: the next probe succeeds
            assert emulator.wait_for_events(20, timeout=10)
            assert sender.flush(10)
        assert len([r for r in caplog.records if r.levelname == "ERROR"]) == 1
        assert any("sending resumed" in r.getMessage() for r in caplog.records)
        assert arrived(emulator, "purchase", 20) == Arrived(distinct=20, duplicates=0, missing=0)
        assert sender.stats().dropped == {}
    finally:
        sender.close(5)
        wrong.close()


def test_with_an_outbox_refused_events_land_in_its_dead_letter(
    emulator: GameballEmulator, tmp_path: pathlib.Path
) -> None:
    # Defect 6: with configure(outbox=...), `gbtrack outbox retry --code 1000` works.
    from gbtrack import Event, sender_from_config
    from gbtrack.outbox import OutboxStore

    path = tmp_path / "outbox.sqlite3"
    sender = sender_from_config(
        api_key="wrong-key-0000", base_url=emulator.url, outbox=path, flush_interval=0.01
    )
    for i in range(5):
        sender.send(Event(name="purchase", customer_id=f"c-{i}", metadata={"seq": i}))
    sender.close(10)
    assert sender.stats().dropped.get("unauthorized", 0) == 0
    store = OutboxStore(path)
    try:
        dead = store.rows("dead")
        assert len(dead) + store.count("pending") == 5
        assert dead
        assert {row.code for row in dead} == {1000}
    finally:
        store.close()


def test_configure_with_a_new_key_delivers_what_the_refused_key_kept(
    emulator: GameballEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    # Defect 6: resume when configure() gives a new key, without losing the kept events.
    from gbtrack import Tracker

    tracker = Tracker()
    tracker.configure(api_key="wrong-key-0000", base_url=emulator.url, flush_interval=0.01)
    try:
        for i in range(10):
            tracker.emit("purchase", customer_id=f"c-{i}", metadata={"seq": i})
        assert not tracker.flush(10)
        tracker.configure(api_key=API_KEY, base_url=emulator.url, flush_interval=0.01)
        assert tracker.flush(10)
        assert arrived(emulator, "purchase", 10) == Arrived(distinct=10, duplicates=0, missing=0)
        assert tracker.stats.total_dropped == 0
    finally:
        tracker.close(5)
