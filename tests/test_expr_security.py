"""Private state reachable through public attributes (issue 8, item 3).

Frames, code objects, tracebacks, function globals and module namespaces hold private
state under names that do not start with an underscore (``gi_frame.f_globals``,
``result.os.environ``, ``handler.config``). The path language must refuse them:

- at decoration time, when the path spells such a name (``ExpressionError``);
- at call time, by the type of the value reached through an innocently named attribute
  (a module, frame, code object, traceback, function, method, generator, coroutine or
  async generator): the secret never reaches an event, a log line or ``on_error``, the
  refusal is counted (a drop or a missing value) or at least the key is left out, and a
  strict tracker raises ``TrackingError``.

Only the public API is used, with a fresh ``Tracker(InMemorySender())`` per test.
"""

from __future__ import annotations

import logging
import os
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from gbtrack import (
    ExpressionError,
    InMemorySender,
    Tracker,
    TrackingError,
    register_resolver,
    track,
)

SECRET = "s3cr3t-0f-the-pr0cess"  # the value that must never leak
_SECRET = SECRET  # a private module global, as in `it.gi_frame.f_globals["_SECRET"]`
ENV_NAME = "GBTRACK_HOSTILE_TEST_SECRET"


# --- decoration time: the path spells the name ---------------------------------------------------
FRAME_NAMES = (
    "gi_frame",
    "cr_frame",
    "ag_frame",
    "gi_code",
    "cr_code",
    "ag_code",
    "f_globals",
    "f_locals",
    "f_back",
    "f_code",
    "f_builtins",
    "tb_frame",
    "tb_next",
    "co_code",
    "co_consts",
    "co_names",
    "co_filename",
    "func_globals",
    "func_code",
)
TEMPLATES = ("result.{}", "result.it.{}", "payload.{}.x", "result.{}[0]", 'payload.{}["k"]')


def _decorate(role: str, text: str, *, on: str = "success") -> None:
    tracker = Tracker(InMemorySender())
    options: dict[str, Any] = {"metadata": {"k": text}} if role == "metadata" else {role: text}
    if role != "customer_id":
        options["customer_id"] = "payload"

    def business(payload: object) -> object:
        return None

    track("e", on=on, tracker=tracker, **options)(business)  # type: ignore[arg-type]


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("name", FRAME_NAMES)
def test_paths_spelling_frame_code_or_globals_are_refused(name: str, template: str) -> None:
    with pytest.raises(ExpressionError):
        _decorate("metadata", template.format(name))


@pytest.mark.parametrize("role", ["customer_id", "email", "mobile", "session_token", "when"])
@pytest.mark.parametrize("name", ["gi_frame", "f_globals", "tb_frame", "co_consts"])
def test_refused_in_every_role(role: str, name: str) -> None:
    with pytest.raises(ExpressionError):
        _decorate(role, f"payload.{name}")


@pytest.mark.parametrize(
    "text",
    [
        'result.it.gi_frame.f_globals["_SECRET"]',
        "result.it.gi_frame.f_locals",
        "result.coro.cr_frame.f_locals",
        "result.agen.ag_frame.f_back",
        "error.tb.tb_frame.f_globals",
        "error.tb.tb_next.tb_frame",
        "result.fn.func_globals",
        "result.code.co_consts[0]",
        "payload.frame.f_back.f_back.f_globals",
    ],
)
def test_walks_from_the_issue_are_refused(text: str) -> None:
    with pytest.raises(ExpressionError):
        _decorate("metadata", text, on="always")


def test_a_registered_resolver_root_does_not_open_the_walk() -> None:
    register_resolver("probe_for_frames", lambda call: sys._getframe())
    with pytest.raises(ExpressionError):
        _decorate("metadata", "probe_for_frames.f_globals")
    with pytest.raises(ExpressionError):
        _decorate("metadata", "probe_for_frames.f_back.f_locals")


@pytest.mark.parametrize(
    "text",
    ["result.frame_count", "result.code", "result.globals", "result.function", "result.f"],
)
def test_innocent_names_still_compile(text: str) -> None:
    _decorate("metadata", text)


# --- call time: refused by the type of the value --------------------------------------------------
def _secret_module() -> types.ModuleType:
    module = types.ModuleType("gbtrack_hostile_secrets")
    module.SECRET = SECRET  # type: ignore[attr-defined]
    module.config = {"token": SECRET}  # type: ignore[attr-defined]
    return module


def _handler() -> None: ...


_handler.anything = SECRET  # type: ignore[attr-defined]
_handler.config = {"token": SECRET}  # type: ignore[attr-defined]


class _Service:
    def save(self) -> None: ...


_Service.save.anything = SECRET  # type: ignore[attr-defined]


def _gen() -> Iterator[int]:
    yield 1


async def _coro() -> None: ...


async def _agen() -> Any:
    yield 1


def _traceback() -> types.TracebackType:
    try:
        raise RuntimeError(SECRET)
    except RuntimeError as exc:
        traceback = exc.__traceback__
    assert traceback is not None
    return traceback


@dataclass
class Result:
    """What the business function returns: innocently named attributes to dangerous objects."""

    mod: object = None
    os: object = None
    handler: object = None
    save: object = None
    frame: object = None
    tb: object = None
    it: object = None
    coro: object = None
    agen: object = None
    code: object = None
    extra: dict[str, object] = field(default_factory=dict)


