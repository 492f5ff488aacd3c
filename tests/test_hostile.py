"""Hostile input on the caller's path (issue 8, items 1, 2, 4, 5, 6 and 7).

- 1: hostile objects (raising dunders, raising properties, str/int/float/dict subclasses
  with raising methods) in every identity and metadata slot, for the four callable kinds,
  ``span()``, ``Tracker.emit`` and ``identify()``: the business call is never changed,
  and every call ends as one captured event or one counted drop.
- 2: reading a path never mutates business data (``defaultdict``, a recording Mapping).
- 4: every malformed expression is an ``ExpressionError``, never another exception.
- 5: lone surrogates and over-long ints never reach a sender as a valid event.
- 6: size limits on strings and metadata.
- 7: a path that finds nothing on a non-None value is counted, logged once, strict raises.

Item 3 (private state reachable through public attributes) is in ``test_expr_security.py``.
Only the public API is used, with a fresh ``Tracker(InMemorySender())`` per test.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gbtrack import (
    ExpressionError,
    GbtrackError,
    InMemorySender,
    Tracker,
    TrackingError,
    identify,
    track,
)

FENCED = {"resolver_error", "invalid_event"}
"""The reasons a hostile value may be counted under (item 1)."""

KINDS = ("sync", "async", "gen", "agen")
SLOTS = ("customer_id", "email", "mobile", "session_token", "metadata")


# --- hostile objects -----------------------------------------------------------------------
class Boom(Exception):
    """What the hostile methods raise (not AttributeError/KeyError/IndexError: not "absent")."""


class BusinessError(Exception):
    """The business function's own exception; it must come out untouched."""


def _raiser(exc: type[Exception]) -> Callable[..., Any]:
    def hostile(*_args: object, **_kwargs: object) -> Any:
        raise exc("hostile")

    return hostile


class _Mapping(Mapping[str, object]):
    """A well-behaved Mapping (a subclass replaces one method by a raising one)."""

    def __init__(self, data: Mapping[str, object]) -> None:
        self.data = dict(data)

    def __getitem__(self, key: str) -> object:
        return self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def __contains__(self, key: object) -> bool:
        return key in self.data


class _Sequence(Sequence[object]):
    """A well-behaved Sequence (a subclass replaces one method by a raising one)."""

    def __init__(self, items: Sequence[object]) -> None:
        self.items = list(items)

    def __getitem__(self, index: Any) -> Any:
        return self.items[index]

    def __len__(self) -> int:
        return len(self.items)


def _hostile_class(base: type, method: str, exc: type[Exception]) -> type:
    raising = _raiser(exc)
    attribute: object = property(raising) if method == "x" else raising
    return type(f"Hostile_{base.__name__}_{method.strip('_')}", (base,), {method: attribute})


# (base, methods, how to build an instance of the hostile subclass)
_FAMILIES: tuple[tuple[type, tuple[str, ...], Callable[[type], object]], ...] = (
    (
        str,
        (
            "strip", "__str__", "__repr__", "encode", "isascii", "__eq__", "__ne__", "__hash__",
            "__len__", "__bool__", "__getitem__", "__iter__", "__contains__", "__format__",
            "lower", "__add__", "startswith",
        ),
        lambda cls: cls("hostile-value"),
    ),
    (
        int,
        (
            "__str__", "__repr__", "__int__", "__index__", "__float__", "__eq__", "__hash__",
            "__bool__", "__format__", "bit_length",
        ),
        lambda cls: cls(4242),
    ),
    (
        float,
        (
            "__float__", "__repr__", "__str__", "__eq__", "__hash__", "__bool__", "__int__",
            "is_integer", "__format__",
        ),
        lambda cls: cls(2.5),
    ),
    (
        dict,
        (
            "__getitem__", "get", "keys", "items", "values", "__iter__", "__contains__",
            "__len__", "__repr__", "__eq__", "__bool__",
        ),
        lambda cls: cls({"x": "ok"}),
    ),
    (
        _Mapping,
        ("__getitem__", "__iter__", "__len__", "__contains__", "get", "keys", "items"),
        lambda cls: cls({"x": "ok"}),
    ),
    (
        object,
        (
            "__str__", "__repr__", "__eq__", "__hash__", "__bool__", "__len__", "__float__",
            "__int__", "__index__", "__getattr__", "__getattribute__", "__format__", "x",
        ),
        lambda cls: cls(),
    ),
)  # fmt: skip

_SEQUENCE_FAMILIES: tuple[tuple[type, tuple[str, ...], Callable[[type], object]], ...] = (
    (list, ("__getitem__", "__len__", "__iter__", "__bool__"), lambda cls: cls(["ok"])),
    (tuple, ("__getitem__", "__len__", "__iter__"), lambda cls: cls(("ok",))),
    (str, ("__getitem__", "__len__", "__iter__"), lambda cls: cls("ok")),
    (_Sequence, ("__getitem__", "__len__", "__iter__"), lambda cls: cls(["ok"])),
)


def _catalogue(
    families: tuple[tuple[type, tuple[str, ...], Callable[[type], object]], ...],
) -> dict[str, Callable[[], object]]:
    """Name -> factory; names are drawn (hypothesis never reprs a hostile object)."""
    out: dict[str, Callable[[], object]] = {}
    for base, methods, build in families:
        for method in methods:
            for exc in (Boom, ValueError, TypeError):
                cls = _hostile_class(base, method, exc)
                suffix = "" if exc is Boom else f"!{exc.__name__}"
                out[f"{base.__name__}.{method}{suffix}"] = lambda cls=cls, build=build: build(cls)
    return out


