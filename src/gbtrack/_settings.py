"""The tracker's settings: one frozen, validated value (the twin of senders' ``DeliveryConfig``).

Every way of configuring a :class:`~gbtrack.Tracker` builds one of these: its
constructor, :meth:`~gbtrack.Tracker.configure`, :func:`gbtrack.configure` and the
compatibility property setters (``tracker.strict = True``) each make a new value and
hand it to the tracker, which compiles its pipeline from it. Tests save and restore
the whole value in one line (``tracker.use_settings(saved)``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypedDict

from gbtrack._errors import ConfigurationError
from gbtrack._event import DEFAULT_LIMITS, Event, Limits
from gbtrack._outcomes import OutcomeHook
from gbtrack._report import ErrorHandler
from gbtrack._types import UNSET, Unset

__all__ = ["BeforeSend", "SettingsChanges", "TrackerSettings", "env_disabled"]

BeforeSend = Callable[[Event], "Event | None"]
"""The ``before_send`` hook: return the event (changed or not) to send it, ``None`` to drop it."""


def _no_rates() -> Mapping[str, float]:
    return MappingProxyType({})


@dataclass(frozen=True)
class TrackerSettings:
    """What a :class:`~gbtrack.Tracker` does with each event, as one frozen value.

    Built (and validated) by ``Tracker(...)``, :meth:`~gbtrack.Tracker.configure` and
    :func:`gbtrack.configure`; read it as ``tracker.settings``. Change it with
    :func:`dataclasses.replace` and :meth:`~gbtrack.Tracker.use_settings`, or through
    ``configure()``.

    Attributes:
        enabled: When ``False``, decorators call straight through and nothing is sent.
        strict: Tracking failures raise :class:`~gbtrack.TrackingError` into the caller.
        strict_plan: Only events of the tracking plan are tracked (see
            :class:`~gbtrack.Tracker`).
        on_error: Called with a :class:`~gbtrack.TrackingError` for every dropped event.
        limits: The :class:`~gbtrack.Limits` events are validated against.
        before_send: ``hook(event) -> event | None`` for each validated event.
        sample: Sampling rates by event name, each from 0 to 1; names not listed (and
            rates of 1, which sample nothing out) are not kept. Read-only.
        debug: One log line per event and per Gameball request.
        on_outcome: Called once per event and order with its final
            :class:`~gbtrack.DeliveryOutcome` in this process (delivered, dropped with
            its reason, persisted to the outbox), on the sender's thread, never the
            caller's: a superset of ``on_error``. What it raises is caught, logged once
            and counted (``outcome_hook_errors``). ``None``: no hook, and no cost.

    Raises:
        ConfigurationError: If ``before_send`` is not callable or a sampling rate is
            not a number from 0 to 1 for a non-empty event name.
        TypeError: If ``limits`` is not a :class:`~gbtrack.Limits`.

    Examples:
        >>> import dataclasses
        >>> from gbtrack import Tracker, InMemorySender
        >>> tracker = Tracker(InMemorySender(), sample={"page_viewed": 0.5, "paid": 1})
        >>> dict(tracker.settings.sample)
        {'page_viewed': 0.5}
        >>> previous = tracker.use_settings(dataclasses.replace(tracker.settings, strict=True))
        >>> tracker.strict, previous.strict
        (True, False)
    """

    enabled: bool = True
    strict: bool = False
    strict_plan: bool = False
    on_error: ErrorHandler | None = None
    limits: Limits = DEFAULT_LIMITS
    before_send: BeforeSend | None = None
    # Not hashed: a read-only mapping is not hashable; equal values still compare equal.
    sample: Mapping[str, float] = field(default_factory=_no_rates, hash=False)
    debug: bool = False
    on_outcome: OutcomeHook | None = None

    def __post_init__(self) -> None:
        for flag in ("enabled", "strict", "strict_plan", "debug"):
            object.__setattr__(self, flag, bool(getattr(self, flag)))
        if not isinstance(self.limits, Limits):
            raise TypeError(f"limits must be a gbtrack.Limits, got {type(self.limits).__name__}")
        hook = self.before_send
        if hook is not None and not callable(hook):
            raise ConfigurationError(f"before_send must be callable, got {type(hook).__name__}")
        object.__setattr__(self, "sample", MappingProxyType(_checked_rates(self.sample)))
        outcome_hook = self.on_outcome
        if outcome_hook is not None and not callable(outcome_hook):
            raise ConfigurationError(
                f"on_outcome must be callable, got {type(outcome_hook).__name__}"
            )

    def changed(self, changes: SettingsChanges) -> TrackerSettings:
        """Return a copy with ``changes`` applied (validated); ``self`` when there are none."""
        return dataclasses.replace(self, **changes) if changes else self


class SettingsChanges(TypedDict, total=False):
    """The fields of :class:`TrackerSettings` a ``configure()`` call changes."""

    enabled: bool
    strict: bool
    strict_plan: bool
    on_error: ErrorHandler | None
    limits: Limits
    before_send: BeforeSend | None
    sample: Mapping[str, float]
    debug: bool
    on_outcome: OutcomeHook | None


def settings_changes(
    *,
    enabled: bool | None,
    strict: bool | None,
    strict_plan: bool | None,
    on_error: ErrorHandler | Unset | None,
    limits: Limits | None,
    before_send: BeforeSend | Unset | None,
    sample: Mapping[str, float] | None,
    debug: bool | None,
    on_outcome: OutcomeHook | Unset | None = UNSET,
) -> SettingsChanges:
    """The changes of one ``configure()`` call: ``None`` (``UNSET`` for hooks) keeps a field."""
    changes: SettingsChanges = {}
    if enabled is not None:
        changes["enabled"] = enabled
    if strict is not None:
        changes["strict"] = strict
    if strict_plan is not None:
        changes["strict_plan"] = strict_plan
    if not isinstance(on_error, Unset):
        changes["on_error"] = on_error
    if limits is not None:
        changes["limits"] = limits
    if not isinstance(before_send, Unset):
        changes["before_send"] = before_send
    if sample is not None:
        changes["sample"] = sample
    if debug is not None:
        changes["debug"] = debug
    if not isinstance(on_outcome, Unset):
        changes["on_outcome"] = on_outcome
    return changes


def _checked_rates(rates: Mapping[str, float]) -> dict[str, float]:
    checked: dict[str, float] = {}
    for name, rate in dict(rates).items():
        if type(name) is not str or not name:
            raise ConfigurationError(f"sample keys must be event names, got {name!r}")
        if type(rate) not in (int, float) or not 0.0 <= rate <= 1.0:
            raise ConfigurationError(f"sample[{name!r}] must be a number from 0 to 1, got {rate!r}")
        if rate < 1.0:  # a rate of 1 samples nothing out: keep the pipeline empty
            checked[name] = float(rate)
    return checked


def env_disabled() -> bool:
    """Whether ``GBTRACK_DISABLED`` asks for the default tracker to start disabled."""
    return os.environ.get("GBTRACK_DISABLED", "").strip().lower() in {"1", "true", "yes", "on"}
