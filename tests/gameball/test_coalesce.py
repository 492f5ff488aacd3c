"""EventBatch and coalesce: one customer's events per request, each name at most once."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from gbtrack import Event
from gbtrack.gameball import EventBatch, coalesce


def ev(name: str, customer: str = "c1", **kw: Any) -> Event:
    return Event(name=name, customer_id=customer, **kw)


def names(batch: EventBatch) -> list[str]:
    return [e.name for e in batch.events]


def test_same_customer_is_one_batch_in_order() -> None:
    batches = coalesce([ev("a"), ev("b"), ev("c")])
    assert len(batches) == 1
    assert names(batches[0]) == ["a", "b", "c"]
    assert batches[0].customer_id == "c1"


def test_customers_are_grouped_in_order_of_first_appearance() -> None:
    batches = coalesce([ev("a", "c2"), ev("a", "c1"), ev("b", "c2"), ev("b", "c1")])
    assert [(b.customer_id, names(b)) for b in batches] == [
        ("c2", ["a", "b"]),
        ("c1", ["a", "b"]),
    ]


def test_repeated_name_opens_another_group_and_later_events_join_it() -> None:
    batches = coalesce([ev("a"), ev("b"), ev("a"), ev("c"), ev("a")])
    assert [names(b) for b in batches] == [["a", "b"], ["a", "c"], ["a"]]
    # Read in order, the groups hold the customer's events in their original order.
    assert [n for b in batches for n in names(b)] == ["a", "b", "a", "c", "a"]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"email": "x@example.com"}, {"email": "y@example.com"}),
        ({"email": "x@example.com"}, {}),
        ({"mobile": "+1000"}, {"mobile": "+2000"}),
        ({"session_token": SecretStr("t1")}, {"session_token": SecretStr("t2")}),
        ({"session_token": SecretStr("t1")}, {}),
    ],
)
def test_identity_differences_split_groups(first: dict[str, Any], second: dict[str, Any]) -> None:
    batches = coalesce([ev("a", **first), ev("b", **second)])
    assert len(batches) == 2


def test_equal_tokens_are_compared_by_value() -> None:
    batches = coalesce(
        [ev("a", session_token=SecretStr("tok")), ev("b", session_token=SecretStr("tok"))]
    )
    assert len(batches) == 1
    assert batches[0].session_token is not None
    assert batches[0].session_token.get_secret_value() == "tok"


def test_max_events_caps_a_group() -> None:
    batches = coalesce([ev(n) for n in "abcde"], max_events=2)
    assert [names(b) for b in batches] == [["a", "b"], ["c", "d"], ["e"]]
    with pytest.raises(ValueError, match="max_events"):
        coalesce([], max_events=0)


def test_empty_input() -> None:
    assert coalesce([]) == []
    assert coalesce(iter([])) == []


def test_body_shape() -> None:
    batch = coalesce(
        [
            ev("purchase", email="j@example.com", mobile="+1234567890", metadata={"amount": 9.5}),
            ev("review", email="j@example.com", mobile="+1234567890"),
        ]
    )[0]
    assert batch.body() == {
        "customerId": "c1",
        "email": "j@example.com",
        "mobile": "+1234567890",
        "events": {"purchase": {"amount": 9.5}, "review": {}},
    }


def test_body_is_a_copy() -> None:
    event = ev("a", metadata={"k": 1})
    batch = EventBatch.from_event(event)
    batch.body()["events"]["a"]["k"] = 2
    assert event.metadata == {"k": 1}


def test_body_never_holds_the_token() -> None:
    batch = EventBatch.from_event(ev("a", session_token=SecretStr("sekrit-token")))
    assert "sekrit-token" not in repr(batch.body())


def test_repr_masks_pii_and_hides_token() -> None:
    batch = EventBatch.from_event(
        ev("a", email="john@example.com", mobile="+1234567890", session_token=SecretStr("tok-123"))
    )
    text = repr(batch)
    assert "john@example.com" not in text
    assert "+1234567890" not in text
    assert "tok-123" not in text
    assert "j***@example.com" in text
    assert "***7890" in text


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("c1", None, None, None, ()), "at least one event"),
        (("", None, None, None, (ev("a"),)), "customer_id"),
        (("c1", None, None, None, (ev("a"), ev("a"))), "more than once"),
        (("c2", None, None, None, (ev("a"),)), "identity"),
        (("c1", "x@example.com", None, None, (ev("a"),)), "identity"),
        (("c1", None, None, SecretStr("t"), (ev("a"),)), "identity"),
    ],
)
def test_invariants_are_checked(args: tuple[object, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        EventBatch(*args)  # type: ignore[arg-type]


_event_names = st.sampled_from(["a", "b", "c", "d"])
_customers = st.sampled_from(["c1", "c2", "c3"])
_emails = st.sampled_from([None, "x@example.com"])
_tokens = st.sampled_from([None, "t1", "t2"])


@st.composite
def _events(draw: st.DrawFn) -> Event:
    token = draw(_tokens)
    return ev(
        draw(_event_names),
        draw(_customers),
        email=draw(_emails),
        session_token=SecretStr(token) if token else None,
    )


@given(st.lists(_events(), max_size=40))
def test_coalesce_properties(events: list[Event]) -> None:
    batches = coalesce(events)
    # Nothing lost, nothing duplicated.
    assert sorted(e.event_id for b in batches for e in b.events) == sorted(
        e.event_id for e in events
    )
    for batch in batches:
        # The invariants hold (the constructor checked them) and the body matches.
        assert len(batch.body()["events"]) == len(batch.events)

    # Per identity, the concatenated groups preserve the original order.
    def key(e: Event) -> tuple[object, ...]:
        token = e.session_token.get_secret_value() if e.session_token else None
        return (e.customer_id, e.email, e.mobile, token)

    for identity in {key(e) for e in events}:
        original = [e.event_id for e in events if key(e) == identity]
        grouped = [e.event_id for b in batches for e in b.events if key(e) == identity]
        assert grouped == original
    # Groups come in order of their first event.
    firsts = [events.index(b.events[0]) for b in batches]
    assert firsts == sorted(firsts)