HOSTILE = _catalogue(_FAMILIES)
"""Hostile leaf values: used as the slot's value itself."""
CONTAINERS = {
    name: make
    for name, make in HOSTILE.items()
    if name.startswith(("dict.", "_Mapping.", "object.__getattr", "object.x"))
}
"""Hostile containers read with ``.x`` (their ``x`` is ``"ok"`` when it can be read at all)."""
MAPPINGS = {name: make for name, make in CONTAINERS.items() if not name.startswith("object.")}
SEQUENCES = _catalogue(_SEQUENCE_FAMILIES)
"""Hostile sequences read with ``[0]``."""
BOOM_STR = {n: m for n, m in HOSTILE.items() if n.startswith("str.") and "!" not in n}
BOOM_OTHER = {n: m for n, m in HOSTILE.items() if not n.startswith("str.") and "!" not in n}


# --- driving the four callable kinds like business code does -------------------------------
YIELDS = (object(), object())


def _business(kind: str, ret: object, err: BaseException | None) -> Callable[..., Any]:
    """A business function of ``kind`` with parameters ``(cid, value, holder)``."""
    if kind == "sync":

        def sync(cid: object, value: object, holder: object) -> object:
            if err is not None:
                raise err
            return ret

        return sync
    if kind == "async":

        async def coro(cid: object, value: object, holder: object) -> object:
            if err is not None:
                raise err
            return ret

        return coro
    if kind == "gen":

        def gen(cid: object, value: object, holder: object) -> Generator[object, None, object]:
            yield from YIELDS
            if err is not None:
                raise err
            return ret

        return gen

    async def agen(cid: object, value: object, holder: object) -> Any:
        for item in YIELDS:
            yield item
        if err is not None:
            raise err

    return agen


def _drive(kind: str, func: Callable[..., Any], *args: object) -> tuple[str, object, list[object]]:
    """Call ``func`` as business code would: ``(returned|raised, value, yielded)``."""
    out: list[object] = []
    try:
        if kind == "sync":
            return "returned", func(*args), out
        if kind == "async":

            async def main() -> object:
                return await func(*args)

            return "returned", asyncio.run(main()), out
        if kind == "gen":
            gen = func(*args)
            try:
                while True:
                    out.append(next(gen))
            except StopIteration as stop:
                return "returned", stop.value, out

        async def consume() -> None:
            async for item in func(*args):
                out.append(item)

        asyncio.run(consume())
        return "returned", None, out
    except Exception as exc:
        return "raised", exc, out


def _emits(on: str, raises: bool) -> bool:
    return on == "always" or (on == "error") == raises


def _fresh(strict: bool = False) -> tuple[Tracker, InMemorySender, list[TrackingError]]:
    errors: list[TrackingError] = []
    sender = InMemorySender()
    return Tracker(sender, strict=strict, on_error=errors.append), sender, errors


def _dropped(tracker: Tracker) -> dict[str, int]:
    return {reason: n for reason, n in tracker.stats.dropped.items() if n}


def _assert_plain(sender: InMemorySender) -> None:
    """Captured events hold exact builtin types only (the draft holds plain values)."""
    for event in sender.events:
        assert type(event.name) is str
        assert type(event.customer_id) is str
        assert event.email is None or type(event.email) is str
        assert event.mobile is None or type(event.mobile) is str
        if event.session_token is not None:
            assert type(event.session_token.get_secret_value()) is str
        for key, value in event.metadata.items():
            assert type(key) is str
            assert type(value) in (str, int, float, bool), (key, type(value).__name__)


def _assert_accounted(
    tracker: Tracker, sender: InMemorySender, errors: list[TrackingError], expected: int
) -> None:
    """Each call that should emit ended as one event or one drop counted under FENCED."""
    dropped = _dropped(tracker)
    assert len(sender.events) + sum(dropped.values()) == expected, (len(sender.events), dropped)
    assert set(dropped) <= FENCED, dropped
    assert sorted(e.reason for e in errors) == sorted(
        reason for reason, n in dropped.items() for _ in range(n)
    )


# --- item 1: hostile values through @track --------------------------------------------------
# route -> (expression, where the hostile object goes)
_LEAF_ROUTES = {
    "param": ("value", "value"),
    "param.attr": ("holder.x", "holder"),
    "param.key": ('holder["x"]', "holder-dict"),
    "param.deep": ("holder.inner.x", "holder-deep"),
    "result.attr": ("result.x", "result"),
    "result.deep": ("result.inner.x", "result-deep"),
}
_CONTAINER_ROUTES = {
    "param.container": ("holder.x", "holder"),
    "param.container.key": ('holder["x"]', "holder"),
    "param.container.index": ("holder[0]", "holder"),
    "result.container": ("result.x", "result"),
}


