"""DirectSender: deliver each event inline, with the same retry policy (blocking)."""

from __future__ import annotations

import threading
import time
from typing import Any

from pydantic import SecretStr

from gbtrack._event import Event
from gbtrack._protocol import DEFAULT_BASE_URL, call_client, safe_error
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
        on_error: Called with a :class:`~gbtrack.TrackingError` for each drop.
    """

    blocking = True  # a tracker warns once when send() runs on an event loop

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
        self._close_lock = threading.Lock()

    def send(self, event: Event) -> None:
        """Deliver ``event`` now, retrying per the policy; blocks, never raises."""
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
                return
            self.reporter.count("retried")
            self.reporter.note_error(decision.message)
            time.sleep(decision.delay)

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
