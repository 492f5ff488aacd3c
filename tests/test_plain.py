"""Plain values: each conversion rule of ``gbtrack._plain``, one type at a time.

The decorator tests reach these functions only through a few common types; the rules
for subclasses, non-finite numbers and the refused types are pinned here (they were
left open by mutation testing).
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import uuid
from decimal import Decimal

import pytest
from pydantic import SecretStr

from gbtrack import InvalidEventError
from gbtrack._plain import plain_customer_id, plain_text, plain_token, plain_value


class Color(enum.Enum):
    RED = "red"
    SIZE = 3
    RATIO = 0.5
    NAN = float("nan")
    PRICE = Decimal("1.25")


class Level(enum.IntEnum):
    HIGH = 7


class LoudStr(str):
    def __str__(self) -> str:
        return "overridden"


class LoudInt(int):
    def __int__(self) -> int:
        return -1

    def __repr__(self) -> str:
        return "overridden"


class LoudFloat(float):
    def __float__(self) -> float:
        return -1.0


class LoudDecimal(Decimal):
    def __float__(self) -> float:
        return -1.0


class LoudUUID(uuid.UUID):
    def __str__(self) -> str:
        return "overridden"


class LoudDateTime(dt.datetime):
    def isoformat(self, sep: str = "T", timespec: str = "auto") -> str:
        return "overridden"


class LoudDate(dt.date):
    def isoformat(self) -> str:
        return "overridden"


UID = uuid.UUID("12345678-1234-5678-1234-567812345678")


# --- plain_value ----------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["x", "", 0, 5, -3, True, False, 1.5, 0.0, -2.25])
def test_exact_types_pass_through_unchanged(value: object) -> None:
    out = plain_value("k", value)
    assert out is value
    assert type(out) is type(value)


def test_none_is_none() -> None:
    assert plain_value("k", None) is None


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, LoudFloat("inf")])
def test_non_finite_floats_are_refused(value: float) -> None:
    with pytest.raises(InvalidEventError, match=r"metadata\['amount'\] is not a finite") as info:
        plain_value("amount", value)
    assert info.value.field == "metadata['amount']"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Color.RED, "red"),
        (Color.SIZE, 3),
        (Color.RATIO, 0.5),
        (Color.PRICE, 1.25),
        (Level.HIGH, 7),
        (LoudStr("abc"), "abc"),
        (LoudInt(42), 42),
        (LoudFloat(2.5), 2.5),
        (Decimal("9.50"), 9.5),
        (Decimal("-0.125"), -0.125),
        (LoudDecimal("3.5"), 3.5),
        (UID, "12345678-1234-5678-1234-567812345678"),
        (LoudUUID(int=UID.int), "12345678-1234-5678-1234-567812345678"),
        (dt.datetime(2024, 5, 6, 7, 8, 9), "2024-05-06T07:08:09"),
        (
            dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc),
            "2024-05-06T07:08:09+00:00",
        ),
        (LoudDateTime(2024, 5, 6, 7, 8, 9), "2024-05-06T07:08:09"),
        (dt.date(2024, 5, 6), "2024-05-06"),
        (LoudDate(2024, 5, 6), "2024-05-06"),
    ],
)
def test_converted_to_the_exact_base_type(value: object, expected: object) -> None:
    out = plain_value("k", value)
    assert out == expected
    assert type(out) is type(expected)  # exact base type, never the subclass


@pytest.mark.parametrize("value", [Decimal("inf"), Decimal("-inf"), Decimal("nan"), Color.NAN])
def test_non_finite_decimals_and_enum_values_are_refused(value: object) -> None:
    with pytest.raises(InvalidEventError, match="not a finite number") as info:
        plain_value("k", value)
    assert info.value.field == "metadata['k']"


@pytest.mark.parametrize("value", [b"x", [1], {"a": 1}, object(), 1j, dt.time(1, 2)])
def test_other_types_are_refused(value: object) -> None:
    with pytest.raises(InvalidEventError, match=r"metadata\['k'\] is a ") as info:
        plain_value("k", value)
    assert info.value.field == "metadata['k']"


# --- plain_customer_id ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("c-1", "c-1"),
        (" c ", " c "),
        (42, "42"),
        (-7, "-7"),
        (0, "0"),
        (LoudInt(42), "42"),
        (LoudStr("c-2"), "c-2"),
        (UID, "12345678-1234-5678-1234-567812345678"),
        (LoudUUID(int=UID.int), "12345678-1234-5678-1234-567812345678"),
    ],
)
def test_customer_id_to_exact_str(value: object, expected: str) -> None:
    out = plain_customer_id(value)
    assert out == expected
    assert type(out) is str


@pytest.mark.parametrize("value", [None, "", "   ", "\t\n", LoudStr(""), LoudStr("  ")])
def test_customer_id_blank_or_none_is_none(value: object) -> None:
    assert plain_customer_id(value) is None


@pytest.mark.parametrize("value", [True, False, 1.0, Decimal(1), b"c", Color.RED, object()])
def test_customer_id_other_types_are_refused(value: object) -> None:
    with pytest.raises(InvalidEventError, match="customer_id must be a str, int or UUID") as info:
        plain_customer_id(value)
    assert info.value.field == "customer_id"


# --- plain_text -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [("a@example.com", "a@example.com"), (LoudStr("+20100"), "+20100"), (" x ", " x ")],
)
def test_text_to_exact_str(value: object, expected: str) -> None:
    out = plain_text(value, "email")
    assert out == expected
    assert type(out) is str


@pytest.mark.parametrize("value", [None, "", "  ", LoudStr(""), LoudStr(" ")])
def test_text_blank_or_none_is_none(value: object) -> None:
    assert plain_text(value, "mobile") is None


@pytest.mark.parametrize("value", [1, 1.5, b"x", True, UID])
def test_text_other_types_are_refused(value: object) -> None:
    with pytest.raises(InvalidEventError, match="mobile must be a str") as info:
        plain_text(value, "mobile")
    assert info.value.field == "mobile"


# --- plain_token ----------------------------------------------------------------------------------
def test_token_none_is_none() -> None:
    assert plain_token(None) is None


def test_token_secretstr_of_exact_str_is_kept() -> None:
    token = SecretStr("t")
    assert plain_token(token) is token


@pytest.mark.parametrize("value", ["t", LoudStr("t"), SecretStr(LoudStr("t"))])
def test_token_to_secretstr_of_exact_str(value: object) -> None:
    out = plain_token(value)
    assert type(out) is SecretStr
    assert out.get_secret_value() == "t"
    assert type(out.get_secret_value()) is str
    assert out is not value


@pytest.mark.parametrize("value", [1, b"t", 1.5, True])
def test_token_other_types_are_refused(value: object) -> None:
    with pytest.raises(InvalidEventError, match="session_token must be a str") as info:
        plain_token(value)
    assert info.value.field == "session_token"
