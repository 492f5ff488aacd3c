"""Every sender ends a failing request where :meth:`RetryPolicy.decide` says, the same way.

The decision itself is tested once (``tests/senders/test_policy.py``); here each sender
(background, direct, outbox) meets the same answers from the emulator and must end with
the same reason after the same number of requests: counted as a drop by the in-memory
senders, a dead row whose message starts with the reason in the outbox.
"""

from __future__ import annotations

import pytest

from gbtrack import Event
from gbtrack.emulator import GameballEmulator
from gbtrack.gameball import GameballClient
from gbtrack.outbox import OutboxDrainer, OutboxStore
from gbtrack.senders import BackgroundSender, DirectSender, RateLimiter, RetryPolicy

FAST = RateLimiter(((10_000, 1.0),))
# (fault status, code, failing requests, policy, the reason it ends with, requests made)
CASES = {
    "retries_exhausted": (
        503,
        5003,
        5,
        RetryPolicy(max_attempts=3, base_delay=0.0, max_delay=0.0),
        3,
    ),
    "ambiguous": (500, 5000, 5, RetryPolicy(retry_ambiguous=False, base_delay=0.0), 1),
    "rejected": (422, 3003, 5, RetryPolicy(base_delay=0.0, max_delay=0.0), 1),
}


def _client(emulator: GameballEmulator) -> GameballClient:
    return GameballClient(emulator.api_key, base_url=emulator.url)  # no secret: per request


def _in_memory(kind: str, emulator: GameballEmulator, policy: RetryPolicy) -> tuple[str, int]:
    with _client(emulator) as client:
        sender: BackgroundSender | DirectSender
        if kind == "background":
            sender = BackgroundSender(client, retry=policy, rate_limiter=FAST, flush_interval=0.01)
        else:
            sender = DirectSender(client, retry=policy, rate_limiter=FAST)
        sender.send(Event(name="purchase", customer_id="c-1"))
        assert not sender.flush(10)  # settled, but the event was dropped
        sender.close(5)
    stats = sender.stats()
    ((reason, n),) = stats.dropped.items()
    assert n == 1
    assert stats.delivered == 0
    return reason, stats.retried + 1


def _outbox(emulator: GameballEmulator, policy: RetryPolicy, path: str) -> tuple[str, int]:
    with OutboxStore(path) as store, _client(emulator) as client:
        store.append([Event(name="purchase", customer_id="c-1")])
        drainer = OutboxDrainer(store, client, retry=policy, limiter=FAST)
        try:
            while drainer.run_once(bulk=False).claimed or store.count("pending"):
                store.make_ready()
        finally:
            drainer.close()
        (dead,) = store.rows("dead")
    assert dead.message is not None
    return dead.message.split(":", 1)[0], dead.attempts


@pytest.mark.parametrize("kind", ["background", "direct", "outbox"])
@pytest.mark.parametrize("expected", sorted(CASES))
def test_a_failing_request_ends_the_same_in_every_sender(
    gameball_emulator: GameballEmulator, tmp_path: object, kind: str, expected: str
) -> None:
    status, code, failing, policy, requests = CASES[expected]
    gameball_emulator.faults.fail_next(failing, status=status, code=code)
    if kind == "outbox":
        reason, attempts = _outbox(gameball_emulator, policy, f"{tmp_path}/outbox.sqlite3")
    else:
        reason, attempts = _in_memory(kind, gameball_emulator, policy)
    assert (reason, attempts) == (expected, requests)
    assert sum(gameball_emulator.requests.values()) == requests
    assert gameball_emulator.event_count == 0
