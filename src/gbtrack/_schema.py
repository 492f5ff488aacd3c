"""The tracking plan: a pydantic model per event name describes the event's metadata.

::

    @event_schema("purchase_completed")
    class PurchaseCompleted(BaseModel):
        order_id: str
        amount: float
        currency: str = "USD"

Two moments use the plan:

- **decoration time** (:func:`check_plan`): the metadata keys a ``@track`` sends are
  compared with the schema: an unknown key (with the nearest names), a required key
  that is never sent, a path whose type cannot fit the field, a constant that does not
  validate. The problems come back as messages; the caller raises them as one
  ``ExpressionError`` naming the function. With a strict plan, an event name without
  a schema is a problem too (:func:`check_planned`).
- **on the worker** (:func:`validate_metadata`): each event's metadata, as it will be
  sent (after gbtrack's conversions), is validated with pydantic; a failure is an
  :class:`~gbtrack.InvalidEventError` naming the schema and the field. Validation only:
  the metadata sent is never replaced by the model's output, so defaults
  (``currency="USD"``) are not added and coercions are not applied.

A schema is closed: a key it does not declare is refused, unless the model says
``model_config = ConfigDict(extra="allow")``. Keys are the names pydantic validates by:
a field's alias when it has one (its name too with ``populate_by_name``).

The registry is process-wide and thread-safe: writes take a lock and publish a new
dict, reads take no lock.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import difflib
import enum
import threading
import types
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar, get_args, get_origin

from pydantic import BaseModel, ValidationError

from gbtrack._errors import ConfigurationError, InvalidEventError
from gbtrack._event import normalize_value, use_metadata_check
from gbtrack._typecheck import (
    NONE_TYPE,
    Deferred,
    PathTypeError,
    check_leaf,
    is_class,
    type_name,
    union_members,
)

__all__ = [
    "check_plan",
    "check_planned",
    "event_schema",
    "registered_schemas",
    "remove_event_schema",
    "schema_for",
    "validate_metadata",
]

M = TypeVar("M", bound=BaseModel)

_SHOWN_NAMES: Final = 12


@dataclass(frozen=True)
class _Plan:
    """What one schema expects, computed once at registration."""

    schema: type[BaseModel]
    keys: dict[str, str]  # wire key -> field name
    required: tuple[tuple[str, frozenset[str]], ...]  # field name, the keys that provide it
    open: bool  # extra="allow": undeclared keys are fine
    annotations: dict[str, Any] = field(default_factory=dict)  # field name -> annotation


_lock = threading.Lock()
_plans: types.MappingProxyType[str, _Plan] = types.MappingProxyType({})


# --------------------------------------------------------------------------- registry


def event_schema(name: str, *, replace: bool = False) -> Callable[[type[M]], type[M]]:
    """Register a pydantic model as the schema of an event's metadata.

    Used as a class decorator; returns the class unchanged::

        @event_schema("purchase_completed")
        class PurchaseCompleted(BaseModel):
            order_id: str
            amount: float

    Registering a name again with another class is an error, unless ``replace=True``
    or the class is the same one re-imported (same module and qualified name, as after
    ``importlib.reload``), which replaces the old one.

    Args:
        name: The event name, as given to ``@track``.
        replace: Replace an existing schema of that name.

    Returns:
        A decorator that registers the class and returns it.

    Raises:
        ConfigurationError: When the decorator is applied, if ``name`` is blank, the
            name already has another schema, or a field's type can never hold a value
            Gameball accepts (a list, a nested model ...).
        TypeError: If the decorated object is not a pydantic model class.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigurationError(f"event_schema needs a non-empty event name, got {name!r}")

    def register(cls: type[M]) -> type[M]:
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
            raise TypeError(f"@event_schema({name!r}) decorates pydantic models, got {cls!r}")
        plan = _make_plan(name, cls)
        global _plans
        with _lock:
            old = _plans.get(name)
            if (
                old is not None
                and old.schema is not cls
                and not replace
                and not _same(old.schema, cls)
            ):
                raise ConfigurationError(
                    f"event {name!r} already has the schema {_qualified(old.schema)}; "
                    f"@event_schema({name!r}, replace=True) replaces it with {_qualified(cls)}"
                )
            _plans = types.MappingProxyType({**_plans, name: plan})
            use_metadata_check(validate_metadata)  # where drafts become events
        return cls

    return register


def remove_event_schema(name: str) -> None:
    """Remove the schema of ``name`` from the plan; nothing happens if there is none.

    Args:
        name: The event name.
    """
    global _plans
    with _lock:
        if name in _plans:
            _plans = types.MappingProxyType({k: v for k, v in _plans.items() if k != name})
            if not _plans:  # no plan: validation costs nothing again
                use_metadata_check(None)


def registered_schemas() -> Mapping[str, type[BaseModel]]:
    """The tracking plan: a read-only snapshot of event name -> schema class."""
    return types.MappingProxyType({name: plan.schema for name, plan in _plans.items()})


