"""The engine of the corpus test (tests/test_typecheck_corpus.py): real models, every path.

For each root class it lists every path to a leaf field, from the libraries' own
accounts of their fields (``model_fields``, ``dataclasses.fields``, ``attrs.fields``,
SQLAlchemy's mapper, Django's ``_meta``), never from the checker under test. Each
path is then applied with ``@track`` (it must decorate), and each name of it is
misspelled one edit at a time (a letter dropped, doubled, or two swapped): that must
fail at decoration with the right name among the suggestions.

Run by the corpus test in-process, and by a subprocess for Django (whose settings can
be configured once per process): ``python -m tests._corpus django`` prints the result
as JSON.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import functools
import inspect
import json
import sys
import time
import typing
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal, get_args, get_origin, get_type_hints

import attrs
import pydantic

from gbtrack import ExpressionError, InMemorySender, Tracker, literal

SCALARS = (str, int, float, bool, decimal.Decimal, dt.date, uuid.UUID, enum.Enum)
MAX_DEPTH = 3
Step = tuple[str, str | int]  # ("name", "total"), ("key", "city"), ("index", 0)


@dataclasses.dataclass
class Result:
    """What one corpus run found."""

    classes: int = 0
    valid: int = 0
    unchecked: int = 0
    typos: int = 0
    false_alarms: list[str] = dataclasses.field(default_factory=list)
    missed: list[str] = dataclasses.field(default_factory=list)
    slowest: tuple[float, str] = (0.0, "")

    def merge(self, other: Result) -> None:
        """Add ``other``'s counts and findings to this one."""
        self.classes += other.classes
        self.valid += other.valid
        self.unchecked += other.unchecked
        self.typos += other.typos
        self.false_alarms += other.false_alarms
        self.missed += other.missed
        self.slowest = max(self.slowest, other.slowest)


# --------------------------------------------------------------------------- fields


def _is_typeddict(tp: object) -> bool:
    return isinstance(tp, type) and issubclass(tp, dict) and hasattr(tp, "__required_keys__")


def _sqlalchemy_fields(cls: type) -> dict[str, Any] | None:
    if "_sa_class_manager" not in vars(cls):
        return None
    import sqlalchemy

    mapper = sqlalchemy.inspect(cls)
    out: dict[str, Any] = {}
    for attr in mapper.column_attrs:
        try:
            out[attr.key] = attr.expression.type.python_type
        except NotImplementedError:
            continue
    for rel in mapper.relationships:
        target = rel.mapper.class_
        if rel.lazy in ("write_only", "dynamic"):
            continue
        out[rel.key] = list[target] if rel.uselist else target  # type: ignore[valid-type]
    for name, desc in mapper.all_orm_descriptors.items():
        fget = getattr(desc, "fget", None)
        if fget is not None and name not in out:
            out[name] = get_type_hints(fget).get("return", Any)
        elif type(desc).__name__ == "AssociationProxy":
            proxy = getattr(cls, name)
            python_type = proxy.remote_attr.property.columns[0].type.python_type
            out[name] = python_type if proxy.scalar else list[python_type]  # type: ignore[valid-type]
    return out


_DJANGO_TYPES = {
    "CharField": str,
    "TextField": str,
    "EmailField": str,
    "SlugField": str,
    "URLField": str,
    "AutoField": int,
    "BigAutoField": int,
    "IntegerField": int,
    "BigIntegerField": int,
    "SmallIntegerField": int,
    "PositiveIntegerField": int,
    "PositiveSmallIntegerField": int,
    "BooleanField": bool,
    "DateTimeField": dt.datetime,
    "DateField": dt.date,
    "DecimalField": decimal.Decimal,
    "FloatField": float,
    "UUIDField": uuid.UUID,
}


def _django_fields(cls: type) -> dict[str, Any] | None:
    meta = vars(cls).get("_meta")
    if meta is None or not type(meta).__module__.startswith("django."):
        return None
    out: dict[str, Any] = {}
    for field in meta.concrete_fields:
        if field.is_relation and (field.many_to_one or field.one_to_one):
            out[field.name] = field.related_model
            out[field.attname] = int
        elif field.get_internal_type() in _DJANGO_TYPES:
            out[field.name] = _DJANGO_TYPES[field.get_internal_type()]
    return out


def _properties(cls: type) -> dict[str, Any]:
    """Properties and cached properties with a return annotation (Django's included)."""
    out: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if klass.__module__.startswith(("builtins", "django.", "sqlalchemy.", "pydantic")):
            continue
        for name, value in vars(klass).items():
            func = getattr(value, "fget", None) or getattr(value, "func", None)
            if name.startswith("_") or not inspect.isfunction(func):
                continue
            if isinstance(value, property | functools.cached_property) or (
                type(value).__name__ == "cached_property"
            ):
                rt = get_type_hints(func).get("return")
                if rt is not None:
                    out[name] = rt
    return out


