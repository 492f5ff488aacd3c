"""Orders' record: conversions on the caller's thread and the wire body (gbtrack._order)."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gbtrack import ExpressionError, InvalidEventError, Limits
from gbtrack._order import each, order_draft, utc_timestamp

NOW = 1_700_000_000.25  # 2023-11-14T22:13:20.250Z


def draft(**kwargs: Any) -> Any:
    base: dict[str, Any] = {"customer_id": "c-1", "order_id": "A-1", "total_paid": 10, "now": NOW}
    base.update(kwargs)
    return order_draft(**base)


def body(**kwargs: Any) -> dict[str, Any]:
    return draft(**kwargs).to_body()  # type: ignore[no-any-return]


# --- dates -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            dt.datetime(2024, 10, 16, 8, 13, 29, 290_123, tzinfo=dt.timezone.utc),
            "2024-10-16T08:13:29.290Z",
        ),
        (dt.datetime(2024, 10, 16, 8, 13, 29), "2024-10-16T08:13:29.000Z"),  # naive: UTC
        (
            dt.datetime(2024, 10, 16, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            "2024-10-16T08:00:00.000Z",
        ),
        (dt.date(2024, 2, 29), "2024-02-29T00:00:00.000Z"),
        ("2024-10-16T08:13:29.290Z", "2024-10-16T08:13:29.290Z"),
        ("2024-10-16T10:13:29+02:00", "2024-10-16T08:13:29.000Z"),
        ("2024-10-16", "2024-10-16T00:00:00.000Z"),
        (0, "1970-01-01T00:00:00.000Z"),
        (NOW, "2023-11-14T22:13:20.250Z"),
    ],
)
def test_order_dates_are_utc_iso_with_milliseconds(value: object, expected: str) -> None:
    assert utc_timestamp(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "got bool"),
        ("yesterday", "not an ISO 8601 date-time: 'yesterday'"),
        ("", "not an ISO 8601"),
        (float("nan"), "not a finite number"),
        (1e30, "out of range"),
        (b"2024-01-01", "got bytes"),
    ],
)
def test_unreadable_dates_are_refused_by_name(value: object, message: str) -> None:
    with pytest.raises(InvalidEventError, match=message) as info:
        utc_timestamp(value)
    assert info.value.field == "order_date"


@given(
    st.datetimes(timezones=st.sampled_from([dt.timezone.utc, dt.timezone(dt.timedelta(hours=-5))]))
)
def test_a_date_survives_the_round_trip_to_the_millisecond(moment: dt.datetime) -> None:
    text = utc_timestamp(moment)
    assert text.endswith("Z")
    assert len(text) == 24
    back = dt.datetime.fromisoformat(text[:-1] + "+00:00")
    assert back == moment.replace(microsecond=moment.microsecond // 1000 * 1000)


# --- the order -------------------------------------------------------------------------
def test_the_minimal_order_has_the_four_required_fields_in_camel_case() -> None:
    assert body() == {
        "customerId": "c-1",
        "orderId": "A-1",
        "orderDate": "2023-11-14T22:13:20.250Z",  # the call's time by default
        "totalPaid": 10,
    }


def test_every_optional_field_is_mapped_and_none_is_left_out() -> None:
    sent = body(
        order_id=uuid.UUID(int=7),
        total_paid=Decimal("99.50"),
        order_date="2024-01-02T03:04:05Z",
        email="a@example.com",
        mobile="+201000000000",
        total_price=120,
        total_discount=Decimal("20.5"),
        total_shipping=None,
        total_tax=3.25,
        line_items=[
            {
                "product_id": 17,
                "sku": "S-1",
                "title": "Mug",
                "quantity": 2,
                "price": Decimal("9.99"),
                "tags": ["kitchen"],
                "category": "home",
                "extra": {"colour": "red", "size": 3},
                "vendor": None,
            },
        ],
        extra={"paymentMethod": "card", "gift": None},
        merchant={"unique_id": "store-7", "branch": {"unique_id": 4, "name": "Downtown"}},
        redemption={"points_hold_reference": "H-1", "coupon_codes": ["TEN"]},
        guest=False,
        channel="web",
        cart_id="cart-9",
        return_window_days=14,
    )
    assert sent == {
        "customerId": "c-1",
        "email": "a@example.com",
        "mobile": "+201000000000",
        "orderId": "00000000-0000-0000-0000-000000000007",
        "orderDate": "2024-01-02T03:04:05.000Z",
        "totalPaid": 99.5,
        "totalPrice": 120,
        "totalDiscount": 20.5,
        "totalTax": 3.25,
        "lineItems": [
            {
                "productId": "17",
                "sku": "S-1",
                "title": "Mug",
                "quantity": 2,
                "price": 9.99,
                "tags": ["kitchen"],
                "category": ["home"],
                "extra": {"colour": "red", "size": 3},
            },
        ],
        "extra": {"paymentMethod": "card"},
        "merchant": {"uniqueId": "store-7", "branch": {"uniqueId": "4", "name": "Downtown"}},
        "redemption": {"pointsHoldReference": "H-1", "couponCodes": ["TEN"]},
        "guest": False,
        "channel": "web",
        "cartId": "cart-9",
        "cashbackConfigurations": {"returnWindow": 14},
    }


@pytest.mark.parametrize(
    ("kwargs", "field", "message"),
    [
        ({"order_id": None}, "order_id", "order_id is missing"),
        ({"order_id": "  "}, "order_id", "order_id is missing"),
        ({"order_id": 1.5}, "order_id", "order_id must be a str, int or UUID, got float"),
        ({"total_paid": None}, "total_paid", "total_paid is missing"),
        ({"total_paid": True}, "total_paid", "must be a number, got bool"),
        ({"total_paid": "10"}, "total_paid", "must be a number (int, float or Decimal), got str"),
        ({"total_paid": -1}, "total_paid", "-1; it must not be negative"),
        ({"total_paid": Decimal("NaN")}, "total_paid", "not a finite number"),
        ({"total_paid": float("inf")}, "total_paid", "not a finite number"),
        ({"total_tax": -0.5}, "total_tax", "must not be negative"),
        ({"channel": "shop"}, "channel", "one of mobile, pos, web, callcenter, got 'shop'"),
        ({"return_window_days": 7301}, "return_window_days", "from 0 to 7,300, got 7301"),
        ({"return_window_days": True}, "return_window_days", "got True"),
        ({"guest": "no"}, "guest", "guest must be a bool, got str"),
        ({"extra": {"x": [1]}}, "extra['x']", "is a list; Gameball accepts strings and numbers"),
        ({"extra": {"x": True}}, "extra['x']", "is a bool"),
        ({"extra": {"": 1}}, "extra", "keys must be non-empty strings"),
        ({"extra": ["x"]}, "extra", "must be a mapping, got list"),
        ({"line_items": {"sku": "x"}}, "line_items", "must be a list of line items, got dict"),
        (
            {"line_items": [{"skuu": "x"}]},
            "line_items[0]",
            "unknown field 'skuu'; did you mean 'sku'?",
        ),
        ({"line_items": [{"quantity": -2}]}, "line_items[0].quantity", "must not be negative"),
        ({"line_items": [{"tags": 3}]}, "line_items[0].tags", "must be a list of strings, got int"),
        ({"line_items": [{"tags": ["a", 3]}]}, "line_items[0].tags[1]", "must be a str, got int"),
        ({"merchant": {"id": "x"}}, "merchant", "unknown field 'id'"),
        ({"merchant": {"branch": {"nam": "x"}}}, "merchant.branch", "did you mean 'name'?"),
        ({"redemption": {"coupons": "x"}}, "redemption", "unknown field 'coupons'"),
    ],
)
def test_bad_values_are_refused_naming_the_argument(
    kwargs: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(InvalidEventError) as info:
        draft(**kwargs)
    assert message in str(info.value)
    assert info.value.field == field


def test_the_body_is_checked_against_the_limits() -> None:
    with pytest.raises(InvalidEventError, match="customer_id is 101 characters") as info:
        draft(customer_id="c" * 101).to_body()
    assert info.value.field == "customer_id"
    with pytest.raises(InvalidEventError, match="order_id is 11 characters; the limit is 10"):
        draft(order_id="x" * 11).to_body(Limits(max_string_length=10))
    with pytest.raises(InvalidEventError, match="totalPaid is outside"):
        draft(total_paid=2**60).to_body()
    with pytest.raises(InvalidEventError, match=r"lineItems\[0\].title holds a lone surrogate"):
        draft(line_items=[{"title": "a\ud800"}]).to_body()
    with pytest.raises(InvalidEventError, match=r"extra.n is outside"):
        draft(extra={"n": -(2**60)}).to_body()


def test_the_repr_masks_contacts_and_hides_the_token() -> None:
    from pydantic import SecretStr

    text = repr(draft(email="alice@example.com", session_token=SecretStr("t0ken")))
    assert "alice@example.com" not in text
    assert "t0ken" not in text
    assert "order_id='A-1'" in text


# --- each() ----------------------------------------------------------------------------
def test_each_names_its_fields_and_refuses_unknown_ones() -> None:
    mapping = each("result.lines", product_id="product.id", quantity="quantity")
    assert (mapping.path, mapping.fields) == (
        "result.lines",
        {"product_id": "product.id", "quantity": "quantity"},
    )
    assert repr(mapping) == "each('result.lines', product_id='product.id', quantity='quantity')"
    with pytest.raises(ExpressionError, match="unknown line item field 'qty'"):
        each("result.lines", qty="q")
    with pytest.raises(ExpressionError, match="at least one line item field"):
        each("result.lines")
    with pytest.raises(ExpressionError, match="non-empty string"):
        each("", sku="sku")


# --- found by mutation testing -----------------------------------------------------------
def test_the_body_names_the_limit_of_each_identity_field() -> None:
    limits = Limits(max_email_length=5, max_mobile_length=4, max_customer_id_length=3)
    cases = [
        ({"customer_id": "c-12"}, "customer_id", "Limits.max_customer_id_length"),
        ({"customer_id": "c", "email": "a@b.co"}, "email", "Limits.max_email_length"),
        ({"customer_id": "c", "mobile": "+2010"}, "mobile", "Limits.max_mobile_length"),
        ({"customer_id": "c", "order_id": "x" * 2_001}, "order_id", "Limits.max_string_length"),
    ]
    for kwargs, field, attr in cases:
        with pytest.raises(InvalidEventError) as info:
            draft(**kwargs).to_body(limits if field != "order_id" else None)
        assert info.value.field == field
        assert str(info.value).startswith(f"{field} is ")
        assert attr in str(info.value)


def test_extra_numbers_are_converted_and_must_be_finite() -> None:
    class Money(float):
        pass

    sent = body(extra={"a": Decimal("1.5"), "b": Money(2.5), "c": -3, "d": "x"})
    assert sent["extra"] == {"a": 1.5, "b": 2.5, "c": -3, "d": "x"}
    assert [type(v) for v in sent["extra"].values()] == [float, float, int, str]
    for bad in (float("nan"), Decimal("Infinity")):
        with pytest.raises(InvalidEventError, match=r"extra\['n'\] is not a finite number") as info:
            draft(extra={"n": bad})
        assert info.value.field == "extra['n']"


def test_missing_required_values_say_so_exactly() -> None:
    with pytest.raises(InvalidEventError) as info:
        draft(order_id=None)
    assert str(info.value) == "order_id is missing (None or blank)"
    with pytest.raises(InvalidEventError) as info:
        draft(total_paid=None)
    assert str(info.value) == "total_paid is missing (None)"
    with pytest.raises(InvalidEventError) as info:
        draft(cart_id=1.5)
    assert info.value.field == "cart_id"


def test_a_lowercase_z_and_epoch_subclasses_are_read_as_utc() -> None:
    class Seconds(int):
        pass

    assert utc_timestamp("2024-10-16T08:13:29.5z") == "2024-10-16T08:13:29.500Z"
    assert utc_timestamp(Seconds(86_400)) == "1970-01-02T00:00:00.000Z"
    with pytest.raises(InvalidEventError, match=r"not an ISO 8601 date-time: 'x{40}'"):
        utc_timestamp("x" * 50)
