"""OutboxSender: every accepted event is on disk before delivery; a worker drains the file.

Two threads per process: a *writer* (``sync="batch"``) that commits the in-memory
buffer every ``commit_interval`` seconds or ``commit_events`` events, and a *delivery
worker* that claims rows with a lease, sends them through the Gameball client under the
retry policy and the rate limiter, deletes them only after a delivered outcome and
moves final failures to the dead letter. :class:`OutboxDrainer` is that worker's logic,
also used by ``gbtrack outbox drain`` and ``gbtrack relay``.

A row is sent by one live worker only: each claim has a token; a heartbeat thread renews
the leases of every row the drainer holds (every quarter lease) while requests and batch
jobs are in flight; before each request the drainer checks that its lease on the rows is
fresh (renewing at the store, fenced by the token, when the heartbeat is late: a frozen
or starved process), and rows claimed by another worker meanwhile are neither sent nor
settled. What remains is the request already in flight when a process freezes past its
lease: its rows may be sent again by the worker that claims them next.

Rows hold events or orders (:attr:`OutboxRow.kind`). An order goes alone, to the orders
endpoint, in the orders rate bucket (``order_limiter``), or as an item of a
``/batch/orders`` job; one customer's rows are sent in the order they were stored,
whatever their kind (events between two orders are merged among themselves only).
Orders follow the engine's rules (:meth:`RetryPolicy.decide_order`): an ambiguous
attempt is retried and remembered in the row (:attr:`OutboxRow.ambiguous`), so that a
duplicate answer to a later attempt, in this process or another, counts as delivered.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

from gbtrack._errors import (
    AuthenticationError,
    ConfigurationError,
    DeliveryError,
    PayloadError,
    TrackingError,
)
from gbtrack._event import Event
from gbtrack._fork import forget, reset_after_fork
from gbtrack._protocol import (
    FALL_BACK_PAUSE,
    JOB_TIMEOUT,
    LONGEST_POLL,
    MAX_BATCH_ITEMS,
    ORDERS,
    BulkJob,
    EventBatch,
    JobAction,
    JobStep,
    Outcome,
    OutcomeKind,
    call_client,
    client_raised,
    coalesce,
    job_items,
)
from gbtrack._report import ErrorHandler, Stats, logger
from gbtrack.outbox._protocol import OutboxStoreProtocol
from gbtrack.outbox._store import OutboxRow, OutboxStore, StoredOrder
from gbtrack.senders._base import BaseSender
from gbtrack.senders._policy import DeliveryClient, Limiter, RateLimiter, RetryPolicy

__all__ = ["DrainResult", "OutboxDrainer", "OutboxSender"]

SyncMode = Literal["batch", "every_event"]
OverflowPolicy = Literal["drop_newest", "block"]


_NO_SECRET = Outcome(
    OutcomeKind.PERMANENT,
    error=AuthenticationError(
        "orders need the secret key (Gameball's Order API requires both keys): set "
        "GAMEBALL_SECRET_KEY (or --secret-key) where the outbox is drained"
    ),
)
_Item = tuple[EventBatch | StoredOrder, list[OutboxRow]]
"""One request's worth of rows: an events batch or one order, and the rows it came from."""


def _new_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass
class DrainResult:
    """What a drain did.

    Attributes:
        claimed: Rows leased for delivery.
        delivered: Events and orders Gameball acknowledged (their rows deleted); an
            order answered as a duplicate after an ambiguous attempt counts here.
        retried: Events and orders put back for a later attempt.
        dead: Events and orders moved to the dead letter.
        requests: Requests sent (per-request sends and batch jobs).
        last_error: The most recent failure (retried or final), keys never included.
        fenced: Rows left unsent or unsettled because another worker claimed them after
            this one's lease ran out (that worker delivers them).
        abandoned: Rows of a batch job given up when the drainer was stopped before
            the job finished: they may have been sent; put back to retry.
    """

    claimed: int = 0
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    requests: int = 0
    last_error: str | None = None
    fenced: int = 0
    abandoned: int = 0

    def add(self, other: DrainResult) -> None:
        """Add ``other``'s counts to these; ``other``'s last error wins."""
        self.claimed += other.claimed
        self.delivered += other.delivered
        self.retried += other.retried
        self.dead += other.dead
        self.requests += other.requests
        self.fenced += other.fenced
        self.abandoned += other.abandoned
        self.last_error = other.last_error or self.last_error


