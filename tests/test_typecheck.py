"""_typecheck: a path's steps checked against annotations, at decoration time."""

from __future__ import annotations

import collections.abc as cabc
import dataclasses
import datetime as dt
import decimal
import enum
import functools
import importlib.util
import sys
import textwrap
import time
import types
import uuid
from collections.abc import AsyncIterator, Awaitable, Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import (
    Annotated,
    Any,
    ClassVar,
    ForwardRef,
    Generic,
    Literal,
    NamedTuple,
    NewType,
    Optional,
    TypedDict,
    TypeVar,
    Union,
)

import attrs
import pytest
from pydantic import BaseModel, ConfigDict, Field, computed_field, create_model
from sqlalchemy import ForeignKey, select
from sqlalchemy.ext.associationproxy import AssociationProxy, association_proxy
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    WriteOnlyMapped,
    column_property,
    mapped_column,
    relationship,
)
from typing_extensions import NotRequired, Required

from gbtrack._expr import parse
from gbtrack._typecheck import (
    Deferred,
    PathTypeError,
    check_leaf,
    check_steps,
    param_types,
    return_type,
    type_name,
    yield_type,
)

NoneType = type(None)


def walk(tp: object, text: str, leaf: Any = "any", globalns: dict[str, Any] | None = None) -> Any:
    return check_steps(tp, parse(text).steps, leaf=leaf, globalns=globalns)


def fails(tp: object, text: str, leaf: Any = "any") -> PathTypeError:
    with pytest.raises(PathTypeError) as info:
        walk(tp, text, leaf)
    return info.value


# ----------------------------------------------------------------------------- the types


class Status(enum.Enum):
    NEW = "new"
    PAID = "paid"


class Tier(enum.IntEnum):
    GOLD = 1


@dataclasses.dataclass
class Line:
    sku: str
    price: decimal.Decimal
    qty: int = 1
    tags: list[str] = dataclasses.field(default_factory=list)
    LIMIT: ClassVar[int] = 10

    @property
    def subtotal(self) -> float:
        return float(self.price) * self.qty

    @functools.cached_property
    def label(self) -> str:
        return self.sku

    def describe(self) -> str:
        return self.sku


class Customer(BaseModel):
    id: uuid.UUID
    email: str | None = None
    born: dt.date | None = None
    customer_ref: str = Field(default="", alias="customerRef")


class Order(BaseModel):
    id: str
    customer: Customer
    lines: list[Line]
    status: Status
    total: decimal.Decimal
    extra: dict[str, int] = {}
    pair: tuple[int, str] = (1, "a")
    history: tuple[Status, ...] = ()
    placed_at: dt.datetime | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def line_count(self) -> int:
        return len(self.lines)

    @property
    def first_sku(self) -> str:
        return self.lines[0].sku


class Loose(BaseModel):
    model_config = ConfigDict(extra="allow")
    known: int = 0


@attrs.define
class Coupon:
    code: str
    percent: float
    owner: Customer | None = None


@attrs.define
class Untyped:
    a = attrs.field()
    b = attrs.field(type=int)


class Point(NamedTuple):
    x: int
    label: str


class Address(TypedDict):
    city: str
    zip: NotRequired[str]


class Partial(TypedDict, total=False):
    note: str
    must: Required[int]


class Plain:
    kind: str
    VERSION = 3

    def __init__(self, n: int) -> None:
        self.n = n
        self.kind = "plain"

    @property
    def doubled(self) -> int:
        return self.n * 2

    def method(self) -> int:
        return self.n


class Dynamic:
    def __getattr__(self, name: str) -> object:
        return name


T = TypeVar("T")


@dataclasses.dataclass
class Box(Generic[T]):
    item: T
    items: list[T] = dataclasses.field(default_factory=list)


class IntBox(Box[int]):
    pass


class PBox(BaseModel, Generic[T]):
    item: T


Money = NewType("Money", decimal.Decimal)
Pending = NewType("Pending", Line)


# ----------------------------------------------------------------------------- pydantic


def test_pydantic_fields_and_nesting() -> None:
    assert walk(Order, "result.id", "metadata") is str
    assert walk(Order, "result.customer.id", "identity") is uuid.UUID
    assert walk(Order, "result.lines[0].sku", "metadata") is str
    assert walk(Order, "result.total", "metadata") is decimal.Decimal


