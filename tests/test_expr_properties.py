"""Property tests: the path language never evaluates code or reaches underscore names."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gbtrack import ExpressionError
from gbtrack._expr import ABSENT, INDEX, KEY, MISSING, NAME, compile_steps, evaluate, parse

FRAGMENTS = st.sampled_from(
    [
        "a",
        "b",
        "result",
        "x1",
        "_",
        "__",
        "__class__",
        "__globals__",
        "_private",
        ".",
        "[",
        "]",
        "'",
        '"',
        "0",
        "-1",
        "42",
        "(",
        ")",
        " ",
        "+",
        "import",
        "os",
        "system",
        "\\",
        "lambda",
        ":",
        ",",
        "__import__",
        "eval",
        "*",
        "{",
        "}",
        "é",
        "\n",
    ]
)
EXPRESSIONS = st.one_of(st.text(max_size=40), st.lists(FRAGMENTS, max_size=12).map("".join))


@settings(max_examples=600, deadline=None)
@given(EXPRESSIONS)
def test_every_string_compiles_to_a_safe_chain_or_is_refused(text: str) -> None:
    try:
        path = parse(text)
    except ExpressionError as exc:
        error = exc
    else:
        error = None
    if error is not None:
        assert error.expression == text
        return
    assert path.root
    assert not path.root.startswith("_")
    assert path.root.isidentifier()
    for kind, arg in path.steps:
        assert kind in (NAME, INDEX, KEY)
        if kind == NAME:
            assert isinstance(arg, str)
            assert arg.isidentifier()
            assert not arg.startswith("_")
        elif kind == INDEX:
            assert type(arg) is int
        else:
            assert isinstance(arg, str)


class Spy:
    """Records every attribute read and item read; fails the test if anything is called."""

    def __init__(self, log: list[tuple[str, object]]) -> None:
        object.__setattr__(self, "_log", log)

    def __getattribute__(self, name: str) -> Any:
        log = object.__getattribute__(self, "_log")
        if name == "__class__":  # isinstance() reads it; harmless
            return object.__getattribute__(self, name)
        log.append(("getattr", name))
        return Spy(log)

    def __getitem__(self, key: object) -> Any:
        object.__getattribute__(self, "_log").append(("getitem", key))
        return Spy(object.__getattribute__(self, "_log"))

    def __call__(self, *args: object, **kwargs: object) -> Any:
        object.__getattribute__(self, "_log").append(("CALL", args))
        raise AssertionError("evaluation called something")


@settings(max_examples=400, deadline=None)
@given(EXPRESSIONS)
def test_evaluation_only_reads_public_attributes(text: str) -> None:
    try:
        path = parse(text)
    except ExpressionError:
        return
    log: list[tuple[str, object]] = []
    evaluate(Spy(log), path.steps)
    assert all(kind != "CALL" for kind, _ in log)
    for kind, name in log:
        assert kind == "getattr"  # a Spy is neither a Mapping nor a Sequence
        assert isinstance(name, str)
        assert not name.startswith("_")
    expected = [("getattr", arg) for kind, arg in path.steps if kind == NAME]
    assert log == expected[: len(log)]


JSON = st.recursive(
    st.none() | st.integers() | st.text(max_size=5) | st.booleans(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(["a", "b", "_id", "k"]), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(JSON, st.lists(FRAGMENTS, max_size=8).map("".join))
def test_evaluation_on_data_never_raises(data: object, text: str) -> None:
    try:
        path = parse("r" + text)
    except ExpressionError:
        return
    value = evaluate(data, path.steps)
    assert value is not None
    assert compile_steps(path.steps)(data) is value
    if value is not MISSING and value is not ABSENT:
        assert isinstance(value, (int, str, bool, list, dict))
