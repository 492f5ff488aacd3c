"""Issue 10: @track's paths checked against annotations at decoration, deferral, check()."""

from __future__ import annotations

import dataclasses
import gc
import importlib.util
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Generator, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple, Optional, TypedDict

import attrs
import pytest
from pydantic import BaseModel

import gbtrack
import gbtrack.testing
from gbtrack import (
    Call,
    ExpressionError,
    InMemorySender,
    Tracker,
    TrackingError,
    _typecheck,
    literal,
    register_resolver,
    track,
)
from gbtrack._checks import sites

# A pytest in a subprocess without the plugins these runs never use (importing
# hypothesis's alone takes seconds).
LEAN = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:xdist")


# ----------------------------------------------------------------------------- types


@dataclasses.dataclass
class Line:
    sku: str
    price: float


@dataclasses.dataclass
class Order:
    id: str
    total: float
    lines: list[Line] = dataclasses.field(default_factory=list)
    extra: dict[str, int] = dataclasses.field(default_factory=dict)
    note: Optional[str] = None  # noqa: UP045


class Customer(BaseModel):
    id: str
    email: str
    tier: int = 0
    tags: list[str] = []


@attrs.define
class Cart:
    id: uuid.UUID
    count: int


class Address(TypedDict):
    city: str
    zip: int


class Point(NamedTuple):
    x: float
    y: float


class Plain:
    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def size(self) -> int:
        return len(self.name)


def error_of(**options: Any) -> ExpressionError:
    with pytest.raises(ExpressionError) as info:

        @track("purchase", **options)
        def checkout(
            customer: Customer,
            cart: Cart,
            address: Address,
            point: Point,
            plain: Plain,
            extra: Mapping[str, float],
        ) -> Order:
            raise NotImplementedError

    return info.value


def decorates(**options: Any) -> None:
    @track("purchase", **options)
    def checkout(
        customer: Customer,
        cart: Cart,
        address: Address,
        point: Point,
        plain: Plain,
        extra: Mapping[str, float],
    ) -> Order:
        raise NotImplementedError


# ----------------------------------------------------------------------------- the issue


def test_the_issue_typo_fails_at_decoration() -> None:
    error = error_of(customer_id="customer.id", metadata={"amount": "result.totl"})
    assert str(error) == (
        "@track('purchase') on error_of.<locals>.checkout: metadata['amount']='result.totl': "
        "Order has no field 'totl'; did you mean 'total'?"
    )
    assert error.function == "error_of.<locals>.checkout"
    assert error.expression == "result.totl"
    assert error.suggestions == ("total",)


def test_every_problem_of_one_decorator_in_one_error() -> None:
    error = error_of(customer_id="customer.idd", metadata={"amount": "result.totl"})
    message = str(error)
    assert "2 problems" in message
    assert "customer_id='customer.idd': Customer has no field 'idd'; did you mean 'id'?" in message
    assert "metadata['amount']='result.totl'" in message
    assert error.expression == "customer.idd"


# ----------------------------------------------------------------------------- type families

POSITIVE = {
    "dataclass": {"amount": "result.total", "sku": "result.lines[0].sku", "n": "result.note"},
    "pydantic": {"tier": "customer.tier", "first_tag": "customer.tags[-1]"},
    "attrs": {"cart": "cart.id", "count": "cart.count"},
    "typeddict": {"city": "address.city", "zip": 'address["zip"]'},
    "namedtuple": {"x": "point.x", "y": "point[1]"},
    "plain class": {"name": "plain.name", "size": "plain.size"},
    "mapping": {"rate": "extra.eur", "usd": 'extra["usd"]', "bonus": "result.extra.bonus"},
}