def _benign(style: str, value: object) -> object:
    return {"x": value} if style == "dict" else SimpleNamespace(x=value)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_hostile_values_never_change_a_tracked_call(kind: str, data: st.DataObject) -> None:
    on = data.draw(st.sampled_from(("success", "error", "always")), label="on")
    raises = data.draw(st.booleans(), label="raises") if on == "always" else on == "error"
    slot = data.draw(st.sampled_from(SLOTS), label="slot")
    # `result` exists only when the function returned, and never in an async generator.
    with_result = not raises and kind != "agen"
    routes = [r for r in (*_LEAF_ROUTES, *_CONTAINER_ROUTES) if with_result or "result" not in r]
    route = data.draw(st.sampled_from(routes), label="route")
    if route.endswith(".index"):
        catalogue = SEQUENCES
    elif route.endswith(".key"):
        catalogue = MAPPINGS if route in _CONTAINER_ROUTES else HOSTILE
    else:
        catalogue = CONTAINERS if route in _CONTAINER_ROUTES else HOSTILE
    hostile_name = data.draw(st.sampled_from(sorted(catalogue)), label="hostile")
    style = data.draw(st.sampled_from(("namespace", "dict")), label="holder style")
    calls = data.draw(st.integers(1, 2), label="calls")
    expression, where = {**_LEAF_ROUTES, **_CONTAINER_ROUTES}[route]

    tracker, sender, errors = _fresh()
    options: dict[str, Any] = {"customer_id": "cid"}
    if slot == "metadata":
        options["metadata"] = {"m": expression, "plain": "cid"}
    else:
        options[slot] = expression

    expected = 0
    for _ in range(calls):
        hostile = catalogue[hostile_name]()
        value: object = None
        holder: object = None
        ret: object = object()
        if where == "value":
            value = hostile
        elif where == "holder":
            holder = hostile if route in _CONTAINER_ROUTES else _benign(style, hostile)
        elif where == "holder-dict":
            holder = {"x": hostile}
        elif where == "holder-deep":
            holder = SimpleNamespace(inner=_benign(style, hostile))
        elif where == "result":
            ret = hostile if route in _CONTAINER_ROUTES else _benign(style, hostile)
        else:
            ret = SimpleNamespace(inner=_benign(style, hostile))
        err = BusinessError("business") if raises else None
        func = track("hostile_event", on=on, tracker=tracker, **options)(_business(kind, ret, err))
        outcome, got, yielded = _drive(kind, func, "c-1", value, holder)
        if raises:
            assert outcome == "raised"
            assert got is err, f"the business exception was replaced by {type(got).__name__}"
        else:
            assert outcome == "returned", f"tracking raised {type(got).__name__} into the call"
            assert got is (None if kind == "agen" else ret)
        if kind in ("gen", "agen"):
            assert len(yielded) == len(YIELDS)
            assert all(a is b for a, b in zip(yielded, YIELDS, strict=True))
        expected += _emits(on, raises)
    _assert_accounted(tracker, sender, errors, expected)


class _StripRaises(str):
    def strip(self, chars: str | None = None) -> str:
        raise Boom("hostile")


class _StrRaises(int):
    def __str__(self) -> str:
        raise Boom("hostile")

    __repr__ = __str__


class _IdRaises:
    """An object whose ``id`` property raises: the read itself fails on the caller's path."""

    @property
    def id(self) -> str:
        raise Boom("hostile")


def test_subclass_overrides_are_bypassed_not_called() -> None:
    # The str/int subclasses above are converted through the base type's own slots, so
    # their raising overrides never run: the event is sent with exact builtin values.
    tracker, sender, errors = _fresh()
    func = track("e", customer_id="value", metadata={"n": "n"}, tracker=tracker)(
        lambda value, n: None
    )
    func(_StripRaises("hostile-1"), _StrRaises(4242))
    (event,) = sender.events
    assert (type(event.customer_id), event.customer_id) == (str, "hostile-1")
    assert (type(event.metadata["n"]), event.metadata["n"]) == (int, 4242)
    assert errors == []


IDENTITY_HOSTILES = (lambda: _StripRaises("hostile-1"), lambda: _StrRaises(4242))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("make", IDENTITY_HOSTILES, ids=["str.strip", "int.__str__"])
@pytest.mark.parametrize("slot", SLOTS)
def test_hostile_identity_is_counted_not_raised(
    kind: str, make: Callable[[], object], slot: str
) -> None:
    """The defect as found: a str/int subclass in an identity slot raised into the call."""
    tracker, sender, errors = _fresh()
    options: dict[str, Any] = {"customer_id": "cid"}
    if slot == "metadata":
        options["metadata"] = {"m": "value"}
    else:
        options[slot] = "value"
    ret = object()
    func = track("hostile_event", tracker=tracker, **options)(_business(kind, ret, None))
    outcome, got, _ = _drive(kind, func, "c-1", make(), None)
    assert outcome == "returned", f"tracking raised {type(got).__name__} into the call"
    assert got is (None if kind == "agen" else ret)
    _assert_accounted(tracker, sender, errors, 1)


@pytest.mark.parametrize("kind", KINDS)
def test_hostile_customer_id_does_not_replace_the_business_exception(kind: str) -> None:
    """With on="error" the hostile value used to replace the business exception."""
    tracker, sender, errors = _fresh()
    err = BusinessError("business")
    func = track("failed", customer_id="value.id", on="error", tracker=tracker)(
        _business(kind, None, err)
    )
    outcome, got, _ = _drive(kind, func, "c-1", _IdRaises(), None)
    assert outcome == "raised"
    assert got is err
    assert sum(tracker.stats.dropped.values()) == 1
    assert set(_dropped(tracker)) <= FENCED
    assert len(errors) == 1
    assert isinstance(errors[0], TrackingError)
    assert errors[0].reason in FENCED
    assert sender.events == []


