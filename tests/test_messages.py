"""What a new user reads: warnings at their own line, drop logs without internal
tracebacks, public exception names, a readable ``Stats`` (issue 20)."""

from __future__ import annotations

import asyncio
import logging
import pickle
import re
import traceback
import warnings
from pathlib import Path

import pytest

import gbtrack
import gbtrack.outbox
from gbtrack import InMemorySender, Stats, Tracker

HERE = Path(__file__).resolve()


def _decorated(tracker: Tracker) -> object:
    @tracker.track("n", customer_id="cid")
    def order(cid: object) -> int:
        return 1

    return order


def test_no_delivery_warning_names_the_users_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GAMEBALL_API_KEY", raising=False)
    tracker = Tracker()
    order = _decorated(tracker)
    with pytest.warns(RuntimeWarning, match="no Gameball delivery is configured") as caught:
        order("c1")  # type: ignore[operator]
    (warning,) = caught.list
    assert Path(warning.filename) == HERE
    # the line of the call above, not a line inside gbtrack
    assert "order(" in HERE.read_text().splitlines()[warning.lineno - 1]
    assert "logging.basicConfig(level=logging.INFO)" in str(warning.message)


def test_no_delivery_warning_from_emit_and_span_names_the_users_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GAMEBALL_API_KEY", raising=False)
    with pytest.warns(RuntimeWarning, match="no Gameball delivery") as caught:
        Tracker().emit("n", customer_id="c")
    assert Path(caught.list[0].filename) == HERE
    tracker = Tracker()
    with (
        pytest.warns(RuntimeWarning, match="no Gameball delivery") as caught,
        tracker.span("n", customer_id="c"),
    ):
        pass
    assert Path(caught.list[0].filename) == HERE


async def test_flush_on_an_event_loop_warns_once_naming_to_thread() -> None:
    tracker = Tracker(InMemorySender())
    tracker.emit("n", customer_id="c")
    with pytest.warns(RuntimeWarning, match=r"asyncio\.to_thread\(gbtrack\.flush, 5\)") as caught:
        assert tracker.flush(5)
    assert Path(caught.list[0].filename) == HERE
    assert "running asyncio event loop" in str(caught.list[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tracker.flush(5)  # once per tracker and method
        assert tracker.flush(0)  # a zero timeout never blocks
        assert await asyncio.to_thread(tracker.flush, 5)  # the way the warning says
    with pytest.warns(RuntimeWarning, match=r"asyncio\.to_thread\(gbtrack\.close, 5\)"):
        assert tracker.close()


async def test_module_level_flush_on_an_event_loop_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    gbtrack.set_tracker(Tracker(InMemorySender()))  # restored by conftest
    with pytest.warns(RuntimeWarning, match="asyncio.to_thread") as caught:
        gbtrack.flush(timeout=1)
    assert Path(caught.list[0].filename) == HERE


def test_flush_off_an_event_loop_is_silent() -> None:
    tracker = Tracker(InMemorySender())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tracker.flush(5)
        assert tracker.close(5)


async def test_the_loop_warning_never_raises_into_business_code(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tracker = Tracker(InMemorySender())
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING, logger="gbtrack"):
        warnings.simplefilter("error")
        assert tracker.flush(5)
    assert "asyncio.to_thread" in caplog.text


def test_a_drop_logs_the_reason_at_warning_and_the_traceback_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tracker = Tracker(InMemorySender())
    order = _decorated(tracker)
    with caplog.at_level(logging.WARNING, logger="gbtrack"):
        order(1.5)  # type: ignore[operator]
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert record.exc_info is None
    assert record.getMessage().startswith("gbtrack dropped 1 event(s) [invalid_event]: event 'n'")
    assert record.getMessage().endswith("customer_id must be a str, int or UUID, got float")
    caplog.clear()
    order = _decorated(Tracker(InMemorySender()))  # a new one: drop logs are throttled
    with caplog.at_level(logging.DEBUG, logger="gbtrack"):
        order(2.5)  # type: ignore[operator]
    warning, debug = caplog.records
    assert (warning.levelno, warning.exc_info) == (logging.WARNING, None)
    assert debug.levelno == logging.DEBUG
    assert debug.exc_info is not None
    assert isinstance(debug.exc_info[1], gbtrack.InvalidEventError)


def test_a_hooks_own_exception_keeps_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    def hook(event: gbtrack.Event) -> gbtrack.Event:
        raise KeyError("the user's bug")

    tracker = Tracker(InMemorySender(), before_send=hook)
    with caplog.at_level(logging.WARNING, logger="gbtrack"):
        tracker.emit("n", customer_id="c")
    (record,) = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert record.exc_info is not None  # it points at the user's hook


def test_drop_messages_name_the_event_once(caplog: pytest.LogCaptureFixture) -> None:
    errors: list[gbtrack.TrackingError] = []
    # before_send makes the tracker validate the draft itself (to_event)
    tracker = Tracker(InMemorySender(), before_send=lambda e: e, on_error=errors.append)

    @tracker.track("n", customer_id="cid", metadata={"x": "x"})
    def order(cid: str, x: float) -> None:
        pass

    with caplog.at_level(logging.WARNING, logger="gbtrack"):
        order("c", float("nan"))
    (error,) = errors
    assert str(error).count("event 'n'") == 1, str(error)
    assert caplog.text.count("event 'n'") == 1, caplog.text


def test_exceptions_show_their_public_home() -> None:
    for name in (
        "GbtrackError",
        "ExpressionError",
        "InvalidEventError",
        "TrackingError",
        "ConfigurationError",
        "DeliveryError",
        "RateLimitError",
        "TransportError",
    ):
        cls = getattr(gbtrack, name)
        assert cls.__module__ == "gbtrack", name
        assert repr(cls) == f"<class 'gbtrack.{name}'>"
    assert gbtrack.outbox.OutboxError.__module__ == "gbtrack.outbox"
    for cls in (gbtrack.ConfigurationError, gbtrack.outbox.OutboxError):
        assert type(pickle.loads(pickle.dumps(cls("bad")))) is cls
    with pytest.raises(gbtrack.ExpressionError) as info:
        gbtrack.track("x", customer_id="a..b")(lambda a: a)
    shown = "".join(traceback.format_exception(info.value))
    assert shown.splitlines()[-3].startswith("gbtrack.ExpressionError: @track('x')"), shown


def test_stats_read_plainly() -> None:
    stats = Stats(sent=2, dropped={"invalid_event": 1}, missing={("n", "x"): 3})
    stats = stats.merge(Stats())  # the counters come back as read-only proxies
    assert "mappingproxy" not in repr(stats)
    assert str(stats) == (
        "Stats(sent=2, delivered=0, retried=0, dropped={'invalid_event': 1}, in_queue=0, "
        "in_flight=0, persisted=0, last_error=None, missing={('n', 'x'): 3})"
    )
    assert "mappingproxy" not in str(Tracker(InMemorySender()).stats)


def test_get_tracker_names_only_functions_that_exist() -> None:
    doc = gbtrack.get_tracker.__doc__ or ""
    named = re.findall(r"``([a-z_]+)``", doc)
    assert named, doc
    for name in named:
        assert callable(getattr(gbtrack, name, None)), f"gbtrack.{name} does not exist"
    assert "emit" not in named  # a Tracker method, not a module-level function
