"""The tracker as a pipeline: one settings value, a route compiled per configuration, and
the sender contract (attach(link) -> SenderTraits) instead of probes."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import time
from collections.abc import Callable
from typing import Any

import pytest

import gbtrack
from gbtrack import (
    ConfigurationError,
    Event,
    EventDraft,
    InMemorySender,
    Limits,
    Stats,
    Tracker,
    TrackerSettings,
    TrackingError,
)
from gbtrack._state import bind_transaction, unbind_transaction
from gbtrack.senders import (
    AttachableSender,
    BaseSender,
    DirectSender,
    SenderTraits,
    TrackerLink,
)
from gbtrack.testing import capture_events


class DraftSender(BaseSender):
    """Takes drafts; its gate is one bound method that counts through the link."""

    accepts_drafts = True

    def __init__(self) -> None:
        super().__init__()
        self.items: list[Event | EventDraft] = []
        self.links: list[TrackerLink] = []
        self._count: Callable[[], None] = lambda: None

    def attach(self, link: TrackerLink) -> SenderTraits:
        self.links.append(link)
        self._count = link.count_sent
        return super().attach(link)

    def fast_entry(self, link: TrackerLink) -> Callable[[EventDraft], bool]:
        return self.accept

    def accept(self, draft: EventDraft) -> bool:
        self.items.append(draft)
        self._count()
        return True

    def send(self, event: Event | EventDraft) -> None:  # type: ignore[override]
        self.items.append(event)

    def stats(self) -> Stats:
        # A sender that keeps its own "sent": the tracker must not add it to its own.
        return Stats(sent=999, delivered=len(self.items))


class PlainSender:
    """The bare protocol: no attach(), no stats(), no hand_over()."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.closed = False

    def send(self, event: Event) -> None:
        self.events.append(event)

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def close(self, timeout: float | None = None) -> bool:
        self.closed = True
        return True


# --- one settings value ----------------------------------------------------------------------


