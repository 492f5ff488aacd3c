"""BackgroundSender: non-blocking delivery to Gameball from a daemon worker thread.

The shape follows OpenTelemetry's ``BatchSpanProcessor`` and sentry's
``BackgroundWorker``: ``send()`` appends to a bounded ``deque``; one lazily started,
named daemon thread (the *worker*) drains it by size or time, coalesces each
customer's events into one request, and keeps up to ``concurrency`` requests in
flight on a few daemon I/O threads. The worker never sleeps while holding a lock:
backoffs and rate-limit waits are "not before" times it waits on with its wake event.

Why I/O threads rather than an ``AsyncGameballClient`` on a private event loop: the
sync client is thread-safe and shares one connection pool, socket I/O releases the
GIL, the :class:`~gbtrack.senders.DeliveryClient` seam stays a plain synchronous
protocol for this sender and :class:`~gbtrack.senders.DirectSender` alike, and the
threads are daemons, so an ``atexit`` flush still works (``concurrent.futures`` pools
refuse work once interpreter shutdown has begun). At 100 requests/s the per-request
thread hand-off costs microseconds; bulk jobs carry 1,000 customer objects each.
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import heapq
import itertools
import logging
import os
import queue
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from gbtrack._errors import AuthenticationError, ServerError
from gbtrack._event import Event, EventDraft
from gbtrack._fork import reset_after_fork
from gbtrack._protocol import (
    DEFAULT_BASE_URL,
    MAX_BATCH_ITEMS,
    classify_item,
    client_failure,
    client_raised,
    describe_outcome,
    safe_error,
)
from gbtrack._report import ErrorHandler, Reporter, Stats
from gbtrack.senders._base import BaseSender, Sender
from gbtrack.senders._config import DeliveryConfig, Overflow
from gbtrack.senders._policy import DeliveryClient, Limiter, RateLimiter, RetryPolicy, Spill

if TYPE_CHECKING:
    from gbtrack._protocol import EventBatch, Outcome

__all__ = ["BackgroundSender"]

_log = logging.getLogger("gbtrack")

_READY_CAP = 2 * MAX_BATCH_ITEMS  # coalesced requests held ready before draining more
_OVERFLOW_LOG_INTERVAL = 5.0  # seconds between two overflow log lines during an outage
_POLL_DELAYS = (0.05, 0.1, 0.2, 0.4, 0.8, 1.0)  # batch-status polling backoff
_MAX_POLL_FAILURES = 8  # failed status polls before a job's fate counts as ambiguous
_CHILD_EXIT_PRIORITY = 10  # multiprocessing runs finalizers of priority >= 0 at exit
_STOP_GRACE = 0.05  # seconds close() gives the worker past its deadline to stop
_SPILLABLE = frozenset({"queue_overflow", "retries_exhausted", "expired", "closed", "unauthorized"})


def key_refused(outcome: Outcome) -> bool:
    """Whether Gameball refused the credentials (401/403, codes 1000-1999)."""
    return (
        outcome.permanent
        and isinstance(outcome.error, AuthenticationError)
        and not client_raised(outcome)
    )


def _left(deadline: float | None) -> float | None:
    """Seconds left until ``deadline`` (``None``: no deadline), never negative."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


class _Job:
    """One coalesced request (one customer's events) on its way."""

    __slots__ = ("attempts", "batch", "direct", "key", "mark", "n", "probe")

    def __init__(self, batch: EventBatch, mark: int) -> None:
        self.batch = batch
        self.key = batch.customer_id  # one request per customer at a time
        self.n = len(batch.events)
        self.attempts = 0
        self.direct = False  # one request of its own, never in a batch job
        self.probe = False  # the one request that tests a refused key
        # The send ordinal of the first event of the drain that made this job: flush()
        # waits for every job whose events may have been queued before its call.
        self.mark = mark

    def age(self, now_wall: float) -> float:
        return now_wall - min(e.timestamp.timestamp() for e in self.batch.events)


class _Placeholder:
    """Stands for a drain's jobs while its events are validated and coalesced."""

    __slots__ = ("mark",)

    def __init__(self, mark: int) -> None:
        self.mark = mark


class _Bulk:
    """One batch job: the requests it carries and its polling state."""

    __slots__ = ("job_id", "jobs", "poll_failures", "polls")

    def __init__(self, jobs: list[_Job]) -> None:
        self.jobs = jobs
        self.job_id: str | None = None
        self.polls = 0
        self.poll_failures = 0


class _IOPool:
    """A few daemon threads running request callables; results go to ``done``."""

    def __init__(self, size: int, name: str, done: queue.SimpleQueue[Any], wake: threading.Event):
        self.size = size
        self.name = name
        self.tasks: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.done = done
        self.wake = wake
        self.threads: list[threading.Thread] = []

    def submit(self, tag: str, obj: Any, fn: Callable[[], Any], in_flight: int) -> None:
        """Queue ``fn``; start another thread while fewer exist than requests in flight."""
        self.tasks.put((tag, obj, fn))
        if len(self.threads) < min(self.size, in_flight):
            thread = threading.Thread(
                target=self._run, name=f"{self.name}-io-{len(self.threads) + 1}", daemon=True
            )
            self.threads.append(thread)
            thread.start()

    def _run(self) -> None:
        tasks, done, wake = self.tasks, self.done, self.wake
        while True:
            item = tasks.get()
            if item is None:
                return
            tag, obj, fn = item
            try:
                result = fn()
            except BaseException as exc:  # a client must not raise; if it does, record it
                result = exc
            done.put((tag, obj, result))
            wake.set()

    def shutdown(self, timeout: float | None) -> None:
        """Ask the threads to stop; wait at most ``timeout`` (a request may hang)."""
        for _ in self.threads:
            self.tasks.put(None)
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self.threads:
            thread.join(_left(deadline))


