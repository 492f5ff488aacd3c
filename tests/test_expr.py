"""The path language: parsing, errors, evaluation."""

from __future__ import annotations

from collections import OrderedDict
from types import MappingProxyType, SimpleNamespace

import pytest

from gbtrack import ExpressionError, literal
from gbtrack._expr import ABSENT, INDEX, KEY, MISSING, NAME, compile_steps, evaluate, parse


@pytest.mark.parametrize(
    ("text", "root", "steps"),
    [
        ("result", "result", ()),
        ("customer.id", "customer", ((NAME, "id"),)),
        ("result.items[0]", "result", ((NAME, "items"), (INDEX, 0))),
        ("x[-1]", "x", ((INDEX, -1),)),
        ("x['a b']", "x", ((KEY, "a b"),)),
        ('x["_id"].y', "x", ((KEY, "_id"), (NAME, "y"))),
        (
            "a.b_2.C3[10]['k'].z",
            "a",
            ((NAME, "b_2"), (NAME, "C3"), (INDEX, 10), (KEY, "k"), (NAME, "z")),
        ),
    ],
)
def test_parse(text: str, root: str, steps: tuple[object, ...]) -> None:
    path = parse(text)
    assert (path.text, path.root, path.steps) == (text, root, steps)
    assert repr(path) == f"Path({text!r})"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty expression"),
        ("1abc", "expected a name"),
        ("a.", "expected a name after '.'"),
        ("a..b", "expected a name after '.'"),
        ("a[", "expected an integer or a quoted key"),
        ("a[x]", "expected an integer or a quoted key"),
        ("a[1", "expected ']'"),
        ("a['k'", "expected ']'"),
        ("a['k]", "unterminated string"),
        ("a['k\\n']", "escapes are not supported"),
        ("a b", "unexpected ' '"),
        ("a()", "unexpected '('"),
        ("a + 1", "unexpected ' '"),
        ("__import__('os')", "starts with an underscore"),
        ("_private", "starts with an underscore"),
        ("a._b", "starts with an underscore"),
        ("a.__class__.__mro__", "starts with an underscore"),
    ],
)
def test_parse_errors(text: str, why: str) -> None:
    with pytest.raises(ExpressionError, match="invalid expression") as info:
        parse(text, function="mod.func")
    message = str(info.value)
    assert why in message
    assert "mod.func" in message
    assert info.value.expression == text
    assert info.value.function == "mod.func"


def test_parse_refuses_non_strings() -> None:
    with pytest.raises(ExpressionError, match="must be a string, got int"):
        parse(3)  # type: ignore[arg-type]


class Obj:
    def __init__(self, **kw: object) -> None:
        self.__dict__.update(kw)


def test_evaluate_attributes_keys_indexes() -> None:
    data = Obj(items=[{"sku": "A"}, {"sku": "B"}], meta=MappingProxyType({"k": 1}))
    assert evaluate(data, parse("r.items[0]['sku']").steps) == "A"
    assert evaluate(data, parse("r.items[-1].sku").steps) == "B"  # .name on a mapping: key
    assert evaluate(data, parse("r.meta.k").steps) == 1
    assert evaluate(OrderedDict(a=SimpleNamespace(b=2)), parse("r.a.b").steps) == 2
    assert evaluate((1, 2, 3), parse("r[1]").steps) == 2
    assert evaluate("abc", parse("r[0]").steps) == "a"


@pytest.mark.parametrize("text", ["r.none.x", "r.none", "r.none[0]", "r.none['k']"])
def test_evaluate_none_on_the_way_is_missing(text: str) -> None:
    data = Obj(items=[{"sku": "A"}], none=None, num=3)
    assert evaluate(data, parse(text).steps) is MISSING


@pytest.mark.parametrize(
    "text",
    [
        "r.missing",
        "r.items[5]",
        "r.items[0].nope",
        "r['x']",
        "r.items['k']",
        "r.num[0]",
        "r.num.real.x",
    ],
)
def test_evaluate_nothing_found_on_a_value_is_absent(text: str) -> None:
    # Not None on the way, yet nothing there: a typo the caller counts (stats.missing).
    data = Obj(items=[{"sku": "A"}], none=None, num=3)
    assert evaluate(data, parse(text).steps) is ABSENT
    assert compile_steps(parse(text).steps)(data) is ABSENT


def test_evaluate_none_root_and_no_steps() -> None:
    assert evaluate(None, ()) is MISSING
    assert evaluate(None, parse("r.x").steps) is MISSING
    assert evaluate(0, ()) == 0


def test_evaluate_propagates_real_errors() -> None:
    class Boom:
        @property
        def value(self) -> int:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        evaluate(Boom(), parse("r.value").steps)


def test_missing_is_falsy_singleton() -> None:
    assert not MISSING
    assert repr(MISSING) == "MISSING"
    assert type(MISSING)() is MISSING


def test_literal() -> None:
    value = literal("web")
    assert value == "web"
    assert isinstance(value, str)
    assert repr(value) == "literal('web')"


def test_path_evaluate_and_quoted_key_on_mapping() -> None:
    path = parse("r['k'].v")
    assert path.evaluate({"k": {"v": 1}}) == 1
    assert path.evaluate({"other": 1}) is ABSENT
    assert path.evaluate(SimpleNamespace(k=1)) is ABSENT  # quoted keys never read attributes