NEGATIVE = {
    "dataclass": ("result.lines.sku", "list has no attribute 'sku'"),
    "pydantic": ("customer.emial", "Customer has no field 'emial'; did you mean 'email'?"),
    "attrs": ("cart.cnt", "Cart has no field 'cnt'; did you mean 'count'?"),
    "typeddict": ("address.cty", "Address has no key 'cty'; did you mean 'city'?"),
    "namedtuple": ("point[2]", "has 2 items; the index [2] is out of range"),
    "plain class": ("plain.nme", "Plain has no attribute 'nme'; did you mean 'name'?"),
    "mapping": ("extra[0]", "is a mapping; [0] indexes sequences only"),
}


@pytest.mark.parametrize("family", sorted(POSITIVE))
def test_type_family_positive(family: str) -> None:
    decorates(customer_id="customer.id", metadata=POSITIVE[family])


@pytest.mark.parametrize("family", sorted(NEGATIVE))
def test_type_family_negative(family: str) -> None:
    path, message = NEGATIVE[family]
    error = error_of(customer_id="customer.id", metadata={"x": path})
    assert message in str(error)
    assert error.expression == path


def test_leaf_must_be_a_gameball_value() -> None:
    error = error_of(customer_id="customer.id", metadata={"lines": "result.lines"})
    assert "the value is list[Line]; Gameball accepts str, int, float or bool" in str(error)
    error = error_of(customer_id="customer.id", metadata={"c": "cart"})
    assert "the value is Cart (an attrs class)" in str(error)
    # converted values are fine: UUID, and a number under a str | None union
    decorates(customer_id="customer.id", metadata={"cart": "cart.id", "note": "result.note"})


def test_identity_leaf_is_what_a_customer_id_accepts() -> None:
    decorates(customer_id="cart.id")  # UUID
    decorates(customer_id="cart.count")  # int
    error = error_of(customer_id="point.x")
    assert "a customer id must be a str, int or UUID" in str(error)
    error = error_of(customer_id="customer.id", email="customer.tier")
    assert "email='customer.tier': the value is int; it must be a str" in str(error)


def test_unknown_types_stop_the_check_without_error() -> None:
    @track("e", customer_id="user.anything.at[0].all", metadata={"x": "kwargs.whatever"})
    def f(user: Any, **extra: int) -> None: ...

    @track("e", customer_id="user.id", metadata={"x": "result.a.b", "e": "error.code"}, on="always")
    def g(user, data: dict[str, object]):  # type: ignore[no-untyped-def]  # unannotated
        return data


# ----------------------------------------------------------------------------- kinds of functions


def test_async_def_result_is_the_awaited_type() -> None:
    @track("e", customer_id="c", metadata={"amount": "result.total"})
    async def ok(c: str) -> Order:
        raise NotImplementedError

    with pytest.raises(ExpressionError, match="Order has no field 'totl'"):

        @track("e", customer_id="c", metadata={"amount": "result.totl"})
        async def bad(c: str) -> Order:
            raise NotImplementedError


def test_generator_result_is_its_return_type() -> None:
    @track("e", customer_id="c", metadata={"amount": "result.total"})
    def ok(c: str) -> Generator[int, None, Order]:
        yield 1
        return Order("o", 1.0)

    with pytest.raises(ExpressionError, match="always None"):

        @track("e", customer_id="c", metadata={"amount": "result.total"})
        def bad(c: str) -> Iterator[int]:
            yield 1

    @track("e", customer_id="c", metadata={"n": "n"})
    async def agen(c: str, n: int) -> AsyncIterator[int]:
        yield n


def test_methods_check_their_parameters() -> None:
    class Service:
        @track("e", customer_id="customer.id", metadata={"tier": "customer.tier"})
        def buy(self, customer: Customer) -> None: ...

        @classmethod
        @track("e", customer_id="customer.id")
        def make(cls, customer: Customer) -> None: ...

    with pytest.raises(ExpressionError, match="did you mean 'tier'"):

        class Broken:
            @track("e", customer_id="customer.id", metadata={"tier": "customer.tir"})
            def buy(self, customer: Customer) -> None: ...


