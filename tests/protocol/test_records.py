"""Light records: the built-in delivery path from drafts to request bytes without models.

Drafts are checked into plain tuples (:func:`check_drafts`), grouped per request, and
written as JSON text (:func:`wire_json`); ``EventBatch.events`` builds the
:class:`~gbtrack.Event` models only when someone reads it.
"""

from __future__ import annotations

import gc
import json
import threading
import time
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from gbtrack import Event, EventDraft
from gbtrack._event import (
    ascii_only,
    check_drafts,
    events_of,
    record_of,
    validate_drafts,
    wire_json,
    wire_of,
)
from gbtrack._protocol import EventBatch, Outcome, OutcomeKind, coalesce_records, group_records
from gbtrack.gameball import GameballClient
from gbtrack.senders import BackgroundSender, RateLimiter

API_KEY = "test-api-key"


def draft(
    name: str = "purchase",
    customer: str = "c-1",
    keys: tuple[str, ...] = ("amount", "currency"),
    values: tuple[object, ...] = (9.5, "USD"),
    **kw: Any,
) -> EventDraft:
    fields = {
        "email": None,
        "mobile": None,
        "session_token": None,
        "function": "checkout",
        "timestamp": time.time(),
        **kw,
    }
    return EventDraft(
        name,
        customer,
        fields["email"],
        fields["mobile"],
        fields["session_token"],
        keys,
        values,  # type: ignore[arg-type]
        fields["function"],
        fields["timestamp"],
    )


# --- records and models agree ----------------------------------------------------------------
def test_records_become_the_events_validation_builds() -> None:
    drafts = [
        draft(email="j@example.com"),
        draft("refund", "c-2", ("note", "gone"), ("late", None)),
        draft("", "c-3"),  # invalid: blank name
        draft("café", "c-4", mobile="+201000"),  # non-ASCII: pydantic's path
    ]
    records, failed = check_drafts(drafts)
    events, failed_too = validate_drafts(drafts)
    assert [(d, str(e)) for d, e in failed] == [(d, str(e)) for d, e in failed_too]
    built = events_of(records)
    strip = {"event_id", "timestamp"}
    assert [e.model_dump(exclude=strip) for e in built] == [
        e.model_dump(exclude=strip) for e in events
    ]
    assert [e.timestamp for e in built] == [e.timestamp for e in events]
    assert built[1].metadata == {"note": "late"}  # a None value leaves its key out
    # The plain path carries no model; the pydantic path carries the one it built.
    assert [record[8] is None for record in records] == [True, True, False]


def test_a_record_of_an_event_gives_the_event_back() -> None:
    event = Event(name="purchase", customer_id="c-1", metadata={"k": 1})
    (back,) = events_of([record_of(event)])
    assert back is event


def test_plain_records_leave_the_cyclic_gc_before_they_grow_old() -> None:
    # A collection may visit a record before its inner tuples (it reorders what it
    # walks); the next one, which would promote it to the oldest generation, lets it go.
    records, _ = check_drafts([draft(values=(f"ORD-{n}", 1.5)) for n in range(3)])
    gc.collect(0)
    gc.collect(1)
    assert not any(gc.is_tracked(record) for record in records)


