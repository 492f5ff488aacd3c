"""One generated wrapper per plan: source written at decoration time, compiled once.

As attrs and dataclasses write ``__init__``, :func:`build_wrapper` writes the wrapt
wrapper of one ``@track`` as Python source for its shape (sync, coroutine, generator,
async generator), compiles it with :func:`compile` and registers the source in
:mod:`linecache` under a unique pseudo-filename, so tracebacks through it show its lines.
The constants are globals of each wrapper's own namespace, named by their place in the
layout, so functions tracked alike (the same shape, roots and names) share one source,
one compilation and one pseudo-file; each gets its constants from a recipe.

For a plan of the plain shapes (:class:`~gbtrack._plan.FastSpec`) the source reads the
values straight-line after the call: ``when`` first, then each root (a parameter by
the :class:`~gbtrack._call.Binder`'s rules written out, or the result) behind one type
guard (the first class seen that reads names as attributes; ``dict`` read by key; any
other class that reads attributes at the cost of one call), then one ``.name`` read per
value (a longer path through its compiled reader). When the tracker's gate is open,
nothing raised, every value is plain and the ambient identity cannot change the event,
it hands one :class:`~gbtrack.EventDraft` to the gate (with the plan's own outcome
hook as a tenth element when ``@track`` was given one: another layout, another source;
a plan without one is written as before). Everything else (the gate
closed, a guard failed, a read raised) takes the plan's general path, which reads again
and reports exactly as it always has (a property read on the way runs once more).

:func:`build_rows` writes one more, smaller function the same way: ``@track_order``'s
loop from ``each()``'s elements to wire line items (type guards per level of names).

The source stays in :mod:`linecache` for the life of the process, as attrs' does: a
few kilobytes per distinct source.
"""

from __future__ import annotations

import inspect
import itertools
import linecache
import os
import time
from collections.abc import Callable
from types import CodeType
from typing import TYPE_CHECKING, Any, Final, Literal

from gbtrack._context import ambient
from gbtrack._event import EventDraft
from gbtrack._expr import NAME, compile_steps, reads_attributes
from gbtrack._plan import ConstantPlan, FastSource, FastSpec, Plan
from gbtrack._state import active

if TYPE_CHECKING:
    from gbtrack._state import CallSink

__all__ = ["Mode", "RowField", "Shape", "Wrapper", "build_rows", "build_wrapper", "mode"]

Shape = Literal["sync", "coroutine", "generator", "async_generator"]


def shape_of(target: Callable[..., Any], is_async_gen: bool) -> Shape:
    """The wrapper shape for a decorated function (``is_async_gen`` already known)."""
    if is_async_gen:
        return "async_generator"
    if inspect.iscoroutinefunction(target):
        return "coroutine"
    return "generator" if inspect.isgeneratorfunction(target) else "sync"


Wrapper = Callable[[Any, Any, tuple[Any, ...], dict[str, Any]], Any]

Mode = Literal["gate", "general", "submit"]
mode: Mode = "gate"
"""How wrappers generated from now on emit (read at decoration time).

``"gate"``: the straight-line path when the tracker's gate is open (production).
``"general"``: always the plan's general path. ``"submit"``: the straight-line path
also when the gate is closed, handing the draft to ``tracker.submit`` (what the general
path ends with); for the tests, whose in-memory senders keep the gate closed.
"""

_PLAIN: Final = frozenset({str, int, float, bool, type(None)})  # metadata kept as it is
# "Surely not blank" for a str, without a call: its first character is printable ASCII
# other than the space (two comparisons, 45 ns less than `.strip()` on this path). Any
# other text (empty, a leading space or control character, non-ASCII first) takes the
# general path, which tests blankness in full: the outcome is the same.
_NON_BLANK: Final = "'!' <= {} < '\\x7f'"
# The call of the wrapped function: `**kwargs` builds a new dict on every call (~40 ns,
# a tenth of wrapt's own cost), so an empty one is left out.
_CALL: Final = "wrapped(*args, **kwargs) if kwargs else wrapped(*args)"
_counter = itertools.count(1)


