"""The background sender's queue and its books, driven directly (no worker thread).

Cases mutation testing found unpinned (``nox -s mutate``): what a drain takes and
holds, when a flush is settled, how overflow waits, spills, drops and reports.
Blocking calls run in a thread with a bound, so that a wait that never ends fails the
test instead of hanging it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from tests.senders import bounded, event

from gbtrack import TrackingError
from gbtrack._event import Event, EventDraft, as_draft
from gbtrack._report import Reporter
from gbtrack.senders import _queue
from gbtrack.senders._queue import EventQueue


class Clock:
    """A synthetic ``time`` for the overflow throttle: moves only when told."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


def make(
    capacity: int = 10,
    *,
    overflow: Any = "drop_newest",
    block_timeout: float = 0.0,
    spill: Callable[[Event | EventDraft], bool] = lambda e: False,
    errors: list[TrackingError] | None = None,
) -> EventQueue:
    reporter = Reporter(on_error=errors.append if errors is not None else None)
    return EventQueue(capacity, 5, overflow, block_timeout, reporter, spill)


def fill(q: EventQueue, n: int, start: int = 0) -> list[Event]:
    events = [event(f"e{i}", f"c-{i}") for i in range(start, start + n)]
    q.items.extend(events)
    return events


# --- taking and settling -------------------------------------------------------------------
def test_take_pops_up_to_the_limit_in_order_and_marks_the_drain() -> None:
    q = make(10)
    events = fill(q, 7)
    items, mark = q.take(3)
    assert items == events[:3]
    assert mark == 0
    assert len(q) == 4
    items, mark = q.take(10)  # fewer queued than the limit: all of them
    assert items == events[3:]
    assert mark == 3  # the send ordinal of this drain's first event
    assert len(q) == 0


def test_taken_events_count_against_capacity_until_settled() -> None:
    q = make(10)
    fill(q, 6)
    assert q.full_at == 10
    _, mark = q.take(4)
    assert q.held == 4
    assert q.full_at == 6
    q.settle(3, [mark])
    assert q.held == 1
    assert q.full_at == 9
    assert q.settled == 3
    q.settle(1)
    assert q.full_at == 10


def test_take_all_empties_the_queue_and_holds_everything() -> None:
    q = make(10)
    events = fill(q, 4)
    q.take(1)
    assert q.take_all() == events[1:]
    assert len(q) == 0
    assert q.held == 4
    assert q.full_at == 6
    assert q.flush_target() is not None  # taken and unsettled: not flushed


def test_claim_abandon_goes_to_the_first_caller_only() -> None:
    q = make()
    assert q.claim_abandon() is True
    assert q.claim_abandon() is False


# --- flush ---------------------------------------------------------------------------------
def test_an_idle_queue_is_flushed_already() -> None:
    q = make()
    assert q.flush_target() is None
    assert q.flush_waiters == 0


def test_queued_events_make_a_flush_wait_for_them() -> None:
    q = make()
    fill(q, 3)
    assert q.flush_target() == 3
    assert q.flush_waiters == 1
    assert not q.flushed(3)


def test_a_flush_waits_for_every_job_of_the_drain() -> None:
    q = make()
    fill(q, 4)
    target = q.flush_target()
    assert target == 4
    _, mark = q.take(4)
    q.add_jobs(mark, 2)  # two requests made of this drain
    q.add_jobs(mark, 0)  # none more
    q.settle(0, [mark])  # the placeholder goes
    assert not q.flushed(target)
    q.settle(2, [mark])  # the first request ends
    assert not q.flushed(target)
    q.settle(2, [mark])  # the second
    assert q.flushed(target)
    assert q.wait_flushed(target, 0.0, lambda: False) is True
    assert q.flush_waiters == 0


def test_a_later_drain_does_not_hold_back_an_earlier_flush() -> None:
    q = make()
    fill(q, 2)
    target = q.flush_target()
    assert target == 2
    _, first = q.take(2)
    fill(q, 3, start=2)
    _, later = q.take(3)
    assert later == 2
    q.settle(2, [first])
    assert q.flushed(target)  # the later drain's job (mark 2) is not waited for
    assert not q.flushed(later + 3)


def test_a_flush_waits_for_events_queued_but_not_taken() -> None:
    q = make()
    fill(q, 2)
    _, mark = q.take(1)
    q.settle(1, [mark])
    assert not q.flushed(2)  # one queued event not yet taken
    _, mark = q.take(1)
    q.settle(1, [mark])
    assert q.flushed(2)


def test_wait_flushed_wakes_when_the_worker_settles() -> None:
    q = make()
    fill(q, 1)
    target = q.flush_target()
    assert target is not None
    _, mark = q.take(1)
    timer = threading.Timer(0.05, q.settle, (1, [mark]))
    timer.start()
    done, _ = bounded(lambda: q.wait_flushed(target, 10.0, lambda: False))
    timer.join()
    assert done is True
    assert q.flush_waiters == 0


