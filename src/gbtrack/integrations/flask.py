"""Flask: ``GBTrack(app)`` configures gbtrack from ``app.config`` and identifies each request.

Install with ``pip install gbtrack[flask]``::

    from flask import Flask, session
    from gbtrack.integrations.flask import GBTrack

    app = Flask(__name__)
    app.config["GBTRACK_API_KEY"] = "..."
    GBTrack(app, identity=lambda request: session.get("customer_id"))  # set at login

or, with an application factory, ``gbtrack_ext = GBTrack()`` at import and
``gbtrack_ext.init_app(app)`` in the factory.

- ``app.config["GBTRACK_*"]``: every :func:`gbtrack.configure` option under its upper-case
  name with the ``GBTRACK_`` prefix (``GBTRACK_API_KEY``, ``GBTRACK_BASE_URL``,
  ``GBTRACK_FLUSH_INTERVAL``, ...); dotted paths are imported for ``ON_ERROR``,
  ``SENDER``, ``RETRY``, ``RATE_LIMITER``, ``SPILL`` and ``LIMITS``.
  ``GBTRACK_WORKERS = n`` gives this process ``1/n`` of the rate limit;
  ``GBTRACK_IDENTITY`` is the identity function (or its dotted path). Other
  ``GBTRACK_*`` keys are refused, so a typo fails at start-up.
- Identity per request: each request runs inside :func:`gbtrack.identify` for the customer
  the identity function returns; it gets the request and returns what every integration's
  identity function returns (``None``, a customer id, a mapping of
  :class:`~gbtrack.Identity`'s fields, or an :class:`~gbtrack.Identity`; see
  :data:`gbtrack.integrations.asgi.IdentityLike`). By default: Flask-Login's
  ``current_user`` when Flask-Login is installed and the user is authenticated,
  otherwise ``g.user`` (``user.id`` or ``user["id"]``, and its ``email``) as the Flask
  tutorial sets it. Hooks run in registration order: call ``GBTrack(app)`` after
  registering the ``before_request`` that loads ``g.user``.

Tracking never breaks a request: an identity function that raises, or returns something
that is not an identity, is logged on the ``gbtrack`` logger and the request runs without
an ambient customer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask, g, request

from gbtrack._tracker import Tracker
from gbtrack.integrations._web import (
    call_identity,
    configure_from,
    configure_options,
    import_string,
    needs_share,
    rate_limit_share,
)

__all__ = ["GBTrack", "user_identity"]

_PREFIX = "GBTRACK_"
_G_KEY = "gbtrack_identity"


def user_identity(request: Any) -> Mapping[str, Any] | None:
    """The default identity: Flask-Login's ``current_user``, else ``g.user``, else ``None``."""
    user = _flask_login_user()
    if user is None:
        user = g.get("user")
    if user is None or getattr(user, "is_authenticated", True) is False:
        return None
    if isinstance(user, Mapping) or hasattr(user, "keys"):
        customer_id, email = _item(user, "id"), _item(user, "email")
    else:
        get_id = getattr(user, "get_id", None)
        customer_id = get_id() if callable(get_id) else getattr(user, "id", None)
        email = getattr(user, "email", None)
    if customer_id is None:
        return None
    return {"customer_id": customer_id, "email": email} if email else {"customer_id": customer_id}


def _item(user: Any, key: str) -> Any:
    try:
        return user[key]
    except (KeyError, IndexError, TypeError):
        return None


try:  # Flask-Login is optional; without it the default identity reads g.user.
    from flask_login import current_user as _current_user
except ImportError:  # pragma: no cover - depends on what is installed
    _current_user = None


def _flask_login_user() -> Any:
    if _current_user is None:  # pragma: no cover - depends on what is installed
        return None
    user = _current_user._get_current_object()
    return user if getattr(user, "is_authenticated", False) else None


class GBTrack:
    """The Flask extension: configuration from ``app.config``, identity per request.

    Args:
        app: The application; or call :meth:`init_app` later (application factories).
        identity: A function of the request returning its customer (see the module
            docs); overrides ``GBTRACK_IDENTITY``. Default: :func:`user_identity`.
        tracker: The tracker to configure; the default tracker when ``None``.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        identity: Callable[[Any], Any] | str | None = None,
        tracker: Tracker | None = None,
    ) -> None:
        self.identity = identity
        self.tracker = tracker
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Configure gbtrack from ``app.config["GBTRACK_*"]`` and identify each request.

        Raises:
            ValueError: For a ``GBTRACK_*`` key that is not an option, or an invalid one.
            ImportError: For a dotted path that does not import.
        """
        settings = {
            key[len(_PREFIX) :].lower(): value
            for key, value in app.config.items()
            if key.startswith(_PREFIX)
        }
        workers = settings.pop("workers", None)
        identity: Any = self.identity if self.identity is not None else settings.get("identity")
        settings.pop("identity", None)
        options = configure_options(settings, "app.config['GBTRACK_*']")
        if workers is not None and needs_share(options):
            options["rate_limiter"] = rate_limit_share(workers)
        if options:
            configure_from(options, self.tracker)
        if isinstance(identity, str):
            identity = import_string(identity)
        if identity is not None and not callable(identity):
            raise ValueError(
                f"GBTRACK_IDENTITY must be a function of the request, got {type(identity).__name__}"
            )
        func: Callable[[Any], Any] = identity if identity is not None else user_identity
        app.extensions["gbtrack"] = self

        def enter_identity() -> None:
            block = call_identity(func, request._get_current_object())  # type: ignore[attr-defined]
            if block is not None:
                block.__enter__()
                setattr(g, _G_KEY, block)

        def exit_identity(error: BaseException | None) -> None:
            block = g.pop(_G_KEY, None)
            if block is not None:
                block.__exit__(None, None, None)

        app.before_request(enter_identity)
        app.teardown_request(exit_identity)