def schema_for(event: str) -> type[BaseModel] | None:
    """The schema registered for ``event``, or ``None``."""
    plan = _plans.get(event)
    return plan.schema if plan is not None else None


def _same(old: type, new: type) -> bool:
    """The same class, or the same class re-imported (``importlib.reload``)."""
    return old is new or _qualified(old) == _qualified(new)


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _make_plan(name: str, cls: type[BaseModel]) -> _Plan:
    keys: dict[str, str] = {}
    required: list[tuple[str, frozenset[str]]] = []
    by_name = bool(
        cls.model_config.get("populate_by_name") or cls.model_config.get("validate_by_name")
    )
    annotations: dict[str, Any] = {}
    for field_name, info in cls.model_fields.items():
        wire = list(_wire_keys(field_name, info, by_name=by_name))
        for key in wire:
            keys.setdefault(key, field_name)
        if info.is_required():
            required.append((field_name, frozenset(wire)))
        annotations[field_name] = info.annotation
        try:
            check_leaf(info.annotation, "metadata")
        except PathTypeError as exc:
            raise ConfigurationError(
                f"@event_schema({name!r}) on {type_name(cls)}: field {field_name!r}: {exc}"
            ) from None
        except Deferred:
            pass  # a forward reference: checked when the paths are
    return _Plan(
        schema=cls,
        keys=keys,
        required=tuple(required),
        open=cls.model_config.get("extra") == "allow",
        annotations=annotations,
    )


def _wire_keys(field_name: str, info: Any, *, by_name: bool) -> Iterable[str]:
    alias = info.validation_alias if info.validation_alias is not None else info.alias
    if isinstance(alias, str):
        yield alias
    else:
        choices = getattr(alias, "choices", None)
        path = getattr(alias, "path", None)
        if choices:  # AliasChoices: each choice is a key, or a path whose first item is
            for choice in choices:
                first = choice if isinstance(choice, str) else choice.path[0]
                if isinstance(first, str):
                    yield first
        elif path and isinstance(path[0], str):  # AliasPath: the top-level key
            yield path[0]
        else:
            yield field_name
            return
    if by_name:
        yield field_name


# --------------------------------------------------------------------------- strictness


def check_planned(event: str, *, strict: bool) -> str | None:
    """The problem with tracking ``event`` under the plan, or ``None``.

    Args:
        event: The event name.
        strict: Whether the plan is strict (``configure(strict_plan=True)``): then an
            event without a schema is refused.

    Returns:
        ``None`` when the event has a schema or the plan is not strict; otherwise a
        message with the nearest planned names.
    """
    if not strict or event in _plans:
        return None
    names = sorted(_plans)
    close = difflib.get_close_matches(event, names, n=1, cutoff=0.6)
    if close:
        hint = f"; did you mean {close[0]!r}?"
    elif names:
        shown = ", ".join(names[:_SHOWN_NAMES]) + (", ..." if len(names) > _SHOWN_NAMES else "")
        hint = f"; the plan has: {shown}"
    else:
        hint = "; the plan is empty"
    return (
        f"event {event!r} is not in the tracking plan and the plan is strict{hint} "
        f"(register a schema with @event_schema({event!r}))"
    )


# --------------------------------------------------------------------------- decoration time


def check_plan(
    event: str,
    types: Mapping[str, object],
    *,
    constants: Mapping[str, object] | None = None,
    strict: bool = False,
) -> list[str]:
    """Compare what a ``@track`` sends with the event's schema, at decoration time.

    Args:
        event: The event name.
        types: Metadata key -> the type of the value sent under it (the leaf type from
            :func:`~gbtrack._typecheck.check_steps`, or ``Any`` for a callable or a
            resolver whose type is unknown).
        constants: Metadata key -> constant value (``literal("app")``, ``5``); checked
            by validating the value as it will be sent against the field.
        strict: Whether the plan is strict; see :func:`check_planned`.

    Returns:
        The problems, one message each, in a stable order (empty when all is well, or
        when the event has no schema and the plan is not strict). Unknown types pass;
        ``int`` fits a ``float`` field; a key whose path may be missing at call time is
        not a problem here (validation on the worker catches the event).
    """
    constants = constants or {}
    plan = _plans.get(event)
    if plan is None:
        problem = check_planned(event, strict=strict)
        return [problem] if problem else []
    schema = type_name(plan.schema)
    problems: list[str] = []
    sent = set(types) | set(constants)
    for key in sorted(sent):
        if key not in plan.keys and not plan.open:
            problems.append(_unknown_key(key, plan, event))
    for field_name, keys in plan.required:
        if not keys & sent:
            shown = " or ".join(f"metadata[{k!r}]" for k in sorted(keys))
            also = "" if keys == {field_name} else f" (the field {field_name!r})"
            problems.append(
                f"{schema} (the schema of {event!r}) requires {shown}{also}, which is not sent"
            )
    for key, tp in types.items():
        if key in plan.keys and key not in constants:
            problem = _type_problem(key, tp, plan)
            if problem:
                problems.append(problem)
    for key, value in constants.items():
        if key in plan.keys:
            problem = _constant_problem(key, value, plan)
            if problem:
                problems.append(problem)
    return problems


