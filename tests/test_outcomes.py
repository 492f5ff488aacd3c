"""``gbtrack._outcomes`` driven directly: each field of an outcome, and the hooks' rules.

The end-to-end behaviour is in tests/senders/test_outcomes_*.py (against the
emulator); these pin what mutation testing found unpinned: which field holds what,
which hook runs when, and that a raising hook is counted each time and logged once.
"""

from __future__ import annotations

import logging

import pytest

from gbtrack import DeliveryOutcome, Event, EventDraft
from gbtrack._event import attach_hook
from gbtrack._order import OrderDraft, order_draft
from gbtrack._outcomes import (
    OutcomeHooks,
    dropped_outcome,
    event_outcome,
    order_outcome,
    own_hook,
)
from gbtrack._report import Reporter

Outcomes = list[DeliveryOutcome]


def _draft(hook: object = None) -> EventDraft:
    fields = ("paid", "c-1", None, None, None, ("n",), (1,), "shop.pay", 1.0)
    return tuple.__new__(EventDraft, fields if hook is None else (*fields, hook))


def _order(hook: object = None) -> OrderDraft:
    return order_draft(
        customer_id="c-2", order_id="o-9", total_paid=5, function="shop.buy", now=1.0,
        on_outcome=hook,
    )  # fmt: skip


def test_an_event_outcome_holds_each_field() -> None:
    outcome = event_outcome(_draft(), "dropped", "rejected", "refused")
    assert outcome == DeliveryOutcome(
        "event", "dropped", "c-1", "paid", reason="rejected", error="refused", function="shop.pay"
    )
    assert dict(outcome.result) == {}
    assert outcome.duplicate is False
    event = Event(name="seen", customer_id="c-3")
    assert event_outcome(event, "delivered") == DeliveryOutcome("event", "delivered", "c-3", "seen")


def test_an_order_outcome_holds_each_field() -> None:
    answer = {"rewardedPoints": 5}
    outcome = order_outcome(_order(), "delivered", result=answer, duplicate=True)
    assert outcome == DeliveryOutcome(
        "order", "delivered", "c-2", "o-9", result=answer, duplicate=True, function="shop.buy"
    )
    dropped = order_outcome(_order(), "dropped", "duplicate", "seen before")
    assert (dropped.reason, dropped.error, dict(dropped.result), dropped.duplicate) == (
        "duplicate",
        "seen before",
        {},
        False,
    )


def test_a_drop_before_the_sender_is_told_with_what_is_known() -> None:
    hook: Outcomes = []
    assert dropped_outcome(("event", "paid", hook.append), "no_customer_id", "none", "f") == (
        DeliveryOutcome(
            "event", "dropped", "", "paid", reason="no_customer_id", error="none", function="f"
        )
    )
    assert dropped_outcome(("order", None, None), "resolver_error", "raised", None) == (
        DeliveryOutcome("order", "dropped", "", None, reason="resolver_error", error="raised")
    )
    assert dropped_outcome(_order(), "orders_unsupported", "no key", "ignored") == order_outcome(
        _order(), "dropped", "orders_unsupported", "no key"
    )
    assert dropped_outcome(_draft(), "invalid_event", "bad", "ignored") == event_outcome(
        _draft(), "dropped", "invalid_event", "bad"
    )


def test_an_items_own_hook_is_found_on_each_kind() -> None:
    hook: Outcomes = []
    assert own_hook(("event", "paid", hook.append)) == hook.append
    assert own_hook(("order", None, None)) is None
    assert own_hook(_order(hook.append)) == hook.append
    assert own_hook(_order()) is None
    assert own_hook(_draft(hook.append)) == hook.append
    assert own_hook(_draft()) is None
    event = Event(name="seen", customer_id="c-3")
    assert own_hook(event) is None
    attach_hook(event, hook.append)
    assert own_hook(event) == hook.append


def test_hooks_run_the_items_then_the_trackers_each_once() -> None:
    calls: list[tuple[str, DeliveryOutcome]] = []
    hooks = OutcomeHooks(lambda o: calls.append(("tracker", o)), Reporter())
    assert hooks.wants(None)
    assert hooks.wants_events()
    draft = _draft(lambda o: calls.append(("own", o)))
    hooks.settle_event(draft, "delivered")
    outcome = event_outcome(draft, "delivered")
    assert calls == [("own", outcome), ("tracker", outcome)]
    calls.clear()
    hooks.emit_own(lambda o: calls.append(("alone", o)), outcome)
    assert calls == [("alone", outcome)]  # the tracker's hook is not told


def test_the_trackers_hook_alone_hears_each_outcome_with_its_message() -> None:
    told: Outcomes = []
    hooks = OutcomeHooks(told.append, Reporter())
    hooks.settle_event(_draft(), "dropped", "rejected", "refused: 4001")  # no hook of its own
    (outcome,) = told
    assert (outcome.status, outcome.reason) == ("dropped", "rejected")
    assert outcome.error == "refused: 4001"
    assert hooks.defer_event(_draft(), "dropped", "queue_overflow", "full")
    hooks.run_pending()
    assert [(o.reason, o.error) for o in told[1:]] == [("queue_overflow", "full")]  # later


def test_without_a_hook_nothing_is_made_or_kept() -> None:
    hooks = OutcomeHooks(None, Reporter())
    assert not hooks.wants(None)
    assert hooks.wants(print)
    assert not hooks.defer_event(_draft(), "dropped", "queue_overflow", "full")
    assert not hooks.pending


def test_deferred_outcomes_run_later_oldest_first() -> None:
    calls: list[tuple[str | None, str | None]] = []
    hooks = OutcomeHooks(lambda o: calls.append((o.reference, o.reason)), Reporter())
    assert hooks.defer_event(_draft(), "dropped", "queue_overflow", "full")
    hooks.defer(order_outcome(_order(), "dropped", "closed", "gone"))
    assert calls == []
    hooks.run_pending()
    assert calls == [("paid", "queue_overflow"), ("o-9", "closed")]
    assert not hooks.pending


def test_a_raising_hook_is_counted_each_time_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reporter = Reporter()

    def broken(outcome: DeliveryOutcome) -> None:
        raise ValueError("no")

    def other(outcome: DeliveryOutcome) -> None:
        raise KeyError("no")

    hooks = OutcomeHooks(broken, reporter)
    outcome = event_outcome(_draft(), "delivered")
    with caplog.at_level(logging.ERROR, logger="gbtrack"):
        hooks.emit(outcome)
        hooks.emit(outcome)
        hooks.emit(outcome, other)
    assert reporter.get("outcome_hook_errors") == 4
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2  # once per hook
    assert "on_outcome hook" in lines[0]
    assert "broken" in lines[0]
    assert "ValueError" in lines[0]
    assert "other" in lines[1]
    assert "KeyError" in lines[1]
    assert all(r.exc_info is not None for r in caplog.records)
