"""Tracker: policy between the decorators and the sender, and the default tracker.

A tracker decides whether to track (``enabled``), takes the caller's
:class:`~gbtrack.EventDraft` through its one public method :meth:`Tracker.submit`,
hands it to its sender (validated first unless the sender validates where it
serialises), and makes sure no failure reaches business code unless ``strict=True``.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import SecretStr

from gbtrack._context import complete_identity
from gbtrack._errors import ConfigurationError, GbtrackError, InvalidEventError, TrackingError
from gbtrack._event import DEFAULT_LIMITS, Event, EventDraft, Limits, mask_email, mask_mobile
from gbtrack._plain import plain_value
from gbtrack._report import ErrorHandler, Reporter, Stats, logger, warn_user
from gbtrack._schema import check_planned
from gbtrack._state import Gate, active, on_bindings_change
from gbtrack._state import _open as _bindings
from gbtrack._state import bound_transaction as _bound_transaction
from gbtrack._types import UNSET, Unset
from gbtrack.senders._base import LoggingSender, Sender

if TYPE_CHECKING:
    from gbtrack._decorator import _Decorator
    from gbtrack._span import Span
    from gbtrack._transaction import TransactionBinding
    from gbtrack.senders._config import Overflow
    from gbtrack.senders._policy import Limiter, RetryPolicy, Spill

__all__ = [
    "BeforeSend",
    "Tracker",
    "active",
    "close",
    "configure",
    "flush",
    "get_tracker",
    "set_tracker",
]

BeforeSend = Callable[[Event], "Event | None"]
"""The ``before_send`` hook: return the event (changed or not) to send it, ``None`` to drop it."""


_NO_DELIVERY_WARNING = (
    "gbtrack: no Gameball delivery is configured, so events are only logged on the "
    "'gbtrack.events' logger at INFO (see them with logging.basicConfig(level=logging.INFO)). "
    "Call gbtrack.configure(api_key=...) or set GAMEBALL_API_KEY to deliver them."
)


def _env_disabled() -> bool:
    return os.environ.get("GBTRACK_DISABLED", "").strip().lower() in {"1", "true", "yes", "on"}


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

    Examples:
        >>> from gbtrack import Tracker, InMemorySender
        >>> tracker = Tracker(InMemorySender())
        >>> @tracker.track("signed_up", customer_id="user_id")
        ... def sign_up(user_id: str) -> None: ...
        >>> sign_up("u-1")
        >>> [e.name for e in tracker.sender.events]
        ['signed_up']
    """

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
        self.enabled = enabled
        self._strict = strict
        self._strict_plan = strict_plan
        self._limits = limits
        self._reporter = Reporter(on_error)
        self._sender: Sender | None = None
        self._takes_drafts = False
        # The fast entry call sites use (gbtrack._state.CallSink): drafts go straight to
        # the sender (a draft-taking sender, not strict, no plan check, no transaction
        # binding open, none of the per-event features below configured); else None.
        self.gate: Gate | None = None
        self._lock = threading.Lock()
        self._before_send: BeforeSend | None = None
        self._hook_in_sender = False  # the sender applies before_send where it validates
        self._sample: dict[str, float] = {}
        self._debug = False
        self._filtered: dict[str, int] = {}  # deliberate drops: sampled_out, before_send
        # What blocked a running event loop, warned once each: "flush", "close", or
        # the id of a DirectSender.
        self._loop_warned: set[object] = set()
        self.before_send = before_send
        self.sample = sample or {}
        self.debug = debug
        if sender is not None:
            self._set_sender(sender)
        _trackers.add(self)

    @property
    def strict(self) -> bool:
        """Whether tracking failures raise :class:`~gbtrack.TrackingError` into callers."""
        return self._strict

    @strict.setter
    def strict(self, strict: bool) -> None:
        self._strict = strict
        self._update_pass_through()

    @property
    def strict_plan(self) -> bool:
        """Whether only events of the tracking plan are tracked (see :class:`Tracker`)."""
        return self._strict_plan

    @strict_plan.setter
    def strict_plan(self, strict_plan: bool) -> None:
        self._strict_plan = strict_plan
        self._update_pass_through()

    def _update_pass_through(self) -> None:
        sender = self._sender
        self.gate = (
            self._make_gate(sender)
            if sender is not None
            and self._takes_drafts
            and not self._strict
            and not self._strict_plan
            and not _bindings[0]
            and not self._per_event_work()
            else None
        )

    def _make_gate(self, sender: Sender) -> Gate:
        send = sender.send
        count_sent = self._reporter.count_sent
        send_failed = self._send_failed

        def gate(draft: EventDraft) -> bool:
            try:
                send(draft)  # type: ignore[arg-type]  # a draft-taking sender
            except Exception as exc:
                send_failed(draft, sender, exc)
                return False
            count_sent()
            return True

        return gate

    def _per_event_work(self) -> bool:
        """Whether a per-event feature (hook, sampling, debug) needs the slow path."""
        return (
            (self._before_send is not None and not self._hook_in_sender)
            or bool(self._sample)
            or self._debug
        )

    @property
    def before_send(self) -> BeforeSend | None:
        """The hook each validated event goes through before it is sent (``None``: none)."""
        return self._before_send

    @before_send.setter
    def before_send(self, hook: BeforeSend | None) -> None:
        if hook is not None and not callable(hook):
            raise ConfigurationError(f"before_send must be callable, got {type(hook).__name__}")
        self._before_send = hook
        self._wire_before_send()
        self._update_pass_through()

    def _wire_before_send(self) -> None:
        """Give the hook to a draft-taking sender that applies it where it validates.

        Such a sender declares a ``before_send`` attribute (as it declares ``limits``)
        and passes the events it validates from drafts through it (a list in, the kept
        events out); the tracker then keeps its fast path. Other senders get events the
        tracker validated and hooked inline.
        """
        sender = self._sender
        self._hook_in_sender = (
            sender is not None and self._takes_drafts and hasattr(sender, "before_send")
        )
        if self._hook_in_sender:
            sender.before_send = (  # type: ignore[union-attr]
                self._apply_before_send if self._before_send is not None else None
            )

    @property
    def sample(self) -> Mapping[str, float]:
        """Sampling rates by event name (a copy); names not listed are always sent."""
        return dict(self._sample)

    @sample.setter
    def sample(self, rates: Mapping[str, float]) -> None:
        checked: dict[str, float] = {}
        for name, rate in dict(rates).items():
            if type(name) is not str or not name:
                raise ConfigurationError(f"sample keys must be event names, got {name!r}")
            if type(rate) not in (int, float) or not 0.0 <= rate <= 1.0:
                raise ConfigurationError(
                    f"sample[{name!r}] must be a number from 0 to 1, got {rate!r}"
                )
            if rate < 1.0:  # a rate of 1 samples nothing out: keep the fast path
                checked[name] = float(rate)
        self._sample = checked
        self._update_pass_through()

    @property
    def debug(self) -> bool:
        """Whether each event and each Gameball request is logged at INFO/DEBUG."""
        return self._debug

    @debug.setter
    def debug(self, debug: bool) -> None:
        debug = bool(debug)
        if debug != self._debug:
            _debug_logging(self, debug)
        self._debug = debug
        self._update_pass_through()

    @property
    def limits(self) -> Limits:
        """The limits events are validated against (shared with draft-taking senders)."""
        return self._limits

    @limits.setter
    def limits(self, limits: Limits) -> None:
        if not isinstance(limits, Limits):
            raise TypeError(f"limits must be a gbtrack.Limits, got {type(limits).__name__}")
        self._limits = limits
        if self._takes_drafts:
            self._sender.limits = limits  # type: ignore[union-attr]

    # --- configuration ---------------------------------------------------------------
    @property
    def on_error(self) -> ErrorHandler | None:
        """The hook that receives every dropped event's :class:`~gbtrack.TrackingError`."""
        return self._reporter.on_error

    @on_error.setter
    def on_error(self, hook: ErrorHandler | None) -> None:
        self._reporter.on_error = hook

    @property
    def sender(self) -> Any:
        """The sender in use (created on first use when none was given)."""
        sender = self._sender
        if sender is None:
            with self._lock:
                if self._sender is None:
                    self._set_sender(self._default_sender())
                sender = self._sender
        return sender

    @sender.setter
    def sender(self, sender: Sender) -> None:
        self._set_sender(sender)

    def _set_sender(self, sender: Sender) -> None:
        if not isinstance(sender, Sender):
            raise TypeError(f"sender must implement send/flush/close, got {type(sender).__name__}")
        # A sender without its own hook reports its drops to the tracker's.
        reporter = getattr(sender, "reporter", None)
        if isinstance(reporter, Reporter) and reporter.on_error is None:
            reporter.on_error = self._forward_error
        takes_drafts = getattr(sender, "accepts_drafts", False) is True
        if takes_drafts:
            sender.limits = self._limits  # type: ignore[attr-defined]
        self._sender, self._takes_drafts = sender, takes_drafts
        self._wire_before_send()
        self._update_pass_through()

    def use_sender(self, sender: Sender) -> Sender | None:
        """Swap in ``sender`` and return the previous one, which is neither flushed nor closed.

        For test helpers such as :func:`gbtrack.testing.capture_events`, which restore the
        previous sender afterwards; :meth:`configure` is the way to replace a sender for good.

        Returns:
            The previous sender (``None`` if none was created yet).
        """
        with self._lock:
            previous = self._sender
            self._set_sender(sender)
        return previous

    def restore_sender(self, sender: Sender | None) -> None:
        """Put back a sender returned by :meth:`use_sender` (``None``: create on next use)."""
        with self._lock:
            if sender is None:
                self._sender, self._takes_drafts = None, False
                self._hook_in_sender = False
                self._update_pass_through()
            else:
                self._set_sender(sender)

    def _forward_error(self, error: TrackingError) -> None:
        self._reporter.report(error)

    def _default_sender(self) -> Sender:
        if os.environ.get("GAMEBALL_API_KEY"):
            from gbtrack.senders import sender_from_config

            return sender_from_config()
        warn_user(_NO_DELIVERY_WARNING)
        return LoggingSender()

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

        Returns:
            This tracker.

        Raises:
            ConfigurationError: If delivery options are given without an API key
                (neither passed nor in the environment), or are invalid.
        """
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
            from gbtrack.senders import sender_from_config

            sender = sender_from_config(**delivery)
        if enabled is not None:
            self.enabled = enabled
        if strict is not None:
            self.strict = strict
        if not isinstance(on_error, Unset):
            self.on_error = on_error
        if limits is not None:
            self.limits = limits
        if strict_plan is not None:
            self.strict_plan = strict_plan
        if not isinstance(before_send, Unset):
            self.before_send = before_send
        if sample is not None:
            self.sample = sample
        if debug is not None:
            self.debug = debug
        if sender is not None:
            old, self._sender = self._sender, None
            self._set_sender(sender)
            if old is not None and old is not sender:
                # What the old sender still holds (e.g. while Gameball refused its key)
                # goes to the new one rather than being dropped.
                hand_over = getattr(old, "hand_over", None)
                if callable(hand_over):
                    hand_over(sender, timeout=5.0)
                else:
                    old.close(timeout=5.0)
        return self

    # --- the API ---------------------------------------------------------------------
    def track(self, name: str, **options: Any) -> _Decorator:
        """Decorate a function so that calling it sends an event; see :func:`gbtrack.track`."""
        from gbtrack._decorator import track

        return track(name, tracker=self, **options)

    def span(
        self,
        name: str,
        *,
        customer_id: str | int | None = None,
        email: str | None = None,
        mobile: str | None = None,
        session_token: str | SecretStr | Unset | None = UNSET,
        metadata: Mapping[str, object] | None = None,
        on: Literal["success", "error", "always"] = "success",
    ) -> Span:
        """Open a manual event on this tracker; see :class:`gbtrack.Span`."""
        return _Span(
            name,
            customer_id=customer_id,
            email=email,
            mobile=mobile,
            session_token=session_token,
            metadata=metadata,
            on=on,
            tracker=self,
        )

    def emit(
        self,
        name: str,
        *,
        customer_id: str | int | None = None,
        email: str | None = None,
        mobile: str | None = None,
        session_token: str | SecretStr | Unset | None = UNSET,
        metadata: Mapping[str, object] | None = None,
    ) -> EventDraft | None:
        """Send an event directly; missing identity comes from :func:`gbtrack.identify`.

        Values are read and converted now (see :class:`~gbtrack.EventDraft`); the event
        is validated where it is serialised, or here when ``strict``.

        Returns:
            The draft handed to :meth:`submit`, or ``None`` when it was dropped (or the
            tracker is disabled). Drops raise :class:`~gbtrack.TrackingError` only when
            ``strict``.
        """
        if not self.enabled:
            return None
        return self.record(name, customer_id, email, mobile, session_token, metadata, None)

    def record(
        self,
        name: str,
        customer_id: object,
        email: object,
        mobile: object,
        session_token: object,
        metadata: Mapping[str, object] | None,
        function: str | None,
    ) -> EventDraft | None:
        """Build a draft from values given by hand (``emit``, ``span``) and submit it.

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
            self.drop("invalid_event", f"event {name!r}{_where(function)}: {exc}", exc=exc)
            return None
        except Exception as exc:
            self.drop(
                "resolver_error",
                f"event {name!r}{_where(function)}: reading a value raised {type(exc).__name__}",
                function=function,
                exc=exc,
            )
            return None
        if identity is None:
            self.no_customer(name, function)
            return None
        draft: EventDraft = _new_draft(
            EventDraft, (name, *identity, keys, values, function, _now())
        )
        return draft if self.submit(draft) else None

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the sender has settled everything sent so far.

        Returns:
            ``True`` if everything was settled within ``timeout`` seconds.
        """
        sender = self._sender
        if sender is None:
            return True
        if timeout != 0:
            self._warn_if_on_loop("flush", timeout)
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
            self._warn_if_on_loop("close", timeout)
        return bool(sender.close(timeout))

    @property
    def stats(self) -> Stats:
        """Counts of events sent and dropped (by reason), with the sender's delivery counts."""
        mine = self._reporter.snapshot()
        if self._filtered:
            with self._lock:
                mine = mine.merge(Stats(dropped=dict(self._filtered)))
        sender = self._sender
        stats_of = getattr(sender, "stats", None)
        if callable(stats_of):
            theirs = stats_of()
            if isinstance(theirs, Stats):
                # The sender's "sent" would double count: ours is what it accepted.
                return mine.merge(
                    Stats(
                        delivered=theirs.delivered,
                        retried=theirs.retried,
                        dropped=theirs.dropped,
                        in_queue=theirs.in_queue,
                        in_flight=theirs.in_flight,
                        persisted=theirs.persisted,
                        last_error=theirs.last_error,
                        missing=theirs.missing,
                    )
                )
        return mine

    def __repr__(self) -> str:
        state = "enabled" if self.enabled else "disabled"
        flags = (" strict" if self.strict else "") + (" strict_plan" if self.strict_plan else "")
        return f"<Tracker {state}{flags} sender={self._sender!r}>"

    # --- the call path (used by track, span and emit) --------------------------------
    def submit(self, draft: EventDraft) -> bool:
        """Hand one draft to the sender: the one door from the call sites to delivery.

        A sender that declares ``accepts_drafts = True`` gets the draft as it is and
        validates it where it serialises; any other sender gets the validated
        :class:`~gbtrack.Event`. Under ``strict`` the draft is validated here, so an
        invalid event raises at the call site. Never raises unless ``strict``.

        Returns:
            ``True`` when the sender accepted the draft (a sender that validates later
            may still count it as ``invalid_event``), ``False`` when it was dropped here.
        """
        gate = self.gate
        if gate is not None:  # the common case: the sender validates where it serialises
            return bool(gate(draft))
        if self._strict_plan and self._unplanned(draft):
            return False
        if _bindings[0]:  # gbtrack.transaction(): a plain global test while none is open
            bound = _bound_transaction.get()
            if bound is not None and bound.binds(self):
                return self._submit_bound(draft, bound)
        if self._sample and self._sampled_out(draft):
            return False
        sender: Any = self._sender  # Sender, or a sender that accepts drafts
        try:
            if sender is None:
                sender = self.sender  # first use creates the default sender
            if isinstance(sender, _DirectSender):
                self._warn_if_blocking(sender)
            hook_here = self._before_send is not None and not self._hook_in_sender
            if self._takes_drafts and not self.strict and not hook_here:
                if self._debug:
                    _log_event(draft, sender)
                sender.send(draft)
            else:
                try:
                    event = draft.to_event(self._limits)
                except InvalidEventError as exc:
                    # to_event's message already names the event and the function
                    self.drop("invalid_event", str(exc), function=draft.function, exc=exc)
                    return False
                if hook_here:
                    hooked = self._run_before_send(event, draft.function)
                    if hooked is None:
                        return False
                    item: Any = hooked
                else:
                    item = draft if self._takes_drafts else event
                if self._debug:
                    _log_event(item, sender)
                sender.send(item)
        except TrackingError:
            raise  # strict mode's own error
        except Exception as exc:
            self._send_failed(draft, sender, exc)
            return False
        self._reporter.count_sent()
        return True

    def _submit_bound(self, draft: EventDraft, bound: TransactionBinding) -> bool:
        """Validate ``draft`` and INSERT it in the transaction ``gbtrack.transaction()`` bound.

        Sampling, the tracker's limits and ``before_send`` apply here, as for a sender
        that takes events; a failed INSERT is an ``outbox_error`` drop (raised under
        ``strict``), and the business transaction goes on.
        """
        if self._sample and self._sampled_out(draft):
            return False
        where = f"event {draft.name!r}" + (f" in {draft.function}" if draft.function else "")
        try:
            event = draft.to_event(self._limits)
        except InvalidEventError as exc:
            # to_event's message already names the event and the function
            self.drop("invalid_event", str(exc), function=draft.function, exc=exc)
            return False
        if self._before_send is not None:
            hooked = self._run_before_send(event, draft.function)
            if hooked is None:
                return False
            event = hooked
        if self._debug:
            _log_event(event, bound)  # "-> TransactionBinding"
        try:
            bound.insert(event)
        except Exception as exc:
            self.drop(
                "outbox_error",
                f"{where}: the INSERT into the outbox table failed "
                f"({type(exc).__name__}); the business transaction goes on without it",
                function=draft.function,
                exc=exc,
            )
            return False
        if event.session_token is not None:
            self.count("session_token_stripped")  # tokens are never stored
        self._reporter.count_sent()
        return True

    # --- per-event features (slow path only) -------------------------------------------
    def _filter(self, reason: str, message: str) -> None:
        """Count a deliberate drop (sampling, before_send): not an error, so not reported."""
        with self._lock:
            self._filtered[reason] = self._filtered.get(reason, 0) + 1
        if self._debug:
            logger.info("gbtrack: %s", message)

    def _sampled_out(self, draft: EventDraft) -> bool:
        rate = self._sample.get(draft.name)
        if rate is None or _random() < rate:
            return False
        self._filter("sampled_out", f"event {draft.name!r} sampled out (rate {rate})")
        return True

    def _apply_before_send(self, events: list[Event]) -> list[Event]:
        """The hook as a sender applies it, in its worker: the events kept, in order.

        Failures are counted and reported like inline ones, but never raised (there is
        no caller to raise into).
        """
        kept = []
        for event in events:
            hooked = self._run_before_send(event, None, inline=False)
            if hooked is not None:
                kept.append(hooked)
        return kept

    def _run_before_send(
        self, event: Event, function: str | None, *, inline: bool = True
    ) -> Event | None:
        """Apply the hook; a drop, a failure or an invalid change never reaches the caller."""
        hook = self._before_send
        if hook is None:  # removed while events were queued
            return event
        where = f"event {event.name!r}{_where(function)}"
        try:
            result: object = hook(event)
        except Exception as exc:
            message = f"{where}: the before_send hook raised {type(exc).__name__}"
            self._hook_failed("before_send_error", message, function, exc, inline)
            return None
        if result is None:
            self._filter("before_send", f"{where} dropped by before_send")
            return None
        if result is event:
            return event
        if not isinstance(result, Event):
            message = (
                f"{where}: before_send returned a {type(result).__name__}, "
                "not a gbtrack.Event or None"
            )
            self._hook_failed("before_send_error", message, function, None, inline)
            return None
        try:  # a changed copy (model_copy does not validate): validate it again
            return Event.model_validate(dict(result), context={"limits": self._limits})
        except ValueError as exc:
            message = f"{where}: the event before_send returned is invalid: {exc}"
            self._hook_failed("invalid_event", message, function, exc, inline)
            return None

    def _hook_failed(
        self, reason: str, message: str, function: str | None, exc: Exception | None, inline: bool
    ) -> None:
        if inline:
            self.drop(reason, message, function=function, exc=exc)  # strict raises
        else:
            self._reporter.drop(reason, message, function=function, exc_info=exc)

    def _warn_if_on_loop(self, method: str, timeout: float | None) -> None:
        """Warn once per method when flush()/close() would block a running event loop."""
        if self._first_on_loop(method):
            wait = "with no time limit" if timeout is None else f"for up to {timeout:g} s"
            warn_user(
                f"gbtrack: {method}() blocks {wait} until the sender settles, and it is being "
                "called on a running asyncio event loop, which it stalls; run it in a thread: "
                f"await asyncio.to_thread(gbtrack.{method}, {5 if timeout is None else timeout:g})"
            )

    def _warn_if_blocking(self, sender: Sender) -> None:
        """Warn once per sender when a blocking DirectSender is used on an event loop."""
        if self._first_on_loop(id(sender)):
            warn_user(
                "gbtrack: DirectSender.send() blocks until Gameball answers, and it is being "
                "called on a running asyncio event loop, which it stalls; use the default "
                "BackgroundSender (gbtrack.configure(api_key=...)) in async applications"
            )

    def _first_on_loop(self, what: object) -> bool:
        """Whether ``what`` blocks a running event loop for the first time (then noted)."""
        if what in self._loop_warned or not _on_event_loop():
            return False
        self._loop_warned.add(what)
        return True

    def _send_failed(self, draft: EventDraft, sender: object, exc: Exception) -> None:
        self.drop(
            "sender_error",
            f"event {draft.name!r}{_where(draft.function)}: "
            + (
                f"{type(sender).__name__}.send raised {type(exc).__name__}"
                if sender is not None
                else f"creating the default sender raised {type(exc).__name__}: {exc}"
            ),
            function=draft.function,
            exc=exc,
        )

    def _unplanned(self, draft: EventDraft) -> bool:
        """Drop ``draft`` (reason ``unplanned_event``) if the strict plan has no schema for it."""
        problem = check_planned(draft.name, strict=True)
        if problem is None:
            return False
        self.drop(
            "unplanned_event",
            f"event {draft.name!r}{_where(draft.function)}: {problem}",
            function=draft.function,
        )
        return True

    def drop(
        self,
        reason: str,
        message: str,
        *,
        function: str | None = None,
        exc: BaseException | None = None,
    ) -> None:
        """Count, log and report a dropped event; raise it when ``strict``.

        Args:
            reason: The reason code it is counted under (``resolver_error``, ...).
            message: What happened, without values, keys or unmasked PII.
            function: The tracked function's qualified name, when there is one.
            exc: The underlying exception, chained as ``__cause__``.

        Raises:
            TrackingError: When ``strict``.
        """
        error = self._reporter.drop(reason, message, function=function, exc_info=exc)
        if self.strict:
            raise error

    def count(self, key: str) -> None:
        """Add one to counter ``key`` (e.g. ``skipped`` when ``when=`` is false)."""
        self._reporter.count(key)

    def no_customer(self, name: str, function: str | None) -> None:
        """Drop an event that has no customer id (reason ``no_customer_id``)."""
        self.drop(
            "no_customer_id",
            f"event {name!r}{_where(function)} has no customer_id and no identify() is active",
            function=function,
        )

    def missing(self, event: str, field: str, message: str) -> None:
        """Count a path that found nothing (``stats.missing``); logged once; strict raises.

        Raises:
            TrackingError: When ``strict`` (reason ``missing``).
        """
        self._reporter.missing(event, field, message)
        if self.strict:
            raise TrackingError(message, reason="missing")


