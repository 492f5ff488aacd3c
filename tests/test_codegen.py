"""The generated wrappers: their source in tracebacks, their guards, and when they step aside.

Every behaviour test of the decorator runs on both call paths (``tests/_paths.py``);
these pin what only the generated wrapper has: the ``linecache`` source, the type
guards learnt at the first call, the gate read once per call, and equality with the
general path over shapes and values the guards must refuse.
"""

from __future__ import annotations

import asyncio
import gc
import linecache
import traceback
import weakref
from collections.abc import Callable, Generator, Iterator, Mapping
from types import SimpleNamespace
from typing import Any

import pytest
from tests._drafts import DraftSender
from tests._paths import forgetting_classes

from gbtrack import Tracker, _codegen, identify, literal


@pytest.fixture(autouse=True)
def _forget_classes() -> Iterator[None]:
    with forgetting_classes():
        yield


class Customer:
    def __init__(self, id: object = "c-1", email: object = "a@example.com") -> None:
        self.id = id
        self.email = email


class OtherCustomer:
    def __init__(self, id: object = "c-2", email: object = None) -> None:
        self.id = id
        self.email = email


class Order:
    def __init__(self, **fields: object) -> None:
        self.__dict__.update(fields)


class Record(Mapping[str, object]):
    """A mapping that is not a dict: read by key, never by attribute."""

    def __init__(self, **fields: object) -> None:
        self._fields = fields

    def __getitem__(self, key: str) -> object:
        return self._fields[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)


class Exploding:
    id = "c-1"

    @property
    def email(self) -> str:
        raise RuntimeError("boom")


OPTIONS: dict[str, Any] = {
    "customer_id": "customer.id",
    "email": "customer.email",
    "metadata": {
        "order_id": "result.id",
        "amount": "result.total",
        "channel": literal("web"),
    },
}


def _source(tracked: Any) -> str:
    return "".join(linecache.getlines(tracked._self_wrapper.__code__.co_filename))


def _general_calls(tracked: Any) -> list[int]:
    """Count the calls of the plan's general path from ``tracked``'s wrapper."""
    namespace = tracked._self_wrapper.__globals__  # the wrapper's own namespace
    general = namespace["_emit"]
    calls: list[int] = []

    def counting(*args: Any) -> None:
        calls.append(1)
        general(*args)

    namespace["_emit"] = counting
    return calls


def _bare(drafts: list[Any]) -> list[Any]:
    return [d._replace(timestamp=0.0) for d in drafts]


# --- the source, in tracebacks ------------------------------------------------------------
def test_a_traceback_through_the_wrapper_shows_its_source_lines(tracker: Tracker) -> None:
    @tracker.track("e", customer_id="user_id")
    def fail(user_id: str) -> None:
        raise ValueError("business")

    with pytest.raises(ValueError, match="business") as info:
        fail("u-1")
    text = "".join(traceback.format_exception(info.value))
    assert "<gbtrack generated wrapper #" in text
    assert "result = wrapped(*args, **kwargs)" in text  # the generated line, shown
    assert _source(fail).startswith("def make(")


def test_warnings_skip_the_wrapper_frames(tracker: Tracker) -> None:
    # gbtrack's warnings name the first frame outside its directory: the user's line.
    import gbtrack._report as report

    @tracker.track("e", customer_id="user_id")
    def f(user_id: str) -> None: ...

    filename = f._self_wrapper.__code__.co_filename
    assert filename.startswith(report._PACKAGE_DIR)


def test_each_distinct_source_has_its_own_pseudo_file(tracker: Tracker) -> None:
    def f(user_id: str) -> None: ...

    a = tracker.track("e", customer_id="user_id")(f)
    b = tracker.track("e", customer_id="user_id", on="always")(f)
    c = tracker.track("other", customer_id="user_id")(f)
    code = [w._self_wrapper.__code__ for w in (a, b, c)]
    assert code[0].co_filename != code[1].co_filename
    # Tracked alike (only constants differ, such as the name): compiled once, shared.
    assert code[0] is code[2]
    assert a._self_wrapper.__globals__ is not c._self_wrapper.__globals__


def test_a_wrapper_goes_with_its_function(tracker: Tracker) -> None:
    # No reference cycle: a function decorated on the fly (and its plan) is freed by
    # reference counting, as the closures before generated code were.
    @tracker.track("e", **OPTIONS)
    def checkout(customer: object, cart: object) -> object:
        return Order(id="o", total=1)

    checkout(Customer(), None)
    gone = weakref.ref(checkout._self_wrapper)
    gc.disable()
    try:
        del checkout
        assert gone() is None
    finally:
        gc.enable()