def test_wait_flushed_gives_up_at_its_timeout() -> None:
    q = make()
    fill(q, 1)
    target = q.flush_target()
    assert target is not None
    done, took = bounded(lambda: q.wait_flushed(target, 0.05, lambda: False))
    assert done is False
    assert took >= 0.04
    assert q.flush_waiters == 0


def test_wait_flushed_returns_false_when_told_to_stop() -> None:
    q = make()
    fill(q, 1)
    target = q.flush_target()
    assert target is not None
    stop = threading.Event()

    def stop_later() -> None:
        stop.set()
        q.wake_flushers()

    timer = threading.Timer(0.05, stop_later)
    timer.start()
    done, took = bounded(lambda: q.wait_flushed(target, 10.0, stop.is_set))
    timer.join()
    assert done is False
    assert took < 5.0
    assert q.flush_waiters == 0


def test_a_stop_wins_over_a_settled_flush() -> None:
    q = make()
    assert q.wait_flushed(0, 0.0, lambda: True) is False


# --- overflow ------------------------------------------------------------------------------
def test_drop_newest_counts_and_reports_the_dropped_event() -> None:
    errors: list[TrackingError] = []
    q = make(2, errors=errors)
    fill(q, 2)
    extra = event("late", "c-9")
    assert q.make_room(extra, lambda: False, lambda: None) is False
    assert q.reporter.dropped("queue_overflow") == 1
    assert len(errors) == 1
    assert errors[0].reason == "queue_overflow"
    assert errors[0].event is extra
    assert str(errors[0]) == "queue full (2 events held); 1 event(s) dropped, the latest 'late'"
    assert q.overflow_pending == 0


def test_a_spilled_overflow_is_not_dropped() -> None:
    spilled: list[Event | EventDraft] = []
    q = make(1, spill=lambda e: spilled.append(e) or True)
    fill(q, 1)
    extra = event("late")
    assert q.make_room(extra, lambda: False, lambda: None) is False
    assert spilled == [extra]
    assert q.reporter.dropped("queue_overflow") == 0
    assert q.overflow_pending == 0


def test_overflow_reports_are_throttled_but_every_drop_is_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock(0.0)
    monkeypatch.setattr(_queue, "time", SimpleNamespace(monotonic=clock.monotonic))
    errors: list[TrackingError] = []
    q = make(1, errors=errors)
    fill(q, 1)
    q.make_room(event("a"), lambda: False, lambda: None)  # the first drop reports at once
    assert len(errors) == 1
    clock.now = 4.9
    q.make_room(event("b"), lambda: False, lambda: None)
    q.make_room(event("c"), lambda: False, lambda: None)
    assert len(errors) == 1  # within the interval: counted, not yet reported
    assert q.overflow_pending == 2
    clock.now = 5.0
    q.report_overflow(force=False)  # the interval has passed
    assert len(errors) == 2
    assert "2 event(s) dropped, the latest 'c'" in str(errors[1])
    assert q.reporter.dropped("queue_overflow") == 3
    q.make_room(event("d"), lambda: False, lambda: None)
    assert len(errors) == 2
    q.report_overflow(force=True)  # closing: report what is pending now
    assert len(errors) == 3
    q.report_overflow(force=True)  # nothing pending: nothing reported
    assert len(errors) == 3
    assert q.reporter.dropped("queue_overflow") == 4


def test_an_overflowed_draft_is_reported_without_an_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    errors: list[TrackingError] = []
    q = make(1, errors=errors)
    fill(q, 1)
    draft = EventDraft("signup", "c-1", None, None, None, (), (), None, time.time())
    with caplog.at_level(logging.WARNING, logger="gbtrack"):
        q.make_room(draft, lambda: False, lambda: None)
    assert errors[0].event is None
    assert "the latest 'signup'" in str(errors[0])


def test_block_waits_for_room_the_worker_makes() -> None:
    q = make(2, overflow="block", block_timeout=10.0)
    fill(q, 2)
    nudges: list[int] = []

    def nudge() -> None:
        nudges.append(1)

    def worker() -> None:
        _, mark = q.take(1)
        q.settle(1, [mark])  # delivered: room for one more
        q.wake_blocked()

    timer = threading.Timer(0.05, worker)
    timer.start()
    room, took = bounded(lambda: q.make_room(event("x"), lambda: False, nudge))
    timer.join()
    assert room is True
    assert took < 5.0
    assert nudges  # the worker was woken to make room
    assert q.reporter.dropped("queue_overflow") == 0
    assert q.blocked == 0


