"""BackgroundSender: non-blocking delivery to Gameball from a daemon worker thread.

The shape follows OpenTelemetry's ``BatchSpanProcessor`` and sentry's
``BackgroundWorker``: ``send()`` appends to a bounded queue
(:class:`~gbtrack.senders._queue.EventQueue`); one lazily started, named daemon thread
(the :class:`~gbtrack.senders._dispatch.Dispatcher`) drains it by size or time,
coalesces each customer's events into one request, and keeps up to ``concurrency``
requests in flight on a few daemon I/O threads (:mod:`gbtrack.senders._requests`). This
module is the façade: the public API, the resources the sender owns (closed in one
place), the ``atexit`` and fork hooks, and where given-up events go (a successor, the
spill, or a counted drop).
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import SecretStr

from gbtrack._errors import ConfigurationError, InvalidEventError
from gbtrack._event import Event, EventDraft, Record, as_draft, check_drafts, events_of, record_of
from gbtrack._fork import reset_after_fork
from gbtrack._order import OrderDraft, StoredOrder
from gbtrack._outcomes import (
    EVENT_HOOKS,
    DeliveryOutcome,
    OutcomeHook,
    Status,
    attach_hook,
    event_outcome,
    item_hook,
    order_outcome,
)
from gbtrack._protocol import DEFAULT_BASE_URL, ORDERS, Outcome
from gbtrack._report import ErrorHandler, Reporter, Stats
from gbtrack._state import FieldsGate, Gate
from gbtrack.senders._base import BaseSender, BatchHook, Sender, TrackerLink
from gbtrack.senders._config import LIMITER_OPTIONS, DeliveryConfig
from gbtrack.senders._dispatch import ORDER_BULK_THRESHOLD, Dispatcher
from gbtrack.senders._policy import DeliveryClient, Limiter, RateLimiter, RetryPolicy, Spill
from gbtrack.senders._queue import EventQueue, Inlet, Overflow
from gbtrack.senders._requests import OrderRequest, time_left

__all__ = ["BackgroundSender"]

_log = logging.getLogger("gbtrack")

_CHILD_EXIT_PRIORITY = 10  # multiprocessing runs finalizers of priority >= 0 at exit
_STOP_GRACE = 0.05  # seconds close() gives the worker past its deadline to stop
# Seconds close() waits for a worker that began counting what it holds (a fraction of a
# millisecond, unless the worker is descheduled or an on_error hook is slow).
_ABANDON_WAIT = 1.0
_SPILLABLE = frozenset({"queue_overflow", "retries_exhausted", "expired", "closed", "unauthorized"})


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


def _weakly(sender: BackgroundSender) -> Callable[[Inlet], None]:
    """``sender._over``, holding the sender weakly: its inlets' gates keep no cycle."""
    ref = weakref.ref(sender)

    def over(inlet: Inlet) -> None:
        alive = ref()
        if alive is not None:
            alive._over(inlet)
        else:  # cannot happen while a tracker holds the sender; stay bounded anyway
            inlet.items.clear()

    return over


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
        order_rate_limiter: The limiter of the orders bucket (Gameball limits orders
            apart from events: 30/s and 360 per 30 s). ``None`` builds a local one.
        on_error: Called with a :class:`~gbtrack.TrackingError` for each drop.

    **Orders.** ``send()`` also takes :class:`~gbtrack.OrderDraft`s, in the same bounded
    queue, when the client has a secret key (:attr:`accepts_orders`; the Order API
    requires both keys). Each order is checked in the worker
    (``OrderDraft.to_body``; an invalid one is dropped as ``invalid_order``), sent alone
    (never merged), in its own rate bucket, in line with its customer's events (one
    request in flight per customer, whatever the resource); with ``bulk``, a backlog
    of more than :attr:`order_bulk_threshold` orders goes as batch jobs of orders
    (``/batch/orders``, up to 1,000 each, polled like events'). An ambiguous order
    request is retried (``RetryPolicy.retry_ambiguous_orders``), and a duplicate
    answer after an ambiguous attempt counts as delivered; otherwise a duplicate is
    dropped as ``duplicate``. An order that would be dropped for a reason that spills
    (``queue_overflow``, ``retries_exhausted``, ...) is spilled like an event when the
    spill stores orders (:class:`~gbtrack.outbox.OutboxSender` does: its
    ``spill_orders``); its outcome is then ``persisted``.

    **Outcomes.** With the tracker's ``on_outcome`` hook (or an order's own), each item
    settled here is reported once as a :class:`~gbtrack.DeliveryOutcome`, on the
    sender's threads, never the caller's.
    """

    accepts_drafts = True
    reports_outcomes = True

    order_bulk_threshold = ORDER_BULK_THRESHOLD
    """Orders waiting beyond which they go as batch jobs (``/batch/orders``) with ``bulk``."""

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
        order_rate_limiter: Limiter | None = None,
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
            order_rate_limiter=order_rate_limiter,
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
        self.order_rate_limiter: Limiter = (
            order_rate_limiter if order_rate_limiter is not None else RateLimiter(ORDERS.limits)
        )
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
        # The trackers' inlets (fast_entry): kept across a fork, which replaces the queue.
        self._inlets: list[Inlet] = []
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
        open_outbox: Callable[[str | os.PathLike[str], DeliveryClient, Limiter, Limiter], Spill]
        | None = None,
    ) -> BackgroundSender:
        """Build a sender from a :class:`~gbtrack.senders.DeliveryConfig`.

        This package sits below :mod:`gbtrack.outbox` and never imports it, so
        ``config.outbox`` needs ``open_outbox``; :func:`gbtrack.sender_from_config`
        passes one that opens a :class:`~gbtrack.outbox.OutboxSender`.

        Args:
            config: The delivery options.
            client: The Gameball client; ``None`` builds one from ``config``.
            on_error: Called with a :class:`~gbtrack.TrackingError` for each drop.
            open_outbox: With ``config.outbox``: called once with that path, the
                sender's client, its rate limiter and its orders' rate limiter (the
                spill shares all three: spilled orders keep to the orders bucket). What it
                returns becomes the sender's ``spill``; the sender owns it and closes it
                before its client.

        Raises:
            ConfigurationError: If ``config.outbox`` is set without ``open_outbox``,
                or the outbox cannot be opened.
        """
        path = config.outbox
        if path is not None and open_outbox is None:
            raise ConfigurationError(
                "BackgroundSender.from_config() got a config with an outbox (outbox= or "
                "GBTRACK_OUTBOX) but no open_outbox=: build the sender with "
                "gbtrack.sender_from_config(), which opens the outbox as its spill"
            )
        names = DeliveryConfig.names() - LIMITER_OPTIONS - {"outbox"}
        options = {f: getattr(config, f) for f in names}
        options["rate_limiter"] = limiter = config.build_rate_limiter(client)
        options["order_rate_limiter"] = order_limiter = config.build_order_rate_limiter(client)
        sender = cls(client, on_error=on_error, **options)
        close_limiter = getattr(limiter, "close", None)
        if config.rate_limiter is None and callable(close_limiter):  # built here
            sender._owned.append(lambda left: close_limiter())
        close_orders = getattr(order_limiter, "close", None)
        if config.order_rate_limiter is None and callable(close_orders):  # built here
            sender._owned.append(lambda left: close_orders())
        if path is not None and open_outbox is not None:
            try:
                outbox = open_outbox(
                    path, sender.client, sender.rate_limiter, sender.order_rate_limiter
                )
            except BaseException:
                sender.close(timeout=0)
                raise
            sender.spill = outbox
            sender._own_spill(outbox)  # owned last: closed first, before the limiters
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
        """(Re)create the queue, the worker and its state: at start and in a forked child."""
        self._pid = os.getpid()
        self._wake = threading.Event()
        self._worker: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._spilled = 0
        self._queue = EventQueue(
            self.max_queue_size,
            self.max_batch_size,
            self.overflow,
            self.block_timeout,
            self.reporter,
            self._spill_overflow,
            self._inlets,
        )
        self._items = self._queue.items  # send() appends here directly
        self._dispatcher = Dispatcher(self, self._queue, self._wake)

    def _after_fork(self) -> None:
        """In a forked child: forget the parent's queue and threads, start afresh."""
        if self._pid == os.getpid():
            return
        # The parent's events stay the parent's: the child must never send them again.
        self.reporter = Reporter(self.reporter.on_error, self.reporter.log)
        self.outcomes.reporter = self.reporter
        self.outcomes.pending.clear()  # the parent's items stay the parent's
        self._lost_at_flush = 0
        for inlet in self._inlets:  # the parent's drafts: sent (as counted on the call) there
            inlet.count(len(inlet.items))
            inlet.items.clear()
            inlet.set_limit(1)  # the child's first draft starts its worker
        if self._client_options is not None:
            # The parent's connections are shared sockets: abandon them, do not close them.
            self.client = self._new_client()
        self._init_state()
        for limiter in (self.rate_limiter, self.order_rate_limiter):
            after = getattr(limiter, "_after_fork", None)
            if callable(after):
                after()

    @property
    def accepts_orders(self) -> bool:  # type: ignore[override]
        """Whether :meth:`send` takes orders: the client has a secret key and sends orders.

        Gameball's Order API requires both keys on every version; without a secret key
        the tracker is told (``SenderTraits.takes_orders`` is ``False``) and refuses
        orders loudly, rather than this sender dropping each one.
        """
        client = self.client
        return bool(getattr(client, "has_secret_key", False)) and callable(
            getattr(client, "send_order", None)
        )

    # --- the hot path --------------------------------------------------------------------
    def send(self, event: Event | EventDraft | OrderDraft) -> None:
        """Queue ``event`` (or an order); never blocks (unless ``overflow="block"``)."""
        if self._closed:
            self._drop_closed(event)
            return
        q = self._items
        if self._inlets:  # after what the trackers' gates took: one line, in order
            self._queue.gather()
        if len(q) >= self._queue.full_at and not self._make_room(event):
            return
        q.append(event)
        if self._worker is None:
            self._start_worker()
        # Wake the worker when the queue starts (to arm its timer) and when a full
        # batch is waiting; a missed wake (a racing append) only waits one idle tick.
        n = len(q)
        if n == 1 or n == self.max_batch_size:
            self._wake.set()

    def fast_entry(self, link: TrackerLink) -> Gate:
        """The tracker's gate: an append to the tracker's own :class:`Inlet`, one length test.

        Everything else happens off the caller's thread, or once in a while: the worker
        (and ``flush()``, ``stats()``, ``send()``) gathers the inlet into the queue,
        counting the drafts with ``link.count_sent`` there; the gate's slow path
        (:meth:`_over`) runs when the inlet's length reaches its limit: the first draft
        while the worker is idle, a full batch, the capacity. One inlet per tracker (by
        its counter): two trackers may share one sender, and each counts its own. The
        gate stays right after a fork, which empties the inlet, and after ``close()``,
        whose limit sends every draft to the slow path, which drops it as ``closed``.

        A subclass that overrides ``send()``, and ``overflow="block"`` (whose ``send()``
        waits on the caller's thread), get the general entry, which calls ``send()``.
        """
        if type(self).send is not BackgroundSender.send or self.overflow == "block":
            return super().fast_entry(link)
        with self._start_lock:
            for inlet in self._inlets:
                if inlet.count_sent is link.count_sent:  # the same tracker, attached again
                    return inlet.gate
            inlet = Inlet(link.count_sent, _weakly(self))
            if self._closed:
                inlet.set_limit(0)
            self._inlets.append(inlet)
        return inlet.gate

    def fields_entry(self, gate: Gate) -> FieldsGate | None:
        """An inlet's gate also takes a draft's fields: the worker makes the draft.

        Whoever gathers the inlet makes each item an :class:`~gbtrack.EventDraft` (one C
        call per item, :data:`~gbtrack._event.as_draft`); the general entry does
        not.
        """
        with self._start_lock:
            for inlet in self._inlets:
                if inlet.gate is gate:
                    return inlet.gate
        return None

    def _over(self, inlet: Inlet) -> None:
        """A gate's slow path: wake (and start) the worker, or drop what exceeds the capacity.

        On the caller's thread, when the inlet's length reached its limit; the limit
        moves to where the next decision is due (:meth:`EventQueue.limit_for`).
        """
        if self._closed:
            self._refuse(inlet)
            return
        if self._worker is None:
            self._start_worker()
        q = self._queue
        with q.lock:
            full = q.pending() + q.held > q.capacity
            item = as_draft(inlet.items.pop()) if full and inlet.items else None
            inlet.set_limit(q.limit_for(inlet))
        if item is None:
            self._wake.set()  # the first draft, or a full batch
            return
        # One too many: the newest is spilled or dropped, as send() does; counted as sent
        # here, since no gather will count it.
        inlet.count(1)
        self._make_room(item)

    def _refuse(self, inlet: Inlet) -> None:
        """The sender is closed: what the inlet holds is counted sent, then dropped (``closed``)."""
        items = inlet.items
        with self._queue.lock:  # as gather() takes them: one taker at a time
            refused = [as_draft(items.popleft()) for _ in range(len(items))]  # later: own call
        inlet.count(len(refused))
        for item in refused:
            self._drop_closed(item)

    def _drop_closed(self, event: Event | EventDraft | OrderDraft) -> None:
        if isinstance(event, OrderDraft):
            self.give_up_orders([event], "closed", f"{type(self).__name__} is closed")
            return
        successor = self._successor
        if successor is None:
            super()._drop_closed(event)
            # After close: no worker left to run it.
            self.outcomes.settle_event(event, "dropped", "closed", "sender closed")
            return
        valid = self.validated((event,))  # a successor may not take drafts
        if valid:
            successor.send(valid[0])
            self.reporter.count("handed_over")

    def _make_room(self, event: Event | EventDraft | OrderDraft) -> bool:
        """The queue is full: wait (``block``) or drop/spill; True when there is room now."""
        try:
            return self._queue.make_room(event, lambda: self._closed, self._nudge)
        except Exception:  # pragma: no cover - send must never raise
            _log.exception("gbtrack: overflow handling failed")
        return False

    def tell_outcome(self, outcome: DeliveryOutcome, item_hook: OutcomeHook | None) -> None:
        """Run the hooks of an item the tracker dropped, on the worker (never the caller's).

        Once the sender is closed (no worker to run them) they run at once.
        """
        if self._closed:
            self.outcomes.emit(outcome, item_hook)
            return
        self.outcomes.defer(outcome, item_hook)
        self._nudge()

    def _nudge(self) -> None:
        """Wake the worker, starting it first when needed."""
        if self._worker is None:
            self._start_worker()
        self._wake.set()

    def _start_worker(self) -> None:
        with self._start_lock:
            if self._pid != os.getpid():
                self._after_fork()
            if self._worker is not None or self._dispatcher.stopping:
                return
            self._worker = threading.Thread(
                target=self._dispatcher.run, name="gbtrack-sender", daemon=True
            )
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

    # --- the worker's side -----------------------------------------------------------------
    def records(self, items: Sequence[Event | EventDraft]) -> list[Record]:
        """Check what was queued into light records, in order: the worker's first step.

        Drafts are checked in plain Python (:func:`~gbtrack._event.check_drafts`, by
        :attr:`limits`); an invalid one is counted (``invalid_event``) and reported
        exactly as :meth:`validated` does. No :class:`~gbtrack.Event` model is built,
        unless the tracker's ``before_send`` hook is set: it takes and returns events.
        Events queued by code that calls :meth:`send` directly pass as they are.

        Returns:
            The valid records, oldest first.
        """
        hook = self.before_send
        invalid: list[tuple[EventDraft, InvalidEventError]]
        if all(type(item) is EventDraft for item in items):
            records, invalid = check_drafts(items, self.limits)  # type: ignore[arg-type]
            if hook is not None and records:
                records = self._before_send(hook, records)
        else:  # events among the drafts: each keeps its place
            records, invalid = [], []
            for item in items:
                if type(item) is EventDraft:
                    good, bad = check_drafts((item,), self.limits)
                    if hook is not None and good:
                        good = self._before_send(hook, good)
                    records += good
                    invalid += bad
                else:
                    records.append(record_of(item))  # type: ignore[arg-type]
        for draft, error in invalid:
            self.reporter.drop("invalid_event", str(error), function=draft.function, exc_info=error)
            self.outcomes.settle_event(draft, "dropped", "invalid_event", str(error))
        return records

    def _before_send(self, hook: BatchHook, records: list[Record]) -> list[Record]:
        """The tracker's ``before_send`` over checked records, kept in order.

        While some event has its own outcome hook, each event goes through the hook
        alone: a changed copy keeps the hook, and a drop is the event's outcome
        (``before_send``, told to its own hook; sampled-out events have none).
        """
        if not EVENT_HOOKS:
            return [record_of(event) for event in hook(events_of(records))]
        kept: list[Record] = []
        for event in events_of(records):
            own = item_hook(event)
            out = hook([event])
            if own is not None:
                if out:
                    attach_hook(out[0], own)
                else:
                    outcome = event_outcome(event, "dropped", "before_send", "before_send")
                    self.outcomes.emit_own(own, outcome)
            kept += [record_of(changed) for changed in out]
        return kept

    # --- orders -------------------------------------------------------------------------------
    def order_request(self, draft: OrderDraft, mark: int) -> OrderRequest | None:
        """Check one queued order into its request (the worker's side); ``None`` if dropped.

        An order this sender cannot send (no secret key) is dropped as ``rejected``;
        one whose body fails the checks as ``invalid_order``, naming the field and the
        function. Both are reported (``on_error``, ``on_outcome``).
        """
        if not self.accepts_orders:
            self.give_up_orders(
                [draft],
                "rejected",
                "orders need a secret_key (Gameball's Order API requires both keys)",
            )
            return None
        try:
            body = draft.to_body(self.limits)
        except InvalidEventError as exc:
            self.give_up_orders([draft], "invalid_order", str(exc), exc)
            return None
        return OrderRequest(draft, body, mark)

    def settle_order(self, job: OrderRequest, outcome: Outcome, duplicate: bool) -> None:
        """Count an order delivered and report it (``duplicate``: Gameball already had it)."""
        self.reporter.count("delivered")
        draft = job.draft
        outcomes = self.outcomes
        if outcomes.tracker_hook is not None or draft.on_outcome is not None:
            result = outcome.result if outcome.result is not None else ORDERS.result(outcome.body)
            outcomes.emit(
                order_outcome(draft, "delivered", result=result, duplicate=duplicate),
                draft.on_outcome,
            )

    def give_up_orders(
        self,
        drafts: list[OrderDraft],
        reason: str,
        message: str,
        exc: BaseException | None = None,
    ) -> None:
        """Hand over, spill (when the reason allows it) or drop ``orders``, each reported.

        Spilled orders are ``persisted`` (the outbox delivers them); a spill that
        stores events only (no ``spill_orders``) leaves them dropped with ``reason``.
        """
        successor = self._successor
        if (
            reason == "closed"
            and successor is not None
            and getattr(successor, "accepts_orders", False)
        ):
            for draft in drafts:
                successor.send(draft)  # type: ignore[arg-type]
            self.reporter.count("handed_over", len(drafts))
            return
        stored = self._spill_orders(drafts, reason) if reason in _SPILLABLE else 0
        outcomes = self.outcomes
        for draft in drafts[:stored]:
            if outcomes.wants(draft.on_outcome):
                outcomes.emit(order_outcome(draft, "persisted", reason), draft.on_outcome)
        for draft in drafts[stored:]:
            self.reporter.drop(
                reason,
                f"order {draft.order_id!r} for customer {draft.customer_id!r}: {message}",
                function=draft.function,
                exc_info=exc,
            )
            if outcomes.tracker_hook is not None or draft.on_outcome is not None:
                outcomes.emit(order_outcome(draft, "dropped", reason, message), draft.on_outcome)

    # --- where given-up events go ----------------------------------------------------------
    def give_up(
        self, events: list[Event], reason: str, message: str, exc: BaseException | None = None
    ) -> None:
        """Hand over, spill (when the reason allows it) or drop ``events``, each reported.

        Called by the worker; it settles the events in the queue's books.
        """
        successor = self._successor
        if reason == "closed" and successor is not None:
            for event in events:  # the replacing sender's send(): never blocks nor raises
                successor.send(event)
            self.reporter.count("handed_over", len(events))
            return
        stored = self._spill(events, reason) if reason in _SPILLABLE else 0
        for event in events[stored:]:
            self.reporter.drop(
                reason,
                f"event {event.name!r} for customer {event.customer_id!r}: {message}",
                event=event,
                exc_info=exc,
            )
        settle = self.outcomes.settle_event
        for event in events[:stored]:
            settle(event, "persisted", reason, None)
        for event in events[stored:]:
            settle(event, "dropped", reason, message)

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

    def _spill_orders(self, drafts: Sequence[OrderDraft], reason: str) -> int:
        """Store the first orders of ``drafts`` in the spill; how many (the rest: none).

        Only a spill with ``spill_orders`` stores orders. Each order's body is checked
        first (``OrderDraft.to_body``): orders from the first one that fails on are not
        spilled (the caller drops them with its reason; the worker names the field).
        """
        spill_orders = getattr(self.spill, "spill_orders", None)
        if spill_orders is None or not drafts:
            return 0
        orders = []
        for draft in drafts:
            try:
                orders.append(StoredOrder.of(draft, self.limits))
            except InvalidEventError:
                break
        if not orders:
            return 0
        try:
            stored = int(spill_orders(orders, reason))
        except Exception as exc:
            _log.warning(
                "gbtrack: spill of orders failed (%s); dropping instead", type(exc).__name__
            )
            return 0
        stored = max(0, min(stored, len(orders)))
        self._spilled += stored
        return stored

    def _spill_overflow(self, event: Event | EventDraft | OrderDraft) -> bool:
        """Spill one event that found the queue full; False to count it dropped.

        On the caller's thread: outcomes decided here are run later by the worker.
        """
        outcomes = self.outcomes
        if isinstance(event, OrderDraft):
            hook = event.on_outcome
            spilled = self._spill_orders((event,), "queue_overflow") == 1
            if outcomes.wants(hook):
                status: Status = "persisted" if spilled else "dropped"
                error = None if spilled else "queue full"
                outcomes.defer(order_outcome(event, status, "queue_overflow", error), hook)
                self._wake.set()
            return spilled
        if self.spill is None:
            if outcomes.defer_event(event, "dropped", "queue_overflow", "queue full"):
                self._wake.set()
            return False
        # The spill stores events: validate this one here (an outage's slow path).
        valid = self.validated((event,))
        stored = not valid or self._spill(valid, "queue_overflow") == 1
        if not valid:  # validated() counted and reported it
            told = outcomes.defer_event(event, "dropped", "invalid_event", "invalid event")
        else:
            status = "persisted" if stored else "dropped"
            told = outcomes.defer_event(event, status, "queue_overflow", "queue full")
        if told:
            self._wake.set()
        return stored

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
        q, dispatcher = self._queue, self._dispatcher
        target = q.flush_target()
        done = True
        if target is not None:
            self._nudge()
            done = q.wait_flushed(target, timeout, lambda: dispatcher.gate.refused)
        q.report_overflow(force=True)
        clean = self._nothing_lost_since_flush()
        return done and clean

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
        per-reason drop lines are throttled). Those totals, and :meth:`stats`, include
        what the worker gave up: a worker that began counting it is waited for (up to
        a second past ``timeout``; a fraction of a millisecond unless it is descheduled
        or an ``on_error`` hook is slow).

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
            for inlet in self._inlets:  # every later draft takes the slow path: closed
                inlet.set_limit(0)
        deadline = None if timeout is None else time.monotonic() + timeout
        ok = self.flush(timeout)
        self._stop_worker(deadline)
        self.outcomes.run_pending()  # told while no worker ran (or after it stopped)
        self._dispatcher.pool.shutdown(time_left(deadline))
        self._queue.report_overflow(force=True)
        self._close_owned(deadline)
        atexit.unregister(self._atexit_hook)
        self._summarise("at exit" if at_exit else "at close")
        return ok

    def _stop_worker(self, deadline: float | None) -> None:
        """Stop the worker (it spills or drops what it holds), then sweep the queue."""
        worker, q = self._worker, self._queue
        with self._start_lock:
            self._dispatcher.stopping = True
        self._wake.set()
        q.wake_blocked()
        if worker is not None and worker is not threading.current_thread():
            # A little grace past the deadline: a free worker stops in a millisecond.
            worker.join(None if deadline is None else max(time_left(deadline) or 0.0, _STOP_GRACE))
            if worker.is_alive():
                if q.claim_abandon():
                    # Busy (an on_error hook, a huge batch): count what it holds here, once.
                    held = q.held
                    if held:
                        self.reporter.drop(
                            "closed",
                            f"{held} event(s) held by a busy worker when the sender closed",
                            n=held,
                        )
                else:
                    # The worker is counting what it holds (claimed first): wait for its
                    # count, so that stats() and the closing line include it.
                    q.abandon_done.wait(_ABANDON_WAIT)
        # Sends that raced with close() after the worker's last sweep.
        self._dispatcher.abandon_queue()

    def _close_owned(self, deadline: float | None) -> None:
        """Close what this sender built, last built first (the spill before its client)."""
        owned, self._owned = self._owned, []
        for close in reversed(owned):
            try:
                close(time_left(deadline))
            except Exception:  # pragma: no cover - closing must not raise
                _log.exception("gbtrack: closing %r failed", close)

    def _summarise(self, when: str) -> None:
        """One line with the true totals when anything was lost (log lines are throttled)."""
        stats = self.stats()
        unsettled = len(self._queue) + self._queue.held
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
        """Return delivered, retried, dropped (by reason), in queue, in flight, last error.

        The trackers' inlets are gathered first, so that each tracker's ``sent`` counts
        every draft its gate took before the call.
        """
        q = self._queue
        q.gather()
        in_flight = self._dispatcher.in_flight
        snap = self.reporter.snapshot(
            in_queue=len(q) + max(0, q.held - in_flight), in_flight=in_flight
        )
        pending = q.overflow_pending
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
            f"<BackgroundSender {state} queued={len(self._queue)} held={self._queue.held} "
            f"client={type(self.client).__name__}>"
        )
