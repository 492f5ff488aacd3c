"""Limits: sizes, the integer range and UTF-8 text, on every validation path.

Each check runs through the three ways an event is validated: pydantic
(``Event.model_validate`` with the limits in the context), ``EventDraft.to_event`` and
``validate_drafts``; they must accept and refuse exactly the same drafts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

import gbtrack._event as event_module
from gbtrack import ConfigurationError, Event, Identity, InvalidEventError
from gbtrack._event import (
    DEFAULT_LIMITS,
    EventDraft,
    Limits,
    MetadataValue,
    normalize_customer_id,
    validate_drafts,
)

NOW = 1_767_225_600.25  # 2026-01-01T00:00:00.25Z
SMALL = Limits(
    max_name_length=8,
    max_customer_id_length=8,
    max_email_length=8,
    max_mobile_length=8,
    max_metadata_keys=3,
    max_key_length=4,
    max_string_length=6,
    min_int=-1000,
    max_int=1000,
)


def draft(
    name: Any = "purchase",
    customer_id: Any = "c-1",
    email: Any = None,
    mobile: Any = None,
    metadata: dict[Any, Any] | None = None,
    function: str | None = None,
    session_token: SecretStr | None = None,
    timestamp: float = NOW,
) -> EventDraft:
    meta = metadata or {}
    return EventDraft(
        name,
        customer_id,
        email,
        mobile,
        session_token,
        tuple(meta),
        tuple(meta.values()),
        function,
        timestamp,
    )


def as_data(d: EventDraft) -> dict[str, Any]:
    return {
        "name": d.name,
        "customer_id": d.customer_id,
        "email": d.email,
        "mobile": d.mobile,
        "metadata": d.metadata,
        "session_token": d.session_token,
        "timestamp": dt.datetime.fromtimestamp(d.timestamp, dt.timezone.utc),
    }


Outcome = tuple[str, Any]


def via_pydantic(d: EventDraft, limits: Limits) -> Outcome:
    try:
        event = Event.model_validate(as_data(d), context={"limits": limits})
    except ValidationError as exc:
        error = exc.errors()[0]["ctx"]["error"]
        assert isinstance(error, InvalidEventError)
        return "refused", error.field
    return "accepted", event.model_dump(exclude={"event_id"})


def via_to_event(d: EventDraft, limits: Limits) -> Outcome:
    try:
        event = d.to_event(limits)
    except InvalidEventError as exc:
        return "refused", exc.field
    return "accepted", event.model_dump(exclude={"event_id"})


def via_batch(d: EventDraft, limits: Limits) -> Outcome:
    events, failed = validate_drafts([d], limits)
    if failed:
        assert not events
        assert failed[0][0] is d
        return "refused", failed[0][1].field
    assert len(events) == 1
    return "accepted", events[0].model_dump(exclude={"event_id"})


def outcome(d: EventDraft, limits: Limits = DEFAULT_LIMITS) -> Outcome:
    """The common outcome of the three paths; fails if they disagree."""
    results = [via_pydantic(d, limits), via_to_event(d, limits), via_batch(d, limits)]
    assert results[0] == results[1] == results[2], results
    return results[0]


def refusal(d: EventDraft, limits: Limits | None = None) -> InvalidEventError:
    with pytest.raises(InvalidEventError) as info:
        d.to_event(limits)
    return info.value


# --- Limits itself ---------------------------------------------------------------------
def test_defaults_are_documented_values() -> None:
    assert Limits() == DEFAULT_LIMITS
    assert DEFAULT_LIMITS.max_customer_id_length == 100
    assert DEFAULT_LIMITS.max_int == 2**53 - 1 == -DEFAULT_LIMITS.min_int
    assert float(DEFAULT_LIMITS.max_int) == DEFAULT_LIMITS.max_int  # a double holds it
    assert float(DEFAULT_LIMITS.max_int + 1) == float(DEFAULT_LIMITS.max_int + 2)  # not past
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT_LIMITS.max_int = 3  # type: ignore[misc]


LENGTH_FIELDS = [
    "max_name_length",
    "max_customer_id_length",
    "max_email_length",
    "max_mobile_length",
    "max_metadata_keys",
    "max_key_length",
    "max_string_length",
]


@pytest.mark.parametrize("field", LENGTH_FIELDS)
@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "10", None])
def test_limits_refuse_non_positive_ints(field: str, bad: object) -> None:
    with pytest.raises(ConfigurationError, match=f"Limits.{field} must be a positive int"):
        Limits(**{field: bad})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_int": 5, "max_int": 4}, "greater than"),
        ({"max_int": 2**63}, "64-bit"),
        ({"min_int": -(2**63) - 1}, "64-bit"),
        ({"max_int": 1.0}, "must be an int"),
        ({"min_int": False}, "must be an int"),
    ],
)
def test_limits_refuse_bad_int_range(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Limits(**kwargs)


def test_limits_accept_edges() -> None:
    assert Limits(min_int=-(2**63), max_int=2**63 - 1).max_int == 2**63 - 1
    assert Limits(min_int=7, max_int=7, max_string_length=1).min_int == 7


# --- each limit, at and just over the boundary ------------------------------------------
TEXT_SLOTS = {
    # slot -> (draft builder, Limits attribute, field named by the error)
    "name": (lambda text: draft(name=text), "max_name_length", "name"),
    "customer_id": (
        lambda text: draft(customer_id=text),
        "max_customer_id_length",
        "customer_id",
    ),
    "email": (lambda text: draft(email=text), "max_email_length", "email"),
    "mobile": (lambda text: draft(mobile=text), "max_mobile_length", "mobile"),
    "key": (lambda text: draft(metadata={text: 1}), "max_key_length", None),
    "value": (
        lambda text: draft(metadata={"note": text}),
        "max_string_length",
        "metadata['note']",
    ),
}


@pytest.mark.parametrize("slot", TEXT_SLOTS)
@pytest.mark.parametrize("limits", [DEFAULT_LIMITS, SMALL], ids=["default", "small"])
@pytest.mark.parametrize("char", ["a", "é", "€", "👋"], ids=["ascii", "latin1", "bmp", "astral"])
def test_text_length_boundary(slot: str, limits: Limits, char: str) -> None:
    build, attr, field = TEXT_SLOTS[slot]
    limit = getattr(limits, attr)
    assert outcome(build(char * limit), limits)[0] == "accepted"
    state, refused_field = outcome(build(char * (limit + 1)), limits)
    assert state == "refused"
    if field is not None:
        assert refused_field == field
    error = refusal(build(char * (limit + 1)), limits)
    assert f"is {limit + 1:,} characters; the limit is {limit:,} (Limits.{attr})" in str(error)


@pytest.mark.parametrize("limits", [DEFAULT_LIMITS, SMALL], ids=["default", "small"])
def test_metadata_key_count_boundary(limits: Limits) -> None:
    limit = limits.max_metadata_keys
    at = {f"k{i}": i for i in range(limit)}
    assert outcome(draft(metadata=at), limits)[0] == "accepted"
    assert outcome(draft(metadata={**at, "zz": None}), limits)[0] == "accepted"  # not sent
    over = {**at, "zz": 1}
    assert outcome(draft(metadata=over), limits) == ("refused", "metadata")
    message = str(refusal(draft(metadata=over), limits))
    assert f"metadata has {limit + 1:,} keys; the limit is {limit:,}" in message
    assert "(Limits.max_metadata_keys)" in message


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        (2**53 - 1, True),
        (-(2**53 - 1), True),
        (2**53, False),
        (-(2**53), False),
        (10**4300 * 2, False),  # 4,301 digits: str() refuses to print it
        (-(10**4300) * 2, False),
        (True, True),
        (0, True),
        (1.5e300, True),  # floats are doubles already
        (float("nan"), False),
        (float("inf"), False),
        (-math.inf, False),
    ],
    ids=lambda value: f"{value.bit_length()}-bit" if type(value) is int else None,
)
def test_number_range(value: MetadataValue, accepted: bool) -> None:
    d = draft(metadata={"n": value})
    assert outcome(d) == (("accepted", outcome(d)[1]) if accepted else ("refused", "metadata['n']"))
    if accepted:
        assert outcome(d)[1]["metadata"]["n"] == value


def test_int_messages_name_the_limit() -> None:
    message = str(refusal(draft(metadata={"n": 2**53})))
    assert "metadata['n'] is 9,007,199,254,740,992; the limit is 9,007,199,254,740,991" in message
    assert "(Limits.max_int" in message
    message = str(refusal(draft(metadata={"n": -(2**53)})))
    assert "(Limits.min_int" in message
    message = str(refusal(draft(metadata={"n": 10**4300 * 2})))
    assert "an integer of about 4,30" in message
    assert "(Limits.max_int" in message


def test_custom_int_range() -> None:
    assert outcome(draft(metadata={"n": 1000}), SMALL)[0] == "accepted"
    assert outcome(draft(metadata={"n": 1001}), SMALL) == ("refused", "metadata['n']")
    assert outcome(draft(metadata={"n": -1001}), SMALL) == ("refused", "metadata['n']")


# --- lone surrogates, in every string slot ----------------------------------------------
@pytest.mark.parametrize("slot", TEXT_SLOTS)
@pytest.mark.parametrize("text", ["\ud800", "ab\udfffc", "é\udc80", "👋\ud83d"])
def test_surrogates_refused_in_every_slot(slot: str, text: str) -> None:
    build, _, field = TEXT_SLOTS[slot]
    state, refused_field = outcome(build(text))
    assert state == "refused"
    assert refused_field == (field or f"metadata[{text!r}]")
    assert "lone surrogate" in str(refusal(build(text)))


@pytest.mark.parametrize("slot", TEXT_SLOTS)
def test_valid_unicode_accepted_in_every_slot(slot: str) -> None:
    build, _, _ = TEXT_SLOTS[slot]
    assert outcome(build("مرحبا 👋"))[0] == "accepted"


# --- hostile sizes ----------------------------------------------------------------------
def test_ten_megabyte_string_refused() -> None:
    d = draft(metadata={"note": "x" * 10_000_000}, function="shop.checkout")
    error = refusal(d)
    assert str(error) == (
        "event 'purchase' from shop.checkout: metadata['note'] is 10,000,000 characters; "
        "the limit is 2,000 (Limits.max_string_length)"
    )
    assert error.field == "metadata['note']"
    with pytest.raises(ValidationError, match=r"Limits\.max_string_length"):
        Event(name="e", customer_id="c", metadata={"note": "x" * 10_000_000})


def test_megabyte_customer_id_refused() -> None:
    error = refusal(draft(customer_id="c" * 1_000_000))
    assert str(error) == (
        "event 'purchase': customer_id is 1,000,000 characters; the limit is 100 "
        "(Limits.max_customer_id_length)"
    )
    with pytest.raises(ValidationError, match=r"Limits\.max_customer_id_length"):
        Identity(customer_id="c" * 1_000_000)


def test_huge_int_customer_id_refused() -> None:
    with pytest.raises(ValidationError, match=r"Limits\.max_customer_id_length"):
        Event(name="e", customer_id=10**5000)  # type: ignore[arg-type]
    with pytest.raises(InvalidEventError, match="customer_id is an integer of about"):
        normalize_customer_id(10**5000)
    assert Event(name="e", customer_id=10**99).customer_id == "1" + "0" * 99  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=r"Limits\.max_customer_id_length"):
        Event(name="e", customer_id=10**100)  # type: ignore[arg-type]


def test_huge_key_is_shortened_in_message() -> None:
    error = refusal(draft(metadata={"k" * 1_000_000: 1}))
    assert "metadata key 'kkk" in str(error)
    assert "is 1,000,000 characters; the limit is 100 (Limits.max_key_length)" in str(error)
    assert len(str(error)) < 300
    assert error.field is not None
    assert len(error.field) < 100


# --- custom limits, context and errors ---------------------------------------------------
def test_custom_limits_through_every_path() -> None:
    limits = Limits(max_string_length=3)
    d = draft(metadata={"s": "abcd"})
    assert outcome(d) == ("accepted", outcome(d)[1])
    assert outcome(d, limits) == ("refused", "metadata['s']")
    assert "the limit is 3 (Limits.max_string_length)" in str(refusal(d, limits))
    with pytest.raises(ValidationError, match=r"Limits\.max_string_length"):
        Event.model_validate(as_data(d), context={"limits": limits})
    with pytest.raises(ValidationError, match=r"Limits\.max_email_length"):
        Identity.model_validate({"email": "a@b.cd"}, context={"limits": Limits(max_email_length=5)})
    # a context without limits means the defaults
    assert Event.model_validate(as_data(d), context={"other": 1}).metadata == {"s": "abcd"}


def test_bad_limits_objects_are_type_errors() -> None:
    with pytest.raises(TypeError, match="Limits"):
        Event.model_validate(as_data(draft()), context={"limits": {"max_int": 3}})
    with pytest.raises(TypeError, match="Limits"):
        validate_drafts([draft()], limits="strict")  # type: ignore[arg-type]


def test_message_names_event_and_function() -> None:
    assert str(refusal(draft(name="", function="mod.fn"))).startswith("event '' from mod.fn: ")
    assert str(refusal(draft(customer_id=" "))) == (
        "event 'purchase': customer_id must be a non-empty string"
    )
    long_name = "n" * 5000
    message = str(refusal(draft(name=long_name)))
    assert message.startswith("event 'nnn")
    assert len(message) < 300


def test_blank_and_missing_values() -> None:
    assert outcome(draft(name="  ")) == ("refused", "name")
    assert outcome(draft(customer_id="")) == ("refused", "customer_id")
    assert outcome(draft(customer_id=None)) == ("refused", "customer_id")
    accepted = outcome(draft(email=" ", mobile=""))
    assert accepted[0] == "accepted"
    assert accepted[1]["email"] is None
    assert accepted[1]["mobile"] is None
    assert outcome(draft(metadata={"": 1}))[0] == "refused"
    assert outcome(draft(metadata={"": None}))[0] == "accepted"  # None: key left out


def test_mismatched_draft_is_refused_not_raised() -> None:
    bad = EventDraft("e", "c", None, None, None, ("a", "b"), (1,), None, NOW)
    events, failed = validate_drafts([bad, draft()])
    assert len(events) == 1
    assert failed[0][0] is bad
    assert failed[0][1].field == "metadata"


# --- the batch form -----------------------------------------------------------------------
def test_batch_keeps_order_and_pairs_errors() -> None:
    drafts = [
        draft(customer_id="a", metadata={"n": 1}),
        draft(customer_id="b", metadata={"n": 2**60}, function="mod.fn"),
        draft(customer_id="c", metadata={"s": "é"}),
        draft(customer_id="d\ud800"),
        draft(customer_id="e", session_token=SecretStr("tok"), email="x@example.com"),
    ]
    events, failed = validate_drafts(iter(drafts))
    assert [e.customer_id for e in events] == ["a", "c", "e"]
    assert [(d.customer_id, err.field) for d, err in failed] == [
        ("b", "metadata['n']"),
        ("d\ud800", "customer_id"),
    ]
    assert str(failed[0][1]).startswith("event 'purchase' from mod.fn: metadata['n'] is ")
    assert len({e.event_id for e in events}) == 3
    token = events[2].session_token
    assert token is not None
    assert token.get_secret_value() == "tok"


def test_fast_path_builds_the_same_event_as_pydantic(monkeypatch: pytest.MonkeyPatch) -> None:
    d = draft(
        email="a@example.com",
        mobile="+201234567890",
        metadata={"order_id": "ORD-1", "amount": 9.5, "currency": None, "items": 3, "gift": True},
        session_token=SecretStr("t"),
        function="shop.checkout",
        timestamp=time.time(),
    )

    def refuse(*args: object) -> Event:
        raise AssertionError("a plainly valid draft went through pydantic")

    reference = Event.model_validate({**as_data(d), "event_id": "x"})
    monkeypatch.setattr(event_module, "_checked_event", refuse)
    fast = d.to_event()
    assert type(fast) is Event
    assert fast.model_dump(exclude={"event_id"}) == reference.model_dump(exclude={"event_id"})
    assert fast.model_fields_set == reference.model_fields_set
    assert fast.timestamp == dt.datetime.fromtimestamp(d.timestamp, dt.timezone.utc)
    assert fast.event_id != d.to_event().event_id
    assert fast.to_payload() == reference.to_payload()
    with pytest.raises(ValidationError):
        fast.name = "other"  # type: ignore[misc]


# --- the three paths agree on random drafts ------------------------------------------------
# Mostly plainly valid pieces (so that validate_drafts' fast path is exercised), with
# surrogates, blanks, non-ASCII text and sizes at and over the limits mixed in.
plain = st.text(alphabet="abcxyz-_.@+0189", min_size=1, max_size=6)
surrogates = st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff"])
hostile = st.one_of(
    st.builds(lambda a, s, b: a + s + b, st.text(max_size=6), surrogates, st.text(max_size=6)),
    st.text(max_size=8),
    st.sampled_from(["", " ", "\t", "x" * 100, "x" * 101, "é" * 8, "é" * 9, "x" * 2001]),
    st.builds(lambda n: "x" * n, st.integers(0, 10)),
)
plain_values = st.one_of(
    st.none(),
    plain,
    st.booleans(),
    st.integers(min_value=-1000, max_value=1000),
    st.floats(allow_nan=False, allow_infinity=False),
)
hostile_values = st.one_of(
    hostile,
    st.integers(),
    st.integers(min_value=-1010, max_value=1010),
    st.sampled_from([2**53 - 1, 2**53, -(2**53), 10**4300 * 3, -(10**4300) * 3]),
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.floats(),
)
SLOTS = ["name", "customer_id", "email", "mobile", "key", "value", "keys"]


@st.composite
def drafts(draw: st.DrawFn) -> EventDraft:
    """A plainly valid draft with zero to two hostile pieces injected."""
    fields: dict[str, Any] = {
        "name": draw(plain),
        "customer_id": draw(plain),
        "email": draw(st.none() | plain),
        "mobile": draw(st.none() | plain),
    }
    keys = draw(st.lists(plain, max_size=3, unique=True))
    values = [draw(plain_values) for _ in keys]
    for _ in range(draw(st.integers(0, 2))):
        slot = draw(st.sampled_from(SLOTS))
        if slot == "key":
            keys.append(draw(hostile))
            values.append(draw(plain_values))
        elif slot == "value":
            keys.append(draw(plain))
            values.append(draw(hostile_values))
        elif slot == "keys":  # many keys, around max_metadata_keys
            extra = draw(st.integers(0, 4))
            keys.extend(f"m{i}" for i in range(extra))
            values.extend(i for i in range(extra))
        else:
            fields[slot] = draw(hostile)
    return EventDraft(
        fields["name"],
        fields["customer_id"],
        fields["email"],
        fields["mobile"],
        draw(st.sampled_from([None, SecretStr("tok")])),
        tuple(keys),
        tuple(values),
        draw(st.sampled_from([None, "mod.fn"])),
        draw(st.floats(min_value=0, max_value=4e9)),
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(d=drafts(), limits=st.sampled_from([DEFAULT_LIMITS, SMALL]))
def test_paths_agree_on_random_drafts(d: EventDraft, limits: Limits) -> None:
    outcome(d, limits)


@settings(max_examples=50, deadline=None)
@given(batch=st.lists(drafts(), max_size=20))
def test_batch_agrees_with_one_by_one(batch: list[EventDraft]) -> None:
    events, failed = validate_drafts(batch, SMALL)
    expected = [via_to_event(d, SMALL) for d in batch]
    assert len(events) == sum(state == "accepted" for state, _ in expected)
    assert [d for d, _ in failed] == [
        d for d, (s, _) in zip(batch, expected, strict=True) if s == "refused"
    ]
