"""@track on plain functions: resolution, fallbacks, errors, late binding, wrapping."""

from __future__ import annotations

import enum
import inspect
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import SecretStr
from tests._paths import call_path  # noqa: F401 - runs every test on both call paths

import gbtrack
from gbtrack import (
    Event,
    ExpressionError,
    InMemorySender,
    Tracker,
    TrackingError,
    identify,
    literal,
    set_tracker,
    track,
)
from gbtrack.testing import capture_events


class Color(enum.Enum):
    RED = "red"


def customer(**kw: Any) -> SimpleNamespace:
    return SimpleNamespace(id="c-1", email="john@example.com", mobile="+201234567890", **kw)


def test_resolves_identity_and_metadata(tracker: Tracker, sender: InMemorySender) -> None:
    @tracker.track(
        "purchase",
        customer_id="customer.id",
        email="customer.email",
        mobile="customer.mobile",
        metadata={
            "order_id": "result.id",
            "amount": "result.total",
            "first_sku": "result.items[0]['sku']",
            "coupon": "coupon",
            "channel": literal("web"),
            "count": 2,
            "vip": True,
            "color": Color.RED,
        },
    )
    def checkout(customer: Any, coupon: str | None = None) -> dict[str, Any]:
        return {"id": "o-1", "total": Decimal("9.50"), "items": [{"sku": "A"}]}

    result = checkout(customer(), coupon="SAVE")
    assert result["id"] == "o-1"
    (event,) = sender.events
    assert isinstance(event, Event)
    assert event.name == "purchase"
    assert (event.customer_id, event.email, event.mobile) == (
        "c-1",
        "john@example.com",
        "+201234567890",
    )
    assert event.metadata == {
        "order_id": "o-1",
        "amount": 9.5,
        "first_sku": "A",
        "coupon": "SAVE",
        "channel": "web",
        "count": 2,
        "vip": True,
        "color": "red",
    }
    assert tracker.stats.sent == 1


def test_missing_metadata_is_left_out(tracker: Tracker, sender: InMemorySender) -> None:
    @tracker.track(
        "e",
        customer_id="c.id",
        email="c.nope",
        metadata={"a": "c.nope", "b": "c.none.x", "c": "coupon", "d": "result[3]"},
    )
    def f(c: Any, coupon: str | None = None) -> list[int]:
        return [1]

    f(SimpleNamespace(id=5, none=None))
    (event,) = sender.events
    assert event.customer_id == "5"
    assert event.email is None
    assert event.metadata == {}


def test_customer_id_falls_back_to_ambient_identity(
    tracker: Tracker, sender: InMemorySender
) -> None:
    @tracker.track("e", customer_id="user.id")
    def f(user: Any) -> None: ...

    with identify("amb-1", email="a@example.com", session_token="tok"):
        f(None)
        f(SimpleNamespace(id="explicit"))
    first, second = sender.events
    assert (first.customer_id, first.email) == ("amb-1", "a@example.com")
    assert first.session_token is not None
    assert first.session_token.get_secret_value() == "tok"
    # Another customer: the ambient email/token are not borrowed.
    assert (second.customer_id, second.email, second.session_token) == ("explicit", None, None)


def test_no_customer_id_is_dropped(tracker: Tracker, sender: InMemorySender) -> None:
    errors: list[TrackingError] = []
    tracker.on_error = errors.append

    @tracker.track("e", customer_id="user.id")
    def f(user: Any) -> str:
        return "done"

    assert f(None) == "done"
    assert sender.events == []
    assert tracker.stats.dropped == {"no_customer_id": 1}
    assert errors[0].reason == "no_customer_id"
    assert errors[0].function is not None
    assert errors[0].function.endswith("f")


def test_no_customer_id_strict_raises(strict_tracker: Tracker) -> None:
    @strict_tracker.track("e")
    def f() -> None: ...

    with pytest.raises(TrackingError, match="no customer_id"):
        f()


def test_invalid_metadata_value_is_dropped(tracker: Tracker, sender: InMemorySender) -> None:
    @tracker.track("e", customer_id=literal("c"), metadata={"items": "result"})
    def f():  # type: ignore[no-untyped-def]  # unannotated: the type checks cannot see it
        return [1, 2]

    assert f() == [1, 2]
    assert sender.events == []
    assert tracker.stats.dropped == {"invalid_event": 1}


def test_invalid_metadata_strict_names_key(strict_tracker: Tracker) -> None:
    @strict_tracker.track("e", customer_id=literal("c"), metadata={"amount": "result"})
    def f() -> float:
        return float("nan")

    with pytest.raises(TrackingError, match="amount") as info:
        f()
    assert info.value.reason == "invalid_event"


def test_invalid_customer_id_type_is_invalid_event(tracker: Tracker) -> None:
    @tracker.track("e", customer_id="result")
    def f() -> object:
        return 1.5

    f()
    assert tracker.stats.dropped == {"invalid_event": 1}


