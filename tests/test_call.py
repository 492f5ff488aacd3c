"""Binder and Call: each parameter kind read by position and name, with and without wrapt's
bound ``instance``; compared with ``inspect``'s own binding where it applies.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import pytest

from gbtrack import Call, Identity, identify
from gbtrack._call import Binder
from gbtrack._expr import MISSING


def every_kind(a, b=2, /, c=3, *rest, d, e=5, **extra):  # type: ignore[no-untyped-def]
    return None


def _read(func: Any, name: str, instance: object, args: tuple[Any, ...], kwargs: Any) -> object:
    return Binder(func).reader(name)(instance, args, kwargs)


def test_names_and_params() -> None:
    binder = Binder(every_kind)
    assert binder.names == ("a", "b", "c", "rest", "d", "e", "extra")
    assert binder.var_positional == "rest"
    assert binder.var_keyword == "extra"
    assert binder.params["a"] == (0, inspect.Parameter.POSITIONAL_ONLY, MISSING)
    assert binder.params["c"] == (2, inspect.Parameter.POSITIONAL_OR_KEYWORD, 3)
    assert binder.params["d"][0] == -1
    assert binder.params["rest"][0] == -1


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((1,), {"d": 4}),
        ((1, 20), {"d": 4, "c": 30}),
        ((1, 20, 30, 40, 50), {"d": 4, "e": 6, "x": 7}),
        ((1, 20, 30), {"d": 4, "y": 8}),
    ],
)
def test_bind_matches_inspect(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    expected = dict(inspect.signature(every_kind).bind(*args, **kwargs).arguments)
    expected.setdefault("b", 2)
    expected.setdefault("c", 3)
    expected.setdefault("e", 5)
    expected.setdefault("rest", ())
    expected.setdefault("extra", {})
    assert Binder(every_kind).bind(None, args, kwargs) == expected


def test_positional_only_is_never_read_from_kwargs() -> None:
    assert _read(every_kind, "a", None, (), {"a": 9}) is MISSING
    assert _read(every_kind, "a", None, (), {"": 9}) is MISSING  # f(**{"": 9}) is legal
    assert _read(every_kind, "b", None, (), {"b": 9}) == 2
    assert _read(every_kind, "c", None, (), {"c": 9}) == 9


def test_keyword_only_is_never_read_from_args() -> None:
    assert _read(every_kind, "d", None, (1, 2, 3, 4), {}) is MISSING
    assert _read(every_kind, "d", None, (1, 2, 3, 4), {"d": 0}) == 0
    assert _read(every_kind, "e", None, (1, 2, 3, 4, 5, 6), {}) == 5


def test_var_positional_and_var_keyword() -> None:
    assert _read(every_kind, "rest", None, (1, 2, 3, 4, 5), {}) == (4, 5)
    assert _read(every_kind, "rest", None, (1, 2), {}) == ()
    # A keyword named like the **parameter itself lands in it, as Python does.
    assert _read(every_kind, "extra", None, (), {"c": 1, "d": 2, "x": 3, "extra": 4}) == {
        "x": 3,
        "extra": 4,
    }


def test_names_that_cannot_be_passed_by_keyword_land_in_var_keyword() -> None:
    # BUG (found while pinning mutants): Python puts `a=` (positional-only) and `rest=`
    # (the *args name) into **extra, but the binder drops them: call.arguments and a
    # path on `extra` disagree with inspect's binding for such calls.
    kwargs = {"d": 4, "a": 9, "rest": 8}
    expected = inspect.signature(every_kind).bind(1, **kwargs).arguments["extra"]
    assert expected == {"a": 9, "rest": 8}
    assert _read(every_kind, "extra", None, (1,), kwargs) == expected
    assert Binder(every_kind).bind(None, (1,), kwargs)["extra"] == expected


class Shop:
    def method(self, a: int, b: int = 2, *rest: int, **extra: int) -> None: ...


def test_instance_takes_the_first_parameters_place() -> None:
    shop = Shop()
    binder = Binder(Shop.method)
    assert binder.reader("self")(shop, (1,), {}) is shop
    assert binder.reader("a")(shop, (1,), {}) == 1
    assert binder.reader("b")(shop, (1, 5), {}) == 5
    assert binder.reader("b")(shop, (1,), {"b": 7}) == 7
    assert binder.reader("b")(shop, (1,), {}) == 2
    assert binder.reader("rest")(shop, (1, 5, 6, 7), {}) == (6, 7)
    assert binder.reader("rest")(None, (shop, 1, 5, 6, 7), {}) == (6, 7)
    assert binder.reader("extra")(shop, (1,), {"z": 1, "b": 3}) == {"z": 1}
    # Without a bound instance, self is the first positional argument.
    assert binder.reader("self")(None, (shop, 1), {}) is shop
    assert binder.reader("a")(None, (shop, 1), {}) == 1
    assert binder.reader("a")(None, (shop,), {"a": 4}) == 4
    assert binder.reader("a")(None, (shop,), {}) is MISSING
    assert binder.bind(shop, (1,), {}) == {"self": shop, "a": 1, "b": 2, "rest": (), "extra": {}}


def test_var_positional_first_without_an_instance() -> None:
    def star(*args: int) -> None: ...

    assert Binder(star).reader("args")(None, (1, 2), {}) == (1, 2)
    assert Binder(star).reader("args")(None, (), {}) == ()


class Star:
    def method(*args: object) -> None: ...  # self arrives as args[0]


def test_var_positional_first_with_an_instance_starts_with_it() -> None:
    # BUG (found by a mutant of `instance is not None and start`): for a method whose
    # first parameter is *args, wrapt hands self over as `instance`, and Python puts it
    # in args[0]; the binder leaves it out.
    star = Star()
    expected = inspect.signature(Star.method).bind(star, 1, 2).arguments["args"]
    assert expected == (star, 1, 2)
    assert Binder(Star.method).reader("args")(star, (1, 2), {}) == expected
    assert Binder(Star.method).bind(star, (1, 2), {}) == {"args": expected}


def test_the_wrappers_own_signature_is_read() -> None:
    def inner(order: int) -> None: ...

    @functools.wraps(inner)
    def outer(*args: object, **kwargs: object) -> None: ...

    # The decorator receives outer's (args, kwargs): never follow __wrapped__.
    assert Binder(outer).names == ("args", "kwargs")
    assert Binder(outer).bind(None, (1,), {}) == {"args": (1,), "kwargs": {}}


def test_builtins_without_a_signature_read_args_and_kwargs() -> None:
    binder = Binder(dict.fromkeys) if _no_signature(dict.fromkeys) else Binder(_NoSig())
    assert binder.names == ("args", "kwargs")
    assert binder.bind(None, (1, 2), {"k": 3}) == {"args": (1, 2), "kwargs": {"k": 3}}


class _NoSig:
    @property
    def __signature__(self) -> inspect.Signature:
        raise ValueError("no signature")

    def __call__(self, *args: object) -> None: ...


def _no_signature(func: Any) -> bool:
    try:
        inspect.signature(func, follow_wrapped=False)
    except (TypeError, ValueError):
        return True
    return False


def test_call_arguments_identity_and_repr() -> None:
    def f(a: int, b: int = 2) -> int:
        return a

    call = Call(f, (1,), {}, result=1)
    assert call.arguments == {"a": 1, "b": 2}
    assert call.arguments == {"a": 1, "b": 2}  # the lazily built binder is reused
    assert (call.result, call.error) == (1, None)
    assert repr(call).endswith("f ok>")
    assert repr(call).startswith("<Call ")
    failed = Call(f, (1,), {}, error=KeyError("k"))
    assert repr(failed).endswith(" error=KeyError>")
    assert call.identity == Identity()
    with identify("c"):
        assert call.identity.customer_id == "c"
    bound = Call(Shop.method, (1,), {}, instance=Shop())
    assert bound.arguments["a"] == 1
    assert isinstance(bound.arguments["self"], Shop)
    assert "partial" in repr(Call(_Partialish(), (), {}))


class _Partialish:
    def __repr__(self) -> str:
        return "partial"

    def __call__(self) -> None: ...


def test_var_positional_method_seen_by_a_resolver_as_python_sees_it() -> None:
    from gbtrack import InMemorySender, Tracker, literal

    sender = InMemorySender()
    tracker = Tracker(sender)

    class Basket:
        @tracker.track(
            "e", customer_id=literal("c"), metadata={"n": lambda call: len(call.arguments["items"])}
        )
        def add(*items: object) -> int:
            return len(items)

    assert Basket().add(1, 2) == 3
    assert sender.events[0].metadata == {"n": 3}
