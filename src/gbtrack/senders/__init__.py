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
  environment); :func:`sender_from_config` builds a :class:`BackgroundSender` from it.
"""

from gbtrack.senders._background import BackgroundSender, sender_from_config
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
    "sender_from_config",
]