def _close_at_exit(ref: weakref.ReferenceType[BackgroundSender], timeout: float) -> None:
    """The ``atexit`` hook: close the sender (bounded), so nothing is left untold."""
    sender = ref()
    if sender is not None and not sender.closed:
        try:
            sender._shutdown(timeout, at_exit=True)
        except Exception:  # pragma: no cover - never fail interpreter exit
            _log.exception("gbtrack: closing the sender at exit failed")


def _noop() -> None:
    pass


# ``weakref.finalize`` runs its finalizers from one ``atexit`` hook, registered when the
# first finalizer is made; the client's connection pools close through such finalizers.
# ``atexit`` runs hooks last registered first, so registering that hook now, before any
# sender registers its own, makes every sender's exit flush run while the transports are
# still open: closing them under requests in flight would make those requests ambiguous
# and retried (delivered twice).
_FINALIZERS_RUN_AFTER_SENDERS = weakref.finalize(_noop, _noop)


class BackgroundSender(BaseSender):
    """Deliver events to Gameball from a background worker; the production default.

    ``send()`` never blocks (unless ``overflow="block"``) and never raises. It takes
    :class:`~gbtrack.EventDraft`s from the tracker (``accepts_drafts``) and validates
    them in the worker, batch-wise, where they are serialised. Every
    event ends delivered, spilled, or counted as dropped with a reason
    (``queue_overflow``, ``rejected``, ``retries_exhausted``, ``expired``,
    ``ambiguous``, ``closed``) and reported to ``on_error``.

    Args:
        client: The Gameball client. ``None`` builds a
            :class:`~gbtrack.gameball.GameballClient` from ``api_key`` and friends;
            only a client built here is closed by :meth:`close`.
        api_key: The Gameball API key (when ``client`` is ``None``).
        secret_key: The secret key; enables bulk mode, and v4.1 unless ``secure=False``.
        base_url: Gameball's base URL (e.g. a local emulator).
        secure: v4.1 "Secure Integration Mode": ``None`` (default) when a secret key
            is set, ``True`` always (requires ``secret_key``), ``False`` never (v4.0).
        lang: A language code sent as the ``lang`` header.
        timeout: The client's request timeout in seconds.
        max_queue_size: The most events held (queued, waiting to retry, in flight).
        max_batch_size: The most events the worker takes from the queue at once; a
            full batch wakes the worker before ``flush_interval``.
        flush_interval: The most seconds an event waits in the queue.
        concurrency: The most requests in flight. The default, 16, keeps 100
            requests/s flowing with round trips up to ~150 ms.
        rate_limiter: The client-side limiter every request goes through. Share one
            between senders of the same Gameball account.
        retry: The retry policy.
        overflow: ``"drop_newest"`` drops (and counts) events when the queue is full;
            ``"block"`` makes ``send()`` wait up to ``block_timeout`` first.
        block_timeout: Seconds ``send()`` may wait for room with ``overflow="block"``.
        bulk: Use the batch endpoint when a secret key is configured and the backlog
            exceeds ``bulk_threshold`` customer requests.
        bulk_threshold: The backlog, in coalesced requests, that switches to bulk.
        spill: Where events go instead of being dropped for overflow, exhausted
            retries, age, or shutdown (the durable outbox).
        close_spill: Close ``spill`` when this sender closes (set when the spill was
            built for this sender, as ``configure(outbox=...)`` does).
        auth_probe_interval: Seconds between two probe requests while Gameball refuses
            the key (401/403, codes 1000-1999): sending stops, one ERROR line names the
            problem, events are kept (in memory, or spilled to the outbox), and the first
            probe that is accepted resumes sending.
        exit_timeout: Seconds the ``atexit`` hook may spend closing this sender (it
            flushes, then closes, before any connection of the client is closed).
        on_error: Called with a :class:`~gbtrack.TrackingError` for each drop.
    """

    accepts_drafts = True

    def __init__(
        self,
        client: DeliveryClient | None = None,
        *,
        api_key: str | SecretStr | None = None,
        secret_key: str | SecretStr | None = None,
        base_url: str = DEFAULT_BASE_URL,
        secure: bool | None = None,
        lang: str | None = None,
        timeout: float = 10.0,
        max_queue_size: int = 100_000,
        max_batch_size: int = 1_000,
        flush_interval: float = 0.5,
        concurrency: int = 16,
        rate_limiter: Limiter | None = None,
        retry: RetryPolicy | None = None,
        overflow: Overflow = "drop_newest",
        block_timeout: float = 1.0,
        bulk: bool = True,
        bulk_threshold: int = 200,
        spill: Spill | None = None,
        close_spill: bool = False,
        exit_timeout: float = 5.0,
        auth_probe_interval: float = 30.0,
        on_error: ErrorHandler | None = None,
    ) -> None:
        super().__init__(on_error=on_error)
        config = DeliveryConfig(  # validates (ValueError)
            api_key=api_key,
            secret_key=secret_key,
            base_url=base_url,
            secure=secure,
            lang=lang,
            timeout=timeout,
            max_queue_size=max_queue_size,
            max_batch_size=max_batch_size,
            flush_interval=flush_interval,
            concurrency=concurrency,
            rate_limiter=rate_limiter,
            retry=retry,
            overflow=overflow,
            block_timeout=block_timeout,
            bulk=bulk,
            bulk_threshold=bulk_threshold,
            spill=spill,
            exit_timeout=exit_timeout,
            auth_probe_interval=auth_probe_interval,
        )
        self.config = config
        # What this sender built and must close, closed in reverse order in one place
        # (_close_owned): each closer gets the seconds left.
        self._owned: list[Callable[[float | None], None]] = []
        if client is None:
            if api_key is None:
                raise ValueError("BackgroundSender needs a client or an api_key")
            self._client_options: dict[str, Any] | None = {
                "api_key": api_key,
                "secret_key": secret_key,
                "base_url": base_url,
                "secure": secure,
                "lang": lang,
                "timeout": timeout,
                # One keep-alive connection per request in flight.
                "max_connections": concurrency,
            }
            client = self._new_client()
            self._owned.append(self._close_client)  # the current one: a child has its own
        else:
            self._client_options = None
        self.client: DeliveryClient = client
        self.max_queue_size = max_queue_size
        self.max_batch_size = max_batch_size
        self.flush_interval = flush_interval
        self.concurrency = concurrency
        self.rate_limiter: Limiter = rate_limiter if rate_limiter is not None else RateLimiter()
        self.retry = retry if retry is not None else RetryPolicy()
        self.overflow: Overflow = overflow
        self.block_timeout = block_timeout
        self.bulk = bulk
        self.bulk_threshold = bulk_threshold
        self.spill = spill
        if close_spill and spill is not None:
            self._own_spill(spill)
        self.exit_timeout = exit_timeout
        self.auth_probe_interval = auth_probe_interval
        self._successor: Sender | None = None  # see hand_over()
        self._init_state()
        reset_after_fork(self)
        self._atexit_hook = functools.partial(_close_at_exit, weakref.ref(self), exit_timeout)
        atexit.register(self._atexit_hook)

    @classmethod
    def from_config(
        cls,
        config: DeliveryConfig,
        *,
        client: DeliveryClient | None = None,
        on_error: ErrorHandler | None = None,
    ) -> BackgroundSender:
        """Build a sender from a :class:`~gbtrack.senders.DeliveryConfig`.

        With ``config.outbox``, the sender builds a durable
        :class:`~gbtrack.outbox.OutboxSender` there (sharing its client and rate
        limiter), uses it as its ``spill``, and closes it before its client.

        Raises:
            ConfigurationError: If the outbox cannot be opened.
        """
        options = {f: getattr(config, f) for f in DeliveryConfig.names() - {"outbox", "redis_url"}}
        options["rate_limiter"] = limiter = config.build_rate_limiter(client)
        sender = cls(client, on_error=on_error, **options)
        close_limiter = getattr(limiter, "close", None)
        if config.redis_url is not None and callable(close_limiter):  # built here
            sender._owned.append(lambda left: close_limiter())
        if config.outbox is not None:
            from gbtrack.outbox import OutboxSender

            try:
                outbox = OutboxSender(
                    sender.client, path=config.outbox, rate_limiter=sender.rate_limiter
                )
            except BaseException:
                sender.close(timeout=0)
                raise
            sender.spill = outbox
            sender._own_spill(outbox)
            sender.config = dataclasses.replace(config, outbox=None, spill=outbox)
        return sender

    def _own_spill(self, spill: Spill) -> None:
        close = getattr(spill, "close", None)
        if callable(close):
            self._owned.append(close)

    def _close_client(self, left: float | None) -> None:
        self.client.close()

    # --- construction and fork -----------------------------------------------------------
    def _new_client(self) -> DeliveryClient:
        from gbtrack.gameball import GameballClient

        assert self._client_options is not None
        client: DeliveryClient = GameballClient(**self._client_options)
        return client

    def _init_state(self) -> None:
        """(Re)create the queue, locks and worker state: at start and in a forked child."""
        self._pid = os.getpid()
        self._queue: deque[Event | EventDraft] = deque()
        self._lock = threading.Lock()  # guards _taken/_settled and the flush condition
        self._settled_cond = threading.Condition(self._lock)
        self._space = threading.Condition(threading.Lock())  # overflow="block" waiters
        self._blocked = 0
        self._wake = threading.Event()
        self._worker: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._stopping = False
        self._abandoned = False  # whoever sets it (worker or close) reports what is held
        self._flush_waiters = 0
        self._taken = 0  # events moved from the queue to the worker
        self._settled = 0  # events finally handled: delivered, dropped or spilled
        self._live: dict[int, int] = {}  # unfinished jobs by their drain's mark
        self._held = 0  # events taken and not yet settled (ready, retrying, in flight)
        self._in_flight = 0  # events in requests under way
        self._overflow_lock = threading.Lock()
        self._overflow_pending = 0  # overflow drops counted but not yet reported
        self._overflow_reported_at = -_OVERFLOW_LOG_INTERVAL
        self._overflow_event: Event | EventDraft | None = None
        self._spilled = 0
        # Worker-only state below.
        self._done: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pool = _IOPool(self.concurrency, "gbtrack-sender", self._done, self._wake)
        self._ready: deque[_Job] = deque()
        self._retry_heap: list[tuple[float, int, _Job]] = []
        self._poll_heap: list[tuple[float, int, _Bulk]] = []
        self._seq = itertools.count()
        self._busy: set[str] = set()  # customers with a request in flight
        self._requests = 0  # requests (sends, batch creates, polls) in flight
        self._in_flight_jobs: set[_Job] = set()
        self._in_flight_bulks: set[_Bulk] = set()
        self._next_drain: float | None = None  # when the oldest queued event is due
        # A refused key (401/403, codes 1000-1999) stops sending: one probe request
        # every ``auth_probe_interval`` seconds until the key works again.
        self._key_refused = False
        self._probe_at = 0.0
        self._probing = False

    def _after_fork(self) -> None:
        """In a forked child: forget the parent's queue and threads, start afresh."""
        if self._pid == os.getpid():
            return
        # The parent's events stay the parent's: the child must never send them again.
        self.reporter = Reporter(self.reporter.on_error, self.reporter.log)
        self._lost_at_flush = 0
        self._init_state()
        after = getattr(self.rate_limiter, "_after_fork", None)
        if callable(after):
            after()
        if self._client_options is not None:
            # The parent's connections are shared sockets: abandon them, do not close them.
            self.client = self._new_client()

    # --- the hot path --------------------------------------------------------------------
    def send(self, event: Event | EventDraft) -> None:
        """Queue ``event``; never blocks (unless ``overflow="block"``), never raises."""
        if self._closed:
            self._drop_closed(event)
            return
        q = self._queue
        if len(q) + self._held >= self.max_queue_size and not self._make_room(event):
            return
        q.append(event)
        if self._worker is None:
            self._start_worker()
        # Wake the worker when the queue starts (to arm its timer) and when a full
        # batch is waiting; a missed wake (a racing append) only waits one idle tick.
        n = len(q)
        if n == 1 or n == self.max_batch_size:
            self._wake.set()

    def _drop_closed(self, event: Event | EventDraft) -> None:
        successor = self._successor
        if successor is None:
            super()._drop_closed(event)
            return
        valid = self.validated((event,))  # a successor may not take drafts
        if valid:
            successor.send(valid[0])
            self.reporter.count("handed_over")

    def _make_room(self, event: Event | EventDraft) -> bool:
        """The queue is full: wait (``block``) or drop/spill; True when there is room now."""
        try:
            if self.overflow == "block" and self.block_timeout > 0:
                deadline = time.monotonic() + self.block_timeout
                if self._worker is None:
                    self._start_worker()
                with self._space:
                    self._blocked += 1
                    try:
                        while len(self._queue) + self._held >= self.max_queue_size:
                            left = deadline - time.monotonic()
                            if left <= 0 or self._closed:
                                break
                            self._wake.set()
                            self._space.wait(left)
                        else:
                            return True
                    finally:
                        self._blocked -= 1
            self._overflowed(event)
        except Exception:  # pragma: no cover - send must never raise
            _log.exception("gbtrack: overflow handling failed")
        return False

    def _overflowed(self, event: Event | EventDraft) -> None:
        if self.spill is not None:
            # The spill stores events: validate this one here (an outage's slow path).
            valid = self.validated((event,))
            if not valid or self._spill(valid, "queue_overflow") == 1:
                return
        with self._overflow_lock:
            self._overflow_pending += 1
            self._overflow_event = event
        self._report_overflow(force=False)

    def _report_overflow(self, *, force: bool) -> None:
        """Report counted overflow drops, at most one log line per interval (all counted)."""
        now = time.monotonic()
        with self._overflow_lock:
            n = self._overflow_pending
            if n == 0 or (not force and now - self._overflow_reported_at < _OVERFLOW_LOG_INTERVAL):
                return
            event = self._overflow_event
            self._overflow_pending = 0
            self._overflow_event = None
            self._overflow_reported_at = now
        self.reporter.drop(
            "queue_overflow",
            f"queue full ({self.max_queue_size} events held); {n} event(s) dropped"
            + (f", the latest {event.name!r}" if event is not None else ""),
            event=event if type(event) is Event else None,
            n=n,
        )

    def _start_worker(self) -> None:
        with self._start_lock:
            if self._pid != os.getpid():
                self._after_fork()
            if self._worker is not None or self._stopping:
                return
            self._worker = threading.Thread(target=self._run, name="gbtrack-sender", daemon=True)
            self._worker.start()
            self._close_at_child_exit()

    def _close_at_child_exit(self) -> None:
        """In a ``multiprocessing`` child, close at its normal exit too.

        A forked child ends with ``os._exit()``: ``atexit`` hooks never run there, but
        ``multiprocessing`` runs its own finalizers first (``Process`` and ``Pool``
        workers alike). Registered when the worker starts, so after the child's
        bootstrap has cleared the finalizers inherited from the parent.
        """
        mp = sys.modules.get("multiprocessing")
        if mp is None or mp.parent_process() is None:
            return
        from multiprocessing.util import Finalize

        Finalize(self, self._atexit_hook, exitpriority=_CHILD_EXIT_PRIORITY)

    # --- flush and close -----------------------------------------------------------------
    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event queued before the call is delivered or finally failed.

        Args:
            timeout: The most seconds to wait; ``None`` waits as long as it takes.

        Returns:
            Whether everything submitted before the call was delivered (or spilled to
            the outbox, which is durable): ``True`` when all of it settled in time
            and no event was dropped since the previous ``flush()`` on this sender
            (for any reason: ``rejected``, ``queue_overflow``, ``client_error``, ...);
            ``False`` on timeout or after such a drop. The drops stay counted in
            :meth:`stats`; the next ``flush()`` answers for the events after them.
        """
        if self._pid != os.getpid():
            self._after_fork()
        if threading.current_thread() is self._worker:
            # Called from an on_error hook on the worker: waiting would deadlock.
            return False
        with self._lock:
            target = self._taken + len(self._queue)
            settled = self._flushed(target)
            if not settled:
                self._flush_waiters += 1
        if settled:
            self._report_overflow(force=True)
            return self._nothing_lost_since_flush()
        try:
            if self._worker is None:
                self._start_worker()
            self._wake.set()
            with self._settled_cond:
                done = self._settled_cond.wait_for(
                    lambda: self._flushed(target) or self._key_refused, timeout
                )
                done = done and not self._key_refused
        finally:
            with self._lock:
                self._flush_waiters -= 1
        self._report_overflow(force=True)
        clean = self._nothing_lost_since_flush()
        return bool(done) and clean

    async def aflush(self, timeout: float | None = None) -> bool:
        """:meth:`flush` for asyncio code: waits in a thread, never blocking the loop."""
        import asyncio

        return await asyncio.to_thread(self.flush, timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Flush, stop the worker and close a client built here; idempotent.

        The order is fixed: stop accepting, flush (bounded by ``timeout``), stop the
        worker, then close what this sender owns (the spill it built, then the client).
        Events still unsettled after ``timeout`` are spilled or dropped with reason
        ``closed``; later sends are dropped with reason ``closed``. When anything was
        dropped or spilled, one WARNING line gives this sender's true totals (the
        per-reason drop lines are throttled).

        Returns:
            What the final :meth:`flush` answered: ``True`` if everything was
            delivered (or spilled) in time and nothing dropped since the last flush.
        """
        return self._shutdown(timeout, at_exit=False)

    def hand_over(self, successor: Sender, timeout: float | None = None) -> bool:
        """Close, giving what is still unsettled to ``successor`` instead of dropping it.

        For a sender being replaced (:func:`gbtrack.configure` with new delivery
        options, e.g. a new API key after Gameball refused this one): it flushes for at
        most ``timeout`` seconds like :meth:`close`, then the events it still holds, and
        those sent later, go to ``successor.send()`` (counted ``handed_over``).

        Returns:
            What :meth:`close` answers.
        """
        if successor is not self:
            self._successor = successor
        return self.close(timeout)

    def _shutdown(self, timeout: float | None, *, at_exit: bool) -> bool:
        with self._start_lock:
            if self._closed:
                return True
            self._closed = True
        deadline = None if timeout is None else time.monotonic() + timeout
        ok = self.flush(timeout)
        self._stop_worker(deadline)
        self._pool.shutdown(_left(deadline))
        self._report_overflow(force=True)
        self._close_owned(deadline)
        atexit.unregister(self._atexit_hook)
        self._summarise("at exit" if at_exit else "at close")
        return ok

    def _stop_worker(self, deadline: float | None) -> None:
        """Stop the worker (it spills or drops what it holds), then sweep the queue."""
        worker = self._worker
        with self._start_lock:
            self._stopping = True
        self._wake.set()
        with self._space:
            self._space.notify_all()
        if worker is not None and worker is not threading.current_thread():
            # A little grace past the deadline: a free worker stops in a millisecond.
            worker.join(None if deadline is None else max(_left(deadline) or 0.0, _STOP_GRACE))
            if worker.is_alive() and self._claim_abandon():
                # Busy (an on_error hook, a huge batch): count what it holds here, once.
                held = self._held
                if held:
                    self.reporter.drop(
                        "closed",
                        f"{held} event(s) held by a busy worker when the sender closed",
                        n=held,
                    )
        # Sends that raced with close() after the worker's last sweep.
        self._abandon_queue()

    def _close_owned(self, deadline: float | None) -> None:
        """Close what this sender built, last built first (the spill before its client)."""
        owned, self._owned = self._owned, []
        for close in reversed(owned):
            try:
                close(_left(deadline))
            except Exception:  # pragma: no cover - closing must not raise
                _log.exception("gbtrack: closing %r failed", close)

    def _summarise(self, when: str) -> None:
        """One line with the true totals when anything was lost (log lines are throttled)."""
        stats = self.stats()
        unsettled = len(self._queue) + self._held
        if not stats.dropped and not self._spilled and not unsettled:
            return
        dropped = ", ".join(f"{reason} {n}" for reason, n in sorted(stats.dropped.items()))
        _log.warning(
            "gbtrack: sender closed %s: %d delivered, %d spilled to the outbox, "
            "%d dropped (%s), %d unsettled",
            when,
            stats.delivered,
            self._spilled,
            stats.total_dropped,
            dropped or "none",
            unsettled,
        )

    # --- stats ---------------------------------------------------------------------------
    def stats(self) -> Stats:
        """Return delivered, retried, dropped (by reason), in queue, in flight, last error."""
        in_flight = self._in_flight
        snap = self.reporter.snapshot(
            in_queue=len(self._queue) + max(0, self._held - in_flight), in_flight=in_flight
        )
        pending = self._overflow_pending
        if pending:
            snap = snap.merge(Stats(dropped={"queue_overflow": pending}))
        spill_stats = getattr(self.spill, "stats", None)
        if callable(spill_stats):
            theirs = spill_stats()
            if isinstance(theirs, Stats):
                # What the spill delivered later and still holds on disk count here too.
                snap = snap.merge(
                    Stats(
                        delivered=theirs.delivered,
                        retried=theirs.retried,
                        dropped=theirs.dropped,
                        persisted=theirs.persisted,
                    )
                )
        return snap

    @property
    def spilled(self) -> int:
        """How many events were handed to ``spill`` instead of being dropped."""
        return self._spilled

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"<BackgroundSender {state} queued={len(self._queue)} held={self._held} "
            f"client={type(self.client).__name__}>"
        )

    # --- the worker ----------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._loop()
        except BaseException:  # pragma: no cover - a bug; keep the process alive
            _log.exception("gbtrack: sender worker crashed")
            self.reporter.note_error("sender worker crashed")
        finally:
            self._abandon_all()

    def _loop(self) -> None:
        wake = self._wake
        while True:
            now = time.monotonic()
            self._collect()
            stopping = self._stopping
            if stopping and not self._flush_waiters:
                return
            self._drain(now)
            heap = self._retry_heap
            while heap and heap[0][0] <= now:
                self._ready.append(heapq.heappop(heap)[2])
            limit_wait = self._dispatch(now)
            if self._blocked:
                with self._space:
                    self._space.notify_all()
            if self._overflow_pending:
                self._report_overflow(force=False)
            # Sleep until the next thing that can happen: a full batch or flush (woken),
            # a completion (woken), the drain timer, a retry or poll due, a free slot.
            # Timers that cannot act now (no room, no request slot) wait for a wake-up.
            timeout = self.flush_interval
            if self._queue and self._next_drain is not None and len(self._ready) < _READY_CAP:
                timeout = min(timeout, self._next_drain - now)
            if heap:
                timeout = min(timeout, heap[0][0] - now)
            if self._poll_heap and self._requests < self.concurrency:
                timeout = min(timeout, self._poll_heap[0][0] - now)
            if limit_wait is not None and self._ready:
                timeout = min(timeout, limit_wait)
            # A floor, so that no timer arithmetic can ever make the worker spin.
            wake.wait(max(timeout, 0.0005))
            wake.clear()

    def _drain(self, now: float) -> None:
        """Move queued events into coalesced requests when a batch is due."""
        q = self._queue
        if not q:
            self._next_drain = None
            return
        if self._next_drain is None:
            # The first event since the last drain: it may wait one interval for company.
            self._next_drain = now + self.flush_interval
        if len(self._ready) >= _READY_CAP:
            return
        if not (
            len(q) >= self.max_batch_size
            or now >= self._next_drain
            or self._flush_waiters
            or self._stopping
        ):
            return
        from gbtrack.gameball import coalesce

        self._next_drain = None
        while q and len(self._ready) < _READY_CAP:
            with self._lock:
                k = min(len(q), self.max_batch_size)
                popleft = q.popleft
                items = [popleft() for _ in range(k)]
                mark = self._taken
                self._taken += k
                self._held += k
                # A placeholder job: flush() never sees these events taken but in no job.
                self._live[mark] = self._live.get(mark, 0) + 1
            # Validation and coalescing run outside the lock (flush() waits on it).
            events = self.validated(items)
            jobs = [_Job(batch, mark) for batch in coalesce(events)]
            with self._lock:
                self._live[mark] += len(jobs)
            self._ready.extend(jobs)
            # Invalid drafts are settled (counted and reported by validated()), and the
            # placeholder goes.
            self._settle(k - len(events), (_Placeholder(mark),))

    def _dispatch(self, now: float) -> float | None:
        """Start requests while slots are free; return the rate limiter's wait, if any."""
        limiter = self.rate_limiter
        polls = self._poll_heap
        # Status polls are not event requests: Gameball's event rate limit does not
        # count them, so they take no limiter slot (only a request slot).
        while polls and polls[0][0] <= now and self._requests < self.concurrency:
            self._submit_poll(heapq.heappop(polls)[2])
        if self._key_refused:
            return self._dispatch_probe(now)
        ready = self._ready
        if (
            self.bulk
            and len(ready) + len(self._queue) > self.bulk_threshold
            and getattr(self.client, "has_secret_key", False)
        ):
            while ready and self._requests < self.concurrency:
                bulk_wait = self._dispatch_bulk()
                if bulk_wait is None:
                    break
                if bulk_wait > 0:
                    return bulk_wait
        skipped: list[_Job] = []
        try:
            while ready and self._requests < self.concurrency:
                job = ready.popleft()
                if job.key in self._busy:  # one request per customer at a time (code 2001)
                    skipped.append(job)
                    continue
                wait, stamp = limiter.reserve()
                if stamp is None:
                    ready.appendleft(job)
                    return wait
                self._submit_send(job, stamp)
        finally:
            ready.extendleft(reversed(skipped))
        return None

    def _dispatch_probe(self, now: float) -> float | None:
        """The key was refused: send one request when a probe is due, nothing else."""
        ready = self._ready
        if self._probing or not ready or self._requests >= self.concurrency:
            return None
        if now < self._probe_at:
            return self._probe_at - now
        wait, stamp = self.rate_limiter.reserve()
        if stamp is None:
            return wait
        job = ready.popleft()
        job.probe = True
        self._probing = True
        self._submit_send(job, stamp)
        return None

    def _dispatch_bulk(self) -> float | None:
        """Start one batch job from ready requests; None when none is eligible."""
        ready = self._ready
        chosen: list[_Job] = []
        kept: list[_Job] = []
        seen: set[str] = set()
        while ready and len(chosen) < MAX_BATCH_ITEMS:
            job = ready.popleft()
            # A session token is a per-request header the batch endpoint cannot carry;
            # one customer once per job keeps item errors attributable.
            # A job whose batch job raised in the client goes alone (``direct``).
            if (
                job.batch.session_token is not None
                or job.direct
                or job.key in self._busy
                or job.key in seen
            ):
                kept.append(job)
                continue
            seen.add(job.key)
            chosen.append(job)
        ready.extendleft(reversed(kept))
        if not chosen:
            return None
        limiter = self.rate_limiter
        wait, stamp = limiter.reserve()
        if stamp is None:
            ready.extendleft(reversed(chosen))
            return wait
        bulk = _Bulk(chosen)
        for job in chosen:
            self._busy.add(job.key)
            self._in_flight += job.n
        self._requests += 1
        self._in_flight_bulks.add(bulk)
        batches = [job.batch for job in chosen]
        client = self.client

        def create() -> Outcome:
            try:
                return client.create_batch(batches)
            finally:
                limiter.restamp(stamp)

        self._pool.submit("create", bulk, create, self._requests)
        return 0.0

    def _submit_send(self, job: _Job, stamp: float) -> None:
        self._busy.add(job.key)
        self._in_flight += job.n
        self._requests += 1
        self._in_flight_jobs.add(job)
        client, batch, limiter = self.client, job.batch, self.rate_limiter

        def send() -> Outcome:
            # The slot counts from the answer, by when the request surely arrived:
            # thread hand-offs and connection set-up cannot bunch arrivals at Gameball.
            try:
                return client.send(batch)
            finally:
                limiter.restamp(stamp)

        self._pool.submit("send", job, send, self._requests)

    def _submit_poll(self, bulk: _Bulk) -> None:
        self._requests += 1
        client, job_id = self.client, bulk.job_id
        assert job_id is not None
        self._pool.submit("poll", bulk, lambda: client.batch_status(job_id), self._requests)

    def _schedule_poll(self, bulk: _Bulk) -> None:
        delay = _POLL_DELAYS[min(bulk.polls, len(_POLL_DELAYS) - 1)]
        bulk.polls += 1
        heapq.heappush(self._poll_heap, (time.monotonic() + delay, next(self._seq), bulk))

    # --- outcomes --------------------------------------------------------------------------
    def _collect(self) -> None:
        done = self._done
        while True:
            try:
                tag, obj, result = done.get_nowait()
            except queue.Empty:
                return
            self._requests -= 1
            outcome = self._as_outcome(result)
            if tag == "send":
                self._in_flight_jobs.discard(obj)
                self._release(obj)
                self._on_outcome(obj, outcome)
            elif tag == "create":
                self._on_created(obj, outcome)
            else:
                self._on_polled(obj, outcome)

    @staticmethod
    def _as_outcome(result: Any) -> Outcome:
        # A client that raised is a permanent failure (client_error), never ambiguous.
        outcome = client_failure(result)
        if client_raised(outcome):
            _log.error("gbtrack: %s instead of returning an outcome", outcome.error)
        return outcome

    def _release(self, job: _Job) -> None:
        self._busy.discard(job.key)
        self._in_flight -= job.n

    def _on_outcome(self, job: _Job, outcome: Outcome, *, item: bool = False) -> None:
        """Settle, retry or drop one request's events after ``outcome``.

        ``item``: the outcome of one item of a batch job whose request was accepted (an
        item's auth code is that item's rejection, not a refused key).
        """
        if job.probe:
            job.probe = self._probing = False
            if outcome.delivered:
                self._key_accepted()
        if not item and key_refused(outcome):
            self._refuse_key(job, outcome)
            return
        if outcome.delivered:
            self.reporter.count("delivered", job.n)
            self._settle(job.n, (job,))
            return
        if client_raised(outcome) and job.n > 1:
            self._split(job)
            return
        self.rate_limiter.note(outcome)
        job.attempts += 1
        decision = self.retry.decide(outcome, job.attempts, job.age(time.time()))
        if decision.retry:
            self.reporter.count("retried", job.n)
            self.reporter.note_error(decision.message)
            not_before = time.monotonic() + decision.delay
            heapq.heappush(self._retry_heap, (not_before, next(self._seq), job))
            return
        assert decision.reason is not None
        self._give_up(
            list(job.batch.events),
            decision.reason,
            decision.message,
            safe_error(outcome),
            jobs=(job,),
        )

    def _refuse_key(self, job: _Job, outcome: Outcome) -> None:
        """Gameball refused the key: stop sending, keep the events, probe later.

        With a spill (the outbox), the refused request's events go there (reason
        ``unauthorized``), where the outbox's worker moves them to its dead letter with
        Gameball's code, for ``gbtrack outbox retry --code 1000`` once the key is fixed.
        Without one, they wait at the head of the line for the key to work again.
        """
        self._probe_at = time.monotonic() + self.auth_probe_interval
        if not self._key_refused:
            self._key_refused = True
            _log.error(
                "gbtrack: Gameball refused the API key (%s): sending is stopped and events "
                "are kept (%s); a probe every %gs resumes when the key works, or "
                "configure() a new key",
                describe_outcome(outcome),
                "in the outbox"
                if self.spill is not None
                else "in memory, then dropped as queue_overflow when the queue is full",
                self.auth_probe_interval,
            )
            with self._settled_cond:  # flush() answers at once: nothing will settle
                self._settled_cond.notify_all()
        self.reporter.note_error(f"API key refused: {describe_outcome(outcome)}")
        if self.spill is not None:
            self._give_up(
                list(job.batch.events),
                "unauthorized",
                f"Gameball refused the API key: {describe_outcome(outcome)}",
                safe_error(outcome),
                jobs=(job,),
            )
        else:
            self._ready.appendleft(job)

    def _key_accepted(self) -> None:
        if self._key_refused:
            self._key_refused = False
            _log.warning("gbtrack: Gameball accepts the API key again; sending resumed")
            self._wake.set()

    def _split(self, job: _Job) -> None:
        """The client raised on ``job``'s events: send each alone, now, to find the bad one.

        One poisoned event never delays its batch: the others go at once (no backoff,
        no attempt counted) and only the event that raises alone fails (``client_error``).
        """
        from gbtrack._protocol import EventBatch

        singles = [_Job(EventBatch.from_event(event), job.mark) for event in job.batch.events]
        for single in singles:
            single.direct = True
        with self._lock:
            self._live[job.mark] += len(singles) - 1
        self._ready.extendleft(reversed(singles))

    def _on_created(self, bulk: _Bulk, outcome: Outcome) -> None:
        if client_raised(outcome):
            # Not the job's fault nor Gameball's: each request goes alone instead.
            self._in_flight_bulks.discard(bulk)
            for job in bulk.jobs:
                self._release(job)
                job.direct = True
            self._ready.extendleft(reversed(bulk.jobs))
            return
        job_id = outcome.job_id if outcome.delivered else None
        if outcome.delivered and job_id is None:
            # Accepted without a job id: nothing to poll, so take the 2xx at its word.
            self._finish_bulk(bulk, outcome)
            return
        if not outcome.delivered:
            self._finish_bulk(bulk, outcome)
            return
        bulk.job_id = job_id
        self._schedule_poll(bulk)

    def _on_polled(self, bulk: _Bulk, outcome: Outcome) -> None:
        from gbtrack._protocol import Outcome, OutcomeKind

        status = outcome.batch_status
        if status is None:
            bulk.poll_failures += 1
            refused = outcome.permanent and not client_raised(outcome)
            if refused or bulk.poll_failures >= _MAX_POLL_FAILURES:
                # The job was accepted but its fate cannot be learnt: ambiguous.
                self._finish_bulk(bulk, Outcome(OutcomeKind.AMBIGUOUS, error=outcome.error))
            else:
                self._schedule_poll(bulk)
            return
        if not status.done:
            self._schedule_poll(bulk)
            return
        failures = status.item_errors([job.batch for job in bulk.jobs])
        if failures is None:
            message = (
                f"batch job {status.batch_id} {status.status} with "
                f"{status.failed_items} failed item(s) that its errors do not identify"
            )
            self._finish_bulk(bulk, Outcome(OutcomeKind.AMBIGUOUS, error=ServerError(message)))
            return
        self._in_flight_bulks.discard(bulk)
        # The common case, every item delivered, is counted and settled once per job.
        delivered = 0
        finished: list[_Job] = []
        busy = self._busy
        for i, job in enumerate(bulk.jobs):
            busy.discard(job.key)
            error = failures.get(i) if failures else None
            if error is None:
                delivered += job.n
                finished.append(job)
                continue
            self._in_flight -= job.n
            outcome = classify_item(error.code, f"batch job {status.batch_id} item {i} failed")
            self._on_outcome(job, outcome, item=True)
        self._in_flight -= delivered
        if delivered:
            self.reporter.count("delivered", delivered)
            self._settle(delivered, finished)

    def _finish_bulk(self, bulk: _Bulk, outcome: Outcome) -> None:
        """Apply one outcome to every request of a batch job."""
        self._in_flight_bulks.discard(bulk)
        for job in bulk.jobs:
            self._release(job)
            self._on_outcome(job, outcome)

    def _settle(self, n: int, jobs: Iterable[_Job | _Placeholder] = ()) -> None:
        """Count ``n`` events as finally handled; ``jobs`` are now finished."""
        with self._lock:
            self._settled += n
            self._held -= n
            live = self._live
            for job in jobs:
                left = live[job.mark] - 1
                if left:
                    live[job.mark] = left
                else:
                    del live[job.mark]
            self._settled_cond.notify_all()

    def _flushed(self, target: int) -> bool:
        """Whether every event sent before ordinal ``target`` is settled (under lock)."""
        return self._taken >= target and all(mark >= target for mark in self._live)

    def _spill(self, events: Sequence[Event], reason: str) -> int:
        spill = self.spill
        if spill is None:
            return 0
        try:
            stored = int(spill.spill(events, reason))
        except Exception as exc:
            _log.warning("gbtrack: spill failed (%s); dropping instead", type(exc).__name__)
            return 0
        stored = max(0, min(stored, len(events)))
        self._spilled += stored
        return stored

    def _give_up(
        self,
        events: list[Event],
        reason: str,
        message: str,
        exc: BaseException | None = None,
        *,
        settle: bool = True,
        jobs: Iterable[_Job] = (),
    ) -> None:
        """Hand over, spill (when the reason allows it) or drop ``events``, each reported."""
        successor = self._successor
        if reason == "closed" and successor is not None:
            for event in events:  # the replacing sender's send(): never blocks nor raises
                successor.send(event)
            self.reporter.count("handed_over", len(events))
            if settle:
                self._settle(len(events), jobs)
            return
        stored = self._spill(events, reason) if reason in _SPILLABLE else 0
        for event in events[stored:]:
            self.reporter.drop(
                reason,
                f"event {event.name!r} for customer {event.customer_id!r}: {message}",
                event=event,
                exc_info=exc,
            )
        if settle:
            self._settle(len(events), jobs)

    def _claim_abandon(self) -> bool:
        """Whether the caller reports what the worker holds (only the first one does)."""
        with self._lock:
            first, self._abandoned = not self._abandoned, True
        return first

    def _abandon_all(self) -> None:
        """The worker stops: whatever is left is spilled or dropped with reason ``closed``."""
        report = self._claim_abandon()
        left: list[Event] = []
        jobs = (
            list(self._ready) + [item[2] for item in self._retry_heap] + list(self._in_flight_jobs)
        )
        for bulk in self._in_flight_bulks:
            jobs.extend(bulk.jobs)
        for job in jobs:
            left.extend(job.batch.events)
        self._ready.clear()
        self._retry_heap.clear()
        self._poll_heap.clear()
        self._in_flight_jobs.clear()
        self._in_flight_bulks.clear()
        self._in_flight = 0
        if left and report:
            self._give_up(left, "closed", "the sender closed before delivery finished", jobs=jobs)
        elif left:
            self._settle(len(left), jobs)  # close() counted them: the worker was late
        self._abandon_queue()

    def _abandon_queue(self) -> None:
        q = self._queue
        with self._lock:
            items = list(q)
            q.clear()
            self._taken += len(items)
            self._held += len(items)
        if items:
            events = self.validated(items)
            self._settle(len(items) - len(events))
            if events:
                self._give_up(events, "closed", "the sender closed before delivery")