# --- when the generated path runs --------------------------------------------------------
@pytest.fixture
def draft_tracker() -> Tracker:
    return Tracker(DraftSender())


def test_the_benchmark_shapes_take_the_generated_path(draft_tracker: Tracker) -> None:
    sender = draft_tracker.sender
    assert isinstance(sender, DraftSender)
    assert draft_tracker.gate is not None

    @draft_tracker.track("e", **OPTIONS)
    def sync(customer: object, cart: object) -> object:
        return Order(id="o", total=1)

    @draft_tracker.track("e", **OPTIONS)
    async def coroutine(customer: object, cart: object) -> object:
        return Order(id="o", total=1)

    class Service:
        @draft_tracker.track("e", **OPTIONS)
        def method(self, customer: object, cart: object) -> object:
            return Order(id="o", total=1)

    service = Service()
    calls = [_general_calls(f) for f in (sync, coroutine, Service.method)]
    for _ in range(3):
        sync(Customer(), None)
        asyncio.run(coroutine(Customer(), None))
        service.method(Customer(), None)
        service.method(customer=Customer(), cart=None)
    assert calls == [[], [], []]
    expected = ("e", "c-1", "a@example.com", None, None, ("order_id", "amount", "channel"))
    assert len(sender.drafts) == 12
    for draft in sender.drafts:
        assert tuple(draft[:6]) == expected
        assert draft.values == ("o", 1, "web")


def test_a_closed_gate_takes_the_general_path(draft_tracker: Tracker) -> None:
    sender = draft_tracker.sender
    assert isinstance(sender, DraftSender)

    @draft_tracker.track("e", **OPTIONS)
    def checkout(customer: object, cart: object) -> object:
        return Order(id="o", total=1)

    calls = _general_calls(checkout)
    checkout(Customer(), None)
    assert calls == []
    draft_tracker.debug = True  # a per-event feature: the gate closes
    assert draft_tracker.gate is None
    checkout(Customer(), None)
    assert calls == [1]
    draft_tracker.debug = False
    checkout(Customer(), None)
    assert calls == [1]
    assert [d.customer_id for d in sender.drafts] == ["c-1", "c-1", "c-1"]


def test_the_gate_is_read_once_per_call(draft_tracker: Tracker) -> None:
    source = _source(draft_tracker.track("e", **OPTIONS)(lambda customer, cart: None))
    assert source.count("tracker.fields_gate") == 1  # the draft's fields, to one entry
    assert source.count("tracker.gate") == 0
    assert source.count("tracker.enabled") == 1


def test_shapes_the_wrapper_cannot_read_take_the_general_path(draft_tracker: Tracker) -> None:
    def f(customer: object, *rest: object, **extra: object) -> None: ...

    plain = draft_tracker.track("e", customer_id="customer.id")(f)
    for options in (
        {"customer_id": "customer.id", "session_token": "customer.token"},
        {"customer_id": lambda call: "c-1"},
        {"customer_id": "rest[0]"},
        {"customer_id": "extra.id"},
        {"customer_id": "customer.id", "metadata": {"n": "args[0]"}},
        {"customer_id": 42},
    ):
        tracked = draft_tracker.track("e", **options)(f)
        assert "gate = tracker.fields_gate" not in _source(tracked), options
    assert "gate = tracker.fields_gate" in _source(plain)


# --- the guards: equal to the general path -------------------------------------------------
def _both_paths(
    monkeypatch: pytest.MonkeyPatch, decorate: Callable[[Tracker], Callable[..., Any]]
) -> tuple[Any, Any]:
    """Decorate with each path, then give ``run(tracked)``'s outcome for each."""
    out = []
    for mode in ("gate", "general"):
        monkeypatch.setattr(_codegen, "mode", mode)
        tracker = Tracker(DraftSender())
        out.append((tracker, decorate(tracker)))
    return out[0], out[1]


def _outcome(tracker: Tracker) -> tuple[list[Any], dict[str, int], dict[str, int]]:
    sender = tracker.sender
    assert isinstance(sender, DraftSender)
    stats = tracker.stats
    return _bare(sender.drafts), dict(stats.dropped), dict(stats.missing)


