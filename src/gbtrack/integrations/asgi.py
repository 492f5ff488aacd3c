"""Starlette and FastAPI: the customer per request, and the tracker's lifespan.

Three pieces, each usable alone (``pip install gbtrack[fastapi]``):

- :class:`GbtrackMiddleware`, a pure ASGI middleware: for each HTTP request (and
  WebSocket session) it calls your ``identity(connection)`` function and runs the
  request inside :func:`gbtrack.identify` for the customer it returns, so every
  ``@track``, ``span()`` and ``emit()`` of the request, in async and sync endpoints
  and background tasks alike, is about that customer.
- :func:`identity_dependency`, the same as a FastAPI dependency, for identities that
  come from other dependencies (the current user, a token's claims). Your function is
  a FastAPI dependency itself, sync or async; the binding happens in an ``async``
  generator on the request's task, so it reaches the endpoint (FastAPI runs sync
  generator dependencies in worker threads, where a context variable set on entry
  neither reaches the endpoint nor can be reset on exit).
- :func:`lifespan`: configures the tracker at start-up and closes it at shutdown,
  bounded and in a worker thread, never blocking the event loop.

An identity is what every integration's identity function returns (see
:data:`IdentityLike`): ``None`` for an anonymous request, a customer id (``str``,
``int``, ``UUID``), a mapping of :class:`gbtrack.Identity`'s fields, or an
:class:`gbtrack.Identity` (with email, mobile or session token).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

try:
    import anyio.to_thread
    from starlette.requests import HTTPConnection
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "gbtrack.integrations.asgi needs Starlette (FastAPI includes it): "
        "pip install 'gbtrack[fastapi]'"
    ) from exc

from gbtrack._context import identify
from gbtrack._errors import TrackingError
from gbtrack._report import logger
from gbtrack._tracker import Tracker, get_tracker
from gbtrack.integrations._web import IdentityLike, identity_from

__all__ = ["GbtrackMiddleware", "IdentityLike", "identity_dependency", "lifespan"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _failed(what: str, exc: Exception, tracker: Tracker | None) -> None:
    """An identity that could not be read: the request runs anonymously (strict: raise)."""
    tracker = tracker if tracker is not None else get_tracker()
    message = f"{what} raised {type(exc).__name__}; the request runs without an identity"
    if tracker.strict:
        raise TrackingError(message, reason="identity_error") from exc
    logger.warning("gbtrack: %s", message, exc_info=exc)


class GbtrackMiddleware:
    """Run each request inside :func:`gbtrack.identify` for the customer it is about.

    Args:
        app: The ASGI application to wrap.
        identity: ``identity(connection) -> IdentityLike``, sync or async, given a
            :class:`starlette.requests.HTTPConnection` (headers, cookies, ``state``,
            ``user``, path and query; not the body). A sync function runs on the event
            loop: keep it to reading the connection, and make it ``async`` for any I/O.
            If it raises or returns something that is not an identity, the request runs
            without an identity and the error is logged on the ``gbtrack`` logger
            (raised under ``strict``).
        tracker: The tracker whose ``strict`` and ``debug`` apply (the default tracker,
            looked up per request, when ``None``). With ``debug``, one INFO line per
            request says which customer it runs as (method and path, no query).

    Example:
        ``app.add_middleware(GbtrackMiddleware, identity=lambda c: getattr(c.user, "id", None))``
        (added before an authentication middleware, it runs after it: Starlette runs
        the middleware added last first).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        identity: Callable[[HTTPConnection], IdentityLike | Awaitable[IdentityLike]],
        tracker: Tracker | None = None,
    ) -> None:
        if not callable(identity):
            raise TypeError(f"identity must be callable, got {type(identity).__name__}")
        self.app = app
        self.identity = identity
        self.tracker = tracker
        self._name = getattr(identity, "__qualname__", type(identity).__name__)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection: HTTP and WebSocket inside the identity, others as is."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        block = await self._resolve(scope)
        tracker = self.tracker if self.tracker is not None else get_tracker()
        if tracker.debug:  # the path only: a query string may hold tokens
            logger.info(
                "gbtrack: %s %s runs as customer %r",
                scope.get("method", "WEBSOCKET"),
                scope.get("path", ""),
                None if block is None else block.customer_id,
            )
        if block is None:
            await self.app(scope, receive, send)
            return
        with block:  # entered and left on this task: the request's own context
            await self.app(scope, receive, send)

    async def _resolve(self, scope: Scope) -> identify | None:
        try:
            value = self.identity(HTTPConnection(scope))
            if inspect.isawaitable(value):
                value = await value
            return identity_from(value)
        except Exception as exc:
            _failed(f"the identity function {self._name}", exc, self.tracker)
            return None


