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


# --- gaps found by mutation testing ------------------------------------------------------------
def test_absent_is_falsy_singleton() -> None:
    # `when=` relies on it: a path that finds nothing must not count as true.
    assert not ABSENT
    assert bool(ABSENT) is False
    assert repr(ABSENT) == "ABSENT"
    assert type(ABSENT)() is ABSENT
    assert ABSENT is not MISSING


def test_a_quoted_key_never_reads_an_attribute() -> None:
    # Only a trailing step shows it: `r['k'].v` on an object ends ABSENT either way.
    path = parse("r['k']")
    assert path.evaluate(SimpleNamespace(k=1)) is ABSENT
    assert path.evaluate({"k": 1}) == 1
    assert compile_steps(path.steps)(SimpleNamespace(k=1)) is ABSENT
    # Underscore keys are allowed in quotes precisely because they never reach getattr.
    assert parse("r['__class__']").evaluate(SimpleNamespace()) is ABSENT
    assert parse("r['__class__']").evaluate({"__class__": "x"}) == "x"


def test_an_index_on_a_mapping_or_a_key_on_a_sequence_is_absent() -> None:
    assert evaluate({0: "zero"}, parse("r[0]").steps) is ABSENT
    assert evaluate(OrderedDict({0: "zero"}), parse("r[0]").steps) is ABSENT
    assert evaluate(["k"], parse("r['k']").steps) is ABSENT
    assert evaluate(("k",), parse("r['k']").steps) is ABSENT
    # .name on a sequence is an attribute read, not a membership test.
    assert evaluate(("a", "b"), parse("r.count").steps) == ("a", "b").count


def test_one_index_or_key_step_is_compiled_too() -> None:
    assert compile_steps(parse("r[0]").steps)([5, 6]) == 5
    assert compile_steps(parse("r[-1]").steps)((5, 6)) == 6
    assert compile_steps(parse("r['k']").steps)({"k": 7}) == 7
    assert compile_steps(parse("r[0]").steps)([None]) is MISSING
    assert compile_steps(parse("r[3]").steps)([5]) is ABSENT
    assert compile_steps(parse("r.k").steps)({"k": 8}) == 8


def test_index_digits_limit_is_exactly_eighteen() -> None:
    assert parse("r[" + "9" * 18 + "]").steps == ((INDEX, int("9" * 18)),)
    assert parse("r[-" + "9" * 18 + "]").steps == ((INDEX, -int("9" * 18)),)
    for text in ("r[" + "9" * 19 + "]", "r[-" + "1" * 19 + "]"):
        with pytest.raises(ExpressionError, match="19 digits; at most 18"):
            parse(text)


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("", 0),
        ("1abc", 0),
        ("_root", 0),
        ("a._b", 2),
        ("a.", 2),
        ("a..b", 2),
        ("a.b._c", 4),
        ("a[x]", 2),
        ("a b", 1),
        ("a['k]", 2),
        ("co_names", 0),
    ],
)
def test_error_points_at_the_position(text: str, position: int) -> None:
    with pytest.raises(ExpressionError) as info:
        parse(text)
    message = str(info.value)
    assert f"at position {position}\n" in message
    assert message.endswith(f"\n  {text}\n  " + " " * position + "^")
    assert message.startswith(f"invalid expression {text!r}: ")  # no function named


# Every name of the deny-list, spelled out (importing the set would test it against itself).
INTERNAL_NAMES = (
    "gi_frame", "gi_code", "gi_yieldfrom",
    "cr_frame", "cr_code", "cr_await", "cr_origin",
    "ag_frame", "ag_code", "ag_await",
    "f_globals", "f_locals", "f_builtins", "f_back", "f_code", "f_trace",
    "tb_frame", "tb_next",
    "func_globals", "func_code", "func_closure", "func_dict", "func_defaults",
    "im_func", "im_self", "im_class",
    "co_code", "co_consts", "co_anything",
)  # fmt: skip


@pytest.mark.parametrize("name", INTERNAL_NAMES)
@pytest.mark.parametrize("template", ["{}", "r.{}", "r[0].{}.x"])
def test_every_internal_name_is_refused(name: str, template: str) -> None:
    with pytest.raises(ExpressionError, match="leads to interpreter internals"):
        parse(template.format(name))


@pytest.mark.parametrize("text", ["r.gi_running", "r.f_lineno", "r.code", "r.cr", "r.im"])
def test_neighbouring_names_are_allowed(text: str) -> None:
    assert parse(text).root == "r"


def test_a_refused_type_raises_refused_error_for_every_step_kind() -> None:
    import types

    from gbtrack._expr import RefusedError, read_name

    def func() -> None: ...

    for value in (types, func, print, (lambda: None).__code__):
        for text in ("r.x", "r[0]", "r['k']"):
            with pytest.raises(RefusedError, match="refusing to read"):
                evaluate(value, parse(text).steps)
        with pytest.raises(RefusedError):
            read_name(value, "x")
        with pytest.raises(RefusedError):
            compile_steps(parse("r[0]").steps)(value)


def test_kind_cache_remembers_types_and_stays_bounded() -> None:
    from gbtrack._expr import _KIND_CACHE, read_name

    class Remembered:
        pass

    assert read_name(Remembered(), "x") is ABSENT
    assert _KIND_CACHE.get(Remembered) is not None
    # Classes made on the fly (one per call, say) must not grow the cache without bound.
    # Filled to the bound with stand-in keys first: making 5,000 classes took seconds.
    stand_ins = [object() for _ in range(4096 - len(_KIND_CACHE) - 10)]
    _KIND_CACHE.update(dict.fromkeys(stand_ins, 0))
    try:
        for _ in range(50):
            read_name(type("OnTheFly", (), {"x": 1})(), "x")
        assert len(_KIND_CACHE) == 4096  # ten more remembered, then no more
    finally:
        for key in stand_ins:
            _KIND_CACHE.pop(key, None)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "r[0]"),
        (None, "r['k']"),
        ([None], "r[0][0]"),
        ([None], "r[0]['k']"),
        ({"k": None}, "r['k'][0]"),
        ({"k": None}, "r['k'].x"),
    ],
)
def test_none_reached_by_an_item_step_is_missing(value: object, text: str) -> None:
    # An item step hands back None itself (a .name step already turns it into MISSING).
    assert evaluate(value, parse(text).steps) is MISSING
    assert compile_steps(parse(text).steps)(value) is MISSING


@pytest.mark.parametrize(
    ("text", "why", "position"),
    [
        ("a[1x]", "expected ']'", 3),
        ("a['k'x]", "expected ']'", 5),
        ("a[X]", "expected an integer or a quoted key", 2),
        ("a[1]]", "unexpected ']'", 4),
    ],
)
def test_parse_errors_inside_brackets(text: str, why: str, position: int) -> None:
    with pytest.raises(ExpressionError) as info:
        parse(text)
    assert f"{text!r}: {why} at position {position}\n" in str(info.value)


def test_empty_quoted_keys() -> None:
    assert parse("a['']").steps == ((KEY, ""),)
    assert parse('a[""].b').steps == ((KEY, ""), (NAME, "b"))
    assert parse("a['']").evaluate({"": 1}) == 1