CALLS: list[tuple[object, object]] = [
    (Customer(), Order(id="o", total=1.5)),
    ({"id": "c-3", "email": "d@example.com"}, {"id": "o", "total": 2}),  # dicts: by key
    (OtherCustomer(), Order(id="o", total=None)),  # another class, None email and total
    (Record(id="c-4", email="r@example.com"), Record(id="o", total=3)),  # a Mapping
    (Customer(email="  "), Order(id="o", total=1)),  # a blank email: converted
    (Customer(id=42), Order(id="o", total=1)),  # an int id: converted
    (Customer(id="  "), Order(id="o", total=1)),  # a blank id: no customer
    # Text not surely non-blank at a glance (the first character not printable ASCII)
    # takes the general path: the same event.
    (Customer(id=" c-6"), Order(id="o", total=1)),
    (Customer(id="émile"), Order(id="o", total=1)),
    (Customer(id="\x7fc"), Order(id="o", total=1)),
    (Customer(id="~c"), Order(id="o", total=1)),  # the last printable ASCII: the fast path
    (Customer(id=""), Order(id="o", total=1)),
    (Customer(email=" e@example.com"), Order(id="o", total=1)),
    (Customer(email="é@example.com"), Order(id="o", total=1)),
    (Customer(email=""), Order(id="o", total=1)),
    (Customer(), Order(id="o")),  # an absent total: counted
    (Customer(), Order(id="o", total=[1])),  # an invalid value
    (Exploding(), Order(id="o", total=1)),  # a property that raises
    (Customer(), None),  # no result
    (SimpleNamespace(id="c-5"), Order(id="o", total=1)),  # an absent email
    (None, Order(id="o", total=1)),
    (Customer(), Order(id="o", total=1)),
]


@pytest.mark.parametrize("ambient", [None, "c-1", "c-9"])
def test_type_changes_between_calls_fall_back_like_the_general_path(
    monkeypatch: pytest.MonkeyPatch, ambient: str | None
) -> None:
    def decorate(tracker: Tracker) -> Callable[..., Any]:
        def checkout(customer: object, order: object) -> object:
            return order

        return tracker.track("e", **OPTIONS)(checkout)

    outcomes = []
    for tracker, tracked in _both_paths(monkeypatch, decorate):
        for customer, order in CALLS:
            if ambient is None:
                tracked(customer, order)
            else:
                with identify(ambient, email="amb@example.com", session_token="t"):
                    tracked(customer, order)
        outcomes.append(_outcome(tracker))
    assert outcomes[0] == outcomes[1]
    assert len(outcomes[0][0]) >= 5


def test_a_read_that_raises_is_reported_naming_its_slot(draft_tracker: Tracker) -> None:
    errors: list[Exception] = []
    draft_tracker.on_error = errors.append

    @draft_tracker.track("e", **OPTIONS)
    def checkout(customer: object, cart: object) -> object:
        return Order(id="o", total=1)

    checkout(Customer(), None)  # the guards learn Customer
    checkout(Exploding(), None)
    assert draft_tracker.stats.dropped == {"resolver_error": 1}
    assert "resolving email (the path 'customer.email') raised RuntimeError" in str(errors[0])


PARAMS: list[tuple[str, dict[str, Any], Callable[[Callable[..., Any]], None]]] = [
    ("positional", {"customer_id": "c.id"}, lambda f: f(Customer(), 1)),
    ("by keyword", {"customer_id": "c.id"}, lambda f: f(c=Customer(), n=1)),
    ("default", {"customer_id": "who"}, lambda f: f(Customer(), 1)),
    ("default given", {"customer_id": "who"}, lambda f: f(Customer(), 1, "w-1")),
    ("keyword-only", {"customer_id": "tag"}, lambda f: f(Customer(), 1, tag="t-1")),
    ("keyword-only absent", {"customer_id": "tag"}, lambda f: f(Customer(), 1)),
    ("root alone", {"customer_id": "c.id", "metadata": {"n": "n"}}, lambda f: f(Customer(), 2)),
    ("longer path", {"customer_id": "c.id", "metadata": {"x": "result['a'][0]"}},
     lambda f: f(Customer(), 1)),
    ("when true", {"customer_id": "c.id", "when": "n"}, lambda f: f(Customer(), 1)),
    ("when false", {"customer_id": "c.id", "when": "n"}, lambda f: f(Customer(), 0)),
    ("when absent", {"customer_id": "c.id", "when": "c.nope"}, lambda f: f(Customer(), 0)),
    ("when alone", {"customer_id": literal("c-1"), "when": "n"}, lambda f: f(Customer(), 1)),
    ("ambient id", {"email": "c.email"}, lambda f: f(Customer(), 1)),
    ("no token", {"customer_id": "c.id", "session_token": None}, lambda f: f(Customer(), 1)),
    ("mobile", {"customer_id": "c.id", "mobile": literal("+201234567890")},
     lambda f: f(Customer(), 1)),
]  # fmt: skip


