"""One frozen delivery configuration, built from arguments and the environment.

:class:`DeliveryConfig` is the one list of delivery options:
:func:`gbtrack.sender_from_config` (and so :func:`gbtrack.configure`) resolves
it from options and the environment, and :class:`~gbtrack.senders.BackgroundSender`
builds itself from one (:meth:`~gbtrack.senders.BackgroundSender.from_config`); its
constructor's keyword arguments are the same fields. This module knows no sender: the
senders build themselves from it.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import SecretStr

from gbtrack._errors import ConfigurationError
from gbtrack._protocol import DEFAULT_BASE_URL
from gbtrack.senders._queue import Overflow

if TYPE_CHECKING:
    from gbtrack.senders._policy import DeliveryClient, Limiter, RetryPolicy, Spill
    from gbtrack.senders._redis import RedisRateLimiter

__all__ = ["LIMITER_OPTIONS", "DeliveryConfig", "Overflow", "check_limiter_options"]

_ENV = {
    "api_key": "GAMEBALL_API_KEY",
    "secret_key": "GAMEBALL_SECRET_KEY",
    "base_url": "GAMEBALL_BASE_URL",
}
_OUTBOX_ENV = "GBTRACK_OUTBOX"
REDIS_URL_ENV = "GBTRACK_REDIS_URL"
"""The Redis URL of a rate limiter shared by every process (``redis_url``)."""


@dataclass(frozen=True)
class DeliveryConfig:
    """The options of Gameball delivery; see :class:`~gbtrack.senders.BackgroundSender`.

    Validated when built (``ValueError``); :meth:`resolve` adds the environment and
    raises :class:`~gbtrack.ConfigurationError` instead. Every attribute but ``outbox``
    and ``redis_url`` is the :class:`~gbtrack.senders.BackgroundSender` argument of
    the same name.

    Attributes:
        outbox: A path for a durable :class:`~gbtrack.outbox.OutboxSender` that
            :func:`gbtrack.sender_from_config` opens as the sender's ``spill``, closed
            with the sender (exclusive with ``spill``).
        redis_url: A Redis URL: the sender's rate limiter is a
            :class:`~gbtrack.senders.RedisRateLimiter` there, shared by every process
            with the same API key (exclusive with ``rate_limiter``; needs
            ``gbtrack[redis]``).
            Orders get a second one on their own key (see
            :meth:`build_order_rate_limiter`).
        rate_limit_margin: Seconds added to each window of the rate limiter built here
            (local or Redis; default 0.05; not with ``rate_limiter``).
        redis_socket_timeout: Seconds to wait for Redis before limiting locally
            (default 0.1; needs ``redis_url``).
        redis_fallback_share: The share of the limits each process keeps while Redis is
            unreachable (default: ``1/workers`` under the gunicorn hooks and Celery's
            prefork pool, else 0.25; needs ``redis_url``).
    """

    api_key: str | SecretStr | None = None
    secret_key: str | SecretStr | None = None
    base_url: str = DEFAULT_BASE_URL
    secure: bool | None = None
    lang: str | None = None
    timeout: float = 10.0
    max_queue_size: int = 100_000
    max_batch_size: int = 1_000
    flush_interval: float = 0.5
    concurrency: int = 16
    rate_limiter: Limiter | None = None
    order_rate_limiter: Limiter | None = None
    retry: RetryPolicy | None = None
    overflow: Overflow = "drop_newest"
    block_timeout: float = 1.0
    bulk: bool = True
    bulk_threshold: int = 200
    spill: Spill | None = None
    exit_timeout: float = 5.0
    auth_probe_interval: float = 30.0
    outbox: str | os.PathLike[str] | None = None
    redis_url: str | None = None
    rate_limit_margin: float | None = None
    redis_socket_timeout: float | None = None
    redis_fallback_share: float | None = None

    def __post_init__(self) -> None:
        if self.overflow not in ("drop_newest", "block"):
            raise ValueError(f"overflow must be 'drop_newest' or 'block', got {self.overflow!r}")
        if self.max_queue_size < 1 or self.max_batch_size < 1 or self.concurrency < 1:
            raise ValueError("max_queue_size, max_batch_size and concurrency must be >= 1")
        if self.flush_interval <= 0:
            raise ValueError("flush_interval must be positive")
        if self.auth_probe_interval <= 0:
            raise ValueError("auth_probe_interval must be positive")
        if self.outbox is not None and self.spill is not None:
            raise ValueError("pass either outbox= or spill=, not both")
        if self.redis_url is not None and self.rate_limiter is not None:
            raise ValueError(
                "pass either redis_url= (or GBTRACK_REDIS_URL) or rate_limiter=, not both"
            )
        check_limiter_options(
            self.rate_limit_margin,
            self.redis_socket_timeout,
            self.redis_fallback_share,
            redis_url=self.redis_url,
        )
        if self.rate_limiter is not None and self.rate_limit_margin is not None:
            raise ValueError(
                "rate_limit_margin sets the margin of the limiter gbtrack builds; "
                "pass margin= to your own rate_limiter instead"
            )

    def build_order_rate_limiter(self, client: DeliveryClient | None = None) -> Limiter | None:
        """The orders bucket's limiter: ``order_rate_limiter``, one on ``redis_url``, or ``None``.

        Gameball limits orders apart from events (30/s, 360 per 30 s): a second limiter,
        local, or with ``redis_url`` a second :class:`~gbtrack.senders.RedisRateLimiter`
        on its own key (``gbtrack:ratelimit:orders:{account}``). ``None``: the sender
        builds a local one.
        """
        if self.order_rate_limiter is not None:
            return self.order_rate_limiter
        from gbtrack._protocol import ORDERS

        if self.redis_url is None:
            if self.rate_limiter is None and self.rate_limit_margin is not None:
                from gbtrack.senders._policy import RateLimiter

                return RateLimiter(ORDERS.limits, margin=self.rate_limit_margin)
            return None
        from gbtrack.senders._redis import DEFAULT_PREFIX

        return self._redis_limiter(
            self.redis_url, client, limits=ORDERS.limits, prefix=f"{DEFAULT_PREFIX}{ORDERS.name}:"
        )

    def build_rate_limiter(self, client: DeliveryClient | None = None) -> Limiter | None:
        """The sender's rate limiter: ``rate_limiter``, one on ``redis_url``, or ``None``.

        A :class:`~gbtrack.senders.RedisRateLimiter` is keyed by a hash of ``api_key``
        (or of ``client``'s key when no ``api_key`` is configured).

        Raises:
            ConfigurationError: If ``redis_url`` is set and redis-py is missing or the
                URL is invalid.
        """
        if self.redis_url is None:
            if self.rate_limiter is None and self.rate_limit_margin is not None:
                from gbtrack.senders._policy import RateLimiter

                return RateLimiter(margin=self.rate_limit_margin)
            return self.rate_limiter
        return self._redis_limiter(self.redis_url, client)

    def _redis_limiter(
        self, url: str, client: DeliveryClient | None, **bucket: Any
    ) -> RedisRateLimiter:
        """A :class:`~gbtrack.senders.RedisRateLimiter` on ``url`` with this config's options.

        Keyed by ``api_key`` (or ``client``'s key); ``bucket`` names another resource's
        limits and key prefix (orders).
        """
        from gbtrack.senders._redis import RedisRateLimiter

        api_key = self.api_key if self.api_key is not None else getattr(client, "api_key", None)
        options: dict[str, Any] = {
            "margin": self.rate_limit_margin,
            "socket_timeout": self.redis_socket_timeout,
            "fallback_share": self.redis_fallback_share,
        }
        given = {name: value for name, value in options.items() if value is not None}
        return RedisRateLimiter(url, api_key=api_key, **bucket, **given)

    @classmethod
    def names(cls) -> frozenset[str]:
        """The option names."""
        return frozenset(f.name for f in dataclasses.fields(cls))

    @classmethod
    def resolve(cls, *, needs_key: bool = True, **options: Any) -> DeliveryConfig:
        """Build from ``options``, completed by the environment.

        ``api_key``, ``secret_key`` and ``base_url`` fall back to ``GAMEBALL_API_KEY``,
        ``GAMEBALL_SECRET_KEY`` and ``GAMEBALL_BASE_URL``, ``outbox`` to
        ``GBTRACK_OUTBOX``, ``redis_url`` to ``GBTRACK_REDIS_URL``; an option given as
        ``None`` also falls back.

        Args:
            needs_key: Whether an API key is required (not when a client is given).
            **options: Any of :meth:`names`.

        Raises:
            ConfigurationError: If an option is unknown or invalid, or no API key is
                given or set while ``needs_key``.
        """
        unknown = sorted(set(options) - cls.names())
        if unknown:
            raise ConfigurationError(
                f"unknown delivery option(s) {', '.join(map(repr, unknown))}; "
                f"expected some of {', '.join(sorted(cls.names() | {'client', 'on_error'}))}"
            )
        fallbacks = (*_ENV.items(), ("outbox", _OUTBOX_ENV), ("redis_url", REDIS_URL_ENV))
        for name, variable in fallbacks:
            if options.get(name) is None:
                options[name] = os.environ.get(variable, "").strip() or None
        given = {name: value for name, value in options.items() if value is not None}
        if needs_key and "api_key" not in given:
            raise ConfigurationError(
                "Gameball delivery needs an API key: pass configure(api_key=...) or set "
                "the GAMEBALL_API_KEY environment variable"
            )
        try:
            return cls(**given)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"invalid delivery option: {exc}") from None


LIMITER_OPTIONS = frozenset(
    {"redis_url", "rate_limit_margin", "redis_socket_timeout", "redis_fallback_share"}
)
"""The options that build the rate limiter rather than pass to the sender."""


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_limiter_options(
    margin: float | None = None,
    socket_timeout: float | None = None,
    fallback_share: float | None = None,
    *,
    names: tuple[str, str, str] = (
        "rate_limit_margin",
        "redis_socket_timeout",
        "redis_fallback_share",
    ),
    redis_url: str | Literal[False] | None = False,
) -> None:
    """Check the rate limiter's settings (``None`` is "the default").

    Args:
        margin: Seconds added to each window (``>= 0``).
        socket_timeout: Seconds to wait for Redis (``> 0``).
        fallback_share: The share kept while Redis is unreachable (in ``(0, 1]``).
        names: How the messages name the three settings (options or flags).
        redis_url: The Redis URL, when the Redis settings need one (``False``: not
            checked here).

    Raises:
        ValueError: Naming the setting and what it must be.
    """
    margin_name, timeout_name, share_name = names
    if margin is not None and not (_number(margin) and margin >= 0):
        raise ValueError(f"{margin_name} must be a number of seconds >= 0, got {margin!r}")
    if socket_timeout is not None and not (_number(socket_timeout) and socket_timeout > 0):
        raise ValueError(
            f"{timeout_name} must be a positive number of seconds, got {socket_timeout!r}"
        )
    if fallback_share is not None and not (_number(fallback_share) and 0 < fallback_share <= 1):
        raise ValueError(f"{share_name} must be in (0, 1], got {fallback_share!r}")
    if redis_url is None:
        for name, value in ((timeout_name, socket_timeout), (share_name, fallback_share)):
            if value is not None:
                raise ValueError(f"{name} needs a Redis URL (redis_url or ${REDIS_URL_ENV})")
