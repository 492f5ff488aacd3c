"""gbtrack.testing: capture_events, the assertions, and the pytest plugin (via pytester)."""

from __future__ import annotations

import pytest

from gbtrack import InMemorySender, Tracker, TrackingError, get_tracker, track
from gbtrack.testing import CapturedEvents, capture_events

PLUGIN_TESTS = """
import pytest
from gbtrack import track

@track("signed_up", customer_id="user_id", metadata={"plan": "plan"})
def sign_up(user_id, plan="free"):
    return user_id

def test_fixture_captures(gbtrack_events):
    assert sign_up("u-1", plan="pro") == "u-1"
    gbtrack_events.assert_tracked("signed_up", customer_id="u-1", plan="pro")
    gbtrack_events.assert_not_tracked("logged_in")
    assert len(gbtrack_events) == 1

def test_fixture_is_fresh_per_test(gbtrack_events):
    assert list(gbtrack_events) == []

def test_failing_assertion_lists_events(gbtrack_events):
    sign_up("u-2")
    gbtrack_events.assert_tracked("signed_up", customer_id="someone-else")
"""

# A pytest in a subprocess without the plugins these runs never use (importing
# hypothesis's alone takes seconds).
LEAN = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:xdist")


@pytest.mark.slow
def test_plugin_fixture_through_pytester(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plugin_use=PLUGIN_TESTS)
    result = pytester.runpytest_subprocess(*LEAN)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        ["*no event 'signed_up' matches {'customer_id': 'someone-else'}*u-2*"]
    )


@pytest.mark.slow
def test_plugin_fixture_listed(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess(*LEAN, "--fixtures")
    result.stdout.fnmatch_lines(["gbtrack_events*", "*Capture the default tracker*"])


def test_capture_restores_sender_and_flags() -> None:
    original = InMemorySender()
    tracker = Tracker(original, enabled=False, strict=False)
    with capture_events(tracker, strict=True) as events:
        assert tracker.enabled
        assert tracker.strict
        assert tracker.sender is events.sender
        with pytest.raises(TrackingError):
            tracker.emit("no-customer")
        tracker.emit("e", customer_id="c")
    assert tracker.sender is original
    assert not original.closed
    assert (tracker.enabled, tracker.strict) == (False, False)
    assert original.events == []
    assert [e.name for e in events] == ["e"]


def test_capture_restores_on_exception() -> None:
    tracker = get_tracker()
    before = tracker._sender
    with pytest.raises(RuntimeError), capture_events():
        raise RuntimeError
    assert tracker._sender is before


def test_captured_events_is_a_sequence() -> None:
    @track("a", customer_id="uid")
    def f(uid: str) -> None: ...

    with capture_events() as events:
        f("1")
        f("2")
    assert isinstance(events, CapturedEvents)
    assert len(events) == 2
    assert events[0].customer_id == "1"
    assert [e.customer_id for e in events[0:2]] == ["1", "2"]
    assert events == list(events)
    assert events != 3
    assert events.names() == ["a", "a"]
    assert repr(events) == "CapturedEvents(['a', 'a'])"
    events.clear()
    assert len(events) == 0


def test_assert_tracked_matching_rules() -> None:
    tracker = Tracker(InMemorySender())
    with capture_events(tracker) as events:
        tracker.emit("buy", customer_id="c1", email="a@example.com", metadata={"n": 1, "k": "x"})
        tracker.emit("buy", customer_id="c2", mobile="+2011", metadata={"n": 2})
    first = events.assert_tracked("buy")
    assert first.customer_id == "c1"
    assert events.assert_tracked("buy", customer_id="c2").metadata == {"n": 2}
    assert events.assert_tracked("buy", metadata={"n": 1}, k="x").customer_id == "c1"
    assert events.assert_tracked("buy", email="a@example.com", n=1) is first
    assert events.assert_tracked("buy", mobile="+2011").customer_id == "c2"
    with pytest.raises(
        AssertionError, match=r"no event 'buy' matches .*'n': 3.*buy\(customer_id='c1'"
    ):
        events.assert_tracked("buy", n=3)
    with pytest.raises(AssertionError, match="no event 'sell' was tracked; tracked: buy"):
        events.assert_tracked("sell")
    with pytest.raises(AssertionError, match="matches"):
        events.assert_tracked("buy", missing_key=1)
    with pytest.raises(AssertionError, match="event 'buy' was tracked 2 time"):
        events.assert_not_tracked("buy")
    events.assert_not_tracked("sell")


def test_empty_capture_message() -> None:
    with capture_events(Tracker(InMemorySender())) as events:
        pass
    with pytest.raises(AssertionError, match="tracked: nothing"):
        events.assert_tracked("x")


def test_fixture_in_this_process(gbtrack_events: CapturedEvents) -> None:
    @track("here", customer_id="uid")
    def f(uid: str) -> None: ...

    f("z")
    gbtrack_events.assert_tracked("here", customer_id="z")