def test_registered_resolver_return_annotation() -> None:
    def current_order(call: Call) -> Order:
        return Order("o", 1.0)

    register_resolver("current_order", current_order)

    @track("e", customer_id=literal("c"), metadata={"amount": "current_order.total"})
    def ok() -> None: ...

    with pytest.raises(ExpressionError, match="did you mean 'total'"):

        @track("e", customer_id=literal("c"), metadata={"amount": "current_order.totl"})
        def bad() -> None: ...


def test_callable_return_annotation_is_checked() -> None:
    def lines(call: Call) -> list[str]:
        return []

    with pytest.raises(ExpressionError, match=r"metadata\['l'\] \(resolver .*lines\).*list"):

        @track("e", customer_id=literal("c"), metadata={"l": lines})
        def bad() -> None: ...

    @track("e", customer_id=literal("c"), metadata={"l": lambda call: [1]})  # unannotated
    def unknown() -> None: ...


def test_identity_root_is_checked() -> None:
    @track("e", metadata={"mail": "identity.email"})
    def ok() -> None: ...

    with pytest.raises(ExpressionError, match="did you mean 'email'"):

        @track("e", metadata={"mail": "identity.emial"})
        def bad() -> None: ...


# ----------------------------------------------------------------------------- forward refs

FORWARD = """
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gbtrack import Tracker, InMemorySender

if TYPE_CHECKING:
    from decimal import Decimal  # never importable at run time in this module

tracker = Tracker(InMemorySender())


@tracker.track("good", customer_id="customer.id", metadata={"amount": "result.total"})
def good(customer: Customer) -> Order:
    return Order(total=9.5)


@tracker.track("bad", customer_id="customer.id", metadata={"amount": "result.totl"})
def bad(customer: Customer) -> Order:
    return Order(total=9.5)


@tracker.track("hidden", customer_id="customer.id", metadata={"amount": "price.whatever"})
def hidden(customer: Customer, price: Decimal) -> None: ...


@dataclass
class Customer:
    id: str


@dataclass
class Order:
    total: float
"""


def load(tmp_path: Path, name: str, source: str) -> ModuleType:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def forward(tmp_path: Path) -> Iterator[ModuleType]:
    name = f"gbtrack_forward_{uuid.uuid4().hex}"
    module = load(tmp_path, name, FORWARD)
    try:
        yield module
    finally:
        del sys.modules[name]
        # The per-class cache of the type checks holds the module's classes (and so,
        # through their methods, its namespace and decorated functions): forget them.
        _typecheck._MEMBERS.clear()


@pytest.fixture(autouse=True)
def _collect() -> None:
    gc.collect()  # sites of earlier tests' modules (held in reference cycles) go away


def test_forward_references_never_break_import(forward: ModuleType) -> None:
    names = {site.event: site for site in sites() if site.module == forward.__name__}
    assert set(names) == {"good", "bad", "hidden"}
    assert names["bad"].deferred  # checked at the first call


def test_deferred_check_runs_at_the_first_call(forward: ModuleType) -> None:
    customer = forward.Customer("c-1")
    forward.good(customer)
    forward.bad(customer)
    forward.bad(customer)  # every call: a counted drop, like any resolution failure
    forward.hidden(customer, 1)  # TYPE_CHECKING-only: unknown for good, never an error
    tracker = forward.tracker
    assert [e.name for e in tracker.sender.events] == ["good", "hidden"]
    assert tracker.stats.dropped == {"invalid_expression": 2}
    assert "Order has no field 'totl'" in str(tracker.stats.last_error)


def test_deferred_check_raises_in_strict_mode(forward: ModuleType) -> None:
    forward.tracker.strict = True
    with pytest.raises(TrackingError, match="did you mean 'total'") as info:
        forward.bad(forward.Customer("c-1"))
    assert info.value.reason == "invalid_expression"
    forward.good(forward.Customer("c-1"))