class _Unseen:
    """The root type guards' class until a root's class is seen: no value has it."""


class _Not:
    """A value that fails every guard: a root of a class the wrapper does not read."""


_NOT: Final = _Not()


def build_wrapper(
    plan: Plan | ConstantPlan,
    shape: Shape,
    fixed: CallSink | None,
    send_ok: bool,
    send_err: bool,
) -> Wrapper:
    """Generate, compile and return the wrapt wrapper of ``plan`` for ``shape``.

    Args:
        plan: The compiled plan.
        shape: Which body: ``"sync"``, ``"coroutine"``, ``"generator"`` or
            ``"async_generator"``.
        fixed: The tracker given to ``@track`` (``None``: the default one, read per call).
        send_ok: Whether a normal return sends.
        send_err: Whether an exception sends.
    """
    spec = plan.fast if isinstance(plan, Plan) and mode != "general" else None
    ns: dict[str, Any] = {
        "__name__": __name__,
        "_active": active,
        "_fixed": fixed,
        "_emit": plan.emitter,
    }
    key = _layout(plan, spec, shape, fixed is not None, send_ok, send_err)
    known = _LAYOUTS.get(key)
    if known is None:
        gen = _Source(plan, spec, ns)
        code = _compiled(gen.module(shape, fixed is not None, send_ok, send_err), shape)
        if len(_LAYOUTS) < _MAX_CODE:
            _LAYOUTS[key] = (code, gen.recipe)
    else:  # laid out alike: the same code, this plan's constants
        code, recipe = known
        for name, derive in recipe:
            ns[name] = derive(plan, spec)
    exec(code, ns)  # noqa: S102 - our own source, built from compiled plans
    # The functions live in the factory's closure, not in `ns`: no reference cycle, so a
    # wrapper (and its plan's weakly registered site) goes as soon as its function does.
    wrapper: Wrapper = ns.pop("make")()
    return wrapper


Derive = Callable[[Any, Any], object]
"""How a constant of a wrapper's namespace follows from ``(plan, spec)``."""


def _layout(
    plan: Plan | ConstantPlan,
    spec: FastSpec | None,
    shape: Shape,
    fixed: bool,
    send_ok: bool,
    send_err: bool,
) -> tuple[object, ...]:
    """Everything the source depends on (constants' values excepted)."""
    head = (shape, fixed, send_ok, send_err, mode)
    if spec is None or not isinstance(plan, Plan):
        return head
    params = plan.binder.params
    return (
        *head,
        plan.pending is not None,
        tuple(root if root == "result" else (root, *params[root][:2]) for root in spec.roots),
        spec.when,
        tuple(f if f is None or isinstance(f, tuple) else "constant" for f in spec.identity),
        spec.keep_token,
        tuple("constant" if c else m for m, c in zip(spec.meta, spec.constant, strict=True)),
        plan.on_outcome is not None,
    )


_LAYOUTS: dict[tuple[object, ...], tuple[CodeType, list[tuple[str, Derive]]]] = {}


def _identity_field(at: int) -> Derive:
    return lambda plan, spec: spec.identity[at]


def _meta_value(at: int) -> Derive:
    return lambda plan, spec: spec.meta[at]


# Under gbtrack's own directory, so that warnings naming the user's line skip its frames
# as they skip every other gbtrack frame (gbtrack._report.warn_user).
_HERE: Final = os.path.dirname(__file__) + os.sep
_CODE: dict[str, CodeType] = {}
_MAX_CODE: Final = 1024  # distinct sources kept compiled; more are compiled each time


def _compiled(source: str, shape: Shape) -> CodeType:
    """``source`` compiled once: wrappers of the same shape and names share the code.

    Compiling costs about a millisecond; the source names its constants (globals of
    each wrapper's own namespace) the same way for the same layout, so functions
    tracked alike share one compilation and one pseudo-file in :mod:`linecache`.
    """
    code = _CODE.get(source)
    if code is None:
        filename = f"{_HERE}<gbtrack generated wrapper #{next(_counter)} ({shape})>"
        code = compile(source, filename, "exec")
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        if len(_CODE) < _MAX_CODE:
            _CODE[source] = code
    return code


