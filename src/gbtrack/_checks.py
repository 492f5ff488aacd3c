"""Decoration-time checks of ``@track`` (types and the tracking plan), and ``gbtrack.check()``.

:mod:`gbtrack._plan` compiles a ``@track``'s expressions; for each path it records here
a :class:`TypedPath`: where the root's type comes from (a parameter's annotation, the
return annotation for ``result``, a registered resolver's return annotation,
:class:`~gbtrack.Identity` for ``identity``), the steps, and what the leaf must be
(a metadata value, a customer id, a text). A :class:`Site` (one ``@track`` applied to
one function) walks them with :func:`gbtrack._typecheck.check_steps` and compares the
metadata with the event's schema (:func:`gbtrack._schema.check_plan`).

Three moments run a site's checks:

1. **Decoration.** A problem raises one :class:`~gbtrack.ExpressionError` naming the
   function and every faulty expression. An annotation that cannot be resolved yet (a
   class defined further down, ``from __future__ import annotations``, a
   ``TYPE_CHECKING``-only import) defers the check; decoration succeeds.
2. **The first call** of a deferred plan (one ``is not None`` test per call until
   then): the checks run again; a problem makes that call's event, and every later
   one, a counted drop with reason ``invalid_expression`` (raised when ``strict``), like
   any resolution failure. A name still unresolvable then (a ``TYPE_CHECKING``-only
   import) is unknown: that part is not checked, never an error.
3. **On demand**, :func:`check`: every site registered so far, with the tracking plan
   as it is now; one ``ExpressionError`` lists every problem.

Sites are registered weakly (a decorated function that is garbage collected leaves the
registry) and keep the call site's file and line for the event catalog
(:mod:`gbtrack._catalog`).
"""

from __future__ import annotations

import itertools
import sys
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from gbtrack._errors import ExpressionError, InvalidEventError
from gbtrack._event import Limits, check_metadata_key, check_name_rules
from gbtrack._schema import check_plan
from gbtrack._state import active
from gbtrack._typecheck import Deferred, Leaf, PathTypeError, walk_steps

if TYPE_CHECKING:
    from gbtrack._expr import Step
    from gbtrack._state import CallSink as Tracker

__all__ = [
    "CheckReport",
    "OrderSite",
    "Problem",
    "Site",
    "TypedPath",
    "Unchecked",
    "check",
    "first_call",
    "register",
    "sites",
]

RootType = Callable[[], Any]
"""Returns the type of a path's root; may raise :class:`~gbtrack._typecheck.Deferred`."""


@dataclass(frozen=True)
class TypedPath:
    """One expression of a ``@track`` to check against the annotations.

    Attributes:
        role: ``"customer_id"``, ``"metadata['amount']"`` ...
        key: The metadata key, or ``None`` for identity fields and ``when``.
        text: The path, or ``None`` for a callable (only its return type is checked).
        root_type: Gives the root's type (``Any`` when unknown).
        steps: The path's steps (empty for a callable).
        leaf: What the leaf must be.
        source: How the value is computed, for messages (``resolver f`` ...).
    """

    role: str
    key: str | None
    text: str | None
    root_type: RootType
    steps: tuple[Step, ...]
    leaf: Leaf
    source: str = ""


class Problem(NamedTuple):
    """One problem found in a ``@track``."""

    message: str
    expression: str | None = None
    suggestions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Unchecked:
    """One expression the checks could not prove right or wrong: unchecked, never an error.

    Attributes:
        event: The event name.
        function: The decorated function's qualified name.
        where: ``file:line`` of the ``@track(...)`` call.
        role: ``"customer_id"``, ``"metadata['amount']"`` ...
        expression: The path, or how the value is computed (``resolver f``).
        reason: Why it is unchecked (``at .meta: Order.meta has no annotation``).
        label: The decorator as written in messages (empty: ``@track(event)``).
    """

    event: str
    function: str
    where: str
    role: str
    expression: str
    reason: str
    label: str = ""

    def __str__(self) -> str:
        return (
            f"{self.label or f'@track({self.event!r})'} on {self.function} ({self.where}): "
            f"{self.role}={self.expression!r}: {self.reason}"
        )