# --- the JSON text is the dicts' JSON ----------------------------------------------------------
_ascii = st.text(st.characters(max_codepoint=127), max_size=12)
_printable = st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=8)
_value = st.one_of(
    _ascii,
    st.integers(-(2**53) + 1, 2**53 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
)


@st.composite
def _drafts(draw: st.DrawFn) -> list[EventDraft]:
    customers = draw(st.lists(_printable, min_size=1, max_size=3))
    made = []
    for _ in range(draw(st.integers(1, 6))):
        keys = tuple(draw(st.lists(_printable.filter(str.strip), max_size=4)))
        values = tuple(draw(_value) for _ in keys)
        made.append(
            draft(
                draw(st.sampled_from(["a", "b", 'q"uote', "back\\slash"])),
                draw(st.sampled_from(customers)).strip() or "c",
                keys,
                values,
                email=draw(st.one_of(st.none(), st.just("j@example.com"))),
                mobile=draw(st.one_of(st.none(), st.just("+1234567890"))),
            )
        )
    return made


@settings(max_examples=150, deadline=None)
@given(_drafts())
def test_wire_json_is_the_json_of_the_wire_body(drafts: list[EventDraft]) -> None:
    records, failed = check_drafts(drafts)
    assert not failed
    groups = group_records(records)
    assert groups
    assert all(ascii_only(group) for group in groups)  # every draft took the plain path
    expected = [json.dumps(wire_of(group), separators=(",", ":")) for group in groups]
    assert wire_json(groups) == expected


def test_a_key_twice_keeps_its_last_value_as_the_dict_does() -> None:
    records, _ = check_drafts([draft(keys=("k", "k"), values=(1, 2))])
    assert wire_json([records]) == ['{"customerId":"c-1","events":{"purchase":{"k":2}}}']


# --- EventBatch.events: built when read -------------------------------------------------------
def test_batch_events_are_built_on_first_read_and_kept() -> None:
    records, _ = check_drafts([draft(), draft("refund")])
    (batch,) = coalesce_records(records)
    first = batch.events
    assert [type(e) for e in first] == [Event, Event]
    assert batch.events is first  # the same models for every reader
    assert [e.name for e in first] == ["purchase", "refund"]
    assert batch == EventBatch("c-1", None, None, None, first)
    assert batch.body() == wire_of(records)


class _Reading:
    """A custom DeliveryClient that reads ``batch.events``, as user code may."""

    has_secret_key = False

    def __init__(self) -> None:
        self.seen: list[tuple[Event, ...]] = []
        self.lock = threading.Lock()

    def send(self, batch: EventBatch) -> Outcome:
        with self.lock:
            self.seen.append(batch.events)
        return Outcome(OutcomeKind.DELIVERED, status=200)

    def create_batch(self, batches: Sequence[EventBatch]) -> Outcome:
        raise AssertionError("no secret key: no batch jobs")

    def batch_status(self, job_id: str) -> Outcome:
        raise AssertionError("no batch jobs")

    def stop_batch(self, job_id: str) -> Outcome:
        raise AssertionError("no batch jobs")

    def close(self) -> None:
        pass


def test_a_custom_client_reading_events_gets_event_models() -> None:
    client = _Reading()
    sender = BackgroundSender(client, flush_interval=0.01)
    try:
        token = SecretStr("tok-1")
        sender.send(draft(email="j@example.com", session_token=token))
        sender.send(draft("refund", email="j@example.com", session_token=token))
        assert sender.flush(10)
    finally:
        sender.close(10)
    ((first, second),) = client.seen
    assert (type(first), first.name, second.name) == (Event, "purchase", "refund")
    assert first.email == "j@example.com"
    assert first.session_token == token
    assert first.metadata == {"amount": 9.5, "currency": "USD"}


def test_the_built_in_client_sends_without_building_events(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bodies: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        return httpx.Response(200, json={})

    def refuse(*args: object) -> list[Event]:
        raise AssertionError("an Event model was built on the built-in path")

    monkeypatch.setattr("gbtrack._protocol._wire.events_of", refuse)
    client = GameballClient(
        API_KEY, base_url="https://gb.test", transport=httpx.MockTransport(handler)
    )
    sender = BackgroundSender(client, flush_interval=0.01, rate_limiter=RateLimiter(margin=0))
    try:
        sender.send(draft(email="j@example.com"))
        sender.send(draft("purchase", "c-2"))
        assert sender.flush(10)
    finally:
        sender.close(10)
        client.close()
    assert sorted((json.loads(body) for body in bodies), key=str) == sorted(
        [
            {
                "customerId": "c-1",
                "email": "j@example.com",
                "events": {"purchase": {"amount": 9.5, "currency": "USD"}},
            },
            {"customerId": "c-2", "events": {"purchase": {"amount": 9.5, "currency": "USD"}}},
        ],
        key=str,
    )
    assert sender.stats().delivered == 2


# --- grouping: the reference rule ---------------------------------------------------------------
def _reference_groups(records: list[Any], limit: int) -> list[tuple[Any, ...]]:
    """coalesce's rule written plainly: newest group per whole identity, names once."""
    groups: list[list[Any]] = []
    newest: dict[tuple[object, ...], int] = {}
    for record in records:
        token = record[4]
        key = (*record[1:4], None if token is None else token.get_secret_value())
        at = newest.get(key)
        if at is None or record[0] in {r[0] for r in groups[at]} or len(groups[at]) >= limit:
            at = newest[key] = len(groups)
            groups.append([])
        groups[at].append(record)
    return [tuple(group) for group in groups]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c"]),
            st.sampled_from(["c-1", "c-2"]),
            st.sampled_from([None, "x@example.com", "y@example.com"]),
            st.sampled_from([None, "+100"]),
            st.sampled_from([None, "t1", "t2"]),
        ),
        max_size=25,
    ),
    st.sampled_from([None, 1, 2, 3]),
)
def test_group_records_follows_the_coalesce_rule(
    rows: list[tuple[str, str, str | None, str | None, str | None]], max_events: int | None
) -> None:
    drafts = [
        draft(name, customer, email=email, mobile=mobile, session_token=SecretStr(t) if t else None)
        for name, customer, email, mobile, t in rows
    ]
    records, failed = check_drafts(drafts)
    assert not failed
    expected = _reference_groups(records, max_events or len(records) + 1)
    assert group_records(records, max_events) == expected
