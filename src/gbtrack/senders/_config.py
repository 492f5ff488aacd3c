"""Build the delivery sender from options and the environment."""

from __future__ import annotations

import inspect
import os
from typing import Any

from gbtrack._errors import ConfigurationError
from gbtrack.senders._background import BackgroundSender

__all__ = ["sender_from_config"]

_ENV = {
    "api_key": "GAMEBALL_API_KEY",
    "secret_key": "GAMEBALL_SECRET_KEY",
    "base_url": "GAMEBALL_BASE_URL",
}
_OUTBOX_ENV = "GBTRACK_OUTBOX"


def sender_from_config(**options: Any) -> BackgroundSender:
    """Build a :class:`BackgroundSender` from options, completed by the environment.

    ``api_key``, ``secret_key`` and ``base_url`` fall back to ``GAMEBALL_API_KEY``,
    ``GAMEBALL_SECRET_KEY`` and ``GAMEBALL_BASE_URL``; an option given as ``None``
    also falls back. ``outbox`` (a path; falls back to ``GBTRACK_OUTBOX``) makes a
    durable :class:`~gbtrack.outbox.OutboxSender` the sender's ``spill``: events that
    would be dropped for overflow or an outage go to disk and are delivered from
    there, through the same client and rate limiter. Every other option is passed to
    :class:`BackgroundSender`.

    Raises:
        ConfigurationError: If no API key is given or set, or an option is unknown
            or invalid (including an outbox path that is not writable).
    """
    for name, variable in _ENV.items():
        if options.get(name) is None:
            value = os.environ.get(variable, "").strip()
            options[name] = value or None
        if options[name] is None:
            del options[name]
    outbox_path = options.pop("outbox", None) or os.environ.get(_OUTBOX_ENV, "").strip() or None
    if "api_key" not in options and options.get("client") is None:
        raise ConfigurationError(
            "Gameball delivery needs an API key: pass configure(api_key=...) or set "
            "the GAMEBALL_API_KEY environment variable"
        )
    known = set(inspect.signature(BackgroundSender).parameters)
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigurationError(
            f"unknown delivery option(s) {', '.join(map(repr, unknown))}; "
            f"expected some of {', '.join(sorted(known))}"
        )
    if outbox_path is not None and options.get("spill") is not None:
        raise ConfigurationError("pass either outbox= or spill=, not both")
    try:
        sender = BackgroundSender(**options)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigurationError):
            raise
        raise ConfigurationError(f"invalid delivery option: {exc}") from None
    if outbox_path is not None:
        from gbtrack.outbox import OutboxSender

        try:
            sender.spill = OutboxSender(
                sender.client, path=outbox_path, rate_limiter=sender.rate_limiter
            )
        except BaseException:
            sender.close(timeout=0)
            raise
        sender._close_spill = True
    return sender