@dataclass(frozen=True)
class CheckReport:
    """What :func:`check` checked, and what it could not.

    Attributes:
        sites: The ``@track`` sites checked.
        paths: The expressions with a type to check (paths, callables' return types).
        unchecked: The expressions the checks could not prove right or wrong, with why:
            an unannotated value, ``Any``, a class that may have undeclared attributes
            (``__getattr__``, ``SimpleNamespace``), an annotation that is recursive or
            cannot be resolved. They are listed, never errors.
    """

    sites: int
    paths: int
    unchecked: tuple[Unchecked, ...]

    @property
    def checked(self) -> int:
        """The expressions checked all the way to their leaf."""
        return self.paths - len({(u.function, u.where, u.role) for u in self.unchecked})

    def __str__(self) -> str:
        head = (
            f"gbtrack.check(): {self.sites} tracked function{'s' if self.sites != 1 else ''}, "
            f"{self.paths} expression{'s' if self.paths != 1 else ''}: {self.checked} checked, "
            f"{len(self.unchecked)} unchecked"
        )
        return "\n".join([head, *(f"  - {u}" for u in self.unchecked)])


class Site:
    """One ``@track`` applied to one function: what the checks and the catalog know.

    Attributes:
        event: The event name.
        function: The decorated function's qualified name.
        module: Its module's name.
        file: The file of the ``@track(...)`` call.
        line: The line of the ``@track(...)`` call.
        on: ``"success"``, ``"error"`` or ``"always"``.
        identity: Identity role -> how it is computed (``"customer.id"``, ...).
        metadata: Metadata key -> how it is computed (the path, ``resolver f``, a constant).
        types: Role -> the leaf type found by the last check (``Any``: unknown).
        deferred: Whether the last check met an annotation it could not resolve.
        error: The error found by the last check, if any.
        unchecked: Role -> why the last check could not check it (an unannotated
            value, ``Any``, a class with ``__getattr__`` ...); never an error.
    """

    __slots__ = (
        "__weakref__",
        "constants",
        "deferred",
        "error",
        "event",
        "file",
        "function",
        "globalns",
        "identity",
        "line",
        "metadata",
        "module",
        "on",
        "paths",
        "tracker",
        "types",
        "unchecked",
    )

    kind = "event"
    """``"event"`` (``@track``) or ``"order"`` (``@track_order``, see :class:`OrderSite`)."""

    def __init__(
        self,
        *,
        event: str,
        function: str,
        module: str,
        where: tuple[str, int],
        on: str,
        paths: list[TypedPath],
        constants: Mapping[str, object],
        identity: Mapping[str, str],
        metadata: Mapping[str, str],
        tracker: Tracker | None,
        globalns: dict[str, Any] | None,
    ) -> None:
        self.event = event
        self.function = function
        self.module = module
        self.file, self.line = where
        self.on = on
        self.paths = tuple(paths)
        self.constants = dict(constants)
        self.identity = dict(identity)
        self.metadata = dict(metadata)
        self.tracker = tracker
        self.globalns = globalns
        self.types: dict[str, Any] = {}
        self.deferred = False
        self.error: ExpressionError | None = None
        self.unchecked: dict[str, str] = {}

    @property
    def label(self) -> str:
        """The decorator as written in messages: ``@track('signed_up')``."""
        return f"@track({self.event!r})"

    def __repr__(self) -> str:
        return f"<Site {self.label} on {self.function} at {self.file}:{self.line}>"

    @property
    def metadata_types(self) -> dict[str, Any]:
        """Metadata key -> the type of the value sent (constants: their type)."""
        out: dict[str, Any] = {}
        for path in self.paths:
            if path.key is not None:
                out[path.key] = self.types.get(path.role, Any)
        for key, value in self.constants.items():
            out[key] = type(value)
        return {key: out[key] for key in self.metadata if key in out}

    def run(self, *, final: bool) -> list[Problem]:
        """Check every path and the plan; remember the types, the deferral and the error.

        Args:
            final: Whether an annotation still unresolvable is unknown for good (the
                first call, :func:`check`) rather than a reason to defer.

        Returns:
            The problems, in the order of the arguments (empty when all is well).
        """
        tracker = self.tracker
        if tracker is None:
            tracker = active.tracker
        problems = self.name_problems(tracker.limits)
        deferred = False
        self.unchecked = {}
        for path in self.paths:
            why: str | None
            try:
                tp, why = self.walk(path)
            except PathTypeError as exc:
                problems.append(_path_problem(path, exc))
                tp, why = Any, None
            except Deferred as exc:
                deferred = True
                tp, why = Any, f"the annotation {exc.name!r} cannot be resolved"
            except Exception as exc:  # the checker must never break an import: unknown
                tp, why = Any, f"the check failed ({type(exc).__name__})"
            self.types[path.role] = tp
            if why is not None:
                self.unchecked[path.role] = why
        keys = {p.key: self.types[p.role] for p in self.paths if p.key is not None}
        if self.kind != "event":  # an order has no event name, so no tracking plan
            self.deferred = deferred and not final
            self.error = self.as_error(problems) if problems else None
            return problems
        try:
            plan = check_plan(
                self.event,
                keys,
                constants=self.constants,
                strict=bool(getattr(tracker, "strict_plan", False)),
            )
        except Exception as exc:  # an exotic leaf type: the plan is not checked
            plan = []
            self.unchecked["metadata"] = f"the tracking plan check failed ({type(exc).__name__})"
        problems.extend(Problem(message) for message in plan)
        self.deferred = deferred and not final
        self.error = self.as_error(problems) if problems else None
        return problems

    def unchecked_items(self) -> list[Unchecked]:
        """What the last check could not check, as :class:`Unchecked` items."""
        where = f"{self.file}:{self.line}"
        texts = {p.role: p.text if p.text is not None else p.source for p in self.paths}
        return [
            Unchecked(
                self.event,
                self.function,
                where,
                role,
                texts.get(role, role),
                reason,
                "" if self.kind == "event" else self.label,
            )
            for role, reason in self.unchecked.items()
        ]

    def name_problems(self, limits: Limits) -> list[Problem]:
        """The event name and metadata keys against the rules validation applies."""
        problems: list[Problem] = []
        if self.kind != "event":
            return problems
        checks: list[tuple[Callable[[str, Limits], object], str]] = [(check_name_rules, self.event)]
        checks += [(check_metadata_key, key) for key in self.metadata]
        for rule, text in checks:
            try:
                rule(text, limits)
            except InvalidEventError as exc:
                problems.append(Problem(str(exc)))
        return problems

    def walk(self, path: TypedPath) -> tuple[Any, str | None]:
        """:func:`~gbtrack._typecheck.walk_steps` for ``path``, cached per root type.

        The same path on the same type recurs across a module (``result.total`` on
        ``Order``): the answer (a type and why it is unchecked, or a
        :class:`PathTypeError`) is kept, so import stays fast. Deferrals are not kept.

        Returns:
            The leaf's type, and why the path is not (fully) checked, or ``None``.
        """
        root = path.root_type()
        key = (root, path.steps, path.leaf, id(self.globalns))
        try:
            hit = _WALKS.get(key)
        except Exception:  # an unhashable annotation: not cached
            return walk_steps(root, path.steps, leaf=path.leaf, globalns=self.globalns)
        if hit is None:
            try:
                hit = walk_steps(root, path.steps, leaf=path.leaf, globalns=self.globalns)
            except PathTypeError as exc:
                # Kept as a fresh error: no traceback, no context, so the cache does
                # not hold the walk's frames (they made every GC pass slow).
                hit = PathTypeError(str(exc), step=exc.step, suggestions=exc.suggestions)
            if len(_WALKS) >= _WALKS_SIZE:
                _WALKS.clear()
            _WALKS[key] = hit
        if isinstance(hit, PathTypeError):
            raise PathTypeError(str(hit), step=hit.step, suggestions=hit.suggestions)
        return hit

    def as_error(self, problems: list[Problem]) -> ExpressionError:
        """One :class:`~gbtrack.ExpressionError` for ``problems``, naming the function."""
        prefix = f"{self.label} on {self.function}"
        if len(problems) == 1:
            message = f"{prefix}: {problems[0].message}"
        else:
            lines = "\n".join(f"  - {p.message}" for p in problems)
            message = f"{prefix}: {len(problems)} problems:\n{lines}"
        first = problems[0]
        return ExpressionError(
            message,
            function=self.function,
            expression=first.expression,
            suggestions=first.suggestions,
        )