def fields_of(cls: type) -> tuple[str, dict[str, Any]] | None:
    """``(step kind, name -> type)`` by the class's own library, or ``None``."""
    if issubclass(cls, enum.Enum):
        first = next(iter(cls), None)
        return "name", {"name": str, "value": type(first.value) if first else str}
    if issubclass(cls, pydantic.BaseModel):
        out = {n: f.annotation for n, f in cls.model_fields.items()}
        out.update({n: c.return_type for n, c in cls.model_computed_fields.items()})
        return "name", out
    if dataclasses.is_dataclass(cls):
        hints = get_type_hints(cls)
        return "name", {f.name: hints[f.name] for f in dataclasses.fields(cls)}
    if attrs.has(cls):
        attrs.resolve_types(cls)
        return "name", {a.name: a.type for a in attrs.fields(cls)}
    if _is_typeddict(cls):
        return "key", get_type_hints(cls)
    if issubclass(cls, tuple) and hasattr(cls, "_fields"):
        hints = get_type_hints(cls)
        return "name", {n: hints[n] for n in cls._fields}
    for reader in (_sqlalchemy_fields, _django_fields):
        found = reader(cls)
        if found is not None:
            found.update(_properties(cls))
            return "name", found
    if getattr(cls, "_is_protocol", False):
        hints = {k: v for k, v in get_type_hints(cls).items() if not k.startswith("_")}
        return "name", {**hints, **_properties(cls)}
    return None


# --------------------------------------------------------------------------- paths


def _strip(tp: Any) -> list[Any]:
    """The members of ``tp`` but ``None``, with ``Annotated``/``Required``... removed."""
    origin = get_origin(tp)
    if origin in (typing.Annotated, typing.Required, typing.NotRequired):
        return _strip(get_args(tp)[0])
    if origin in (typing.Union, __import__("types").UnionType):
        return [m for a in get_args(tp) for m in _strip(a)]
    if tp is type(None) or tp is None:
        return []
    return [tp]


def _is_leaf(members: list[Any]) -> bool:
    def one(tp: Any) -> bool:
        if get_origin(tp) is Literal:
            return all(isinstance(v, str | int) for v in get_args(tp))
        return isinstance(tp, type) and issubclass(tp, SCALARS)

    return bool(members) and all(one(m) for m in members)


def paths(tp: Any, depth: int = MAX_DEPTH) -> Iterator[tuple[Step, ...]]:
    """Every path from a value of ``tp`` to a leaf field (``()``: ``tp`` is a leaf)."""
    members = _strip(tp)
    if depth == MAX_DEPTH and isinstance(tp, type) and issubclass(tp, enum.Enum):
        yield from ((("name", "name"),), (("name", "value"),))  # an enum as the root
        return
    if _is_leaf(members):
        yield ()
        return
    if depth == 0 or not members:
        return
    origins = {get_origin(m) for m in members}
    if len(members) == 1 and origins & {list, Sequence, tuple}:
        args = get_args(members[0])
        if args:
            for rest in paths(args[0], depth):  # an index is not a level
                yield (("index", 0), *rest)
        return
    if len(members) == 1 and origins & {dict, Mapping}:
        args = get_args(members[0])
        if len(args) == 2:
            for rest in paths(args[1], depth - 1):
                yield (("key", "some_key"), *rest)
        return
    tables = []
    for member in members:
        cls = get_origin(member) or member
        table = fields_of(cls) if isinstance(cls, type) else None
        if table is None:
            return
        tables.append(table)
    kind = tables[0][0]
    common = set(tables[0][1]).intersection(*(t[1] for t in tables[1:]))
    for name in sorted(common):
        if name.startswith("_"):
            continue
        for rest in paths(tables[0][1][name], depth - 1):
            yield ((kind, name), *rest)


def render(steps: tuple[Step, ...]) -> str:
    """``x.lines[0].sku`` from steps."""
    out = "x"
    for kind, arg in steps:
        out += f".{arg}" if kind == "name" else f"[{arg}]" if kind == "index" else f'["{arg}"]'
    return out


def typos(name: str, turn: int | None = None) -> Iterator[str]:
    """One-edit misspellings of ``name``: a letter doubled, dropped, two swapped.

    ``turn`` picks one of them (round-robin, so a corpus sees every kind and stays
    fast); ``None`` yields them all.
    """
    middle = len(name) // 2
    candidates = [name[:middle] + name[middle] + name[middle:]]
    if len(name) >= 3:
        candidates.append(name[:middle] + name[middle + 1 :])
    if len(name) >= 2 and name[middle - 1] != name[middle]:
        candidates.append(name[: middle - 1] + name[middle] + name[middle - 1] + name[middle + 1 :])
    if turn is not None:
        candidates = [candidates[(turn + len(name)) % len(candidates)]]
    seen = {name}
    for typo in candidates:
        if typo.isidentifier() and not typo.startswith("_") and typo not in seen:
            seen.add(typo)
            yield typo


# --------------------------------------------------------------------------- the run


def _function(root: Any) -> Any:
    def tracked(x: Any) -> None: ...

    tracked.__annotations__ = {"x": root, "return": None}
    return tracked