_random = random.random

_trackers: weakref.WeakSet[Tracker] = weakref.WeakSet()  # to close gates under bindings


def _bindings_changed() -> None:
    for tracker in list(_trackers):
        tracker._update_pass_through()


on_bindings_change.append(_bindings_changed)


def _on_event_loop() -> bool:
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _log_event(item: Event | EventDraft, sender: object) -> None:
    """The debug line of one event: name, customer, metadata keys; no values, no token."""
    keys = sorted(item.metadata)
    logger.info(
        "gbtrack: event %r for customer %r%s%s%s, metadata keys [%s] -> %s",
        item.name,
        item.customer_id,
        f", email {mask_email(item.email)}" if item.email else "",
        f", mobile {mask_mobile(item.mobile)}" if item.mobile else "",
        ", with a session token" if item.session_token is not None else "",
        ", ".join(keys),
        type(sender).__name__,
    )


_debugging: weakref.WeakSet[Tracker] = weakref.WeakSet()  # trackers with debug on
_debug_handler: logging.Handler | None = None
_saved_levels: list[int] = []  # the loggers' levels before debug turned them up
_DEBUG_LOGGERS = (logger, logging.getLogger("gbtrack.gameball"))


class _AsInfo(logging.Filter):
    """Under ``debug=True``: the client's per-request DEBUG lines are logged at INFO.

    So an application whose handlers stop at INFO still sees them.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.INFO:
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


_as_info = _AsInfo()


def _debug_logging(tracker: Tracker, on: bool) -> None:
    """Turn the debug log lines on (or off, when no tracker wants them any more).

    The ``gbtrack`` logger goes to INFO and ``gbtrack.gameball``'s per-request lines
    (method, path, status, outcome, duration; no body, no headers) are logged at INFO. When
    nothing handles the ``gbtrack`` logger's lines, a stderr handler is added, as
    sentry-sdk's ``debug=True`` does, and removed when debug is turned off again.
    """
    global _debug_handler
    if on:
        _debugging.add(tracker)
    else:
        _debugging.discard(tracker)
    if _debugging and not _saved_levels:
        _saved_levels.extend(log.level for log in _DEBUG_LOGGERS)
        logger.setLevel(logging.INFO)
        _DEBUG_LOGGERS[1].setLevel(logging.DEBUG)
        _DEBUG_LOGGERS[1].addFilter(_as_info)
        if not logger.hasHandlers():
            _debug_handler = logging.StreamHandler()
            _debug_handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
            logger.addHandler(_debug_handler)
    elif not _debugging and _saved_levels:
        for log, level in zip(_DEBUG_LOGGERS, _saved_levels, strict=True):
            log.setLevel(level)
        _DEBUG_LOGGERS[1].removeFilter(_as_info)
        _saved_levels.clear()
        if _debug_handler is not None:
            logger.removeHandler(_debug_handler)
            _debug_handler = None


_new_draft = tuple.__new__
_now = time.time
_PLAIN_TYPES = frozenset({str, int, float, bool})  # finiteness is checked where validated


def _where(function: str | None) -> str:
    return f" from {function}" if function else ""


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


def configure(
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
) -> Tracker:
    """Configure the default tracker in place (never replaced, so nothing goes stale).

    Args:
        sender: The sender to use.
        enabled: Turn tracking on or off (``GBTRACK_DISABLED=1`` starts it off).
        strict: Raise tracking failures into callers (tests, development).
        on_error: The drop hook.
        api_key: The Gameball API key; any delivery option builds a
            :class:`~gbtrack.senders.BackgroundSender` (see :meth:`Tracker.configure`).
        secret_key: The Gameball secret key (bulk mode, v4.1).
        base_url: Gameball's base URL.
        secure: v4.1 "Secure Integration Mode"; by default when a secret key is set.
        max_queue_size: The most events the sender holds.
        overflow: ``"drop_newest"`` (default) or ``"block"``.
        flush_interval: The most seconds an event waits before it is sent.
        concurrency: The most requests in flight.
        retry: The retry policy.
        rate_limiter: The client-side rate limiter.
        redis_url: A Redis URL for a rate limiter shared by every process
            (``GBTRACK_REDIS_URL``; see :class:`~gbtrack.senders.RedisRateLimiter`).
        rate_limit_margin: Seconds added to every window of the rate limiter built here.
        redis_socket_timeout: Seconds to wait for Redis before limiting locally.
        redis_fallback_share: The share of the limits each process keeps while Redis
            is unreachable (see :meth:`Tracker.configure`).
        spill: Where events go instead of being dropped.
        outbox: A path for a durable outbox used as the spill (``GBTRACK_OUTBOX``).
        limits: The :class:`~gbtrack.Limits` events are validated against.
        strict_plan: Track only the events of the tracking plan: an event name without
            an :func:`~gbtrack.event_schema` is refused at decoration (when known
            then) and dropped with reason ``unplanned_event`` when sent.
        before_send: ``hook(event) -> event | None`` for each validated event: scrub
            or drop (``None`` removes the hook).
        sample: Sampling rates by event name, e.g. ``{"page_viewed": 0.1}``.
        debug: Log one line per event and per Gameball request.

    Returns:
        The default tracker.
    """
    return _default().configure(
        sender=sender,
        enabled=enabled,
        strict=strict,
        on_error=on_error,
        api_key=api_key,
        secret_key=secret_key,
        base_url=base_url,
        secure=secure,
        max_queue_size=max_queue_size,
        overflow=overflow,
        flush_interval=flush_interval,
        concurrency=concurrency,
        retry=retry,
        rate_limiter=rate_limiter,
        redis_url=redis_url,
        rate_limit_margin=rate_limit_margin,
        redis_socket_timeout=redis_socket_timeout,
        redis_fallback_share=redis_fallback_share,
        spill=spill,
        outbox=outbox,
        limits=limits,
        strict_plan=strict_plan,
        before_send=before_send,
        sample=sample,
        debug=debug,
    )


# At the end: _span reads `active` from this module when it is imported.
from gbtrack._span import Span as _Span  # noqa: E402
from gbtrack.senders._direct import DirectSender as _DirectSender  # noqa: E402
