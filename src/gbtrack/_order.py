"""Orders: Gameball's Order API body, converted on the caller's thread, checked off it.

An order is what earns a customer points in Gameball ("Without this call, no points are
earned"): ``POST /api/v4.0/integrations/orders`` with both keys, the body of the
OpenAPI operation ``trackOrder``. This module holds the order's record and its rules,
beside :mod:`gbtrack._event` for events:

- :func:`order_draft` converts what a call site read into an :class:`OrderDraft` (on the
  caller's thread: plain values only, so later changes to business objects do not leak
  in): ids and texts to ``str``, money to finite ``int``/``float`` (``Decimal``
  converted once, here), dates to ISO 8601 UTC with milliseconds and a ``Z`` (a naive
  ``datetime`` is taken as UTC), snake_case arguments to the camelCase wire keys, a
  ``None`` optional left out (never sent as ``null``);
- :meth:`OrderDraft.to_body` checks sizes where the order is serialised and returns the
  wire body.

Every failure is an :class:`~gbtrack.InvalidEventError` naming the argument at fault
(``field``), as for events, so call sites count it as an ``invalid_event`` drop.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, Literal, NamedTuple

from pydantic import SecretStr

from gbtrack._errors import ExpressionError, InvalidEventError
from gbtrack._event import DEFAULT_LIMITS, Limits, mask
from gbtrack._plain import plain_customer_id, plain_text

__all__ = [
    "CHANNELS",
    "LINE_ITEM_FIELDS",
    "MAX_RETURN_WINDOW_DAYS",
    "Channel",
    "OrderDraft",
    "StoredOrder",
    "each",
    "order_draft",
    "utc_timestamp",
]

Channel = Literal["mobile", "pos", "web", "callcenter"]
"""Where an order was placed (Gameball's ``channel`` enum)."""

CHANNELS: Final = ("mobile", "pos", "web", "callcenter")
MAX_RETURN_WINDOW_DAYS: Final = 7300  # cashbackConfigurations.returnWindow: 0..7300 days

# A line item's fields: the argument name -> (the wire key, its kind).
LINE_ITEM_FIELDS: Final[Mapping[str, tuple[str, str]]] = {
    "product_id": ("productId", "text"),
    "sku": ("sku", "text"),
    "title": ("title", "text"),
    "vendor": ("vendor", "text"),
    "quantity": ("quantity", "amount"),
    "price": ("price", "amount"),
    "weight": ("weight", "amount"),
    "taxes": ("taxes", "amount"),
    "discount": ("discount", "amount"),
    "tags": ("tags", "texts"),
    "category": ("category", "texts"),
    "collection": ("collection", "texts"),
    "extra": ("extra", "extra"),
}

# The optional totals of an order: argument -> wire key.
_TOTALS: Final = (
    ("total_price", "totalPrice"),
    ("total_discount", "totalDiscount"),
    ("total_shipping", "totalShipping"),
    ("total_tax", "totalTax"),
)
_MERCHANT: Final = {"unique_id": "uniqueId", "name": "name"}
_REDEMPTION: Final = {
    "points_hold_reference": ("pointsHoldReference", "text"),
    "coupons_lock_reference": ("couponsLockReference", "text"),
    "coupon_codes": ("couponCodes", "texts"),
}

_UTC = _dt.timezone.utc
_str_copy = str.__str__


# --- conversions (the caller's thread) --------------------------------------------------
def utc_timestamp(value: object, field: str = "order_date") -> str:
    """An instant as Gameball wants it: ISO 8601 in UTC with milliseconds and a ``Z``.

    Accepts an aware ``datetime`` (converted to UTC), a naive one (taken as UTC, as
    Gameball's own Python SDK did), a ``date`` (midnight UTC), an ISO 8601 string (read
    by :meth:`datetime.fromisoformat`, a trailing ``Z`` included) and a number of
    seconds since the epoch (``time.time()``).

    Raises:
        InvalidEventError: For another type, an unreadable string, or a bool.
    """
    cls = type(value)
    moment: _dt.datetime
    if issubclass(cls, _dt.datetime):
        moment = value  # type: ignore[assignment]
    elif issubclass(cls, _dt.date):
        day: _dt.date = value  # type: ignore[assignment]
        moment = _dt.datetime(day.year, day.month, day.day)
    elif issubclass(cls, str):
        text = _str_copy(value).strip()
        try:
            # Python 3.10's fromisoformat does not read a trailing Z.
            moment = _dt.datetime.fromisoformat(
                text[:-1] + "+00:00" if text[-1:] in "Zz" and text else text
            )
        except ValueError:
            raise InvalidEventError(
                f"{field} is not an ISO 8601 date-time: {text[:40]!r}", field=field
            ) from None
    elif (cls is int or cls is float or issubclass(cls, (int, float))) and cls is not bool:
        seconds = float(value)  # type: ignore[arg-type]
        if not math.isfinite(seconds):
            raise InvalidEventError(f"{field} is not a finite number of seconds", field=field)
        try:
            moment = _dt.datetime.fromtimestamp(seconds, _UTC)
        except (OverflowError, OSError, ValueError):
            raise InvalidEventError(f"{field} is out of range: {seconds!r}", field=field) from None
    else:
        raise InvalidEventError(
            f"{field} must be a datetime, date, ISO 8601 string or epoch seconds, "
            f"got {cls.__name__}",
            field=field,
        )
    if moment.tzinfo is not None and moment.utcoffset() is not None:
        moment = moment.astimezone(_UTC)
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:"
        f"{moment.minute:02d}:{moment.second:02d}.{moment.microsecond // 1000:03d}Z"
    )