def test_pydantic_unknown_field_suggests_the_nearest() -> None:
    exc = fails(Order, "result.totl")
    assert str(exc) == "Order has no field 'totl'; did you mean 'total'?"
    assert exc.suggestions[0] == "total"
    assert exc.step == 0


def test_pydantic_no_close_name_lists_the_fields_sorted() -> None:
    message = str(fails(Customer, "c.xyzzy"))
    assert message == (
        "Customer has no field 'xyzzy'; its fields are: born, customer_ref, email, id"
    )


def test_pydantic_computed_field_and_property() -> None:
    assert walk(Order, "result.line_count", "metadata") is int
    assert walk(Order, "result.first_sku", "metadata") is str


def test_pydantic_alias_is_not_an_attribute() -> None:
    assert walk(Customer, "c.customer_ref", "metadata") is str
    exc = fails(Customer, "c.customerRef")
    assert "'customerRef' is the alias of the field 'customer_ref'" in str(exc)
    assert "did you mean 'customer_ref'?" in str(exc)
    assert exc.suggestions == ("customer_ref",)


def test_pydantic_methods_are_refused_and_machinery_hidden() -> None:
    assert "Order.model_dump is a method" in str(fails(Order, "result.model_dump"))
    assert "model_dump" not in str(fails(Order, "result.zzzzzz"))


def test_pydantic_extra_allow_is_open() -> None:
    assert walk(Loose, "x.anything.at.all", "metadata") is Any


def test_pydantic_generic_model() -> None:
    assert walk(PBox[int], "b.item", "metadata") is int
    fails(PBox[Line], "b.item", "metadata")
    assert walk(PBox[Line], "b.item.sku", "metadata") is str


def test_many_pydantic_models_made_on_the_fly() -> None:
    model = create_model("Made", amount=(float, ...), tags=(list[str], ...))
    assert walk(model, "m.amount", "metadata") is float
    assert "list[str]" in str(fails(model, "m.tags", "metadata"))


# ----------------------------------------------------------------------------- dataclass, attrs


def test_dataclass_fields_property_cached_property_classvar() -> None:
    assert walk(Line, "l.sku", "metadata") is str
    assert walk(Line, "l.subtotal", "metadata") is float
    assert walk(Line, "l.label", "metadata") is str
    assert walk(Line, "l.LIMIT", "metadata") is int
    assert str(fails(Line, "l.skus")) == "Line has no field 'skus'; did you mean 'sku'?"


def test_dataclass_method_is_refused() -> None:
    message = str(fails(Line, "l.describe"))
    assert message.startswith("Line.describe is a method; a path reads values and never calls")


def test_dataclass_key_step_is_refused() -> None:
    message = str(fails(Line, "l['sku']"))
    assert message == (
        "Line (a dataclass) is not a mapping; ['sku'] reads mapping keys only; "
        "read the attribute with .sku"
    )


def test_attrs_fields_annotated_and_not() -> None:
    assert walk(Coupon, "c.code", "metadata") is str
    assert walk(Coupon, "c.owner.email", "text") == Optional[str]  # noqa: UP045
    assert "did you mean 'percent'?" in str(fails(Coupon, "c.percnt"))
    assert walk(Untyped, "u.a", "metadata") is Any
    assert walk(Untyped, "u.b", "metadata") is int
    assert "Untyped has no field 'c'" in str(fails(Untyped, "u.c"))


# ------------------------------------------------------------------ NamedTuple, TypedDict


def test_namedtuple_names_and_indexes() -> None:
    assert walk(Point, "p.x", "metadata") is int
    assert walk(Point, "p[1]", "metadata") is str
    assert walk(Point, "p[-2]", "metadata") is int
    assert "index [2] is out of range" in str(fails(Point, "p[2]"))
    assert "did you mean 'label'?" in str(fails(Point, "p.lable"))
    assert "not a mapping" in str(fails(Point, "p['x']"))


def test_typeddict_required_and_optional_keys() -> None:
    assert walk(Address, "a.city", "metadata") is str
    assert walk(Address, "a['city']", "metadata") is str
    assert walk(Address, "a.zip", "metadata") == Optional[str]  # noqa: UP045
    assert walk(Partial, "p.note") == Optional[str]  # noqa: UP045
    assert walk(Partial, "p.must") is int  # Required[] wins over total=False
    exc = fails(Address, "a.citty")
    assert str(exc) == "Address has no key 'citty'; did you mean 'city'?"
    assert "indexes sequences only" in str(fails(Address, "a[0]"))