class _Source:
    """Writes one wrapper's source; constants go into ``ns`` under generated names."""

    def __init__(self, plan: Plan | ConstantPlan, spec: FastSpec | None, ns: dict[str, Any]):
        self.plan = plan
        self.spec = spec
        self.ns = ns
        self.learners: list[str] = []
        # How each constant written here follows from a plan laid out alike.
        self.recipe: list[tuple[str, Derive]] = []

    def put(self, name: str, value: object, derive: Derive | None = None) -> str:
        """Set ``name`` in the namespace and return it.

        ``derive`` gives the value for another plan laid out alike (by default the same
        value: what the layout alone decides).
        """
        self.ns[name] = value
        self.recipe.append((name, derive or (lambda plan, spec: value)))
        return name

    def module(self, shape: Shape, fixed: bool, send_ok: bool, send_err: bool) -> str:
        """``make()``, the factory of the wrapper and of its helpers (as closures)."""
        functions = self.wrapper(shape, fixed, send_ok, send_err)
        lines = [*self.learners, *functions.split("\n"), "return wrapper"]
        return "def make():\n" + "".join(f"    {line}\n" if line else "\n" for line in lines)

    def const(self, prefix: str, value: object, derive: Derive | None = None) -> str:
        return self.put(f"_{prefix}{len(self.ns)}", value, derive)

    def wrapper(self, shape: Shape, fixed: bool, send_ok: bool, send_err: bool) -> str:
        lookup = "_fixed" if fixed else "_active.tracker"  # a Tracker is always truthy
        head = [
            "def wrapper(wrapped, instance, args, kwargs):",
            f"    tracker = {lookup}",
            "    if not tracker.enabled:",
            f"        return {_CALL}",
        ]
        if shape == "sync":
            return "\n".join([*head, *self.body(f"result = {_CALL}", send_ok,
                                                 send_err, "return result")]) + "\n"  # fmt: skip
        if shape == "coroutine":
            run = "async def run(tracker, wrapped, instance, args, kwargs):"
            call = f"result = await ({_CALL})"
            tail = "return result"
            head.append("    return run(tracker, wrapped, instance, args, kwargs)")
        elif shape == "generator":
            # yield from forwards send/throw/close; a close() before the end
            # (GeneratorExit) is neither success nor error, so nothing is sent.
            run = "def run(tracker, gen, instance, args, kwargs):"
            call = "result = yield from gen"
            tail = "return result"
            head.append(f"    return run(tracker, {_CALL}, instance, args, kwargs)")
        else:
            run = "async def run(tracker, agen, instance, args, kwargs):"
            call = "result = None\n" + _ASYNC_GEN_LOOP
            tail = "return"
            head.append(f"    return run(tracker, {_CALL}, instance, args, kwargs)")
        body = self.body(call, send_ok, send_err, tail)
        return "\n".join([*head, "", "", run, *body]) + "\n"

    def body(self, call: str, send_ok: bool, send_err: bool, tail: str) -> list[str]:
        """The call, then the event: ``tail`` ends the function after a normal return."""
        lines: list[str] = []
        call_lines = call.split("\n")
        if send_err:
            lines += ["    try:", *(f"        {c}" for c in call_lines)]
            lines += ["    except Exception as exc:"]
            lines += ["        _emit(tracker, instance, args, kwargs, None, exc)", "        raise"]
        else:
            lines += [f"    {c}" for c in call_lines]
        if send_ok:
            if self.spec is not None:
                lines += self.fast(self.spec, tail)
            lines += ["    _emit(tracker, instance, args, kwargs, result, None)"]
        lines.append(f"    {tail}")
        return lines

    def fast(self, spec: FastSpec, tail: str) -> list[str]:
        """The straight-line path: reads, guards, one draft to the gate."""
        plan = self.plan
        assert isinstance(plan, Plan)
        # Production: the fields to the sender's gate, which makes the draft where it can
        # (off this thread). The tests' "submit" mode: a draft to `tracker.submit`.
        submit = mode == "submit"
        entry = "tracker.gate or tracker.submit" if submit else "tracker.fields_gate"
        out = [f"    gate = {entry}"]
        guard = "gate is not None"
        if plan.pending is not None:  # checks deferred to the first call run there first
            self.put("_plan", plan, lambda plan, spec: plan)
            guard += " and _plan.pending is None"
        out += [f"    if {guard}:", "        try:"]
        # The value's expression per source; a root's one-name reads grouped under its guard.
        names: dict[FastSource, str] = {}
        sources: list[FastSource] = [
            s for s in (*spec.identity, *spec.meta) if isinstance(s, tuple)
        ]
        first: list[str] = []  # `when` is read before anything else, as the general path does
        body: list[str] = []
        checks: list[str] = []
        for index, root in enumerate(spec.roots):
            var = f"r{index}"
            if spec.when is not None and root == spec.when[0]:
                first += self.read_root(root, var)
                first.append(f"w = {self.const('W', compile_steps(spec.when[1]))}({var})")
                checks.append("w")  # falsy, ABSENT or MISSING: the general path skips
            else:
                body += self.read_root(root, var)
            stepped: list[FastSource] = []
            for source in dict.fromkeys(s for s in sources if s[0] == root):
                steps = source[1]
                if not steps:
                    names[source] = var
                elif len(steps) == 1 and steps[0][0] == NAME:
                    stepped.append(source)
                else:  # a longer path: its compiled reader (MISSING, ABSENT fail the guards)
                    value = names[source] = f"v{len(names)}"
                    body.append(f"{value} = {self.const('S', compile_steps(steps))}({var})")
            if not stepped:
                continue
            values = [f"v{len(names) + k}" for k in range(len(stepped))]
            names.update(zip(stepped, values, strict=True))
            pairs = [(v, s[1][0][1]) for s, v in zip(stepped, values, strict=True)]
            attrs = [f"    {v} = {var}.{name}" for v, name in pairs]
            body += [f"if type({var}) is _T{index}:", *attrs, f"elif type({var}) is dict:"]
            body += [f"    {v} = {var}[{name!r}]" for v, name in pairs]
            # Another class that reads names as attributes (the first one seen becomes
            # the guard's); anything else (a mapping, None, a module ...) fails the guards.
            body += [f"elif _learn(type({var}), '_T{index}'):", *attrs]
            self.learners = _LEARN
            self.put("_reads_attributes", reads_attributes)
            self.put("_Unseen", _Unseen)
            body += ["else:", f"    {' = '.join(values)} = _NOT"]
            self.put(f"_T{index}", _Unseen)  # each wrapper learns its own
        if first:
            body = [*first, "if w:", *(f"    {line}" for line in body or ["pass"])]
        out += [f"            {line}" for line in body]
        # The ambient identity (`a`, read last) completes an event about its own
        # customer: given no customer id, the event takes its fields where none is given;
        # given the ambient one, the general path.
        ambient_cid = spec.identity[0] is None
        fields: list[str] = []
        for at, field in enumerate(spec.identity):
            if isinstance(field, tuple):
                var = names[field]
                if at == 0:  # a non-blank str, or an int as its digits (the id is `c`)
                    checks.append(
                        f"(type({var}) is str and {_NON_BLANK.format('(c := ' + var + ')')}"
                        f" or type({var}) is int and (c := _digits({var})))"
                    )
                    fields.append("c")
                    continue
                checks.append(f"({var} is None or type({var}) is str and {_NON_BLANK.format(var)})")
                fields.append(f"({var} if {var} is not None else a[{at}])" if ambient_cid else var)
            elif field is not None:
                fields.append(self.const("C", field, _identity_field(at)))
            else:
                fields.append(f"a[{at}]" if ambient_cid else "None")
        token = "a[3]" if ambient_cid and spec.keep_token else "None"
        values = []
        for at, (item, constant) in enumerate(zip(spec.meta, spec.constant, strict=True)):
            if constant:
                values.append(self.const("M", item, _meta_value(at)))
            else:
                var = names[item]  # type: ignore[index]
                values.append(var)
                checks.append(f"type({var}) in _P")
        checks.append("a[0] is not None" if ambient_cid else f"a[0] != {fields[0]}")
        fixed: tuple[tuple[str, object], ...] = (
            ("_P", _PLAIN),
            ("_NOT", _NOT),
            ("_ambient", ambient),
            ("_new", tuple.__new__),
            ("_Draft", EventDraft),
            ("_now", time.time),
            ("_digits", int.__repr__),  # an int id's text, as the general path converts it
        )
        for fixed_name, fixed_value in fixed:
            self.put(fixed_name, fixed_value)
        self.put("_name", plan.name, lambda plan, spec: plan.name)
        self.put("_keys", plan.keys, lambda plan, spec: plan.keys)
        self.put("_qualname", plan.qualname, lambda plan, spec: plan.qualname)
        tuple_text = f"({', '.join(values)},)" if values else "()"
        # The plan's own outcome hook rides on the draft as a tenth element; a plan
        # without one writes the nine-field draft, the same source as ever.
        hook = ""
        if plan.on_outcome is not None:
            hook = ", " + self.put("_hook", plan.on_outcome, lambda plan, spec: plan.on_outcome)
        out += ["        except Exception:", "            pass", "        else:"]
        out.append("            a = _ambient()")
        out.append("            if (")
        out.append("                " + "\n                and ".join(checks))
        out.append("            ):")
        draft = (
            f"(_name, {fields[0]}, {fields[1]}, {fields[2]},"
            f" {token}, _keys, {tuple_text}, _qualname, _now(){hook})"
        )
        out += [
            f"                gate({f'_new(_Draft, {draft})' if submit else draft})",
            f"                {tail}",
        ]
        return out

    def read_root(self, root: str, var: str) -> list[str]:
        """``var = <root>``: the result, or a parameter by the Binder's rules."""
        if root == "result":
            return [f"{var} = result"]
        assert isinstance(self.plan, Plan)
        position, kind, default = self.plan.binder.params[root]
        dflt = self.const("D", default, lambda plan, spec: plan.binder.params[root][2])
        if kind is inspect.Parameter.KEYWORD_ONLY:
            return [f"{var} = kwargs.get({self.const('K', root)}, {dflt})"]
        key = self.const("K", root) if kind is inspect.Parameter.POSITIONAL_OR_KEYWORD else None

        def positional(at: int, indent: str) -> list[str]:
            test = "args" if at == 0 else f"len(args) > {at}"
            lines = [f"{indent}if {test}:", f"{indent}    {var} = args[{at}]"]
            if key is not None:
                lines.append(f"{indent}elif {key} in kwargs:")
                lines.append(f"{indent}    {var} = kwargs[{key}]")
            return [*lines, f"{indent}else:", f"{indent}    {var} = {dflt}"]

        # wrapt passes a bound self/cls as `instance`: it takes the first parameter's place.
        bound = [f"    {var} = instance"] if position == 0 else positional(position - 1, "    ")
        return ["if instance is None:", *positional(position, "    "), "else:", *bound]


