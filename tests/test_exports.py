"""The public surface: an accidental change to gbtrack.__all__ fails here."""

from __future__ import annotations

import importlib
import inspect
import re

import gbtrack

EXPECTED = [
    "DEFAULT_LIMITS",
    "UNSET",
    "AuthenticationError",
    "Call",
    "CheckReport",
    "ConfigurationError",
    "ConflictError",
    "DeliveryError",
    "DeliveryOutcome",
    "Event",
    "EventDraft",
    "ExpressionError",
    "GbtrackError",
    "Identity",
    "InMemorySender",
    "InvalidEventError",
    "Limits",
    "LoggingSender",
    "OrderDraft",
    "PayloadError",
    "RateLimitError",
    "Sender",
    "ServerError",
    "Span",
    "SpanContext",
    "Stats",
    "Tracker",
    "TrackerSettings",
    "TrackingError",
    "TransportError",
    "Unchecked",
    "__version__",
    "check",
    "close",
    "configure",
    "current_identity",
    "each",
    "event_schema",
    "flush",
    "get_tracker",
    "identify",
    "literal",
    "register_resolver",
    "remove_event_schema",
    "send_order",
    "sender_from_config",
    "set_tracker",
    "span",
    "track",
    "track_order",
    "transaction",
    "unregister_resolver",
]


def test_exact_all() -> None:
    assert gbtrack.__all__ == EXPECTED


def test_all_is_sorted_constants_classes_functions() -> None:
    def group(name: str) -> tuple[int, str]:
        if name.isupper():
            return (0, name)
        if name[0].isupper():
            return (1, name)
        return (2, name)

    assert gbtrack.__all__ == sorted(gbtrack.__all__, key=group)


def test_every_name_importable_and_documented() -> None:
    module = importlib.import_module("gbtrack")
    for name in EXPECTED:
        obj = getattr(module, name)
        if name == "__version__":
            assert re.match(r"\d+\.\d+", obj)
            continue
        doc = inspect.getdoc(obj)
        assert doc, f"{name} has no docstring"
        assert doc.strip(), f"{name} has an empty docstring"


def test_public_namespaces_import() -> None:
    testing = importlib.import_module("gbtrack.testing")
    assert {"CapturedEvents", "capture_events", "gbtrack_events"} <= set(testing.__all__)
    for name in testing.__all__:
        assert inspect.getdoc(getattr(testing, name))
