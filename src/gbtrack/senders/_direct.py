"""DirectSender: deliver each event inline, with the same retry policy (blocking)."""

from __future__ import annotations

import threading
import time
from typing import Any

from pydantic import SecretStr

from gbtrack._errors import InvalidEventError
from gbtrack._event import Event
from gbtrack._order import OrderDraft
from gbtrack._outcomes import order_outcome
from gbtrack._protocol import DEFAULT_BASE_URL, ORDERS, call_client, safe_error
from gbtrack._report import ErrorHandler
from gbtrack.senders._base import BaseSender
from gbtrack.senders._policy import DeliveryClient, Limiter, RateLimiter, RetryPolicy

__all__ = ["DirectSender"]


class DirectSender(BaseSender):
    """Send each event to Gameball inside ``send()``, retrying per the policy.

    **Blocking**: ``send()`` returns once the event is delivered or finally failed,
    which may take as long as the retry policy allows (use a small
    :class:`RetryPolicy` for interactive tools). Meant for scripts, CLIs and batch
    jobs, where a background thread would be lost at exit; services should use
    :class:`BackgroundSender`. ``send()`` still never raises: failures are counted,
    logged and handed to ``on_error`` like the background sender's.

    Args:
        client: The Gameball client; ``None`` builds one from ``api_key`` and friends
            (closed by :meth:`close`; a client passed in is not).
        api_key: The Gameball API key (when ``client`` is ``None``).
        secret_key: The secret key (when ``client`` is ``None``).
        base_url: Gameball's base URL.
        secure: v4.1 "Secure Integration Mode": ``None`` (default) when a secret key
            is set, ``True`` always, ``False`` never (v4.0).
        timeout: The client's request timeout in seconds.
        retry: The retry policy.
        rate_limiter: The client-side rate limiter (waited on, blocking).
        order_rate_limiter: The orders bucket's limiter (30/s, 360 per 30 s by default).
        on_error: Called with a :class:`~gbtrack.TrackingError` for each drop.

    Orders (:class:`~gbtrack.OrderDraft`) are sent inline too, when the client has a
    secret key, with the same rules as :class:`BackgroundSender`'s (retried when
    ambiguous, a duplicate after an ambiguous attempt is delivered). Outcome hooks run
    inside ``send()``, on the calling thread: this sender is blocking by design.
    """

    blocking = True  # a tracker warns once when send() runs on an event loop
    reports_outcomes = True

    def __init__(
        self,
        client: DeliveryClient | None = None,
        *,
        api_key: str | SecretStr | None = None,
        secret_key: str | SecretStr | None = None,
        base_url: str = DEFAULT_BASE_URL,
        secure: bool | None = None,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        rate_limiter: Limiter | None = None,
        order_rate_limiter: Limiter | None = None,
        on_error: ErrorHandler | None = None,
    ) -> None:
        super().__init__(on_error=on_error)
        self._owns_client = client is None
        if client is None:
            if api_key is None:
                raise ValueError("DirectSender needs a client or an api_key")
            from gbtrack.gameball import GameballClient

            options: dict[str, Any] = {
                "secret_key": secret_key,
                "base_url": base_url,
                "secure": secure,
                "timeout": timeout,
            }
            client = GameballClient(api_key, **options)
        self.client: DeliveryClient = client
        self.retry = retry if retry is not None else RetryPolicy()
        self.rate_limiter: Limiter = rate_limiter if rate_limiter is not None else RateLimiter()
        self.order_rate_limiter: Limiter = (
            order_rate_limiter if order_rate_limiter is not None else RateLimiter(ORDERS.limits)
        )
        self._close_lock = threading.Lock()

    @property
    def accepts_orders(self) -> bool:  # type: ignore[override]
        """Whether :meth:`send` takes orders: the client has a secret key and sends orders."""
        client = self.client
        return bool(getattr(client, "has_secret_key", False)) and callable(
            getattr(client, "send_order", None)
        )

    def send(self, event: Event | OrderDraft) -> None:
        """Deliver ``event`` (or an order) now, retrying per the policy; blocks, never raises."""
        if isinstance(event, OrderDraft):
            self._send_order(event)
            return
        if self._closed:
            self._drop_closed(event)
            return
        try:
            self._deliver(event)
        except Exception as exc:  # never into business code
            self.reporter.drop(
                "sender_error",
                f"event {event.name!r}: delivery failed with {type(exc).__name__}",
                event=event,
                exc_info=exc,
            )

    def _deliver(self, event: Event) -> None:
        from gbtrack._protocol import EventBatch

        batch = EventBatch.from_event(event)
        attempts = 0
        while True:
            limiter = self.rate_limiter
            stamp = limiter.take()
            outcome = call_client(self.client.send, batch)
            if stamp is not None:
                limiter.restamp(stamp)  # the slot counts from the answer, as everywhere
            attempts += 1
            if outcome.delivered:
                self.reporter.count("delivered")
                self.outcomes.settle_event(event, "delivered")
                return
            self.rate_limiter.note(outcome)
            age = time.time() - event.timestamp.timestamp()
            decision = self.retry.decide(outcome, attempts, age)
            if not decision.retry:
                assert decision.reason is not None
                self.reporter.drop(
                    decision.reason,
                    f"event {event.name!r} for customer {event.customer_id!r}: {decision.message}",
                    event=event,
                    exc_info=safe_error(outcome),
                )
                self.outcomes.settle_event(event, "dropped", decision.reason, decision.message)
                return
            self.reporter.count("retried")
            self.reporter.note_error(decision.message)
            time.sleep(decision.delay)

    def _send_order(self, draft: OrderDraft) -> None:
        if self._closed:
            self._order_dropped(draft, "closed", "DirectSender is closed")
        elif not self.accepts_orders:
            self._order_dropped(
                draft,
                "rejected",
                "orders need a secret_key (Gameball's Order API requires both keys)",
            )
        else:
            try:
                self._deliver_order(draft)
            except Exception as exc:  # never into business code
                self._order_dropped(
                    draft, "sender_error", f"delivery failed with {type(exc).__name__}", exc
                )

    def _deliver_order(self, draft: OrderDraft) -> None:
        try:
            body = draft.to_body(self.limits)
        except InvalidEventError as exc:
            self._order_dropped(draft, "invalid_order", str(exc), exc)
            return
        send_order = self.client.send_order  # type: ignore[attr-defined]
        attempts = 0
        ambiguous = False
        while True:
            limiter = self.order_rate_limiter
            stamp = limiter.take()
            outcome = call_client(lambda: send_order(body, session_token=draft.session_token))
            if stamp is not None:
                limiter.restamp(stamp)
            attempts += 1
            if outcome.delivered:
                self._order_delivered(draft, outcome.result, duplicate=False)
                return
            limiter.note(outcome)
            decision = self.retry.decide_order(
                outcome, attempts, time.time() - draft.timestamp, ambiguous_before=ambiguous
            )
            ambiguous = ambiguous or outcome.ambiguous
            if decision.reason == "delivered":
                self._order_delivered(draft, None, duplicate=True)
                return
            if not decision.retry:
                assert decision.reason is not None
                self._order_dropped(draft, decision.reason, decision.message, safe_error(outcome))
                return
            self.reporter.count("retried")
            self.reporter.note_error(decision.message)
            time.sleep(decision.delay)

    def _order_delivered(self, draft: OrderDraft, result: Any, *, duplicate: bool) -> None:
        self.reporter.count("delivered")
        if self.outcomes.wants(draft.on_outcome):
            outcome = order_outcome(draft, "delivered", result=result, duplicate=duplicate)
            self.outcomes.emit(outcome, draft.on_outcome)

    def _order_dropped(
        self, draft: OrderDraft, reason: str, message: str, exc: BaseException | None = None
    ) -> None:
        self.reporter.drop(
            reason,
            f"order {draft.order_id!r} for customer {draft.customer_id!r}: {message}",
            function=draft.function,
            exc_info=exc,
        )
        if self.outcomes.wants(draft.on_outcome):
            self.outcomes.emit(order_outcome(draft, "dropped", reason, message), draft.on_outcome)

    def close(self, timeout: float | None = None) -> bool:
        """Close a client built here; idempotent. Later sends are dropped (``closed``).

        Returns:
            What :meth:`flush` would answer: ``False`` if an event was dropped since
            the previous ``flush()``.
        """
        with self._close_lock:
            if self._closed:
                return True
            self._closed = True
        if self._owns_client:
            self.client.close()
        return self._nothing_lost_since_flush()

    def __repr__(self) -> str:
        return f"<DirectSender client={type(self.client).__name__}>"
