"""The fast paths give exactly what the validated, generic paths give (no timing here)."""

from __future__ import annotations

import datetime as dt
import inspect
import sys
import threading
from collections import OrderedDict
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr
from tests._drafts import DraftSender

from gbtrack import Event, InMemorySender, Tracker
from gbtrack._call import Binder
from gbtrack._expr import ABSENT, MISSING, NAME, compile_names, compile_steps, evaluate, read_name
from gbtrack._protocol import wire_body
from gbtrack._report import Reporter
from gbtrack.gameball import EventBatch, coalesce

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
        assert wire_body(batch.events, copy=False) == batch.body()


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
    assert read_name(value, name) == evaluate(value, ((NAME, name),))
    assert compile_steps(((NAME, name),))(value) == evaluate(value, ((NAME, name),))


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
    assert read_name(value, "a") == evaluate(value, ((NAME, "a"),))


def _sig(a, b=2, *rest, c, d=4, **more):  # type: ignore[no-untyped-def]
    return None


def _method(self, x, y=None):  # type: ignore[no-untyped-def]
    return None


def _posonly(a, b=5, /, c=6):  # type: ignore[no-untyped-def]
    return None


CALLS: list[tuple[Any, object, tuple[Any, ...], dict[str, Any]]] = [
    (_sig, None, (1,), {"c": 3}),
    (_sig, None, (SimpleNamespace(v=1), SimpleNamespace(v=2), 9), {"c": {"v": 3}, "z": 5}),
    (_sig, None, (), {"a": {"v": 1}, "b": None, "c": 3, "d": SimpleNamespace(v=None)}),
    (_method, SimpleNamespace(v="self"), (SimpleNamespace(v="x"),), {}),
    (_method, SimpleNamespace(v="self"), (), {"x": {"v": 1}, "y": {"v": 2}}),
    (_method, None, (SimpleNamespace(v="s"), {"v": "x"}), {}),
    (_posonly, None, (1,), {"c": 7}),
    (_posonly, None, (1, 2, 3), {}),
]


