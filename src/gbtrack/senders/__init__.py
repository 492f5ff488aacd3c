"""Senders: where a tracker hands its events.

- :class:`Sender`: the protocol (non-blocking ``send``, ``flush``, ``close``).
- :class:`InMemorySender`: keeps events in a list (tests, examples).
- :class:`LoggingSender`: logs events; the fallback when no delivery is configured.
"""

from gbtrack.senders._base import BaseSender, InMemorySender, LoggingSender, Sender

__all__ = ["BaseSender", "InMemorySender", "LoggingSender", "Sender", "sender_from_config"]


def sender_from_config(**options: object) -> Sender:
    """Build a Gameball delivery sender from options and the environment.

    Filled in by the delivery layer (BackgroundSender); see gbtrack.configure.
    """
    from gbtrack._errors import ConfigurationError

    raise ConfigurationError("Gameball delivery is not available in this build")
