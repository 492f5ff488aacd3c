"""Event and Identity: validation, conversions, wire body, reprs."""

from __future__ import annotations

import datetime as dt
import enum
import time
import uuid
from decimal import Decimal

import pytest
from pydantic import SecretStr, ValidationError

from gbtrack import Event, EventDraft, Identity, InvalidEventError
from gbtrack._event import (
    mask_email,
    mask_mobile,
    new_event_id,
    normalize_customer_id,
    normalize_metadata,
    normalize_value,
    validate_drafts,
)


class Level(enum.IntEnum):
    GOLD = 3


class Tier(enum.Enum):
    VIP = "vip"
    NESTED = Decimal("1.5")


def test_event_defaults_and_payload() -> None:
    event = Event(name="purchase", customer_id=12, metadata={"amount": Decimal("9.99")})
    assert event.customer_id == "12"
    assert event.metadata == {"amount": 9.99}
    assert event.timestamp.tzinfo is dt.timezone.utc
    assert event.event_id
    assert event.to_payload() == {"customerId": "12", "events": {"purchase": {"amount": 9.99}}}
    assert event.identity == Identity(customer_id="12")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("x", "x"),
        (3, 3),
        (True, True),
        (1.5, 1.5),
        (Decimal("2.25"), 2.25),
        (Tier.VIP, "vip"),
        (Tier.NESTED, 1.5),
        (Level.GOLD, 3),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        (dt.date(2026, 1, 2), "2026-01-02"),
        (dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc), "2026-01-02T03:04:05+00:00"),
        (None, None),
    ],
)
def test_value_conversions(value: object, expected: object) -> None:
    assert normalize_value("k", value) == expected
    if expected is not None:
        assert type(normalize_value("k", value)) is type(expected)


@pytest.mark.parametrize(
    "value", [float("nan"), float("inf"), Decimal("NaN"), [1], {"a": 1}, object(), b"x"]
)
def test_invalid_values_name_the_key(value: object) -> None:
    with pytest.raises(InvalidEventError, match="amount") as info:
        normalize_value("amount", value)
    assert info.value.field == "metadata['amount']"


def test_metadata_keys_and_none() -> None:
    assert normalize_metadata(None) == {}
    assert normalize_metadata({"a": None, "b": 1}) == {"b": 1}
    with pytest.raises(InvalidEventError, match="non-empty strings"):
        normalize_metadata({"": 1})
    with pytest.raises(InvalidEventError):
        normalize_metadata({1: 1})  # type: ignore[dict-item]


def test_customer_id_rules() -> None:
    assert normalize_customer_id(None) is None
    assert normalize_customer_id("  ") is None
    assert normalize_customer_id(7) == "7"
    assert normalize_customer_id(uuid.UUID(int=0)) == str(uuid.UUID(int=0))
    for bad in (True, 1.5, object()):
        with pytest.raises(InvalidEventError, match="customer_id"):
            normalize_customer_id(bad)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "", "customer_id": "c"},
        {"name": "  ", "customer_id": "c"},
        {"name": "e", "customer_id": ""},
        {"name": "e", "customer_id": None},
        {"name": "e", "customer_id": "c", "metadata": {"x": [1]}},
        {"name": "e", "customer_id": "c", "metadata": [1]},
        {"name": "e", "customer_id": "c", "email": 5},
        {"name": "e", "customer_id": "c", "unknown": 1},
    ],
)
def test_event_validation_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Event(**kwargs)  # type: ignore[arg-type]


def test_event_is_frozen() -> None:
    event = Event(name="e", customer_id="c")
    with pytest.raises(ValidationError):
        event.name = "other"  # type: ignore[misc]


def test_reprs_hide_token_and_mask_pii() -> None:
    event = Event(
        name="e",
        customer_id="c",
        email="john@example.com",
        mobile="+201234567890",
        session_token=SecretStr("tok-secret"),
    )
    for text in (repr(event), str(event), repr(event.identity)):
        assert "tok-secret" not in text
        assert "john@example.com" not in text
        assert "+201234567890" not in text
    assert "j***@example.com" in repr(event)
    assert "***7890" in repr(event)
    assert "tok-secret" not in str(event.to_payload())
    assert event.model_dump()["email"] == "john@example.com"  # data is intact


def test_masks() -> None:
    assert mask_email("john@example.com") == "j***@example.com"
    assert mask_email("nodomain") == "***"
    assert mask_email(None) is None
    assert mask_mobile("+201234567890") == "***7890"
    assert mask_mobile("123") == "***"
    assert mask_mobile("") == ""


def test_identity_validation() -> None:
    assert Identity(customer_id=5).customer_id == "5"  # type: ignore[arg-type]
    assert Identity(email="  ").email is None
    with pytest.raises(ValidationError):
        Identity(email=3)  # type: ignore[arg-type]


def test_event_ids_unique() -> None:
    ids = {new_event_id() for _ in range(1000)}
    assert len(ids) == 1000


SECRET = "s3cr3t-session"

# Tokens that cannot be an HTTP header value (RFC 9110 field-value, ASCII as httpx sends).
BAD_TOKENS = [
    (f"{SECRET}\r\nX-Evil: 1", "holds a line break (CR or LF) at index 14"),
    (f"{SECRET}\n", "holds a line break (CR or LF) at index 14"),
    (f"{SECRET}\x00", "holds a control character at index 14"),
    (f"{SECRET}\x7f", "holds a control character at index 14"),
    (f"{SECRET}\u00e9", "holds a non-ASCII character at index 14"),
    (f" {SECRET}", "starts or ends with whitespace"),
    (f"{SECRET}\t ", "starts or ends with whitespace"),
]
GOOD_TOKENS = ["eyJhbGciOiJkaXIifQ..x-y_z~.A+/=", "a b\tc", ""]


def _draft(token: str) -> EventDraft:
    return EventDraft("purchase", "c-1", None, None, SecretStr(token), (), (), None, time.time())


@pytest.mark.parametrize(("token", "why"), BAD_TOKENS, ids=[why for _, why in BAD_TOKENS])
def test_a_token_that_cannot_be_a_header_value_is_an_invalid_event(token: str, why: str) -> None:
    events, failed = validate_drafts([_draft(token), _draft("fine")])
    assert [e.customer_id for e in events] == ["c-1"]
    ((_, error),) = failed
    assert error.field == "session_token"
    assert str(error) == (
        f"event 'purchase': session_token {why}, so it cannot be sent as the X-GB-TOKEN "
        "header (visible ASCII only; the token is not shown)"
    )
    # The models refuse it the same way, without echoing it (pydantic shows inputs).
    for build in (
        lambda: Event(name="e", customer_id="c", session_token=token),
        lambda: Identity(customer_id="c", session_token=token),
    ):
        with pytest.raises(ValidationError, match="session_token") as info:
            build()
        assert SECRET not in str(info.value)
        assert SECRET not in repr(info.value)


@pytest.mark.parametrize("token", GOOD_TOKENS)
def test_a_token_that_is_a_header_value_is_kept(token: str) -> None:
    (event,), failed = validate_drafts([_draft(token)])
    assert not failed
    assert event.session_token is not None
    assert event.session_token.get_secret_value() == token
    assert Identity(customer_id="c", session_token=token).session_token == SecretStr(token)