# ----------------------------------------------------------------------------- plain classes


def test_plain_class_annotations_properties_and_self_assignments() -> None:
    assert walk(Plain, "p.kind", "metadata") is str
    assert walk(Plain, "p.doubled", "metadata") is int
    assert walk(Plain, "p.n", "metadata") is Any  # assigned in __init__, unannotated
    assert walk(Plain, "p.VERSION", "metadata") is Any  # class attribute, unannotated
    assert "Plain.method is a method" in str(fails(Plain, "p.method"))
    assert str(fails(Plain, "p.knd")) == "Plain has no attribute 'knd'; did you mean 'kind'?"
    assert "its attributes are: VERSION, doubled, kind, n" in str(fails(Plain, "p.qqqqq"))


def test_class_with_getattr_is_unknown() -> None:
    assert walk(Dynamic, "d.whatever.else", "metadata") is Any


class Bag:
    pass


class Settable:
    label: str

    def __init__(self, **values: object) -> None:
        for key, value in values.items():
            setattr(self, key, value)


class PaymentError(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def test_classes_whose_attributes_cannot_be_known_are_open() -> None:
    assert walk(types.SimpleNamespace, "ns.anything", "metadata") is Any
    assert walk(Bag, "b.anything", "metadata") is Any  # declares nothing
    assert walk(Settable, "s.anything", "metadata") is Any  # setattr() by name


def test_exception_subclass_attributes() -> None:
    assert walk(PaymentError, "error.code", "metadata") is Any
    assert walk(PaymentError, "error.args[0]") is Any
    assert "did you mean 'code'?" in str(fails(PaymentError, "error.cod"))


D = TypeVar("D")


class Column(Generic[D]):
    """A descriptor like SQLAlchemy's Mapped[T]: on an instance, it reads as T."""

    def __get__(self, instance: object, owner: type) -> D:
        raise NotImplementedError


class Row:
    id: Column[int]
    name: Column[str | None]


def test_generic_descriptor_reads_as_its_argument() -> None:
    assert walk(Row, "r.id", "identity") is int
    assert walk(Row, "r.name", "text") == Optional[str]  # noqa: UP045


def test_builtin_scalars() -> None:
    assert walk(str, "s[0]", "metadata") is str
    assert "str.upper is a method" in str(fails(str, "s.upper"))
    assert walk(dt.date, "d.year") is Any  # a C descriptor: exists, type unknown
    assert "date has no attribute 'yeer'; did you mean 'year'?" in str(fails(dt.date, "d.yeer"))


def test_enum_name_and_value() -> None:
    assert walk(Status, "s.value", "metadata") is str
    assert walk(Status, "s.name", "metadata") is str
    assert walk(Tier, "t.value", "identity") is int


# ----------------------------------------------------------------------------- unions


def test_optional_steps_through_the_member() -> None:
    assert walk(Optional[Line], "l.sku", "metadata") is str  # noqa: UP045
    assert walk(Order, "result.customer.email", "text") == Optional[str]  # noqa: UP045


def test_union_step_must_exist_on_every_member() -> None:
    assert walk(list[Line] | tuple[Line, ...] | None, "x[0].sku", "metadata") is str
    exc = fails(Union[Line, Coupon, None], "x.sku")  # noqa: UP007
    assert str(exc) == (
        "Coupon has no field 'sku'; its fields are: code, owner, percent "
        "(the value is Line | Coupon | None)"
    )


def test_union_leaf_is_the_union_of_leaves() -> None:
    class A(BaseModel):
        v: int

    class B(BaseModel):
        v: str

    assert walk(A | B, "x.v", "metadata") == Union[int, str]  # noqa: UP007
    assert walk(A | B | None, "x.v", "identity") == Union[int, str]  # noqa: UP007


def test_always_none_is_an_error() -> None:
    assert "always None" in str(fails(NoneType, "x.y"))
    assert "always None" in str(fails(NoneType, "x", "metadata"))


# ----------------------------------------------------------------------------- wrappers


def test_annotated_newtype_and_literal_are_seen_through() -> None:
    assert walk(Annotated[Line, "doc"], "l.qty", "identity") is int
    assert walk(Money, "m", "metadata") is decimal.Decimal
    assert walk(Pending, "p.sku", "metadata") is str
    walk(Literal["a", "b"], "x", "metadata")
    walk(Literal[1, True], "x", "metadata")
    assert "str.upper is a method" in str(fails(Literal["a"], "x.upper"))


def test_bound_typevar_is_its_bound() -> None:
    bound = TypeVar("bound", bound=Line)
    assert walk(bound, "x.sku", "metadata") is str
    assert walk(TypeVar("free"), "x.sku", "metadata") is Any


# ----------------------------------------------------------------------------- sequences


def test_list_sequence_and_tuple_indexes() -> None:
    assert walk(list[Line], "xs[0].sku", "metadata") is str
    assert walk(Sequence[Line], "xs[-1].qty", "metadata") is int
    assert walk(tuple[int, str], "t[1]", "metadata") is str
    assert walk(tuple[Line, ...], "t[99].sku", "metadata") is str
    assert walk(Order, "result.history[3].value", "metadata") is str
    message = str(fails(tuple[int, str], "t[2]"))
    assert message == "tuple[int, str] has 2 items; the index [2] is out of range"
    assert "out of range" in str(fails(tuple[int, str], "t[-3]"))
    assert "out of range" in str(fails(tuple[()], "t[0]"))


def test_steps_that_do_not_fit_a_sequence() -> None:
    assert "list has no attribute 'sku'" in str(fails(list[Line], "xs.sku"))
    assert "not a mapping" in str(fails(list[Line], "xs['a']"))
    assert "not a sequence" in str(fails(set[int], "s[0]"))
    assert "not a sequence" in str(fails(Line, "l[0]"))


# ----------------------------------------------------------------------------- mappings


def test_mapping_name_and_key_steps_read_the_value() -> None:
    assert walk(dict[str, Line], "d.a.sku", "metadata") is str
    assert walk(Mapping[str, int], "m['order-id']", "metadata") is int
    assert walk(Order, "result.extra.points", "metadata") is int
    assert walk(dict, "d.a.b.c", "metadata") is Any


def test_mapping_index_is_refused() -> None:
    message = str(fails(dict[str, int], "d[0]"))
    assert message.startswith("dict[str, int] is a mapping; [0] indexes sequences only")


# ----------------------------------------------------------------------------- unknown


@pytest.mark.parametrize("root", [Any, object, cabc.Callable[[], int], type[Line]])
def test_unknown_types_stop_the_check(root: object) -> None:
    assert walk(root, "x.y[0]['z'].w", "metadata") is Any


def test_unannotated_parameter_is_unknown() -> None:
    def f(customer, n: int):  # type: ignore[no-untyped-def]
        return None

    hints = param_types(f)
    assert hints["customer"] is Any
    assert walk(hints["customer"], "customer.a.b", "metadata") is Any


# ----------------------------------------------------------------------------- generics


def test_generic_class_type_variables_are_substituted() -> None:
    assert walk(Box[str], "b.item", "metadata") is str
    assert walk(Box[Line], "b.items[0].sku", "metadata") is str
    assert walk(IntBox, "b.item", "identity") is int
    assert walk(Box, "b.item.anything", "metadata") is Any  # unparametrized: unknown
    assert "did you mean 'sku'?" in str(fails(Box[Line], "b.item.skuu"))


U = TypeVar("U")


@dataclasses.dataclass
class Pair(Box[U], Generic[U]):
    other: U | None = None


def test_generic_class_through_a_generic_subclass() -> None:
    assert walk(Pair[Line], "p.item.sku", "metadata") is str
    assert walk(Pair[int], "p.other", "metadata") == Optional[int]  # noqa: UP045


# ----------------------------------------------------------------------------- leaves


def test_metadata_leaf_accepts_converted_types() -> None:
    for tp in (
        str,
        int,
        float,
        bool,
        decimal.Decimal,
        Status,
        Tier,
        uuid.UUID,
        dt.date,
        dt.datetime,
        Optional[float],  # noqa: UP045
        Union[int, str, None],  # noqa: UP007
        Literal["a", 2, True],
        Money,
        Any,
        object,
    ):
        check_leaf(tp, "metadata")


@pytest.mark.parametrize(
    ("tp", "shown"),
    [
        (list[str], "list[str]"),
        (dict[str, int], "dict[str, int]"),
        (tuple[int, int], "tuple[int, int]"),
        (Sequence[str], "Sequence[str]"),
        (Customer, "Customer (a pydantic model)"),
        (Line, "Line (a dataclass)"),
        (Coupon, "Coupon (an attrs class)"),
        (Point, "Point (a NamedTuple)"),
        (Address, "Address (a TypedDict)"),
        (bytes, "bytes"),
        (Optional[list[int]], "list[int] (in list[int] | None)"),  # noqa: UP045
    ],
)
def test_metadata_leaf_refuses_non_values(tp: object, shown: str) -> None:
    with pytest.raises(PathTypeError) as info:
        check_leaf(tp, "metadata")
    assert str(info.value) == (
        f"the value is {shown}; Gameball accepts str, int, float or bool "
        "(Decimal, Enum, UUID, date and datetime are converted)"
    )


def test_metadata_leaf_through_a_path() -> None:
    exc = fails(Line, "l.tags", "metadata")
    assert "the value is list[str]" in str(exc)
    assert exc.step == 1  # past the last step: the leaf
    assert "Customer (a pydantic model)" in str(fails(Order, "result.customer", "metadata"))


def test_identity_leaf() -> None:
    for tp in (str, int, uuid.UUID, Optional[str], Tier, Literal["c-1"], Any):  # noqa: UP045
        check_leaf(tp, "identity")
    for tp in (float, bool, decimal.Decimal, Status, dt.date, Line):
        with pytest.raises(PathTypeError, match="a customer id must be a str, int or UUID"):
            check_leaf(tp, "identity")


def test_text_leaf() -> None:
    check_leaf(Optional[str], "text")  # noqa: UP045
    with pytest.raises(PathTypeError, match="it must be a str"):
        check_leaf(int, "text")


def test_supertypes_and_protocols_are_not_refused() -> None:
    import numbers
    from typing import Protocol

    class HasId(Protocol):
        id: str

    check_leaf(numbers.Real, "metadata")
    check_leaf(HasId, "metadata")
    with pytest.raises(PathTypeError):
        check_leaf(numbers.Real, "text")


def test_type_names() -> None:
    assert type_name(Optional[Line]) == "Line | None"  # noqa: UP045
    assert type_name(dict[str, list[Line]]) == "dict[str, list[Line]]"
    assert type_name(tuple[int, ...]) == "tuple[int, ...]"
    assert type_name(Literal["a", 1]) == "Literal['a', 1]"
    assert type_name(NoneType) == "None"


# ----------------------------------------------------------------------------- functions


def test_param_types_resolves_and_wraps_star_parameters() -> None:
    def f(customer: Customer, *lines: Line, n: int = 0, **extra: float) -> None: ...

    hints = param_types(f)
    assert hints == {
        "customer": Customer,
        "lines": tuple[Line, ...],
        "n": int,
        "extra": dict[str, float],
    }
    assert walk(hints["lines"], "lines[0].sku", "metadata") is str
    assert walk(hints["extra"], "extra.tip", "metadata") is float


def test_param_types_of_methods() -> None:
    class Service:
        def plain(self, order: Order) -> None: ...

        @classmethod
        def klass(cls, order: Order) -> None: ...

        @staticmethod
        def static(order: Order) -> None: ...

    assert param_types(Service.__dict__["klass"])["order"] is Order
    assert param_types(Service.__dict__["static"])["order"] is Order
    assert param_types(Service().plain)["order"] is Order
    assert param_types(Service.plain)["self"] is Any


def test_return_type_of_the_four_kinds() -> None:
    def plain() -> Order: ...

    async def coro() -> Order: ...

    def gen() -> Generator[int, None, Order]:
        yield 1
        return Order.model_construct()

    def iterator() -> Iterator[Line]:
        yield Line("a", decimal.Decimal(1))

    async def agen() -> AsyncIterator[Line]:
        yield Line("a", decimal.Decimal(1))

    def bare(): ...  # type: ignore[no-untyped-def]

    assert return_type(plain) is Order
    assert return_type(coro) is Order
    assert return_type(gen) is Order
    assert return_type(iterator) is NoneType
    assert return_type(agen) is NoneType
    assert return_type(bare) is Any
    assert yield_type(gen) is int
    assert yield_type(iterator) is Line
    assert yield_type(agen) is Line
    assert yield_type(plain) is Any
    assert "always None" in str(fails(return_type(iterator), "result.sku"))


def test_functions_wrapped_by_wrapt() -> None:
    import wrapt

    @wrapt.decorator
    def passthrough(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        return wrapped(*args, **kwargs)

    @passthrough
    def checkout(customer: Customer, n: int = 1) -> Order: ...

    @passthrough
    def stream() -> Generator[int, None, Order]:
        yield 1
        return Order.model_construct()

    assert param_types(checkout) == {"customer": Customer, "n": int}
    assert return_type(checkout) is Order
    assert return_type(stream) is Order


@pytest.mark.skipif(sys.version_info < (3, 12), reason="inspect.markcoroutinefunction is 3.12+")
def test_return_type_of_a_marked_coroutine_function() -> None:
    import inspect

    def marked() -> Awaitable[Order]: ...

    inspect.markcoroutinefunction(marked)  # type: ignore[attr-defined]
    assert return_type(marked) is Order


# ----------------------------------------------------------------------------- forward refs

MODULE = """
from __future__ import annotations

from typing import TYPE_CHECKING

import gbtrack_probe

if TYPE_CHECKING:
    from decimal import Decimal as Money

def checkout(customer: Shopper, amount: Money, note: str) -> Receipt:
    ...

gbtrack_probe.during_import(checkout)

class Shopper:
    id: str
    email: str | None

class Receipt:
    total: float
    shopper: Shopper
"""


@pytest.fixture
def load_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    def load(source: str, probe: Any) -> types.ModuleType:
        name = f"gbtrack_fwd_{len(list(tmp_path.iterdir()))}"
        path = tmp_path / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        monkeypatch.setitem(sys.modules, "gbtrack_probe", probe)
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, name, module)
        spec.loader.exec_module(module)
        return module

    return load


def test_class_defined_below_the_function_is_deferred_then_checked(load_module: Any) -> None:
    seen: dict[str, object] = {}

    def during_import(func: Any) -> None:
        hints = param_types(func)
        seen["note"] = walk(hints["note"], "note", "metadata", func.__globals__)
        for root, text in (("customer", "customer.id"), ("result", "result.total")):
            tp = return_type(func) if root == "result" else hints[root]
            try:
                walk(tp, text, "metadata", func.__globals__)
            except Deferred as exc:
                seen[root] = exc.name

    probe = types.SimpleNamespace(during_import=during_import)
    module = load_module(MODULE, probe)
    # While the module was importing, the classes below the function did not exist yet:
    assert seen == {"note": str, "customer": "Shopper", "result": "Receipt"}
    # Once imported, the same checks pass, and typos are caught.
    hints = param_types(module.checkout)
    assert walk(hints["customer"], "customer.id", "identity") is str
    assert walk(return_type(module.checkout), "result.shopper.email", "text") == Optional[str]  # noqa: UP045
    with pytest.raises(PathTypeError, match="did you mean 'total'"):
        walk(return_type(module.checkout), "result.totl")


def test_type_checking_only_import_stays_deferred(load_module: Any) -> None:
    module = load_module(MODULE, types.SimpleNamespace(during_import=lambda func: None))
    hints = param_types(module.checkout)
    assert isinstance(hints["amount"], ForwardRef)
    with pytest.raises(Deferred) as info:
        walk(hints["amount"], "amount", "metadata")
    assert info.value.name == "Money"
    assert walk(hints["customer"], "customer.id") is str  # the other parameters still check


def test_forward_reference_inside_a_model_resolves_later(load_module: Any) -> None:
    source = """
        from __future__ import annotations
        from pydantic import BaseModel
        import dataclasses

        class Cart(BaseModel):
            owner: Owner | None = None

        @dataclasses.dataclass
        class Basket:
            owner: Owner
            lines: list[Item]
    """
    module = load_module(source, types.SimpleNamespace())
    with pytest.raises(Deferred, match="Owner"):
        walk(module.Cart, "c.owner.name")
    with pytest.raises(Deferred, match="Owner"):
        walk(module.Basket, "b.owner.name")
    exec(  # the rest of the module arrives (a later import, say)
        "class Owner:\n    name: str\n\nclass Item:\n    sku: str\n", module.__dict__
    )
    assert walk(module.Cart, "c.owner.name", "metadata") is str
    assert walk(module.Basket, "b.owner.name", "metadata") is str
    assert walk(module.Basket, "b.lines[0].sku", "metadata") is str
    with pytest.raises(PathTypeError, match="did you mean 'name'"):
        walk(module.Basket, "b.owner.nam")


def test_string_root_uses_globalns() -> None:
    assert walk("Line", "l.sku", "metadata", globals()) is str
    with pytest.raises(Deferred, match="Nowhere"):
        walk("Nowhere", "l.sku", "any", globals())
    with pytest.raises(Deferred):
        walk("Line", "l.sku")  # no namespace to resolve it in


# ----------------------------------------------------------------------------- speed


def test_checking_200_paths_over_20_models_takes_a_few_ms() -> None:
    lines = [
        create_model(f"SpeedLine{i}", sku=(str, ...), price=(decimal.Decimal, ...))
        for i in range(20)
    ]
    models = [
        create_model(
            f"SpeedOrder{i}",
            id=(str, ...),
            total=(float, ...),
            lines=(list[lines[i]], ...),  # type: ignore[valid-type]
            note=(Optional[str], None),  # noqa: UP045
        )
        for i in range(20)
    ]
    texts = ["r.id", "r.total", "r.lines[0].sku", "r.lines[-1].price", "r.note"] * 2
    paths = [parse(t).steps for t in texts]
    start = time.perf_counter()
    for model in models:
        for steps in paths:
            check_steps(model, steps, leaf="metadata")
    cold = time.perf_counter() - start
    assert cold < 0.5, f"200 checks took {cold * 1000:.1f} ms"  # a few ms; generous on CI


# ----------------------------------------------------------------------------- real models


class SaBase(DeclarativeBase):
    pass


class SaCustomer(SaBase):
    __tablename__ = "tc_customer"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[Optional[str]]  # noqa: UP045
    orders: Mapped[list[SaOrder]] = relationship(back_populates="customer")
    skus: AssociationProxy[list[str]] = association_proxy("orders", "sku")
    log: WriteOnlyMapped[SaOrder] = relationship(viewonly=True)


class SaOrder(SaBase):
    __tablename__ = "tc_order"
    id: Mapped[int] = mapped_column(primary_key=True)
    sku: Mapped[str] = mapped_column()
    total: Mapped[float] = mapped_column()
    customer_id: Mapped[int] = mapped_column(ForeignKey("tc_customer.id"))
    customer: Mapped[SaCustomer] = relationship(back_populates="orders")
    sku_upper: Mapped[str] = column_property(sku + "")

    @hybrid_property
    def doubled(self) -> float:
        return self.total * 2


def test_sqlalchemy_mapped_reads_as_its_argument() -> None:
    assert walk(SaOrder, "o.total", "metadata") is float
    assert walk(SaOrder, "o.id", "identity") is int
    assert walk(SaOrder, "o.sku_upper", "metadata") is str
    assert walk(SaOrder, "o.doubled", "metadata") is float
    assert walk(SaOrder, "o.customer.email", "text") == Optional[str]  # noqa: UP045
    assert walk(SaCustomer, "c.orders[0].total", "metadata") is float
    assert walk(SaCustomer, "c.skus[0]", "metadata") is str
    assert walk(SaCustomer, "c.log.anything", "metadata") is Any  # a query, not a value
    message = str(fails(SaOrder, "o.totl"))
    assert message == "SaOrder has no attribute 'totl'; did you mean 'total'?"
    assert select(SaOrder.total) is not None  # the models are real, mapped ones


def test_descriptors_defining_only_get_are_attributes_not_methods() -> None:
    from django.utils.functional import cached_property as django_cached_property

    class Flag:
        def __get__(self, instance: object, owner: type) -> bool:
            return True

    class Account:
        name: str

        @django_cached_property
        def balance(self) -> decimal.Decimal:
            return decimal.Decimal(1)

        @functools.cached_property
        def level(self) -> int:
            return 1

        active = Flag()
        hook = staticmethod(len)

        def reload(self) -> None: ...

    assert walk(Account, "a.balance", "metadata") is decimal.Decimal
    assert walk(Account, "a.level", "metadata") is int
    assert walk(Account, "a.active", "metadata") is Any
    assert "Account.reload is a method" in str(fails(Account, "a.reload"))
    assert "Account.hook is a method" in str(fails(Account, "a.hook"))
    assert "did you mean 'balance'?" in str(fails(Account, "a.balanse"))


def _returns_within(seconds: float, func: Any) -> object:
    """Run ``func`` in a daemon thread; fail if it has not returned after ``seconds``."""
    import threading

    box: list[object] = []
    thread = threading.Thread(target=lambda: box.append(func()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    return box[0]


SelfBound = TypeVar("SelfBound", bound="SelfBound")


def test_typevar_bound_to_itself_terminates() -> None:
    result = _returns_within(10, lambda: walk(SelfBound, "x.y", "metadata", globals()))
    assert result is Any


def test_recursive_type_aliases_terminate() -> None:
    from typing_extensions import TypeAliasType

    ns: dict[str, Any] = {}
    ns["Ping"] = TypeAliasType("Ping", ForwardRef("Pong"))
    ns["Pong"] = TypeAliasType("Pong", ForwardRef("Ping"))
    ns["Me"] = TypeAliasType("Me", ForwardRef("Me"))
    ns["Maybe"] = TypeAliasType("Maybe", ForwardRef("Maybe") | Line | None)
    ns["Tree"] = TypeAliasType("Tree", dict[str, ForwardRef("Tree")])
    for name in ("Ping", "Me"):
        assert _returns_within(10, lambda n=name: walk(ns[n], "x.y", "metadata", ns)) is Any
    assert _returns_within(10, lambda: walk(ns["Maybe"], "x.sku", "metadata", ns)) is Any
    tree = _returns_within(10, lambda: walk(ns["Tree"], "t.a.b.c", "any", ns))
    assert tree == dict[str, ForwardRef("Tree")]  # walked step by step through the alias


@pytest.mark.skipif(sys.version_info < (3, 12), reason="the `type X = ...` statement is 3.12+")
def test_recursive_type_statement_terminates() -> None:
    ns: dict[str, Any] = {}
    exec("type A = B\ntype B = A\ntype C = list[C] | None", ns)
    assert _returns_within(10, lambda: walk(ns["A"], "x.y", "metadata", ns)) is Any
    assert _returns_within(10, lambda: walk(ns["C"], "x[0][0]", "any", ns)) is not None


def test_getattribute_and_simplenamespace_classes_are_unknown() -> None:
    class Proxy:
        kind: str

        def __getattribute__(self, name: str) -> object:
            return object.__getattribute__(self, name)

    class Options(types.SimpleNamespace):
        debug: bool

    assert walk(Proxy, "p.anything", "metadata") is Any
    assert walk(Options, "o.anything", "metadata") is Any
    assert walk(Options, "o.debug", "metadata") is bool


def test_initvar_is_not_an_attribute() -> None:
    @dataclasses.dataclass
    class Signup:
        email: str
        password: dataclasses.InitVar[str]
        source: dataclasses.InitVar[str] = "web"

        def __post_init__(self, password: str, source: str) -> None: ...

    assert walk(Signup, "s.email", "metadata") is str
    for name in ("password", "source"):
        message = str(fails(Signup, f"s.{name}"))
        assert message == (
            f"Signup.{name} is an InitVar: it is passed to __init__ and __post_init__, never stored"
        )


def test_a_metaclass_getattr_is_never_called() -> None:
    calls: list[str] = []

    class Meta(type):
        def __getattr__(cls, name: str) -> object:
            calls.append(name)
            raise AttributeError(name)

    class Thing(metaclass=Meta):
        sku: str

    assert walk(Thing, "t.sku", "metadata") is str
    assert "did you mean 'sku'?" in str(fails(Thing, "t.skuu"))
    assert calls == []


def test_one_edit_typos_of_short_names_are_suggested() -> None:
    @dataclasses.dataclass
    class Ref:
        id: str
        no: int

    assert fails(Ref, "r.di").suggestions[0] == "id"
    assert fails(Ref, "r.on").suggestions[0] == "no"


def test_protocols_and_enums_are_closed() -> None:
    from typing import Protocol

    class HasTotal(Protocol):
        total: float

    assert walk(HasTotal, "h.total", "metadata") is float
    assert "did you mean 'total'?" in str(fails(HasTotal, "h.totl"))
    assert "did you mean 'value'?" in str(fails(Status, "s.vlaue"))
