"""What the integrations share: options for ``configure``, identity per request.

Private to :mod:`gbtrack.integrations`; the framework modules are the public face.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Union

from gbtrack._context import identify
from gbtrack._event import Identity
from gbtrack._plain import plain_customer_id
from gbtrack._tracker import Tracker, configure, get_tracker
from gbtrack.senders import RateLimiter, RedisRateLimiter
from gbtrack.senders._config import REDIS_URL_ENV
from gbtrack.senders._policy import DEFAULT_MARGIN

__all__ = [
    "CONFIGURE_OPTIONS",
    "IDENTITY_FIELDS",
    "IdentityLike",
    "call_identity",
    "configure_from",
    "configure_options",
    "identity_block",
    "identity_from",
    "import_string",
    "needs_share",
    "rate_limit_share",
    "share_rate_limit",
]

logger = logging.getLogger("gbtrack")

CONFIGURE_OPTIONS = frozenset(inspect.signature(configure).parameters)
"""The keyword arguments :func:`gbtrack.configure` takes (settings keys map onto them)."""

_DOTTED = frozenset({"on_error", "sender", "retry", "rate_limiter", "spill", "limits"})


def import_string(path: str) -> Any:
    """Import ``"package.module.name"`` (or ``"package.module:name"``) and return the name.

    Raises:
        ImportError: If the module or the name cannot be found.
    """
    module, sep, name = path.partition(":") if ":" in path else path.rpartition(".")
    if not sep or not module or not name:
        raise ImportError(f"{path!r} is not a dotted path to an object")
    try:
        return getattr(importlib.import_module(module), name)
    except AttributeError:
        raise ImportError(f"module {module!r} has no attribute {name!r}") from None


def configure_options(settings: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Map settings keys (any case) onto :func:`gbtrack.configure`'s keywords.

    Dotted-path strings are imported for the options that take objects (``on_error``,
    ``sender``, ``retry``, ``rate_limiter``, ``spill``, ``limits``).

    Raises:
        ValueError: For a key that is not an option of ``configure``.
    """
    options: dict[str, Any] = {}
    for key, value in settings.items():
        name = key.lower()
        if name not in CONFIGURE_OPTIONS:
            raise ValueError(
                f"{where}: unknown gbtrack option {key!r}; expected some of "
                f"{', '.join(sorted(CONFIGURE_OPTIONS))}"
            )
        if name in _DOTTED and isinstance(value, str):
            value = import_string(value)
        options[name] = value
    return options


def configure_from(options: Mapping[str, Any], tracker: Tracker | None) -> Tracker:
    """Configure ``tracker`` (the default one when ``None``) with ``options``."""
    if tracker is None:
        return configure(**options)
    return tracker.configure(**options)


IdentityLike = Union[str, int, uuid.UUID, Identity, Mapping[str, Any], None]  # noqa: UP007
"""What an identity function returns, in every integration: ``None`` (an anonymous
request), a customer id (``str``, ``int`` or ``UUID``), a mapping of
:class:`~gbtrack.Identity`'s fields (``customer_id``, ``email``, ``mobile``,
``session_token``) or an :class:`~gbtrack.Identity`. See :func:`identity_from`."""

IDENTITY_FIELDS = frozenset(Identity.model_fields)
"""The keys an identity mapping may have: :class:`~gbtrack.Identity`'s fields."""


def identity_from(value: object) -> identify | None:
    """Turn what an identity function returned into an :class:`~gbtrack.identify` block.

    The one conversion behind every integration (ASGI middleware and dependency, Flask,
    Django, serverless, the identity a Celery message carries), so they all accept the
    same values:

    - ``None``, or no customer id (a mapping or ``Identity`` without ``customer_id``, a
      blank id): ``None``, the request is anonymous;
    - a customer id (``str``, ``int``, ``UUID``): ``identify(customer_id)``;
    - a mapping with :data:`IDENTITY_FIELDS` keys, or an :class:`~gbtrack.Identity`:
      ``identify(customer_id, email=..., mobile=..., session_token=...)``.

    The block is the request's whole identity: a field left out is not taken from an
    outer block (no session token means none, not an enclosing one).

    Raises:
        TypeError: For any other value, or a mapping with other keys (a typo such as
            ``{"id": 7}`` would otherwise make every request anonymous).
        InvalidEventError: For a field of the wrong type (a ``float`` id, say).
    """
    if value is None:
        return None
    if isinstance(value, Identity):
        fields: Mapping[str, Any] = {
            "customer_id": value.customer_id,
            "email": value.email,
            "mobile": value.mobile,
            "session_token": value.session_token,
        }
    elif isinstance(value, Mapping):
        unknown = [key for key in value if key not in IDENTITY_FIELDS]
        if unknown:
            raise TypeError(
                f"an identity mapping takes the keys {', '.join(sorted(IDENTITY_FIELDS))}; "
                f"got {', '.join(repr(key) for key in unknown)}"
            )
        fields = value
    elif isinstance(value, str | int | uuid.UUID) and not isinstance(value, bool):
        fields = {"customer_id": value}
    else:
        raise TypeError(
            "an identity must be None, a customer id (str, int or UUID), a mapping of "
            f"gbtrack.Identity's fields or a gbtrack.Identity; got a {type(value).__name__}"
        )
    customer_id = plain_customer_id(fields.get("customer_id"))
    if customer_id is None:
        return None
    return identify(
        customer_id,
        email=fields.get("email"),
        mobile=fields.get("mobile"),
        session_token=fields.get("session_token"),
    )


