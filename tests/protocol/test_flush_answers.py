"""Defect 5: flush() answers whether everything submitted before it was delivered.

A flush that only waits for events to *settle* returned True when every event had been
rejected (a wrong API key). Now any drop since the previous flush makes it False; the
next flush answers for what came after. Against the emulator where a server fits.
"""

from __future__ import annotations

from tests.senders import ScriptedClient, delivered, rejected

from gbtrack import Event, Tracker
from gbtrack.emulator import GameballEmulator
from gbtrack.gameball import GameballClient
from gbtrack.outbox import OutboxSender
from gbtrack.senders import BackgroundSender, DirectSender, RetryPolicy

FAST = RetryPolicy(base_delay=0.0, max_delay=0.0)


def ev(i: int) -> Event:
    return Event(name="purchase", customer_id=f"c-{i}", metadata={"seq": i})


def test_background_sender_with_a_wrong_key(gameball_emulator: GameballEmulator) -> None:
    sender = BackgroundSender(api_key="wrong-key", base_url=gameball_emulator.url, retry=FAST)
    for i in range(3):
        sender.send(ev(i))
    assert not sender.flush(10)
    # A refused key stops sending and keeps the events (issue 9, defect 6).
    assert sender.stats().dropped == {}
    assert not sender.flush(10)  # still not delivered
    assert not sender.close(0)
    assert sender.stats().dropped == {"closed": 3}


def test_background_sender_mixed_then_clean(gameball_emulator: GameballEmulator) -> None:
    tracker = Tracker(
        BackgroundSender(
            api_key=gameball_emulator.api_key, base_url=gameball_emulator.url, retry=FAST
        )
    )
    gameball_emulator.faults.fail_next(1, status=422, code=3003)
    tracker.emit("purchase", customer_id="c-1")
    assert not tracker.flush(10)
    tracker.emit("purchase", customer_id="c-2")
    assert tracker.flush(10)
    assert tracker.close(5)  # close() answers like the final flush
    assert gameball_emulator.event_count == 1


def test_close_with_a_timeout_settles_the_stats() -> None:
    # Stats after close(timeout): every sent event is delivered or dropped, none in flight.
    import threading

    gate = threading.Event()
    client = ScriptedClient(lambda b, a: delivered(), gate=gate)
    sender = BackgroundSender(client, retry=FAST)
    for i in range(5):
        sender.send(ev(i))
    assert client.started.wait(5)
    assert not sender.close(timeout=0.2)  # in flight when the time ran out
    gate.set()
    stats = sender.stats()
    assert stats.dropped == {"closed": 5}
    assert (stats.in_queue, stats.in_flight, stats.delivered) == (0, 0, 0)


def test_direct_sender() -> None:
    answers = iter([rejected(), delivered()])
    sender = DirectSender(ScriptedClient(lambda b, a: next(answers)), retry=FAST)
    sender.send(ev(1))
    assert not sender.flush()
    sender.send(ev(2))
    assert sender.flush()


def test_outbox_dead_letter_makes_flush_false(
    gameball_emulator: GameballEmulator, tmp_path: object
) -> None:
    gameball_emulator.faults.fail_next(1, status=422, code=3003)
    with (
        GameballClient(gameball_emulator.api_key, base_url=gameball_emulator.url) as gb,
        OutboxSender(gb, path=f"{tmp_path}/o.sqlite3", retry=FAST) as sender,
    ):
        sender.send(ev(1))
        assert not sender.flush(30)
        assert sender.store.count("dead") == 1
        sender.send(ev(2))
        assert sender.flush(30)