def identity_dependency(
    resolve: Callable[..., Any], *, tracker: Tracker | None = None
) -> Callable[..., AsyncIterator[identify | None]]:
    """Make a FastAPI dependency that runs the request inside :func:`gbtrack.identify`.

    ``resolve`` is a FastAPI dependency itself (sync or async, taking ``Request``,
    ``Header(...)``, ``Depends(current_user)``, ...) that returns an identity
    (:data:`IdentityLike`: ``None``, a customer id, a mapping or an
    :class:`~gbtrack.Identity`). The returned dependency binds what it
    returns for the rest of the request: the endpoint (async or sync), later
    dependencies and background tasks. Use it per route or for the whole app:
    ``FastAPI(dependencies=[Depends(identity_dependency(user_id))])``. It yields the
    ``identify`` block (or ``None``), so an endpoint may also take it as a parameter.

    Exceptions of ``resolve`` are FastAPI's business (an ``HTTPException`` answers the
    request); a value that is not an identity is logged and the request runs anonymously
    (raised under the tracker's ``strict``).

    Args:
        resolve: The dependency that returns the identity.
        tracker: The tracker whose ``strict`` applies (default: the default tracker).

    Returns:
        An ``async`` generator function for ``Depends(...)``.
    """
    from fastapi import Depends

    name = getattr(resolve, "__qualname__", type(resolve).__name__)

    async def gbtrack_identity(value: Any = Depends(resolve)) -> AsyncIterator[identify | None]:  # noqa: B008
        try:
            block = identity_from(value)
        except Exception as exc:
            _failed(f"the identity dependency {name}", exc, tracker)
            block = None
        if block is None:
            yield None
            return
        block.__enter__()
        try:
            yield block
        finally:
            # Left in another context (not FastAPI's way): that context ends with it.
            with contextlib.suppress(ValueError):
                block.__exit__(None, None, None)

    return gbtrack_identity


def lifespan(
    app_lifespan: Callable[[Any], AbstractAsyncContextManager[Any]] | None = None,
    *,
    tracker: Tracker | None = None,
    close_timeout: float = 5.0,
    **options: Any,
) -> Callable[[Any], AbstractAsyncContextManager[Any]]:
    """A Starlette/FastAPI lifespan that configures the tracker and closes it at shutdown.

    At start-up, ``tracker.configure(**options)`` runs in a worker thread (it may close
    a previous sender); then your own ``app_lifespan``, if given, runs inside (its state
    is passed on). At shutdown the tracker is closed in a worker thread, bounded by
    ``close_timeout`` seconds: queued events are delivered (or spilled, or counted) and
    the event loop keeps serving meanwhile. Works under any AnyIO backend.

    Args:
        app_lifespan: Your own lifespan, entered inside this one.
        tracker: The tracker (the default tracker when ``None``).
        close_timeout: The most seconds the shutdown flush may take.
        **options: Arguments for :func:`gbtrack.configure` (``api_key=...``,
            ``before_send=...``, ...); none keeps the tracker as it is.

    Returns:
        ``lifespan(app)``, for ``FastAPI(lifespan=...)`` or ``Starlette(lifespan=...)``.
    """

    @asynccontextmanager
    async def gbtrack_lifespan(app: Any) -> AsyncIterator[Any]:
        target = tracker if tracker is not None else get_tracker()
        if options:
            await anyio.to_thread.run_sync(lambda: target.configure(**options))
        try:
            if app_lifespan is None:
                yield None
            else:
                async with app_lifespan(app) as state:
                    yield state
        finally:
            ok = await anyio.to_thread.run_sync(target.close, close_timeout)
            if not ok:
                logger.warning(
                    "gbtrack: not every event was settled when the app shut down "
                    "(within %.1f s); see tracker.stats",
                    close_timeout,
                )

    return gbtrack_lifespan
