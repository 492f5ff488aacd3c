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

from gbtrack._errors import ExpressionError
from gbtrack._schema import check_plan
from gbtrack._typecheck import Deferred, Leaf, PathTypeError, check_steps

if TYPE_CHECKING:
    from gbtrack._expr import Step
    from gbtrack._tracker import Tracker

__all__ = ["Problem", "Site", "TypedPath", "check", "first_call", "register", "sites"]

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
    )

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

    def __repr__(self) -> str:
        return f"<Site @track({self.event!r}) on {self.function} at {self.file}:{self.line}>"

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
        problems: list[Problem] = []
        deferred = False
        for path in self.paths:
            try:
                tp = self.walk(path)
            except PathTypeError as exc:
                problems.append(_path_problem(path, exc))
                tp = Any
            except Deferred:
                deferred = True
                tp = Any
            except Exception:  # the checker must never break an import: unknown
                tp = Any
            self.types[path.role] = tp
        tracker = self.tracker
        if tracker is None:
            from gbtrack._tracker import active  # the default tracker, as it is now

            tracker = active.tracker
        keys = {p.key: self.types[p.role] for p in self.paths if p.key is not None}
        problems.extend(
            Problem(message)
            for message in check_plan(
                self.event,
                keys,
                constants=self.constants,
                strict=bool(getattr(tracker, "strict_plan", False)),
            )
        )
        self.deferred = deferred and not final
        self.error = self.as_error(problems) if problems else None
        return problems

    def walk(self, path: TypedPath) -> Any:
        """:func:`~gbtrack._typecheck.check_steps` for ``path``, cached per root type.

        The same path on the same type recurs across a module (``result.total`` on
        ``Order``): the answer (a type or a :class:`PathTypeError`) is kept, so import
        stays fast. Deferrals are not kept.
        """
        root = path.root_type()
        key = (root, path.steps, path.leaf, id(self.globalns))
        try:
            hit = _WALKS.get(key)
        except TypeError:  # an unhashable annotation: not cached
            return check_steps(root, path.steps, leaf=path.leaf, globalns=self.globalns)
        if hit is None:
            try:
                hit = (check_steps(root, path.steps, leaf=path.leaf, globalns=self.globalns),)
            except PathTypeError as exc:
                hit = exc
            if len(_WALKS) >= _WALKS_SIZE:
                _WALKS.clear()
            _WALKS[key] = hit
        if isinstance(hit, PathTypeError):
            raise PathTypeError(str(hit), step=hit.step, suggestions=hit.suggestions)
        return hit[0]

    def as_error(self, problems: list[Problem]) -> ExpressionError:
        """One :class:`~gbtrack.ExpressionError` for ``problems``, naming the function."""
        prefix = f"@track({self.event!r}) on {self.function}"
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


def _path_problem(path: TypedPath, exc: PathTypeError) -> Problem:
    if path.text is not None:
        return Problem(f"{path.role}={path.text!r}: {exc}", path.text, exc.suggestions)
    return Problem(f"{path.role} ({path.source}): {exc}", None, exc.suggestions)


_WALKS: dict[tuple[Any, ...], tuple[Any] | PathTypeError] = {}
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


def check() -> None:
    """Check every ``@track`` applied so far against its annotations and the tracking plan.

    Decoration already checks what it can; this runs the checks again for every
    decorated function still alive, now that forward references (classes defined
    further down, ``from __future__ import annotations``) can be resolved and every
    event schema is registered. An annotation that still cannot be resolved (a
    ``TYPE_CHECKING``-only import) is not checked. The ``gbtrack`` pytest plugin calls
    it once per session.

    Raises:
        ExpressionError: Listing every problem, one function per line; its
            ``function``, ``expression`` and ``suggestions`` are the first problem's.

    Examples:
        >>> import gbtrack
        >>> gbtrack.check()  # nothing wrong so far
    """
    errors: list[ExpressionError] = []
    for site in sites():
        if site.run(final=True):
            assert site.error is not None
            errors.append(site.error)
    if not errors:
        return
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