# case -> (path, how to build the result; the parameter `mod` always holds the secret module)
CASES: dict[str, tuple[str, Callable[[], Result]]] = {
    "module-on-result": ("result.mod.SECRET", lambda: Result(mod=_secret_module())),
    "module-mapping-on-result": ("result.mod.config.token", lambda: Result(mod=_secret_module())),
    "module-parameter": ("mod.SECRET", Result),
    "os-environ": (f"result.os.environ.{ENV_NAME}", lambda: Result(os=os)),
    "os-environ-quoted": (f'result.os.environ["{ENV_NAME}"]', lambda: Result(os=os)),
    "function-attribute": ("result.handler.anything", lambda: Result(handler=_handler)),
    "function-dict": ("result.handler.config.token", lambda: Result(handler=_handler)),
    "function-in-a-dict": (
        'result.extra["cb"].anything',
        lambda: Result(extra={"cb": _handler}),
    ),
    "bound-method": ("result.save.anything", lambda: Result(save=_Service().save)),
    "frame": ("result.frame.f_lineno", lambda: Result(frame=sys._getframe())),
    "traceback": ("result.tb.tb_lineno", lambda: Result(tb=_traceback())),
    "generator": ("result.it.gi_running", lambda: Result(it=_gen())),
    "coroutine": ("result.coro.cr_running", lambda: Result(coro=_coro())),
    "async-generator": ("result.agen.ag_running", lambda: Result(agen=_agen())),
    "code": ("result.code.replace", lambda: Result(code=_handler.__code__)),
}


def _close(result: Result) -> None:
    """Close what would warn when collected (an un-awaited coroutine)."""
    if isinstance(result.coro, types.CoroutineType):
        result.coro.close()


def _run(tracker: Tracker, role: str, path: str, result: Result) -> Callable[[], object]:
    options: dict[str, Any] = (
        {"customer_id": "cid", "metadata": {"k": path}} if role == "metadata" else {role: path}
    )

    @track("probe", tracker=tracker, **options)
    def business(cid: str, mod: types.ModuleType) -> Result:
        return result

    return lambda: business("c-1", _secret_module())


def _assert_no_leak(
    sender: InMemorySender, errors: list[TrackingError], caplog: pytest.LogCaptureFixture
) -> None:
    assert SECRET not in repr(sender.events)
    assert all(SECRET not in str(event.metadata) for event in sender.events)
    assert all(SECRET not in event.customer_id for event in sender.events)
    assert all(SECRET not in str(error) for error in errors)
    assert SECRET not in caplog.text


@pytest.mark.parametrize("role", ["metadata", "customer_id"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_dangerous_types_are_refused_at_call_time(
    case: str, role: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_NAME, SECRET)
    path, build = CASES[case]
    errors: list[TrackingError] = []
    sender = InMemorySender()
    tracker = Tracker(sender, on_error=errors.append)
    result = build()
    try:
        with caplog.at_level(logging.DEBUG, logger="gbtrack"):
            call = _run(tracker, role, path, result)
            assert call() is result
    finally:
        _close(result)
    _assert_no_leak(sender, errors, caplog)
    events = sender.events
    if role == "customer_id":
        # No identify() is active: an event could only carry the refused value.
        assert events == [], [e.customer_id for e in events]
        assert sum(tracker.stats.dropped.values()) == 1
    else:
        # Dropped (counted), or sent with the key left out.
        assert all("k" not in e.metadata for e in events), [e.metadata for e in events]


@pytest.mark.parametrize("case", sorted(CASES))
def test_strict_dangerous_types_raise_tracking_error(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_NAME, SECRET)
    path, build = CASES[case]
    sender = InMemorySender()
    tracker = Tracker(sender, strict=True)
    result = build()
    try:
        call = _run(tracker, "metadata", path, result)
        with pytest.raises(TrackingError) as info:
            call()
    finally:
        _close(result)
    assert SECRET not in str(info.value)
    assert sender.events == []


def test_function_returned_by_a_registered_resolver_is_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A resolver handing back a function must not open its attributes or globals."""
    register_resolver("handler_probe", lambda call: _handler)
    errors: list[TrackingError] = []
    sender = InMemorySender()
    tracker = Tracker(sender, on_error=errors.append)

    @track(
        "probe",
        customer_id="cid",
        metadata={"k": "handler_probe.config.token", "a": "handler_probe.anything"},
        tracker=tracker,
    )
    def business(cid: str) -> str:
        return "ok"

    with caplog.at_level(logging.DEBUG, logger="gbtrack"):
        assert business("c-1") == "ok"
    _assert_no_leak(sender, errors, caplog)
    assert all("k" not in e.metadata and "a" not in e.metadata for e in sender.events)


def test_error_root_reaching_a_frame_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    """An exception carrying a frame under a public name (``error.context.f_lineno``)."""

    class Failure(Exception):
        def __init__(self) -> None:
            super().__init__("business")
            self.context = sys._getframe()
            self.module = _secret_module()

    errors: list[TrackingError] = []
    sender = InMemorySender()
    tracker = Tracker(sender, on_error=errors.append)
    failure = Failure()

    @track(
        "failed",
        customer_id="cid",
        metadata={"line": "error.context.f_lineno", "s": "error.module.SECRET"},
        on="error",
        tracker=tracker,
    )
    def business(cid: str) -> None:
        raise failure

    with caplog.at_level(logging.DEBUG, logger="gbtrack"), pytest.raises(Failure) as info:
        business("c-1")
    assert info.value is failure
    _assert_no_leak(sender, errors, caplog)
    assert all("line" not in e.metadata and "s" not in e.metadata for e in sender.events)