@dataclass
class _Claim:
    """Rows held under one claim token, and until when their lease surely lasts."""

    ids: set[int]
    valid_until: float  # time.monotonic(): taken before the statement that set the lease
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class OutboxDrainer:
    """Claim rows from an outbox and deliver them; one round at a time.

    Args:
        store: The outbox: an :class:`OutboxStore` (SQLite file) or a
            :class:`~gbtrack.outbox.SqlOutboxStore` (any :class:`OutboxStoreProtocol`).
        client: The Gameball client (:class:`~gbtrack.gameball.GameballClient`).
        retry: The retry policy (what is retried, backoff, limits).
        limiter: The client-side rate limiter of events, shared by every send.
        order_limiter: The orders bucket's limiter (Gameball limits orders apart:
            30/s, 360 per 30 s); default: a local one at those limits.
        lease: Seconds a claim is held; must exceed a request's timeout (a worker that
            dies holding rows delays them by at most this long).
        claim_size: Rows claimed per round on the per-request path.
        concurrency: Requests in flight at once on the per-request path.
        bulk_threshold: Pending rows from which the batch endpoint is used, when the
            client has a secret key.
        poll_interval: The longest wait between batch-job status polls (polls start
            50 ms after the job is created and back off to this).
        job_timeout: Seconds to wait for a batch job before its outcome is ambiguous.
        on_dead: Called with (rows, reason, outcome) when rows move to the dead letter.
        stop: An event that interrupts waits (set when the owner shuts down).
        finishing: An event that stops claiming: rounds in progress go on to their end
            (requests answered, batch jobs polled until done), then :meth:`run_once`
            claims nothing; ``stop`` still interrupts them.
        halt_on_auth: Stop at the first refused credential (an
            :class:`~gbtrack.AuthenticationError`: 401/403, codes 1000, 1001, 1002, or the
            account's minimum API version): its rows go back untouched instead of to the
            dead letter, nothing more is sent, and :attr:`halted` holds the outcome.
            For ``gbtrack outbox drain``, where a wrong key is the operator's mistake.
    """

    def __init__(
        self,
        store: OutboxStoreProtocol,
        client: DeliveryClient,
        *,
        retry: RetryPolicy | None = None,
        limiter: Limiter | None = None,
        order_limiter: Limiter | None = None,
        lease: float = 60.0,
        claim_size: int = 100,
        concurrency: int = 4,
        bulk_threshold: int = 2_000,
        poll_interval: float = LONGEST_POLL,
        job_timeout: float = JOB_TIMEOUT,
        on_dead: Callable[[Sequence[OutboxRow], str, Outcome], None] | None = None,
        stop: threading.Event | None = None,
        finishing: threading.Event | None = None,
        halt_on_auth: bool = False,
    ) -> None:
        if lease <= 0 or claim_size < 1 or concurrency < 1 or bulk_threshold < 1:
            raise ConfigurationError("lease, claim_size, concurrency, bulk_threshold must be > 0")
        self.store = store
        self.client = client
        self.retry = retry or RetryPolicy()
        self.limiter: Limiter = limiter or RateLimiter()
        self.order_limiter: Limiter = order_limiter or RateLimiter(ORDERS.limits)
        self.lease = lease
        self.claim_size = claim_size
        self.concurrency = concurrency
        self.bulk_threshold = bulk_threshold
        self.poll_interval = poll_interval
        self.job_timeout = job_timeout
        self.on_dead = on_dead
        self.stop = stop or threading.Event()
        self.finishing = finishing or threading.Event()
        self.halt_on_auth = halt_on_auth
        self.halted: Outcome | None = None
        self._keys_accepted = False  # set by the first delivered answer
        self._bulk_off_until = 0.0
        self._reset()

    def _reset(self) -> None:
        """Fresh per-process state (at start and in a forked child)."""
        self.owner = _new_owner()
        self._pool: ThreadPoolExecutor | None = None
        self._claims: dict[str, _Claim] = {}
        self._claims_lock = threading.Lock()
        self._in_flight: set[int] = set()  # rows of requests and jobs sent, not settled
        self._beat: threading.Thread | None = None
        self._beat_stop = threading.Event()
        self.released_at_close = 0  # rows still held when close() gave them back

    def after_fork(self, stop: threading.Event) -> None:
        """In a forked child: a new owner, no threads, no claims (the parent's are its own)."""
        self.stop = stop
        self.finishing = threading.Event()
        self._reset()

    def close(self, *, wait: bool = True) -> int:
        """Stop the request threads and give back rows this drainer still holds.

        Args:
            wait: Wait for requests in flight (``False``: at a deadline, their rows
                are released with the rest and may have been sent).

        Returns:
            How many of the released rows were in flight (possibly sent).
        """
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=True)
            self._pool = None
        self._beat_stop.set()
        with self._claims_lock:
            in_flight = len(self._in_flight)
            self._in_flight.clear()
            self._claims.clear()
        self.released_at_close = self.store.release_owner(self.owner)
        return in_flight

    # --- leases: a heartbeat, and a check before each send ------------------------------------
    def _hold(self, rows: Sequence[OutboxRow], started: float) -> None:
        token = rows[0].claim_token if rows else None
        if token is None:
            return
        with self._claims_lock:
            self._claims[token] = _Claim({r.id for r in rows}, started + self.lease)
            if self._beat is None or not self._beat.is_alive():
                self._beat_stop = threading.Event()
                self._beat = threading.Thread(
                    target=self._heartbeat, name="gbtrack-outbox-lease", daemon=True
                )
                self._beat.start()

    def _heartbeat(self) -> None:
        stop = self._beat_stop
        while not stop.wait(self.lease / 4):
            with self._claims_lock:
                tokens = list(self._claims)
            for token in tokens:
                try:
                    self._renew(token)
                except Exception as exc:  # the database is away: the check before sending decides
                    logger.warning("gbtrack outbox: lease renewal failed: %s", exc)

    def _renew(self, token: str) -> None:
        """Renew claim ``token`` at the store; forget the rows it no longer holds."""
        with self._claims_lock:
            claim = self._claims.get(token)
            if claim is None:
                return
        with claim.lock:  # one renewal per claim at a time: valid_until stays honest
            with self._claims_lock:
                asked = set(claim.ids)
            if not asked:
                return
            started = time.monotonic()
            held = set(self.store.extend(self.owner, sorted(asked), lease=self.lease, token=token))
            with self._claims_lock:
                lost = claim.ids & (asked - held)
                claim.ids -= lost
                claim.valid_until = started + self.lease
        if lost:
            logger.warning(
                "gbtrack outbox: %d row(s) were claimed by another worker after this one's "
                "lease ran out (a paused process?): not sent again from here",
                len(lost),
            )

    def _usable(self, rows: Sequence[OutboxRow]) -> list[OutboxRow]:
        """The rows still surely ours for at least half a lease (renewed here if need be)."""
        token = rows[0].claim_token if rows else None
        if token is None:
            return list(rows)
        with self._claims_lock:
            claim = self._claims.get(token)
            fresh = claim is not None and claim.valid_until - time.monotonic() >= self.lease / 2
        if claim is None:
            return []
        if not fresh:
            self._renew(token)  # the heartbeat is late: ask the database (fenced)
        with self._claims_lock:
            if claim.valid_until - time.monotonic() <= 0:
                return []
            return [r for r in rows if r.id in claim.ids]

    def _forget(self, rows: Sequence[OutboxRow]) -> None:
        """The rows are settled (or about to be): no more renewal, not in flight."""
        with self._claims_lock:
            for row in rows:
                self._in_flight.discard(row.id)
                token = row.claim_token
                claim = self._claims.get(token) if token is not None else None
                if claim is not None:
                    claim.ids.discard(row.id)
                    if not claim.ids:
                        del self._claims[token]  # type: ignore[arg-type]

    def _drop_claim(self, rows: Sequence[OutboxRow]) -> None:
        with self._claims_lock:
            for token in {r.claim_token for r in rows}:
                if token is not None:
                    self._claims.pop(token, None)
            self._in_flight.difference_update(r.id for r in rows)

    def _sending(self, rows: Sequence[OutboxRow]) -> None:
        with self._claims_lock:
            self._in_flight.update(r.id for r in rows)

    def _give_back(self, rows: Sequence[OutboxRow], **how: object) -> None:
        """Release rows (fenced by their claim token): untouched unless ``how`` says."""
        self._forget(rows)
        for token, ids in _by_token(rows).items():
            self.store.release(self.owner, ids, token=token, **how)  # type: ignore[arg-type]

    # --- rounds ---------------------------------------------------------------------------
    def use_bulk(self) -> bool:
        """Whether the next round goes through the batch endpoint."""
        # A bounded count: its cost stops at the threshold, whatever the backlog.
        return (
            bool(getattr(self.client, "has_secret_key", False))
            and time.monotonic() >= self._bulk_off_until
            and self.store.count("pending", limit=self.bulk_threshold) >= self.bulk_threshold
        )

    def run_once(self, *, bulk: bool | None = None) -> DrainResult:
        """Claim ready rows and deliver them; return what happened (``claimed == 0``: idle).

        Args:
            bulk: Force (``True``) or forbid (``False``) the batch endpoint; ``None``
                decides by :meth:`use_bulk`.
        """
        if self.finishing.is_set() or self.stop.is_set():
            return DrainResult()  # shutting down: nothing new
        if bulk is None:
            bulk = self.use_bulk()
        started = time.monotonic()
        size = MAX_BATCH_ITEMS if bulk else self.claim_size
        rows = self.store.claim(self.owner, size, lease=self.lease)
        if not rows:
            return DrainResult()
        self._hold(rows, started)
        try:
            return self._bulk(rows) if bulk else self._per_request(rows)
        finally:
            # Every row is settled or given back by now, unless the round failed (the
            # store went away): then the heartbeat must not keep its rows forever; their
            # lease runs out and they are claimed again.
            self._drop_claim(rows)

    # --- the per-request path ---------------------------------------------------------------
    def _per_request(self, rows: list[OutboxRow]) -> DrainResult:
        result = DrainResult(claimed=len(rows))
        pairs = self._decode(rows, result)
        if not pairs:
            return result
        # One customer's requests go in order on one thread: parallel requests for the
        # same customer would earn 2001 conflicts.
        groups = _lines(pairs)
        if self.halt_on_auth and not self._keys_accepted:
            # Probe with one customer first: a wrong key then costs one request, not
            # one per thread.
            result.add(self._send_group(groups.pop(0)))
            if self.halted is not None or not groups:
                for group in groups:
                    self._give_back([r for _, rows in group for r in rows], count_attempt=False)
                return result
        if self.concurrency == 1 or len(groups) == 1:
            for group in groups:
                result.add(self._send_group(group))
            return result
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="gbtrack-outbox")
        for part in self._pool.map(self._send_group, groups):
            result.add(part)
        return result

    def _send_group(self, group: list[_Item]) -> DrainResult:
        result = DrainResult()
        for batch, batch_rows in group:
            # Checked before waiting for a slot (no wait for rows already lost), and
            # after: the wait may have outlasted the lease (a frozen process).
            if not self._still_ours(batch_rows, result):
                continue
            if isinstance(batch, StoredOrder):
                result.add(self._send_order(batch, batch_rows))
                continue
            stamp = self._take_slot()
            if stamp is None:
                # Shutting down, or halted: give the rows back untouched (never sent).
                self._give_back(batch_rows, count_attempt=False)
                continue
            if not self._still_ours(batch_rows, result):
                # Never sent: the slot ends now (a slot not ended counts until its hold).
                self.limiter.restamp(stamp)
                continue
            self._sending(batch_rows)
            outcome = call_client(self.client.send, batch)
            self.limiter.restamp(stamp)
            result.requests += 1
            if client_raised(outcome) and len(batch.events) > 1:
                # One poisoned event never holds back its batch: each goes alone, now.
                singles: list[_Item] = [
                    (EventBatch.from_event(event), [row])
                    for event, row in zip(batch.events, batch_rows, strict=True)
                ]
                result.add(self._send_group(singles))
                continue
            self.limiter.note(outcome)
            result.add(self._settle(batch_rows, outcome))
        return result

    def _send_order(self, order: StoredOrder, rows: list[OutboxRow]) -> DrainResult:
        """Send one order alone, in the orders bucket, and settle its row."""
        if not getattr(self.client, "has_secret_key", True):
            # The Order API needs both keys: a refused credential, decided here (no
            # request): `outbox drain` halts with the row untouched; a relay buries it,
            # for `retry --kind order` once the secret key is set.
            return self._settle(rows, _NO_SECRET)
        stamp = self._take_slot(self.order_limiter)
        if stamp is None:
            self._give_back(rows, count_attempt=False)
            return DrainResult()
        if len(self._usable(rows)) < len(rows):
            self.order_limiter.restamp(stamp)
            self._forget(rows)
            return DrainResult(fenced=len(rows))
        self._sending(rows)
        outcome = call_client(self._order_call, order.body)
        self.order_limiter.restamp(stamp)
        self.order_limiter.note(outcome)
        result = self._settle(rows, outcome)
        result.requests += 1
        return result

    def _order_call(self, body: dict[str, object]) -> Outcome:
        # Not every DeliveryClient sends orders: one without it raises (client_error).
        send: Callable[[dict[str, object]], Outcome] = self.client.send_order  # type: ignore[attr-defined]
        return send(body)

    def _order_batch_call(self, bodies: list[dict[str, object]]) -> Outcome:
        create: Callable[[list[dict[str, object]]], Outcome] = self.client.create_order_batch  # type: ignore[attr-defined]
        return create(bodies)

    def _still_ours(self, rows: list[OutboxRow], result: DrainResult) -> bool:
        """Whether every row is still surely ours; if not, send those that are, elsewhere.

        Rows claimed by another worker since this one's lease ran out are that worker's
        to send: counted as fenced, forgotten here.
        """
        usable = self._usable(rows)
        if len(usable) == len(rows):
            return True
        result.fenced += len(rows) - len(usable)
        kept = {r.id for r in usable}
        self._forget([r for r in rows if r.id not in kept])
        if usable:
            result.add(self._send_group(_regroup(usable)))
        return False

    def _take_slot(self, limiter: Limiter | None = None) -> float | None:
        """A rate-limit slot's stamp (restamp it at the answer); None when stopping.

        From ``limiter`` (default: the events limiter). ``finishing`` counts as
        stopping here: rows not yet sent go back at once; only requests already sent
        (and batch jobs already created) are finished.
        """
        limiter = self.limiter if limiter is None else limiter
        while not (self.stop.is_set() or self.finishing.is_set()) and self.halted is None:
            stamp = limiter.take(1.0, stop=self.stop)
            if stamp is not None:
                return stamp
        return None

    def _settle(self, rows: Sequence[OutboxRow], outcome: Outcome) -> DrainResult:
        """Apply one outcome to the rows it covers: delete, put back, or bury.

        Events that shared a request share its fate; each order is settled alone (its
        attempts, and whether an earlier one was ambiguous, are its own). Every store
        call is fenced by the rows' claim token: rows claimed again by another worker
        (after this one's lease ran out) are left to that worker.
        """
        if all(r.kind == "event" for r in rows):
            return self._settle_rows(rows, outcome)
        result = DrainResult()
        events = [r for r in rows if r.kind == "event"]
        if events:
            result.add(self._settle_rows(events, outcome))
        for row in rows:
            if row.kind == "order":
                result.add(self._settle_rows([row], outcome))
        return result

    def _settle_rows(self, rows: Sequence[OutboxRow], outcome: Outcome) -> DrainResult:
        """:meth:`_settle` for events of one request, or for one order."""
        ids = [r.id for r in rows]
        self._forget(rows)
        if outcome.delivered:
            self._keys_accepted = True
            return self._complete(rows)
        error = outcome.error
        described = str(error) if error is not None else outcome.kind.value
        if self.halt_on_auth and outcome.permanent and isinstance(error, AuthenticationError):
            # The credentials, not the events: give the rows back as they were, and stop.
            self._give_back(rows, count_attempt=False)
            if self.halted is None:
                self.halted = outcome
            return DrainResult(last_error=described)
        attempts = max(r.attempts for r in rows) + 1
        age = time.time() - min(r.created_at for r in rows)
        ambiguous = outcome.ambiguous
        if rows[0].kind == "order":
            # A duplicate answer after an ambiguous attempt (stored in the row, maybe by
            # another process before a restart) means Gameball had the order: delivered.
            decision = self.retry.decide_order(
                outcome, attempts, age, ambiguous_before=rows[0].ambiguous
            )
            if decision.reason == "delivered":
                return self._complete(rows)
        else:
            decision = self.retry.decide(outcome, attempts, age)
        reason = decision.reason
        if reason is None:
            self._give_back(rows, delay=decision.delay, error=described, ambiguous=ambiguous)
            return DrainResult(retried=len(ids), last_error=described)
        message = f"{reason}: {error}" if error is not None else reason
        status = outcome.status if outcome.status is not None else getattr(error, "status", None)
        code = getattr(error, "code", None)
        for token, part in _by_token(rows).items():
            self.store.bury(
                part, status=status, code=code, message=message, token=token, ambiguous=ambiguous
            )
        if self.on_dead is not None:
            self.on_dead(rows, reason, outcome)
        return DrainResult(dead=len(ids), last_error=message)

    def _complete(self, rows: Sequence[OutboxRow]) -> DrainResult:
        """Delete delivered rows (fenced by their claim token)."""
        done = sum(self.store.complete(i, token=t) for t, i in _by_token(rows).items())
        if done < len(rows):
            logger.warning(
                "gbtrack outbox: %d delivered row(s) had been claimed by another worker "
                "(this one's lease ran out mid-request): they may be sent twice",
                len(rows) - done,
            )
        return DrainResult(delivered=len(rows), fenced=len(rows) - done)

    def _decode(
        self, rows: list[OutboxRow], result: DrainResult
    ) -> list[tuple[OutboxRow, Event | StoredOrder]]:
        pairs: list[tuple[OutboxRow, Event | StoredOrder]] = []
        for row in rows:
            try:
                pairs.append((row, row.order() if row.kind == "order" else row.event()))
            except Exception as exc:  # a row written by a newer or broken writer
                unreadable = Outcome(
                    OutcomeKind.PERMANENT, error=PayloadError(f"unreadable outbox row: {exc}")
                )
                result.add(self._settle([row], unreadable))
        return pairs

    # --- the batch path -------------------------------------------------------------------------
    def _bulk(self, rows: list[OutboxRow]) -> DrainResult:
        result = DrainResult(claimed=len(rows))
        pairs = self._decode(rows, result)
        if not pairs:
            return result
        # Each customer's first request goes in a job (events' or orders'); its later
        # ones wait for a later round (one per customer per round, in order).
        lines = _lines(pairs)
        firsts = [line[0] for line in lines]
        later = [r for line in lines for _, item_rows in line[1:] for r in item_rows]
        events: list[tuple[EventBatch, list[OutboxRow]]] = []
        orders: list[tuple[StoredOrder, list[OutboxRow]]] = []
        for item, item_rows in firsts:
            if isinstance(item, StoredOrder):
                orders.append((item, item_rows))
            else:
                events.append((item, item_rows))
        taken, left = job_items([batch for batch, _ in events])
        later += [r for i in left for r in events[i][1]]
        if later:
            self._give_back(later, count_attempt=False)
        if taken:
            self._job([events[i] for i in taken], result)
        if orders:
            self._job(orders, result)
        return result

    def _job(self, items: Sequence[_Item], result: DrainResult) -> None:
        """Run one batch job of events batches, or of orders (``/batch/orders``)."""
        is_orders = isinstance(items[0][0], StoredOrder)
        limiter = self.order_limiter if is_orders else self.limiter
        all_rows = [r for _, item_rows in items for r in item_rows]
        stamp = self._take_slot(limiter)
        if stamp is None:
            self._give_back(all_rows, count_attempt=False)
            return
        usable = {r.id for r in self._usable(all_rows)}
        if len(usable) < len(all_rows):
            # Claimed elsewhere since our lease ran out: only items wholly ours go.
            whole: list[_Item] = []
            partial: list[OutboxRow] = []
            for item in items:
                if all(r.id in usable for r in item[1]):
                    whole.append(item)
                else:
                    partial += [r for r in item[1] if r.id in usable]
            result.fenced += len(all_rows) - len(usable)
            self._forget([r for r in all_rows if r.id not in usable])
            self._give_back(partial, count_attempt=False)
            items = whole
            all_rows = [r for _, item_rows in items for r in item_rows]
            if not items:
                limiter.restamp(stamp)  # nothing sent: the slot ends now
                return
        batches = [batch for batch, _ in items]
        self._sending(all_rows)
        if is_orders:
            bodies = [order.body for order in batches if isinstance(order, StoredOrder)]
            # A client without the batch orders endpoint raises here: a fall-back.
            created = call_client(self._order_batch_call, bodies)
        else:
            created = call_client(self.client.create_batch, batches)
        limiter.restamp(stamp)
        result.requests += 1
        limiter.note(created)
        # A job reads its items' customer_id only: orders and batches alike.
        job = BulkJob(
            batches,  # type: ignore[arg-type]
            longest_poll=self.poll_interval,
            timeout=self.job_timeout,
        )
        step = self._run_job(job, created)
        stopped = job.job_id is not None and self.stop.is_set()
        if stopped and any(o.ambiguous for o in step.outcomes):  # abandoned at the stop
            result.abandoned += len(all_rows)
            logger.warning(
                "gbtrack outbox: stopped before batch job %s finished: %d row(s) put back "
                "(possibly sent)",
                job.job_id,
                len(all_rows),
            )
        if step.action is JobAction.FALL_BACK:
            result.add(self._fall_back(all_rows, step.cause or created))
            return
        # Items that share a fate share one outcome: settle each group at once.
        groups: dict[int, tuple[Outcome, list[OutboxRow]]] = {}
        for outcome, (_, item_rows) in zip(step.outcomes, items, strict=True):
            groups.setdefault(id(outcome), (outcome, []))[1].extend(item_rows)
        for outcome, group_rows in groups.values():
            result.add(self._settle(group_rows, outcome))

    def _run_job(self, job: BulkJob, created: Outcome) -> JobStep:
        """Drive ``job`` to its end: poll when it asks (the heartbeat keeps the lease)."""
        step = job.on_created(created, time.monotonic())
        while step.action is JobAction.POLL:
            assert step.poll_at is not None
            assert job.job_id is not None
            if self.stop.wait(max(0.0, step.poll_at - time.monotonic())):
                return job.abandon("the drainer stopped before the job finished")
            answer = call_client(self.client.batch_status, job.job_id)
            step = job.on_status(answer, time.monotonic())
        return step

    def _fall_back(self, rows: list[OutboxRow], cause: Outcome) -> DrainResult:
        """No job was made: the rows go back, for one request each, bulk off for a while."""
        if self.halt_on_auth and isinstance(cause.error, AuthenticationError):
            return self._settle(rows, cause)  # stops: see halt_on_auth
        # Refused as a whole (e.g. one bad item, or no batch access): deliver these rows
        # one request each, where each gets its own answer.
        self._bulk_off_until = time.monotonic() + FALL_BACK_PAUSE
        self._give_back(rows, count_attempt=False)
        logger.warning("gbtrack outbox: batch create refused (%s); per-request", cause)
        return DrainResult(retried=len(rows))


