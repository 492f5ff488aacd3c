"""The fast paths give exactly what the validated, generic paths give (no timing here)."""

from __future__ import annotations

import copy
import datetime as dt
import pickle
import threading
from collections import OrderedDict
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from gbtrack import Event, Identity, InMemorySender, Tracker, identify
from gbtrack._call import Binder, read_param
from gbtrack._context import current_identity
from gbtrack._decorator import _param_reader, _reader
from gbtrack._event import _new_event, _new_identity
from gbtrack._expr import MISSING, NAME, _read_name, evaluate, parse
from gbtrack._report import Reporter
from gbtrack.gameball import EventBatch, coalesce

# --- Event / Identity -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "mobile", "token", "metadata"),
    [
        (None, None, None, {}),
        ("a@example.com", "+201234567890", SecretStr("tok"), {"k": 1, "f": 1.5, "b": True}),
        (None, "+1555", None, {"s": "x"}),
    ],
)
def test_new_event_equals_the_validated_constructor(
    email: str | None, mobile: str | None, token: SecretStr | None, metadata: dict[str, Any]
) -> None:
    fast = _new_event("e", "c-1", email, mobile, dict(metadata), token)
    slow = Event(
        name="e",
        customer_id="c-1",
        email=email,
        mobile=mobile,
        metadata=metadata,
        session_token=token,
        event_id=fast.event_id,
        timestamp=fast.timestamp,
    )
    assert fast == slow
    assert fast.model_dump() == slow.model_dump()
    assert fast.model_dump_json() == slow.model_dump_json()
    assert repr(fast) == repr(slow)
    assert fast.model_fields_set == slow.model_fields_set
    assert fast.__pydantic_extra__ is None
    assert fast.__pydantic_private__ is None
    assert pickle.loads(pickle.dumps(fast)) == fast
    assert copy.deepcopy(fast) == fast
    assert Event.model_validate(fast.model_dump()) == fast
    with pytest.raises(Exception, match="frozen"):
        fast.name = "other"  # type: ignore[misc]


def test_new_event_ids_and_timestamps() -> None:
    before = dt.datetime.now(dt.timezone.utc)
    events = [_new_event("e", "c", None, None, {}, None) for _ in range(100)]
    assert len({e.event_id for e in events}) == 100
    assert all(before <= e.timestamp <= dt.datetime.now(dt.timezone.utc) for e in events)
    assert all(e.timestamp.tzinfo is dt.timezone.utc for e in events)
    assert _new_event("e", "c", None, None, {}, None).event_id not in {e.event_id for e in events}


def test_new_identity_equals_the_validated_constructor() -> None:
    fast = _new_identity("c", "a@example.com", None, SecretStr("t"))
    slow = Identity(customer_id="c", email="a@example.com", mobile=None, session_token="t")
    assert fast == slow
    assert repr(fast) == repr(slow)
    assert fast.model_fields_set == slow.model_fields_set


@pytest.mark.parametrize(
    ("outer", "inner", "expected"),
    [
        ({"customer_id": 7}, {}, {"customer_id": "7"}),
        (
            {"customer_id": "a", "email": "a@example.com", "session_token": "t"},
            {"mobile": "+1555"},
            {"customer_id": "a", "email": "a@example.com", "mobile": "+1555", "session_token": "t"},
        ),
        (
            {"customer_id": "a", "email": "a@example.com"},
            {"customer_id": "b"},
            {"customer_id": "b"},
        ),
        ({"customer_id": "a", "session_token": "t"}, {"session_token": None}, {"customer_id": "a"}),
        ({"customer_id": "a"}, {"email": "   "}, {"customer_id": "a"}),  # blank -> None
    ],
)
def test_identify_builds_what_the_model_builds(
    outer: dict[str, Any], inner: dict[str, Any], expected: dict[str, Any]
) -> None:
    with identify(**outer), identify(**inner) as got:
        assert got == Identity(**expected)
        assert current_identity() == got


@pytest.mark.parametrize("bad", [True, 1.5, object()])
def test_identify_rejects_bad_ids_as_before(bad: object) -> None:
    with pytest.raises(ValueError, match="customer_id"):
        identify(bad)  # type: ignore[arg-type]


# --- batches ----------------------------------------------------------------------------------


def _events() -> list[Event]:
    out = []
    for i in range(60):
        out.append(
            Event(
                name=f"e{i % 4}",
                customer_id=f"c{i % 7}",
                email="a@example.com" if i % 3 == 0 else None,
                session_token=SecretStr("t") if i % 5 == 0 else None,
                metadata={"i": i},
            )
        )
    return out


@pytest.mark.parametrize("max_events", [None, 1, 2])
def test_coalesced_batches_pass_the_validated_constructor(max_events: int | None) -> None:
    for batch in coalesce(_events(), max_events=max_events):
        checked = EventBatch(
            batch.customer_id, batch.email, batch.mobile, batch.session_token, batch.events
        )
        assert checked == batch
        assert repr(checked) == repr(batch)
        assert batch._wire() == batch.body()


def test_wire_body_shares_no_state_that_body_promises_to_copy() -> None:
    batch = coalesce(_events())[0]
    body = batch.body()
    body["events"][batch.events[0].name]["extra"] = 1
    assert "extra" not in batch.events[0].metadata


# --- readers ----------------------------------------------------------------------------------


class _Obj:
    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