def test_check_lists_every_problem(forward: ModuleType) -> None:
    with pytest.raises(ExpressionError) as info:
        gbtrack.check()
    message = str(info.value)
    assert message.startswith("gbtrack.check() found problems in 1 tracked function:")
    assert "@track('bad') on bad: metadata['amount']='result.totl'" in message
    assert info.value.function == "bad"
    assert info.value.suggestions == ("total",)


def test_check_sees_schemas_registered_later() -> None:
    @track("planned_later", customer_id="c", metadata={"amount": "amount"})
    def pay(c: str, amount: float) -> None: ...

    gbtrack.check()

    @gbtrack.event_schema("planned_later")
    class PlannedLater(BaseModel):
        amount: float
        currency: str

    with pytest.raises(ExpressionError, match=r"requires metadata\['currency'\]"):
        gbtrack.check()


def test_sites_are_registered_weakly_with_their_call_site() -> None:
    @track("weak_event", customer_id="c")
    def f(c: str) -> None: ...

    line = sys._getframe().f_lineno - 3
    (site,) = [s for s in sites() if s.event == "weak_event"]
    assert (Path(site.file).name, site.line) == ("test_checks.py", line)
    assert site.identity["customer_id"] == "c"
    del f, site
    gc.collect()
    assert not [s for s in sites() if s.event == "weak_event"]


def test_tracker_track_call_site_is_the_callers() -> None:
    tracker = Tracker(InMemorySender())

    @tracker.track("via_tracker", customer_id="c")
    def f(c: str) -> None: ...

    line = sys._getframe().f_lineno - 3
    (site,) = [s for s in sites() if s.event == "via_tracker"]
    assert (Path(site.file).name, site.line) == ("test_checks.py", line)


# ----------------------------------------------------------------------------- pytest plugin

PLUGIN_APP = """
from __future__ import annotations
from gbtrack import track

@track("purchase", customer_id="customer_id", metadata={"amount": "result.totl"})
def checkout(customer_id: str) -> Order: ...

class Order:
    total: float
"""