def test_block_times_out_then_drops() -> None:
    q = make(1, overflow="block", block_timeout=0.05)
    fill(q, 1)
    room, took = bounded(lambda: q.make_room(event("x"), lambda: False, lambda: None))
    assert room is False
    assert 0.04 <= took < 5.0
    assert q.reporter.dropped("queue_overflow") == 1
    assert q.blocked == 0


def test_block_gives_up_when_the_sender_closes() -> None:
    q = make(1, overflow="block", block_timeout=30.0)
    fill(q, 1)
    room, took = bounded(lambda: q.make_room(event("x"), lambda: True, lambda: None))
    assert room is False
    assert took < 5.0
    assert q.reporter.dropped("queue_overflow") == 1


def test_block_with_room_already_returns_at_once() -> None:
    q = make(2, overflow="block", block_timeout=30.0)
    fill(q, 2)
    _, mark = q.take(1)
    q.settle(1, [mark])
    room, took = bounded(lambda: q.make_room(event("x"), lambda: True, lambda: None))
    assert room is True
    assert took < 5.0


def test_block_without_a_timeout_drops_at_once() -> None:
    q = make(1, overflow="block", block_timeout=0.0)
    fill(q, 1)
    _, mark = q.take(1)
    q.settle(1, [mark])  # room now, but a zero timeout never waits or looks
    assert q.make_room(event("x"), lambda: False, lambda: None) is False
    assert q.reporter.dropped("queue_overflow") == 1


def test_a_blocked_sender_is_counted_while_it_waits() -> None:
    q = make(1, overflow="block", block_timeout=10.0)
    fill(q, 1)
    waiting = threading.Event()
    thread = threading.Thread(
        target=q.make_room, args=(event("x"), lambda: False, waiting.set), daemon=True
    )
    thread.start()
    assert waiting.wait(10)
    deadline = time.monotonic() + 10
    while q.blocked != 1 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert q.blocked == 1
    _, mark = q.take(1)
    q.settle(1, [mark])
    q.wake_blocked()
    thread.join(10)
    assert not thread.is_alive()
    assert q.blocked == 0


def test_a_second_drain_adds_to_what_is_held() -> None:
    q = make(10)
    fill(q, 6)
    q.take(2)
    _, mark = q.take(3)
    assert mark == 2
    assert q.held == 5
    assert q.full_at == 5


def test_every_flush_waiting_is_counted() -> None:
    q = make()
    fill(q, 2)
    first, second = q.flush_target(), q.flush_target()
    assert first == second == 2
    assert q.flush_waiters == 2
    assert q.wait_flushed(2, 0.0, lambda: False) is False
    assert q.flush_waiters == 1


def test_two_blocked_senders_are_both_counted_until_each_leaves() -> None:
    q = make(1, overflow="block", block_timeout=10.0)
    fill(q, 1)
    threads = [
        threading.Thread(target=q.make_room, args=(event("x"), lambda: False, lambda: None))
        for _ in range(2)
    ]
    for thread in threads:
        thread.daemon = True
        thread.start()
    deadline = time.monotonic() + 10
    while q.blocked != 2 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert q.blocked == 2
    _, mark = q.take(1)
    q.settle(1, [mark])
    q.wake_blocked()  # both see room (neither appends here): both leave
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()
    assert q.blocked == 0


# --- the inlets: the gate's limit, its count, the item named in messages ------------------
def draft(name: str) -> EventDraft:
    return EventDraft(name, "c-1", None, None, None, (), (), None, 1.7e9)


def fields(name: str) -> tuple[object, ...]:
    """A draft's fields as a plain tuple: what the generated wrappers hand the gate."""
    return tuple(draft(name))


def _inlet(q: EventQueue, overs: list[object] | None = None) -> _queue.Inlet:
    inlet = _queue.Inlet(lambda: None, (overs if overs is not None else []).append)
    q.inlets.append(inlet)
    return inlet


def test_the_gate_appends_and_takes_its_slow_path_at_the_limit() -> None:
    overs: list[object] = []
    inlet = _inlet(make(), overs)
    assert inlet.gate(fields("a")) is True  # the first draft reaches the first limit, 1
    assert overs == [inlet]
    inlet.set_limit(3)
    assert inlet.gate(fields("b")) is True
    assert overs == [inlet]  # 2 < 3
    inlet.gate(fields("c"))
    assert overs == [inlet, inlet]  # 3 reached
    assert [as_draft(e).name for e in inlet.items] == ["a", "b", "c"]


def test_an_inlet_counts_each_draft_once() -> None:
    counted: list[None] = []
    inlet = _queue.Inlet(lambda: counted.append(None), lambda _: None)
    inlet.count(0)
    assert counted == []
    inlet.count(3)
    assert len(counted) == 3


