"""A rate limiter shared by every process and machine of a Gameball account, through Redis.

Gameball's limits are per account, so N processes that each limit themselves either
divide the limits (and waste them when some are idle) or draw 429s. A
:class:`RedisRateLimiter` keeps one sliding-window log per account in Redis: every slot
is taken and moved by one atomic Lua script, timed by Redis's own ``TIME`` (machine
clocks do not matter), so the limits hold for all the processes together.

When Redis cannot be reached the limiter falls back to a local
:class:`~gbtrack.senders.RateLimiter` holding ``fallback_share`` of the limits, logs one
WARNING, tries Redis again every ``retry_interval`` seconds and logs one INFO line when
it is back. It never raises into a sender.

redis-py is the optional extra ``gbtrack[redis]``; it is imported when a limiter is built.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import SecretStr

from gbtrack._errors import ConfigurationError
from gbtrack._fork import reset_after_fork
from gbtrack.senders._policy import (
    DEFAULT_HOLD,
    DEFAULT_MARGIN,
    RateLimiter,
    checked_windows,
    take_slot,
)

if TYPE_CHECKING:
    from gbtrack.gameball import Outcome

__all__ = ["DEFAULT_FALLBACK_SHARE", "DEFAULT_PREFIX", "RedisRateLimiter", "account_key"]

_log = logging.getLogger("gbtrack.senders")

DEFAULT_PREFIX = "gbtrack:ratelimit:"
"""The default prefix of the limiter's Redis keys."""

_GAMEBALL_LIMITS = ((100, 1.0), (1200, 30.0))

DEFAULT_FALLBACK_SHARE = 0.25
"""The share of the limits a process keeps while Redis is unreachable, unless told
(:meth:`RedisRateLimiter.share_fallback` divides by the processes an integration knows)."""

# The slot counter outlives any log: a reset counter could reuse a member still logged.
_SEQ_TTL_MS = 86_400_000

# KEYS: log (sorted set: member = slot number, score = when the slot's request was
# answered, in Redis time; for a slot in flight, when it was reserved plus the hold: a
# time in the future), gate, seq.
# ARGV: margin, hold (s), log TTL (ms), seq TTL (ms), then (limit, period) pairs.
# Returns {wait} when no slot is free, {"0", slot} when one was taken.
# A slot counts in a window while its score is above now - (period + margin): from its
# reservation, in flight however long, until period + margin after its answer. A window
# is full when its limit-th highest score still counts; it frees period + margin after
# that score, or, for a slot in flight, no earlier than period + margin from now.
_RESERVE = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local margin = tonumber(ARGV[1])
local wait = 0
local gate = redis.call('GET', KEYS[2])
if gate then wait = tonumber(gate) - now end
local longest = 0
for i = 5, #ARGV, 2 do
  local limit = tonumber(ARGV[i])
  local period = tonumber(ARGV[i + 1]) + margin
  if period > longest then longest = period end
  local slot = redis.call('ZRANGE', KEYS[1], -limit, -limit, 'WITHSCORES')
  if slot[2] then
    local w = math.min(tonumber(slot[2]), now) + period - now
    if w > wait then wait = w end
  end
end
if wait > 0 then return {string.format('%.6f', wait)} end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.6f', now - longest))
local seq = redis.call('INCR', KEYS[3])
redis.call('ZADD', KEYS[1], string.format('%.6f', now + tonumber(ARGV[2])), seq)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[3], ARGV[4])
return {'0', seq}
"""

# KEYS: log. ARGV: slot number, log TTL (ms). The slot's request was answered now
# (XX: a slot already gone stays gone).
_RESTAMP = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
if redis.call('ZADD', KEYS[1], 'XX', 'CH', string.format('%.6f', now), ARGV[1]) == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS: gate. ARGV: seconds. The gate only ever moves later.
_DEFER = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local seconds = tonumber(ARGV[1])
local gate = redis.call('GET', KEYS[1])
if gate and tonumber(gate) >= now + seconds then return 0 end
redis.call('SET', KEYS[1], string.format('%.6f', now + seconds), 'PX',
  math.ceil(seconds * 1000) + 1000)
return 1
"""