@pytest.mark.parametrize("kind", KINDS)
def test_strict_hostile_customer_id_raises_tracking_error(kind: str) -> None:
    tracker, sender, _ = _fresh(strict=True)
    func = track("hostile_event", customer_id="value.id", tracker=tracker)(
        _business(kind, object(), None)
    )
    outcome, got, _ = _drive(kind, func, "c-1", _IdRaises(), None)
    assert outcome == "raised"
    assert isinstance(got, TrackingError), type(got).__name__
    assert got.reason in FENCED
    assert sender.events == []


@settings(max_examples=100, deadline=None)
@given(
    slot=st.sampled_from(SLOTS),
    hostile_name=st.sampled_from(sorted(HOSTILE)),
    via=st.sampled_from(("track", "emit", "span")),
)
def test_captured_events_hold_only_exact_builtin_types(
    slot: str, hostile_name: str, via: str
) -> None:
    """A hostile value is converted to a plain str/int/float/bool or refused, never passed on.

    The draft holds plain values only (DESIGN.md, EventDraft): a str/int/float subclass must
    not reach a sender, which serialises it later, off the caller's thread.
    """
    tracker, sender, _ = _fresh()
    hostile = HOSTILE[hostile_name]()
    if via == "track":
        options: dict[str, Any] = {"customer_id": "cid"}
        if slot == "metadata":
            options["metadata"] = {"m": "value"}
        else:
            options[slot] = "value"
        track("e", tracker=tracker, **options)(_business("sync", None, None))("c-1", hostile, None)
    else:
        values: dict[str, Any] = {"customer_id": "c-1"}
        if slot == "metadata":
            values["metadata"] = {"m": hostile}
        else:
            values[slot] = hostile
        if via == "emit":
            tracker.emit("e", **values)
        else:
            with tracker.span("e", **values):
                pass
    _assert_plain(sender)


def test_huge_int_customer_id_is_counted_not_raised() -> None:
    """str() of an int over 4,300 digits raises ValueError: it must not reach the caller."""
    tracker, sender, errors = _fresh()

    @track("big", customer_id="cid", tracker=tracker)
    def business(cid: int) -> str:
        return "ok"

    assert business(10**5000) == "ok"
    _assert_accounted(tracker, sender, errors, 1)


# --- item 1: span() and emit() ---------------------------------------------------------------
_SPAN_TARGETS = (
    "set",
    "setitem",
    "update",
    "identify.customer_id",
    "identify.email",
    "identify.mobile",
    "identify.session_token",
)


def _apply_to_span(handle: Any, target: str, hostile: object) -> None:
    if target == "set":
        handle.set("m", hostile)
    elif target == "setitem":
        handle["m"] = hostile
    elif target == "update":
        handle.update(m=hostile)
    elif target == "identify.customer_id":
        handle.identify(hostile)
    else:
        handle.identify(**{target.split(".")[1]: hostile})


@settings(max_examples=100, deadline=None)
@given(
    target=st.sampled_from(_SPAN_TARGETS),
    hostile_name=st.sampled_from(sorted(HOSTILE)),
    on=st.sampled_from(("success", "error", "always")),
    raises=st.booleans(),
    use_async=st.booleans(),
)
def test_hostile_values_in_a_span_never_change_the_block(
    target: str, hostile_name: str, on: str, raises: bool, use_async: bool
) -> None:
    tracker, sender, errors = _fresh()
    err = BusinessError("business")

    def body(handle: Any) -> None:
        _apply_to_span(handle, target, HOSTILE[hostile_name]())
        if raises:
            raise err

    async def run_async() -> None:
        async with tracker.span("hostile_span", customer_id="c-1", on=on) as handle:
            body(handle)

    escaped: Exception | None = None
    try:
        if use_async:
            asyncio.run(run_async())
        else:
            with tracker.span("hostile_span", customer_id="c-1", on=on) as handle:
                body(handle)
    except Exception as exc:
        escaped = exc
    if raises:
        assert escaped is err, f"the business exception was replaced by {type(escaped).__name__}"
    else:
        assert escaped is None, f"the span raised {type(escaped).__name__} into the block"
    _assert_accounted(tracker, sender, errors, int(_emits(on, raises)))


_INITIAL = ("customer_id", "email", "mobile", "session_token", "metadata.value", "metadata")


def _initial_options(target: str, hostile: object, mapping: object) -> dict[str, Any]:
    options: dict[str, Any] = {"customer_id": "c-1"}
    if target == "metadata.value":
        options["metadata"] = {"m": hostile}
    elif target == "metadata":
        options["metadata"] = mapping
    else:
        options[target] = hostile
    return options