def _lines(pairs: list[tuple[OutboxRow, Event | StoredOrder]]) -> list[list[_Item]]:
    """Each customer's requests in the order its rows were stored, customers by first row.

    An order is a request of its own; the events between two orders of a customer are
    coalesced among themselves (those before its first order with every customer's,
    in one pass: a claim without orders is coalesced as a whole).
    """
    segment: dict[str, int] = {}  # customer -> orders of it met so far
    runs: dict[int, list[tuple[OutboxRow, Event]]] = {}  # segment -> its events
    orders: dict[tuple[str, int], _Item] = {}  # (customer, n) -> its n-th order
    for row, item in pairs:
        customer = item.customer_id
        seen = segment.setdefault(customer, 0)
        if isinstance(item, StoredOrder):
            segment[customer] = seen + 1
            orders[(customer, seen + 1)] = (item, [row])
        else:
            runs.setdefault(seen, []).append((row, item))
    parts: dict[tuple[str, int], list[_Item]] = {}
    for seen, run in runs.items():
        owners = _row_map(run)
        for batch in coalesce(event for _, event in run):
            parts.setdefault((batch.customer_id, seen), []).append((batch, _take(owners, batch)))
    lines: list[list[_Item]] = []
    for customer, count in segment.items():
        line = list(parts.get((customer, 0), ()))
        for n in range(1, count + 1):
            line.append(orders[(customer, n)])
            line += parts.get((customer, n), ())
        lines.append(line)
    return lines