def test_fast_path_constants_only(tracker: Tracker, sender: InMemorySender) -> None:
    @tracker.track("e", customer_id=42, metadata={"k": 1})
    def f() -> int:
        return 1

    f()
    f()
    assert [e.customer_id for e in sender.events] == ["42", "42"]
    assert sender.events[0].metadata == {"k": 1}
    assert sender.events[0].metadata is not sender.events[1].metadata


def test_session_token_unset_none_and_expression(tracker: Tracker, sender: InMemorySender) -> None:
    @tracker.track("ambient", customer_id="cid")
    def ambient(cid: str) -> None: ...

    @tracker.track("none", customer_id="cid", session_token=None)
    def none(cid: str) -> None: ...

    @tracker.track("expr", customer_id="cid", session_token="token")
    def expr(cid: str, token: str | None) -> None: ...

    @tracker.track("secret", customer_id="cid", session_token=SecretStr("s3"))
    def secret(cid: str) -> None: ...

    with identify("c", session_token="amb"):
        ambient("c")
        none("c")
        expr("c", "mine")
        expr("c", None)  # missing: falls back to the ambient token
        secret("c")
    tokens = [
        e.session_token.get_secret_value() if e.session_token else None for e in sender.events
    ]
    assert tokens == ["amb", None, "mine", "amb", "s3"]
    assert "mine" not in repr(sender.events[2])


def test_business_return_and_exception_untouched(tracker: Tracker) -> None:
    sentinel = object()

    @tracker.track("e", customer_id=literal("c"))
    def ok() -> object:
        return sentinel

    error = KeyError("boom")

    @tracker.track("e", customer_id=literal("c"))
    def bad() -> None:
        raise error

    assert ok() is sentinel
    with pytest.raises(KeyError) as info:
        bad()
    assert info.value is error


def test_sender_failure_never_reaches_business_code() -> None:
    class Exploding(InMemorySender):
        def send(self, event: Event) -> None:
            raise OSError("disk full")

    tracker = Tracker(Exploding())

    @tracker.track("e", customer_id=literal("c"))
    def f() -> int:
        return 3

    assert f() == 3
    assert tracker.stats.dropped == {"sender_error": 1}


def test_wrapper_keeps_name_doc_signature_and_predicates(tracker: Tracker) -> None:
    def plain(a: int, *, b: str = "x") -> int:
        """Doc."""
        return a

    wrapped = tracker.track("e", customer_id="b")(plain)
    assert wrapped.__name__ == "plain"
    assert wrapped.__qualname__ == plain.__qualname__
    assert wrapped.__doc__ == "Doc."
    assert inspect.signature(wrapped) == inspect.signature(plain)
    assert inspect.isfunction(wrapped)
    assert not inspect.iscoroutinefunction(wrapped)
    assert not inspect.isgeneratorfunction(wrapped)
    assert not inspect.isasyncgenfunction(wrapped)
    assert wrapped.__wrapped__ is plain


def test_stacked_decorators_send_each(tracker: Tracker, sender: InMemorySender) -> None:
    @tracker.track("outer", customer_id="uid")
    @tracker.track("inner", customer_id="uid", metadata={"n": "n"})
    def f(uid: str, n: int) -> int:
        return n

    assert f("u", 4) == 4
    assert [e.name for e in sender.events] == ["inner", "outer"]
    assert sender.events[0].metadata == {"n": 4}


def test_disabled_tracker_calls_straight_through(tracker: Tracker, sender: InMemorySender) -> None:
    calls: list[int] = []

    def resolver(call: Any) -> str:
        calls.append(1)
        return "c"

    @tracker.track("e", customer_id=resolver)
    def f() -> int:
        return 1

    tracker.enabled = False
    assert f() == 1
    assert calls == []
    assert sender.events == []
    tracker.enabled = True
    f()
    assert len(sender.events) == 1


def test_default_tracker_is_bound_late() -> None:
    @track("late", customer_id="uid")
    def f(uid: str) -> None: ...

    first = InMemorySender()
    gbtrack.configure(sender=first, enabled=True)
    f("a")
    replacement = Tracker(InMemorySender())
    set_tracker(replacement)
    f("b")
    assert [e.customer_id for e in first.events] == ["a"]
    assert [e.customer_id for e in replacement.sender.events] == ["b"]


def test_module_level_track_with_capture() -> None:
    @track("signed_up", customer_id="user_id", metadata={"plan": "plan"})
    def sign_up(user_id: str, plan: str = "free") -> None: ...

    with capture_events() as events:
        sign_up("u-1")
    events.assert_tracked("signed_up", customer_id="u-1", plan="free")


def test_args_kwargs_identity_roots(tracker: Tracker, sender: InMemorySender) -> None:
    @tracker.track(
        "e",
        customer_id="identity.customer_id",
        email="identity.email",
        metadata={"first": "args[0]", "flag": "kwargs.flag", "missing": "kwargs.nope"},
    )
    def f(*values: int, **options: bool) -> None: ...

    with identify("who", email="w@example.com"):
        f(7, 8, flag=True)
    (event,) = sender.events
    assert (event.customer_id, event.email) == ("who", "w@example.com")
    assert event.metadata == {"first": 7, "flag": True}


