"""Named resolvers: ``func(call) -> value`` registered as roots of the path language.

A registered name must exist when a decorator using it is applied (a typo fails at
import). The decorator looks the function up again at each call, so re-registering a
name (say, in a test) takes effect at once; a name unregistered after decoration
makes later events drop with reason ``resolver_error``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar, overload

from gbtrack._errors import ExpressionError

if TYPE_CHECKING:
    from gbtrack._call import Call

__all__ = ["RESERVED_ROOTS", "Resolver", "register_resolver", "registered", "unregister_resolver"]

Resolver = Callable[["Call"], object]
"""A resolver: receives the :class:`~gbtrack.Call`, returns a value (``None`` = missing)."""

RESERVED_ROOTS = frozenset({"result", "error", "args", "kwargs", "identity"})
"""Roots with a fixed meaning in every expression."""

R = TypeVar("R", bound=Callable[["Call"], object])

_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_lock = threading.Lock()
_registry: dict[str, Callable[[Call], object]] = {}


def registered() -> dict[str, Callable[[Call], object]]:
    """Return the registry itself (read by the decorator at call time; do not mutate)."""
    return _registry


@overload
def register_resolver(name: str) -> Callable[[R], R]: ...
@overload
def register_resolver(name: str, func: R) -> R: ...
def register_resolver(name: str, func: R | None = None) -> R | Callable[[R], R]:
    """Register ``func(call) -> value`` as the root ``name`` of the path language.

    Usable directly or as a decorator. Registering an existing name replaces it.

    Args:
        name: The root name, an identifier not starting with ``_`` and not a reserved
            root (``result``, ``error``, ``args``, ``kwargs``, ``identity``).
        func: The resolver; omit it to use ``register_resolver(name)`` as a decorator.

    Returns:
        ``func`` (or a decorator that registers and returns its argument).

    Raises:
        ExpressionError: If ``name`` is not a valid root name.
        TypeError: If ``func`` is not callable.

    Examples:
        >>> from gbtrack import register_resolver, unregister_resolver
        >>> @register_resolver("tenant")
        ... def tenant(call):
        ...     return {"id": "t-1"}
        >>> unregister_resolver("tenant")
    """
    if not isinstance(name, str) or not _IDENT.match(name):
        raise ExpressionError(
            f"resolver name {name!r} must be an identifier that does not start with '_'",
            expression=name if isinstance(name, str) else None,
        )
    if name in RESERVED_ROOTS:
        raise ExpressionError(
            f"resolver name {name!r} is a reserved root ({', '.join(sorted(RESERVED_ROOTS))})",
            expression=name,
        )

    def register(resolver: R) -> R:
        if not callable(resolver):
            raise TypeError(f"a resolver must be callable, got {type(resolver).__name__}")
        with _lock:
            _registry[name] = resolver
        return resolver

    return register if func is None else register(func)


def unregister_resolver(name: str) -> None:
    """Remove the resolver registered as ``name``.

    Raises:
        KeyError: If no resolver is registered under ``name``.
    """
    with _lock:
        try:
            del _registry[name]
        except KeyError:
            raise KeyError(f"no resolver is registered as {name!r}") from None
