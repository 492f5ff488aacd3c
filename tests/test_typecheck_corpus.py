"""Issue 19: the import-time checks on the models real services have; 0 false alarms.

Every path to a leaf field of each model (listed by the model's own library, see
tests/_corpus.py) must decorate, and every one-edit misspelling of one of its names
must fail at decoration with the right name suggested. Real library models: Django's
auth, contenttypes and sessions models and a shop of ours (in a subprocess: Django's
settings are configured once per process), SQLAlchemy 2 declarative, pydantic v2,
attrs, dataclasses, TypedDict, NamedTuple, enums and Protocols; generated ones of each
kind make up the rest. The counts and the slowest decoration are printed (``-s``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import functools
import json
import os
import random
import subprocess
import sys
import uuid
from pathlib import Path
from typing import (
    Annotated,
    Any,
    ClassVar,
    Generic,
    Literal,
    NamedTuple,
    Optional,
    Protocol,
    TypeVar,
    Union,
)

import attrs
import pytest
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, RootModel, computed_field
from sqlalchemy import ForeignKey, Numeric, String
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
from tests import _corpus
from typing_extensions import NotRequired, Required, TypedDict  # pydantic nests these

ROOT = Path(__file__).resolve().parent.parent

# ----------------------------------------------------------------------------- enums


class Status(enum.Enum):
    NEW = "new"
    PAID = "paid"


class Tier(enum.IntEnum):
    BRONZE = 1
    GOLD = 3


class Channel(enum.StrEnum if sys.version_info >= (3, 11) else str, enum.Enum):  # type: ignore[misc]
    WEB = "web"
    APP = "app"


# ----------------------------------------------------------------------------- SQLAlchemy 2


class Base(DeclarativeBase):
    pass


class SaCustomer(Base):
    __tablename__ = "corpus_customer"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(200))
    nickname: Mapped[Optional[str]]  # noqa: UP045
    tier: Mapped[Tier] = mapped_column(default=Tier.BRONZE)
    orders: Mapped[list[SaOrder]] = relationship(back_populates="customer")
    address: Mapped[Optional[SaAddress]] = relationship(back_populates="customer")  # noqa: UP045
    order_refs: AssociationProxy[list[str]] = association_proxy("orders", "reference")
    audit: WriteOnlyMapped[SaOrder] = relationship(viewonly=True)

    @hybrid_property
    def display(self) -> str:
        return self.email


class SaAddress(Base):
    __tablename__ = "corpus_address"
    id: Mapped[int] = mapped_column(primary_key=True)
    city: Mapped[str]
    zip_code: Mapped[str] = mapped_column(String(12))
    customer_id: Mapped[int] = mapped_column(ForeignKey("corpus_customer.id"))
    customer: Mapped[SaCustomer] = relationship(back_populates="address")


class SaOrder(Base):
    __tablename__ = "corpus_order"
    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(String(20))
    total: Mapped[decimal.Decimal] = mapped_column(Numeric(10, 2))
    placed_at: Mapped[dt.datetime]
    status: Mapped[Status]
    customer_id: Mapped[int] = mapped_column(ForeignKey("corpus_customer.id"))
    customer: Mapped[SaCustomer] = relationship(back_populates="orders")
    lines: Mapped[list[SaLine]] = relationship(back_populates="order")
    reference_upper: Mapped[str] = column_property(reference + "")

    @hybrid_property
    def doubled(self) -> decimal.Decimal:
        return self.total * 2


class SaLine(Base):
    __tablename__ = "corpus_line"
    id: Mapped[int] = mapped_column(primary_key=True)
    sku: Mapped[str]
    quantity: Mapped[int] = mapped_column(default=1)
    price: Mapped[float]
    order_id: Mapped[int] = mapped_column(ForeignKey("corpus_order.id"))
    order: Mapped[SaOrder] = relationship(back_populates="lines")


# ----------------------------------------------------------------------------- pydantic v2

T = TypeVar("T")


class PItem(BaseModel):
    sku: str
    price: decimal.Decimal
    quantity: int = 1


class PPage(BaseModel, Generic[T]):
    items: list[T]
    total: int
    next_cursor: Optional[str] = None  # noqa: UP045


class PCustomer(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    customer_id: str = Field(alias="customerId")
    email_address: str = Field(validation_alias=AliasChoices("email", "emailAddress"))
    first_name: str = Field(serialization_alias="firstName")
    tier: Tier = Tier.BRONZE
    joined: dt.date

    @computed_field  # type: ignore[prop-decorator]
    @property
    def greeting(self) -> str:
        return f"Hi {self.first_name}"


class Cat(BaseModel):
    kind: Literal["cat"]
    name: str
    lives: int = 9


class Dog(BaseModel):
    kind: Literal["dog"]
    name: str
    good: bool = True


class POwner(BaseModel):
    owner_id: uuid.UUID
    pet: Annotated[Union[Cat, Dog], Field(discriminator="kind")]  # noqa: UP007
    pets: list[Annotated[Union[Cat, Dog], Field(discriminator="kind")]] = []  # noqa: UP007
    favourite: Optional[PItem] = None  # noqa: UP045
    by_sku: dict[str, PItem] = {}


class PItems(RootModel[list[PItem]]):
    pass


class PBasket(BaseModel):
    page: PPage[PItem]
    items: PItems
    owner: POwner
    channel: Channel = Channel.WEB


# ----------------------------------------------------------------------------- attrs


@attrs.define
class ADiscount:
    code: str
    percent: float = attrs.field(converter=float)


@attrs.frozen
class ACoupon:
    coupon_id: uuid.UUID
    discount: ADiscount
    expires: dt.datetime
    uses: int = attrs.field(default=0, converter=int)


@attrs.define(slots=False)
class ACampaign:
    name: str
    coupons: list[ACoupon] = attrs.Factory(list)
    active: bool = True


# ----------------------------------------------------------------------------- dataclasses


@dataclasses.dataclass
class DShipment:
    carrier: str
    tracking: str
    weight_kg: float
    password: dataclasses.InitVar[str | None] = None
    _: dataclasses.KW_ONLY
    insured: bool = False
    label: str = dataclasses.field(init=False, default="")
    VERSION: ClassVar[int] = 2

    def __post_init__(self, password: str | None) -> None:
        self.label = f"{self.carrier}:{self.tracking}"

    @property
    def heavy(self) -> bool:
        return self.weight_kg > 20

    @functools.cached_property
    def code(self) -> str:
        return self.tracking.upper()


@dataclasses.dataclass(frozen=True, kw_only=True)
class DDelivery:
    shipment: DShipment
    address: TAddress
    point: NPoint
    status: Status = Status.NEW
    notes: tuple[str, ...] = ()


# ---------------------------------------------------------------------- TypedDict, NamedTuple


class TAddress(TypedDict, total=False):
    city: Required[str]
    street: str
    zip_code: NotRequired[str]
    country: Required[str]


class TEvent(TypedDict):
    event_id: str
    amount: float
    address: TAddress
    tags: NotRequired[list[str]]


class NPoint(NamedTuple):
    lat: float
    lon: float
    label: str = ""


class NRange(NamedTuple):
    start: dt.date
    end: dt.date
    point: NPoint


# ----------------------------------------------------------------------------- Protocols


class HasTotal(Protocol):
    total: float
    currency: str

    @property
    def label(self) -> str: ...


class HasCustomer(Protocol):
    customer_id: str
    order: HasTotal


REAL: list[Any] = [
    Status,
    Tier,
    Channel,
    SaCustomer,
    SaAddress,
    SaOrder,
    SaLine,
    PItem,
    PPage[PItem],
    PCustomer,
    Cat,
    Dog,
    POwner,
    PItems,
    PBasket,
    ADiscount,
    ACoupon,
    ACampaign,
    DShipment,
    DDelivery,
    TAddress,
    TEvent,
    NPoint,
    NRange,
    HasTotal,
    HasCustomer,
]


# ----------------------------------------------------------------------------- generated

NAMES = (
    "order_id",
    "amount",
    "total",
    "currency",
    "email",
    "mobile",
    "sku",
    "quantity",
    "price",
    "discount",
    "coupon",
    "reference",
    "status",
    "channel",
    "country",
    "city",
    "created_at",
    "updated_at",
    "note",
    "label",
    "points",
    "tier",
    "campaign_id",
    "store_id",
    "region",
    "payment_method",
    "shipping_fee",
    "tax_amount",
    "is_first",
    "category",
    "brand",
    "variant",
)
SCALAR_TYPES: tuple[Any, ...] = (
    str,
    int,
    float,
    bool,
    decimal.Decimal,
    dt.datetime,
    uuid.UUID,
    Status,
    Optional[str],  # noqa: UP045
    Literal["a", "b"],
)


def generated(count: int) -> list[Any]:
    """``count`` classes of every kind, nested in one another, fixed by a seed."""
    rng = random.Random(19)
    made: list[Any] = []
    kinds = ("dataclass", "pydantic", "attrs", "typeddict", "namedtuple")
    for i in range(count):
        kind = kinds[i % len(kinds)]
        fields: dict[str, Any] = {}
        for name in rng.sample(NAMES, rng.randint(2, 5)):
            fields[name] = rng.choice(SCALAR_TYPES)
        if made and rng.random() < 0.4:
            inner = rng.choice(made)
            fields[f"child_{i}"] = rng.choice(
                [inner, list[inner], Optional[inner]]  # type: ignore[valid-type]  # noqa: UP045
            )
        name = f"Gen{kind.title()}{i}"
        if kind == "dataclass":
            cls: Any = dataclasses.make_dataclass(name, list(fields.items()))
        elif kind == "pydantic":
            from pydantic import create_model

            cls = create_model(  # type: ignore[call-overload]
                name,
                __config__=ConfigDict(arbitrary_types_allowed=True),
                **{k: (v, ...) for k, v in fields.items()},
            )
        elif kind == "attrs":
            cls = attrs.make_class(
                name, {k: attrs.field(type=v) for k, v in fields.items()}, slots=True
            )
        elif kind == "typeddict":
            cls = TypedDict(name, fields)  # type: ignore[operator]
        else:
            cls = NamedTuple(name, list(fields.items()))  # type: ignore[misc]
        cls.__module__ = __name__
        globals()[name] = cls  # string annotations and get_type_hints find it
        made.append(cls)
    return made


# ----------------------------------------------------------------------------- the tests


def report(title: str, result: _corpus.Result) -> str:
    seconds, where = result.slowest
    return (
        f"{title}: {result.classes} classes; {result.valid} valid paths accepted "
        f"({result.unchecked} of them unchecked); {result.typos} typos refused with the "
        f"name suggested; false alarms: {len(result.false_alarms)}; typos missed: "
        f"{len(result.missed)}; slowest decoration {seconds * 1000:.2f} ms ({where})"
    )


@pytest.mark.slow
def test_real_and_generated_models_no_false_alarm_every_typo_refused() -> None:
    roots = REAL + generated(175)
    result = _corpus.run(roots)
    print("\n" + report("corpus", result))
    assert result.false_alarms == []
    assert result.missed == []
    assert result.classes >= 200
    assert result.valid >= 1000
    assert result.typos >= 1500
    assert result.slowest[0] < 2.0  # about a millisecond; generous for a loaded CI box


@pytest.mark.slow
def test_django_models_no_false_alarm_every_typo_refused() -> None:
    pytest.importorskip("django")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-m", "tests._corpus", "django"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = _corpus.Result(**json.loads(done.stdout))
    print("\n" + report("django", result))
    assert result.false_alarms == []
    assert result.missed == []
    assert result.classes == 7
    assert result.valid >= 50
    assert result.typos >= 100


def test_the_corpus_paths_cover_every_kind() -> None:
    """The corpus is not vacuous: the real models give paths through each library."""
    texts = {
        getattr(root, "__qualname__", str(root)): [_corpus.render(p) for p in _corpus.paths(root)]
        for root in REAL
    }
    assert "x.orders[0].lines[0].sku" in texts["SaCustomer"]
    assert "x.order_refs[0]" in texts["SaCustomer"]
    assert "x.display" in texts["SaCustomer"]
    assert "x.reference_upper" in texts["SaOrder"]
    assert "x.page.items[0].sku" in texts["PBasket"]
    assert "x.items.root[0].price" in texts["PBasket"]
    assert "x.owner.pet.kind" in texts["PBasket"]
    assert "x.greeting" in texts["PCustomer"]
    assert "x.coupons[0].discount.percent" in texts["ACampaign"]
    assert 'x.address["city"]' in texts["DDelivery"]
    assert "x.point.lat" in texts["DDelivery"]
    assert "x.shipment.label" in texts["DDelivery"]
    assert "x.order.total" in texts["HasCustomer"]
    assert texts["Status"] == ["x.name", "x.value"]
