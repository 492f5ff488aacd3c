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


def sender_from_config(**options: Any) -> BackgroundSender:
    """Build a :class:`BackgroundSender` from options, completed by the environment.

    ``api_key``, ``secret_key`` and ``base_url`` fall back to ``GAMEBALL_API_KEY``,
    ``GAMEBALL_SECRET_KEY`` and ``GAMEBALL_BASE_URL``; an option given as ``None``
    also falls back. Every other option is passed to :class:`BackgroundSender`.

    Raises:
        ConfigurationError: If no API key is given or set, or an option is unknown
            or invalid.
    """
    for name, variable in _ENV.items():
        if options.get(name) is None:
            value = os.environ.get(variable, "").strip()
            options[name] = value or None
        if options[name] is None:
            del options[name]
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
    try:
        return BackgroundSender(**options)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigurationError):
            raise
        raise ConfigurationError(f"invalid delivery option: {exc}") from None