class OrderSite(Site):
    """One ``@track_order`` applied to one function: its paths, checked as ``@track``'s.

    Attributes:
        fields: Order argument -> how it is computed (the path, ``literal(...)``, a
            callable), for the catalog.
    """

    __slots__ = ("fields",)
    kind = "order"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.fields: dict[str, str] = {}

    @property
    def label(self) -> str:
        """``@track_order``, for messages."""
        return "@track_order"


def _path_problem(path: TypedPath, exc: PathTypeError) -> Problem:
    if path.text is not None:
        return Problem(f"{path.role}={path.text!r}: {exc}", path.text, exc.suggestions)
    return Problem(f"{path.role} ({path.source}): {exc}", None, exc.suggestions)


_WALKS: dict[tuple[Any, ...], tuple[Any, str | None] | PathTypeError] = {}
_WALKS_SIZE = 4096


# --------------------------------------------------------------------------- the registry

_lock = threading.Lock()
_sites: weakref.WeakValueDictionary[int, Site] = weakref.WeakValueDictionary()
_order = itertools.count()


def register(site: Site) -> None:
    """Remember ``site`` (weakly: it lives as long as its decorated function)."""
    with _lock:
        _sites[next(_order)] = site


def sites() -> list[Site]:
    """Every registered site still alive, in the order of decoration.

    A site whose module was unloaded (removed from ``sys.modules``) is left out, even
    while reference cycles keep it alive.
    """
    with _lock:
        alive = [site for _, site in sorted(_sites.items())]
    return [site for site in alive if site.module in sys.modules]


