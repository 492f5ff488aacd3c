"""@track on instance methods, classmethods and staticmethods, in either decorator order."""

from __future__ import annotations

import inspect
from typing import Any

from tests._paths import call_path  # noqa: F401 - runs every test on both call paths

from gbtrack import InMemorySender, Tracker


def make_class(tracker: Tracker) -> Any:
    class Shop:
        tenant = "t-1"

        def __init__(self, owner: str) -> None:
            self.owner = owner

        @tracker.track("method", customer_id="self.owner", metadata={"x": "x", "y": "y"})
        def method(self, x: int, y: int = 2) -> int:
            return x + y

        @tracker.track("cls_outer", customer_id="cls.tenant", metadata={"x": "x"})
        @classmethod
        def cls_outer(cls, x: int) -> int:
            return x

        @classmethod
        @tracker.track("cls_inner", customer_id="cls.tenant", metadata={"x": "x"})
        def cls_inner(cls, x: int) -> int:
            return x

        @tracker.track("static_outer", customer_id="who", metadata={"x": "x"})
        @staticmethod
        def static_outer(who: str, x: int) -> int:
            return x

        @staticmethod
        @tracker.track("static_inner", customer_id="who", metadata={"x": "x"})
        def static_inner(who: str, x: int) -> int:
            return x

    return Shop


def test_instance_method_via_instance_and_class(tracker: Tracker, sender: InMemorySender) -> None:
    shop_cls = make_class(tracker)
    shop = shop_cls("o-1")
    assert shop.method(1) == 3
    assert shop_cls.method(shop, 1, y=5) == 6
    assert shop.method(x=4, y=1) == 5
    assert [(e.customer_id, e.metadata) for e in sender.events] == [
        ("o-1", {"x": 1, "y": 2}),
        ("o-1", {"x": 1, "y": 5}),
        ("o-1", {"x": 4, "y": 1}),
    ]


def test_classmethods_both_orders(tracker: Tracker, sender: InMemorySender) -> None:
    shop_cls = make_class(tracker)
    assert shop_cls.cls_outer(1) == 1
    assert shop_cls("o").cls_outer(2) == 2
    assert shop_cls.cls_inner(3) == 3
    assert shop_cls("o").cls_inner(x=4) == 4
    assert [(e.name, e.customer_id, e.metadata["x"]) for e in sender.events] == [
        ("cls_outer", "t-1", 1),
        ("cls_outer", "t-1", 2),
        ("cls_inner", "t-1", 3),
        ("cls_inner", "t-1", 4),
    ]


def test_subclass_cls_is_the_subclass(tracker: Tracker, sender: InMemorySender) -> None:
    shop_cls = make_class(tracker)

    class Branch(shop_cls):  # type: ignore[misc, valid-type]
        tenant = "t-2"

    Branch.cls_outer(1)
    Branch.cls_inner(1)
    assert [e.customer_id for e in sender.events] == ["t-2", "t-2"]


def test_staticmethods_both_orders(tracker: Tracker, sender: InMemorySender) -> None:
    shop_cls = make_class(tracker)
    shop = shop_cls("o")
    assert shop_cls.static_outer("a", 1) == 1
    assert shop.static_outer("b", 2) == 2
    assert shop_cls.static_inner("c", 3) == 3
    assert shop.static_inner(who="d", x=4) == 4
    assert [(e.customer_id, e.metadata["x"]) for e in sender.events] == [
        ("a", 1),
        ("b", 2),
        ("c", 3),
        ("d", 4),
    ]


def test_signatures_and_names_kept(tracker: Tracker) -> None:
    shop_cls = make_class(tracker)
    assert shop_cls.method.__name__ == "method"
    assert str(inspect.signature(shop_cls.method)) == "(self, x: 'int', y: 'int' = 2) -> 'int'"
    assert str(inspect.signature(shop_cls("o").method)) == "(x: 'int', y: 'int' = 2) -> 'int'"
    assert str(inspect.signature(shop_cls.cls_outer)) == "(x: 'int') -> 'int'"
    assert str(inspect.signature(shop_cls.static_inner)) == "(who: 'str', x: 'int') -> 'int'"


def test_function_assigned_as_method(tracker: Tracker, sender: InMemorySender) -> None:
    @tracker.track("e", customer_id="self.name", metadata={"n": "n"})
    def describe(self: Any, n: int) -> int:
        return n

    class Thing:
        name = "thing-1"
        run = describe

    assert Thing().run(5) == 5
    assert describe(Thing(), 6) == 6
    assert [(e.customer_id, e.metadata) for e in sender.events] == [
        ("thing-1", {"n": 5}),
        ("thing-1", {"n": 6}),
    ]


def test_stacked_on_method(tracker: Tracker, sender: InMemorySender) -> None:
    class Svc:
        who = "w"

        @tracker.track("a", customer_id="self.who", metadata={"v": "v"})
        @tracker.track("b", customer_id="self.who", metadata={"v": "v"})
        def run(self, v: int) -> int:
            return v

    assert Svc().run(3) == 3
    assert [(e.name, e.metadata) for e in sender.events] == [("b", {"v": 3}), ("a", {"v": 3})]


def test_bound_method_and_stacked_classmethod(tracker: Tracker, sender: InMemorySender) -> None:
    class Account:
        tenant = "T"

        def __init__(self) -> None:
            self.owner = "W"

        def touch(self, x: str) -> str:
            return x

        @tracker.track("outer", customer_id="cls.tenant", metadata={"x": "x"})
        @tracker.track("inner", customer_id="cls.tenant", metadata={"x": "x"})
        @classmethod
        def make(cls, x: int) -> int:
            return x

    account = Account()
    bound = tracker.track("bound", customer_id="self.owner", metadata={"x": "x"})(account.touch)
    assert bound("b") == "b"
    assert Account.make(5) == 5
    assert Account().make(6) == 6
    assert [(e.name, e.customer_id, e.metadata) for e in sender.events] == [
        ("bound", "W", {"x": "b"}),
        ("inner", "T", {"x": 5}),
        ("outer", "T", {"x": 5}),
        ("inner", "T", {"x": 6}),
        ("outer", "T", {"x": 6}),
    ]
