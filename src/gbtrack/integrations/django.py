"""Django: identity per request from ``request.user``, and ``settings.GBTRACK``.

Install with ``pip install gbtrack[django]``, then in ``settings.py``::

    INSTALLED_APPS = [..., "gbtrack.integrations.django.GBTrackConfig"]
    MIDDLEWARE = [
        ...,
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "gbtrack.integrations.django.GBTrackMiddleware",  # after authentication
    ]
    GBTRACK = {"API_KEY": "...", "SECRET_KEY": "..."}  # the options of configure()

- :class:`GBTrackConfig` configures the default tracker from ``settings.GBTRACK`` when
  Django starts: its keys (any case) are :func:`gbtrack.configure`'s options; dotted
  paths are imported for ``ON_ERROR``, ``SENDER``, ``RETRY``, ``RATE_LIMITER``, ``SPILL``
  and ``LIMITS``. ``WORKERS: n`` gives this process ``1/n`` of the rate limit (see
  :func:`rate_limit_share`); ``IDENTITY`` is the middleware's.
- :func:`with_lifespan` wraps Django's ASGI application so that an ASGI server's
  shutdown (uvicorn's, say) closes the tracker: Django itself refuses the lifespan
  protocol, and under uvicorn no ``atexit`` hook or gunicorn ``worker_exit`` runs.
- :class:`GBTrackMiddleware` (sync and async) wraps each request in
  :func:`gbtrack.identify` for the customer ``IDENTITY`` names: by default the
  authenticated ``request.user`` (``customer_id=user.pk``, and ``user.email`` when set);
  anonymous requests get no ambient customer. ``IDENTITY`` may be a function (or its
  dotted path) taking the request and returning what every integration's identity
  function returns (``None``, a customer id, a mapping of :class:`~gbtrack.Identity`'s
  fields, or an :class:`~gbtrack.Identity`; see
  :data:`gbtrack.integrations.asgi.IdentityLike`); an ``async def`` one is awaited
  under ASGI.

- :func:`atomic` is ``transaction.atomic`` with :func:`gbtrack.transaction` bound to
  it: events tracked inside are rows of the ``gbtrack_outbox`` table in the same
  database transaction (see docs/scaling.md). It needs that table (``gbtrack outbox
  init``) and a running ``gbtrack relay`` to send the rows.

Tracking never breaks a request: an identity function that raises, or returns
something that is not an identity, is logged on the ``gbtrack`` logger and the request
runs without an ambient customer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any

from asgiref.sync import (
    async_to_sync,
    iscoroutinefunction,
    markcoroutinefunction,
    sync_to_async,
)
from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from gbtrack._context import identify
from gbtrack._tracker import Tracker, get_tracker
from gbtrack.integrations._web import (
    call_identity,
    configure_from,
    configure_options,
    identity_block,
    import_string,
    logger,
    needs_share,
    rate_limit_share,
)

__all__ = [
    "GBTrackConfig",
    "GBTrackMiddleware",
    "arequest_user_identity",
    "atomic",
    "configure_from_settings",
    "rate_limit_share",
    "request_user_identity",
    "with_lifespan",
]

_OWN_KEYS = frozenset({"identity", "workers"})


def _settings() -> dict[str, Any]:
    value = getattr(settings, "GBTRACK", None) or {}
    if not isinstance(value, Mapping):
        raise ImproperlyConfigured(
            f"settings.GBTRACK must be a dict of gbtrack options, got {type(value).__name__}"
        )
    return {str(key).lower(): item for key, item in value.items()}


def configure_from_settings(tracker: Tracker | None = None) -> Tracker | None:
    """Configure ``tracker`` (by default the default tracker) from ``settings.GBTRACK``.

    Called by :class:`GBTrackConfig` when Django starts. Without ``settings.GBTRACK``
    (or with only ``IDENTITY``) nothing changes: the default tracker then builds its
    sender from ``GAMEBALL_API_KEY`` on first use.

    Returns:
        The tracker configured, or ``None`` when there was nothing to configure.

    Raises:
        ImproperlyConfigured: For an unknown key or an invalid option.
    """
    options = _settings()
    workers = options.pop("workers", None)
    options.pop("identity", None)
    try:
        options = configure_options(options, "settings.GBTRACK")
        if workers is not None and needs_share(options):
            options["rate_limiter"] = rate_limit_share(workers)
        if not options:
            return None
        return configure_from(options, tracker)
    except ImproperlyConfigured:
        raise
    except Exception as exc:
        raise ImproperlyConfigured(f"settings.GBTRACK: {exc}") from exc


class GBTrackConfig(AppConfig):
    """The gbtrack app: add ``"gbtrack.integrations.django.GBTrackConfig"`` to INSTALLED_APPS.

    Its ``ready()`` calls :func:`configure_from_settings`.
    """

    name = "gbtrack.integrations.django"
    label = "gbtrack"
    verbose_name = "gbtrack (Gameball events)"

    def ready(self) -> None:
        """Configure the default tracker from ``settings.GBTRACK``."""
        configure_from_settings()


def request_user_identity(request: Any) -> Mapping[str, Any] | None:
    """The default identity: the authenticated ``request.user``, else ``None``.

    Returns:
        ``{"customer_id": user.pk, "email": user.email}`` (the email only when set), or
        ``None`` for an anonymous request or one without ``request.user``.
    """
    return _user_fields(getattr(request, "user", None))


async def arequest_user_identity(request: Any) -> Mapping[str, Any] | None:
    """:func:`request_user_identity` for ASGI: reads the user with ``await request.auser()``."""
    auser = getattr(request, "auser", None)
    user = await auser() if auser is not None else getattr(request, "user", None)
    return _user_fields(user)


def _user_fields(user: Any) -> Mapping[str, Any] | None:
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    customer_id = getattr(user, "pk", None)
    if customer_id is None:
        return None
    email = getattr(user, "email", None)
    return {"customer_id": customer_id, "email": email} if email else {"customer_id": customer_id}


def _identity_setting() -> Callable[[Any], Any] | None:
    value = _settings().get("identity")
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = import_string(value)
        except ImportError as exc:
            raise ImproperlyConfigured(f"settings.GBTRACK['IDENTITY']: {exc}") from exc
    if not callable(value):
        raise ImproperlyConfigured(
            "settings.GBTRACK['IDENTITY'] must be a function of the request (or its dotted "
            f"path), got {type(value).__name__}"
        )
    func: Callable[[Any], Any] = value
    return func


class GBTrackMiddleware:
    """Run each request inside :func:`gbtrack.identify` for its customer (sync and async).

    Put it after ``AuthenticationMiddleware``. The identity comes from
    ``settings.GBTRACK["IDENTITY"]``, or ``identity=`` when the middleware is built by
    hand; by default from ``request.user``.
    """

    sync_capable = True
    async_capable = True

    def __init__(
        self,
        get_response: Callable[[Any], Any],
        identity: Callable[[Any], Any] | None = None,
    ) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)
        func = identity if identity is not None else _identity_setting()
        self.identity: Callable[[Any], Any]
        if func is None:
            self.identity = arequest_user_identity if self.is_async else request_user_identity
        elif self.is_async and not iscoroutinefunction(func):
            # A sync function may touch the database: run it where Django allows that.
            self.identity = sync_to_async(func)
        elif not self.is_async and iscoroutinefunction(func):
            self.identity = async_to_sync(func)
        else:
            self.identity = func

    def __call__(self, request: Any) -> Any:
        """Handle one request (a coroutine under ASGI)."""
        if self.is_async:
            return self.__acall__(request)
        block = call_identity(self.identity, request)
        if block is None:
            return self.get_response(request)
        with block:
            return self.get_response(request)

    async def __acall__(self, request: Any) -> Any:
        """Handle one request under ASGI."""
        block: identify | None
        try:
            value = await self.identity(request)
        except Exception as exc:
            logger.warning(
                "gbtrack: the identity function %s raised %s; the request runs without an "
                "ambient customer",
                getattr(self.identity, "__qualname__", repr(self.identity)),
                type(exc).__name__,
                exc_info=exc,
            )
            block = None
        else:
            block = identity_block(value, self.identity)
        if block is None:
            return await self.get_response(request)
        with block:
            return await self.get_response(request)


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def with_lifespan(
    application: ASGIApp | None = None,
    *,
    close_timeout: float = 5.0,
    tracker: Tracker | None = None,
) -> ASGIApp:
    """Django's ASGI application, answering the lifespan protocol: close at shutdown.

    In ``asgi.py``: ``application = with_lifespan(get_asgi_application())``. HTTP and
    websocket scopes go to ``application`` unchanged; at the server's shutdown the
    tracker is closed in a worker thread (the loop keeps running), bounded by
    ``close_timeout`` seconds.

    Args:
        application: Django's ASGI application (``get_asgi_application()`` when ``None``).
        close_timeout: The most seconds the shutdown flush may take.
        tracker: The tracker to close (the default tracker when ``None``).
    """
    if application is None:
        from django.core.asgi import get_asgi_application

        application = get_asgi_application()
    django_app = application

    async def gbtrack_lifespan(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await django_app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                target = tracker if tracker is not None else get_tracker()
                ok = await asyncio.to_thread(target.close, close_timeout)
                if not ok:
                    logger.warning(
                        "gbtrack: not every event was settled at shutdown (within %.1f s)",
                        close_timeout,
                    )
                await send({"type": "lifespan.shutdown.complete"})
                return

    return gbtrack_lifespan


@contextmanager
def atomic(using: str | None = None, *, savepoint: bool = True) -> Iterator[Any]:
    """``transaction.atomic(using)`` with :func:`gbtrack.transaction` bound to it.

    Events tracked inside are INSERTed into the ``gbtrack_outbox`` table in the same
    database transaction: they commit with the block, or roll back with it. The table
    must exist (``gbtrack outbox init --url ...`` creates it), and a ``gbtrack relay``
    must run against the same database: it is what sends the committed rows.

    Args:
        using: The database alias (``None``: ``"default"``).
        savepoint: Passed to ``transaction.atomic`` (for the block itself).

    Yields:
        The :class:`gbtrack._transaction.TransactionBinding`.
    """
    from django.db import DEFAULT_DB_ALIAS, connections
    from django.db import transaction as dj_transaction

    from gbtrack._transaction import transaction

    alias = using or DEFAULT_DB_ALIAS
    with (
        dj_transaction.atomic(using=alias, savepoint=savepoint),
        transaction(connections[alias]) as binding,
    ):
        yield binding