def test_limit_for_an_idle_queue_is_its_first_draft() -> None:
    q = make(100)  # batch_size 5
    inlet = _inlet(q)
    assert q.limit_for(inlet) == 1
    inlet.items.append(fields("a"))
    assert q.limit_for(inlet) == 1 + 5  # then a full batch


def test_limit_for_completes_the_batch_queued_or_waits_for_the_next() -> None:
    q = make(100)
    inlet = _inlet(q)
    fill(q, 2)
    assert q.limit_for(inlet) == 3  # 2 queued: 3 more make a batch of 5
    fill(q, 5, start=2)
    assert q.limit_for(inlet) == 5  # a batch is queued already: the next one


def test_limit_for_keeps_each_inlet_to_its_share_of_the_room() -> None:
    q = make(100)
    inlets = [_inlet(q) for _ in range(4)]
    inlets[0].items.append(fields("a"))
    q.held = 90  # room: 100 - 90 - 1 = 9, a share of 9 // 4 = 2
    assert q.limit_for(inlets[0]) == 1 + 2
    q.held = 97  # room 2, a share of 0: at least the next draft
    assert q.limit_for(inlets[0]) == 1 + 1


def test_limit_for_a_full_queue_is_the_next_draft() -> None:
    q = make(10)
    inlet = _inlet(q)
    fill(q, 4)
    inlet.items.append(fields("a"))
    q.held = 5  # room 10 - 5 - 5 = 0
    assert q.limit_for(inlet) == 2
    q.held = 7  # room below zero
    assert q.limit_for(inlet) == 2


def test_an_item_is_named_by_its_event_name_or_its_order_id() -> None:
    assert _queue._what(event("purchase")) == "'purchase'"
    assert _queue._what(SimpleNamespace(order_id="o-1")) == "order 'o-1'"
    assert _queue._what(object()) == "order '?'"


def test_limit_for_with_exactly_a_batch_queued_waits_for_the_next_batch() -> None:
    q = make(100)  # batch_size 5
    inlet = _inlet(q)
    fill(q, 5)
    assert q.limit_for(inlet) == 5  # not 1: a batch is ready, the next one is due


def test_gather_moves_every_inlet_in_order_and_counts_each_draft() -> None:
    q = make(100)
    counted: list[int] = []
    first = _queue.Inlet(lambda: counted.append(1), lambda _: None)
    second = _queue.Inlet(lambda: counted.append(2), lambda _: None)
    q.inlets.extend([first, second])
    fill(q, 1)
    first.items.extend([fields("a"), draft("b")])  # both forms
    second.items.append(fields("c"))
    q.gather()
    assert [e.name for e in q.items] == ["e0", "a", "b", "c"]
    assert [type(e) for e in list(q.items)[1:]] == [EventDraft] * 3  # made on gathering
    assert counted == [1, 1, 2]
    assert not first.items
    assert not second.items


def test_gather_trims_what_exceeds_the_capacity_counting_what_is_held() -> None:
    spilled: list[Event | EventDraft] = []
    q = make(10, spill=lambda e: spilled.append(e) or True)
    inlet = _inlet(q)
    fill(q, 3)
    q.held = 2
    inlet.items.extend([fields(f"d{i}") for i in range(6)])  # 3 + 6 + 2 held: 1 too many
    q.gather()
    assert [e.name for e in spilled] == ["d5"]  # the newest
    assert len(q.items) == 8
    inlet.items.append(fields("d6"))  # 8 + 1 + 2 held = 11
    q.held = 1  # 8 + 1 + 1 = 10: exactly full, nothing trimmed
    q.gather()
    assert [e.name for e in spilled] == ["d5"]
    assert len(q.items) == 9


def test_gather_trims_the_newest_in_their_order() -> None:
    spilled: list[Event | EventDraft] = []
    q = make(3, spill=lambda e: spilled.append(e) or True)
    inlet = _inlet(q)
    inlet.items.extend([fields(f"d{i}") for i in range(6)])
    q.gather()
    assert [e.name for e in q.items] == ["d0", "d1", "d2"]
    assert [e.name for e in spilled] == ["d3", "d4", "d5"]  # reported oldest first


def test_arm_sets_each_limit_and_says_whether_the_worker_may_sleep() -> None:
    q = make(100)
    assert q.arm() is True  # no inlets: nothing can arrive unseen
    overs: list[object] = []
    inlet = _inlet(q, overs)
    inlet.set_limit(50)
    assert q.arm() is True  # idle: the limit is the first draft again
    inlet.gate(fields("a"))
    assert overs == [inlet]
    assert q.arm() is False  # a draft came meanwhile: look again before sleeping
    q.gather()
    # Queued (not dispatched: rate limit, busy customer): the worker's own timers wake it,
    # even with drafts in an inlet (their gate's limit is set: a batch's worth wakes it).
    assert q.arm() is True
    inlet.gate(fields("b"))
    assert q.arm() is True
