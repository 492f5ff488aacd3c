"""Gameball's Order API as the emulator speaks it: validation, points, records.

Validation follows the request schema of ``POST /api/v4.0/integrations/orders`` in
Gameball's OpenAPI file (``trackOrder``): the four required fields, every declared
property's type and format, the ``channel`` enum and the ``returnWindow`` range. What
the schema leaves open (extra properties, sizes) is accepted, and an optional field
sent as ``null`` reads as absent (as the events API's ``email`` and ``mobile`` do).
One documented rule goes beyond the schema's types: the values of ``extra`` (order
and line item) must be strings or numbers, as Gameball's field descriptions say.

Nothing here holds state or a lock: :mod:`gbtrack.emulator._state` calls these
functions and keeps the records.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from typing import Any, Final, Literal

__all__ = [
    "CHANNELS",
    "DEFAULT_DUPLICATE_ORDER_CODE",
    "DEFAULT_DUPLICATE_ORDER_STATUS",
    "DEFAULT_POINTS_PER_UNIT",
    "DuplicateOrders",
    "ReceivedOrder",
    "check_duplicate_orders",
    "check_order",
    "check_points_per_unit",
    "order_answer",
    "order_points",
    "status_for_code",
]

DuplicateOrders = Literal["reject", "accept"]
"""What the emulator does with an ``orderId`` it already recorded."""

DEFAULT_POINTS_PER_UNIT: Final = 1.0
"""Points per unit of ``totalPaid`` (``rewardedPoints = floor(totalPaid * rate)``)."""

# UNCONFIRMED: Gameball documents that a duplicate orderId "is rejected", but no status
# or code. 422 with 9004 ("Transaction ID Already Exists") is the best-supported guess.
DEFAULT_DUPLICATE_ORDER_STATUS: Final = 422
"""The HTTP status a rejected duplicate order answers by default (UNCONFIRMED)."""
DEFAULT_DUPLICATE_ORDER_CODE: Final = 9004
"""The Gameball code a rejected duplicate order answers by default (UNCONFIRMED)."""

CHANNELS: Final = ("mobile", "pos", "web", "callcenter")
"""The values of ``channel`` the schema's enum allows."""
MAX_RETURN_WINDOW: Final = 7300
"""The most days ``cashbackConfigurations.returnWindow`` may hold (20 years)."""

_REQUIRED: Final = ("customerId", "orderId", "orderDate", "totalPaid")
_STRINGS: Final = ("customerId", "orderId", "email", "mobile", "cartId")
_NUMBERS: Final = ("totalPaid", "totalPrice", "totalDiscount", "totalShipping", "totalTax")
_LINE_STRINGS: Final = ("productId", "sku", "title", "vendor")
_LINE_NUMBERS: Final = ("quantity", "price", "weight", "taxes", "discount")
_LINE_STRING_ARRAYS: Final = ("tags", "category", "collection")

# RFC 3339 date-time, the meaning of JSON Schema's "date-time" format.
_DATE_TIME: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:[Zz]|[+-](\d{2}):(\d{2}))\Z"
)

Problem = tuple[int, str]
"""A refusal: the Gameball code and a message naming the field."""


@dataclass(frozen=True)
class ReceivedOrder:
    """One order the emulator accepted.

    Attributes:
        customer_id: Its ``customerId``.
        order_id: Its ``orderId`` (case kept: Gameball's ids are case-sensitive).
        order_date: Its ``orderDate``, as received.
        total_paid: Its ``totalPaid``.
        rewarded_points: The points the emulator awarded for it.
        body: The whole order object, as received.
        email: Its ``email``, if any.
        mobile: Its ``mobile``, if any.
        has_session_token: Whether an ``X-GB-TOKEN`` header came with it (its value is
            never kept).
        version: ``"v4.0"``, ``"v4.1"`` or ``"batch"`` (the endpoint that received it).
        request_id: The emulator's id of the request that carried it.
        received_at: When it was received (``time.time()``).
        batch_job_id: The batch job that recorded it, for ``"batch"`` orders.
        batch_index: Its item's position in the batch body, for ``"batch"`` orders.
        duplicate: Whether its ``orderId`` had been recorded before (only with
            ``duplicate_orders="accept"``: it was awarded again).
    """

    customer_id: str
    order_id: str
    order_date: str
    total_paid: float
    rewarded_points: int
    body: dict[str, Any]
    email: str | None
    mobile: str | None
    has_session_token: bool
    version: str
    request_id: str
    received_at: float
    batch_job_id: int | None = None
    batch_index: int | None = None
    duplicate: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return the order as the JSON object ``GET /_emulator/orders`` lists."""
        return {
            "customerId": self.customer_id,
            "orderId": self.order_id,
            "orderDate": self.order_date,
            "totalPaid": self.total_paid,
            "rewardedPoints": self.rewarded_points,
            "body": self.body,
            "email": self.email,
            "mobile": self.mobile,
            "hasSessionToken": self.has_session_token,
            "version": self.version,
            "requestId": self.request_id,
            "receivedAt": self.received_at,
            "batchJobId": self.batch_job_id,
            "batchIndex": self.batch_index,
            "duplicate": self.duplicate,
        }


def status_for_code(code: int) -> int:
    """The HTTP status of an order refusal's code (2000: 412; 3000, 3016: 400; else 422)."""
    if code == 2000:
        return 412
    return 400 if code in (3000, 3016) else 422