def _unknown_key(key: str, plan: _Plan, event: str) -> str:
    names = sorted(plan.keys)
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    if close:
        hint = f"; did you mean {close[0]!r}?"
    else:
        shown = ", ".join(names[:_SHOWN_NAMES]) + (", ..." if len(names) > _SHOWN_NAMES else "")
        hint = f"; its keys are: {shown}" if names else "; it declares no keys"
    return f"metadata[{key!r}] is not in {type_name(plan.schema)} (the schema of {event!r}){hint}"


def _type_problem(key: str, tp: object, plan: _Plan) -> str | None:
    field_name = plan.keys[key]
    annotation = plan.annotations.get(field_name, Any)
    sent, sent_values = _wire(tp, source=True)
    accepted, accepted_values = _wire(annotation, source=False)
    if sent is None or accepted is None:
        return None  # unknown on either side
    fits = sent <= accepted
    if fits and sent_values is not None and accepted_values is not None:
        fits = sent_values <= accepted_values
    if fits:
        return None
    return (
        f"metadata[{key!r}] is {type_name(tp)}, but {type_name(plan.schema)}.{field_name} "
        f"expects {type_name(annotation)}"
    )


def _constant_problem(key: str, value: object, plan: _Plan) -> str | None:
    field_name = plan.keys[key]
    try:
        wire = normalize_value(key, value)
    except InvalidEventError as exc:
        return str(exc)
    if wire is None:
        return None
    schema = plan.schema
    try:
        schema.__pydantic_validator__.validate_assignment(
            schema.model_construct(), field_name, wire
        )
    except ValidationError as exc:
        return (
            f"metadata[{key!r}]={value!r} does not fit {type_name(schema)}.{field_name}: "
            f"{exc.errors()[0]['msg']}"
        )
    return None


def _wire(tp: object, *, source: bool) -> tuple[frozenset[str] | None, frozenset[object] | None]:
    """What a type means on the wire: its kinds (``None`` when unknown) and literal values.

    For a ``source`` (what a path yields): the kind each value becomes once converted
    (``Decimal`` -> float, ``UUID``/``date`` -> str, an ``Enum`` -> its values). For a
    field: the kinds pydantic's lax mode accepts from the wire, kept narrow (a float
    field takes int and float; no str -> int parsing, no bool -> int). The literal
    values are known only when every member is a ``Literal`` or an ``Enum``.
    """
    try:
        members = union_members(tp)
    except Deferred:
        return None, None
    kinds: set[str] = set()
    values: set[object] | None = set()
    for member in members:
        if member is NONE_TYPE:
            continue
        if member is Any:
            return None, None
        if get_origin(member) is Literal:
            member_values = [_wire_value(v) for v in get_args(member)]
        elif is_class(member) and issubclass(member, enum.Enum):
            member_values = [_wire_value(m) for m in member]
        else:
            member_values = None
        if member_values is not None:
            kinds.update(_kind_of_value(v) for v in member_values)
            if values is not None:
                values.update(member_values)
            continue
        values = None
        if not is_class(member):
            return None, None
        if issubclass(member, bool):
            kinds.add("bool")
        elif issubclass(member, int):
            kinds.add("int")
        elif issubclass(member, float | decimal.Decimal):
            kinds.update(("float",) if source else ("int", "float"))
        elif issubclass(member, str | uuid.UUID | _dt.date | _dt.time):
            kinds.add("str")
        else:
            return None, None
    return frozenset(kinds), (frozenset(values) if values is not None else None)


def _wire_value(value: object) -> object:
    while isinstance(value, enum.Enum):
        value = value.value
    return value


def _kind_of_value(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return "str"


# --------------------------------------------------------------------------- the worker


def validate_metadata(event: str, metadata: Mapping[str, object]) -> None:
    """Validate an event's metadata, as it will be sent, against the event's schema.

    Nothing happens when ``event`` has no schema. The metadata is not changed: the
    model's defaults and coercions are not applied to what is sent.

    Args:
        event: The event name.
        metadata: The metadata after gbtrack's conversions (``Decimal`` already a
            ``float``, an ``Enum`` its value, ...), ``None`` values left out.

    Raises:
        InvalidEventError: Naming the schema and the field, when a key is not declared
            (and the schema does not allow extra keys) or a value does not validate.
            The message never contains the value itself.
    """
    plan = _plans.get(event)
    if plan is None:
        return
    schema = type_name(plan.schema)
    if not plan.open:
        for key in metadata:
            if key not in plan.keys:
                raise InvalidEventError(_unknown_key(key, plan, event), field=f"metadata[{key!r}]")
    try:
        plan.schema.model_validate(metadata)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        first = errors[0]
        loc = first.get("loc", ())
        where = ".".join(str(part) for part in loc) if loc else "(the whole metadata)"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise InvalidEventError(
            f"metadata of {event!r} does not match {schema}: {where}: {first['msg']}{more}",
            field=f"metadata[{str(loc[0])!r}]" if loc else "metadata",
        ) from None
