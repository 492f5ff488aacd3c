"""The background sender's dispatcher: the worker thread between the queue and Gameball.

One lazily started daemon thread drains the :class:`~gbtrack.senders._queue.EventQueue`
by size or time, checks and coalesces each customer's events into one request
(:meth:`Dispatcher.prepare`), and keeps up to ``concurrency`` requests in flight on a few
daemon I/O threads (:class:`~gbtrack.senders._requests.IOPool`). Every decision is the
engine's: retries by :meth:`~gbtrack.senders.RetryPolicy.decide`, batch jobs by
:class:`~gbtrack._protocol.BulkJob`, one rate-limit slot per request. The worker never
sleeps holding a lock: backoffs, polls and rate-limit waits are "not before" times it
waits on with its wake event.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from gbtrack._event import events_of
from gbtrack._order import OrderDraft
from gbtrack._outcomes import DeliveryOutcome, OutcomeHooks, item_hook
from gbtrack._protocol import (
    FALL_BACK_PAUSE,
    MAX_BATCH_ITEMS,
    JobAction,
    client_failure,
    client_raised,
    describe_outcome,
    group_records,
    safe_error,
)
from gbtrack.senders._requests import (
    BulkRequest,
    IOPool,
    KeyGate,
    OrderBulk,
    OrderRequest,
    Request,
    key_refused,
    marks,
    requests_of,
)

if TYPE_CHECKING:
    from gbtrack._event import Event, EventDraft, Record
    from gbtrack._protocol import JobStep, Outcome
    from gbtrack._report import Reporter
    from gbtrack.senders._policy import DeliveryClient, Limiter, RetryPolicy, Spill
    from gbtrack.senders._queue import EventQueue

__all__ = ["Dispatcher", "Owner"]

_log = logging.getLogger("gbtrack")

_READY_CAP = 2 * MAX_BATCH_ITEMS  # coalesced requests held ready before draining more
ORDER_BULK_THRESHOLD = 60
"""Orders waiting beyond which they go as a batch job: ~2 s at 30/s, as 200 events at 100/s."""


class Owner(Protocol):
    """What the dispatcher reads from its sender (options a caller may change later)."""

    client: DeliveryClient
    rate_limiter: Limiter
    order_rate_limiter: Limiter
    retry: RetryPolicy
    spill: Spill | None
    reporter: Reporter
    flush_interval: float
    concurrency: int
    bulk: bool
    bulk_threshold: int
    auth_probe_interval: float

    def records(self, items: Sequence[Event | EventDraft]) -> list[Record]: ...

    def give_up(
        self, events: list[Event], reason: str, message: str, exc: BaseException | None = None
    ) -> None: ...

    def order_request(self, draft: OrderDraft, mark: int) -> OrderRequest | None: ...

    def give_up_orders(
        self,
        drafts: list[OrderDraft],
        reason: str,
        message: str,
        exc: BaseException | None = None,
    ) -> None: ...

    def settle_order(self, job: OrderRequest, outcome: Outcome, duplicate: bool) -> None: ...


class Dispatcher:
    """The worker: drains the queue into requests and settles every event it takes.

    Args:
        owner: The sender (client, limiter, retry policy, spill, reporter, options).
        events: The sender's queue.
        wake: Set to wake the worker (by ``send()``, ``flush()``, the I/O threads).
    """

    def __init__(self, owner: Owner, events: EventQueue, wake: threading.Event) -> None:
        self.owner = owner
        # The sender's outcome hooks (one object, its tracker hook set on attach).
        outcomes = getattr(owner, "outcomes", None)
        self.outcomes = outcomes if outcomes is not None else OutcomeHooks(None, owner.reporter)
        self.queue = events
        self.wake = wake
        self.stopping = False
        self.in_flight = 0  # events in requests under way
        self.gate = KeyGate()
        self._done: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.pool = IOPool(owner.concurrency, "gbtrack-sender", self._done, wake)
        self._ready: deque[Request | OrderRequest] = deque()
        self._retry_heap: list[tuple[float, int, Request | OrderRequest]] = []
        self._poll_heap: list[tuple[float, int, BulkRequest | OrderBulk]] = []
        self._seq = itertools.count()
        self._busy: set[str] = set()  # customers with a request in flight or in backoff
        self._requests = 0  # requests (sends, batch creates, polls) in flight
        self._in_flight_jobs: set[Request] = set()
        self._in_flight_bulks: set[BulkRequest] = set()
        self._order_bulks: set[OrderBulk] = set()  # batch jobs of orders in flight
        self._order_bulk_off_until = 0.0  # a refused create pauses the batch orders endpoint
        self._orders_ready = 0  # orders waiting (ready or to retry): 0 keeps the events-only path
        self._next_drain: float | None = None  # when the oldest queued event is due
        self._bulk_off_until = 0.0  # a refused batch create pauses the batch endpoint

    # --- the loop -------------------------------------------------------------------------
    def run(self) -> None:
        """The worker thread's body: loop until stopped, then give up what is left."""
        try:
            self._loop()
        except BaseException:  # pragma: no cover - a bug; keep the process alive
            _log.exception("gbtrack: sender worker crashed")
            self.owner.reporter.note_error("sender worker crashed")
        finally:
            try:
                self.abandon_all()
                self.outcomes.run_pending()  # outcomes told before the stop, not yet run
            finally:
                self.queue.abandon_done.set()  # close() may be waiting for the count

    def _loop(self) -> None:
        wake, q = self.wake, self.queue
        pending = self.outcomes.pending
        while True:
            now = time.monotonic()
            q.gather()  # what the trackers' gates took (counted as sent there)
            if pending:  # outcomes decided on a caller's thread (overflow): run them here
                self.outcomes.run_pending()
            self._collect()
            if self.stopping and not q.flush_waiters:
                return
            self._drain(now)
            heap = self._retry_heap
            if heap and heap[0][0] <= now:
                self._retries_due(now)
            limit_wait = self._dispatch(now)
            if q.blocked:
                q.wake_blocked()
            if q.overflow_pending:
                q.report_overflow(force=False)
            # The gates' limits set for the sleep (a first draft or a full batch wakes it);
            # drafts that came meanwhile are gathered at once.
            if q.arm():
                # A floor, so that no timer arithmetic can ever make the worker spin.
                wake.wait(max(self._sleep(now, limit_wait), 0.0005))
            wake.clear()

    def _retries_due(self, now: float) -> None:
        """Requests whose backoff is over go back to the head of the line.

        Their customers were held meanwhile (:meth:`_retry_later`): put first, each goes
        before its customer's later requests, which waited behind it in the line.
        """
        heap, busy = self._retry_heap, self._busy
        due: list[Request | OrderRequest] = []
        while heap and heap[0][0] <= now:
            job = heapq.heappop(heap)[2]
            busy.discard(job.key)
            due.append(job)
        self._ready.extendleft(reversed(due))

    def _retry_later(
        self,
        job: Request | OrderRequest,
        delay: float,
        outcome: Outcome,
        together: dict[int, float] | None,
    ) -> None:
        """Schedule ``job``'s next attempt, holding its customer's later requests until then.

        A backoff does not end a request: its customer stays busy, so that nothing the
        customer did later (an event, an order) overtakes it; others go on. The items of
        a batch job that failed together (one ``outcome``; ``together`` is the job's
        times by outcome) are retried together, so that they go as one job again, not
        one by one as each item's own jitter would spread them.
        """
        not_before = time.monotonic() + delay
        if together is not None:
            not_before = together.setdefault(id(outcome), not_before)
        self._busy.add(job.key)
        heapq.heappush(self._retry_heap, (not_before, next(self._seq), job))

    def _sleep(self, now: float, limit_wait: float | None) -> float:
        """Seconds until the next thing that can happen without a wake-up.

        A full batch, a flush and a completion wake the worker; the drain timer, a retry
        or poll due and a free rate-limit slot do not. Timers that cannot act now (no
        room, no request slot) wait for a wake-up.
        """
        timeout = self.owner.flush_interval
        if self.queue and self._next_drain is not None and len(self._ready) < _READY_CAP:
            timeout = min(timeout, self._next_drain - now)
        if self._retry_heap:
            timeout = min(timeout, self._retry_heap[0][0] - now)
        if self._poll_heap and self._requests < self.owner.concurrency:
            timeout = min(timeout, self._poll_heap[0][0] - now)
        if limit_wait is not None and self._ready:
            timeout = min(timeout, limit_wait)
        return timeout

    # --- from the queue to requests ---------------------------------------------------------
    def _drain(self, now: float) -> None:
        """Move queued events into coalesced requests when a batch is due."""
        q = self.queue
        if not q:
            self._next_drain = None
            return
        if self._next_drain is None:
            # The first event since the last drain: it may wait one interval for company.
            self._next_drain = now + self.owner.flush_interval
        if len(self._ready) >= _READY_CAP:
            return
        if not (
            len(q) >= q.batch_size or now >= self._next_drain or q.flush_waiters or self.stopping
        ):
            return
        self._next_drain = None
        while q and len(self._ready) < _READY_CAP:
            items, mark = q.take(q.batch_size)
            # Outside the queue's lock (flush() waits on it).
            if any(type(item) is OrderDraft for item in items):
                jobs, valid = self._prepare_mixed(items, mark)
                q.add_jobs(mark, len(jobs))
                self._ready.extend(jobs)
                q.settle(len(items) - valid, (mark,))
                continue
            groups, valid = self.prepare(items)  # type: ignore[arg-type]  # events only
            q.add_jobs(mark, len(groups))
            start = Request.of
            self._ready.extend(start(group, mark) for group in groups)
            # Invalid drafts are settled (validated() counted and reported them), and the
            # drain's placeholder job ends.
            q.settle(len(items) - valid, (mark,))

    def prepare(self, items: Sequence[Event | EventDraft]) -> tuple[list[tuple[Record, ...]], int]:
        """Check drafts into light records and group them into one request per customer.

        The one step between what callers queued and what goes on the wire; no
        :class:`~gbtrack.Event` model is built (a batch builds its events when read).

        Returns:
            Each request's records, and how many of ``items`` were valid.
        """
        records = self.owner.records(items)
        return group_records(records), len(records)

    def _prepare_mixed(
        self, items: Sequence[Event | EventDraft | OrderDraft], mark: int
    ) -> tuple[list[Request | OrderRequest], int]:
        """Events and orders taken together: requests in the order they were accepted.

        Events between two orders are coalesced among themselves; an order is a request
        of its own, never merged. So a customer's requests stand in the line in the
        order of their items, and the line keeps one request per customer in flight.

        Returns:
            The requests, in order, and how many of ``items`` were valid.
        """
        jobs: list[Request | OrderRequest] = []
        valid = 0
        chunk: list[Event | EventDraft] = []
        for item in [*items, None]:
            if item is not None and type(item) is not OrderDraft:
                chunk.append(item)  # type: ignore[arg-type]
                continue
            if chunk:
                groups, n = self.prepare(chunk)
                jobs.extend(Request.of(group, mark) for group in groups)
                valid += n
                chunk = []
            if item is not None:
                job = self.owner.order_request(item, mark)
                if job is not None:
                    jobs.append(job)
                    self._orders_ready += 1
                    valid += 1
        return jobs, valid

    def _dispatch(self, now: float) -> float | None:
        """Start requests while slots are free; return the rate limiter's wait, if any."""
        owner = self.owner
        polls = self._poll_heap
        # Status polls are not event requests: Gameball's event rate limit does not
        # count them, so they take no limiter slot (only a request slot).
        while polls and polls[0][0] <= now and self._requests < owner.concurrency:
            self._submit_poll(heapq.heappop(polls)[2])
        if self.gate.refused:
            return self._dispatch_probe(now)
        ready = self._ready
        if self._use_bulk(now):
            while ready and self._requests < owner.concurrency:
                bulk_wait = self._dispatch_bulk()
                if bulk_wait is None:
                    break
                if bulk_wait > 0:
                    return bulk_wait
        if self._orders_ready:
            if self._use_order_bulk(now):
                order_wait = self._dispatch_order_bulk()
                if order_wait:
                    # The orders bucket is full: events may still go.
                    return min(order_wait, self._dispatch_mixed() or order_wait)
            return self._dispatch_mixed()
        skipped: list[Request | OrderRequest] = []
        try:
            while ready and self._requests < owner.concurrency:
                job = ready.popleft()
                if job.key in self._busy:  # one request per customer at a time (code 2001)
                    skipped.append(job)
                    continue
                wait, stamp = owner.rate_limiter.reserve()
                if stamp is None:
                    ready.appendleft(job)
                    return wait
                self._submit_send(job, stamp)  # type: ignore[arg-type]  # no orders here
        finally:
            ready.extendleft(reversed(skipped))
        return None

    def _dispatch_mixed(self) -> float | None:
        """:meth:`_dispatch` with orders in the line: two rate buckets, one line.

        Each request takes a slot of its own resource's bucket. A request that must
        wait (its customer busy, or its bucket full) holds back every later request of
        its customer, so that one customer's events and orders go in the order they
        were accepted; other customers' requests go on.
        """
        owner, ready, busy = self.owner, self._ready, self._busy
        skipped: list[Request | OrderRequest] = []
        held: set[str] = set()  # customers whose earlier request waits
        waits: list[float] = []
        events_full = orders_full = False
        try:
            while ready and self._requests < owner.concurrency:
                job = ready.popleft()
                key = job.key
                if key in busy or key in held:
                    skipped.append(job)
                    held.add(key)
                    continue
                full = orders_full if job.is_order else events_full
                if not full:
                    limiter = owner.order_rate_limiter if job.is_order else owner.rate_limiter
                    wait, stamp = limiter.reserve()
                    if stamp is not None:
                        self._start(job, stamp)
                        continue
                    waits.append(wait)
                    if job.is_order:
                        orders_full = True
                    else:
                        events_full = True
                skipped.append(job)
                held.add(key)
                if events_full and (orders_full or not self._orders_ready):
                    break
        finally:
            ready.extendleft(reversed(skipped))
        return min(waits) if waits else None

    def _start(self, job: Request | OrderRequest, stamp: float) -> None:
        if job.is_order:
            self._submit_order(job, stamp)  # type: ignore[arg-type]
        else:
            self._submit_send(job, stamp)  # type: ignore[arg-type]

    def _use_bulk(self, now: float) -> bool:
        owner = self.owner
        return (
            owner.bulk
            and len(self._ready) + len(self.queue) > owner.bulk_threshold
            and now >= self._bulk_off_until
            and getattr(owner.client, "has_secret_key", False)
        )

    def _use_order_bulk(self, now: float) -> bool:
        owner = self.owner
        client = owner.client
        return (
            owner.bulk
            and self._orders_ready > getattr(owner, "order_bulk_threshold", ORDER_BULK_THRESHOLD)
            and now >= self._order_bulk_off_until
            and self._requests < owner.concurrency
            and getattr(client, "has_secret_key", False)
            and callable(getattr(client, "create_order_batch", None))
        )

    def _dispatch_order_bulk(self) -> float | None:
        """Start one batch job of waiting orders; the orders bucket's wait, if full."""
        ready = self._ready
        taken = OrderBulk.choose(ready, self._busy)
        if len(taken) < 2:  # one order alone goes as a request of its own
            return None
        wait, stamp = self.owner.order_rate_limiter.reserve()
        if stamp is None:
            return wait
        chosen = set(taken)
        line = list(ready)
        jobs: list[OrderRequest] = [line[i] for i in taken]  # type: ignore[misc]
        ready.clear()
        ready.extend(job for i, job in enumerate(line) if i not in chosen)
        bulk = OrderBulk(jobs)
        self._orders_ready -= len(jobs)
        self._busy.update([job.key for job in jobs])
        self.in_flight += len(jobs)
        self._order_bulks.add(bulk)
        limiter = self.owner.order_rate_limiter
        self._submit("order_create", bulk, self._create_orders, bulk, stamp, limiter)
        return None

    def _create_orders(self, bulk: OrderBulk) -> Outcome:
        """Create ``bulk``'s job of orders (on an I/O thread)."""
        create = self.owner.client.create_order_batch  # type: ignore[attr-defined]
        outcome: Outcome = create(bulk.bodies())
        return outcome

    def _apply_orders(self, bulk: OrderBulk, step: JobStep) -> None:
        """Act on an order job's step: poll later, settle each order, or fall back."""
        if step.action is JobAction.POLL:
            assert step.poll_at is not None
            heapq.heappush(self._poll_heap, (step.poll_at, next(self._seq), bulk))
            return
        self._order_bulks.discard(bulk)
        jobs = bulk.jobs
        self._busy.difference_update([job.key for job in jobs])
        self.in_flight -= len(jobs)
        if step.action is JobAction.FALL_BACK:
            assert step.cause is not None
            if key_refused(step.cause):
                for job in jobs:
                    self._refuse_key(job, step.cause)  # type: ignore[arg-type]
                return
            self._order_bulk_off_until = time.monotonic() + FALL_BACK_PAUSE
            self._orders_ready += len(jobs)
            self._ready.extendleft(reversed(jobs))
            _log.warning(
                "gbtrack: batch orders create refused (%s); one request per order for %gs",
                describe_outcome(step.cause),
                FALL_BACK_PAUSE,
            )
            return
        together: dict[int, float] = {}  # orders that failed together are retried together
        for job, outcome in zip(jobs, step.outcomes, strict=True):
            self._order_answer(job, outcome, together)

    def _dispatch_probe(self, now: float) -> float | None:
        """The key was refused: send one request when a probe is due, nothing else."""
        ready, gate = self._ready, self.gate
        if not ready or self._requests >= self.owner.concurrency:
            return None
        probe_wait = gate.probe_wait(now)
        if probe_wait is not None:
            return None if gate.probing else probe_wait
        job = ready[0]
        limiter = self.owner.order_rate_limiter if job.is_order else self.owner.rate_limiter
        wait, stamp = limiter.reserve()
        if stamp is None:
            return wait
        ready.popleft()
        job.probe = gate.probing = True
        self._start(job, stamp)
        return None

    def _dispatch_bulk(self) -> float | None:
        """Start one batch job from ready requests; None when none is eligible."""
        ready, busy = self._ready, self._busy
        # Orders in the line are left (direct), and hold their customers' later requests.
        chosen, left = BulkRequest.choose(list(ready), busy)  # type: ignore[arg-type]
        if not chosen:
            return None
        wait, stamp = self.owner.rate_limiter.reserve()
        if stamp is None:
            return wait
        ready.clear()
        ready.extend(left)
        bulk = BulkRequest(chosen)
        busy.update([job.key for job in chosen])
        self.in_flight += sum([job.n for job in chosen])
        self._in_flight_bulks.add(bulk)
        self._submit("create", bulk, self._create, bulk, stamp)
        return 0.0

    def _create(self, bulk: BulkRequest) -> Outcome:
        """Create ``bulk``'s job (on an I/O thread): its batches live for this call only."""
        return self.owner.client.create_batch(bulk.batches())

    # --- requests on the I/O threads --------------------------------------------------------
    def _submit(
        self,
        tag: str,
        obj: object,
        call: Any,
        arg: Any,
        stamp: float | None,
        limiter: Limiter | None = None,
    ) -> None:
        if limiter is None:
            limiter = self.owner.rate_limiter
        self._requests += 1

        def request() -> Outcome:
            # The slot counts from the answer, by when the request surely arrived:
            # thread hand-offs and connection set-up cannot bunch arrivals at Gameball.
            try:
                result: Outcome = call(arg)
                return result
            finally:
                if stamp is not None:
                    limiter.restamp(stamp)

        self.pool.submit(tag, obj, request, self._requests)

    def _submit_send(self, job: Request, stamp: float) -> None:
        self._busy.add(job.key)
        self.in_flight += job.n
        self._in_flight_jobs.add(job)
        self._submit("send", job, self.owner.client.send, job, stamp)

    def _submit_order(self, job: OrderRequest, stamp: float) -> None:
        self._orders_ready -= 1
        self._busy.add(job.key)
        self.in_flight += 1
        self._in_flight_jobs.add(job)  # type: ignore[arg-type]
        limiter = self.owner.order_rate_limiter
        self._submit("order", job, self._send_order, job, stamp, limiter)

    def _send_order(self, job: OrderRequest) -> Outcome:
        """Send one order (on an I/O thread)."""
        send_order = self.owner.client.send_order  # type: ignore[attr-defined]
        outcome: Outcome = send_order(job.body, session_token=job.draft.session_token)
        return outcome

    def _submit_poll(self, bulk: BulkRequest | OrderBulk) -> None:
        assert bulk.job.job_id is not None
        self._submit("poll", bulk, self.owner.client.batch_status, bulk.job.job_id, None)

    # --- answers --------------------------------------------------------------------------
    def _collect(self) -> None:
        done = self._done
        while True:
            try:
                tag, obj, result = done.get_nowait()
            except queue.Empty:
                return
            self._requests -= 1
            # A client that raised is a permanent failure (client_error), never ambiguous.
            outcome = client_failure(result)
            if client_raised(outcome):
                _log.error("gbtrack: %s instead of returning an outcome", outcome.error)
            if tag == "send":
                self._on_sent(obj, outcome)
            elif tag == "order":
                self._on_order_sent(obj, outcome)
            elif tag == "order_create":
                self.owner.order_rate_limiter.note(outcome)
                self._apply_orders(obj, obj.job.on_created(outcome, time.monotonic()))
            elif isinstance(obj, OrderBulk):
                self._apply_orders(obj, obj.job.on_status(outcome, time.monotonic()))
            elif tag == "create":
                self.owner.rate_limiter.note(outcome)
                self._apply(obj, obj.job.on_created(outcome, time.monotonic()))
            else:
                self._apply(obj, obj.job.on_status(outcome, time.monotonic()))

    def _release(self, job: Request) -> None:
        self._busy.discard(job.key)
        self.in_flight -= job.n

    def _on_sent(self, job: Request, outcome: Outcome) -> None:
        """Settle, retry, split or hold one request's events after its answer."""
        self._in_flight_jobs.discard(job)
        self._release(job)
        if job.probe:
            job.probe = False
            if self.gate.answered(outcome):
                self.wake.set()
        if key_refused(outcome):
            self._refuse_key(job, outcome)
        elif client_raised(outcome) and job.n > 1:
            self._split(job)
        else:
            self.owner.rate_limiter.note(outcome)
            self._settle(job, outcome)

    def _on_order_sent(self, job: OrderRequest, outcome: Outcome) -> None:
        """Settle, retry or hold one order after its answer."""
        self._in_flight_jobs.discard(job)
        self._release(job)  # type: ignore[arg-type]
        if job.probe:
            job.probe = False
            if self.gate.answered(outcome):
                self.wake.set()
        if key_refused(outcome):
            self._refuse_key(job, outcome)  # type: ignore[arg-type]
            return
        self.owner.order_rate_limiter.note(outcome)
        self._order_answer(job, outcome)

    def _order_answer(
        self, job: OrderRequest, outcome: Outcome, together: dict[int, float] | None = None
    ) -> None:
        """Settle, retry or give up one order after its answer (alone or as a job item)."""
        owner = self.owner
        if outcome.delivered:
            owner.settle_order(job, outcome, False)
            self.queue.settle(1, (job.mark,))
            return
        job.attempts += 1
        decision = owner.retry.decide_order(
            outcome, job.attempts, job.age(time.time()), ambiguous_before=job.ambiguous
        )
        if outcome.ambiguous:
            job.ambiguous = True
        if decision.reason == "delivered":  # a duplicate after an ambiguous attempt
            owner.settle_order(job, outcome, True)
            self.queue.settle(1, (job.mark,))
            return
        if decision.retry:
            owner.reporter.count("retried")
            owner.reporter.note_error(decision.message)
            self._orders_ready += 1
            self._retry_later(job, decision.delay, outcome, together)
            return
        assert decision.reason is not None
        owner.give_up_orders([job.draft], decision.reason, decision.message, safe_error(outcome))
        self.queue.settle(1, (job.mark,))

    def _settle(
        self, job: Request, outcome: Outcome, together: dict[int, float] | None = None
    ) -> None:
        """Count ``job`` delivered, schedule its retry, or give its events up."""
        if outcome.delivered:
            self.owner.reporter.count("delivered", job.n)
            if self.outcomes.wants_events():
                self._delivered_events(job.records)
            self.queue.settle(job.n, (job.mark,))
            return
        job.attempts += 1
        decision = self.owner.retry.decide(outcome, job.attempts, job.age(time.time()))
        if decision.retry:
            self.owner.reporter.count("retried", job.n)
            self.owner.reporter.note_error(decision.message)
            self._retry_later(job, decision.delay, outcome, together)
            return
        assert decision.reason is not None
        self._give_up([job], decision.reason, decision.message, safe_error(outcome))

    def _apply(self, bulk: BulkRequest, step: JobStep) -> None:
        """Act on the batch job's step: poll later, settle each item, or fall back."""
        if step.action is JobAction.POLL:
            assert step.poll_at is not None
            heapq.heappush(self._poll_heap, (step.poll_at, next(self._seq), bulk))
            return
        self._in_flight_bulks.discard(bulk)
        entries = bulk.entries  # (records, mark, attempts) per request
        self._busy.difference_update([entry[0][0][1] for entry in entries])
        self.in_flight -= sum([len(entry[0]) for entry in entries])
        if step.action is JobAction.FALL_BACK:
            assert step.cause is not None
            self._fall_back(bulk.jobs, step.cause)
            return
        together: dict[int, float] = {}  # items that failed together are retried together
        for outcome, fated in bulk.fates(step.outcomes):
            if outcome.delivered:
                n = sum([len(entry[0]) for entry in fated])
                self.owner.reporter.count("delivered", n)
                if self.outcomes.wants_events():
                    for entry in fated:
                        self._delivered_events(entry[0])
                self.queue.settle(n, [entry[1] for entry in fated])
                continue
            for job in requests_of(fated):
                self._settle(job, outcome, together)

    def _delivered_events(self, records: Sequence[Record]) -> None:
        """Tell the events' own hooks and the tracker's that these events were delivered."""
        outcomes = self.outcomes
        every = outcomes.tracker_hook is not None
        for record in records:
            # Only a record carrying its event can have an own hook (gbtrack._outcomes).
            own = None if record[8] is None else item_hook(record[8])
            if every or own is not None:
                outcomes.emit(DeliveryOutcome("event", "delivered", record[1], record[0]), own)

    def _fall_back(self, jobs: list[Request], cause: Outcome) -> None:
        """No batch job was made: each request goes alone, the batch endpoint rests."""
        if key_refused(cause):
            for job in jobs:
                self._refuse_key(job, cause)
            return
        self._bulk_off_until = time.monotonic() + FALL_BACK_PAUSE
        for job in jobs:
            job.direct = True
        self._ready.extendleft(reversed(jobs))
        _log.warning(
            "gbtrack: batch create refused (%s); one request per customer for %gs",
            describe_outcome(cause),
            FALL_BACK_PAUSE,
        )

    # --- a refused key, a raising client ------------------------------------------------------
    def _refuse_key(self, job: Request, outcome: Outcome) -> None:
        """Gameball refused the key: stop sending, keep the events, probe later.

        With a spill (the outbox), the refused request's events go there (reason
        ``unauthorized``), where the outbox's worker moves them to its dead letter with
        Gameball's code, for ``gbtrack outbox retry --code 1000`` once the key is fixed.
        Without one, they wait at the head of the line for the key to work again.
        """
        owner = self.owner
        kept = (
            "in the outbox"
            if owner.spill is not None
            else "in memory, then dropped as queue_overflow when the queue is full"
        )
        if self.gate.refuse(outcome, owner.auth_probe_interval, kept):
            self.queue.wake_flushers()  # flush() answers at once: nothing will settle
        owner.reporter.note_error(f"API key refused: {describe_outcome(outcome)}")
        if owner.spill is not None:
            message = f"Gameball refused the API key: {describe_outcome(outcome)}"
            self._give_up([job], "unauthorized", message, safe_error(outcome))
        else:
            if job.is_order:
                self._orders_ready += 1
            self._ready.appendleft(job)

    def _split(self, job: Request) -> None:
        """The client raised on ``job``'s events: send each alone, now, to find the bad one.

        One poisoned event never delays its batch: the others go at once (no backoff,
        no attempt counted) and only the event that raises alone fails (``client_error``).
        """
        singles = job.split()
        self.queue.add_jobs(job.mark, len(singles) - 1)
        self._ready.extendleft(reversed(singles))

    # --- giving up ----------------------------------------------------------------------------
    def _give_up(
        self,
        jobs: Sequence[Request | OrderRequest],
        reason: str,
        message: str,
        exc: BaseException | None = None,
    ) -> None:
        """Hand over, spill or drop the events of ``jobs`` (the sender decides); settle them."""
        orders = [job for job in jobs if job.is_order]
        if orders:
            drafts = [job.draft for job in orders]  # type: ignore[union-attr]
            self.owner.give_up_orders(drafts, reason, message, exc)
            self.queue.settle(len(orders), marks(orders))
            jobs = [job for job in jobs if not job.is_order]
        events = [event for job in jobs for event in job.events]
        self.owner.give_up(events, reason, message, exc)  # type: ignore[arg-type]
        self.queue.settle(len(events), marks(jobs))

    def abandon_all(self) -> None:
        """The worker stops: whatever is left is spilled or dropped with reason ``closed``."""
        report = self.queue.claim_abandon()
        jobs = list(self._ready) + [item[2] for item in self._retry_heap]
        jobs += self._in_flight_jobs
        for bulk in self._in_flight_bulks:
            jobs += bulk.jobs
        for order_bulk in self._order_bulks:
            jobs += order_bulk.jobs
        self._order_bulks.clear()
        self._ready.clear()
        self._orders_ready = 0
        self._retry_heap.clear()
        self._poll_heap.clear()
        self._in_flight_jobs.clear()
        self._in_flight_bulks.clear()
        self.in_flight = 0
        if jobs and report:
            self._give_up(jobs, "closed", "the sender closed before delivery finished")
        elif jobs:  # close() counted them: the worker was late
            self.queue.settle(sum(job.n for job in jobs), marks(jobs))
        self.abandon_queue()

    def abandon_queue(self) -> None:
        """Give up every event still queued (sends that raced with the shutdown)."""
        items = self.queue.take_all()
        orders = [item for item in items if type(item) is OrderDraft]
        if orders:
            items = [item for item in items if type(item) is not OrderDraft]
            self.owner.give_up_orders(orders, "closed", "the sender closed before delivery")
            self.queue.settle(len(orders))
        if items:
            events = events_of(self.owner.records(items))  # type: ignore[arg-type]
            self.queue.settle(len(items) - len(events))
            if events:
                self.owner.give_up(events, "closed", "the sender closed before delivery")
                self.queue.settle(len(events))
