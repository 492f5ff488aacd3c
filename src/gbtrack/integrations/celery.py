"""Celery: the publishing context's identity travels with each task, and events are flushed.

Call :func:`instrument` once, in the module that defines the Celery app (so that both
the web processes that publish tasks and the workers that run them call it)::

    from celery import Celery
    from gbtrack.integrations.celery import instrument

    app = Celery("shop", broker="redis://127.0.0.1:6379/0")
    instrument(flush_timeout=5.0)

It connects four Celery signals, process-wide (as OpenTelemetry's and Sentry's Celery
integrations do; ``before_task_publish`` does not say which app publishes):

- ``before_task_publish``: the ambient identity of :func:`gbtrack.identify` (customer
  id, email, mobile; the session token only with ``session_token=True``) is written
  into the message headers under :data:`HEADER`.
- ``task_prerun`` / ``task_postrun``: the worker binds that identity around the task,
  so ``@track`` without a ``customer_id``, spans and ``emit`` inside it are sent for
  the customer of the request that published it. Tasks published by a task (chains,
  retries) carry it on.
- ``worker_process_shutdown`` and ``worker_shutdown``: the tracker is flushed (for at
  most ``flush_timeout`` seconds) when a prefork child exits (``max_tasks_per_child``,
  ``max_memory_per_child``, warm shutdown: billiard ends children with ``os._exit``,
  so no ``atexit`` hook runs) and when the worker stops (SIGTERM).

An exit flush ignores SIGTERM while it runs: the process is already on its way out, and
a SIGTERM (systemd's ``KillMode=control-group`` sends one to every pool child) landing
in a child's flush would otherwise end it mid-flush, with its events. A child that
leaves before its ``worker_process_shutdown`` receiver ran (a SIGTERM during an earlier
receiver) still flushes, from billiard's exit finalizers.

Nothing here ever raises into Celery: a malformed header is logged on the ``gbtrack``
logger and the task runs without an identity.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from billiard import util as billiard_util
from celery import signals

from gbtrack import Tracker, current_identity, get_tracker, identify
from gbtrack.integrations._web import IDENTITY_FIELDS, identity_from, share_fallback

__all__ = ["HEADER", "instrument", "is_instrumented", "uninstrument"]

HEADER = "gbtrack_identity"
"""The message header that carries the identity: a mapping of ``customer_id``,
``email``, ``mobile`` (and ``session_token`` when opted in), absent fields left out."""

logger = logging.getLogger("gbtrack")
_UID = "gbtrack.integrations.celery"


@dataclass(frozen=True)
class _Settings:
    tracker: Tracker | None
    flush_timeout: float
    flush_after_task: bool
    session_token: bool

    def flush(self, why: str) -> None:
        tracker = self.tracker if self.tracker is not None else get_tracker()
        try:
            done = tracker.flush(timeout=self.flush_timeout)
        except Exception:
            logger.exception("gbtrack: flushing the tracker %s raised", why)
            return
        if not done:
            logger.warning(
                "gbtrack: flushing the tracker %s did not deliver everything "
                "(timed out after %.1f s, or events were dropped: see tracker.stats)",
                why,
                self.flush_timeout,
            )


_settings: _Settings | None = None
_blocks: dict[str, identify] = {}  # task id -> the open identify block (threads pool: many)
_lock = threading.Lock()


def instrument(
    *,
    tracker: Tracker | None = None,
    flush_timeout: float = 5.0,
    flush_after_task: bool = False,
    session_token: bool = False,
) -> None:
    """Carry the identity from publisher to task and flush where a worker process ends.

    Idempotent: calling it again replaces the settings (the signals stay connected once).

    Args:
        tracker: The tracker to flush; ``None`` means the default tracker, looked up at
            each flush (so :func:`gbtrack.configure` may come before or after).
        flush_timeout: The most seconds one flush waits (at a child's exit, at worker
            shutdown, and after each task with ``flush_after_task``).
        flush_after_task: Also flush after every task, before the worker takes the next
            one. For processes that may be killed without a clean exit (a hard
            ``time_limit``, the OOM killer, a cold shutdown); it adds a delivery round
            trip to each task.
        session_token: Also carry the session token. Off by default: it is a secret,
            and message headers are stored in the broker in clear text (and shown by
            ``celery inspect`` and Flower).

    Raises:
        ValueError: For a negative ``flush_timeout``.
    """
    global _settings
    if flush_timeout < 0:
        raise ValueError(f"flush_timeout must be >= 0, got {flush_timeout!r}")
    with _lock:
        _settings = _Settings(tracker, float(flush_timeout), flush_after_task, session_token)
        signals.before_task_publish.connect(_before_publish, weak=False, dispatch_uid=_UID)
        signals.task_prerun.connect(_prerun, weak=False, dispatch_uid=_UID)
        signals.task_postrun.connect(_postrun, weak=False, dispatch_uid=_UID)
        signals.worker_process_init.connect(_process_init, weak=False, dispatch_uid=_UID)
        signals.worker_process_shutdown.connect(_process_shutdown, weak=False, dispatch_uid=_UID)
        signals.worker_shutdown.connect(_worker_shutdown, weak=False, dispatch_uid=_UID)
        signals.worker_init.connect(_worker_init, weak=False, dispatch_uid=_UID)


def uninstrument() -> None:
    """Disconnect the signals connected by :func:`instrument`."""
    global _settings
    with _lock:
        _settings = None
        signals.before_task_publish.disconnect(_before_publish, dispatch_uid=_UID)
        signals.task_prerun.disconnect(_prerun, dispatch_uid=_UID)
        signals.task_postrun.disconnect(_postrun, dispatch_uid=_UID)
        signals.worker_process_init.disconnect(_process_init, dispatch_uid=_UID)
        signals.worker_process_shutdown.disconnect(_process_shutdown, dispatch_uid=_UID)
        signals.worker_shutdown.disconnect(_worker_shutdown, dispatch_uid=_UID)
        signals.worker_init.disconnect(_worker_init, dispatch_uid=_UID)


def is_instrumented() -> bool:
    """Whether :func:`instrument` is in effect."""
    return _settings is not None


# --- publisher side ------------------------------------------------------------------
def _before_publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
    settings = _settings
    if settings is None or headers is None:
        return
    try:
        carried = _outgoing(settings.session_token)
        if carried is not None:
            headers[HEADER] = carried
        else:
            headers.pop(HEADER, None)  # never pass on a stale identity (a retried message)
    except Exception:
        logger.exception("gbtrack: writing the identity into a Celery message raised")


def _outgoing(with_token: bool) -> dict[str, str] | None:
    identity = current_identity()
    if identity.customer_id is None:
        return None
    carried = {"customer_id": identity.customer_id}
    if identity.email is not None:
        carried["email"] = identity.email
    if identity.mobile is not None:
        carried["mobile"] = identity.mobile
    if with_token and identity.session_token is not None:
        carried["session_token"] = identity.session_token.get_secret_value()
    return carried


# --- worker side ---------------------------------------------------------------------
def _prerun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    settings = _settings
    if settings is None or task_id is None or task is None:
        return
    try:
        carried = _incoming(task.request)
        if carried is None:
            return
        block = _block_from(carried, settings.session_token)
        if block is None:
            return
        block.__enter__()
        _blocks[task_id] = block
    except Exception:
        logger.exception(
            "gbtrack: task %s runs without an identity: its header is invalid", task_id
        )


def _incoming(request: Any) -> Mapping[str, Any] | None:
    carried = getattr(request, HEADER, None)
    if carried is None:  # protocol 2 puts custom headers on the request; some paths nest them
        nested = getattr(request, "headers", None)
        if isinstance(nested, Mapping):
            carried = nested.get(HEADER)
    if carried is None:
        return None
    if not isinstance(carried, Mapping):
        raise TypeError(f"{HEADER} must be a mapping, got {type(carried).__name__}")
    return carried


def _block_from(carried: Mapping[str, Any], with_token: bool) -> identify | None:
    # The integrations' one conversion; keys a newer publisher may add are left out, and
    # the token only when carried on purpose (absent: no token, never an outer one).
    fields = {k: v for k, v in carried.items() if k in IDENTITY_FIELDS}
    if not with_token:
        fields.pop("session_token", None)
    return identity_from(fields)


def _postrun(task_id: str | None = None, **_: Any) -> None:
    settings = _settings
    block = _blocks.pop(task_id, None) if task_id is not None else None
    if block is not None:
        try:
            block.__exit__(None, None, None)
        except Exception:
            logger.exception("gbtrack: leaving the identity of task %s raised", task_id)
    if settings is not None and settings.flush_after_task:
        settings.flush(f"after task {task_id}")


@contextmanager
def _sigterm_ignored() -> Iterator[None]:
    """Ignore SIGTERM inside the block: an exit flush is what a SIGTERM asks for.

    Billiard's handler in a pool child raises ``SystemExit`` (and a second SIGTERM
    kills outright); arriving in a flush, either would end the process with its events
    still queued. The flush is bounded by ``flush_timeout``, and the process exits
    right after it. Outside the main thread nothing can be changed, nor is needed; a
    handler installed outside Python could not be put back, so it is left alone.
    """
    previous = signal.getsignal(signal.SIGTERM)
    if previous is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _exit_flush(why: str) -> None:
    settings = _settings
    if settings is not None:
        with _sigterm_ignored():
            settings.flush(why)


def _process_init(**_: Any) -> None:
    # Normally a child leaves through worker_process_shutdown, then os._exit, and no
    # finalizer runs. A SIGTERM during an earlier receiver of that signal (or before it
    # is sent) raises SystemExit past ours into billiard's bootstrap, which runs the
    # process's exit finalizers: flush there. Registered per child (the registry is
    # cleared at fork).
    billiard_util.Finalize(None, _exit_flush, args=("as the pool process exits",), exitpriority=10)


def _process_shutdown(**_: Any) -> None:
    _exit_flush("as the pool process exits")


def _worker_shutdown(**_: Any) -> None:
    _exit_flush("at worker shutdown")


def _worker_init(sender: Any = None, **_: Any) -> None:
    # Before the pool forks: each prefork child keeps 1/concurrency of the limits while
    # a Redis rate limiter is unreachable (unless redis_fallback_share was configured).
    settings, pool = _settings, getattr(sender, "pool_cls", "")
    processes = getattr(sender, "concurrency", None)
    if settings is None or not isinstance(processes, int):
        return
    if "prefork" in (pool if isinstance(pool, str) else getattr(pool, "__module__", "")):
        try:
            share_fallback(processes, settings.tracker)
        except Exception:
            logger.exception("gbtrack: could not divide the rate limiter's fallback share")