values = st.recursive(
    st.none() | st.integers() | st.text(max_size=3) | st.floats(allow_nan=False),
    lambda inner: (
        st.dictionaries(st.sampled_from(["a", "b", "items"]), inner, max_size=3)
        | st.lists(inner, max_size=3)
        | st.builds(lambda d: _Obj(**d), st.dictionaries(st.sampled_from(["a", "b"]), inner))
    ),
    max_leaves=8,
)


@given(values, st.sampled_from(["a", "b", "items", "keys"]))
def test_read_name_equals_evaluate(value: object, name: str) -> None:
    assert _read_name(value, name) == evaluate(value, ((NAME, name),))


@pytest.mark.parametrize(
    "value",
    [
        {"a": 1},
        OrderedDict(a=1),
        SimpleNamespace(a=1),
        SimpleNamespace(a=None),
        {"a": None},
        None,
        MISSING,
        [1],
        "text",
    ],
)
def test_read_name_edge_cases(value: object) -> None:
    assert _read_name(value, "a") == evaluate(value, ((NAME, "a"),))


def _sig(a, b=2, *rest, c, d=4, **more):  # type: ignore[no-untyped-def]
    return None


def _method(self, x, y=None):  # type: ignore[no-untyped-def]
    return None


CALLS: list[tuple[Any, object, tuple[Any, ...], dict[str, Any]]] = [
    (_sig, None, (1,), {"c": 3}),
    (_sig, None, (SimpleNamespace(v=1), SimpleNamespace(v=2), 9), {"c": {"v": 3}, "z": 5}),
    (_sig, None, (), {"a": {"v": 1}, "b": None, "c": 3, "d": SimpleNamespace(v=None)}),
    (_method, SimpleNamespace(v="self"), (SimpleNamespace(v="x"),), {}),
    (_method, SimpleNamespace(v="self"), (), {"x": {"v": 1}, "y": {"v": 2}}),
    (_method, None, (SimpleNamespace(v="s"), {"v": "x"}), {}),
]


@pytest.mark.parametrize(("func", "instance", "args", "kwargs"), CALLS)
@pytest.mark.parametrize("steps_text", ["", ".v", ".v.w", "[0]"])
def test_param_readers_equal_read_param_and_evaluate(
    func: Any, instance: object, args: tuple[Any, ...], kwargs: dict[str, Any], steps_text: str
) -> None:
    binder = Binder(func)
    for name in binder.names:
        getter = binder.getter(name)
        steps = parse(name + steps_text).steps
        value = read_param(getter, instance, args, kwargs)
        expected = evaluate(value, steps) if steps else (MISSING if value is None else value)
        got = _reader((1, getter, steps))(instance, args, kwargs, None, None, None)
        assert got == expected, (name, steps_text)
        if getter[3] == 0:
            inline = _param_reader(getter, steps)
            assert inline(instance, args, kwargs, None, None, None) == expected


def test_tracked_metadata_matches_the_generic_evaluation(tracker: Tracker) -> None:
    sender = tracker.sender
    assert isinstance(sender, InMemorySender)

    class Mapping(OrderedDict[str, Any]):
        pass

    results: list[object] = [
        SimpleNamespace(id="o", total=1.5, currency=None),
        {"id": "o", "total": 2, "currency": "EUR"},
        Mapping(id="o", currency="USD"),
        {"items": 3},
        None,
        SimpleNamespace(total=dt.date(2024, 1, 2)),
    ]

    @tracker.track(
        "e",
        customer_id="c",
        metadata={"id": "result.id", "total": "result.total", "cur": "result.currency"},
    )
    def f(c: str, r: object) -> object:
        return r

    for r in results:
        f("c", r)
    for r, event in zip(results, sender.events, strict=True):
        expected = {}
        for key, attr in (("id", "id"), ("total", "total"), ("cur", "currency")):
            value = evaluate(r, ((NAME, attr),))
            if value is not MISSING:
                expected[key] = value.isoformat() if isinstance(value, dt.date) else value
        assert event.metadata == expected


def test_invalid_result_metadata_is_still_dropped(tracker: Tracker) -> None:
    @tracker.track("e", customer_id="c", metadata={"bad": "result.bad"})
    def f(c: str) -> object:
        return SimpleNamespace(bad=float("nan"))

    f("c")
    assert tracker.stats.dropped == {"invalid_event": 1}


def test_raising_result_attribute_is_a_resolver_error(tracker: Tracker) -> None:
    class Boom:
        @property
        def bad(self) -> int:
            raise RuntimeError("boom")

    errors: list[Exception] = []
    tracker.on_error = errors.append

    @tracker.track("e", customer_id="c", metadata={"ok": "result.ok", "bad": "result.bad"})
    def f(c: str) -> object:
        return Boom()

    f("c")
    assert tracker.stats.dropped == {"resolver_error": 1}
    assert "resolving bad (a path expression) raised RuntimeError" in str(errors[0])


# --- counting ---------------------------------------------------------------------------------


def test_sent_counter_loses_nothing_across_threads() -> None:
    reporter = Reporter()
    start = threading.Barrier(8)

    def work() -> None:
        start.wait()
        for _ in range(5_000):
            reporter.count_sent()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reporter.count_sent()
    reporter.count("sent", 2)
    assert reporter.get("sent") == 8 * 5_000 + 3
    assert reporter.snapshot().sent == 8 * 5_000 + 3
    # Finished threads' cells were folded into the base: only the live thread's remains.
    assert len(reporter._cells) == 1


def test_short_lived_threads_do_not_pile_up_cells() -> None:
    reporter = Reporter()
    for _ in range(50):
        t = threading.Thread(target=reporter.count_sent)
        t.start()
        t.join()
    assert reporter.get("sent") == 50
    assert len(reporter._cells) <= 1
