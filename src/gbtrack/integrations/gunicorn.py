"""gunicorn: the server hooks gbtrack needs, as a one-liner.

On the command line::

    gunicorn -c python:gbtrack.integrations.gunicorn -w 4 myapp:app

or in your own ``gunicorn.conf.py``::

    from gbtrack.integrations.gunicorn import post_worker_init, worker_exit

- :func:`post_worker_init`: in each worker, once the application is loaded (with or
  without ``--preload``), the default tracker's sender keeps to ``1/workers`` of
  Gameball's rate limit, so that the workers together stay within the account's 100
  requests/s and 1,200 per 30 s. Only a sender still on Gameball's full windows is
  changed: a ``rate_limiter`` you configured (a share, or a limiter shared between
  processes) is left alone; so is a sender with an outbox (pass
  ``rate_limiter=rate_limit_share(n)`` to :func:`gbtrack.configure` then). A
  :class:`~gbtrack.senders.RedisRateLimiter` (``redis_url``) is kept, and keeps
  ``1/workers`` of the limits while Redis is unreachable, unless
  ``redis_fallback_share`` was configured.
- :func:`worker_exit`: the worker flushes and closes the default tracker before it
  exits, within half of gunicorn's ``graceful_timeout`` (at most 10 s), so that
  a restart neither loses nor repeats events.

``post_fork`` needs nothing from gbtrack: senders reset their queue, threads and
connections in a forked child by themselves (``os.register_at_fork``).
Module-level names here are only the hooks: gunicorn reads every setting name of a
``python:`` config module.
"""

from __future__ import annotations

from typing import Any

from gbtrack._tracker import get_tracker
from gbtrack.integrations._web import logger, rate_limit_share, share_rate_limit

__all__ = [
    "close_timeout",
    "post_worker_init",
    "rate_limit_share",
    "share_rate_limit",
    "worker_exit",
]


def post_worker_init(worker: Any) -> None:
    """Gunicorn hook: this worker keeps to its share of the rate limit."""
    workers = getattr(getattr(worker, "cfg", None), "workers", 1)
    try:
        share_rate_limit(int(workers))
    except Exception:  # never stop a worker from serving
        logger.exception("gbtrack: could not set this worker's share of the rate limit")


def close_timeout(graceful_timeout: float | None) -> float:
    """Seconds :func:`worker_exit` may spend closing: half the graceful timeout, at most 10."""
    if graceful_timeout is None or graceful_timeout <= 0:
        return 10.0
    return min(10.0, graceful_timeout / 2)


def worker_exit(server: Any, worker: Any) -> None:
    """Gunicorn hook: flush and close the default tracker before the worker exits."""
    timeout = close_timeout(getattr(getattr(server, "cfg", None), "graceful_timeout", None))
    try:
        if not get_tracker().close(timeout=timeout):
            logger.warning("gbtrack: worker exit: not every event was settled in %.1fs", timeout)
    except Exception:
        logger.exception("gbtrack: closing the tracker at worker exit failed")