@settings(max_examples=100, deadline=None)
@given(
    target=st.sampled_from(_INITIAL),
    hostile_name=st.sampled_from(sorted(HOSTILE)),
    mapping_name=st.sampled_from(sorted(MAPPINGS)),
)
def test_hostile_values_given_to_emit_are_counted_not_raised(
    target: str, hostile_name: str, mapping_name: str
) -> None:
    tracker, sender, errors = _fresh()
    options = _initial_options(target, HOSTILE[hostile_name](), MAPPINGS[mapping_name]())
    try:
        tracker.emit("hostile_emit", **options)
    except Exception as exc:
        pytest.fail(f"emit raised {type(exc).__name__}")
    _assert_accounted(tracker, sender, errors, 1)


@settings(max_examples=100, deadline=None)
@given(
    target=st.sampled_from(_INITIAL),
    hostile_name=st.sampled_from(sorted(HOSTILE)),
    mapping_name=st.sampled_from(sorted(MAPPINGS)),
)
def test_hostile_values_given_to_span_are_counted_not_raised(
    target: str, hostile_name: str, mapping_name: str
) -> None:
    tracker, sender, errors = _fresh()
    options = _initial_options(target, HOSTILE[hostile_name](), MAPPINGS[mapping_name]())
    try:
        with tracker.span("hostile_span", **options):
            pass
    except Exception as exc:
        pytest.fail(f"span raised {type(exc).__name__}")
    _assert_accounted(tracker, sender, errors, 1)


def test_strict_hostile_value_in_emit_and_span_raises_tracking_error() -> None:
    tracker, sender, _ = _fresh(strict=True)
    with pytest.raises(TrackingError):
        tracker.emit("e", customer_id=_IdRaises())  # type: ignore[arg-type]
    with pytest.raises(TrackingError), tracker.span("e", customer_id="c-1") as handle:
        handle.identify(email=_StrRaises(4242))  # type: ignore[arg-type]
    assert sender.events == []


# --- item 1: identify() ------------------------------------------------------------------------
_IDENTIFY_TARGETS = ("customer_id", "email", "mobile", "session_token")


@settings(max_examples=100, deadline=None)
@given(
    target=st.sampled_from(_IDENTIFY_TARGETS),
    hostile_name=st.sampled_from(sorted(BOOM_STR) + sorted(BOOM_OTHER)),
    kind=st.sampled_from(KINDS),
)
def test_hostile_identify_never_breaks_a_later_tracked_call(
    target: str, hostile_name: str, kind: str
) -> None:
    """identify() may refuse a non-str value clearly; a str subclass must not break anything."""
    tracker, sender, errors = _fresh()
    hostile = {**BOOM_STR, **BOOM_OTHER}[hostile_name]()
    ret = object()
    func = track("ambient", tracker=tracker)(_business(kind, ret, None))
    refused: Exception | None = None
    try:
        block = (
            identify(hostile)  # type: ignore[arg-type]
            if target == "customer_id"
            else identify("c-1", **{target: hostile})
        )
        block.__enter__()
    except Exception as exc:
        refused = exc
    if refused is not None:
        # Business code calling our API with a bad value: a clear error, never the hostile one.
        assert hostile_name not in BOOM_STR, f"identify() refused a str subclass: {refused!r}"
        assert isinstance(refused, GbtrackError | TypeError | ValueError), type(refused).__name__
        return
    try:
        outcome, got, _ = _drive(kind, func, None, None, None)
    finally:
        block.__exit__(None, None, None)
    assert outcome == "returned", f"tracking raised {type(got).__name__} into the call"
    assert got is (None if kind == "agen" else ret)
    dropped = _dropped(tracker)
    assert len(sender.events) + sum(dropped.values()) == 1
    assert len(errors) == sum(dropped.values())


def test_identify_with_a_raising_str_subclass_keeps_the_call_working() -> None:
    tracker, sender, errors = _fresh()

    @track("ambient", metadata={"n": "n"}, tracker=tracker)
    def business(n: int) -> int:
        return n * 2

    with identify(_StripRaises("c-9"), email=_StripRaises("a@example.com")):
        assert business(21) == 42
    _assert_accounted(tracker, sender, errors, 1)


# --- item 2: reading never mutates business data -------------------------------------------------
def test_defaultdict_argument_is_not_mutated_by_reading() -> None:
    tracker, sender, _ = _fresh()
    payload: defaultdict[str, Any] = defaultdict(list, {"present": "v", "id": "c-1"})

    @track(
        "read",
        customer_id="payload.id",
        email="payload.email",
        metadata={
            "a": "payload.absent",
            "b": 'payload["absent_key"]',
            "c": "payload.absent_deep.deeper",
            "p": "payload.present",
        },
        tracker=tracker,
    )
    def business(payload: Mapping[str, Any]) -> str:
        return "ok"

    assert business(payload) == "ok"
    assert set(payload) == {"present", "id"}
    (event,) = sender.events
    assert event.metadata == {"p": "v"}
    assert event.email is None


def test_defaultdict_result_is_not_mutated_by_reading() -> None:
    tracker, sender, _ = _fresh()
    result: defaultdict[str, Any] = defaultdict(list, {"present": "v"})

    @track(
        "read",
        customer_id="cid",
        mobile="result.mobile",
        metadata={
            "b": 'result["absent_key"]',
            "c": "result.absent_deep.deeper",
            "p": "result.present",
            "a": "result.absent",  # last: the trailing "result.name" shape
        },
        tracker=tracker,
    )
    def business(cid: str) -> Mapping[str, Any]:
        return result

    assert business("c-1") is result
    assert set(result) == {"present"}
    (event,) = sender.events
    assert event.metadata == {"p": "v"}
    assert event.mobile is None