def check_order(item: Any) -> Problem | None:
    """Validate one order object against the ``trackOrder`` request schema.

    Returns:
        ``(code, message)`` for an invalid order, ``None`` for a valid one: 2000 for a
        missing ``customerId`` (Gameball's own example of 412 "Precondition Failed"),
        3000 for another required field missing, 3001 for a required field ``null``,
        3003 for any other invalid value (a wrong type, a bad ``orderDate``, a
        ``channel`` outside the enum, a ``returnWindow`` outside 0-7300).
    """
    if type(item) is not dict:
        return 3003, "each order must be a JSON object"
    missing = [name for name in _REQUIRED if name not in item]
    if "customerId" in missing:
        return 2000, "customerId is required: an order needs the customer it belongs to"
    if missing:
        return 3000, f"missing required field(s): {', '.join(missing)}"
    nulls = [name for name in _REQUIRED if item[name] is None]
    if nulls:
        return 3001, f"{', '.join(nulls)} must not be null"
    return _check_fields(item)


def _check_fields(item: dict[str, Any]) -> Problem | None:
    for name in ("customerId", "orderId"):
        if type(item[name]) is not str or not item[name].strip():
            return 3003, f"{name} must be a non-empty string"
    problem = _check_types(item, "", _STRINGS, _NUMBERS)
    if problem is not None:
        return problem
    date = item["orderDate"]
    if type(date) is not str or not _is_date_time(date):
        return 3003, (
            "orderDate must be an ISO 8601 (RFC 3339) date-time in UTC, "
            f"e.g. 2024-10-16T08:13:29.290Z, got {date!r}"
        )
    guest = item.get("guest")
    if guest is not None and type(guest) is not bool:
        return 3003, f"guest must be a boolean, got {_json_type(guest)}"
    channel = item.get("channel")
    if channel is not None and channel not in CHANNELS:
        return 3003, f"channel must be one of {', '.join(CHANNELS)}, got {channel!r}"
    for check in (_check_line_items, _check_nested, _check_cashback):
        problem = check(item)
        if problem is not None:
            return problem
    return _check_extra(item.get("extra"), "extra")


def _check_types(
    obj: dict[str, Any], where: str, strings: tuple[str, ...], numbers: tuple[str, ...]
) -> Problem | None:
    for name in strings:
        value = obj.get(name)
        if value is not None and type(value) is not str:
            return 3003, f"{where}{name} must be a string, got {_json_type(value)}"
    for name in numbers:
        value = obj.get(name)
        if value is not None and not _is_number(value):
            return 3003, f"{where}{name} must be a number, got {_json_type(value)}"
    return None


def _check_line_items(item: dict[str, Any]) -> Problem | None:
    lines = item.get("lineItems")
    if lines is None:
        return None
    if type(lines) is not list:
        return 3003, f"lineItems must be an array, got {_json_type(lines)}"
    for index, line in enumerate(lines):
        where = f"lineItems[{index}]."
        if type(line) is not dict:
            return 3003, f"lineItems[{index}] must be an object, got {_json_type(line)}"
        problem = _check_types(line, where, _LINE_STRINGS, _LINE_NUMBERS)
        if problem is not None:
            return problem
        for name in _LINE_STRING_ARRAYS:
            problem = _check_string_array(line.get(name), where + name)
            if problem is not None:
                return problem
        problem = _check_extra(line.get("extra"), where + "extra")
        if problem is not None:
            return problem
    return None


def _check_nested(item: dict[str, Any]) -> Problem | None:
    redemption = item.get("redemption")
    if redemption is not None:
        if type(redemption) is not dict:
            return 3003, f"redemption must be an object, got {_json_type(redemption)}"
        refs = ("pointsHoldReference", "couponsLockReference")
        problem = _check_types(redemption, "redemption.", refs, ())
        if problem is None:
            problem = _check_string_array(redemption.get("couponCodes"), "redemption.couponCodes")
        if problem is not None:
            return problem
    merchant = item.get("merchant")
    if merchant is None:
        return None
    if type(merchant) is not dict:
        return 3003, f"merchant must be an object, got {_json_type(merchant)}"
    problem = _check_types(merchant, "merchant.", ("uniqueId", "name"), ())
    if problem is not None:
        return problem
    branch = merchant.get("branch")
    if branch is None:
        return None
    if type(branch) is not dict:
        return 3003, f"merchant.branch must be an object, got {_json_type(branch)}"
    return _check_types(branch, "merchant.branch.", ("uniqueId", "name"), ())