def _row_map(pairs: Sequence[tuple[OutboxRow, Event]]) -> dict[str, deque[OutboxRow]]:
    owners: dict[str, deque[OutboxRow]] = {}
    for row, event in pairs:
        owners.setdefault(event.event_id, deque()).append(row)
    return owners


def _take(owners: dict[str, deque[OutboxRow]], batch: EventBatch) -> list[OutboxRow]:
    return [owners[event.event_id].popleft() for event in batch.events]


def _regroup(rows: Sequence[OutboxRow]) -> list[_Item]:
    """One customer's rows as requests again (after some of them were fenced off)."""
    pairs: list[tuple[OutboxRow, Event | StoredOrder]] = [
        (row, row.order() if row.kind == "order" else row.event()) for row in rows
    ]
    return [item for line in _lines(pairs) for item in line]


def _by_token(rows: Sequence[OutboxRow]) -> dict[str | None, list[int]]:
    groups: dict[str | None, list[int]] = {}
    for row in rows:
        groups.setdefault(row.claim_token, []).append(row.id)
    return groups


# --- the sender ------------------------------------------------------------------------------


class OutboxSender(BaseSender):
    """A durable sender: events go to a SQLite outbox first, then to Gameball.

    Also a :class:`~gbtrack.senders.Spill`: a ``BackgroundSender`` can hand it events
    (and orders: :meth:`spill_orders`) it would otherwise drop; they are written at once
    and delivered by this worker.

    Args:
        client: The Gameball client; ``None`` keeps events on disk only (deliver later
            with ``gbtrack outbox drain``).
        path: The outbox file (default: ``$GBTRACK_OUTBOX`` or the user's state dir).
        store: An open :class:`OutboxStore` to use instead of ``path`` and the caps.
        sync: ``"batch"`` (default): ``send()`` appends to memory and the writer thread
            commits every ``commit_interval`` seconds or ``commit_events`` events; an
            event accepted less than that long before a crash can be lost, and never
            more than ``commit_events`` of them: ``send()`` waits for the writer
            (back-pressure) when that many accepted events are not yet committed.
            ``"every_event"``: ``send()`` commits before returning (it blocks on disk,
            roughly a millisecond or more); nothing accepted is ever lost.
        commit_interval: Seconds between writer commits (``sync="batch"``).
        commit_events: The durability window in events (``"batch"``): at most this many
            accepted events are ever uncommitted; the writer is woken when half of it
            is buffered, so that ``send()`` rarely waits.
        max_buffer: Caps the window too (the smaller of it and ``commit_events``).
        max_rows: Cap on stored rows (pending and dead).
        max_bytes: Cap on stored bytes.
        overflow: What happens when the cap is reached: ``"drop_newest"`` (default;
            counted as ``outbox_full`` and reported) or ``"block"`` (wait up to
            ``block_timeout`` for room, then drop as ``outbox_full``).
        block_timeout: Seconds ``"block"`` waits; also the longest ``send()`` waits for
            a writer that cannot commit (a disk or lock stuck that long), after which
            the event is dropped as ``outbox_full``.
        retry: The retry policy.
        rate_limiter: The client-side rate limiter.
        order_rate_limiter: The orders bucket's limiter, for spilled orders (default: a
            local one at Gameball's order limits).
        lease: Seconds a worker holds claimed rows (must exceed the client timeout).
        claim_size: Rows per delivery round.
        concurrency: Requests in flight at once.
        bulk_threshold: Backlog (rows) from which the batch endpoint is used when the
            client has a secret key.
        poll_interval: The longest wait between batch-job status polls (polls start
            50 ms after the job is created and back off to this).
        idle_interval: Seconds the worker sleeps when nothing is ready (it also wakes
            on new events).
        deliver: Run the delivery worker in this process (``False``: store only).
        close_client: Close ``client`` in :meth:`close`.
        close_store: Close the store in :meth:`close` (default: when this sender opened it).
        close_timeout: Seconds :meth:`close` tries to deliver when given no timeout;
            what is left stays on disk for the next start.
        on_error: Called with a :class:`~gbtrack.TrackingError` for each dropped event
            and each event moved to the dead letter.
    """

    def __init__(
        self,
        client: DeliveryClient | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
        store: OutboxStore | None = None,
        sync: SyncMode = "batch",
        commit_interval: float = 0.005,
        commit_events: int = 500,
        max_buffer: int = 10_000,
        max_rows: int | None = 1_000_000,
        max_bytes: int | None = None,
        overflow: OverflowPolicy = "drop_newest",
        block_timeout: float = 5.0,
        retry: RetryPolicy | None = None,
        rate_limiter: Limiter | None = None,
        order_rate_limiter: Limiter | None = None,
        lease: float = 60.0,
        claim_size: int = 100,
        concurrency: int = 4,
        bulk_threshold: int = 2_000,
        poll_interval: float = 1.0,
        idle_interval: float = 1.0,
        deliver: bool = True,
        close_client: bool = False,
        close_store: bool | None = None,
        close_timeout: float = 5.0,
        on_error: ErrorHandler | None = None,
    ) -> None:
        super().__init__(on_error=on_error)
        if sync not in ("batch", "every_event"):
            raise ConfigurationError(f"sync must be 'batch' or 'every_event', not {sync!r}")
        if overflow not in ("drop_newest", "block"):
            raise ConfigurationError(f"overflow must be 'drop_newest' or 'block', not {overflow!r}")
        if commit_interval <= 0 or commit_events < 1 or max_buffer < 1:
            raise ConfigurationError("commit_interval, commit_events, max_buffer must be > 0")
        self.store = (
            store
            if store is not None
            else OutboxStore(path, max_rows=max_rows, max_bytes=max_bytes)
        )
        self._close_store = close_store if close_store is not None else store is None
        self.client = client
        self.sync: SyncMode = sync
        self.commit_interval = commit_interval
        self.commit_events = commit_events
        self.max_buffer = max_buffer
        # The durability window: accepted, not yet committed events never exceed it.
        self.window = min(commit_events, max_buffer)
        self._wake_at = max(1, self.window // 2)
        self.overflow: OverflowPolicy = overflow
        self.block_timeout = block_timeout
        self.idle_interval = idle_interval
        self.deliver = deliver and client is not None
        self._close_client = close_client
        self.close_timeout = close_timeout
        self._stop = threading.Event()
        self.drainer: OutboxDrainer | None = None
        if client is not None:
            self.drainer = OutboxDrainer(
                self.store,
                client,
                retry=retry,
                limiter=rate_limiter,
                order_limiter=order_rate_limiter,
                lease=lease,
                claim_size=claim_size,
                concurrency=concurrency,
                bulk_threshold=bulk_threshold,
                poll_interval=poll_interval,
                on_dead=self._report_dead,
                stop=self._stop,
            )
        self._init_runtime()
        reset_after_fork(self)
        if self.deliver:
            # Start now: a backlog left by an earlier run is delivered without a new send.
            self._start_worker()

    def _init_runtime(self) -> None:
        self._lock = threading.Lock()
        self._buffer: deque[Event] = deque()
        self._buffer_space = threading.Condition(self._lock)
        self._committing = 0  # events taken from the buffer, not yet committed
        self._committed = threading.Condition(self._lock)
        self._wake_writer = threading.Event()
        self._wake_worker = threading.Event()
        self._progress = threading.Condition(threading.Lock())
        self._round = threading.Lock()  # held by the worker while a round is counted
        self._writer: threading.Thread | None = None
        self._worker: threading.Thread | None = None
        self._pid = os.getpid()

    def _after_fork(self) -> None:
        # The child must not commit or deliver the parent's buffer: the parent does.
        self._init_runtime()
        self._stop = threading.Event()
        if self.drainer is not None:
            self.drainer.after_fork(self._stop)
            self.drainer.limiter._after_fork()
            self.drainer.order_limiter._after_fork()
        if self.deliver and not self._closed:
            self._start_worker()

    # --- accepting events ------------------------------------------------------------------
    def send(self, event: Event) -> None:
        """Accept ``event``: durable at once (``every_event``) or within the commit window."""
        if self._closed:
            self._drop_closed(event)
            return
        try:
            if event.session_token is not None:
                # Tokens are never written to disk; the event is stored and sent without it.
                self.reporter.count("session_token_stripped")
            if self.sync == "every_event":
                self._persist([event])
                return
            with self._lock:
                if len(self._buffer) + self._committing >= self.window and not self._wait_window():
                    self.reporter.drop(
                        "outbox_full",
                        f"outbox writer stuck for {self.block_timeout} s with {self.window} "
                        f"event(s) uncommitted; {event.name!r} dropped",
                        event=event,
                    )
                    return
                self._buffer.append(event)
                full = len(self._buffer) >= self._wake_at
            if self._writer is None:
                self._start_writer()
            if full and not self._wake_writer.is_set():
                self._wake_writer.set()
        except Exception as exc:  # never into business code
            self.reporter.drop(
                "outbox_error",
                f"event {event.name!r}: {type(exc).__name__}: {exc}",
                event=event,
                exc_info=exc,
            )

    def _wait_window(self) -> bool:
        """Under ``self._lock``: wait until the writer has committed enough (back-pressure).

        The durability window holds under any load: a producer faster than the disk
        waits here for the writer instead of running ahead of it.
        """
        if self._writer is None:
            self._start_writer_locked()
        elif threading.current_thread() is self._writer:
            # A hook the writer called (on_error) tracks: waiting for itself would stall.
            return True
        self._wake_writer.set()
        return self._buffer_space.wait_for(
            lambda: len(self._buffer) + self._committing < self.window,
            timeout=self.block_timeout,
        )

    def spill(self, events: Sequence[Event], reason: str) -> int:
        """Write ``events`` durably now (the :class:`~gbtrack.senders.Spill` protocol).

        Args:
            events: Events another sender could not deliver or queue.
            reason: Why they spilled (``queue_overflow``, ``retries_exhausted``, ...).

        Returns:
            How many were stored; the caller counts the rest as dropped. Never raises.
        """
        return self._spill(events, reason, "event")

    def spill_orders(self, orders: Sequence[StoredOrder], reason: str) -> int:
        """Write ``orders`` durably now: :meth:`spill` for orders (checked bodies).

        A ``BackgroundSender`` spills the orders it would otherwise drop here; this
        sender's worker delivers them (orders endpoint, orders bucket).

        Returns:
            How many were stored; the caller counts the rest as dropped. Never raises.
        """
        return self._spill(orders, reason, "order")

    def _spill(self, items: Sequence[Event] | Sequence[StoredOrder], reason: str, what: str) -> int:
        """Store ``items`` (all events or all orders, ``what`` in the log line); count them."""
        if not items or self._closed:
            return 0
        try:
            stored = self.store.append(items)
        except Exception as exc:
            logger.warning("gbtrack outbox: spill of %d %s(s) failed: %s", len(items), what, exc)
            return 0
        self.reporter.count("spilled", stored)
        self.reporter.count(f"spilled:{reason}", stored)
        self._wake_worker.set()
        return stored

    def _persist(self, events: list[Event]) -> None:
        """Append to the store, applying the cap policy; report what did not fit.

        Never raises: each event is counted once, as persisted or as dropped
        (``outbox_error`` when the file fails, ``outbox_full`` when it is full).
        """
        stored = 0
        try:
            stored = self.store.append(events)
            if stored < len(events) and self.overflow == "block":
                deadline = time.monotonic() + self.block_timeout
                while stored < len(events) and time.monotonic() < deadline:
                    # Room appears when a worker (maybe in another process) delivers rows.
                    self._wake_worker.set()
                    with self._progress:
                        self._progress.wait(0.05)
                    stored += self.store.append(events[stored:])
        except Exception as exc:
            self.reporter.count("persisted", stored)
            failed = len(events) - stored
            self.reporter.drop(
                "outbox_error",
                f"writing {failed} event(s) to the outbox failed: {type(exc).__name__}: {exc}",
                event=events[stored],
                n=failed,
                exc_info=exc,
            )
            return
        self.reporter.count("persisted", stored)
        rest = len(events) - stored
        if rest:
            caps = f"max_rows={self.store.max_rows}, max_bytes={self.store.max_bytes}"
            self.reporter.drop(
                "outbox_full",
                f"outbox {str(self.store.path)!r} is full ({caps}); {rest} event(s) dropped",
                event=events[stored],
                n=rest,
            )
        if stored:
            self._wake_worker.set()

    # --- threads ----------------------------------------------------------------------------
    def _start_writer(self) -> None:
        with self._lock:
            self._start_writer_locked()

    def _start_writer_locked(self) -> None:
        if self._writer is not None:
            return
        self._writer = threading.Thread(
            target=self._write_loop, name="gbtrack-outbox-writer", daemon=True
        )
        self._writer.start()

    def _start_worker(self) -> None:
        self._worker = threading.Thread(
            target=self._deliver_loop, name="gbtrack-outbox-worker", daemon=True
        )
        self._worker.start()

    def _write_loop(self) -> None:
        while True:
            self._wake_writer.wait(self.commit_interval)
            self._wake_writer.clear()
            stopping = self._stop.is_set()
            self._commit_buffer()
            if stopping:
                return

    def _commit_buffer(self) -> None:
        with self._lock:
            if not self._buffer:
                return
            events = list(self._buffer)
            self._buffer.clear()
            self._committing += len(events)
        try:
            self._persist(events)
        except Exception as exc:
            self.reporter.drop(
                "outbox_error",
                f"commit of {len(events)} event(s) failed: {type(exc).__name__}: {exc}",
                n=len(events),
                exc_info=exc,
            )
        finally:
            with self._lock:
                self._committing -= len(events)
                self._committed.notify_all()
                self._buffer_space.notify_all()

    def _deliver_loop(self) -> None:
        drainer = self.drainer
        assert drainer is not None
        last_logged, log_again = "", 0.0
        while not self._stop.is_set():
            failed = False
            # A round deletes rows before it is counted: flush() waits for the round,
            # so that stats agree with the outbox when flush() returns.
            with self._round:
                try:
                    result = drainer.run_once()
                except Exception as exc:  # a locked or broken file: log, back off, go on
                    text = f"{type(exc).__name__}: {exc}"
                    now = time.monotonic()
                    if text != last_logged or now >= log_again:  # not once per second
                        logger.warning("gbtrack outbox worker: %s", text)
                        last_logged, log_again = text, now + 60.0
                    self.reporter.note_error(f"outbox worker: {text}")
                    result = DrainResult()
                    failed = True
                self.reporter.count("delivered", result.delivered)
                self.reporter.count("retried", result.retried)
                self.reporter.count("dead", result.dead)
            if failed:
                self._stop.wait(self.idle_interval)
            with self._progress:
                self._progress.notify_all()
            if result.claimed:
                continue
            wait = self.idle_interval
            try:
                ready = self.store.next_ready_in()
            except Exception:
                ready = None
            if ready is not None:
                wait = min(wait, max(ready, 0.001))
            self._wake_worker.wait(wait)
            self._wake_worker.clear()

    def _outbox_failed(self, what: str, exc: BaseException) -> None:
        """Log and remember a failure of the outbox file outside any one event."""
        message = f"outbox {what} failed: {type(exc).__name__}: {exc}"
        self.reporter.note_error(message)
        logger.warning("gbtrack %s", message)

    def _report_dead(self, rows: Sequence[OutboxRow], reason: str, outcome: Outcome) -> None:
        error = outcome.error
        message = (
            f"{len(rows)} event(s) moved to the outbox dead letter [{reason}]: "
            f"{error if error is not None else outcome.kind.value}"
        )
        self.reporter.note_error(message)
        logger.warning("gbtrack %s", message)
        failure = TrackingError(message, reason=reason)
        if isinstance(error, DeliveryError):
            failure.__cause__ = error
        self.reporter.report(failure)

    # --- flush, close, stats ------------------------------------------------------------------
    def commit(self, timeout: float | None = None) -> bool:
        """Make every event accepted so far durable; return ``True`` when done in time."""
        if self._pid != os.getpid():
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._writer is None or not self._writer.is_alive():
            self._commit_buffer()  # no writer thread (yet, or any more): commit here
        else:
            self._wake_writer.set()
        with self._committed:
            return self._committed.wait_for(
                lambda: not self._buffer and self._committing == 0,
                timeout=None if deadline is None else max(0.0, deadline - time.monotonic()),
            )

    def flush(self, timeout: float | None = None) -> bool:
        """Commit the buffer, then wait until the rows committed so far are delivered or dead.

        Without a delivery worker, returns once the events are durable.

        Returns:
            ``True`` if that happened within ``timeout`` seconds and no event was
            dropped (``outbox_full``, ``outbox_error``) or moved to the dead letter
            since the previous ``flush()``; ``False`` otherwise.
        """
        try:
            done = self._flush(timeout)
        except Exception as exc:  # the file failed (damaged, I/O): report, never raise
            self._outbox_failed("flush", exc)
            done = False
        clean = self._nothing_lost_since_flush()
        return done and clean

    def _flush(self, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self.commit(timeout):
            return False
        if not self.deliver or self._worker is None:
            return True
        mark = self.store.max_id("pending")
        self._wake_worker.set()

        def settled() -> bool:
            return self.store.count("pending", up_to_id=mark) == 0

        with self._progress:
            while not settled():
                if not (self._worker and self._worker.is_alive()):
                    return False
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._progress.wait(0.1 if left is None else min(0.1, left))
        # The round that settled the last rows may still be counting them.
        left = -1.0 if deadline is None else max(0.0, deadline - time.monotonic())
        if not self._round.acquire(timeout=left):
            return False
        self._round.release()
        return True

    def close(self, timeout: float | None = None) -> bool:
        """Commit everything, try to deliver it within ``timeout``, stop; idempotent.

        ``timeout=None`` means ``close_timeout`` (5 s by default), not forever: what is
        not delivered by then is already durable and waits for the next start.

        Undelivered rows stay in the outbox for the next start (or ``gbtrack outbox
        drain``); rows this process held are released at once.

        Returns:
            ``True`` if everything accepted was delivered (or made dead) in time.
        """
        if self._closed:
            return True
        self._closed = True
        try:
            return self._close(timeout)
        except Exception as exc:  # close runs from exit hooks: it never raises
            self._outbox_failed("close", exc)
            return False

    def _close(self, timeout: float | None) -> bool:
        # Never wait forever here: undelivered rows are safe on disk.
        deadline = time.monotonic() + (self.close_timeout if timeout is None else timeout)
        settled = self.commit(None)  # durability first, whatever the timeout
        if settled and self.deliver:
            settled = self.flush(max(0.0, deadline - time.monotonic()))
        self._stop.set()
        self._wake_writer.set()
        self._wake_worker.set()
        for thread in (self._writer, self._worker):
            if thread is not None and thread is not threading.current_thread():
                thread.join(max(1.0, deadline - time.monotonic()))
        self._commit_buffer()
        if self.drainer is not None:
            try:
                self.drainer.close()
            except Exception as exc:  # e.g. the store was closed under us; rows stay leased
                logger.warning("gbtrack outbox: release on close failed: %s", exc)
        try:
            if self._close_client and self.client is not None:
                self.client.close()
        finally:
            forget(self)
            if self._close_store:
                self.store.close()
        return settled

    def stats(self) -> Stats:
        """Counters plus gauges: ``in_queue`` (buffer) and ``persisted`` (pending rows)."""
        try:
            persisted = self.store.count("pending") if not self.store.closed else 0
        except Exception:
            persisted = 0
        return self.reporter.snapshot(in_queue=len(self._buffer), persisted=persisted)

    def __enter__(self) -> OutboxSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<OutboxSender path={str(self.store.path)!r} sync={self.sync!r}>"