def identity_block(value: object, source: Callable[..., Any]) -> identify | None:
    """:func:`identity_from` that never raises.

    A value that is not an identity is logged on the ``gbtrack`` logger and the request
    runs without an ambient customer.
    """
    try:
        return identity_from(value)
    except Exception as exc:
        name = getattr(source, "__qualname__", repr(source))
        logger.warning(
            "gbtrack: the identity from %s is not usable (%s: %s); the request runs "
            "without an ambient customer",
            name,
            type(exc).__name__,
            exc,
        )
        return None


def call_identity(func: Callable[[Any], Any], request: Any) -> identify | None:
    """Call a sync identity function; never raises (see :func:`identity_block`)."""
    try:
        value = func(request)
    except Exception as exc:
        _raised(func, exc)
        return None
    return identity_block(value, func)


def _raised(func: Callable[..., Any], exc: Exception) -> None:
    logger.warning(
        "gbtrack: the identity function %s raised %s; the request runs without an ambient customer",
        getattr(func, "__qualname__", repr(func)),
        type(exc).__name__,
        exc_info=exc,
    )


GAMEBALL_LIMITS = RateLimiter().limits
"""Gameball's per-account windows, as the default :class:`RateLimiter` has them."""


def rate_limit_share(
    processes: int,
    limits: tuple[tuple[int, float], ...] = GAMEBALL_LIMITS,
    *,
    margin: float = DEFAULT_MARGIN,
) -> RateLimiter:
    """A :class:`~gbtrack.senders.RateLimiter` with ``1/processes`` of each window.

    For ``processes`` processes that send to one Gameball account and cannot share a
    limiter: each keeps to its share (rounded down, at least 1), so together they stay
    within the account's limit, counted at Gameball (see
    :class:`~gbtrack.senders.RateLimiter`).

    Args:
        processes: How many processes share the account.
        limits: The account's windows (Gameball's by default).
        margin: The limiter's margin (seconds added to each window).

    Raises:
        ValueError: If ``processes`` is not a positive integer.
    """
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise ValueError(f"processes must be a positive int, got {processes!r}")
    windows = tuple((max(1, limit // processes), period) for limit, period in limits)
    return RateLimiter(limits=windows, margin=margin)


def needs_share(options: Mapping[str, Any]) -> bool:
    """Whether ``options`` leave the rate limit to divide: no limiter, no Redis to share.

    A ``rate_limiter`` given, or a Redis URL (``redis_url`` or ``GBTRACK_REDIS_URL``)
    whose limiter all the workers share, is kept as it is.
    """
    if "rate_limiter" in options or options.get("redis_url"):
        return False
    return not os.environ.get(REDIS_URL_ENV, "").strip()


def share_fallback(processes: int, tracker: Tracker | None = None) -> bool:
    """Divide the Redis limiter's fallback among ``processes`` processes, unless configured.

    When ``tracker``'s sender limits through a :class:`~gbtrack.senders.RedisRateLimiter`
    with no ``redis_fallback_share`` configured, each process keeps ``1/processes`` of
    the limits while Redis is unreachable, so that together they stay within them. For
    integrations that know how many processes send (gunicorn's workers, Celery's
    prefork children); call it before the processes send.

    Returns:
        Whether the sender limits through Redis (whatever its share now is).
    """
    limiter = getattr((tracker or get_tracker()).sender, "rate_limiter", None)
    if not isinstance(limiter, RedisRateLimiter):
        return False
    if processes > 1 and limiter.share_fallback(processes):
        logger.debug("gbtrack: without Redis, this process keeps 1/%d of the limits", processes)
    return True


def share_rate_limit(processes: int, tracker: Tracker | None = None) -> RateLimiter | None:
    """Give ``tracker``'s sender ``1/processes`` of Gameball's limits, unless already set.

    Applies only to a sender whose limiter still has Gameball's full windows (nobody
    configured a share or a shared limiter) and no outbox: its ``rate_limiter`` is
    replaced by :func:`rate_limit_share` (with the same margin). A
    :class:`~gbtrack.senders.RedisRateLimiter` is kept, and keeps ``1/processes`` of
    the limits while Redis is unreachable, unless a ``fallback_share`` was configured
    (:meth:`~gbtrack.senders.RedisRateLimiter.share_fallback`). Call it in a fresh
    worker process (or before forking them), before it sends.

    Returns:
        The new limiter, or ``None`` when none was built.
    """
    if share_fallback(processes, tracker):
        return None
    sender = (tracker or get_tracker()).sender
    limiter = getattr(sender, "rate_limiter", None)
    if processes <= 1 or not isinstance(limiter, RateLimiter) or limiter.limits != GAMEBALL_LIMITS:
        return None
    if getattr(sender, "spill", None) is not None:
        # The outbox drains through the same limiter, which it keeps: say so, change nothing.
        logger.warning(
            "gbtrack: %d processes share the Gameball rate limit, but a sender with an "
            "outbox keeps its limiter; pass rate_limiter=rate_limit_share(%d) to configure()",
            processes,
            processes,
        )
        return None
    share = rate_limit_share(processes, margin=limiter.margin)
    sender.rate_limiter = share
    logger.debug("gbtrack: this process keeps to 1/%d of the rate limit", processes)
    return share