def _check_cashback(item: dict[str, Any]) -> Problem | None:
    config = item.get("cashbackConfigurations")
    if config is None:
        return None
    if type(config) is not dict:
        return 3003, f"cashbackConfigurations must be an object, got {_json_type(config)}"
    window = config.get("returnWindow")
    if window is None:
        return None
    integral = _is_number(window) and float(window).is_integer()
    if not integral or not 0 <= window <= MAX_RETURN_WINDOW:
        return 3003, (
            f"cashbackConfigurations.returnWindow must be an integer from 0 to "
            f"{MAX_RETURN_WINDOW} (days), got {window!r}"
        )
    return None


def _check_string_array(value: Any, where: str) -> Problem | None:
    if value is None:
        return None
    if type(value) is not list or not all(type(v) is str for v in value):
        return 3003, f"{where} must be an array of strings"
    return None


def _check_extra(value: Any, where: str) -> Problem | None:
    if value is None:
        return None
    if type(value) is not dict:
        return 3003, f"{where} must be an object, got {_json_type(value)}"
    for key, entry in value.items():
        if type(entry) is not str and not _is_number(entry):
            return 3003, f"{where}[{key!r}] must be a string or number, got {_json_type(entry)}"
    return None


def _is_number(value: Any) -> bool:
    kind = type(value)
    return kind is int or kind is float


def _is_date_time(text: str) -> bool:
    match = _DATE_TIME.match(text)
    if match is None:
        return False
    year, month, day, hour, minute, second, off_h, off_m = match.groups()
    try:
        dt.datetime(int(year), int(month), int(day), int(hour), int(minute))
    except ValueError:
        return False
    if int(second) > 60:  # 60: a leap second, which RFC 3339 allows
        return False
    return off_h is None or (int(off_h) <= 23 and int(off_m) <= 59)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (int, float)):
        return "number"
    return "array" if isinstance(value, list) else "object"


_MAX_POINTS: Final = float(2**53)  # JSON numbers stay exact below this


def _bounded(value: float) -> float:
    """``value`` within ``[0, 2**53]``: absurd amounts (1e308 * 10 is inf) earn the cap."""
    return min(max(value, 0.0), _MAX_POINTS)


def order_points(total_paid: float, points_per_unit: float) -> int:
    """The points an order earns: ``floor(totalPaid * points_per_unit)``, from 0 to 2**53."""
    # Rounded first, so 0.29 * 100 earns 29, not 28 (binary floating point).
    return math.floor(_bounded(round(total_paid * points_per_unit, 6)))


def order_answer(order: dict[str, Any], rewarded: int, points_per_unit: float) -> dict[str, Any]:
    """The ``200`` body of a tracked order, in the shape of the OpenAPI's answer.

    ``{"customerId", "redeemedPoints", "rewardedPoints", "lineItems"}``; a line item's
    ``decimalPoints`` is ``points_per_unit * (price * quantity - discount)``, its
    ``points`` that floored; ``redeemedPoints`` and ``score`` are 0 (the emulator holds
    no points to redeem and keeps no scores).
    """
    lines = []
    for line in order.get("lineItems") or ():
        quantity = 1 if line.get("quantity") is None else line["quantity"]
        value = _number(line, "price", 0) * quantity - _number(line, "discount", 0)
        decimal = round(_bounded(value * points_per_unit), 2)
        answer: dict[str, Any] = {}
        if line.get("productId") is not None:  # the answer's productId is a string or absent
            answer["productId"] = line["productId"]
        answer.update(quantity=quantity, decimalPoints=decimal, points=math.floor(decimal), score=0)
        lines.append(answer)
    return {
        "customerId": order["customerId"],
        "redeemedPoints": 0,
        "rewardedPoints": rewarded,
        "lineItems": lines,
    }


def _number(obj: dict[str, Any], name: str, default: float) -> float:
    value = obj.get(name)
    return default if value is None else float(value)


def check_points_per_unit(value: object) -> float:
    """Check a points rate: a finite number >= 0.

    Raises:
        ValueError: For anything else.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"points_per_unit must be a number, got {value!r}")
    rate = float(value)
    if not math.isfinite(rate) or rate < 0:
        raise ValueError(f"points_per_unit must be finite and >= 0, got {value!r}")
    return rate


def check_duplicate_orders(value: object) -> DuplicateOrders:
    """Check a ``duplicate_orders`` mode: ``"reject"`` or ``"accept"``.

    Raises:
        ValueError: For any other value.
    """
    if value == "reject":
        return "reject"
    if value == "accept":
        return "accept"
    raise ValueError(f"duplicate_orders must be 'reject' or 'accept', got {value!r}")