def _real_names(tp: Any) -> set[str]:
    """Every name a value of ``tp`` may really have: a misspelling must not be one."""
    names: set[str] = set()
    for member in _strip(tp):
        cls = get_origin(member) or member
        if isinstance(cls, type):
            names.update(dir(cls))
            table = fields_of(cls)
            if table is not None:
                names.update(table[1])
            if issubclass(cls, pydantic.BaseModel):
                for info in cls.model_fields.values():
                    for alias in (info.alias, info.validation_alias, info.serialization_alias):
                        if isinstance(alias, str):
                            names.add(alias)
                        names.update(c for c in getattr(alias, "choices", ()) if isinstance(c, str))
    return names


def _type_at(root: Any, steps: tuple[Step, ...]) -> Any:
    """The type a path's steps lead to, by the same library accounts as :func:`paths`."""
    tp = root
    for kind, arg in steps:
        members = _strip(tp)
        member = members[0]
        if kind == "index" or (kind == "key" and not _is_typeddict(get_origin(member) or member)):
            tp = get_args(member)[-1]
            continue
        table = fields_of(get_origin(member) or member)
        assert table is not None
        tp = table[1][str(arg)]
    return tp


def run(roots: list[Any], tracker: Tracker | None = None) -> Result:
    """Apply every valid path and every one-edit typo of ``roots``; count what happens."""
    tracker = tracker or Tracker(InMemorySender())
    result = Result(classes=len(roots))
    for root in roots:
        tried: set[tuple[Step, ...]] = set()
        for steps in paths(root):
            if not steps:
                continue
            text = render(steps)
            where = f"{getattr(root, '__qualname__', root)}: {text}"
            start = time.perf_counter()
            try:
                tracked = tracker.track("corpus", customer_id=literal("c"), metadata={"v": text})(
                    _function(root)
                )
            except ExpressionError as exc:
                result.false_alarms.append(f"{where}: {exc}")
                continue
            finally:
                took = time.perf_counter() - start
                result.slowest = max(result.slowest, (took, where))
            result.valid += 1
            site = last_site()
            if site is not None and getattr(site, "unchecked", None):
                result.unchecked += 1
            del tracked
            for index, (kind, arg) in enumerate(steps):
                if kind == "index" or arg == "some_key":
                    continue
                real = _real_names(_type_at(root, steps[:index]))
                for typo in typos(str(arg), index):
                    if typo in real:
                        continue
                    bad = (*steps[:index], (kind, typo), *steps[index + 1 :])
                    if bad not in tried:  # a shared prefix's typo is tried once
                        tried.add(bad)
                        _try_typo(tracker, root, bad, str(arg), result)
    return result


def last_site() -> Any:
    """The site the last decoration registered (for its unchecked roles)."""
    from gbtrack._checks import sites

    found = sites()
    return found[-1] if found else None


def _try_typo(
    tracker: Tracker, root: Any, steps: tuple[Step, ...], meant: str, result: Result
) -> None:
    text = render(steps)
    where = f"{getattr(root, '__qualname__', root)}: {text}"
    try:
        tracker.track("corpus", customer_id=literal("c"), metadata={"v": text})(_function(root))
    except ExpressionError as exc:
        if meant in exc.suggestions:
            result.typos += 1
        else:
            result.missed.append(f"{where}: refused without suggesting {meant!r}: {exc}")
        return
    result.missed.append(f"{where}: accepted")


# --------------------------------------------------------------------------- Django


def django_roots() -> list[Any]:
    """Django's own models and a shop of ours; settings configured here (once a process)."""
    import django
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
        ],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        USE_TZ=True,
    )
    django.setup()
    from django.contrib.auth.models import Group, Permission, User
    from django.contrib.contenttypes.models import ContentType
    from django.contrib.sessions.models import Session
    from django.db import models
    from django.utils.functional import cached_property

    class OrderQuerySet(models.QuerySet["ShopOrder"]):
        def paid(self) -> OrderQuerySet:
            return self.filter(paid=True)

    class ShopOrder(models.Model):
        customer = models.ForeignKey(User, on_delete=models.CASCADE, related_name="orders")
        group = models.ForeignKey(Group, null=True, on_delete=models.SET_NULL)
        reference = models.CharField(max_length=20)
        total = models.DecimalField(max_digits=10, decimal_places=2)
        paid = models.BooleanField(default=False)
        created = models.DateTimeField(auto_now_add=True)

        objects = OrderQuerySet.as_manager()

        class Meta:
            app_label = "corpus"

        @property
        def label(self) -> str:
            return f"#{self.reference}"

        @cached_property
        def tax(self) -> decimal.Decimal:
            return self.total / 10

    class ShopReturn(models.Model):
        order = models.OneToOneField(ShopOrder, on_delete=models.CASCADE)
        reason = models.TextField()
        token = models.UUIDField()

        class Meta:
            app_label = "corpus"

    return [User, Group, Permission, ContentType, Session, ShopOrder, ShopReturn]


def main(argv: list[str]) -> int:
    """``python -m tests._corpus django``: the Django corpus, as JSON on stdout."""
    assert argv == ["django"], argv
    result = run(django_roots())
    print(json.dumps(dataclasses.asdict(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