# The last whole second now_timestamp() formatted, and its text: one tuple, replaced
# whole, so that threads never see one second's text under another's number.
_last_second: tuple[float, str] = (math.nan, "")


def now_timestamp(now: float) -> str:
    """``utc_timestamp(now)`` for a ``time.time()`` float, formatting each second once.

    The milliseconds are cut from the microseconds as :meth:`datetime.fromtimestamp`
    rounds them (half to even), so the text is the same as :func:`utc_timestamp`'s.
    """
    global _last_second
    frac, whole = math.modf(now)
    micro = round(frac * 1e6)
    if micro >= 1_000_000:
        micro -= 1_000_000
        whole += 1.0
    elif micro < 0:
        micro += 1_000_000
        whole -= 1.0
    last = _last_second
    if whole != last[0]:
        last = _last_second = (whole, utc_timestamp(whole)[:-5])  # without ".000Z"
    return last[1] + _MILLIS[micro // 1000]


_MILLIS: Final = tuple(f".{ms:03d}Z" for ms in range(1000))


def _amount(value: object, field: str) -> int | float:
    """A non-negative, finite amount as an exact ``int`` or ``float`` (Decimal converted)."""
    cls = type(value)
    number: int | float
    if cls is int or cls is float:
        number = value  # type: ignore[assignment]
    elif cls is bool:
        raise InvalidEventError(f"{field} must be a number, got bool", field=field)
    elif issubclass(cls, Decimal):
        number = Decimal.__float__(value)  # type: ignore[arg-type]
    elif issubclass(cls, int):
        number = int.__int__(value)  # type: ignore[arg-type]
    elif issubclass(cls, float):
        number = float.__float__(value)  # type: ignore[arg-type]
    else:
        raise InvalidEventError(
            f"{field} must be a number (int, float or Decimal), got {cls.__name__}", field=field
        )
    if type(number) is float and not math.isfinite(number):
        raise InvalidEventError(f"{field} is not a finite number", field=field)
    if number < 0:
        raise InvalidEventError(f"{field} is {number!r}; it must not be negative", field=field)
    return number


def _text(value: object, field: str) -> str | None:
    """An optional text as an exact ``str`` (ints and UUIDs for ids); ``None`` when blank."""
    try:
        return plain_customer_id(value)  # str, int or UUID; blank -> None
    except InvalidEventError:
        raise InvalidEventError(
            f"{field} must be a str, int or UUID, got {type(value).__name__}", field=field
        ) from None


def _texts(value: object, field: str) -> list[str] | None:
    """A list of strings (one string is a list of one)."""
    if value is None:
        return None
    if isinstance(value, str):
        items: Iterable[object] = (value,)
    elif isinstance(value, Iterable) and not isinstance(value, (bytes, Mapping)):
        items = value
    else:
        raise InvalidEventError(
            f"{field} must be a list of strings, got {type(value).__name__}", field=field
        )
    out = []
    for i, item in enumerate(items):
        text = plain_text(item, f"{field}[{i}]")
        if text is not None:
            out.append(text)
    return out


def _extra(value: object, field: str) -> dict[str, str | int | float] | None:
    """``extra``: string keys, values of type string or number (Gameball's rule)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidEventError(
            f"{field} must be a mapping, got {type(value).__name__}", field=field
        )
    out: dict[str, str | int | float] = {}
    for key, item in value.items():
        if type(key) is not str or not key:
            raise InvalidEventError(
                f"{field} keys must be non-empty strings, got {key!r}", field=field
            )
        where = f"{field}[{key!r}]"
        if item is None:
            continue
        if isinstance(item, str):
            out[key] = _str_copy(item)
        elif isinstance(item, (int, float, Decimal)) and type(item) is not bool:
            number = _number(item, where)
            out[key] = number
        else:
            raise InvalidEventError(
                f"{where} is a {type(item).__name__}; Gameball accepts strings and numbers here",
                field=where,
            )
    return out


def _number(value: object, field: str) -> int | float:
    """A finite number (negative allowed), Decimal converted."""
    if isinstance(value, Decimal):
        value = Decimal.__float__(value)
    elif isinstance(value, int):
        value = int.__int__(value)
    else:
        value = float.__float__(value)  # type: ignore[arg-type]
    if type(value) is float and not math.isfinite(value):
        raise InvalidEventError(f"{field} is not a finite number", field=field)
    return value


def _fields(value: object, field: str) -> Mapping[str, Any]:
    """A line item, merchant or redemption: a mapping of argument names to values."""
    if isinstance(value, Mapping):
        return value
    raise InvalidEventError(f"{field} must be a mapping, got {type(value).__name__}", field=field)


def line_item(value: object, index: int) -> dict[str, object]:
    """One line item (snake_case argument names) as its wire object.

    Raises:
        InvalidEventError: For an unknown field or a value of the wrong type.
    """
    where = f"line_items[{index}]"
    item = _fields(value, where)
    out: dict[str, object] = {}
    for name, raw in item.items():
        spec = LINE_ITEM_FIELDS.get(name)
        if spec is None:
            raise InvalidEventError(
                f"{where}: unknown field {name!r}{_hint(name, LINE_ITEM_FIELDS)}", field=where
            )
        key, kind = spec
        converted = _convert(raw, kind, f"{where}.{name}")
        if converted is not None:
            out[key] = converted
    return out


def _convert(raw: object, kind: str, field: str) -> object:
    if raw is None:
        return None
    if kind == "text":
        return _text(raw, field)
    if kind == "amount":
        return _amount(raw, field)
    if kind == "texts":
        return _texts(raw, field)
    return _extra(raw, field)


def _hint(name: str, valid: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


class OrderDraft(NamedTuple):
    """An order as read on the caller's thread, before its sizes are checked.

    Built by :func:`order_draft`: plain values only, camelCase wire keys already chosen.

    Attributes:
        customer_id: The customer id (the ambient one already applied).
        email: Optional email for channel merging.
        mobile: Optional mobile for channel merging.
        session_token: Optional session token (v4.1), sent as ``X-GB-TOKEN``.
        order_id: The order's id in the merchant's system (case kept).
        total_paid: What the customer paid, after discounts: what points are computed on.
        order_date: When the order was placed, ISO 8601 UTC (``...Z``).
        fields: The optional wire fields present, as ``(key, value)`` pairs.
        function: The tracked function's qualified name, for messages.
        timestamp: When the call happened (``time.time()``).
        on_outcome: Called once with this order's final outcome in this process (the
            per-decorator hook), on the sender's thread; ``None``: no hook.
    """

    customer_id: str
    email: str | None
    mobile: str | None
    session_token: SecretStr | None
    order_id: str
    total_paid: int | float
    order_date: str
    fields: tuple[tuple[str, object], ...]
    function: str | None
    timestamp: float
    on_outcome: Callable[[Any], object] | None = None

    def __repr__(self) -> str:
        return (
            f"OrderDraft(order_id={self.order_id!r}, customer_id={self.customer_id!r}, "
            f"email={mask('email', self.email)!r}, mobile={mask('mobile', self.mobile)!r}, "
            f"session_token={'None' if self.session_token is None else '**********'}, "
            f"total_paid={self.total_paid!r}, order_date={self.order_date!r}, "
            f"fields={[key for key, _ in self.fields]!r}, function={self.function!r})"
        )

    def to_body(self, limits: Limits | None = None) -> dict[str, Any]:
        """Check sizes and return the order's wire body (``POST .../orders``).

        Raises:
            InvalidEventError: Naming the field at fault.
        """
        limits = DEFAULT_LIMITS if limits is None else limits
        _check_length(
            "customer_id", self.customer_id, limits.max_customer_id_length, "max_customer_id_length"
        )
        _check_length("order_id", self.order_id, limits.max_string_length, "max_string_length")
        body: dict[str, Any] = {"customerId": self.customer_id}
        if self.email is not None:
            _check_length("email", self.email, limits.max_email_length, "max_email_length")
            body["email"] = self.email
        if self.mobile is not None:
            _check_length("mobile", self.mobile, limits.max_mobile_length, "max_mobile_length")
            body["mobile"] = self.mobile
        body["orderId"] = self.order_id
        body["orderDate"] = self.order_date
        body["totalPaid"] = self.total_paid
        for key, value in self.fields:
            body[key] = value
        _check_numbers("totalPaid", body["totalPaid"], limits)
        for key, value in self.fields:
            _check_tree(key, value, limits)
        return body


def _check_length(field: str, text: str, limit: int, attr: str) -> None:
    if len(text) > limit:
        raise InvalidEventError(
            f"{field} is {len(text):,} characters; the limit is {limit:,} (Limits.{attr})",
            field=field,
        )
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidEventError(
                f"{field} holds a lone surrogate, which cannot be sent as UTF-8", field=field
            ) from None


def _check_numbers(field: str, value: object, limits: Limits) -> None:
    if type(value) is int and not limits.min_int <= value <= limits.max_int:
        raise InvalidEventError(
            f"{field} is outside {limits.min_int:,}..{limits.max_int:,} "
            "(Limits.min_int/max_int, the integers a JSON double holds exactly)",
            field=field,
        )


def _check_tree(field: str, value: object, limits: Limits) -> None:
    """Strings and integers anywhere in an optional field, against the limits."""
    if type(value) is str:
        _check_length(field, value, limits.max_string_length, "max_string_length")
    elif type(value) is int:
        _check_numbers(field, value, limits)
    elif type(value) is dict:
        for key, item in value.items():
            _check_tree(f"{field}.{key}", item, limits)
    elif type(value) is list:
        for i, item in enumerate(value):
            _check_tree(f"{field}[{i}]", item, limits)


def order_draft(
    *,
    customer_id: str,
    order_id: object,
    total_paid: object,
    order_date: object = None,
    email: str | None = None,
    mobile: str | None = None,
    session_token: SecretStr | None = None,
    total_price: object = None,
    total_discount: object = None,
    total_shipping: object = None,
    total_tax: object = None,
    line_items: object = None,
    extra: object = None,
    merchant: object = None,
    redemption: object = None,
    guest: object = None,
    channel: object = None,
    cart_id: object = None,
    return_window_days: object = None,
    function: str | None = None,
    now: float,
    on_outcome: Callable[[Any], object] | None = None,
) -> OrderDraft:
    """Convert what a call site read into an :class:`OrderDraft` (the caller's thread).

    The identity (``customer_id``, ``email``, ``mobile``, ``session_token``) comes
    already completed from the ambient one. ``order_date`` ``None`` means ``now``.

    Raises:
        InvalidEventError: Naming the argument at fault.
    """
    oid = _text(order_id, "order_id")
    if oid is None:
        raise InvalidEventError("order_id is missing (None or blank)", field="order_id")
    if total_paid is None:
        raise InvalidEventError("total_paid is missing (None)", field="total_paid")
    paid = _amount(total_paid, "total_paid")
    date = utc_timestamp(now if order_date is None else order_date)
    fields: list[tuple[str, object]] = []
    totals = (total_price, total_discount, total_shipping, total_tax)
    for (name, key), value in zip(_TOTALS, totals, strict=True):
        if value is not None:
            fields.append((key, _amount(value, name)))
    if line_items is not None:
        if isinstance(line_items, (str, bytes, Mapping)) or not isinstance(line_items, Iterable):
            raise InvalidEventError(
                f"line_items must be a list of line items, got {type(line_items).__name__}",
                field="line_items",
            )
        fields.append(("lineItems", [line_item(item, i) for i, item in enumerate(line_items)]))
    checked_extra = _extra(extra, "extra")
    if checked_extra is not None:
        fields.append(("extra", checked_extra))
    if merchant is not None:
        fields.append(("merchant", _merchant(merchant)))
    if redemption is not None:
        fields.append(("redemption", _redemption(redemption)))
    if guest is not None:
        if type(guest) is not bool:
            raise InvalidEventError(
                f"guest must be a bool, got {type(guest).__name__}", field="guest"
            )
        fields.append(("guest", guest))
    if channel is not None:
        fields.append(("channel", check_channel(channel)))
    cart = _text(cart_id, "cart_id")
    if cart is not None:
        fields.append(("cartId", cart))
    if return_window_days is not None:
        fields.append(
            ("cashbackConfigurations", {"returnWindow": check_return_window(return_window_days)})
        )
    return OrderDraft(
        customer_id,
        email,
        mobile,
        session_token,
        oid,
        paid,
        date,
        tuple(fields),
        function,
        now,
        on_outcome,
    )


def check_channel(value: object) -> str:
    """Return ``value`` if it is one of Gameball's channels.

    Raises:
        InvalidEventError: Naming the valid channels.
    """
    if type(value) is str and value in CHANNELS:
        return value
    raise InvalidEventError(
        f"channel must be one of {', '.join(CHANNELS)}, got {value!r}", field="channel"
    )


def check_return_window(value: object) -> int:
    """Return ``value`` if it is a whole number of days from 0 to 7,300.

    Raises:
        InvalidEventError: Naming the range.
    """
    if type(value) is int and 0 <= value <= MAX_RETURN_WINDOW_DAYS:
        return value
    raise InvalidEventError(
        f"return_window_days must be an int from 0 to {MAX_RETURN_WINDOW_DAYS:,}, got {value!r}",
        field="return_window_days",
    )


def _merchant(value: object) -> dict[str, object]:
    item = _fields(value, "merchant")
    out: dict[str, object] = {}
    for name, raw in item.items():
        if name == "branch":
            if raw is not None:
                branch = _fields(raw, "merchant.branch")
                converted = {}
                for sub, text in branch.items():
                    key = _MERCHANT.get(sub)
                    if key is None:
                        raise InvalidEventError(
                            f"merchant.branch: unknown field {sub!r}{_hint(sub, _MERCHANT)}",
                            field="merchant.branch",
                        )
                    checked = _text(text, f"merchant.branch.{sub}")
                    if checked is not None:
                        converted[key] = checked
                out["branch"] = converted
            continue
        key = _MERCHANT.get(name)
        if key is None:
            raise InvalidEventError(
                f"merchant: unknown field {name!r}{_hint(name, [*_MERCHANT, 'branch'])}",
                field="merchant",
            )
        checked = _text(raw, f"merchant.{name}")
        if checked is not None:
            out[key] = checked
    return out


def _redemption(value: object) -> dict[str, object]:
    item = _fields(value, "redemption")
    out: dict[str, object] = {}
    for name, raw in item.items():
        spec = _REDEMPTION.get(name)
        if spec is None:
            raise InvalidEventError(
                f"redemption: unknown field {name!r}{_hint(name, _REDEMPTION)}", field="redemption"
            )
        key, kind = spec
        converted = _convert(raw, kind, f"redemption.{name}")
        if converted is not None:
            out[key] = converted
    return out


class each:  # a path-language construct, spelled like literal()
    """Map each element of a list to a line item: ``each("result.lines", sku="sku", ...)``.

    The one path-language construct for lists: ``path`` names an iterable (checked at
    decoration against its annotation, e.g. ``list[Line]``), and each keyword is a line
    item field whose path is rooted at one element (``"product.id"`` reads
    ``line.product.id``), a :func:`~gbtrack.literal`, or a callable of the element.

    Args:
        path: The path of the iterable.
        **fields: Line item fields (``product_id``, ``sku``, ``title``, ``vendor``,
            ``quantity``, ``price``, ``weight``, ``taxes``, ``discount``, ``tags``,
            ``category``, ``collection``, ``extra``) to their path.

    Raises:
        ExpressionError: For a path that is not a string, no fields, or an unknown field.
    """

    __slots__ = ("fields", "path")

    def __init__(self, path: str, /, **fields: object) -> None:
        if not isinstance(path, str) or not path.strip():
            raise ExpressionError(f"each(): the path must be a non-empty string, got {path!r}")
        if not fields:
            raise ExpressionError(f"each({path!r}): give at least one line item field")
        for name in fields:
            if name not in LINE_ITEM_FIELDS:
                raise ExpressionError(
                    f"each({path!r}): unknown line item field {name!r}"
                    f"{_hint(name, LINE_ITEM_FIELDS)}; the fields are "
                    f"{', '.join(LINE_ITEM_FIELDS)}"
                )
        self.path = path
        self.fields: dict[str, object] = dict(fields)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.fields.items())
        return f"each({self.path!r}, {inner})"


@dataclass(frozen=True)
class StoredOrder:
    """An order as the outbox keeps it: its checked wire body, and when it was taken.

    What is sent is exactly :attr:`body` (one request, or one item of a
    ``/batch/orders`` job), without a session token (never written).

    Attributes:
        body: The wire body of ``POST .../orders`` (:meth:`gbtrack.OrderDraft.to_body`).
        timestamp: When the order was taken (epoch seconds): its age for ``max_age``.
        function: The tracked function's qualified name, for messages.
    """

    body: dict[str, Any]
    timestamp: float
    function: str | None = None

    @classmethod
    def of(cls, draft: OrderDraft, limits: Limits | None = None) -> StoredOrder:
        """Check ``draft`` against ``limits`` and keep its body.

        Raises:
            InvalidEventError: Naming the field at fault.
        """
        return cls(draft.to_body(limits), draft.timestamp, draft.function)

    @property
    def order_id(self) -> str:
        """The order's id (``orderId``)."""
        return str(self.body["orderId"])

    @property
    def customer_id(self) -> str:
        """The customer's id (``customerId``)."""
        return str(self.body["customerId"])
