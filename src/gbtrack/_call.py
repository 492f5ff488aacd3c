"""Call: what resolvers see of one call of a tracked function.

Binding is precomputed: :class:`Binder` reads the signature once, at decoration time,
and binds a call by parameter position and name without :mod:`inspect` or
``Signature.bind`` on the call path.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, Final

from gbtrack._context import _identity
from gbtrack._event import Identity
from gbtrack._expr import MISSING

__all__ = ["Binder", "Call"]

_POSITIONAL: Final = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


class Binder:
    """Parameter positions, names and defaults of one function, read once.

    Args:
        func: The function whose signature to read.

    Attributes:
        names: Parameter names in order (``self``/``cls`` included).
        params: ``name -> (position or -1, kind, default or MISSING)``.
    """

    __slots__ = ("_n_positional", "names", "params", "var_keyword", "var_positional")

    def __init__(self, func: Callable[..., Any]) -> None:
        try:
            signature = inspect.signature(func, follow_wrapped=False)
        except (TypeError, ValueError):  # builtins without a signature: only *args/**kwargs
            signature = inspect.Signature(
                [
                    inspect.Parameter("args", inspect.Parameter.VAR_POSITIONAL),
                    inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD),
                ]
            )
        self.params: dict[str, tuple[int, inspect._ParameterKind, object]] = {}
        self.var_positional: str | None = None
        self.var_keyword: str | None = None
        position = 0
        for param in signature.parameters.values():
            default = MISSING if param.default is inspect.Parameter.empty else param.default
            if param.kind in _POSITIONAL:
                self.params[param.name] = (position, param.kind, default)
                position += 1
            else:
                self.params[param.name] = (-1, param.kind, default)
                if param.kind is inspect.Parameter.VAR_POSITIONAL:
                    self.var_positional = param.name
                elif param.kind is inspect.Parameter.VAR_KEYWORD:
                    self.var_keyword = param.name
        self._n_positional = position
        self.names = tuple(self.params)

    def getter(self, name: str) -> tuple[int, str, object, int]:
        """Return the precomputed ``(position, name, default, mode)`` to read ``name``.

        ``mode`` is 0 for a named parameter, 1 for ``*args``, 2 for ``**kwargs``.
        """
        position, kind, default = self.params[name]
        if kind is inspect.Parameter.VAR_POSITIONAL:
            return (self._n_positional, name, (), 1)
        if kind is inspect.Parameter.VAR_KEYWORD:
            return (-1, name, tuple(n for n in self.names if n != name), 2)
        if kind is inspect.Parameter.POSITIONAL_ONLY:
            return (position, "", default, 0)  # never read from kwargs
        return (position, name, default, 0)

    def bind(
        self, instance: object, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> dict[str, object]:
        """Return the arguments by parameter name, defaults applied, missing ones left out.

        ``instance`` (wrapt's bound ``self``/``cls``) takes the first parameter's place.
        """
        out: dict[str, object] = {}
        for name in self.names:
            value = read_param(self.getter(name), instance, args, kwargs)
            if value is not MISSING:
                out[name] = value
        return out


def read_param(
    getter: tuple[int, str, object, int],
    instance: object,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
) -> object:
    """Read one parameter's value from a call, by a precomputed :meth:`Binder.getter`."""
    position, name, default, mode = getter
    if instance is not None:
        if position == 0 and mode == 0:
            return instance
        position -= 1
    if mode == 0:
        if 0 <= position < len(args):
            return args[position]
        if name and name in kwargs:
            return kwargs[name]
        return default
    if mode == 1:
        return args[position:] if position >= 0 else args
    named: tuple[str, ...] = default  # type: ignore[assignment]
    return {k: v for k, v in kwargs.items() if k not in named}


class Call:
    """One call of a tracked function, as resolvers see it.

    Attributes:
        function: The tracked function (the undecorated one).
        args: The positional arguments as passed (without a bound ``self``/``cls``).
        kwargs: The keyword arguments as passed.
        result: The return value (a generator's return value); ``None`` on error.
        error: The exception raised, or ``None`` on success.
    """

    __slots__ = (
        "_binder",
        "_identity",
        "_instance",
        "args",
        "error",
        "function",
        "kwargs",
        "result",
    )

    def __init__(
        self,
        function: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        *,
        result: object = None,
        error: BaseException | None = None,
        instance: object = None,
        binder: Binder | None = None,
    ) -> None:
        self.function = function
        self.args = args
        self.kwargs = kwargs
        self.result = result
        self.error = error
        self._instance = instance
        self._binder = binder
        self._identity: Identity | None = None

    @property
    def arguments(self) -> dict[str, object]:
        """The arguments by parameter name (``self``/``cls`` included), defaults applied."""
        binder = self._binder
        if binder is None:
            binder = self._binder = Binder(self.function)
        return binder.bind(self._instance, self.args, self.kwargs)

    @property
    def identity(self) -> Identity:
        """The ambient identity (see :func:`gbtrack.identify`) when the event is built."""
        if self._identity is None:
            self._identity = _identity.get()
        return self._identity

    def __repr__(self) -> str:
        name = getattr(self.function, "__qualname__", repr(self.function))
        state = f"error={type(self.error).__name__}" if self.error is not None else "ok"
        return f"<Call {name} {state}>"
