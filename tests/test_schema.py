"""_schema: the tracking plan, checked at decoration time and validated on the worker."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import threading
import uuid
from collections.abc import Iterator
from typing import Any, Literal, Optional

import pytest
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from gbtrack._errors import ConfigurationError, InvalidEventError
from gbtrack._expr import parse
from gbtrack._schema import (
    check_plan,
    check_planned,
    event_schema,
    registered_schemas,
    remove_event_schema,
    schema_for,
    validate_metadata,
)
from gbtrack._typecheck import check_steps


@pytest.fixture(autouse=True)
def _clean_plan() -> Iterator[None]:
    before = dict(registered_schemas())
    yield
    for name in set(registered_schemas()) - set(before):
        remove_event_schema(name)


class Channel(enum.Enum):
    WEB = "web"
    POS = "pos"


def purchase_schema() -> type[BaseModel]:
    @event_schema("purchase_completed")
    class PurchaseCompleted(BaseModel):
        order_id: str
        amount: float
        currency: str = "USD"
        items: int = 0
        channel: Literal["web", "pos"] = "web"

    return PurchaseCompleted


# ----------------------------------------------------------------------------- registry


def test_register_returns_the_class_and_remove_forgets_it() -> None:
    schema = purchase_schema()
    assert schema.__name__ == "PurchaseCompleted"
    assert registered_schemas()["purchase_completed"] is schema
    assert schema_for("purchase_completed") is schema
    remove_event_schema("purchase_completed")
    assert "purchase_completed" not in registered_schemas()
    assert schema_for("purchase_completed") is None
    remove_event_schema("purchase_completed")  # again: nothing happens


def test_registered_schemas_is_a_read_only_snapshot() -> None:
    purchase_schema()
    snapshot = registered_schemas()
    with pytest.raises(TypeError):
        snapshot["x"] = BaseModel  # type: ignore[index]
    remove_event_schema("purchase_completed")
    assert "purchase_completed" in snapshot


def test_another_class_for_the_same_name_is_refused_unless_replace() -> None:
    first = purchase_schema()

    class Other(BaseModel):
        order_id: str

    with pytest.raises(ConfigurationError) as info:
        event_schema("purchase_completed")(Other)
    assert "already has the schema" in str(info.value)
    assert "PurchaseCompleted" in str(info.value)
    assert "replace=True" in str(info.value)
    assert schema_for("purchase_completed") is first
    event_schema("purchase_completed", replace=True)(Other)
    assert schema_for("purchase_completed") is Other


def test_the_same_class_re_imported_replaces_silently() -> None:
    first = purchase_schema()
    second = purchase_schema()  # same module and qualified name: a reload
    assert first is not second
    assert schema_for("purchase_completed") is second


def test_registration_refuses_bad_input() -> None:
    with pytest.raises(ConfigurationError, match="non-empty event name"):
        event_schema(" ")
    with pytest.raises(TypeError, match="pydantic models"):
        event_schema("x")(dict)  # type: ignore[type-var]


def test_a_field_gameball_cannot_carry_is_refused_at_registration() -> None:
    class Bad(BaseModel):
        tags: list[str]

    with pytest.raises(ConfigurationError) as info:
        event_schema("bad")(Bad)
    assert str(info.value) == (
        "@event_schema('bad') on Bad: field 'tags': the value is list[str]; "
        "Gameball accepts str, int, float or bool "
        "(Decimal, Enum, UUID, date and datetime are converted)"
    )
    assert schema_for("bad") is None


def test_registry_is_thread_safe() -> None:
    models = [type(f"M{i}", (BaseModel,), {"__annotations__": {"v": int}}) for i in range(50)]
    barrier = threading.Barrier(5)

    def register(offset: int) -> None:
        barrier.wait()
        for i in range(offset, 50, 5):
            event_schema(f"ev{i}")(models[i])

    threads = [threading.Thread(target=register, args=(n,)) for n in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {f"ev{i}" for i in range(50)} <= set(registered_schemas())


# ----------------------------------------------------------------------------- check_plan


def test_no_schema_no_problem_unless_strict() -> None:
    assert check_plan("anything", {"x": list}) == []
    problems = check_plan("anything", {"x": str}, strict=True)
    assert len(problems) == 1
    assert "not in the tracking plan" in problems[0]


def test_a_plan_that_fits_has_no_problems() -> None:
    purchase_schema()
    types = {"order_id": str, "amount": decimal.Decimal, "items": int, "channel": Channel}
    assert check_plan("purchase_completed", types) == []
    assert check_plan("purchase_completed", {"order_id": str, "amount": int}) == []


def test_unknown_key_with_did_you_mean() -> None:
    purchase_schema()
    problems = check_plan("purchase_completed", {"order_id": str, "amount": float, "amout": float})
    assert problems == [
        "metadata['amout'] is not in PurchaseCompleted (the schema of 'purchase_completed'); "
        "did you mean 'amount'?"
    ]


def test_unknown_key_without_a_close_name_lists_the_keys() -> None:
    purchase_schema()
    problems = check_plan("purchase_completed", {"order_id": str, "amount": float, "zzz": str})
    assert problems == [
        "metadata['zzz'] is not in PurchaseCompleted (the schema of 'purchase_completed'); "
        "its keys are: amount, channel, currency, items, order_id"
    ]


def test_missing_required_key() -> None:
    purchase_schema()
    problems = check_plan("purchase_completed", {"order_id": str})
    assert problems == [
        "PurchaseCompleted (the schema of 'purchase_completed') requires metadata['amount'], "
        "which is not sent"
    ]


def test_incompatible_types() -> None:
    purchase_schema()
    problems = check_plan(
        "purchase_completed",
        {"order_id": int, "amount": str, "items": float, "channel": Literal["web", "app"]},
    )
    assert problems == [
        "metadata['order_id'] is int, but PurchaseCompleted.order_id expects str",
        "metadata['amount'] is str, but PurchaseCompleted.amount expects float",
        "metadata['items'] is float, but PurchaseCompleted.items expects int",
        "metadata['channel'] is Literal['web', 'app'], "
        "but PurchaseCompleted.channel expects Literal['web', 'pos']",
    ]


def test_compatible_types_and_unknowns_pass() -> None:
    class Rich(BaseModel):
        id: uuid.UUID
        at: dt.datetime
        day: dt.date
        price: decimal.Decimal
        flag: bool
        channel: Channel
        note: Optional[str] = None  # noqa: UP045
        anything: Any = None

    event_schema("rich")(Rich)
    types = {
        "id": uuid.UUID,
        "at": dt.datetime,
        "day": str,
        "price": int,
        "flag": bool,
        "channel": Literal["web"],
        "note": Optional[str],  # noqa: UP045
        "anything": list,
    }
    assert check_plan("rich", types) == []
    assert check_plan("rich", {**types, "flag": Any, "price": object}) == []
    problems = check_plan("rich", {**types, "flag": int, "channel": Literal["app"]})
    assert problems == [
        "metadata['flag'] is int, but Rich.flag expects bool",
        "metadata['channel'] is Literal['app'], but Rich.channel expects Channel",
    ]


def test_types_from_check_steps_feed_check_plan() -> None:
    purchase_schema()

    class Order(BaseModel):
        id: str
        total: decimal.Decimal
        note: str | None = None

    paths = {"order_id": "result.id", "amount": "result.total", "items": "result.note"}
    types = {k: check_steps(Order, parse(p).steps, leaf="metadata") for k, p in paths.items()}
    assert check_plan("purchase_completed", types) == [
        "metadata['items'] is str | None, but PurchaseCompleted.items expects int"
    ]


def test_constants_are_validated_as_sent() -> None:
    purchase_schema()
    ok = {"order_id": str, "amount": float}
    assert check_plan("purchase_completed", ok, constants={"channel": "pos"}) == []
    assert check_plan("purchase_completed", ok, constants={"channel": Channel.POS}) == []
    problems = check_plan("purchase_completed", ok, constants={"channel": "app"})
    assert problems == [
        "metadata['channel']='app' does not fit PurchaseCompleted.channel: "
        "Input should be 'web' or 'pos'"
    ]
    assert check_plan("purchase_completed", {"order_id": str}, constants={"amount": 5}) == []


def test_aliases_are_the_keys() -> None:
    @event_schema("aliased")
    class Aliased(BaseModel):
        order_id: str = Field(alias="orderId")
        total: float = Field(validation_alias=AliasChoices("total", "amount"))

    assert check_plan("aliased", {"orderId": str, "amount": float}) == []
    problems = check_plan("aliased", {"order_id": str, "total": float})
    assert problems == [
        "metadata['order_id'] is not in Aliased (the schema of 'aliased'); did you mean 'orderId'?",
        "Aliased (the schema of 'aliased') requires metadata['orderId'] "
        "(the field 'order_id'), which is not sent",
    ]


def test_populate_by_name_accepts_the_name_too() -> None:
    @event_schema("by_name")
    class ByName(BaseModel):
        model_config = ConfigDict(populate_by_name=True)
        order_id: str = Field(alias="orderId")

    assert check_plan("by_name", {"order_id": str}) == []
    assert check_plan("by_name", {"orderId": str}) == []


def test_extra_allow_opens_the_schema() -> None:
    @event_schema("open")
    class Open(BaseModel):
        model_config = ConfigDict(extra="allow")
        a: int

    assert check_plan("open", {"a": int, "whatever": str}) == []
    validate_metadata("open", {"a": 1, "whatever": "x"})


# ----------------------------------------------------------------------------- strict plan


def test_check_planned() -> None:
    purchase_schema()
    assert check_planned("purchase_completed", strict=True) is None
    assert check_planned("not_planned", strict=False) is None
    message = check_planned("purchase_complete", strict=True)
    assert message == (
        "event 'purchase_complete' is not in the tracking plan and the plan is strict; "
        "did you mean 'purchase_completed'? "
        "(register a schema with @event_schema('purchase_complete'))"
    )
    message = check_planned("zzz", strict=True)
    assert message is not None
    assert "; the plan has: purchase_completed " in message


def test_check_planned_with_an_empty_plan() -> None:
    for name in list(registered_schemas()):
        remove_event_schema(name)
    message = check_planned("signed_up", strict=True)
    assert message is not None
    assert "the plan is empty" in message


# ----------------------------------------------------------------------------- validation


def test_valid_metadata_passes_and_is_not_changed() -> None:
    purchase_schema()
    metadata = {"order_id": "o-1", "amount": 9}
    validate_metadata("purchase_completed", metadata)
    assert metadata == {"order_id": "o-1", "amount": 9}  # no currency="USD" added


def test_no_schema_no_validation() -> None:
    validate_metadata("unplanned", {"anything": [1, 2]})


def test_invalid_value_names_the_schema_and_field_without_the_value() -> None:
    purchase_schema()
    with pytest.raises(InvalidEventError) as info:
        validate_metadata("purchase_completed", {"order_id": "o-1", "amount": "secret@x.com"})
    assert str(info.value) == (
        "metadata of 'purchase_completed' does not match PurchaseCompleted: amount: "
        "Input should be a valid number, unable to parse string as a number"
    )
    assert info.value.field == "metadata['amount']"
    assert "secret" not in str(info.value)
    assert info.value.__cause__ is None


def test_missing_required_value_at_validation() -> None:
    purchase_schema()
    with pytest.raises(InvalidEventError) as info:
        validate_metadata("purchase_completed", {"order_id": "o-1", "channel": "fax"})
    assert str(info.value) == (
        "metadata of 'purchase_completed' does not match PurchaseCompleted: amount: "
        "Field required (and 1 more)"
    )
    assert info.value.field == "metadata['amount']"


def test_unknown_key_at_validation() -> None:
    purchase_schema()
    with pytest.raises(InvalidEventError) as info:
        validate_metadata("purchase_completed", {"order_id": "o-1", "amount": 1, "amont": 2})
    assert "did you mean 'amount'?" in str(info.value)
    assert info.value.field == "metadata['amont']"


def test_wire_values_validate_against_rich_fields() -> None:
    class Rich(BaseModel):
        id: uuid.UUID
        at: dt.datetime
        price: decimal.Decimal
        channel: Channel

    event_schema("rich")(Rich)
    # What normalize_metadata makes of UUID, datetime, Decimal and Enum values:
    wire = {
        "id": str(uuid.uuid4()),
        "at": dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.timezone.utc).isoformat(),
        "price": 9.5,
        "channel": "pos",
    }
    validate_metadata("rich", wire)