class _Recording(Mapping[str, object]):
    """A Mapping whose ``__getitem__`` records every call and inserts on a miss."""

    def __init__(self, data: Mapping[str, object]) -> None:
        self.data = dict(data)
        self.reads: list[str] = []

    def __getitem__(self, key: str) -> object:
        self.reads.append(key)
        return self.data.setdefault(key, [])

    def __contains__(self, key: object) -> bool:
        return key in self.data

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


@pytest.mark.parametrize("where", ["argument", "result"])
def test_custom_mapping_absent_key_is_not_read_through_getitem(where: str) -> None:
    tracker, sender, _ = _fresh()
    mapping = _Recording({"present": "v"})
    root = "payload" if where == "argument" else "result"

    @track(
        "read",
        customer_id="cid",
        metadata={
            "a": f"{root}.absent",
            "b": f'{root}["absent_key"]',
            "p": f"{root}.present",
            "z": f"{root}.absent_last",
        },
        tracker=tracker,
    )
    def business(cid: str, payload: object) -> object:
        return mapping

    assert business("c-1", mapping) is mapping
    assert mapping.data == {"present": "v"}
    assert set(mapping.reads) <= {"present"}
    (event,) = sender.events
    assert event.metadata == {"p": "v"}


# --- item 4: malformed expressions are ExpressionError --------------------------------------------
_CRAFTED = (
    "result[" + "9" * 5000 + "]",
    "result[-" + "9" * 5000 + "]",
    "result[" + "0" * 5000 + "1]",
    "result.items[" + "1" * 4301 + "].sku",
    "result[\u0661]",  # ARABIC-INDIC DIGIT ONE
    "result[\u0663\u0664]",
    "result[-\u0661]",
    "result[\uff11]",  # FULLWIDTH DIGIT ONE
    "result[",
    "result]",
    "result[0",
    "result[[0]]",
    "result['a]",
    "result[\"a']",
    "result['a'",
    "result[0]]",
    "result.",
    ".result",
    "result..x",
    "result\x00",
    "result.a\x00b",
    "\x00",
    "",
    " ",
    "result.\ud800",
    "\ud800",
    "result['\ud800']",
    "result['\x00']",
    "resul\u0074",
    "résult",
    "result.ñ",
    "a" * 100_000,
    "result." + "a" * 100_000,
    "result" + ".a" * 20_000,
    "result" + "[0]" * 20_000,
    "payload" + "[" * 10_000,
    "payload" + "]" * 10_000,
    "result[+1]",
    "result[1_000]",
    "result[0x10]",
    "result[1e3]",
    "result[--1]",
    "result[ 0 ]",
    "result['a''b']",
    "result.__class__",
    "result._x",
    "_",
)

_EXPR_ROLES = ("metadata", "customer_id", "email", "mobile", "session_token", "when")


def _decorate_with(role: str, text: str, tracker: Tracker) -> Callable[..., Any]:
    options: dict[str, Any] = {"metadata": {"k": text}} if role == "metadata" else {role: text}
    if role != "customer_id":
        options["customer_id"] = "customer"

    def business(customer: object, payload: object = None) -> str:
        return "ok"

    return track("e", tracker=tracker, **options)(business)


def _check_expression(role: str, text: str) -> None:
    tracker = Tracker(InMemorySender())
    try:
        func = _decorate_with(role, text, tracker)
    except ExpressionError:
        return
    # It compiled: calling it must not raise either.
    assert func("c-1", {"a": 1}) == "ok"


@pytest.mark.parametrize("text", _CRAFTED, ids=[str(i) for i in range(len(_CRAFTED))])
@pytest.mark.parametrize("role", ["metadata", "customer_id"])
def test_crafted_expressions_raise_only_expression_error(role: str, text: str) -> None:
    _check_expression(role, text)


_FRAGMENTS = st.sampled_from(
    [
        *("result", "payload", "customer", ".", "[", "]", "'", '"', "0", "-", "9" * 4400),
        *("\u0661", "\x00", "\ud800", "_", "a", " ", "é", "\\", "x" * 300),
    ]
)


@settings(max_examples=100, deadline=None)
@given(
    role=st.sampled_from(_EXPR_ROLES),
    text=st.one_of(
        st.text(),
        st.lists(_FRAGMENTS, max_size=10).map("".join),
        st.sampled_from(_CRAFTED),
    ),
)
def test_any_text_compiles_or_raises_expression_error(role: str, text: str) -> None:
    _check_expression(role, text)


# --- item 5: values that cannot be serialised ---------------------------------------------
SURROGATES = ("\ud800", "abc\udfffdef", "\udc80")
HUGE_INT = 10**4400


def _assert_invalid(tracker: Tracker, sender: InMemorySender, errors: list[TrackingError]) -> None:
    assert len(sender.events) == 0, "an event with an unserialisable or oversized value was sent"
    assert _dropped(tracker) == {"invalid_event": 1}
    assert [e.reason for e in errors] == ["invalid_event"]


