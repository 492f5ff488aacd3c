"""``span()`` leaving through the tracker's gate gives what ``tracker.record`` gives."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from tests._drafts import DraftSender

from gbtrack import GbtrackError, Span, Tracker, identify
from gbtrack._span import tracker_span


class Key(str):
    """A str subclass as a metadata key: converted by the general path."""


CASES: list[tuple[str, dict[str, Any], Callable[[Span], None]]] = [
    ("plain", {"customer_id": "c-1"}, lambda s: s.update(a=1, b=2.5, c="x", d=True)),
    ("no metadata", {"customer_id": "c-1"}, lambda s: None),
    ("none value", {"customer_id": "c-1"}, lambda s: s.set("a", None)),
    ("email", {"customer_id": "c-1", "email": "a@example.com"}, lambda s: s.set("a", 1)),
    ("blank email", {"customer_id": "c-1", "email": "  "}, lambda s: s.set("a", 1)),
    ("mobile", {"customer_id": "c-1", "mobile": "+201234567890"}, lambda s: None),
    ("int id", {"customer_id": 42}, lambda s: s.set("a", 1)),
    ("blank id", {"customer_id": "  "}, lambda s: s.set("a", 1)),
    ("no id", {}, lambda s: s.set("a", 1)),
    ("token", {"customer_id": "c-1", "session_token": "t"}, lambda s: None),
    ("no token", {"customer_id": "c-1", "session_token": None}, lambda s: None),
    ("decimal", {"customer_id": "c-1"}, lambda s: s.set("a", Decimal("1.5"))),
    ("date", {"customer_id": "c-1"}, lambda s: s.set("a", dt.date(2024, 1, 2))),
    ("invalid value", {"customer_id": "c-1"}, lambda s: s.set("a", [1])),
    ("empty key", {"customer_id": "c-1"}, lambda s: s.set("", 1)),
    ("int key", {"customer_id": "c-1"}, lambda s: s.metadata.__setitem__(1, 1)),
    ("str subclass key", {"customer_id": "c-1"}, lambda s: s.set(Key("k"), 1)),
    ("identified later", {}, lambda s: s.identify("c-2", email="b@example.com")),
    ("hostile metadata", {"customer_id": "c-1", "metadata": 5}, lambda s: None),
]


@pytest.mark.parametrize(("label", "options", "fill"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("ambient", [None, "c-1", "c-9"])
def test_the_gate_exit_equals_record(
    label: str, options: dict[str, Any], fill: Callable[[Span], None], ambient: str | None
) -> None:
    outcomes = []
    for gate_open in (True, False):
        sender = DraftSender()
        tracker = Tracker(sender)
        assert tracker.gate is not None
        if not gate_open:
            tracker.gate = None  # closed: the general path (tracker.record)
        events = []
        for _ in range(2):
            outer = identify(ambient, email="amb@example.com", session_token="s")
            with outer if ambient else _nothing(), tracker.span("e", **options) as s:
                fill(s)
            events.append(s.event)
        stats = tracker.stats
        outcomes.append(
            (
                [d._replace(timestamp=0.0) for d in sender.drafts],
                [e if e is None else e._replace(timestamp=0.0) for e in events],
                dict(stats.dropped),
            )
        )
    assert outcomes[0] == outcomes[1]


def test_the_gate_exit_hands_the_draft_to_the_gate() -> None:
    sender = DraftSender()
    tracker = Tracker(sender)
    taken: list[Any] = []
    tracker.gate = lambda draft: taken.append(draft) or True
    with tracker.span("e", customer_id="c-1") as s:
        s.set("a", 1)
    assert taken == [s.event]
    assert s.event is not None
    assert (s.event.name, s.event.customer_id, s.event.keys, s.event.values) == (
        "e",
        "c-1",
        ("a",),
        (1,),
    )
    assert sender.drafts == []  # the gate is the whole of submit


def test_a_refusing_gate_leaves_no_event() -> None:
    tracker = Tracker(DraftSender())
    tracker.gate = lambda draft: False
    with tracker.span("e", customer_id="c-1") as s:
        pass
    assert s.event is None


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


SLOTS = (
    "name",
    "customer_id",
    "email",
    "mobile",
    "session_token",
    "metadata",
    "cancelled",
    "event",
)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"customer_id": "c-1", "email": "a@example.com", "metadata": {"a": 1}},
        {"mobile": "+201234567890", "session_token": None, "on": "always"},
        {"metadata": 5},  # hostile: counted at the end
    ],
)
def test_tracker_span_opens_the_span_the_class_opens(options: dict[str, Any]) -> None:
    class FastTracker(Tracker):
        span = tracker_span  # type: ignore[assignment]

    sender = DraftSender()
    spans = [Tracker(sender).span("e", **options), FastTracker(sender).span("e", **options)]
    assert type(spans[1]) is Span
    by_class, by_function = ([getattr(s, a) for a in SLOTS] for s in spans)
    assert by_class == by_function
    outcomes = []
    for s in spans:
        with s:
            pass
        outcomes.append(None if s.event is None else s.event._replace(timestamp=0.0))
    assert outcomes[0] == outcomes[1]


def test_tracker_span_refuses_what_the_class_refuses() -> None:
    with pytest.raises(GbtrackError, match="on must be") as by_class:
        Span("e", on="never")  # type: ignore[arg-type]
    with pytest.raises(GbtrackError, match="on must be") as by_function:
        tracker_span(Tracker(DraftSender()), "e", on="never")  # type: ignore[arg-type]
    assert str(by_class.value) == str(by_function.value)


def test_spans_setting_the_same_keys_share_one_key_tuple() -> None:
    sender = DraftSender()
    tracker = Tracker(sender)
    for n in range(3):
        with tracker.span("e", customer_id="c-1") as s:
            s.set("a", n)
            s.set("b", "x")
    with tracker.span("e", customer_id="c-1") as s:  # the same keys, another order
        s.set("b", "y")
        s.set("a", 9)
    with tracker.span("e", customer_id="c-1") as s:
        s.set(Key("b"), "z")  # equal to the last plain keys: sent as the plain str
        s.set("a", 8)
    first, second, third, swapped, subclassed = sender.drafts
    assert first.keys == ("a", "b")
    assert second.keys is first.keys
    assert third.keys is first.keys
    assert (swapped.keys, swapped.values) == (("b", "a"), ("y", 9))
    assert subclassed.keys is swapped.keys
    assert [type(k) for k in subclassed.keys] == [str, str]
    assert subclassed.values == ("z", 8)
