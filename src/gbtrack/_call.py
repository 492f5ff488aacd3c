"""Call: what resolvers see of one call of a tracked function.

Binding is precomputed: :class:`Binder` reads the signature once, at decoration time,
and binds a call by parameter position and name without :mod:`inspect` or
``Signature.bind`` on the call path.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, Final

from gbtrack._context import current_identity
from gbtrack._event import Identity
from gbtrack._expr import MISSING

__all__ = ["Binder", "Call", "ParamReader"]

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

    def reader(self, name: str) -> ParamReader:
        """Return the reader of parameter ``name``: ``(instance, args, kwargs) -> value``.

        Positions are precomputed; ``instance`` (wrapt's bound ``self``/``cls``) takes
        the first parameter's place. A parameter not passed and without a default
        reads as :data:`~gbtrack._expr.MISSING`.
        """
        position, kind, default = self.params[name]
        if kind is inspect.Parameter.VAR_POSITIONAL:
            start = self._n_positional

            def read_var_positional(
                instance: object, args: tuple[Any, ...], kwargs: Mapping[str, Any]
            ) -> object:
                if instance is None:
                    return args[start:]
                # wrapt took self/cls out of args: it is the first of *args when nothing precedes.
                return args[start - 1 :] if start else (instance, *args)

            return read_var_positional
        if kind is inspect.Parameter.VAR_KEYWORD:
            # Only names that can be passed by keyword are bound elsewhere; a keyword named
            # like a positional-only parameter or *args lands in **kwargs, as in Python.
            named = frozenset(
                n
                for n, (_, k, _) in self.params.items()
                if n != name
                and k in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
            )

            def read_var_keyword(
                instance: object, args: tuple[Any, ...], kwargs: Mapping[str, Any]
            ) -> object:
                return {k: v for k, v in kwargs.items() if k not in named}

            return read_var_keyword
        key = "" if kind is inspect.Parameter.POSITIONAL_ONLY else name  # never from kwargs
        if position < 0:  # keyword-only: never from args

            def read_keyword_only(
                instance: object, args: tuple[Any, ...], kwargs: Mapping[str, Any]
            ) -> object:
                return kwargs.get(name, default)

            return read_keyword_only
        shifted = position - 1  # where the parameter is when wrapt has bound self/cls

        def read_param(
            instance: object, args: tuple[Any, ...], kwargs: Mapping[str, Any]
        ) -> object:
            if instance is None:
                if position < len(args):
                    return args[position]
            elif shifted < 0:
                return instance
            elif shifted < len(args):
                return args[shifted]
            if key and key in kwargs:
                return kwargs[key]
            return default

        return read_param

    def bind(
        self, instance: object, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> dict[str, object]:
        """Return the arguments by parameter name, defaults applied, missing ones left out.

        ``instance`` (wrapt's bound ``self``/``cls``) takes the first parameter's place.
        """
        out: dict[str, object] = {}
        for name in self.names:
            value = self.reader(name)(instance, args, kwargs)
            if value is not MISSING:
                out[name] = value
        return out


ParamReader = Callable[[object, tuple[Any, ...], Mapping[str, Any]], object]
"""Reads one parameter from a call: ``(instance, args, kwargs) -> value``."""


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
        return current_identity()

    def __repr__(self) -> str:
        name = getattr(self.function, "__qualname__", repr(self.function))
        state = f"error={type(self.error).__name__}" if self.error is not None else "ok"
        return f"<Call {name} {state}>"