def test_the_settings_are_one_frozen_read_only_value() -> None:
    hook: Callable[[Event], Event | None] = lambda e: e  # noqa: E731
    tracker = Tracker(
        InMemorySender(), strict=True, limits=Limits(max_string_length=9), before_send=hook
    )
    settings = tracker.settings
    assert settings == TrackerSettings(
        strict=True, limits=Limits(max_string_length=9), before_send=hook
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.strict = False  # type: ignore[misc]
    with pytest.raises(AttributeError):
        tracker.settings = TrackerSettings()  # type: ignore[misc]
    assert hash(settings) == hash(dataclasses.replace(settings))


def test_every_way_of_configuring_makes_a_new_value() -> None:
    tracker = Tracker(InMemorySender())
    seen = [tracker.settings]

    def changed() -> TrackerSettings:
        assert tracker.settings is not seen[-1]
        seen.append(tracker.settings)
        return tracker.settings

    tracker.strict = True
    assert changed().strict
    tracker.configure(debug=True, sample={"a": 0.5})
    assert (changed().debug, dict(tracker.settings.sample)) == (True, {"a": 0.5})
    tracker.debug = False
    tracker.enabled = False  # a plain attribute for call sites, written through the settings
    assert not changed().enabled
    assert vars(tracker)["enabled"] is False
    tracker.configure()  # nothing given: nothing changes
    assert tracker.settings is seen[-1]
    assert [s.strict for s in seen] == [False, True, True, True]


def test_configure_keeps_what_is_left_out_and_none_removes_the_hooks() -> None:
    errors: list[TrackingError] = []
    hook: Callable[[Event], Event | None] = lambda e: e  # noqa: E731
    tracker = Tracker(InMemorySender(), on_error=errors.append, before_send=hook)
    tracker.configure(strict=True)
    assert (tracker.on_error, tracker.before_send) == (errors.append, hook)
    tracker.configure(on_error=None, before_send=None)
    assert (tracker.on_error, tracker.before_send) == (None, None)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"before_send": 42}, ConfigurationError, "before_send must be callable, got int"),
        ({"sample": {"": 0.5}}, ConfigurationError, "sample keys must be event names"),
        ({"sample": {"a": 2}}, ConfigurationError, r"sample\['a'\] must be a number from 0 to 1"),
        ({"sample": {"a": True}}, ConfigurationError, "must be a number"),
        ({"limits": {"max_string_length": 3}}, TypeError, "limits must be a gbtrack.Limits"),
    ],
)
def test_every_way_in_validates_alike(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    ((name, value),) = options.items()
    with pytest.raises(error, match=message):
        TrackerSettings(**options)
    with pytest.raises(error, match=message):
        Tracker(InMemorySender(), **options)
    tracker = Tracker(InMemorySender())
    before = tracker.settings
    with pytest.raises(error, match=message):
        tracker.configure(**options)
    with pytest.raises(error, match=message):
        setattr(tracker, name, value)
    assert tracker.settings is before  # nothing half-applied


def test_invalid_settings_are_refused_before_a_sender_is_built() -> None:
    tracker = Tracker(InMemorySender())
    sender = tracker.sender
    with pytest.raises(ConfigurationError, match="before_send"):
        tracker.configure(api_key="k", base_url="http://127.0.0.1:9", before_send=1)  # type: ignore[arg-type]
    assert tracker.sender is sender


def test_use_settings_swaps_the_whole_value_and_returns_the_previous_one() -> None:
    tracker = Tracker(InMemorySender(), sample={"a": 0.0})
    saved = tracker.settings
    previous = tracker.use_settings(TrackerSettings(strict=True, debug=True))
    assert previous is saved
    assert (tracker.strict, tracker.debug, tracker.sample) == (True, True, {})
    tracker.use_settings(saved)
    assert tracker.settings is saved
    assert not tracker.debug
    with pytest.raises(TypeError, match="expected a TrackerSettings"):
        tracker.use_settings({"strict": True})  # type: ignore[arg-type]


def test_capture_events_gives_back_enabled_and_strict_only() -> None:
    tracker = Tracker(InMemorySender(), enabled=False)
    with capture_events(tracker, strict=True) as events:
        assert (tracker.enabled, tracker.strict) == (True, True)
        tracker.configure(sample={"a": 0.5})
        tracker.emit("e", customer_id="c-1")
    assert [e.name for e in events] == ["e"]
    assert (tracker.enabled, tracker.strict, tracker.sample) == (False, False, {"a": 0.5})


# --- the route, compiled once per configuration ------------------------------------------------


def _hook(event: Event) -> Event | None:
    return event


@pytest.mark.parametrize(
    ("make", "options", "route", "gate_open"),
    [
        (DraftSender, {}, ("send",), True),
        (DraftSender, {"before_send": _hook}, ("send",), True),  # applied by the sender
        (DraftSender, {"sample": {"a": 1.0}}, ("send",), True),  # samples nothing out
        (DraftSender, {"strict": True}, ("validate", "send"), False),
        (DraftSender, {"strict_plan": True}, ("plan check", "send"), False),
        (DraftSender, {"sample": {"a": 0.5}}, ("sample", "send"), False),
        (DraftSender, {"debug": True}, ("debug log", "send"), False),
        (InMemorySender, {}, ("validate", "send"), False),
        (InMemorySender, {"before_send": _hook}, ("validate", "before send", "send"), False),
        (PlainSender, {"before_send": _hook}, ("validate", "before send", "send"), False),
        (
            InMemorySender,
            {"strict_plan": True, "sample": {"a": 0.5}, "before_send": _hook, "debug": True},
            ("plan check", "sample", "validate", "before send", "debug log", "send"),
            False,
        ),
    ],
)
def test_one_compile_decides_the_route_and_the_gate(
    make: Callable[[], Any], options: dict[str, Any], route: tuple[str, ...], gate_open: bool
) -> None:
    tracker = Tracker(make(), **options)
    try:
        assert tracker.route == route
        assert (tracker.gate is not None) is gate_open
    finally:
        tracker.debug = False


def test_blocking_senders_and_first_use_are_steps_too() -> None:
    direct = DirectSender(api_key="k", base_url="http://127.0.0.1:9")
    try:
        assert Tracker(direct).route == ("blocking check", "validate", "send")
    finally:
        direct.close(0)
    assert Tracker().route == ("create the default sender",)


def test_the_gate_is_the_senders_own_entry_and_sent_is_counted_once() -> None:
    sender = DraftSender()
    tracker = Tracker(sender)
    assert tracker.gate == sender.accept  # a bound method of the sender: no wrapper
    draft = EventDraft("e", "c-1", None, None, None, (), (), None, time.time())
    assert tracker.submit(draft) is True
    tracker.emit("e", customer_id="c-2")
    stats = tracker.stats
    assert (stats.sent, stats.delivered) == (2, 2)  # the sender's own sent=999 is left out
    tracker.configure(strict=True)  # the route now validates, then calls send()
    tracker.emit("e", customer_id="c-3")
    assert tracker.stats.sent == 3
    assert [type(item) for item in sender.items] == [EventDraft] * 3


class Customer:
    def __init__(self, cid: str) -> None:
        self.id = cid


def test_the_wrappers_hand_a_gate_drafts_unless_it_takes_fields() -> None:
    """``fields_gate``: the generated wrappers' entry. A sender's gate that says it takes a
    draft's fields gets the plain tuple (it makes the draft later); any other gate gets
    the ``EventDraft`` the tracker makes, through the one entry in between."""
    sender = DraftSender()
    tracker = Tracker(sender)

    @tracker.track("e", customer_id="customer.id")
    def f(customer: Customer) -> None: ...

    assert tracker.fields_gate is not None
    assert tracker.fields_gate is not tracker.gate  # it makes the draft, then the gate
    f(Customer("c-1"))
    assert [type(item) for item in sender.items] == [EventDraft]
    assert sender.items[0].customer_id == "c-1"

    class FieldsSender(DraftSender):
        def fields_entry(self, gate: Any) -> Any:
            return gate  # accept() keeps whatever it is given

    fields = FieldsSender()
    tracker.sender = fields
    assert tracker.fields_gate == fields.accept
    f(Customer("c-2"))
    (item,) = fields.items
    assert type(item) is tuple
    assert EventDraft._make(item).customer_id == "c-2"  # the nine fields, in order
    assert tracker.stats.sent == 2  # one through each sender's gate
    tracker.configure(strict=True)  # something to do on the way: no gate at all
    assert (tracker.gate, tracker.fields_gate) == (None, None)
    f(Customer("c-3"))  # the general path: validated, then the draft to send()
    assert type(fields.items[-1]) is EventDraft


def test_the_gate_closes_while_a_binding_is_open_and_opens_again() -> None:
    inserted: list[Event] = []

    class Binding:
        def binds(self, tracker: object) -> bool:
            return True

        def insert(self, event: Event) -> None:
            inserted.append(event)

    sender = DraftSender()
    tracker = Tracker(sender)
    token = bind_transaction(Binding())
    try:
        assert tracker.gate is None
        tracker.emit("bound", customer_id="c-1")
    finally:
        unbind_transaction(token)
    assert tracker.gate == sender.accept
    tracker.emit("free", customer_id="c-1")
    assert [e.name for e in inserted] == ["bound"]
    assert [d.name for d in sender.items] == ["free"]
    assert tracker.stats.sent == 2


def test_a_sender_raising_behind_the_default_entry_is_a_counted_drop() -> None:
    class Raising(BaseSender):
        accepts_drafts = True

        def send(self, event: Any) -> None:
            raise OSError("disk full")

    errors: list[TrackingError] = []
    tracker = Tracker(Raising(), on_error=errors.append)
    assert tracker.gate is not None
    assert tracker.emit("e", customer_id="c-1") is None
    assert tracker.stats.dropped == {"sender_error": 1}
    assert tracker.stats.sent == 0
    assert "Raising.send raised OSError" in str(errors[0])


# --- the sender contract ---------------------------------------------------------------------


def test_the_link_is_given_again_when_limits_or_the_hook_change() -> None:
    sender = DraftSender()
    tracker = Tracker(sender)
    assert len(sender.links) == 1
    assert sender.links[0].before_send is None
    tracker.strict = True  # nothing the sender is given: no new link
    tracker.debug = True
    tracker.debug = False
    assert len(sender.links) == 1
    tracker.limits = Limits(max_string_length=5)
    tracker.before_send = _hook
    assert len(sender.links) == 3
    assert sender.limits is tracker.limits
    assert sender.before_send is sender.links[-1].before_send is not None
    tracker.before_send = None
    assert sender.before_send is None


def test_a_sender_without_a_hook_reports_to_the_trackers_current_one() -> None:
    first: list[TrackingError] = []
    second: list[TrackingError] = []
    sender = InMemorySender()
    tracker = Tracker(sender, on_error=first.append)
    sender.close()
    tracker.emit("e", customer_id="c-1")
    tracker.on_error = second.append
    tracker.emit("e", customer_id="c-1")
    assert [len(first), len(second)] == [1, 1]
    assert tracker.stats.dropped == {"closed": 2}


def test_a_plain_sender_gets_events_and_is_closed_when_replaced() -> None:
    plain = PlainSender()
    assert not isinstance(plain, AttachableSender)
    tracker = Tracker(plain, before_send=_hook)
    tracker.emit("e", customer_id="c-1")
    assert [type(e) for e in plain.events] == [Event]
    assert tracker.stats == Stats(sent=1)  # nothing of the sender's to merge
    tracker.configure(sender=InMemorySender())
    assert plain.closed


def test_hand_over_is_declared_and_used_when_a_sender_is_replaced() -> None:
    handed: list[tuple[object, float | None]] = []

    class Holding(InMemorySender):
        def hand_over(self, successor: gbtrack.Sender, timeout: float | None = None) -> bool:
            handed.append((successor, timeout))
            return True

    old, new = Holding(), InMemorySender()
    tracker = Tracker(old)
    tracker.configure(sender=new)
    assert handed == [(new, 5.0)]
    assert not old.closed  # handing over is the sender's business


async def test_a_blocking_custom_sender_warns_once_on_an_event_loop() -> None:
    class Slow(InMemorySender):
        blocking = True

    tracker = Tracker(Slow())
    assert tracker.route[0] == "blocking check"
    with pytest.warns(RuntimeWarning, match=r"Slow\.send\(\) blocks"):
        tracker.emit("e", customer_id="c-1")
    tracker.emit("e", customer_id="c-1")  # once per sender
    await asyncio.sleep(0)
    assert len(tracker.sender) == 2


# --- the module-level configure ----------------------------------------------------------------


def test_module_configure_takes_the_methods_parameters_and_acts_on_the_default() -> None:
    method = inspect.signature(Tracker.configure)
    function = inspect.signature(gbtrack.configure)
    assert list(function.parameters) == list(method.parameters)[1:]
    assert function.return_annotation == method.return_annotation
    assert "arguments left out keep their value" in (gbtrack.configure.__doc__ or "").lower()
    other = Tracker(InMemorySender())
    previous = gbtrack.set_tracker(other)
    try:
        assert gbtrack.configure(strict=True) is other  # the default of the moment
        assert (other.strict, previous.strict) == (True, False)
    finally:
        gbtrack.set_tracker(previous)


def test_a_sender_written_from_the_contract_alone() -> None:
    """No BaseSender: attach() declares drafts and stats, and no gate of its own."""

    class Minimal(PlainSender):
        def __init__(self) -> None:
            super().__init__()
            self.drafts: list[EventDraft] = []
            self.link: TrackerLink | None = None

        def send(self, event: Any) -> None:
            self.drafts.append(event)

        def attach(self, link: TrackerLink) -> SenderTraits:
            self.link = link
            return SenderTraits(takes_drafts=True, stats=lambda: Stats(delivered=7))

    sender = Minimal()
    assert isinstance(sender, AttachableSender)
    tracker = Tracker(sender, limits=Limits(max_string_length=4))
    assert sender.link is not None
    assert sender.link.limits is tracker.limits
    assert tracker.gate is not None  # the tracker's own one-call entry to send()
    assert tracker.route == ("send",)
    tracker.emit("e", customer_id="c-1", metadata={"k": "longer than four"})
    assert [type(d) for d in sender.drafts] == [EventDraft]  # validated by the sender, later
    tracker.configure(sample={"x": 0.5}, before_send=_hook)
    assert tracker.route == ("sample", "validate", "before send", "send")  # hook not applied
    tracker.emit("e", customer_id="c-1")
    assert [type(d) for d in sender.drafts] == [EventDraft, Event]
    stats = tracker.stats
    assert (stats.sent, stats.delivered) == (2, 7)
    tracker.configure(sender=InMemorySender())
    assert sender.closed  # no hand_over declared: closed


# --- before_send's failures, as reported (found by mutation testing) -------------------------
@pytest.mark.parametrize("inline", [True, False])
def test_before_send_failures_name_the_event_the_function_and_the_cause(inline: bool) -> None:
    from gbtrack import Limits
    from gbtrack._pipeline import Books, run_before_send
    from gbtrack._report import Reporter

    errors: list[TrackingError] = []
    books = Books(Reporter(errors.append))
    event = Event(name="paid", customer_id="c-1", metadata={"note": "ok"})
    limits = Limits(max_string_length=3)
    boom = ValueError("no")

    def raises(e: Event) -> Event:
        raise boom

    def too_long(e: Event) -> Event:
        return e.model_copy(update={"metadata": {"note": "longer"}})

    def not_an_event(e: Event) -> object:
        return {"name": "paid"}

    for hook in (raises, too_long, not_an_event):
        got = run_before_send(hook, event, "shop.pay", limits, books, inline=inline)  # type: ignore[arg-type]
        assert got is None
    first, second, third = errors
    assert str(first) == "event 'paid' from shop.pay: the before_send hook raised ValueError"
    assert first.__cause__ is boom
    assert str(second).startswith(
        "event 'paid' from shop.pay: the event before_send returned is invalid: "
    )
    assert "Limits.max_string_length" in str(second)  # the tracker's limits, not the defaults
    assert str(third) == (
        "event 'paid' from shop.pay: before_send returned a dict, not a gbtrack.Event or None"
    )
    assert [e.reason for e in errors] == ["before_send_error", "invalid_event", "before_send_error"]
    assert {e.function for e in errors} == {"shop.pay"}
    assert books.reporter.snapshot().dropped == {"before_send_error": 2, "invalid_event": 1}


@pytest.mark.parametrize("takes_drafts", [True, False])
def test_a_raising_sender_behind_a_route_is_a_counted_drop_naming_it(takes_drafts: bool) -> None:
    """The slow route's sender leg (here: sampling on) fences send() as the gate does."""
    boom = RuntimeError("disk full")

    class Raising(InMemorySender):
        accepts_drafts = takes_drafts

        def send(self, event: Any) -> None:
            raise boom

    errors: list[TrackingError] = []
    tracker = Tracker(Raising(), sample={"other": 0.5}, on_error=errors.append)
    assert tracker.gate is None
    assert tracker.emit("paid", customer_id="c-1") is None  # dropped, not raised
    (error,) = errors
    assert error.reason == "sender_error"
    assert str(error) == "event 'paid': Raising.send raised RuntimeError"
    assert error.__cause__ is boom
    assert tracker.stats.dropped == {"sender_error": 1}
    assert tracker.stats.sent == 0
