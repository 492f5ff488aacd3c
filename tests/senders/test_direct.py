from __future__ import annotations

import pytest
from tests.senders import ScriptedClient, delivered, event, rejected, unavailable

from gbtrack import TrackingError
from gbtrack.senders import DirectSender, RateLimiter, RetryPolicy

FAST = RetryPolicy(base_delay=0.001, max_delay=0.005)


def test_sends_inline() -> None:
    client = ScriptedClient()
    sender = DirectSender(client, retry=FAST)
    e = event()
    sender.send(e)
    # Delivered before send() returned: no flush needed.
    assert client.delivered_events == [e]
    assert sender.stats().delivered == 1
    assert sender.flush(0)


def test_retries_with_the_policy() -> None:
    client = ScriptedClient(lambda b, a: unavailable() if a < 3 else delivered())
    sender = DirectSender(client, retry=FAST)
    sender.send(event())
    stats = sender.stats()
    assert stats.delivered == 1
    assert stats.retried == 2


def test_permanent_error_dropped_and_reported() -> None:
    errors: list[TrackingError] = []
    client = ScriptedClient(lambda b, a: rejected())
    sender = DirectSender(client, retry=FAST, on_error=errors.append)
    e = event()
    sender.send(e)
    assert client.attempts == {e.event_id: 1}
    assert [(x.reason, x.event) for x in errors] == [("rejected", e)]


def test_takes_a_rate_limiter_slot_per_request() -> None:
    limiter = RateLimiter([(2, 60.0)])
    sender = DirectSender(ScriptedClient(), retry=FAST, rate_limiter=limiter)
    sender.send(event())
    sender.send(event())
    assert limiter.try_acquire() > 0


def test_close() -> None:
    client = ScriptedClient()
    sender = DirectSender(client)
    assert sender.close()
    assert sender.close()
    assert client.closed is False
    sender.send(event())
    assert sender.stats().dropped == {"closed": 1}
    own = DirectSender(api_key="k-123456", base_url="http://127.0.0.1:9")
    inner = own.client
    own.close()
    assert getattr(inner, "closed", None) is True


def test_needs_client_or_key() -> None:
    with pytest.raises(ValueError):
        DirectSender()
