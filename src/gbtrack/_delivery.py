"""The delivery a configuration asks for: a BackgroundSender and its durable outbox.

:func:`sender_from_config` lives here, above both :mod:`gbtrack.senders` and
:mod:`gbtrack.outbox`, because it joins the two: the outbox stands on the senders
(:class:`~gbtrack.outbox.OutboxSender` is a :class:`~gbtrack.senders.BaseSender`), so
the senders cannot import it, and the sender given ``outbox=`` gets its spill opened
from here. The outbox is imported only when one is configured: ``import gbtrack``
stays free of it (and of SQLite).
"""

from __future__ import annotations

import os
from typing import Any

from gbtrack.senders import BackgroundSender, DeliveryClient, DeliveryConfig, Limiter, Spill

__all__ = ["sender_from_config"]


def sender_from_config(**options: Any) -> BackgroundSender:
    """Build a :class:`~gbtrack.senders.BackgroundSender` from options and the environment.

    The options are :class:`~gbtrack.senders.DeliveryConfig`'s (resolved with
    :meth:`~gbtrack.senders.DeliveryConfig.resolve`), plus ``client`` and ``on_error``.
    ``outbox`` (a path; falls back to ``GBTRACK_OUTBOX``) makes a durable
    :class:`~gbtrack.outbox.OutboxSender` the sender's ``spill``: events that would be
    dropped for overflow or an outage go to disk and are delivered from there, through
    the same client and rate limiter. The sender owns it and closes it. ``redis_url``
    (falls back to ``GBTRACK_REDIS_URL``) makes the rate limiter a
    :class:`~gbtrack.senders.RedisRateLimiter` shared by every process of the account.

    :func:`gbtrack.configure` builds its sender with it; call it directly to build one
    for an explicit :class:`~gbtrack.Tracker` (``Tracker(sender=...)``).

    Raises:
        ConfigurationError: If no API key is given or set, or an option is unknown
            or invalid (including an outbox path that is not writable, ``redis_url``
            without redis-py, or ``redis_url`` with ``rate_limiter``).
    """
    client = options.pop("client", None)
    on_error = options.pop("on_error", None)
    config = DeliveryConfig.resolve(needs_key=client is None, **options)
    return BackgroundSender.from_config(
        config, client=client, on_error=on_error, open_outbox=_open_outbox
    )


def _open_outbox(
    path: str | os.PathLike[str],
    client: DeliveryClient,
    rate_limiter: Limiter,
    order_rate_limiter: Limiter,
) -> Spill:
    """The durable spill at ``path``, sharing the sender's client and both rate limiters."""
    from gbtrack.outbox import OutboxSender  # on use: `import gbtrack` does not load it

    return OutboxSender(
        client, path=path, rate_limiter=rate_limiter, order_rate_limiter=order_rate_limiter
    )