# --------------------------------------------------------------------------- when it runs


def first_call(plan: Any, tracker: Tracker) -> bool:
    """Run a deferred plan's checks at its first call; ``True``: drop this call's event.

    A plan whose checks were deferred at decoration calls this (through its
    ``pending`` attribute) until the checks pass, or for every call when they fail:
    each such call is a counted drop (reason ``invalid_expression``), raised as
    :class:`~gbtrack.TrackingError` when the tracker is ``strict``.
    """
    site: Site | None = plan.pending
    if site is None:
        return False
    if site.error is None:
        site.run(final=True)
        if site.error is None:
            plan.pending = None
            return False
    error = site.error
    assert error is not None
    tracker.drop("invalid_expression", str(error), function=site.function, exc=error)
    return True


def check() -> CheckReport:
    """Check every ``@track`` applied so far against its annotations and the tracking plan.

    Decoration already checks what it can; this runs the checks again for every
    decorated function still alive, now that forward references (classes defined
    further down, ``from __future__ import annotations``) can be resolved and every
    event schema is registered. String annotations are evaluated now, in their
    module. What cannot be proved right or wrong (an annotation that still cannot be
    resolved, such as a ``TYPE_CHECKING``-only import; ``Any``; a class with
    ``__getattr__``) is *unchecked*: counted and listed in the report, never an error.
    The ``gbtrack`` pytest plugin calls it once per session.

    Returns:
        A :class:`CheckReport`: how many expressions were checked, and each one left
        unchecked with the reason.

    Raises:
        ExpressionError: Listing every problem, one function per line; its
            ``function``, ``expression`` and ``suggestions`` are the first problem's.

    Examples:
        >>> import gbtrack
        >>> report = gbtrack.check()  # nothing wrong so far
        >>> report.checked <= report.paths
        True
    """
    errors: list[ExpressionError] = []
    checked = sites()
    unchecked: list[Unchecked] = []
    for site in checked:
        if site.run(final=True):
            assert site.error is not None
            errors.append(site.error)
        unchecked.extend(site.unchecked_items())
    if not errors:
        return CheckReport(len(checked), sum(len(s.paths) for s in checked), tuple(unchecked))
    count = len(errors)
    lines = "\n".join(f"- {error}" for error in errors)
    first = errors[0]
    raise ExpressionError(
        f"gbtrack.check() found problems in {count} tracked function"
        f"{'s' if count != 1 else ''}:\n{lines}",
        function=first.function,
        expression=first.expression,
        suggestions=first.suggestions,
    )