@pytest.mark.parametrize("bad", SURROGATES, ids=["alone", "inside", "low"])
@pytest.mark.parametrize("slot", ["customer_id", "email", "mobile", "metadata"])
def test_lone_surrogate_through_track_is_an_invalid_event(slot: str, bad: str) -> None:
    tracker, sender, errors = _fresh()
    options: dict[str, Any] = {"customer_id": "cid"}
    if slot == "metadata":
        options["metadata"] = {"m": "value"}
    else:
        options[slot] = "value"

    def business(cid: str, value: str) -> str:
        return "ok"

    assert track("e", tracker=tracker, **options)(business)("c-1", bad) == "ok"
    _assert_invalid(tracker, sender, errors)

    strict, strict_sender, _ = _fresh(strict=True)
    with pytest.raises(TrackingError):
        track("e", tracker=strict, **options)(business)("c-1", bad)
    assert len(strict_sender.events) == 0


_EMIT_SLOTS = ("name", "customer_id", "email", "mobile", "metadata.value", "metadata.key")


def _emit_options(slot: str, bad: str) -> tuple[str, dict[str, Any]]:
    name = bad if slot == "name" else "e"
    options: dict[str, Any] = {"customer_id": "c-1"}
    if slot == "metadata.value":
        options["metadata"] = {"m": bad}
    elif slot == "metadata.key":
        options["metadata"] = {f"k{bad}": 1}
    elif slot != "name":
        options[slot] = bad
    return name, options


@pytest.mark.parametrize("bad", SURROGATES, ids=["alone", "inside", "low"])
@pytest.mark.parametrize("slot", _EMIT_SLOTS)
def test_lone_surrogate_through_emit_is_an_invalid_event(slot: str, bad: str) -> None:
    tracker, sender, errors = _fresh()
    name, options = _emit_options(slot, bad)
    assert tracker.emit(name, **options) is None
    _assert_invalid(tracker, sender, errors)
    strict, strict_sender, _ = _fresh(strict=True)
    with pytest.raises(TrackingError):
        strict.emit(name, **options)
    assert len(strict_sender.events) == 0


@pytest.mark.parametrize("bad", SURROGATES, ids=["alone", "inside", "low"])
@pytest.mark.parametrize("slot", _EMIT_SLOTS)
def test_lone_surrogate_through_span_is_an_invalid_event(slot: str, bad: str) -> None:
    tracker, sender, errors = _fresh()
    name, options = _emit_options(slot, bad)
    with tracker.span(name, **options):
        pass
    _assert_invalid(tracker, sender, errors)
    strict, strict_sender, _ = _fresh(strict=True)
    with pytest.raises(TrackingError), strict.span(name, **options):
        pass
    assert len(strict_sender.events) == 0


def test_lone_surrogate_set_on_a_span_handle_is_an_invalid_event() -> None:
    tracker, sender, errors = _fresh()
    with tracker.span("e") as handle:
        handle.identify("c-1", email="a\ud800@example.com")
    with tracker.span("e", customer_id="c-1") as handle:
        handle.set("m", "\ud800")
    assert sender.events == []
    assert _dropped(tracker) == {"invalid_event": 2}
    assert len(errors) == 2


def test_huge_int_metadata_is_an_invalid_event() -> None:
    tracker, sender, errors = _fresh()

    @track("e", customer_id="cid", metadata={"n": "n"}, tracker=tracker)
    def business(cid: str, n: int) -> str:
        return "ok"

    assert business("c-1", HUGE_INT) == "ok"
    _assert_invalid(tracker, sender, errors)

    tracker, sender, errors = _fresh()
    assert tracker.emit("e", customer_id="c-1", metadata={"n": HUGE_INT}) is None
    _assert_invalid(tracker, sender, errors)

    tracker, sender, errors = _fresh()
    with tracker.span("e", customer_id="c-1") as handle:
        handle.set("n", HUGE_INT)
    _assert_invalid(tracker, sender, errors)


def test_strict_huge_int_metadata_raises_tracking_error() -> None:
    tracker, sender, _ = _fresh(strict=True)

    @track("e", customer_id="cid", metadata={"n": "n"}, tracker=tracker)
    def business(cid: str, n: int) -> str:
        return "ok"

    with pytest.raises(TrackingError):
        business("c-1", HUGE_INT)
    with pytest.raises(TrackingError):
        tracker.emit("e", customer_id="c-1", metadata={"n": HUGE_INT})
    assert sender.events == []


# --- item 6: size limits ------------------------------------------------------------------
BIG_TEXT = "x" * 10_000_000
BIG_ID = "c" * 1_000_000
MANY_KEYS = {f"k{i}": i for i in range(10_000)}


def _assert_limit(tracker: Tracker, sender: InMemorySender, errors: list[TrackingError]) -> None:
    _assert_invalid(tracker, sender, errors)
    assert "limit" in str(errors[0]).lower(), str(errors[0])[:300]


@pytest.mark.parametrize("slot", ["metadata", "customer_id"])
def test_oversized_values_through_track_are_invalid_events(slot: str) -> None:
    tracker, sender, errors = _fresh()
    options: dict[str, Any] = (
        {"customer_id": "cid", "metadata": {"m": "value"}}
        if slot == "metadata"
        else {"customer_id": "value"}
    )
    value = BIG_TEXT if slot == "metadata" else BIG_ID

    def business(cid: str, value: str) -> str:
        return "ok"

    assert track("e", tracker=tracker, **options)(business)("c-1", value) == "ok"
    _assert_limit(tracker, sender, errors)
    strict, strict_sender, _ = _fresh(strict=True)
    with pytest.raises(TrackingError):
        track("e", tracker=strict, **options)(business)("c-1", value)
    assert len(strict_sender.events) == 0


