"""The compiled plan of one ``@track``: compile-time checks and each branch of its emit.

Pinned here because mutation testing found them unpinned: the constant plan's identity
rules, metadata values by type, ``ABSENT`` counted once per field, what a failure is
counted as, and the compile-time refusals.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import SecretStr
from tests._paths import call_path  # noqa: F401 - runs every test on both call paths

from gbtrack import (
    Call,
    ExpressionError,
    InMemorySender,
    Tracker,
    TrackingError,
    identify,
    literal,
    register_resolver,
    unregister_resolver,
)


def _token(event: Any) -> str | None:
    token = event.session_token
    return None if token is None else token.get_secret_value()


# --- the constant plan (nothing to read per call) ----------------------------------------------
def test_constant_plan_sends_constant_identity_and_metadata(
    tracker: Tracker, sender: InMemorySender
) -> None:
    @tracker.track(
        "e",
        customer_id=literal("c"),
        email=literal("a@x.io"),
        mobile=literal("+1"),
        session_token=literal("t"),
        metadata={"s": literal("v"), "n": 3, "f": 1.5, "b": False, "d": Decimal("2.5"), "z": None},
    )
    def f() -> None: ...

    f()
    (event,) = sender.events
    assert (event.name, event.customer_id, event.email, event.mobile) == ("e", "c", "a@x.io", "+1")
    assert _token(event) == "t"
    assert event.metadata == {"s": "v", "n": 3, "f": 1.5, "b": False, "d": 2.5}
    assert event.metadata is not None
    assert event.metadata.get("z", "absent") == "absent"


def test_constant_plan_completes_from_identify(tracker: Tracker, sender: InMemorySender) -> None:
    @tracker.track("ambient")
    def a() -> None: ...

    @tracker.track("same", customer_id=literal("c"))
    def b() -> None: ...

    @tracker.track("other", customer_id=literal("d"))
    def c() -> None: ...

    @tracker.track("none", session_token=None)
    def d() -> None: ...

    @tracker.track("secret", session_token=SecretStr("s"))
    def e() -> None: ...

    @tracker.track("int_id", customer_id=42)
    def g() -> None: ...

    with identify("c", email="a@x.io", session_token="tok"):
        for func in (a, b, c, d, e, g):
            func()
    got = {ev.name: (ev.customer_id, ev.email, _token(ev)) for ev in sender.events}
    assert got == {
        "ambient": ("c", "a@x.io", "tok"),
        "same": ("c", "a@x.io", "tok"),
        "other": ("d", None, None),
        "none": ("c", "a@x.io", None),
        "secret": ("c", "a@x.io", "s"),
        "int_id": ("42", None, None),
    }


def test_constant_plan_without_customer_is_dropped(tracker: Tracker) -> None:
    errors: list[TrackingError] = []
    tracker.on_error = errors.append

    class Shop:
        @tracker.track("e", metadata={"k": 1})
        def buy(self) -> str:
            return "ok"

    assert Shop().buy() == "ok"
    assert tracker.stats.dropped == {"no_customer_id": 1}
    assert tracker.stats.sent == 0
    (error,) = errors
    # The qualified name, exactly (not the bare __name__).
    assert error.function is not None
    assert error.function.endswith("<locals>.Shop.buy")


def test_plan_drop_names_the_qualified_function(tracker: Tracker) -> None:
    errors: list[TrackingError] = []
    tracker.on_error = errors.append

    class Shop:
        @tracker.track("e", customer_id="self.nope")
        def buy(self) -> None: ...

    Shop().buy()
    assert [e.reason for e in errors] == ["no_customer_id"]
    assert errors[0].function is not None
    assert errors[0].function.endswith("<locals>.Shop.buy")


def test_constant_plan_invalid_identity_is_a_counted_drop(tracker: Tracker) -> None:
    @tracker.track("e", customer_id=True)  # type: ignore[arg-type]
    def f() -> str:
        return "ok"

    assert f() == "ok"
    assert tracker.stats.dropped == {"invalid_event": 1}


def test_constant_plan_invalid_identity_strict_raises(strict_tracker: Tracker) -> None:
    @strict_tracker.track("e", customer_id=1.5)  # type: ignore[arg-type]
    def f() -> str:
        return "ok"

    with pytest.raises(TrackingError) as info:
        f()
    assert info.value.reason == "invalid_event"


# --- when ----------------------------------------------------------------------------------------
def test_when_absent_is_counted_missing_and_skipped(
    tracker: Tracker, sender: InMemorySender
) -> None:
    @tracker.track("e", customer_id="uid", when="order.big")
    def f(uid: str, order: object) -> None: ...

    f("u", SimpleNamespace())  # ABSENT: a typo, counted, and not sent
    f("u", SimpleNamespace(big=None))  # MISSING: not counted, not sent
    f("u", SimpleNamespace(big=1))
    assert len(sender.events) == 1
    assert tracker.stats.missing == {("e", "when"): 1}
    assert tracker._reporter.get("skipped") == 2


@pytest.mark.parametrize(("when", "sent"), [(True, 1), (False, 0), (1, 1), (0, 0)])
def test_constant_when_with_a_varying_slot(
    tracker: Tracker, sender: InMemorySender, when: object, sent: int
) -> None:
    @tracker.track("e", customer_id="uid", when=when)  # type: ignore[arg-type]
    def f(uid: str) -> None: ...

    f("u")
    assert len(sender.events) == sent


# --- metadata values by type -----------------------------------------------------------------
def test_metadata_values_by_type(tracker: Tracker, sender: InMemorySender) -> None:
    @tracker.track(
        "e",
        customer_id="uid",
        metadata={
            "s": "v.s",
            "i": "v.i",
            "b": "v.b",
            "f": "v.f",
            "d": "v.d",
            "none": "v.none",
            "absent": "v.nope",
            "const": 7,
        },
    )
    def f(uid: str, v: object) -> None: ...

    f("u", SimpleNamespace(s="x", i=0, b=False, f=0.0, d=Decimal("1.5"), none=None))
    (event,) = sender.events
    assert event.metadata == {"s": "x", "i": 0, "b": False, "f": 0.0, "d": 1.5, "const": 7}
    assert dict(tracker.stats.missing) == {("e", "absent"): 1}
    assert tracker.stats.dropped == {}


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan, Decimal("nan"), [1], b"x"])
def test_metadata_value_that_cannot_be_sent_drops_the_event(
    tracker: Tracker, sender: InMemorySender, bad: object
) -> None:
    errors: list[TrackingError] = []
    tracker.on_error = errors.append

    @tracker.track("e", customer_id="uid", metadata={"amount": "v"})
    def f(uid: str, v: object) -> str:
        return "ok"

    assert f("u", bad) == "ok"
    assert sender.events == []
    assert tracker.stats.dropped == {"invalid_event": 1}
    (error,) = errors
    assert "metadata['amount']" in str(error)


# --- identity read per call ------------------------------------------------------------------
def test_absent_identity_fields_are_counted_and_left_out(
    tracker: Tracker, sender: InMemorySender
) -> None:
    @tracker.track(
        "e",
        customer_id="u.id",
        email="u.mail",
        mobile="u.phone",
        session_token="u.token",
    )
    def f(u: object) -> None: ...

    f(SimpleNamespace(id="c"))
    with identify("c", email="amb@x.io", mobile="+1", session_token="tok"):
        f(SimpleNamespace(id="c"))
        f(SimpleNamespace())  # the id itself is absent: the ambient customer
    first, second, third = sender.events
    assert (first.customer_id, first.email, first.mobile, _token(first)) == ("c", None, None, None)
    assert (second.email, second.mobile) == ("amb@x.io", "+1")  # token: see the test below
    assert third.customer_id == "c"
    assert dict(tracker.stats.missing) == {
        ("e", "email"): 3,
        ("e", "mobile"): 3,
        ("e", "session_token"): 3,
        ("e", "customer_id"): 1,
    }


def test_each_identity_field_alone_absent_is_counted(tracker: Tracker) -> None:
    fields = ("customer_id", "email", "mobile", "session_token")
    for field in fields:
        options: dict[str, Any] = {f: literal("x@y.io") for f in fields if f != "customer_id"}
        options["customer_id"] = literal("c")
        options[field] = "u.nope"
        with identify("c"):
            tracker.track(f"e_{field}", **options)(lambda u: None)(SimpleNamespace())
    assert dict(tracker.stats.missing) == {(f"e_{f}", f): 1 for f in fields}
    assert tracker.stats.sent == 4


def test_token_path_that_meets_none_uses_the_ambient_token(
    tracker: Tracker, sender: InMemorySender
) -> None:
    @tracker.track("e", customer_id="u.id", session_token="u.token")
    def f(u: object) -> None: ...

    with identify("c", session_token="tok"):
        f(SimpleNamespace(id="c", token=None))
        f(SimpleNamespace(id="c", token="mine"))
    assert [_token(e) for e in sender.events] == ["tok", "mine"]


def test_token_path_that_finds_nothing_uses_the_ambient_token(
    tracker: Tracker, sender: InMemorySender
) -> None:
    # BUG (found while pinning mutants): an ABSENT token path is turned into None, which
    # means "explicitly no token", so a typo silently strips the ambient token. A token
    # path that meets None (MISSING) keeps it, and so do ABSENT email and mobile paths;
    # left out / nothing found must mean "the ambient token" (docs/spans.md).
    @tracker.track("e", customer_id="u.id", session_token="u.token")
    def f(u: object) -> None: ...

    with identify("c", session_token="tok"):
        f(SimpleNamespace(id="c"))
    (event,) = sender.events
    assert _token(event) == "tok"
    assert dict(tracker.stats.missing) == {("e", "session_token"): 1}


def test_identity_from_paths_and_resolvers(tracker: Tracker, sender: InMemorySender) -> None:
    @tracker.track(
        "e",
        customer_id="u.id",
        email=lambda call: call.arguments["u"].mail,
        mobile="u.phone",
        session_token=SecretStr("s"),
    )
    def f(u: object) -> None: ...

    f(SimpleNamespace(id=5, mail="m@x.io", phone="+2"))
    (event,) = sender.events
    assert (event.customer_id, event.email, event.mobile, _token(event)) == (
        "5",
        "m@x.io",
        "+2",
        "s",
    )


def test_no_customer_after_reading_is_dropped(tracker: Tracker, sender: InMemorySender) -> None:
    @tracker.track("e", customer_id="u.id", metadata={"k": "u.k"})
    def f(u: object) -> None: ...

    f(SimpleNamespace(id=None, k=1))
    assert sender.events == []
    assert tracker.stats.dropped == {"no_customer_id": 1}


# --- failures: counted by kind, named by role ----------------------------------------------------
@pytest.mark.parametrize("role", ["customer_id", "email", "mobile", "session_token", "when", "k"])
def test_a_raising_resolver_is_a_resolver_error_naming_its_role(
    tracker: Tracker, role: str, caplog: pytest.LogCaptureFixture
) -> None:
    errors: list[TrackingError] = []
    tracker.on_error = errors.append

    def broken(call: Call) -> object:
        raise KeyError("boom")

    options: dict[str, Any] = {"customer_id": literal("c")}
    if role == "k":
        options["metadata"] = {"k": broken}
    else:
        options[role] = broken
    with caplog.at_level(logging.DEBUG, logger="gbtrack"):
        tracker.track("e", **options)(lambda: "ok")()
    assert tracker.stats.dropped == {"resolver_error": 1}
    (error,) = errors
    where = f"metadata[{role!r}]" if role == "k" else role
    assert f"resolving {where} (resolver " in str(error)
    assert "raised KeyError" in str(error)
    assert "broken" in str(error)


def test_an_invalid_value_is_an_invalid_event_with_its_message(tracker: Tracker) -> None:
    errors: list[TrackingError] = []
    tracker.on_error = errors.append

    @tracker.track("e", customer_id="u", email="m")
    def f(u: object, m: object) -> None: ...

    f("c", 5)
    assert tracker.stats.dropped == {"invalid_event": 1}
    assert "email must be a str" in str(errors[0])
    assert errors[0].function is not None


def test_strict_tracker_raises_from_emit(strict_tracker: Tracker) -> None:
    @strict_tracker.track("e", customer_id="u", metadata={"k": "v.nope"})
    def f(u: object, v: object) -> None: ...

    with pytest.raises(TrackingError) as info:
        f("c", SimpleNamespace())
    assert info.value.reason == "missing"


def test_unregistered_resolver_is_a_resolver_error(tracker: Tracker) -> None:
    errors: list[TrackingError] = []
    tracker.on_error = errors.append
    register_resolver("plan_probe", lambda call: SimpleNamespace(x=1))
    try:

        @tracker.track("e", customer_id=literal("c"), metadata={"x": "plan_probe.x"})
        def f() -> None: ...

        f()
        assert tracker.stats.sent == 1
    finally:
        unregister_resolver("plan_probe")
    f()
    assert tracker.stats.dropped == {"resolver_error": 1}
    assert "raised LookupError" in str(errors[0])
    assert isinstance(errors[0].__cause__, LookupError)


def test_a_raising_registered_resolver_is_named_in_the_drop(tracker: Tracker) -> None:
    errors: list[TrackingError] = []
    tracker.on_error = errors.append

    def probe(call: Call) -> object:
        raise KeyError("boom")

    register_resolver("plan_raiser", probe)
    try:

        @tracker.track("e", customer_id=literal("c"), metadata={"x": "plan_raiser.x"})
        def f() -> None: ...

        f()
    finally:
        unregister_resolver("plan_raiser")
    assert tracker.stats.dropped == {"resolver_error": 1}
    message = str(errors[0])
    assert "resolving metadata['x'] (registered resolver 'plan_raiser') raised KeyError" in message


# --- roots -------------------------------------------------------------------------------------
def test_reserved_roots_read_their_own_value(tracker: Tracker, sender: InMemorySender) -> None:
    @tracker.track(
        "e",
        customer_id="identity.customer_id",
        on="always",
        metadata={
            "result": "result",
            "error": "error.args[0]",
            "first": "args[0]",
            "kw": "kwargs.k",
            "mail": "identity.email",
        },
    )
    def f(a: int, k: str = "d", fail: bool = False) -> str:
        if fail:
            raise ValueError("bad")
        return "r"

    with identify("c", email="a@x.io"):
        f(1, k="kv")
        with pytest.raises(ValueError):
            f(2, fail=True)
    ok, failed = sender.events
    assert ok.metadata == {"result": "r", "first": 1, "kw": "kv", "mail": "a@x.io"}
    assert failed.metadata == {"error": "bad", "first": 2, "mail": "a@x.io"}


def test_a_parameter_wins_over_a_resolver(tracker: Tracker, sender: InMemorySender) -> None:
    register_resolver("shop", lambda call: "from-resolver")
    try:

        @tracker.track("e", customer_id=literal("c"), metadata={"s": "shop"})
        def f(shop: str) -> None: ...

        f("from-param")
    finally:
        unregister_resolver("shop")
    assert sender.events[0].metadata == {"s": "from-param"}


def test_a_registered_resolver_root(tracker: Tracker, sender: InMemorySender) -> None:
    seen: list[Call] = []

    def shop(call: Call) -> object:
        seen.append(call)
        return {"id": "s1"}

    register_resolver("shop", shop)
    try:

        @tracker.track("e", customer_id=literal("c"), metadata={"s": "shop.id"})
        def f(x: int) -> int:
            return x + 1

        f(1)
    finally:
        unregister_resolver("shop")
    assert sender.events[0].metadata == {"s": "s1"}
    (call,) = seen
    assert (call.args, call.result, call.arguments) == ((1,), 2, {"x": 1})


# --- compile-time refusals -------------------------------------------------------------------
def _compile(**options: Any) -> None:
    def business(order: object, result2: object = None) -> object:
        return None

    Tracker(InMemorySender()).track(**options)(business)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"name": ""}, "event name must be a non-empty string"),
        ({"name": "  "}, "event name must be a non-empty string"),
        ({"name": 5}, "event name must be a non-empty string"),
        ({"name": "e", "metadata": [("k", "order")]}, "metadata must be a mapping, got list"),
        ({"name": "e", "metadata": {"": "order"}}, "metadata keys must be non-empty strings"),
        ({"name": "e", "metadata": {1: "order"}}, "metadata keys must be non-empty strings"),
        ({"name": "e", "metadata": {"k": math.inf}}, "not a finite number"),
        ({"name": "e", "metadata": {"k": object()}}, r"metadata\['k'\] is a object"),
        ({"name": "e", "email": 5}, ": email must be an expression string"),
        ({"name": "e", "mobile": 5}, ": mobile must be an expression string"),
        ({"name": "e", "session_token": 5}, ": session_token must be an expression string"),
        ({"name": "e", "email": SecretStr("x")}, ": email must be an expression string"),
        ({"name": "e", "metadata": {"k": "orders"}}, "did you mean 'order'"),
        ({"name": "e", "metadata": {"k": "zzz"}}, "unknown root 'zzz'; valid roots"),
        ({"name": "e", "metadata": {"k": "order."}}, r"metadata\['k'\]: invalid expression"),
        ({"name": "e", "on": "error", "metadata": {"k": "result"}}, "uses 'result'"),
        ({"name": "e", "on": "success", "metadata": {"k": "error"}}, "uses 'error'"),
    ],
)
def test_compile_refusals(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ExpressionError, match=match) as info:
        _compile(**options)
    assert info.value.function is not None
    assert info.value.function.endswith("business")


@pytest.mark.parametrize(
    "options",
    [
        {"on": "always", "metadata": {"k": "result", "e": "error"}},
        {"on": "error", "metadata": {"e": "error"}},
        {"on": "success", "metadata": {"k": "result"}},
        {"metadata": {"k": "identity.email", "a": "args[0]", "kw": "kwargs"}},
    ],
)
def test_compile_accepts(options: dict[str, Any]) -> None:
    _compile(name="e", **options)


@pytest.mark.parametrize("root", ["result", "error", "args", "kwargs", "identity"])
def test_a_parameter_named_like_a_reserved_root_is_ambiguous(root: str) -> None:
    namespace: dict[str, Any] = {}
    exec(f"def business({root}): return None", namespace)
    tracker = Tracker(InMemorySender())
    with pytest.raises(ExpressionError, match="is ambiguous"):
        tracker.track("e", on="always", metadata={"k": root})(namespace["business"])
    tracker.track("e", on="always", customer_id=literal("c"))(namespace["business"])  # unused: fine


def test_async_generator_has_no_result() -> None:
    async def agen() -> AsyncIterator[int]:
        yield 1

    with pytest.raises(ExpressionError, match="async generator has no return value"):
        Tracker(InMemorySender()).track("e", metadata={"k": "result"})(agen)


def test_unknown_root_lists_what_is_valid() -> None:
    register_resolver("plan_shop", lambda call: None)
    try:
        with pytest.raises(ExpressionError) as info:
            _compile(name="e", metadata={"k": "plan_shopp.x"})
    finally:
        unregister_resolver("plan_shop")
    message = str(info.value)
    assert "did you mean 'plan_shop'?" in message
    assert "the parameters (order, result2)" in message
    assert "registered resolvers (" in message
    assert "plan_shop" in message
    assert info.value.expression == "plan_shopp.x"


def test_at_most_three_suggestions() -> None:
    def business(order1: int, order2: int, order3: int, order4: int, order5: int) -> None: ...

    with pytest.raises(ExpressionError) as info:
        Tracker(InMemorySender()).track("e", metadata={"k": "order0"})(business)
    assert len(info.value.suggestions) == 3


def test_a_token_path_meeting_none_keeps_the_ambient_token_on_every_call(
    tracker: Tracker, sender: InMemorySender
) -> None:
    # The first read of a type goes through read_name (None -> MISSING); later reads take
    # the grouped C-level path, where None stays None: a token must never be grouped.
    class User:
        def __init__(self, token: str | None) -> None:
            self.id = "c"
            self.token = token

    @tracker.track("e", customer_id="u.id", session_token="u.token")
    def f(u: object) -> None: ...

    with identify("c", session_token="tok"):
        for _ in range(3):
            f(User(None))
    assert [_token(e) for e in sender.events] == ["tok", "tok", "tok"]