@pytest.mark.slow
def test_plugin_runs_check_once_per_session(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(app_module=PLUGIN_APP)
    pytester.makepyfile(test_app="import app_module\n\ndef test_nothing():\n    pass\n")
    result = pytester.runpytest_subprocess(*LEAN)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*gbtrack.check() found problems in 1 tracked function*"])
    result.stdout.fnmatch_lines(["*Order has no attribute 'totl'; did you mean 'total'?*"])

    result = pytester.runpytest_subprocess(*LEAN, "--no-gbtrack-check")
    result.assert_outcomes(passed=1)
    pytester.makeini("[pytest]\ngbtrack_check = false\n")
    result = pytester.runpytest_subprocess(*LEAN)
    result.assert_outcomes(passed=1)


# ----------------------------------------------------------------------------- the plan


def purchase_schema() -> type[BaseModel]:
    @gbtrack.event_schema("purchase_completed")
    class PurchaseCompleted(BaseModel):
        order_id: str
        amount: float
        currency: str = "USD"

    return PurchaseCompleted


def test_event_schema_returns_the_class_and_can_be_removed() -> None:
    schema = purchase_schema()
    assert schema.__name__ == "PurchaseCompleted"
    gbtrack.remove_event_schema("purchase_completed")
    gbtrack.remove_event_schema("purchase_completed")  # nothing left: no error


def test_track_of_a_planned_event_is_checked_at_decoration() -> None:
    purchase_schema()

    @track(
        "purchase_completed", customer_id="c", metadata={"order_id": "o.id", "amount": "o.total"}
    )
    def ok(c: str, o: Order) -> None: ...

    with pytest.raises(ExpressionError) as info:

        @track(
            "purchase_completed",
            customer_id="c",
            metadata={"order_id": "o.total", "amout": "o.total", "currency": literal("EGP")},
        )
        def bad(c: str, o: Order) -> None: ...

    message = str(info.value)
    assert "3 problems" in message
    assert "metadata['amout'] is not in PurchaseCompleted" in message
    assert "did you mean 'amount'?" in message
    assert "requires metadata['amount']" in message
    assert "metadata['order_id'] is float, but PurchaseCompleted.order_id expects str" in message


def test_planned_metadata_is_validated_where_events_are(tracker: Tracker) -> None:
    purchase_schema()

    @tracker.track("purchase_completed", customer_id="c", metadata={"order_id": "o", "amount": "a"})
    def pay(c: str, o, a):  # type: ignore[no-untyped-def]  # unannotated: only the worker sees
        return None

    pay("c-1", "o-1", 5)
    pay("c-1", "o-2", "five")
    assert [e.metadata for e in tracker.sender.events] == [{"order_id": "o-1", "amount": 5}]
    assert tracker.stats.dropped == {"invalid_event": 1}
    assert "does not match PurchaseCompleted: amount" in str(tracker.stats.last_error)
    tracker.emit("purchase_completed", customer_id="c-2", metadata={"order_id": "o-3"})
    assert tracker.stats.dropped == {"invalid_event": 2}
    assert "PurchaseCompleted" in str(tracker.stats.last_error)


def test_worker_validation_uses_the_plan() -> None:
    from gbtrack._event import EventDraft, validate_drafts

    def draft(metadata: dict[str, object]) -> EventDraft:
        return EventDraft(
            "purchase_completed",
            "c",
            None,
            None,
            None,
            tuple(metadata),
            tuple(metadata.values()),
            "pay",
            1.7e9,  # type: ignore[arg-type]
        )

    good, bad = draft({"order_id": "o", "amount": 1.5}), draft({"order_id": "o", "amt": 1.5})
    events, failed = validate_drafts([good, bad])
    assert len(events) == 2  # no plan: nothing to check
    assert not failed
    purchase_schema()
    events, failed = validate_drafts([good, bad])
    assert [e.metadata for e in events] == [{"order_id": "o", "amount": 1.5}]
    assert failed[0][0] is bad
    assert str(failed[0][1]).startswith("event 'purchase_completed' from pay: metadata['amt']")
    gbtrack.remove_event_schema("purchase_completed")
    assert len(validate_drafts([good, bad])[0]) == 2


def test_strict_plan_refuses_unplanned_events() -> None:
    purchase_schema()
    tracker = Tracker(InMemorySender(), strict_plan=True)
    with pytest.raises(ExpressionError, match=r"not in the tracking plan.*did you mean"):

        @tracker.track("purchase_complete", customer_id="c")
        def typo(c: str) -> None: ...

    assert tracker.emit("signed_up", customer_id="c") is None
    with tracker.span("signed_up", customer_id="c"):
        pass
    assert tracker.stats.dropped == {"unplanned_event": 2}
    tracker.emit("purchase_completed", customer_id="c", metadata={"order_id": "o", "amount": 1})
    assert len(tracker.sender.events) == 1
    tracker.configure(strict_plan=False)
    tracker.emit("signed_up", customer_id="c")
    assert len(tracker.sender.events) == 2


def test_configure_strict_plan_on_the_default_tracker() -> None:
    @track("not_planned", customer_id="c")  # decorated before the plan is strict
    def f(c: str) -> None: ...

    with gbtrack.testing.capture_events() as events:
        gbtrack.configure(strict_plan=True)
        f("c-1")
        assert list(events) == []
        assert gbtrack.get_tracker().stats.dropped["unplanned_event"] == 1
        with pytest.raises(ExpressionError, match="not in the tracking plan"):
            gbtrack.check()
        with pytest.raises(ExpressionError, match="the plan is empty"):

            @track("also_not_planned", customer_id="c")
            def g(c: str) -> None: ...


# ----------------------------------------------------------------------------- names and keys


@pytest.mark.parametrize(
    ("name", "metadata", "message"),
    [
        (
            "n" * 101,
            {},
            "the event name is 101 characters; the limit is 100 (Limits.max_name_length)",
        ),
        (
            "paid",
            {"k" * 101: "c"},
            "is 101 characters; the limit is 100 (Limits.max_key_length)",
        ),
        (
            "pa\x00id",
            {},
            "the event name 'pa\\x00id' holds the control character U+0000 at index 2",
        ),
        ("paid\n", {}, "holds the control character U+000A at index 4"),
        ("paid", {"amount\n": "c"}, "metadata key 'amount\\n' holds the control character U+000A"),
        ("paid", {"\x1b[31mred": "c"}, "metadata key '\\x1b[31mred' holds the control character"),
        ("paid", {"a\x9bb": literal("x")}, "holds the control character U+009B at index 1"),
    ],
)
def test_names_and_keys_fail_at_decoration(
    name: str, metadata: dict[str, Any], message: str
) -> None:
    tracker = Tracker(InMemorySender())
    with pytest.raises(ExpressionError) as info:

        @tracker.track(name, customer_id="c", metadata=metadata)
        def pay(c: str) -> None: ...

    assert message in str(info.value)
    assert "\x1b" not in str(info.value)
    assert "\n" not in str(info.value)


def test_names_and_keys_follow_the_trackers_limits() -> None:
    tracker = Tracker(InMemorySender(), limits=gbtrack.Limits(max_name_length=200))

    @tracker.track("n" * 150, customer_id="c")
    def pay(c: str) -> None: ...

    pay("c-1")
    assert [len(e.name) for e in tracker.sender.events] == [150]

    @tracker.track("n" * 100, customer_id="c")  # the boundary: accepted
    def pay_default(c: str) -> None: ...


def test_validation_refuses_the_same_names_and_keys() -> None:
    tracker = Tracker(InMemorySender())
    tracker.emit("pa\nid", customer_id="c-1")
    tracker.emit("paid", customer_id="c-1", metadata={"a\x1bb": 1})
    tracker.emit("paid", customer_id="c-1", metadata={"ok": 1})
    assert [e.name for e in tracker.sender.events] == ["paid"]
    assert tracker.stats.dropped == {"invalid_event": 2}
    with pytest.raises(Exception, match="control character U\\+000A"):
        gbtrack.Event(name="pa\nid", customer_id="c-1")


# ----------------------------------------------------------------------------- the report


class Loose:
    def __getattr__(self, name: str) -> object:
        return name


def test_check_reports_what_it_could_not_check() -> None:
    @track(
        "report_event",
        customer_id="customer.id",
        metadata={"loose": "loose.anything", "amount": "result.total", "raw": "raw.x"},
    )
    def pay(customer: Customer, loose: Loose, raw, amount: float) -> Order:  # type: ignore[no-untyped-def]
        raise NotImplementedError

    report = gbtrack.check()
    mine = [u for u in report.unchecked if u.event == "report_event"]
    assert [(u.role, u.expression, u.reason) for u in mine] == [
        (
            "metadata['loose']",
            "loose.anything",
            "at .anything: Loose may have attributes it does not declare "
            "(Loose defines __getattr__)",
        ),
        ("metadata['raw']", "raw.x", "the root: its type is Any"),
    ]
    assert report.checked == report.paths - len(report.unchecked)
    assert report.sites >= 1
    text = str(report)
    assert text.startswith("gbtrack.check(): ")
    assert f"{len(report.unchecked)} unchecked" in text.splitlines()[0]
    assert "@track('report_event') on test_check_reports_what_it_could_not_check." in text


def test_cached_refusals_hold_no_frames() -> None:
    """The walk cache keeps errors without their traceback: frames made every GC slow."""
    from gbtrack import _checks

    with pytest.raises(ExpressionError):
        decorates(metadata={"amount": "result.totl_cached"})
    cached = [v for v in _checks._WALKS.values() if isinstance(v, _typecheck.PathTypeError)]
    assert cached
    assert all(e.__traceback__ is None and e.__context__ is None for e in cached)
