"""Batches and coalescing at their edges: the cases mutation testing found unpinned.

Each test names the regression it catches (``nox -s mutate`` reports the rest).
"""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from gbtrack import Event
from gbtrack._event import mask
from gbtrack._protocol import EventBatch, coalesce

EMAIL, MOBILE = "john@example.com", "+1234567890"


def ev(name: str = "purchase", customer: str = "c-1", **kw: object) -> Event:
    return Event(name=name, customer_id=customer, **kw)  # type: ignore[arg-type]


def test_coalesced_batches_keep_the_whole_identity() -> None:
    token = SecretStr("tok-1")
    first = ev("a", email=EMAIL, mobile=MOBILE, session_token=token)
    second = ev("b", email=EMAIL, mobile=MOBILE, session_token=token)
    (batch,) = coalesce([first, second])
    checked = EventBatch("c-1", EMAIL, MOBILE, token, (first, second))
    assert batch == checked  # the same batch the checked constructor builds
    assert (batch.email, batch.mobile) == (EMAIL, MOBILE)
    assert batch.body() == checked.body()


def test_max_events_of_one_sends_each_event_alone() -> None:
    batches = coalesce([ev("a"), ev("b"), ev("c")], max_events=1)
    assert [[e.name for e in b.events] for b in batches] == [["a"], ["b"], ["c"]]
    with pytest.raises(ValueError, match=r"^max_events must be at least 1$"):
        coalesce([ev("a")], max_events=0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("c-1", None, None, None, ()), "EventBatch needs at least one event"),
        (("", None, None, None, (ev("a"),)), "EventBatch needs a non-empty customer_id"),
        (
            ("c-1", None, None, None, (ev("a"), ev("a"))),
            "EventBatch carries an event name more than once",
        ),
        (
            ("c-2", None, None, None, (ev("a"),)),
            "event 'a' does not share the batch's identity "
            r"\(customer id, email, mobile and session token\)",
        ),
    ],
)
def test_invalid_batches_are_refused_with_the_reason(
    args: tuple[object, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        EventBatch(*args)  # type: ignore[arg-type]


# --- masking ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("1234", "***"),  # four characters or fewer are never shown, not even as the tail
        ("12345", "***2345"),
        ("", ""),
    ],
)
def test_a_short_mobile_is_hidden_whole(value: str, shown: str) -> None:
    assert mask("mobile", value) == shown


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ('"john@home"@example.com', '"***@example.com'),
        ("john@home@example.com", "j***@example.com"),
        ("@example.com", "***@example.com"),
    ],
)
def test_an_email_is_masked_up_to_its_last_at_sign(value: str, shown: str) -> None:
    # Bug found by mutation testing: the mask split at the first "@", so a local part
    # holding one (quoted, and accepted by Event) was shown after it: "j***@home@...".
    assert mask("email", value) == shown
    event = Event(name="purchase", customer_id="c-1", email=value)
    assert "home" not in repr(event)
    assert "home" not in repr(EventBatch.from_event(event))