# KEYS: log, seq. ARGV: log TTL (ms), seq TTL (ms), then ages (seconds). Logs slots
# taken elsewhere (the local fallback) that long ago, so they count in Redis too.
_ADOPT = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
for i = 3, #ARGV do
  local seq = redis.call('INCR', KEYS[2])
  redis.call('ZADD', KEYS[1], string.format('%.6f', now - tonumber(ARGV[i])), seq)
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return #ARGV - 2
"""


def account_key(api_key: str | SecretStr) -> str:
    """The Redis name of a Gameball account: a hash of its API key, never the key itself.

    Args:
        api_key: The account's API key.

    Returns:
        16 hex digits of the key's SHA-256.
    """
    secret = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
    return hashlib.sha256(b"gbtrack-account:" + secret.encode()).hexdigest()[:16]


def _safe_url(url: str) -> str:
    """``url`` without its user name and password, for logs."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        return f"{parts.scheme}://{host}{parts.path}"
    except ValueError:
        return "<invalid Redis URL>"


def _import_redis() -> Any:
    try:
        import redis
    except ImportError:
        raise ConfigurationError(
            "RedisRateLimiter needs redis-py: pip install 'gbtrack[redis]'"
        ) from None
    return redis


class RedisRateLimiter:
    """A sliding-window rate limiter shared through Redis by every process of an account.

    It has :class:`~gbtrack.senders.RateLimiter`'s interface (the
    :class:`~gbtrack.senders.Limiter` protocol), so any sender takes it as its
    ``rate_limiter``; ``configure(redis_url=...)`` (or ``GBTRACK_REDIS_URL``) builds one
    for the configured API key. Each Gameball account has one log in Redis, under
    ``{prefix}{account}``: processes and machines with the same API key share the
    limits, different accounts never meet.

    A slot is taken by :meth:`reserve` and ended at the answer by :meth:`restamp`,
    atomically in Redis, with the local limiter's rule: a slot counts from its
    reservation, in flight however long, until ``period + margin`` after its answer, so
    arrivals at Gameball from all the processes together never exceed a window,
    whatever the delays between reserving and sending (the argument is
    :class:`~gbtrack.senders.RateLimiter`'s; the clock is Redis's). A slot whose answer
    never reaches Redis (the process died, or Redis was out of reach then) counts as
    answered ``DEFAULT_HOLD`` (120) seconds after it was taken. :meth:`defer` (and
    :meth:`note` on a 429) sets a gate every process obeys.

    When Redis does not answer within ``socket_timeout`` seconds (down, unreachable,
    overloaded), each process limits itself with ``fallback_share`` of every window
    (``1/n`` suits ``n`` processes), after waiting out the shortest window (the slots
    Redis held are unknown), logs one WARNING, and tries Redis again every
    ``retry_interval`` seconds. When Redis answers again, the slots taken locally are
    logged in Redis too, one INFO line says so, and for ``retry_interval`` and one
    more shortest window a slot needs both Redis and the local share (other processes
    may not be back yet). Nothing raises into the sender.

    Args:
        url: The Redis URL (``redis://``, ``rediss://`` or ``unix://``).
        api_key: The Gameball API key whose account this limits (hashed for the key name).
        account: The account's name in Redis instead of the key's hash.
        limits: The windows, as ``(limit, period_seconds)`` pairs: Gameball's by default.
        margin: Seconds added to each window's period, as in
            :class:`~gbtrack.senders.RateLimiter`.
        prefix: The prefix of the Redis keys.
        fallback_share: The share of each window this process keeps while Redis is
            unreachable (at least one request per window). By default
            ``DEFAULT_FALLBACK_SHARE`` (0.25), or ``1/n`` once an integration that knows
            the ``n`` processes calls :meth:`share_fallback` (the gunicorn hooks, Celery's
            prefork workers).
        socket_timeout: Seconds to connect to and wait for Redis before falling back.
        retry_interval: Seconds between two attempts to reach Redis again.

    Raises:
        ConfigurationError: If redis-py is not installed (``pip install 'gbtrack[redis]'``)
            or ``url`` is not a Redis URL.
        ValueError: If a window, the margin, the share or a timeout is invalid.
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | SecretStr | None = None,
        account: str | None = None,
        limits: Sequence[tuple[int, float]] = _GAMEBALL_LIMITS,
        margin: float = DEFAULT_MARGIN,
        prefix: str = DEFAULT_PREFIX,
        fallback_share: float | None = None,
        socket_timeout: float = 0.1,
        retry_interval: float = 1.0,
    ) -> None:
        if not limits:
            raise ValueError("a rate limiter needs at least one window")
        windows = checked_windows(limits, margin)
        self._share_given = fallback_share is not None
        if fallback_share is None:
            fallback_share = DEFAULT_FALLBACK_SHARE
        if not 0 < fallback_share <= 1:
            raise ValueError("fallback_share must be in (0, 1]")
        if socket_timeout <= 0 or retry_interval <= 0:
            raise ValueError("socket_timeout and retry_interval must be positive")
        self._redis = _import_redis()
        self.limits = windows
        self.margin = float(margin)
        self._url = url
        if account is None:
            account = account_key(api_key) if api_key is not None else "default"
        self.account = account
        self.prefix = prefix
        base = f"{prefix}{{{account}}}"  # a hash tag: one cluster slot per account
        self._keys = (f"{base}:log", f"{base}:gate", f"{base}:seq")
        self.socket_timeout = float(socket_timeout)
        self.retry_interval = float(retry_interval)
        longest = max(period for _, period in self.limits) + self.margin
        self._log_ttl = str(math.ceil((longest + DEFAULT_HOLD) * 1000))
        self._shortest = min(period for _, period in self.limits) + self.margin
        self._windows = [str(v) for window in self.limits for v in window]
        self._set_fallback(fallback_share)
        try:
            self._open()
        except ValueError as exc:  # redis-py's word for a malformed URL
            raise ConfigurationError(f"invalid Redis URL {_safe_url(url)!r}: {exc}") from None
        reset_after_fork(self)

    def _set_fallback(self, share: float) -> None:
        self.fallback_share = float(share)
        self.fallback = RateLimiter(
            [(max(1, int(limit * share)), period) for limit, period in self.limits],
            margin=self.margin,
        )

    def share_fallback(self, processes: int) -> bool:
        """Keep ``1/processes`` of the limits while Redis is unreachable, unless told a share.

        For an integration that knows how many processes share the account (gunicorn's
        workers, Celery's prefork children): without Redis, each keeps its part, and
        together they stay within the limits. A ``fallback_share`` given to the
        constructor wins. Call it in a fresh process, before it sends.

        Args:
            processes: How many processes share this account's limits.

        Returns:
            Whether the share changed.

        Raises:
            ValueError: If ``processes`` is not a positive int.
        """
        if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
            raise ValueError(f"processes must be a positive int, got {processes!r}")
        if self._share_given or self.fallback_share == 1 / processes:
            return False
        self._set_fallback(1 / processes)
        return True

    def _open(self) -> None:
        """(Re)build the client, scripts and state: at start and in a forked child."""
        redis = self._redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self._pid = os.getpid()
        self._state_lock = threading.Lock()
        self._down = False
        # Bumped at each switch (down, back): a call's answer switches only when the call
        # started after the last switch. A call that started before Redis died may
        # succeed after another's failure, and one that started during the outage may
        # fail after another's success: either would flap the state (and the log).
        self._epoch = 0
        self._retry_at = 0.0
        self._guarded_until = 0.0
        self._guards: dict[int, float] = {}  # Redis slot -> its local guard slot
        self._client = redis.Redis.from_url(
            self._url,
            socket_timeout=self.socket_timeout,
            socket_connect_timeout=self.socket_timeout,
            retry=Retry(NoBackoff(), 0),  # a failed call falls back at once
            health_check_interval=0,
        )
        self._reserve = self._client.register_script(_RESERVE)
        self._restamp = self._client.register_script(_RESTAMP)
        self._defer = self._client.register_script(_DEFER)
        self._adopt = self._client.register_script(_ADOPT)
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)

    # --- availability ------------------------------------------------------------------
    @property
    def available(self) -> bool:
        """Whether the last attempt reached Redis (``False`` while limiting locally)."""
        return not self._down

    def _usable(self) -> bool:
        """Whether to try Redis now: it is up, or a retry is due."""
        return not self._down or time.monotonic() >= self._retry_at

    def _failed(self, exc: BaseException, epoch: int) -> None:
        """A call started at ``epoch`` could not reach Redis: limit locally, unless stale."""
        with self._state_lock:
            self._retry_at = time.monotonic() + self.retry_interval
            if self._down or epoch != self._epoch:
                return
            self._down = True
            self._epoch += 1
        # The idle connections in the pool may be to a server that died: a call that took
        # one after Redis came back would fail and mark it unreachable again.
        self._drop_idle_connections()
        # The slots Redis holds are unknown now: wait out the shortest window before
        # the local share starts, rather than add a full share on top of them.
        self.fallback.defer(self._shortest)
        _log.warning(
            "gbtrack: Redis rate limiter unreachable at %s (%s); limiting this process "
            "to %g of the limits until it returns",
            _safe_url(self._url),
            type(exc).__name__,
            self.fallback_share,
        )

    def _succeeded(self, epoch: int) -> None:
        """A call started at ``epoch`` reached Redis: share the limits again, unless stale."""
        if self._down and self._recover(epoch):
            self._adopt_local_slots()

    def _recover(self, epoch: int) -> bool:
        """Mark Redis reachable; whether this thread is the one that switched back."""
        with self._state_lock:
            if not self._down or epoch != self._epoch:
                return False
            self._down = False
            self._epoch += 1
            # Every process retries within retry_interval: after that and one shortest
            # window, none holds slots Redis does not know.
            self._guarded_until = time.monotonic() + self.retry_interval + self._shortest
        # A connection returned to the pool after the failure is to the old server.
        self._drop_idle_connections()
        return True

    def _drop_idle_connections(self) -> None:
        """Close the pool's idle connections (in-use ones close themselves on an error)."""
        with contextlib.suppress(*self._errors):
            self._client.connection_pool.disconnect(inuse_connections=False)

    def _adopt_local_slots(self) -> None:
        # The slots taken locally meanwhile count in Redis too (a Redis that restarted
        # empty, or one that was only out of reach, knows nothing of them).
        ages = self.fallback.ages()
        epoch = self._epoch
        if ages:
            try:
                self._adopt(
                    keys=[self._keys[0], self._keys[2]], args=[self._log_ttl, _SEQ_TTL_MS, *ages]
                )
            except self._errors as exc:
                self._failed(exc, epoch)
                return
        _log.info(
            "gbtrack: Redis rate limiter at %s reachable again; sharing the limits",
            _safe_url(self._url),
        )

    # --- the limiter interface -----------------------------------------------------------
    def reserve(self) -> tuple[float, float | None]:
        """Take a slot now if one is free, in Redis (or locally while Redis is unreachable).

        Returns:
            ``(0.0, stamp)`` when a slot was taken (``stamp`` is opaque, for
            :meth:`restamp`: negative for a slot in Redis, the local limiter's stamp
            otherwise); else ``(wait, None)`` with the seconds to wait.
        """
        if not self._usable():
            return self.fallback.reserve()
        epoch = self._epoch
        guard = None
        if self._down or (self._guarded_until and time.monotonic() < self._guarded_until):
            # Trying Redis again, or just back: other processes may still be limiting
            # locally, their slots unknown to Redis; keep to the local share as well
            # until they are back too.
            wait, guard = self.fallback.reserve()
            if guard is None:
                return wait, None
        try:
            reply = self._reserve(
                keys=self._keys,
                args=[self.margin, DEFAULT_HOLD, self._log_ttl, _SEQ_TTL_MS, *self._windows],
            )
        except self._errors as exc:
            self._failed(exc, epoch)
            return (0.0, guard) if guard is not None else self.fallback.reserve()
        self._succeeded(epoch)
        if len(reply) == 1:
            if guard is not None:
                self.fallback.restamp(guard)  # never sent: it ends now
            return max(float(reply[0]), 0.0005), None
        if guard is not None:
            # The guard slot ends when the Redis slot does (restamp).
            with self._state_lock:
                self._guards[int(reply[1])] = guard
        return 0.0, -float(reply[1])

    def try_acquire(self) -> float:
        """Take a slot now if one is free, answered at once (compatibility).

        Returns:
            ``0.0`` when a slot was taken; otherwise the seconds to wait.
        """
        wait, stamp = self.reserve()
        if stamp is not None:
            self.restamp(stamp)
        return wait

    def restamp(self, stamp: float) -> None:
        """Move the slot taken with ``stamp`` to now (Redis's time), e.g. at the answer.

        A slot taken locally is moved locally; a slot in Redis while Redis is
        unreachable stays where it is (it expires in its time).
        """
        if stamp >= 0:
            self.fallback.restamp(stamp)
            return
        if self._guards:
            with self._state_lock:
                guard = self._guards.pop(int(-stamp), None)
            if guard is not None:
                self.fallback.restamp(guard)
        if not self._usable():
            return
        epoch = self._epoch
        try:
            self._restamp(keys=self._keys[:1], args=[int(-stamp), self._log_ttl])
        except self._errors as exc:
            self._failed(exc, epoch)
        else:
            self._succeeded(epoch)

    def take(
        self, timeout: float | None = None, *, stop: threading.Event | None = None
    ) -> float | None:
        """Take a slot, waiting until one is free: :meth:`reserve`'s blocking form.

        Args:
            timeout: The most seconds to wait; ``None`` waits as long as needed.
            stop: An event that ends the wait early (a sender shutting down).

        Returns:
            The slot's stamp (for :meth:`restamp`), or ``None`` on timeout or stop.
        """
        return take_slot(self.reserve, timeout, stop)

    def acquire(self, timeout: float | None = None) -> bool:
        """Take a slot, sleeping until one is free, answered at once; ``False`` on timeout."""
        stamp = self.take(timeout)
        if stamp is None:
            return False
        self.restamp(stamp)
        return True

    def defer(self, seconds: float) -> None:
        """Let nothing through, in any process, before ``seconds`` from now."""
        self.fallback.defer(seconds)
        if seconds <= 0 or not self._usable():
            return
        epoch = self._epoch
        try:
            self._defer(keys=self._keys[1:2], args=[float(seconds)])
        except self._errors as exc:
            self._failed(exc, epoch)
        else:
            self._succeeded(epoch)

    def note(self, outcome: Outcome) -> None:
        """Apply an answer's back-pressure to every process: a 429 or a ``Retry-After``.

        The gate lasts ``Retry-After`` seconds when given, else one second.
        """
        if outcome.status == 429 or outcome.retry_after is not None:
            self.defer(outcome.retry_after if outcome.retry_after is not None else 1.0)

    def close(self) -> None:
        """Close this process's connections to Redis (the next call opens new ones)."""
        with contextlib.suppress(*self._errors):
            self._client.close()

    def _after_fork(self) -> None:
        """In a forked child: new connections (never the parent's sockets), new locks."""
        if self._pid == os.getpid():
            return
        self.fallback._after_fork()
        self._open()

    def __repr__(self) -> str:
        windows = ", ".join(f"{limit}/{period:g}s" for limit, period in self.limits)
        where = "Redis" if not self._down else "local fallback"
        return f"<RedisRateLimiter {windows} account={self.account} via {where}>"