def test_positional_only_and_keyword_only_params(tracker: Tracker, sender: InMemorySender) -> None:
    @tracker.track("e", customer_id="a", metadata={"b": "b", "c": "c", "rest": "rest[1]"})
    def f(a: str, /, b: int = 1, *rest: int, c: int = 3) -> None: ...

    f("x")
    f("y", 5, 6, 7, c=9)
    assert [e.metadata for e in sender.events] == [{"b": 1, "c": 3}, {"b": 5, "c": 9, "rest": 7}]


# --- decoration-time errors ------------------------------------------------------------
def test_unknown_root_names_function_expression_and_suggestion() -> None:
    with pytest.raises(ExpressionError) as info:

        @track("purchase", customer_id="custmer.id")
        def checkout(customer: Any, cart: Any) -> None: ...

    message = str(info.value)
    assert "checkout" in message
    assert "'custmer.id'" in message
    assert "did you mean 'customer'" in message
    assert "customer, cart" in message
    assert info.value.expression == "custmer.id"
    assert info.value.suggestions[0] == "customer"


def test_unknown_root_without_close_match() -> None:
    with pytest.raises(ExpressionError) as info:

        @track("e", metadata={"x": "zzzzzz"})
        def f(a: int) -> None: ...

    assert "did you mean" not in str(info.value)
    assert info.value.suggestions == ()


def test_syntax_error_names_function() -> None:
    with pytest.raises(ExpressionError) as info:

        @track("e", metadata={"total": "result.total("})
        def compute() -> None: ...

    message = str(info.value)
    assert "compute" in message
    assert "result.total(" in message
    assert "metadata['total']" in message


def test_underscore_names_refused() -> None:
    with pytest.raises(ExpressionError, match="underscore"):

        @track("e", customer_id="user.__class__.__name__")
        def f(user: Any) -> None: ...


def test_result_with_on_error_refused() -> None:
    with pytest.raises(ExpressionError, match="on='error'") as info:

        @track("e", customer_id="uid", metadata={"x": "result.x"}, on="error")
        def f(uid: str) -> None: ...

    assert "f" in str(info.value)
    assert "result.x" in str(info.value)


def test_error_with_on_success_refused() -> None:
    with pytest.raises(ExpressionError, match="on='success'"):

        @track("e", customer_id="uid", metadata={"x": "error"})
        def f(uid: str) -> None: ...


@pytest.mark.parametrize("root", ["result", "error", "args", "kwargs", "identity"])
def test_parameter_named_like_reserved_root_is_ambiguous(root: str) -> None:
    namespace: dict[str, Any] = {}
    exec(f"def f({root}, uid): pass", namespace)  # a parameter with that exact name
    with pytest.raises(ExpressionError, match="ambiguous") as info:
        track("e", customer_id="uid", metadata={"x": f"{root}.x"}, on="always")(namespace["f"])
    assert f"call.arguments[{root!r}]" in str(info.value)
    # Unused, such a parameter is fine.
    track("e", customer_id="uid")(namespace["f"])


def test_invalid_options() -> None:
    with pytest.raises(ExpressionError, match="on must be"):
        track("e", on="sometimes")  # type: ignore[arg-type]

    def f() -> None: ...

    with pytest.raises(ExpressionError, match="event name"):
        track("")(f)
    with pytest.raises(ExpressionError, match="metadata must be a mapping"):
        track("e", metadata=["x"])(f)  # type: ignore[arg-type]
    with pytest.raises(ExpressionError, match="metadata keys"):
        track("e", metadata={"": literal("x")})(f)
    with pytest.raises(ExpressionError, match="metadata\\['bad'\\]"):
        track("e", metadata={"bad": [1, 2]})(f)
    with pytest.raises(ExpressionError, match="email must be"):
        track("e", email=3)(f)  # type: ignore[arg-type]
    with pytest.raises(ExpressionError, match="needs a function"):
        track("e")(3)  # type: ignore[arg-type]


def test_metadata_none_spec_and_none_constant_skipped(
    tracker: Tracker, sender: InMemorySender
) -> None:
    @tracker.track("e", customer_id=literal("c"), metadata={"a": None, "b": literal("x")})
    def f() -> None: ...

    f()
    assert sender.events[0].metadata == {"b": "x"}


def test_tracker_track_and_emit(tracker: Tracker, sender: InMemorySender) -> None:
    draft = tracker.emit("direct", customer_id=3, metadata={"k": "v"})
    assert draft is not None
    assert draft.customer_id == "3"
    (event,) = sender.events
    assert (event.name, event.customer_id, event.metadata) == ("direct", "3", {"k": "v"})


def test_ambient_customer_with_resolved_metadata(tracker: Tracker, sender: InMemorySender) -> None:
    @tracker.track("e", metadata={"n": "n"})
    def f(n: int) -> None: ...

    with identify("amb"):
        f(1)
    assert [(e.customer_id, e.metadata) for e in sender.events] == [("amb", {"n": 1})]
