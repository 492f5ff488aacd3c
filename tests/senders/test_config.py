from __future__ import annotations

import pytest

from gbtrack import ConfigurationError, sender_from_config
from gbtrack.senders import BackgroundSender


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch) -> None:
    for name in ("GAMEBALL_API_KEY", "GAMEBALL_SECRET_KEY", "GAMEBALL_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


def test_no_key_is_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match="GAMEBALL_API_KEY"):
        sender_from_config()


def test_options_build_a_background_sender() -> None:
    sender = sender_from_config(
        api_key="key-abcdef", base_url="http://127.0.0.1:9", max_queue_size=7, concurrency=3
    )
    try:
        assert isinstance(sender, BackgroundSender)
        assert sender.max_queue_size == 7
        assert sender.concurrency == 3
        assert sender.client.base_url.startswith("http://127.0.0.1:9")  # type: ignore[attr-defined]
        assert not sender.client.has_secret_key
    finally:
        sender.close(1)


def test_environment_fills_in(monkeypatch) -> None:
    monkeypatch.setenv("GAMEBALL_API_KEY", "env-key-123")
    monkeypatch.setenv("GAMEBALL_SECRET_KEY", "env-secret-456")
    monkeypatch.setenv("GAMEBALL_BASE_URL", "http://127.0.0.1:9")
    sender = sender_from_config()
    try:
        assert sender.client.has_secret_key
        assert sender.client.base_url.startswith("http://127.0.0.1:9")  # type: ignore[attr-defined]
    finally:
        sender.close(1)
    # An explicit option wins over the environment.
    sender = sender_from_config(base_url="http://localhost:1")
    try:
        assert "localhost:1" in sender.client.base_url  # type: ignore[attr-defined]
    finally:
        sender.close(1)


def test_unknown_and_invalid_options(monkeypatch) -> None:
    monkeypatch.setenv("GAMEBALL_API_KEY", "env-key-123")
    with pytest.raises(ConfigurationError, match="unknown delivery option"):
        sender_from_config(batch_sise=3)
    with pytest.raises(ConfigurationError):
        sender_from_config(overflow="nope")
    with pytest.raises(ConfigurationError) as info:
        sender_from_config(secure=True)  # v4.1 needs a secret key
    assert "env-key-123" not in str(info.value)


def test_configure_uses_it(monkeypatch) -> None:
    import gbtrack

    tracker = gbtrack.Tracker()
    tracker.configure(api_key="key-abcdef", base_url="http://127.0.0.1:9")
    try:
        assert isinstance(tracker.sender, BackgroundSender)
    finally:
        tracker.close(1)


def test_module_configure_typed_options() -> None:
    import gbtrack
    from gbtrack.senders import RetryPolicy

    policy = RetryPolicy(max_attempts=2)
    tracker = gbtrack.configure(
        api_key="key-abcdef",
        base_url="http://127.0.0.1:9",
        max_queue_size=5,
        overflow="block",
        concurrency=2,
        retry=policy,
    )
    sender = tracker.sender
    try:
        assert isinstance(sender, BackgroundSender)
        assert (sender.max_queue_size, sender.overflow, sender.concurrency) == (5, "block", 2)
        assert sender.retry is policy
    finally:
        sender.close(1)


def test_configure_without_key_or_with_a_sender_too() -> None:
    import gbtrack

    tracker = gbtrack.Tracker()
    with pytest.raises(ConfigurationError, match="API key"):
        tracker.configure(base_url="http://127.0.0.1:9")
    with pytest.raises(gbtrack.GbtrackError):
        tracker.configure(sender=gbtrack.InMemorySender(), api_key="key-abcdef")


def test_default_tracker_sender_from_environment(monkeypatch) -> None:
    import gbtrack

    monkeypatch.setenv("GAMEBALL_API_KEY", "env-key-123")
    monkeypatch.setenv("GAMEBALL_BASE_URL", "http://127.0.0.1:9")
    tracker = gbtrack.Tracker()
    sender = tracker.sender
    try:
        assert isinstance(sender, BackgroundSender)
    finally:
        sender.close(1)


def test_delivery_config_is_one_frozen_object_from_arguments_and_environment(
    monkeypatch,
) -> None:
    import dataclasses

    from gbtrack.senders import DeliveryConfig

    monkeypatch.setenv("GAMEBALL_API_KEY", "env-key-123")
    config = DeliveryConfig.resolve(concurrency=3, base_url=None)
    assert config.api_key == "env-key-123"
    assert config.concurrency == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.concurrency = 4  # type: ignore[misc]
    with pytest.raises(ConfigurationError, match="concurrency"):
        DeliveryConfig.resolve(concurrency=0)
    with pytest.raises(ConfigurationError, match="'bogus'"):
        DeliveryConfig.resolve(bogus=1)
    # The constructor's keyword arguments are the config's fields (outbox aside).
    import inspect

    from gbtrack.senders._config import LIMITER_OPTIONS

    params = set(inspect.signature(BackgroundSender).parameters)
    assert DeliveryConfig.names() - LIMITER_OPTIONS - {"outbox"} <= params
    sender = BackgroundSender.from_config(
        dataclasses.replace(config, base_url="http://127.0.0.1:9")
    )
    try:
        assert sender.config.concurrency == 3
        assert sender.concurrency == 3
    finally:
        sender.close(1)


def test_sender_from_config_moved_to_the_package_root() -> None:
    import gbtrack.senders

    # It opens the outbox, which stands on the senders: it lives above both.
    assert "sender_from_config" not in gbtrack.senders.__all__
    with pytest.raises(ImportError, match=r"moved to gbtrack\.sender_from_config"):
        from gbtrack.senders import sender_from_config  # noqa: F401
    with pytest.raises(ImportError, match=r"from gbtrack import sender_from_config"):
        gbtrack.senders.sender_from_config  # noqa: B018
    assert not hasattr(gbtrack.senders, "no_such_name")  # other names: AttributeError
