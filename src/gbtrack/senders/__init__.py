"""Senders: where a tracker hands its events.

- :class:`Sender`: the protocol (non-blocking ``send``, ``flush``, ``close``);
  :class:`AttachableSender`, its optional extension: what a tracker gives a sender
  (:class:`TrackerLink`) and what the sender declares (:class:`SenderTraits`).
- :class:`BackgroundSender`: delivers to Gameball from a daemon worker (production).
- :class:`DirectSender`: delivers inline, blocking (scripts, CLIs, jobs).
- :class:`InMemorySender`: keeps events in a list (tests, examples).
- :class:`LoggingSender`: logs events; the fallback when no delivery is configured.
- :class:`RetryPolicy` (its :class:`Decision`), :class:`RateLimiter`: the delivery policy.
- :class:`RedisRateLimiter`: one rate limit shared by every process through Redis
  (``gbtrack[redis]``); :class:`Limiter`: what both limiters are to a sender.
- :class:`DeliveryClient`, :class:`Spill`: the seams to the client and the outbox.
- :class:`DeliveryConfig`: the delivery options, one frozen object (arguments and
  environment); :meth:`BackgroundSender.from_config` builds a sender from it, and
  :func:`gbtrack.sender_from_config` (options and environment in, the durable outbox
  included) does both.

This package sits below :mod:`gbtrack.outbox` (whose sender is a :class:`BaseSender`)
and imports nothing from it.
"""

from typing import NoReturn

from gbtrack.senders._background import BackgroundSender
from gbtrack.senders._base import (
    AttachableSender,
    BaseSender,
    BatchHook,
    InMemorySender,
    LoggingSender,
    Sender,
    SenderTraits,
    TrackerLink,
)
from gbtrack.senders._config import DeliveryConfig
from gbtrack.senders._direct import DirectSender
from gbtrack.senders._policy import (
    Decision,
    DeliveryClient,
    Limiter,
    RateLimiter,
    RetryPolicy,
    Spill,
)
from gbtrack.senders._redis import RedisRateLimiter

__all__ = [
    "AttachableSender",
    "BackgroundSender",
    "BaseSender",
    "BatchHook",
    "DeliveryClient",
    "Decision",
    "DeliveryConfig",
    "DirectSender",
    "InMemorySender",
    "Limiter",
    "LoggingSender",
    "RateLimiter",
    "RedisRateLimiter",
    "RetryPolicy",
    "Sender",
    "SenderTraits",
    "Spill",
    "TrackerLink",
]

_MOVED = {
    "sender_from_config": (
        "gbtrack.senders.sender_from_config moved to gbtrack.sender_from_config "
        "(it opens the outbox, which stands on the senders): "
        "use `from gbtrack import sender_from_config`"
    ),
}


def __getattr__(name: str) -> NoReturn:
    """Name the new home of a name that moved; any other name is an AttributeError.

    A moved name raises :class:`ImportError` rather than :class:`AttributeError`:
    ``from gbtrack.senders import sender_from_config`` replaces an AttributeError's
    message with its own "cannot import name", and the pointer would be lost.
    """
    moved = _MOVED.get(name)
    if moved is not None:
        raise ImportError(moved, name=__name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