_OVERSIZED: dict[str, dict[str, Any]] = {
    "metadata-string": {"customer_id": "c-1", "metadata": {"m": BIG_TEXT}},
    "customer-id": {"customer_id": BIG_ID},
    "10k-keys": {"customer_id": "c-1", "metadata": MANY_KEYS},
}


@pytest.mark.parametrize("case", sorted(_OVERSIZED))
def test_oversized_values_through_emit_are_invalid_events(case: str) -> None:
    tracker, sender, errors = _fresh()
    assert tracker.emit("e", **_OVERSIZED[case]) is None
    _assert_limit(tracker, sender, errors)
    strict, strict_sender, _ = _fresh(strict=True)
    with pytest.raises(TrackingError):
        strict.emit("e", **_OVERSIZED[case])
    assert len(strict_sender.events) == 0


@pytest.mark.parametrize("case", sorted(_OVERSIZED))
def test_oversized_values_through_span_are_invalid_events(case: str) -> None:
    tracker, sender, errors = _fresh()
    with tracker.span("e", **_OVERSIZED[case]):
        pass
    _assert_limit(tracker, sender, errors)
    tracker, sender, errors = _fresh()
    with tracker.span("e", customer_id="c-1") as handle:
        if case == "customer-id":
            handle.identify(BIG_ID)
        else:
            handle.update(_OVERSIZED[case]["metadata"])
    _assert_limit(tracker, sender, errors)


# --- item 7: a path that finds nothing on a non-None value --------------------------------
@dataclass
class Info:
    total: float = 9.5


@dataclass
class Order:
    total: float = 9.5
    lines: list[str] = field(default_factory=lambda: ["a", "b"])
    info: Info = field(default_factory=Info)
    extra: dict[str, object] = field(default_factory=dict)
    customer: object = None


# case -> the metadata path; the function returns Order() and takes payload={}
_MISSING_PATHS = {
    "result-attribute": "result.totl",
    "nested-attribute": "result.info.totl",
    "result-dict-key": "result.extra.coupon",
    "result-quoted-key": 'result.extra["coupon"]',
    "param-dict-key": "payload.coupon",
    "param-quoted-key": 'payload["coupon"]',
    "index-out-of-range": "result.lines[5]",
}


def _missing_business(tracker: Tracker, event: str, path: str) -> Callable[..., Any]:
    # Annotated `-> Any`: the type checks would refuse `result.totl` at decoration; these
    # tests are about the runtime miss, i.e. what the checks cannot see.
    @track(
        event, customer_id="cid", metadata={"amount": path, "ok": "result.total"}, tracker=tracker
    )
    def purchase(cid: str, payload: Mapping[str, object]) -> Any:
        return Order()

    return purchase


@pytest.mark.parametrize("case", sorted(_MISSING_PATHS))
def test_missing_path_is_counted_per_event_and_key(case: str) -> None:
    tracker, sender, _ = _fresh()
    purchase = _missing_business(tracker, "purchase", _MISSING_PATHS[case])
    purchase("c-1", {})
    purchase("c-2", {})
    assert tracker.stats.missing[("purchase", "amount")] == 2
    assert ("purchase", "ok") not in tracker.stats.missing
    assert [e.metadata for e in sender.events] == [{"ok": 9.5}, {"ok": 9.5}]
    assert sum(tracker.stats.dropped.values()) == 0


@pytest.mark.parametrize("case", sorted(_MISSING_PATHS))
def test_missing_path_is_logged_once(case: str, caplog: pytest.LogCaptureFixture) -> None:
    tracker, _, _ = _fresh()
    path = _MISSING_PATHS[case]
    purchase = _missing_business(tracker, f"purchase_{case.replace('-', '_')}", path)
    with caplog.at_level(logging.DEBUG, logger="gbtrack"):
        purchase("c-1", {})
        purchase("c-2", {})
    mentioning = [
        r for r in caplog.records if r.name.startswith("gbtrack") and path in r.getMessage()
    ]
    assert len(mentioning) == 1, [r.getMessage() for r in mentioning]


@pytest.mark.parametrize("case", sorted(_MISSING_PATHS))
def test_strict_missing_path_raises_tracking_error(case: str) -> None:
    tracker, sender, _ = _fresh(strict=True)
    purchase = _missing_business(tracker, "purchase", _MISSING_PATHS[case])
    with pytest.raises(TrackingError):
        purchase("c-1", {})
    assert sender.events == []


@pytest.mark.parametrize("strict", [False, True])
def test_none_on_the_way_is_not_missing(strict: bool) -> None:
    tracker, sender, errors = _fresh(strict=strict)

    @track(
        "purchase",
        customer_id="cid",
        metadata={
            "cid": "result.customer.id",
            "coupon": "payload.coupon",
            "deep": "result.customer.address.city",
        },
        tracker=tracker,
    )
    def purchase(cid: str, payload: Mapping[str, object]) -> Order:
        return Order()  # customer is None

    purchase("c-1", {"coupon": None})
    (event,) = sender.events
    assert event.metadata == {}
    assert dict(tracker.stats.missing) == {}
    assert errors == []
