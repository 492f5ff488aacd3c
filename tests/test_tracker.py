"""Tracker: emit, stats, strict, on_error, the default tracker, GBTRACK_DISABLED, warning."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest

import gbtrack
from gbtrack import (
    Event,
    EventDraft,
    GbtrackError,
    InMemorySender,
    LoggingSender,
    Stats,
    Tracker,
    TrackingError,
    configure,
    get_tracker,
    identify,
    set_tracker,
)
from gbtrack import _tracker as tracker_module


def test_emit_builds_and_sends(tracker: Tracker, sender: InMemorySender) -> None:
    draft = tracker.emit(
        "visited",
        customer_id="c",
        email="a@example.com",
        mobile="+20123",
        session_token="tok",
        metadata={"page": "home", "n": 1, "skip": None},
    )
    assert isinstance(draft, EventDraft)
    (event,) = sender.events
    assert isinstance(event, Event)
    assert (event.name, event.customer_id) == (draft.name, draft.customer_id)
    assert event.metadata == draft.metadata == {"page": "home", "n": 1}
    assert event.session_token is not None
    assert event.to_payload() == {
        "customerId": "c",
        "events": {"visited": {"page": "home", "n": 1}},
        "email": "a@example.com",
        "mobile": "+20123",
    }


def test_emit_uses_ambient_identity(tracker: Tracker) -> None:
    with identify("amb", mobile="+2099"):
        event = tracker.emit("e")
    assert event is not None
    assert (event.customer_id, event.mobile) == ("amb", "+2099")


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({}, "no_customer_id"),
        ({"customer_id": "c", "metadata": {"bad": [1]}}, "invalid_event"),
        ({"customer_id": "c", "metadata": {"": 1}}, "invalid_event"),
        ({"customer_id": 1.5}, "invalid_event"),
        ({"customer_id": "c", "email": 3}, "invalid_event"),
        ({"customer_id": "c", "mobile": 3}, "invalid_event"),
        ({"customer_id": "c", "session_token": 3}, "invalid_event"),
    ],
)
def test_emit_drops_with_reason(tracker: Tracker, kwargs: dict[str, object], reason: str) -> None:
    errors: list[TrackingError] = []
    tracker.on_error = errors.append
    assert tracker.emit("e", **kwargs) is None  # type: ignore[arg-type]
    assert tracker.stats.dropped == {reason: 1}
    assert tracker.stats.total_dropped == 1
    assert [e.reason for e in errors] == [reason]
    assert tracker.stats.last_error is not None
    assert reason in tracker.stats.last_error


def test_emit_empty_name_dropped(tracker: Tracker) -> None:
    assert tracker.emit("", customer_id="c") is None
    assert tracker.stats.dropped == {"invalid_event": 1}


def test_strict_raises(strict_tracker: Tracker) -> None:
    with pytest.raises(TrackingError) as info:
        strict_tracker.emit("e")
    assert info.value.reason == "no_customer_id"


def test_on_error_hook_failure_is_swallowed(
    tracker: Tracker, caplog: pytest.LogCaptureFixture
) -> None:
    def bad_hook(error: TrackingError) -> None:
        raise RuntimeError("hook broke")

    tracker.on_error = bad_hook
    assert tracker.on_error is bad_hook
    tracker.emit("e")
    assert "on_error hook raised" in caplog.text
    assert tracker.stats.dropped == {"no_customer_id": 1}


def test_drops_logged_without_pii(tracker: Tracker, caplog: pytest.LogCaptureFixture) -> None:
    tracker.emit("e", customer_id="c", email="john@example.com", metadata={"x": object()})
    assert "invalid_event" in caplog.text
    assert "john@example.com" not in caplog.text


def test_stats_merge_sender_counts(tracker: Tracker) -> None:
    tracker.emit("e", customer_id="c")
    tracker.emit("e", customer_id="c")
    stats = tracker.stats
    assert isinstance(stats, Stats)
    assert (stats.sent, stats.delivered) == (2, 2)


def test_sender_closed_drops_are_forwarded(tracker: Tracker, sender: InMemorySender) -> None:
    errors: list[TrackingError] = []
    tracker.on_error = errors.append
    assert tracker.flush(timeout=1) is True
    assert tracker.close(timeout=1) is True
    tracker.emit("e", customer_id="c")
    assert [e.reason for e in errors] == ["closed"]
    assert tracker.stats.dropped == {"closed": 1}


def test_flush_close_without_sender() -> None:
    tracker = Tracker()
    assert tracker.flush() is True
    assert tracker.close() is True


def test_sender_type_checked() -> None:
    with pytest.raises(TypeError, match="send/flush/close"):
        Tracker(object())  # type: ignore[arg-type]


def test_configure_in_place(tracker: Tracker) -> None:
    old = tracker.sender
    new = InMemorySender()
    hook: list[TrackingError] = []
    assert tracker.configure(sender=new, strict=True, enabled=True, on_error=hook.append) is tracker
    assert tracker.sender is new
    assert old.closed
    assert tracker.strict
    tracker.configure(on_error=None, strict=False)
    assert tracker.on_error is None
    assert not tracker.strict
    with pytest.raises(GbtrackError, match="either sender"):
        tracker.configure(sender=new, api_key="k")


def test_module_configure_get_set_tracker() -> None:
    default = get_tracker()
    new_sender = InMemorySender()
    assert configure(sender=new_sender, enabled=True) is default
    assert default.sender is new_sender
    other = Tracker(InMemorySender())
    assert set_tracker(other) is default
    assert get_tracker() is other
    assert set_tracker(default) is other
    with pytest.raises(TypeError, match="expected a Tracker"):
        set_tracker("nope")  # type: ignore[arg-type]


def test_repr(tracker: Tracker) -> None:
    tracker.strict = True
    assert repr(tracker).startswith("<Tracker enabled strict sender=<InMemorySender")
    tracker.enabled = False
    assert "disabled" in repr(tracker)


def test_env_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    for value in ("1", "true", "YES", " on "):
        monkeypatch.setenv("GBTRACK_DISABLED", value)
        assert tracker_module._env_disabled()
    for value in ("", "0", "no"):
        monkeypatch.setenv("GBTRACK_DISABLED", value)
        assert not tracker_module._env_disabled()


@pytest.mark.parametrize(("value", "enabled"), [("1", False), ("0", True)])
def test_gbtrack_disabled_at_import(value: str, enabled: bool) -> None:
    code = (
        "import gbtrack\n"
        "sender = gbtrack.InMemorySender()\n"
        "gbtrack.get_tracker().sender = sender\n"
        "@gbtrack.track('e', customer_id='uid')\n"
        "def f(uid): return 1\n"
        "assert f('u') == 1\n"
        "print(gbtrack.get_tracker().enabled, len(sender.events))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={k: v for k, v in os.environ.items() if k != "GAMEBALL_API_KEY"}
        | {"GBTRACK_DISABLED": value},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.split() == [str(enabled), "1" if enabled else "0"]


def test_one_time_logging_sender_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GAMEBALL_API_KEY", raising=False)
    tracker = Tracker()
    with pytest.warns(RuntimeWarning, match="no Gameball delivery is configured"):
        tracker.emit("e", customer_id="c")
    assert isinstance(tracker.sender, LoggingSender)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tracker.emit("e", customer_id="c")  # no second warning
    assert tracker.stats.sent == 2


def test_warning_as_error_never_reaches_business_code(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("GAMEBALL_API_KEY", raising=False)
    tracker = Tracker()
    with warnings.catch_warnings(), caplog.at_level("WARNING", logger="gbtrack"):
        warnings.simplefilter("error")  # e.g. pytest's filterwarnings = error
        assert tracker.emit("e", customer_id="c") is not None
    assert "no Gameball delivery is configured" in caplog.text
    assert isinstance(tracker.sender, LoggingSender)
    assert tracker.stats.sent == 1


def test_default_sender_failure_is_a_counted_drop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAMEBALL_API_KEY", "secret-api-key")
    monkeypatch.setenv("GAMEBALL_BASE_URL", "not a url")
    errors: list[TrackingError] = []
    tracker = Tracker(on_error=errors.append)
    assert tracker.emit("e", customer_id="c") is None  # never raises into the caller
    assert tracker.stats.dropped == {"sender_error": 1}
    assert "creating the default sender raised ConfigurationError" in str(errors[0])
    assert "secret-api-key" not in str(errors[0])


def test_logging_sender_masks(caplog: pytest.LogCaptureFixture) -> None:
    tracker = Tracker(LoggingSender())
    with caplog.at_level("INFO", logger="gbtrack.events"):
        tracker.emit(
            "e",
            customer_id="c",
            email="john@example.com",
            mobile="+201234567890",
            session_token="s3cr3t",
        )
    assert "j***@example.com" in caplog.text
    assert "***7890" in caplog.text
    assert "john@" not in caplog.text
    assert "s3cr3t" not in caplog.text


def test_tracker_track_and_span_delegate(tracker: Tracker, sender: InMemorySender) -> None:
    @tracker.track("t", customer_id="uid")
    def f(uid: str) -> None: ...

    f("u")
    with tracker.span("s", customer_id="u"):
        pass
    assert [e.name for e in sender.events] == ["t", "s"]


def test_public_module_functions_exist() -> None:
    assert gbtrack.get_tracker is get_tracker


def test_emit_validates_like_the_model(tracker: Tracker, sender: InMemorySender) -> None:
    # Blank email/mobile are missing, as Event(...) treats them; a blank name is refused.
    assert tracker.emit("e", customer_id="c", email="  ", mobile="") is not None
    (event,) = sender.events
    assert (event.email, event.mobile) == (None, None)
    assert event == Event(name="e", customer_id="c", email="  ", mobile="").model_copy(
        update={"event_id": event.event_id, "timestamp": event.timestamp}
    )
    assert tracker.emit("   ", customer_id="c") is None
    assert tracker.stats.dropped == {"invalid_event": 1}