_LEARN: Final = [
    "def _learn(cls, guard):",
    "    if not _reads_attributes(cls):",
    "        return False",
    "    guards = globals()  # this wrapper's own namespace",
    "    if guards[guard] is _Unseen:",
    "        guards[guard] = cls",
    "    return True",
    "",
    "",
]

_ASYNC_GEN_LOOP: Final = """\
# Async generators have no `yield from`: forward asend/athrow/aclose by hand.
try:
    value = await agen.__anext__()
    while True:
        try:
            sent = yield value
        except GeneratorExit:
            await agen.aclose()
            raise
        except BaseException as thrown:
            value = await agen.athrow(thrown)
        else:
            value = await agen.asend(sent)
except StopAsyncIteration:
    pass"""


# --- @track_order's line items --------------------------------------------------------------
RowField = tuple[str, "tuple[str, ...] | None", object, "Literal['text', 'amount'] | None"]
"""One line item field: its wire key, its names from the element (``None``: the constant),
the constant, and what the straight line keeps as it is (``None``: nothing)."""


def build_rows(
    fields: tuple[RowField, ...],
    slow: Callable[[int, tuple[object, ...]], dict[str, object]],
    bail: type[Exception],
) -> Callable[[Any], list[dict[str, object]]]:
    """Generate the loop that maps ``each()``'s elements to wire line items.

    Each level of names is read behind one type guard, as :meth:`_Source.fast` reads a
    root (the first class seen that reads names as attributes; ``dict`` by key; any
    other class that reads attributes at the cost of one call; anything else raises
    ``bail``, as does a name not found). An element whose values are all plain (what
    each field's kind keeps as it is: a non-blank exact ``str`` for ``"text"``, a
    finite non-negative ``int``/``float`` for ``"amount"``) becomes its dict here;
    any other goes to ``slow(index, row)`` with its values in field order.
    """
    ns: dict[str, Any] = {
        "__name__": __name__,
        "_reads_attributes": reads_attributes,
        "_Unseen": _Unseen,
        "_slow": slow,
        "_Bail": bail,
        "_INF": float("inf"),
    }
    var: dict[tuple[str, ...], str] = {(): "e"}
    children: dict[tuple[str, ...], list[str]] = {}
    for _key, names, _constant, _check in fields:
        for depth in range(len(names or ())):
            parent, name = tuple(names[:depth]), names[depth]  # type: ignore[index]
            siblings = children.setdefault(parent, [])
            if name not in siblings:
                siblings.append(name)
                path = (*parent, name)
                var[path] = f"v{len(var)}"
    body: list[str] = []
    for guard, (parent, level) in enumerate(children.items()):
        obj = var[parent]
        into = [var[path] for path in ((*parent, n) for n in level)]
        attrs = [f"{v} = {obj}.{n}" for v, n in zip(into, level, strict=True)]
        ns[f"_T{guard}"] = _Unseen  # each builder learns its own
        body += [f"if type({obj}) is _T{guard}:", *(f"    {a}" for a in attrs)]
        body += [f"elif type({obj}) is dict:"]
        body += [f"    {v} = {obj}[{n!r}]" for v, n in zip(into, level, strict=True)]
        body += [f"elif _learn(type({obj}), '_T{guard}'):", *(f"    {a}" for a in attrs)]
        body += ["else:", "    raise _Bail"]
    values: list[str] = []
    checks: list[str] = []
    for at, (_key, names, constant, check) in enumerate(fields):
        if names is None:  # checked once, by the caller: kept as it is, or always slow
            value = f"_K{at}"
            ns[value] = constant
            values.append(value)
            if check is None:
                checks.append("False")
            continue
        value = var[names]
        values.append(value)
        if check == "text":
            checks.append(f"type({value}) is str and {value}.strip()")
        elif check == "amount":
            checks.append(
                f"(type({value}) is int or type({value}) is float) and 0 <= {value} < _INF"
            )
        else:
            checks.append("False")
    pairs = ", ".join(f"{key!r}: {v}" for (key, *_), v in zip(fields, values, strict=True))
    body += [
        "if (",
        *(f"    {'and ' if i else ''}({c})" for i, c in enumerate(checks or ["True"])),
        "):",
        f"    out.append({{{pairs}}})",
        "else:",
        f"    out.append(_slow(len(out), ({', '.join(values)},)))",
    ]
    lines = [
        *_LEARN,
        "def rows(elements):",
        "    out = []",
        "    for e in elements:",
        *(f"        {line}" for line in body),
        "    return out",
        "",
        "return rows",
    ]
    source = "def make():\n" + "".join(f"    {line}\n" if line else "\n" for line in lines)
    exec(_compiled(source, "each"), ns)  # type: ignore[arg-type]  # noqa: S102 - our own source
    rows: Callable[[Any], list[dict[str, object]]] = ns.pop("make")()
    return rows