@pytest.mark.parametrize(("func", "instance", "args", "kwargs"), CALLS)
def test_binder_readers_equal_signature_bind(
    func: Any, instance: object, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    # The precomputed readers give what inspect's own binding gives (defaults applied).
    full = args if instance is None else (instance, *args)
    bound = inspect.signature(func).bind(*full, **kwargs)
    bound.apply_defaults()
    binder = Binder(func)
    for name in binder.names:
        expected = bound.arguments[name]
        assert binder.reader(name)(instance, args, kwargs) == expected, name
    assert binder.bind(instance, args, kwargs) == dict(bound.arguments)


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
            if value is not MISSING and value is not ABSENT:
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
    assert "resolving metadata['bad'] (the path 'result.bad') raised RuntimeError" in str(errors[0])


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


def test_reading_the_sent_counter_does_not_change_it() -> None:
    reporter = Reporter()
    assert [reporter.get("sent") for _ in range(3)] == [0, 0, 0]
    for _ in range(50):
        t = threading.Thread(target=reporter.count_sent)
        t.start()
        t.join()
    assert [reporter.get("sent") for _ in range(3)] == [50, 50, 50]
    reporter.count_sent()
    assert reporter.snapshot().sent == reporter.get("sent") == 51


# --- grouped reads and the specialised emitter ------------------------------------------------


def _same(a: object, b: object) -> bool:
    # compile_names leaves a None value as None; read_name says MISSING: callers treat both alike.
    def norm(x: object) -> object:
        return MISSING if x is None else x

    return norm(a) == norm(b)


@given(values, st.lists(st.sampled_from(["a", "b", "items", "keys"]), min_size=1, max_size=4))
def test_compile_names_equals_read_name(value: object, names: list[str]) -> None:
    got = compile_names(tuple(names))(value)
    expected = tuple(read_name(value, name) for name in names)
    assert len(got) == len(expected)
    assert all(_same(g, e) for g, e in zip(got, expected, strict=True)), (got, expected)


class _Customer:
    def __init__(self, id: object, email: object = "a@example.com") -> None:
        self.id = id
        self.email = email


class _Order:
    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


CASES: list[tuple[object, object]] = [
    (_Customer("c-1"), _Order(id="o", total=1.5, currency="USD", items=3)),
    (_Customer("c-1", None), _Order(id="o", total=None, currency="USD", items=3)),
    (_Customer(42), _Order(id="o", total=dt.date(2024, 1, 2), currency="USD", items=True)),
    (_Customer("  "), _Order(id="o", total=1.5, currency="USD", items=3)),
    (_Customer("c-1", "  "), {"id": "o", "total": 2, "currency": "EUR", "items": 1}),
    (_Customer("c-1"), _Order(id="o", currency="USD")),  # total, items absent
    (_Customer("c-1"), None),
    (_Customer("c-1"), _Order(id="o", total=float("nan"), currency="USD", items=3)),
    (_Customer("c-1"), _Order(id="o", total=[1], currency="USD", items=3)),  # invalid
    (_Customer(object()), _Order(id="o", total=1, currency="USD", items=3)),  # invalid id
    (None, _Order(id="o", total=1, currency="USD", items=3)),  # no customer
]


@pytest.mark.parametrize(("customer", "order"), CASES)
@pytest.mark.parametrize("ambient", [None, "c-1", "c-9"])
def test_generated_wrapper_equals_the_general_path(
    customer: object, order: object, ambient: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gbtrack import _codegen, identify, literal

    options: dict[str, Any] = {
        "customer_id": "customer.id",
        "email": "customer.email",
        "metadata": {
            "order_id": "result.id",
            "amount": "result.total",
            "currency": "result.currency",
            "items": "result.items",
            "channel": literal("web"),
        },
    }

    def checkout(customer: object, cart: object) -> object:
        return order

    outcomes = []
    for mode in ("gate", "general"):
        monkeypatch.setattr(_codegen, "mode", mode)
        sender = DraftSender()
        tracker = Tracker(sender)
        tracked = tracker.track("purchase", **options)(checkout)
        # The first call of a well-formed pair teaches the wrapper its classes; the second
        # takes the generated path: both must give what the general path gives.
        good = (_Customer("c-0"), _Order(id="o", total=1, currency="USD", items=3))
        with identify(ambient, email="amb@example.com") if ambient else _nothing():
            tracked(good[0], None)
            tracked(customer, None)
            tracked(customer, None)
        stats = tracker.stats
        drafts = [d._replace(timestamp=0.0) for d in sender.drafts]
        outcomes.append((drafts, dict(stats.dropped), dict(stats.missing)))
    assert outcomes[0] == outcomes[1]


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_a_deferred_check_runs_before_the_generated_path(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The forward references resolve only at the first call: the generated path must
    # not skip the check (a typo there drops the event as invalid_expression).
    (tmp_path / "fwd_generated.py").write_text(
        "from __future__ import annotations\n"
        "from gbtrack import Tracker\n"
        "from tests.perf.test_fast_paths import DraftSender\n"
        "tracker = Tracker(DraftSender())\n"
        "@tracker.track('purchase', customer_id='customer.id',\n"
        "               metadata={'amount': 'result.totl', 'id': 'result.id'})\n"
        "def checkout(customer: Customer, cart: object) -> Order:\n"
        "    return Order()\n"
        "class Customer:\n"
        "    id: str = 'c-1'\n"
        "class Order:\n"
        "    id: str = 'o-1'\n"
        "    total: float = 1.5\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import fwd_generated as mod  # type: ignore[import-not-found]

    try:
        assert mod.tracker.gate is not None  # the generated path is open
        assert "_plan.pending is None" in _source(mod.checkout)
        for _ in range(3):
            mod.checkout(mod.Customer(), None)
        assert mod.tracker.stats.dropped == {"invalid_expression": 3}
        assert mod.tracker.sender.drafts == []
    finally:
        # Its deliberate typo must not reach gbtrack.check() in later tests.
        sys.modules.pop("fwd_generated", None)


def _source(tracked: Any) -> str:
    import linecache

    return "".join(linecache.getlines(tracked._self_wrapper.__code__.co_filename))
