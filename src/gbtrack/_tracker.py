"""Tracker: settings in, a compiled pipeline out; and the default tracker.

A tracker decides whether to track (``enabled``), takes the caller's
:class:`~gbtrack.EventDraft` through its one public method :meth:`Tracker.submit`, and
makes sure no failure reaches business code unless ``strict=True``. Its settings are one
frozen :class:`~gbtrack.TrackerSettings` value; whenever they or the sender change, the
tracker attaches the sender (:class:`~gbtrack.senders.TrackerLink`) and compiles its
route (:func:`gbtrack._pipeline.compile_route`). Call sites use its ``gate`` when it is
open (the sender's own fast entry) and :meth:`Tracker.submit` otherwise.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from pydantic import SecretStr

from gbtrack._context import complete_identity
from gbtrack._decorator import track as _track
from gbtrack._delivery import sender_from_config
from gbtrack._errors import ConfigurationError, GbtrackError, InvalidEventError, TrackingError
from gbtrack._event import DEFAULT_LIMITS, Event, EventDraft, Limits
from gbtrack._order import OrderDraft, StoredOrder, order_draft
from gbtrack._order_decorator import ORDERS_FIX, sender_takes_orders
from gbtrack._outcomes import OutcomeHook, Unsent
from gbtrack._pipeline import (
    Books,
    LoopWarnings,
    Route,
    batch_hook,
    compile_route,
    debug_logging,
    default_sender,
    where,
)
from gbtrack._plain import plain_value
from gbtrack._report import ErrorHandler, Reporter, Stats
from gbtrack._settings import BeforeSend, TrackerSettings, settings_changes
from gbtrack._settings import env_disabled as _env_disabled
from gbtrack._span import tracker_span
from gbtrack._state import FieldsGate, Gate, active, bound_transaction, on_bindings_change
from gbtrack._transaction import insert_failed
from gbtrack._types import UNSET, Unset
from gbtrack.senders._base import AttachableSender, Sender, SenderTraits, TrackerLink
from gbtrack.senders._policy import Limiter, RetryPolicy, Spill
from gbtrack.senders._queue import Overflow

__all__ = [
    "BeforeSend",
    "Tracker",
    "active",
    "close",
    "configure",
    "flush",
    "get_tracker",
    "send_order",
    "set_tracker",
]

if TYPE_CHECKING:
    from gbtrack._decorator import _Decorator

_NO_TRAITS = SenderTraits()  # a sender without attach(): it takes validated events


class Tracker:
    """Turns tracked calls into events and hands them to a sender.

    Args:
        sender: Where events go. ``None`` means: a delivery sender when
            ``GAMEBALL_API_KEY`` is set in the environment, otherwise a
            :class:`~gbtrack.LoggingSender` with a one-time warning.
        enabled: When ``False``, decorators call straight through and nothing is sent.
        strict: When ``True``, a tracking failure raises :class:`~gbtrack.TrackingError`
            into the caller (for tests and development). Never use it in production.
        on_error: Called with a :class:`~gbtrack.TrackingError` for every dropped
            event, here and in a sender that has no hook of its own.
        limits: The size and range limits events are validated against
            (:class:`~gbtrack.Limits`; conservative defaults).
        strict_plan: When ``True``, only events of the tracking plan (an
            :func:`~gbtrack.event_schema` registered for their name) are tracked: a
            ``@track`` of another event given this tracker fails at decoration, and any
            other event (``span()``, ``emit()``, a ``@track`` of the default tracker) is
            dropped with reason ``unplanned_event``.
        before_send: ``hook(event) -> event | None``, called with each validated
            :class:`~gbtrack.Event` before it is sent: return it (or a changed copy) to
            send it, ``None`` to drop it (counted ``before_send``). A hook that raises
            drops the event (``before_send_error``) and never reaches business code.
        sample: Per-event-name sampling rates, e.g. ``{"page_viewed": 0.1}`` keeps one
            ``page_viewed`` in ten; the others are counted ``sampled_out``. Names not
            listed are always sent.
        debug: Log one INFO line per event on the ``gbtrack`` logger (no secrets, email
            and mobile masked) and the Gameball client's line per request on
            ``gbtrack.gameball``; adds a stderr handler when logging is not configured.

    The arguments but ``sender`` make its :attr:`settings`, one frozen
    :class:`~gbtrack.TrackerSettings`; every way of changing them (:meth:`configure`,
    :meth:`use_settings`, the property setters) makes a new value.

    Attributes:
        enabled: Whether to track (``settings.enabled``, kept as a plain attribute because
            call sites read it on every call; assigning it changes the settings).
        gate: The fast entry call sites use (``gbtrack._state.CallSink``): ``None``
            whenever anything but "hand the draft to the sender" is configured;
            otherwise ``gate(draft)`` is the whole of :meth:`submit`, usually the sender's
            own fast entry.
        fields_gate: ``gate`` for a draft's fields as a plain tuple (``tuple(draft)``),
            what the generated wrappers call: the sender makes the draft off the
            caller's thread where it can; ``None`` with ``gate``.

    Examples:
        >>> from gbtrack import Tracker, InMemorySender
        >>> tracker = Tracker(InMemorySender())
        >>> @tracker.track("signed_up", customer_id="user_id")
        ... def sign_up(user_id: str) -> None: ...
        >>> sign_up("u-1")
        >>> [e.name for e in tracker.sender.events]
        ['signed_up']
    """

    enabled: bool
    gate: Gate | None
    fields_gate: FieldsGate | None

    def __init__(
        self,
        sender: Sender | None = None,
        *,
        enabled: bool = True,
        strict: bool = False,
        on_error: ErrorHandler | None = None,
        limits: Limits = DEFAULT_LIMITS,
        strict_plan: bool = False,
        before_send: BeforeSend | None = None,
        sample: Mapping[str, float] | None = None,
        debug: bool = False,
    ) -> None:
        settings = TrackerSettings(
            enabled=enabled,
            strict=strict,
            strict_plan=strict_plan,
            on_error=on_error,
            limits=limits,
            before_send=before_send,
            sample=sample or {},
            debug=debug,
        )
        self._lock = threading.RLock()
        self._reporter = Reporter(on_error)
        self._books = Books(self._reporter)
        self._warnings = LoopWarnings()
        self._settings = TrackerSettings()
        self._sender: Sender | None = None
        self._traits = _NO_TRAITS
        self._route: Route
        self._run: Callable[[EventDraft], bool]
        self._use(settings, sender)
        _trackers.add(self)

    def __setattr__(self, name: str, value: object) -> None:
        # Call sites read `enabled` as a plain attribute on every call (a property would
        # cost them); writing it still goes through the one settings value.
        if name == "enabled":
            self.use_settings(dataclasses.replace(self._settings, enabled=value))  # type: ignore[arg-type]
        else:
            object.__setattr__(self, name, value)

    # --- settings and sender: the one way in ---------------------------------------------
    @property
    def settings(self) -> TrackerSettings:
        """The tracker's settings, one frozen value (read-only; see :meth:`use_settings`)."""
        return self._settings

    def use_settings(self, settings: TrackerSettings) -> TrackerSettings:
        """Put ``settings`` in place as a whole and return the previous value.

        Tests save ``tracker.settings`` and restore it with this in one line.

        Returns:
            The settings in place before the call.
        """
        if not isinstance(settings, TrackerSettings):
            raise TypeError(f"expected a TrackerSettings, got {type(settings).__name__}")
        return self._use(settings, self._sender)

    def _change(self, **changes: Any) -> None:
        """A property setter's change: a new settings value (validated)."""
        self.use_settings(dataclasses.replace(self._settings, **changes))

    def _use(self, settings: TrackerSettings, sender: Sender | None) -> TrackerSettings:
        """Apply settings and sender together: attach the sender, compile the route.

        Returns:
            The settings in place before.
        """
        if sender is not None and sender is not self._sender and not isinstance(sender, Sender):
            raise TypeError(f"sender must implement send/flush/close, got {type(sender).__name__}")
        with self._lock:
            new_sender = sender is not self._sender
            previous = self._settings
            self._settings = settings
            object.__setattr__(self, "enabled", settings.enabled)
            self._reporter.on_error = settings.on_error
            self._books.strict, self._books.debug = settings.strict, settings.debug
            if settings.debug != previous.debug:
                debug_logging(self, settings.debug)
            if (
                new_sender
                or settings.limits is not previous.limits
                or settings.before_send is not previous.before_send
                or settings.on_outcome is not previous.on_outcome
            ):
                self._sender = sender
                self._traits = self._attach(sender) if sender is not None else _NO_TRAITS
            self._books.tell, self._books.hooked = self._traits.tell, bool(settings.on_outcome)
            self._compile()
        return previous

    def _attach(self, sender: Sender) -> SenderTraits:
        """Give ``sender`` what the tracker gives (:class:`~gbtrack.senders.TrackerLink`)."""
        if not isinstance(sender, AttachableSender):
            return _NO_TRAITS
        settings, books = self._settings, self._books
        hook = settings.before_send
        return sender.attach(
            TrackerLink(
                limits=settings.limits,
                before_send=None if hook is None else batch_hook(hook, settings.limits, books),
                on_error=self._reporter.report,
                count_sent=self._reporter.count_sent,
                send_failed=lambda draft, exc: books.send_failed(draft, sender, exc),
                on_outcome=settings.on_outcome,
            )
        )

    def _compile(self) -> None:
        """Compile the route of the current settings and sender (and transaction bindings)."""
        with self._lock:  # also called when a transaction binding opens or closes
            route = compile_route(
                self._settings,
                self._sender,
                self._traits,
                self._books,
                owner=self,
                first_use=self._first_use,
                warnings=self._warnings,
            )
            self._route, self._run = route, route.run
            # The generated wrappers read fields_gate alone: each is whole when read.
            self.gate, self.fields_gate = route.gate, route.fields_gate

    def _first_use(self, draft: EventDraft) -> bool:
        """The way to the sender while there is none: create the default one, go on."""
        try:
            self.sender  # noqa: B018  # creates the default sender, compiles the new route
        except Exception as exc:
            self._books.send_failed(draft, None, exc)
            return False
        return bool(self._route.to_sender(draft))

    # --- the settings, one by one (each setter makes a new settings value) ------------------
    @property
    def strict(self) -> bool:
        """Whether tracking failures raise :class:`~gbtrack.TrackingError` into callers."""
        return self._settings.strict

    @strict.setter
    def strict(self, strict: bool) -> None:
        self._change(strict=strict)

    @property
    def strict_plan(self) -> bool:
        """Whether only events of the tracking plan are tracked (see :class:`Tracker`)."""
        return self._settings.strict_plan

    @strict_plan.setter
    def strict_plan(self, strict_plan: bool) -> None:
        self._change(strict_plan=strict_plan)

    @property
    def before_send(self) -> BeforeSend | None:
        """The hook each validated event goes through before it is sent (``None``: none)."""
        return self._settings.before_send

    @before_send.setter
    def before_send(self, hook: BeforeSend | None) -> None:
        self._change(before_send=hook)

    @property
    def sample(self) -> Mapping[str, float]:
        """Sampling rates by event name (a copy); names not listed are always sent."""
        return dict(self._settings.sample)

    @sample.setter
    def sample(self, rates: Mapping[str, float]) -> None:
        self._change(sample=rates)

    @property
    def debug(self) -> bool:
        """Whether each event and each Gameball request is logged at INFO/DEBUG."""
        return self._settings.debug

    @debug.setter
    def debug(self, debug: bool) -> None:
        self._change(debug=debug)

    @property
    def limits(self) -> Limits:
        """The limits events are validated against (shared with draft-taking senders)."""
        return self._settings.limits

    @limits.setter
    def limits(self, limits: Limits) -> None:
        self._change(limits=limits)

    @property
    def on_error(self) -> ErrorHandler | None:
        """The hook that receives every dropped event's :class:`~gbtrack.TrackingError`."""
        return self._settings.on_error

    @on_error.setter
    def on_error(self, hook: ErrorHandler | None) -> None:
        self._change(on_error=hook)

    # --- the sender --------------------------------------------------------------------------
    @property
    def sender(self) -> Any:
        """The sender in use (created on first use when none was given)."""
        sender = self._sender
        if sender is None:
            with self._lock:
                if self._sender is None:
                    self._use(self._settings, default_sender())
                sender = self._sender
        return sender

    @sender.setter
    def sender(self, sender: Sender) -> None:
        self._use(self._settings, sender)

    def use_sender(self, sender: Sender) -> Sender | None:
        """Swap in ``sender`` and return the previous one, which is neither flushed nor closed.

        For test helpers such as :func:`gbtrack.testing.capture_events`, which restore the
        previous sender afterwards; :meth:`configure` is the way to replace a sender for good.

        Returns:
            The previous sender (``None`` if none was created yet).
        """
        with self._lock:
            previous = self._sender
            self._use(self._settings, sender)
        return previous

    def restore_sender(self, sender: Sender | None) -> None:
        """Put back a sender returned by :meth:`use_sender` (``None``: create on next use)."""
        self._use(self._settings, sender)

    def configure(
        self,
        *,
        sender: Sender | None = None,
        enabled: bool | None = None,
        strict: bool | None = None,
        on_error: ErrorHandler | Unset | None = UNSET,
        api_key: str | SecretStr | None = None,
        secret_key: str | SecretStr | None = None,
        base_url: str | None = None,
        secure: bool | None = None,
        max_queue_size: int | None = None,
        overflow: Overflow | None = None,
        flush_interval: float | None = None,
        concurrency: int | None = None,
        retry: RetryPolicy | None = None,
        rate_limiter: Limiter | None = None,
        redis_url: str | None = None,
        rate_limit_margin: float | None = None,
        redis_socket_timeout: float | None = None,
        redis_fallback_share: float | None = None,
        spill: Spill | None = None,
        outbox: str | os.PathLike[str] | None = None,
        limits: Limits | None = None,
        strict_plan: bool | None = None,
        before_send: BeforeSend | Unset | None = UNSET,
        sample: Mapping[str, float] | None = None,
        debug: bool | None = None,
        on_outcome: OutcomeHook | Unset | None = UNSET,
    ) -> Tracker:
        """Update this tracker in place; arguments left out keep their value.

        Any delivery option (``api_key`` and below) builds a new
        :class:`~gbtrack.senders.BackgroundSender` with
        :func:`~gbtrack.senders.sender_from_config`; options left out take their
        default, or for ``api_key``, ``secret_key`` and ``base_url`` the environment
        (``GAMEBALL_API_KEY``, ``GAMEBALL_SECRET_KEY``, ``GAMEBALL_BASE_URL``).

        Args:
            sender: A new sender. The old one is flushed and closed (bounded by 5 s).
            enabled: Turn tracking on or off.
            strict: Raise tracking failures into callers (tests) or not.
            on_error: A new drop hook; ``None`` removes it.
            api_key: The Gameball API key.
            secret_key: The Gameball secret key (bulk mode, v4.1).
            base_url: Gameball's base URL (e.g. a local emulator).
            secure: v4.1 "Secure Integration Mode"; by default when a secret key is set.
            max_queue_size: The most events the sender holds.
            overflow: ``"drop_newest"`` (default) or ``"block"`` when the queue is full.
            flush_interval: The most seconds an event waits before it is sent.
            concurrency: The most requests in flight.
            retry: The :class:`~gbtrack.senders.RetryPolicy`.
            rate_limiter: The :class:`~gbtrack.senders.RateLimiter` (share it between
                senders of one Gameball account).
            redis_url: A Redis URL (also ``GBTRACK_REDIS_URL``): a
                :class:`~gbtrack.senders.RedisRateLimiter` there shares the rate limit
                with every process of the account (not with ``rate_limiter``).
            rate_limit_margin: Seconds added to every window of the rate limiter built
                here, local or Redis (default 0.05; not with ``rate_limiter``).
            redis_socket_timeout: Seconds to wait for Redis before limiting locally
                (default 0.1; needs ``redis_url``).
            redis_fallback_share: The share of the limits each process keeps while
                Redis is unreachable (default ``1/workers`` under the gunicorn hooks and
                Celery's prefork pool, else 0.25; needs ``redis_url``).
            spill: Where events go instead of being dropped (the durable outbox).
            outbox: A path for a durable :class:`~gbtrack.outbox.OutboxSender` used as
                the spill (also ``GBTRACK_OUTBOX``): overflow and outages go to disk.
            limits: New :class:`~gbtrack.Limits` for validation.
            strict_plan: Track only the events of the tracking plan (see
                :class:`Tracker`).
            before_send: The hook each validated event goes through (see
                :class:`Tracker`); ``None`` removes it.
            sample: Sampling rates by event name (replaces the previous ones; ``{}``
                removes them).
            debug: Log each event and each Gameball request (see :class:`Tracker`).
            on_outcome: ``hook(outcome)``, called once per event and order with its
                final :class:`~gbtrack.DeliveryOutcome` (delivered, dropped, persisted),
                on the sender's thread; a superset of ``on_error``. ``None`` removes it.
                Needs a sender that reports outcomes (the built-in delivery senders).

        Returns:
            This tracker.

        Raises:
            ConfigurationError: If delivery options are given without an API key
                (neither passed nor in the environment), or are invalid.
        """
        changes = settings_changes(
            enabled=enabled,
            strict=strict,
            strict_plan=strict_plan,
            on_error=on_error,
            limits=limits,
            before_send=before_send,
            sample=sample,
            debug=debug,
            on_outcome=on_outcome,
        )
        settings = self._settings.changed(changes)  # validated before anything is built
        options: dict[str, Any] = {
            "api_key": api_key,
            "secret_key": secret_key,
            "base_url": base_url,
            "secure": secure,
            "max_queue_size": max_queue_size,
            "overflow": overflow,
            "flush_interval": flush_interval,
            "concurrency": concurrency,
            "retry": retry,
            "rate_limiter": rate_limiter,
            "redis_url": redis_url,
            "rate_limit_margin": rate_limit_margin,
            "redis_socket_timeout": redis_socket_timeout,
            "redis_fallback_share": redis_fallback_share,
            "spill": spill,
            "outbox": outbox,
        }
        delivery = {key: value for key, value in options.items() if value is not None}
        if delivery:
            if sender is not None:
                raise GbtrackError("pass either sender= or delivery options, not both")
            sender = sender_from_config(**delivery)
        if sender is None:
            self.use_settings(settings)
            return self
        with self._lock:
            old, handing_over = self._sender, self._traits.hand_over
            self._use(settings, sender)
        if old is not None and old is not sender:
            # What the old sender still holds (e.g. while Gameball refused its key) goes
            # to the new one rather than being dropped.
            if handing_over is not None:
                handing_over(sender, 5.0)
            else:
                old.close(timeout=5.0)
        return self

    # --- the API ---------------------------------------------------------------------
    def track(self, name: str, **options: Any) -> _Decorator:
        """Decorate a function so that calling it sends an event; see :func:`gbtrack.track`."""
        return _track(name, tracker=self, **options)

    span = tracker_span
    """Open a manual event on this tracker; see :class:`gbtrack.Span`."""

    def emit(
        self,
        name: str,
        *,
        customer_id: str | int | None = None,
        email: str | None = None,
        mobile: str | None = None,
        session_token: str | SecretStr | Unset | None = UNSET,
        metadata: Mapping[str, object] | None = None,
        on_outcome: OutcomeHook | None = None,
    ) -> EventDraft | None:
        """Send an event directly; missing identity comes from :func:`gbtrack.identify`.

        Values are read and converted now (see :class:`~gbtrack.EventDraft`); the event
        is validated where it is serialised, or here when ``strict``. ``on_outcome`` is
        this event's own outcome hook, as ``@track``'s (see :func:`gbtrack.track`).

        Returns:
            The draft handed to :meth:`submit`, or ``None`` when it was dropped (or the
            tracker is disabled). Drops raise :class:`~gbtrack.TrackingError` only when
            ``strict``.

        Raises:
            ConfigurationError: When ``on_outcome`` is not callable.
        """
        if on_outcome is not None and not callable(on_outcome):
            raise ConfigurationError(
                f"emit({name!r}): on_outcome must be callable, got {type(on_outcome).__name__}"
            )
        if not self.enabled:
            return None
        return self.record(
            name, customer_id, email, mobile, session_token, metadata, None, on_outcome
        )

    def record(
        self,
        name: str,
        customer_id: object,
        email: object,
        mobile: object,
        session_token: object,
        metadata: Mapping[str, object] | None,
        function: str | None,
        on_outcome: OutcomeHook | None = None,
    ) -> EventDraft | None:
        """Build a draft from values given by hand (``emit``, ``span``) and submit it.

        ``on_outcome``: the event's own outcome hook, carried on the draft.

        Every failure (a hostile object included) is a counted drop, raised only when
        ``strict``.

        Returns:
            The draft submitted, or ``None`` when the event was dropped.
        """
        try:
            if type(name) is not str:
                if not issubclass(type(name), str):
                    raise InvalidEventError(
                        f"the event name must be a str, got {type(name).__name__}", field="name"
                    )
                name = str.__str__(name)
            identity = complete_identity(customer_id, email, mobile, session_token)
            if metadata:
                keys = tuple(metadata)
                values = tuple(metadata.values())
                for key in keys:
                    if type(key) is not str:
                        raise InvalidEventError(
                            f"metadata keys must be non-empty strings, got {type(key).__name__}",
                            field="metadata",
                        )
                if "" in keys:
                    raise InvalidEventError(
                        "metadata keys must be non-empty strings, got ''", field="metadata"
                    )
                for value in values:
                    if type(value) not in _PLAIN_TYPES and value is not None:
                        values = tuple(map(plain_value, keys, values))
                        break
            else:
                keys = values = ()
        except InvalidEventError as exc:
            self.drop(
                "invalid_event",
                f"event {name!r}{where(function)}: {exc}",
                exc=exc,
                about=("event", name, on_outcome),
            )
            return None
        except Exception as exc:
            self.drop(
                "resolver_error",
                f"event {name!r}{where(function)}: reading a value raised {type(exc).__name__}",
                function=function,
                exc=exc,
                about=("event", name, on_outcome),
            )
            return None
        if identity is None:
            self.no_customer(name, function, about=("event", name, on_outcome))
            return None
        fields = (name, *identity, keys, values, function, _now())
        draft: EventDraft = _new_draft(
            EventDraft, fields if on_outcome is None else (*fields, on_outcome)
        )
        return draft if self.submit(draft) else None

    def order(
        self,
        *,
        order_id: object,
        total_paid: object,
        customer_id: str | int | None = None,
        order_date: object = None,
        email: str | None = None,
        mobile: str | None = None,
        session_token: str | SecretStr | Unset | None = UNSET,
        total_price: object = None,
        total_discount: object = None,
        total_shipping: object = None,
        total_tax: object = None,
        line_items: object = None,
        extra: Mapping[str, object] | None = None,
        merchant: Mapping[str, object] | None = None,
        redemption: Mapping[str, object] | None = None,
        guest: bool | None = None,
        channel: str | None = None,
        cart_id: str | int | None = None,
        return_window_days: int | None = None,
        on_outcome: Callable[[Any], object] | None = None,
    ) -> OrderDraft | None:
        """Send a Gameball order directly (the manual form of :func:`gbtrack.track_order`).

        Missing identity comes from :func:`gbtrack.identify`. Values are converted now
        (money, dates as ISO 8601 UTC with a naive ``datetime`` taken as UTC, line items
        from mappings of snake_case fields); the order is checked against the limits
        where it is serialised, or here when ``strict``.

        Returns:
            The draft handed to :meth:`submit_order`, or ``None`` when it was dropped (or
            the tracker is disabled). Drops raise :class:`~gbtrack.TrackingError` only
            when ``strict``.
        """
        if not self.enabled:
            return None
        try:
            identity = complete_identity(customer_id, email, mobile, session_token)
            if identity is None:
                self.no_customer("order", None, about=("order", None, on_outcome))
                return None
            draft = order_draft(
                customer_id=identity[0],
                email=identity[1],
                mobile=identity[2],
                session_token=identity[3],
                order_id=order_id,
                total_paid=total_paid,
                order_date=order_date,
                total_price=total_price,
                total_discount=total_discount,
                total_shipping=total_shipping,
                total_tax=total_tax,
                line_items=line_items,
                extra=extra,
                merchant=merchant,
                redemption=redemption,
                guest=guest,
                channel=channel,
                cart_id=cart_id,
                return_window_days=return_window_days,
                now=_now(),
                on_outcome=on_outcome,
            )
        except InvalidEventError as exc:
            self.drop("invalid_event", f"order: {exc}", exc=exc, about=("order", None, on_outcome))
            return None
        except TrackingError:
            raise
        except Exception as exc:
            self.drop(
                "resolver_error",
                f"order: reading a value raised {type(exc).__name__}",
                exc=exc,
                about=("order", None, on_outcome),
            )
            return None
        return draft if self.submit_order(draft) else None

    def submit_order(self, draft: OrderDraft) -> bool:
        """Hand one order on to the sender: the orders' door, beside :meth:`submit`.

        Nothing when disabled. When ``strict``, the order is checked against the limits
        here. The sender must take orders (a ``BackgroundSender`` needs the secret
        key): otherwise the order is dropped with reason ``orders_unsupported``, whose
        message names the fix. Inside a ``gbtrack.transaction()`` block binding this
        tracker, the order is checked here and INSERTed into the outbox table in the
        caller's transaction instead (no sender, no secret key needed: the relay sends
        it); a failed INSERT is an ``outbox_error`` drop. Sampling, the tracking plan and
        ``before_send`` (which see events) do not apply to orders.

        Returns:
            ``True`` when the sender accepted the order. Drops raise
            :class:`~gbtrack.TrackingError` only when ``strict``.
        """
        if not self.enabled:
            return False
        bound = bound_transaction.get()
        if bound is not None and bound.binds(self):
            return self._order_to_binding(draft, bound)
        if self.strict:
            try:
                draft.to_body(self.limits)
            except InvalidEventError as exc:
                return self._drop_order(draft, "invalid_event", str(exc), exc)
        try:
            sender = self.sender
        except Exception as exc:
            said = f"creating the default sender raised {type(exc).__name__}: {exc}"
            return self._drop_order(draft, "sender_error", said, exc)
        if not sender_takes_orders(self._traits):
            said = f"{type(sender).__name__} does not take orders; {ORDERS_FIX}"
            return self._drop_order(draft, "orders_unsupported", said)
        try:
            sender.send(draft)
        except Exception as exc:
            said = f"{type(sender).__name__}.send raised {type(exc).__name__}"
            return self._drop_order(draft, "sender_error", said, exc)
        self._reporter.count_sent()
        return True

    def _drop_order(
        self, draft: OrderDraft, reason: str, said: str, exc: BaseException | None = None
    ) -> bool:
        """Drop ``draft`` (counted, reported, told; raised when strict); ``False``."""
        where_from = f"order {draft.order_id!r}{where(draft.function)}"
        self.drop(reason, f"{where_from}: {said}", function=draft.function, exc=exc, about=draft)
        return False

    def _order_to_binding(self, draft: OrderDraft, bound: Any) -> bool:
        """Check ``draft`` and INSERT it in the transaction ``gbtrack.transaction()`` bound."""
        try:
            order = StoredOrder.of(draft, self.limits)
        except InvalidEventError as exc:
            return self._drop_order(draft, "invalid_event", str(exc), exc)
        try:
            bound.insert_order(order)
        except Exception as exc:
            return self._drop_order(draft, "outbox_error", insert_failed(exc), exc)
        if draft.session_token is not None:
            self._reporter.count("session_token_stripped")  # tokens are never stored
        self._reporter.count_sent()
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the sender has settled everything sent so far.

        Returns:
            ``True`` if everything was settled within ``timeout`` seconds.
        """
        sender = self._sender
        if sender is None:
            return True
        if timeout != 0:
            self._warnings.blocking_call("flush", timeout)
        return bool(sender.flush(timeout))

    def close(self, timeout: float | None = None) -> bool:
        """Flush and close the sender; later events are dropped with reason ``closed``.

        Returns:
            ``True`` if everything was settled within ``timeout`` seconds.
        """
        sender = self._sender
        if sender is None:
            return True
        if timeout != 0:
            self._warnings.blocking_call("close", timeout)
        return bool(sender.close(timeout))

    @property
    def stats(self) -> Stats:
        """Counts of events sent and dropped (by reason), with the sender's delivery counts.

        ``sent`` is the tracker's own count, whichever way a draft went (the gate counts
        through the link's ``count_sent``); the sender's ``sent``, if it keeps one, is
        left out so that nothing is counted twice.
        """
        stats_of = self._traits.stats
        # The sender's first: a sender that counts its gate's drafts late does so there.
        theirs = None if stats_of is None else dataclasses.replace(stats_of(), sent=0)
        mine = self._reporter.snapshot()
        filtered = self._books.filtered()
        if filtered is not None:
            mine = mine.merge(filtered)
        return mine if theirs is None else mine.merge(theirs)

    def __repr__(self) -> str:
        state = "enabled" if self.enabled else "disabled"
        flags = (" strict" if self.strict else "") + (" strict_plan" if self.strict_plan else "")
        return f"<Tracker {state}{flags} sender={self._sender!r}>"

    # --- the call path (used by track, span and emit) --------------------------------
    def submit(self, draft: EventDraft) -> bool:
        """Hand one draft on: the one door from the call sites to delivery.

        Through the gate when it is open (the sender's own fast entry), else through the
        route compiled from the settings and the sender: plan check, sampling,
        validation where needed (``strict``, or a sender that takes validated
        :class:`~gbtrack.Event` objects), ``before_send``, the debug line, then the sender or
        the open transaction binding. Never raises unless ``strict``.

        Returns:
            ``True`` when the sender accepted the draft (a sender that validates later
            may still count it as ``invalid_event``), ``False`` when it was dropped here.
        """
        gate = self.gate
        if gate is not None:  # the common case: nothing but the sender has work to do
            return bool(gate(draft))
        return self._run(draft)

    @property
    def route(self) -> tuple[str, ...]:
        """The names of the steps a draft goes through now, for tests and debugging."""
        return self._route.names

    def drop(
        self,
        reason: str,
        message: str,
        *,
        function: str | None = None,
        exc: BaseException | None = None,
        about: Event | EventDraft | OrderDraft | Unsent | None = None,
    ) -> None:
        """Count, log and report a dropped event; raise it when ``strict``.

        Args:
            reason: The reason code it is counted under (``resolver_error``, ...).
            message: What happened, without values, keys or unmasked PII.
            function: The tracked function's qualified name, when there is one.
            exc: The underlying exception, chained as ``__cause__``.
            about: The dropped item (a draft, an event or an order), or what it would
                have been (``("event", name)``, ``("order", None)``): its outcome goes
                to the ``on_outcome`` hooks, on the sender's thread.

        Raises:
            TrackingError: When ``strict``.
        """
        self._books.drop(reason, message, function=function, exc=exc, about=about)

    def count(self, key: str) -> None:
        """Add one to counter ``key`` (e.g. ``skipped`` when ``when=`` is false)."""
        self._reporter.count(key)

    def no_customer(self, name: str, function: str | None, about: Unsent | None = None) -> None:
        """Drop an event (or an order) that has no customer id (reason ``no_customer_id``).

        ``about`` names the item for the outcome hooks (default: the event ``name``).
        """
        self.drop(
            "no_customer_id",
            f"event {name!r}{where(function)} has no customer_id and no identify() is active",
            function=function,
            about=("event", name, None) if about is None else about,
        )

    def missing(self, event: str, field: str, message: str) -> None:
        """Count a path that found nothing (``stats.missing``); logged once; strict raises.

        Raises:
            TrackingError: When ``strict`` (reason ``missing``).
        """
        self._reporter.missing(event, field, message)
        if self.strict:
            raise TrackingError(message, reason="missing")


_trackers: weakref.WeakSet[Tracker] = weakref.WeakSet()  # to close gates under bindings


def _bindings_changed() -> None:
    for tracker in list(_trackers):
        tracker._compile()


on_bindings_change.append(_bindings_changed)

_new_draft = tuple.__new__
_now = time.time
_PLAIN_TYPES = frozenset({str, int, float, bool})  # finiteness is checked where validated


# --- the default tracker ------------------------------------------------------------
active.tracker = Tracker(enabled=not _env_disabled())


def _default() -> Tracker:
    tracker: Tracker = active.tracker
    return tracker


def get_tracker() -> Tracker:
    """Return the default tracker, the one module-level functions act on.

    ``track``, ``span``, ``configure``, ``flush`` and ``close`` use it; send a manual event
    with ``get_tracker().emit(...)``.
    """
    return _default()


def set_tracker(tracker: Tracker) -> Tracker:
    """Make ``tracker`` the default; decorated functions use it from their next call.

    Returns:
        The previous default tracker (to restore it later).
    """
    if not isinstance(tracker, Tracker):
        raise TypeError(f"expected a Tracker, got {type(tracker).__name__}")
    previous, active.tracker = _default(), tracker
    return previous


def flush(timeout: float | None = None) -> bool:
    """Wait until the default tracker's sender has settled everything sent so far.

    Blocking: in asyncio code, ``await asyncio.to_thread(gbtrack.flush, 5)``.

    Returns:
        ``True`` if everything was settled within ``timeout`` seconds (and nothing was
        dropped since the previous flush).
    """
    return _default().flush(timeout)


def close(timeout: float | None = None) -> bool:
    """Flush and close the default tracker's sender (at shutdown); see :meth:`Tracker.close`.

    A later :func:`configure` with a sender or delivery options opens a new one.

    Returns:
        ``True`` if everything was settled within ``timeout`` seconds.
    """
    return _default().close(timeout)


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _of_the_default(
    method: Callable[Concatenate[Tracker, _P], _R], summary: str
) -> Callable[_P, _R]:
    """A module-level function calling ``method`` on the default tracker of the moment.

    It takes ``method``'s parameters (for mypy through the ``ParamSpec``, for
    :func:`inspect.signature` through ``__signature__``) and its documentation after
    ``summary``, so that the parameters are written once, on the method.
    """

    def on_the_default(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        return method(_default(), *args, **kwargs)

    signature = inspect.signature(method)
    on_the_default.__name__ = on_the_default.__qualname__ = method.__name__
    on_the_default.__doc__ = (
        summary
        + "\n\n"
        + inspect.cleandoc(method.__doc__ or "")
        .partition("\n\n")[2]
        .replace(":class:`Tracker`", ":class:`~gbtrack.Tracker`")
    )
    on_the_default.__dict__["__signature__"] = signature.replace(
        parameters=list(signature.parameters.values())[1:]
    )
    return on_the_default


send_order = _of_the_default(
    Tracker.order,
    "Send a Gameball order on the default tracker (see :meth:`Tracker.order`).",
)
"""Send a Gameball order on the default tracker; the arguments of :meth:`Tracker.order`."""

configure = _of_the_default(
    Tracker.configure,
    "Configure the default tracker in place (never replaced, so nothing goes stale).\n\n"
    "Arguments left out keep their value; they are those of :meth:`Tracker.configure`, "
    "and the default tracker is returned.",
)
"""Configure the default tracker in place (never replaced, so nothing goes stale).

It takes the arguments of :meth:`Tracker.configure` (arguments left out keep their value)
and returns the default tracker.
"""