@pytest.mark.parametrize(("label", "options", "call"), PARAMS, ids=[p[0] for p in PARAMS])
@pytest.mark.parametrize("ambient", [None, "c-1", "c-9"])
def test_parameters_are_read_as_the_binder_reads_them(
    monkeypatch: pytest.MonkeyPatch,
    label: str,
    options: dict[str, Any],
    call: Callable[[Callable[..., Any]], None],
    ambient: str | None,
) -> None:
    def decorate(tracker: Tracker) -> Callable[..., Any]:
        def f(c: object, n: int, who: object = "w-0", *, tag: object = None) -> object:
            return {"a": ["x"]}

        return tracker.track("e", **options)(f)

    outcomes = []
    for tracker, tracked in _both_paths(monkeypatch, decorate):
        for _ in range(2):
            if ambient is None:
                call(tracked)
            else:
                with identify(ambient, email="amb@example.com", session_token="t"):
                    call(tracked)
        outcomes.append(_outcome(tracker))
    assert outcomes[0] == outcomes[1]


@pytest.mark.parametrize("kind", ["method", "classmethod", "staticmethod", "via class"])
def test_bound_targets_read_like_the_general_path(
    monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    def decorate(tracker: Tracker) -> Callable[..., Any]:
        track = tracker.track("e", customer_id="customer.id", metadata={"who": "first.tag"})

        class Shop:
            tag = "shop"

            @track
            def method(first, customer: object) -> None: ...

            @classmethod
            @track
            def klass(first, customer: object) -> None: ...

            @staticmethod
            @track
            def static(first: object, customer: object) -> None: ...

        shop = Shop()
        if kind == "method":
            return lambda c: shop.method(c)
        if kind == "classmethod":
            return lambda c: shop.klass(c)
        if kind == "staticmethod":
            return lambda c: shop.static(SimpleNamespace(tag="arg"), c)
        return lambda c: Shop.method(shop, c)

    outcomes = []
    for tracker, tracked in _both_paths(monkeypatch, decorate):
        tracked(Customer())
        tracked(Customer())
        outcomes.append(_outcome(tracker))
    assert outcomes[0] == outcomes[1]
    assert len(outcomes[0][0]) == 2


def test_generators_take_the_generated_path(draft_tracker: Tracker) -> None:
    sender = draft_tracker.sender
    assert isinstance(sender, DraftSender)

    @draft_tracker.track("e", customer_id="c.id", metadata={"total": "result"})
    def gen(c: object) -> Generator[int, None, int]:
        yield 1
        return 3

    @draft_tracker.track("e", customer_id="c.id")
    async def agen(c: object) -> Any:
        yield 1

    async def drain() -> None:
        async for _ in agen(Customer()):
            pass

    calls = [_general_calls(gen), _general_calls(agen)]
    assert list(gen(Customer())) == [1]
    asyncio.run(drain())
    assert calls == [[], []]
    assert [d.values for d in sender.drafts] == [(3,), ()]


def test_an_int_customer_id_takes_the_generated_path(draft_tracker: Tracker) -> None:
    sender = draft_tracker.sender
    assert isinstance(sender, DraftSender)

    @draft_tracker.track("e", customer_id="c.id", metadata={"user": "c.id"})
    def f(c: object) -> None: ...

    calls = _general_calls(f)
    f(Customer(id=42))
    f(Customer(id=True))  # a bool is not an id: the general path refuses it
    assert calls == [1]
    (draft,) = sender.drafts
    assert (draft.customer_id, draft.values) == ("42", (42,))
    assert draft_tracker.stats.dropped == {"invalid_event": 1}


def test_wrappers_laid_out_alike_keep_their_own_constants(draft_tracker: Tracker) -> None:
    sender = draft_tracker.sender
    assert isinstance(sender, DraftSender)

    def first(c: object, who: object = "w-1") -> None: ...

    def second(c: object, who: object = "w-2") -> None: ...

    tracked = [
        draft_tracker.track(name, customer_id="who", email=literal(email), metadata=meta)(f)
        for name, email, meta, f in (
            ("one", "a@example.com", {"k": 1, "id": "c.id"}, first),
            ("two", "b@example.com", {"k": 2, "id": "c.id"}, second),
        )
    ]
    code = [t._self_wrapper.__code__ for t in tracked]
    assert code[0] is code[1]  # one compilation
    for t in tracked:
        t(Customer())
    assert [(d.name, d.customer_id, d.email, d.values) for d in sender.drafts] == [
        ("one", "w-1", "a@example.com", ("c-1", 1)),
        ("two", "w-2", "b@example.com", ("c-1", 2)),
    ]
