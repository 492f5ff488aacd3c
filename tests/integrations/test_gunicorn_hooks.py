"""The gunicorn hooks without a server: the rate-limit share and the close at exit."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from gbtrack import Tracker
from gbtrack.emulator import GameballEmulator
from gbtrack.integrations.gunicorn import (
    close_timeout,
    post_worker_init,
    rate_limit_share,
    worker_exit,
)
from gbtrack.senders import BackgroundSender, RateLimiter


def test_rate_limit_share_divides_every_window() -> None:
    assert rate_limit_share(2).limits == ((50, 1.0), (600, 30.0))
    assert rate_limit_share(3).limits == ((33, 1.0), (400, 30.0))
    assert rate_limit_share(1000).limits == ((1, 1.0), (1, 30.0))
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="positive int"):
            rate_limit_share(bad)  # type: ignore[arg-type]


def test_close_timeout_is_half_the_graceful_timeout_at_most_ten() -> None:
    assert close_timeout(30) == 10.0
    assert close_timeout(8) == 4.0
    assert close_timeout(None) == close_timeout(0) == 10.0


def test_hooks_share_the_default_limiter_only_and_close_at_exit() -> None:
    import gbtrack

    with GameballEmulator() as emulator:
        gbtrack.configure(api_key=emulator.api_key, base_url=emulator.url)
        post_worker_init(SimpleNamespace(cfg=SimpleNamespace(workers=4)))
        sender = gbtrack.get_tracker().sender
        assert sender.rate_limiter.limits == ((25, 1.0), (300, 30.0))
        # Already a share: left alone.
        post_worker_init(SimpleNamespace(cfg=SimpleNamespace(workers=2)))
        assert sender.rate_limiter.limits == ((25, 1.0), (300, 30.0))
        gbtrack.get_tracker().emit("signed_up", customer_id="c-1")
        worker_exit(SimpleNamespace(cfg=SimpleNamespace(graceful_timeout=10)), None)
        assert emulator.event_count == 1
        assert gbtrack.get_tracker().stats.delivered == 1


def test_a_configured_limiter_is_left_alone() -> None:
    mine = RateLimiter(limits=((10, 1.0),))
    with GameballEmulator() as emulator:
        tracker = Tracker(
            BackgroundSender(api_key=emulator.api_key, base_url=emulator.url, rate_limiter=mine)
        )
        from gbtrack.integrations._web import share_rate_limit

        assert share_rate_limit(4, tracker) is None
        assert tracker.sender.rate_limiter is mine
        tracker.close(timeout=2)
