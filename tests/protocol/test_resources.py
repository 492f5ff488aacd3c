"""The resources (events, orders) and the order decision: duplicates and ambiguity."""

from __future__ import annotations

import pytest

from gbtrack import ConflictError, PayloadError, ServerError
from gbtrack._protocol import (
    DUPLICATE_ORDER_CODES,
    EVENTS,
    ORDERS,
    Outcome,
    OutcomeKind,
    is_duplicate,
    order_result,
)
from gbtrack.senders import RetryPolicy


def refused(code: int | None, status: int = 422) -> Outcome:
    return Outcome(OutcomeKind.PERMANENT, status=status, error=PayloadError("x", code=code))


AMBIGUOUS = Outcome(OutcomeKind.AMBIGUOUS, status=500, error=ServerError("x"))
RETRYABLE = Outcome(OutcomeKind.RETRYABLE, status=422, error=ConflictError("x", code=2001))


def test_the_two_resources() -> None:
    assert ORDERS.path(False) == "/api/v4.0/integrations/orders"
    assert ORDERS.path(True) == "/api/v4.1/integrations/orders"
    assert ORDERS.batch_path == "/api/v4.0/integrations/batch/orders"
    assert EVENTS.path(True) == "/api/v4.1/integrations/events"
    assert ORDERS.needs_secret
    assert not EVENTS.needs_secret
    assert ORDERS.limits == ((30, 1.0), (360, 30.0))
    assert EVENTS.limits == ((100, 1.0), (1200, 30.0))
    assert EVENTS.merge
    assert not ORDERS.merge
    assert ORDERS.duplicate_codes == DUPLICATE_ORDER_CODES == frozenset({9004})
    assert EVENTS.duplicate_codes == frozenset()


def test_an_orders_answer_is_parsed_defensively() -> None:
    oas = {"customerId": "c", "rewardedPoints": 12, "redeemedPoints": 0, "lineItems": [{}]}
    assert dict(order_result(oas)) == oas
    pos = {"orderId": "o", "pointsEarned": 3, "rewardedPoints": 3, "status": "completed"}
    assert dict(order_result(pos)) == {
        "pointsEarned": 3,
        "rewardedPoints": 3,
        "status": "completed",
    }
    assert dict(order_result(None)) == {} == dict(order_result([1, 2]))
    assert dict(order_result({"lineItems": "no"})) == {}
    assert dict(ORDERS.result({"rewardedPoints": 1})) == {"rewardedPoints": 1}
    assert dict(EVENTS.result({"rewardedPoints": 1})) == {}


def test_what_is_a_duplicate() -> None:
    assert is_duplicate(refused(9004), DUPLICATE_ORDER_CODES)
    assert not is_duplicate(refused(9003), DUPLICATE_ORDER_CODES)
    assert not is_duplicate(refused(9004), frozenset())
    assert is_duplicate(refused(None, status=409), frozenset({409}))  # a status may be configured
    assert not is_duplicate(RETRYABLE, frozenset({2001}))  # retryable: surely not processed
    assert not is_duplicate(Outcome(OutcomeKind.DELIVERED, status=200), frozenset({200}))


@pytest.mark.parametrize("ambiguous_before", [False, True])
def test_decide_order_reads_a_duplicate_by_what_came_before(ambiguous_before: bool) -> None:
    decision = RetryPolicy().decide_order(refused(9004), 2, 1.0, ambiguous_before=ambiguous_before)
    assert decision.reason == ("delivered" if ambiguous_before else "duplicate")
    assert not decision.retry
    assert "9004" in decision.message


def test_ambiguous_orders_are_retried_unless_turned_off() -> None:
    events_off = RetryPolicy(retry_ambiguous=False)
    assert events_off.decide(AMBIGUOUS, 1, 1.0).reason == "ambiguous"
    assert events_off.decide_order(AMBIGUOUS, 1, 1.0, ambiguous_before=False).retry
    orders_off = RetryPolicy(retry_ambiguous_orders=False)
    assert orders_off.decide_order(AMBIGUOUS, 1, 1.0, ambiguous_before=False).reason == "ambiguous"
    assert orders_off.decide(AMBIGUOUS, 1, 1.0).retry
    # The other limits still end an order's retries.
    assert (
        RetryPolicy(max_attempts=2).decide_order(AMBIGUOUS, 2, 1.0, ambiguous_before=True).reason
        == "retries_exhausted"
    )
    assert RetryPolicy().decide_order(refused(3003), 1, 1.0, ambiguous_before=True).reason == (
        "rejected"
    )


def test_duplicate_codes_are_checked() -> None:
    assert RetryPolicy(duplicate_order_codes=frozenset({1, 2})).duplicate_order_codes == {1, 2}
    with pytest.raises(ValueError, match="duplicate_order_codes"):
        RetryPolicy(duplicate_order_codes=9004)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="duplicate_order_codes"):
        RetryPolicy(duplicate_order_codes=frozenset({"9004"}))  # type: ignore[arg-type]
