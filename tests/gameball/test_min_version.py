"""An account whose minimum API version refuses v4.0, over real loopback HTTP."""

from __future__ import annotations

from gbtrack import AuthenticationError, Event
from gbtrack.emulator import GameballEmulator
from gbtrack.gameball import EventBatch, GameballClient


def _batch() -> EventBatch:
    return EventBatch.from_event(Event(name="purchase", customer_id="c-1"))


def test_secret_key_client_uses_v41_and_passes() -> None:
    with (
        GameballEmulator(min_version="4.1") as emulator,
        GameballClient(
            emulator.api_key, secret_key=emulator.secret_key, base_url=emulator.url
        ) as client,
    ):
        assert client.send(_batch()).delivered
        [event] = emulator.events
    assert event.version == "v4.1"


def test_v40_refusal_is_permanent_and_names_the_setting() -> None:
    with GameballEmulator(min_version="4.1") as emulator:
        with GameballClient(emulator.api_key, base_url=emulator.url) as client:
            outcome = client.send(_batch())
        assert outcome.permanent
        assert isinstance(outcome.error, AuthenticationError)
        assert "minimum API version" in str(outcome.error)
        # The explicit v4.0 override is refused the same way.
        with GameballClient(
            emulator.api_key, secret_key=emulator.secret_key, base_url=emulator.url, secure=False
        ) as client:
            assert client.send(_batch()).permanent
        assert emulator.event_count == 0
