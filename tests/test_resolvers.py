"""Registered resolvers and callable resolvers; what they receive (Call)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from gbtrack import (
    Call,
    ExpressionError,
    InMemorySender,
    Tracker,
    TrackingError,
    identify,
    register_resolver,
    unregister_resolver,
)


def test_registered_resolver_is_a_root(tracker: Tracker, sender: InMemorySender) -> None:
    seen: list[Call] = []

    @register_resolver("current_user")
    def current_user(call: Call) -> object:
        seen.append(call)
        return SimpleNamespace(id="u-7", email="u@example.com")

    @tracker.track("opened", customer_id="current_user.id", email="current_user.email")
    def open_page(page: str) -> str:
        return page.upper()

    assert open_page("home") == "HOME"
    (event,) = sender.events
    assert (event.customer_id, event.email) == ("u-7", "u@example.com")
    assert len(seen) == 2  # once per expression that uses it
    call = seen[0]
    assert call.function.__name__ == "open_page"
    assert call.args == ("home",)
    assert call.kwargs == {}
    assert call.result == "HOME"
    assert call.error is None
    assert call.arguments == {"page": "home"}
    assert "open_page ok" in repr(call)


def test_register_directly_returns_func_and_replacement_applies_at_call_time(
    tracker: Tracker, sender: InMemorySender
) -> None:
    def first(call: Call) -> str:
        return "one"

    assert register_resolver("tenant", first) is first

    @tracker.track("e", customer_id="tenant")
    def f() -> None: ...

    f()
    register_resolver("tenant", lambda call: "two")
    f()
    assert [e.customer_id for e in sender.events] == ["one", "two"]


def test_unregistered_after_decoration_drops_with_resolver_error(
    tracker: Tracker, sender: InMemorySender
) -> None:
    register_resolver("gone", lambda call: "x")

    @tracker.track("e", customer_id="gone")
    def f() -> int:
        return 1

    unregister_resolver("gone")
    assert f() == 1
    assert sender.events == []
    assert tracker.stats.dropped == {"resolver_error": 1}


def test_unregister_unknown_raises() -> None:
    with pytest.raises(KeyError, match="no resolver is registered as 'nope'"):
        unregister_resolver("nope")


@pytest.mark.parametrize("name", ["", "1x", "_hidden", "__class__", "a-b", "a.b", 3])
def test_invalid_resolver_names(name: object) -> None:
    with pytest.raises(ExpressionError, match="must be an identifier"):
        register_resolver(name, lambda call: 1)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["result", "error", "args", "kwargs", "identity"])
def test_reserved_names_refused(name: str) -> None:
    with pytest.raises(ExpressionError, match="reserved root"):
        register_resolver(name, lambda call: 1)


def test_non_callable_refused() -> None:
    with pytest.raises(TypeError, match="must be callable"):
        register_resolver("x", 3)  # type: ignore[call-overload]


def test_unknown_resolver_at_decoration_suggests(tracker: Tracker) -> None:
    register_resolver("current_user", lambda call: None)
    with pytest.raises(ExpressionError) as info:

        @tracker.track("e", customer_id="curent_user.id")
        def handler(request: object) -> None: ...

    message = str(info.value)
    assert "handler" in message
    assert "'curent_user.id'" in message
    assert "did you mean 'current_user'" in message
    assert info.value.suggestions == ("current_user",)
    assert info.value.function is not None
    assert info.value.function.endswith("handler")


def test_parameter_wins_over_resolver(tracker: Tracker, sender: InMemorySender) -> None:
    register_resolver("user", lambda call: SimpleNamespace(id="from-resolver"))

    @tracker.track("e", customer_id="user.id")
    def f(user: object) -> None: ...

    f(SimpleNamespace(id="from-param"))
    assert sender.events[0].customer_id == "from-param"


def test_callable_resolver_anywhere(tracker: Tracker, sender: InMemorySender) -> None:
    @tracker.track(
        "e",
        customer_id=lambda call: call.arguments["uid"],
        email=lambda call: f"{call.arguments['uid']}@example.com",
        metadata={"double": lambda call: call.result * 2, "missing": lambda call: None},
        when=lambda call: call.result > 0,
    )
    def f(uid: str, n: int = 3) -> int:
        return n

    f("u1")
    f("u2", n=-1)
    (event,) = sender.events
    assert event.customer_id == "u1"
    assert event.email == "u1@example.com"
    assert event.metadata == {"double": 6}


def test_call_arguments_with_defaults_varargs_and_self(tracker: Tracker) -> None:
    captured: list[Call] = []

    def grab(call: Call) -> str:
        captured.append(call)
        return "c"

    class Svc:
        @tracker.track("e", customer_id=grab)
        def run(self, a: int, /, b: int = 2, *rest: int, c: int = 5, **extra: int) -> None: ...

    svc = Svc()
    svc.run(1, 3, 4, 5, c=6, d=7)
    svc.run(1)
    first, second = captured
    assert first.arguments == {
        "self": svc,
        "a": 1,
        "b": 3,
        "rest": (4, 5),
        "c": 6,
        "extra": {"d": 7},
    }
    assert first.args == (1, 3, 4, 5)
    assert first.kwargs == {"c": 6, "d": 7}
    assert second.arguments == {"self": svc, "a": 1, "b": 2, "rest": (), "c": 5, "extra": {}}


def test_call_identity_and_standalone_binding() -> None:
    def f(a: int, b: int = 2) -> None: ...

    call = Call(f, (1,), {}, error=ValueError("x"))
    assert call.arguments == {"a": 1, "b": 2}
    assert "error=ValueError" in repr(call)
    with identify("c-9"):
        assert call.identity.customer_id == "c-9"


def test_call_binding_of_builtin_without_signature() -> None:
    # next() has no introspectable signature: bound as (*args, **kwargs).
    call = Call(next, (1, 2), {"default": "-"})
    assert call.arguments == {"args": (1, 2), "kwargs": {"default": "-"}}


def test_resolver_error_is_dropped_not_raised(tracker: Tracker, sender: InMemorySender) -> None:
    def broken(call: Call) -> object:
        raise RuntimeError("db down")

    errors: list[TrackingError] = []
    tracker.on_error = errors.append

    @tracker.track("e", customer_id=literal_c(), metadata={"x": broken})
    def f() -> str:
        return "ok"

    assert f() == "ok"
    assert sender.events == []
    assert tracker.stats.dropped == {"resolver_error": 1}
    (error,) = errors
    assert error.reason == "resolver_error"
    assert "broken" in str(error)
    assert "RuntimeError" in str(error)
    assert isinstance(error.__cause__, RuntimeError)


def test_resolver_error_raises_when_strict(strict_tracker: Tracker) -> None:
    @strict_tracker.track("e", customer_id=lambda call: 1 / 0)
    def f() -> None: ...

    with pytest.raises(TrackingError, match="resolving customer_id") as info:
        f()
    assert info.value.reason == "resolver_error"


def literal_c() -> str:
    from gbtrack import literal

    return literal("c-1")
