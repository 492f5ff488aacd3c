"""The background sender and the outbox read a failed batch item the same way.

Both run a batch job on the emulator whose next item fails with one Gameball code;
with ``retry_ambiguous=False`` the three kinds part: retryable codes are sent again,
ambiguous ones end as ``ambiguous``, permanent ones as ``rejected`` (the outbox's dead
letter). Before the engine, 5000 was ambiguous in one and dead in the other, and 5003
and 429 became ``ConflictError`` in the outbox.
"""

from __future__ import annotations

import pytest

from gbtrack import Event
from gbtrack.emulator import GameballEmulator
from gbtrack.gameball import GameballClient
from gbtrack.outbox import OutboxDrainer, OutboxStore
from gbtrack.senders import BackgroundSender, RateLimiter, RetryPolicy

POLICY = RetryPolicy(base_delay=0.0, max_delay=0.0, retry_ambiguous=False)
# code -> how the failed item ends: "retried" (then delivered), "ambiguous", "rejected"
CODES = {
    429: "retried",
    2001: "retried",
    5003: "retried",
    5000: "ambiguous",
    5999: "ambiguous",
    1000: "rejected",
    1500: "rejected",
    3003: "rejected",
    6000: "rejected",
}


def _events(n: int = 5) -> list[Event]:
    return [Event(name="purchase", customer_id=f"c-{i}", metadata={"seq": i}) for i in range(n)]


def _client(emulator: GameballEmulator) -> GameballClient:
    return GameballClient(emulator.api_key, secret_key=emulator.secret_key, base_url=emulator.url)


@pytest.mark.parametrize("code", sorted(CODES))
def test_background_sender(gameball_emulator: GameballEmulator, code: int) -> None:
    gameball_emulator.faults.fail_batch_items(next_items=1, code=code)
    with _client(gameball_emulator) as client:
        sender = BackgroundSender(
            client, retry=POLICY, bulk_threshold=1, rate_limiter=RateLimiter(((1000, 1.0),))
        )
        for event in _events():
            sender.send(event)
        sender.flush(timeout=10)
        sender.close(timeout=5)
    stats = sender.stats()
    ends = CODES[code]
    if ends == "retried":
        assert (stats.delivered, stats.retried, stats.total_dropped) == (5, 1, 0)
    else:
        assert (stats.delivered, stats.retried, dict(stats.dropped)) == (4, 0, {ends: 1})
    assert gameball_emulator.event_count == stats.delivered


@pytest.mark.parametrize("code", sorted(CODES))
def test_outbox(gameball_emulator: GameballEmulator, tmp_path: object, code: int) -> None:
    gameball_emulator.faults.fail_batch_items(next_items=1, code=code)
    with OutboxStore(f"{tmp_path}/outbox.sqlite3") as store, _client(gameball_emulator) as gb:
        store.append(_events())
        drainer = OutboxDrainer(
            store, gb, retry=POLICY, limiter=RateLimiter(((1000, 1.0),)), poll_interval=0.01
        )
        first = drainer.run_once(bulk=True)
        ends = CODES[code]
        if ends == "retried":
            assert (first.delivered, first.retried, first.dead) == (4, 1, 0)
            assert drainer.run_once(bulk=False).delivered == 1
        else:
            assert (first.delivered, first.retried, first.dead) == (4, 0, 1)
            (dead,) = store.rows("dead")
            assert dead.code == code
            assert dead.message is not None
            assert dead.message.startswith(ends)
        drainer.close()
        assert store.count("pending") == 0
    assert gameball_emulator.event_count == 5 if ends == "retried" else 4
